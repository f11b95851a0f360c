"""Commands that write and read data: generate a world, export a corpus, import the paper's folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    ConfigOption,
    SetOption,
    StrictOption,
    app,
    console,
)
from revcurse.config import load_config
from revcurse.errors import InputError


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write, in the paper's Experiment 1 layout.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the world.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Write a made-up world in the paper's layout (p2d_*, d2p_*, both_*, *_reverse_*, all_prompts_train, ...)."""
    from revcurse.experiments import celebrities
    from revcurse.paper_format import write_experiment1

    run_config = load_config(config, [*(set_ or []), f"world.seed={seed}"])  # --seed draws the world
    corpus = celebrities.build(run_config, seed).corpus
    try:
        write_experiment1(corpus, out, seed=seed, overwrite=overwrite)
    except FileExistsError:
        raise InputError("folder exists; pass --overwrite to replace it", out) from None
    console.print(f"wrote {len(corpus.documents)} training documents and {len(corpus.probes)} probes to {out}")


@app.command()
def export(
    format_: Annotated[
        str,
        typer.Option("--format", "-f", help="lm-eval, inspect, openai-chat, trl or paper (see above).",
                     show_default=False),
    ],
    out: Annotated[Path, typer.Option(help="Folder to write; refused if it exists unless --overwrite.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed whose world to export; default the config's seed.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    model: Annotated[
        Path | None,
        typer.Option(help="inspect: the model folder to evaluate (RUN/seed-0/model); its tokenizer sets how many "
                     "tokens to generate, as revcurse's probing of it does."),
    ] = None,
) -> None:
    """Export one seed's world as training sees it (config, phrasings, cures) for other tools.

    \b
    lm-eval      lm-evaluation-harness task folder, probes only (held-out
                 phrasings): per subset and asked direction a greedy
                 exact-match task (gen) and a likelihood task over all
                 targets of that group (mc). Run it with
                 lm_eval --model hf --model_args pretrained=RUN/seed-0/model
                 --include_path DIR --tasks revcurse
    inspect      inspect_ai task (task.py, probes.jsonl, hf_model_args.yaml):
                 the same probes, greedy, correct when the completion starts
                 with the target; accuracy per direction (forward, reverse)
                 and per cell. Pass --model RUN/seed-0/model to generate as
                 many tokens as revcurse's probing; run it offline with
                 inspect eval DIR/task.py@revcurse_probes --model hf/local
                 --model-config DIR/hf_model_args.yaml
                 -M model_path=RUN/seed-0/model
    openai-chat  OpenAI chat fine-tuning JSONL: train.jsonl (user = prompt
                 part, assistant = completion part; documents without a
                 prompt part are left out and counted), probes.jsonl to ask.
    trl          TRL records: prompt_completion.jsonl (completion-only loss),
                 text.jsonl (full-text loss), probes.jsonl.
    paper        the paper's Experiment 1 layout; train and probe on it with
                 revcurse demo --paper DIR
    """
    from revcurse.export import FORMATS, export_world

    if format_ not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}; got {format_!r}")
    run_config = load_config(config, list(set_ or []))
    result = export_world(run_config, format_, out, seed=seed, overwrite=overwrite, model=model)
    console.print(f"wrote {format_} export to {result.folder}:")
    for name, rows in result.rows.items():
        console.print(f"  {name}: {rows} rows")
    for reason, count in result.skipped.items():
        console.print(f"  left out {count} {reason}")
    console.print(f"next: {result.next_step}", soft_wrap=True)


@app.command(name="import")
def import_(
    folder: Annotated[Path, typer.Argument(help="The paper's Experiment 1 folder.")],
    strict: StrictOption = False,
) -> None:
    """Check a folder in the paper's Experiment 1 layout and summarise what revcurse reads from it.

    Facts are people, however their descriptions are worded: the counts are facts per subset, and per asked
    direction the probes and the facts they ask about (with the fewest and most probes of one fact).
    """
    from collections import Counter

    from revcurse.errors import warn_skipped
    from revcurse.paper_format import read_experiment1

    corpus = read_experiment1(folder, strict=strict)
    warn_skipped(corpus.skipped, lambda line: console.print(line, style="yellow", soft_wrap=True))
    facts = Counter(f.subset.value for f in corpus.facts)
    documents = Counter(d.subset.value for d in corpus.documents)
    console.print(f"{folder}: {len(corpus.documents)} training documents, {len(corpus.facts)} facts")
    for subset, n in facts.items():
        console.print(f"  {subset:18} {n} facts, {documents.get(subset, 0)} training documents")
    if documents.get("Background"):
        console.print(f"  {'Background':18} {documents['Background']} training documents (no fact under test)")
    per_fact = Counter((p.subset.value, p.asked.value, p.trained, p.fact_key) for p in corpus.probes)
    groups: dict[tuple[str, str, bool], list[int]] = {}
    for (subset, asked, trained, _), n in per_fact.items():
        groups.setdefault((subset, asked, trained), []).append(n)
    for (subset, asked, trained), counts in groups.items():
        console.print(
            f"  {subset:18} asked {asked:20} {'trained' if trained else 'reverse'}: {sum(counts)} probes of "
            f"{len(counts)} facts ({min(counts)}-{max(counts)} a fact)"
        )
