"""The ``revcurse`` command: each subcommand is a thin call of a public function of the library."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from revcurse.config import load_config
from revcurse.errors import InputError, NonFiniteLoss

app = typer.Typer(
    help=(
        "Reproduce, measure and cure the Reversal Curse: train a model on 'A is B' facts and probe whether it "
        "can answer 'B is A'.\n\nStart with `revcurse demo`; every command takes --config FILE.yaml and "
        "--set section.key=value overrides (see configs/)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for the result table when output goes to a file or a pipe (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 160)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config; defaults when omitted.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set train.epochs=8 (repeatable)."),
]
AllowPickleOption = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="Load a checkpoint's pickle weights (.bin, .pt) when it has no safetensors. Unpickling can run code: "
        "only for files you trust (same as --set model.allow_pickle=true).",
    ),
]
NameOption = Annotated[
    str | None,
    typer.Option(help="Run name: the folder runs/NAME (a plain name: no '/', '..', leading '.'); or use --out."),
]


def strict_help(skipped: str, refused: str) -> str:
    """The help of a reader's --strict: what it skips as one unusable line, and what it refuses as a bad file."""
    return (
        f"Refuse an unusable line (exit 2, naming file and line) instead of skipping it. Skipped otherwise, with a "
        f"warning naming file and line, and listed in the run folder's skipped.jsonl: {skipped}. Refused either way "
        f"(the file is not in the expected format): {refused}."
    )


def refuse_beside_resume(**given: object) -> None:
    """``--resume`` continues a run with the config and folder it was started with: other options would not."""
    named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value not in (None, False, [], ())]
    if named:
        raise InputError(f"--resume continues a run with its own config and folder: drop {', '.join(named)}")


StrictOption = Annotated[
    bool,
    typer.Option(
        help="Refuse a data folder with any unusable line (an empty completion, a duplicate, a description asked of "
        "no known name). Default: such a line is skipped with a warning naming its file and line, and listed in "
        "the run folder's skipped.jsonl; a file that is not in the expected format is refused either way."
    ),
]


def with_allow_pickle(overrides: list[str], allow_pickle: bool) -> list[str]:
    """``--allow-pickle`` as the config override it stands for (recorded in the run's config.yaml)."""
    return [*overrides, "model.allow_pickle=true"] if allow_pickle else overrides


@app.command()
def demo(
    config: ConfigOption = None,
    set_: SetOption = None,
    seeds: Annotated[int | None, typer.Option(help="Run this many seeds and aggregate (95% intervals).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/demo-<date>-<time>.")] = None,
    name: NameOption = None,
    paper: Annotated[
        Path | None, typer.Option(help="Train and probe on the paper's Experiment 1 folder instead.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    jobs: Annotated[int, typer.Option(help="Seeds in parallel processes (useful with --seeds 2 or more).")] = 1,
    allow_pickle: AllowPickleOption = False,
    strict: StrictOption = False,
) -> None:
    """Experiment 1 end to end: made-up people -> training text -> a tiny model -> probes forward and reverse.

    Prints accuracy per subset and asked direction (95% interval) with the likelihood test, and writes a run
    folder: config.yaml, metrics.json (tidy records), predictions.jsonl, report.md and seed-N/model/.
    """
    _run_experiment1(config, set_, seeds, out, name, paper, overwrite, quiet, jobs, allow_pickle, None, "demo", strict)


@app.command()
def train(
    config: ConfigOption = None,
    set_: SetOption = None,
    seeds: Annotated[int | None, typer.Option(help="Run this many seeds and aggregate (95% intervals).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/train-<date>-<time>.")] = None,
    name: NameOption = None,
    paper: Annotated[
        Path | None, typer.Option(help="Train and probe on the paper's Experiment 1 folder instead.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing (or interrupted) run folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    jobs: Annotated[int, typer.Option(help="Seeds in parallel processes (useful with --seeds 2 or more).")] = 1,
    allow_pickle: AllowPickleOption = False,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the interrupted run RUN (the --out it was started with), with its own config."),
    ] = None,
    strict: StrictOption = False,
) -> None:
    """Train and probe Experiment 1 with a config (as `demo`), checkpointing so that a killed run can resume.

    \b
    Checkpoints (weights, optimizer, scheduler, RNG states, data position) go to
    .RUN.partial/seed-N/checkpoints/ every train.checkpoint_minutes (default 5)
    and/or every train.checkpoint_every steps; the run folder RUN appears only
    when every seed has finished. After a crash or a kill:
        revcurse train --resume RUN
    continues from the last checkpoint; on CPU the final metrics equal those of
    an uninterrupted run. `revcurse status RUN` says whether a run is
    finished, running, interrupted or failed.
    """
    _run_experiment1(
        config, set_, seeds, out, name, paper, overwrite, quiet, jobs, allow_pickle, resume, "train", strict
    )


def _run_experiment1(
    config: Path | None,
    set_: list[str] | None,
    seeds: int | None,
    out: Path | None,
    name: str | None,
    paper: Path | None,
    overwrite: bool,
    quiet: bool,
    jobs: int,
    allow_pickle: bool,
    resume: Path | None,
    command: str,
    strict: bool = False,
) -> None:
    """What `demo` and `train` share: load the config, run every seed, print the result table."""
    from revcurse.paths import output_folder
    from revcurse.records import load_started_config, resumable_folder
    from revcurse.report import result_table
    from revcurse.runner import run_experiment

    overrides = with_allow_pickle(list(set_ or []), allow_pickle)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    if paper is not None:
        overrides.append(f"world.source={paper}")
    if strict:
        overrides.append("world.strict=true")
    if resume is not None:
        refuse_beside_resume(config=config, set=set_, seeds=seeds, paper=paper, out=out, name=name,
                             allow_pickle=allow_pickle, overwrite=overwrite, strict=strict)
        out = resume
        run_config = load_started_config(resumable_folder(resume))
    else:
        out = output_folder(out, name, f"{command}-{datetime.now():%Y%m%d-%H%M%S}")
        run_config = load_config(config, overrides)
    outcome = run_experiment(
        run_config, out, overwrite=overwrite, show_progress=not quiet, log=console.print, processes=jobs,
        resume=resume is not None,
    )
    if not outcome.records:  # a data-parallel helper process (torchrun): the main process reports
        return
    summary = outcome.summary
    console.print(
        result_table(
            outcome.records,
            title=f"Reversal curse: {summary['model']}, {summary['parameters']:,} parameters, "
            f"{len(summary['seeds'])} seed(s)",
        )
    )
    console.print(
        f"trained {summary['train_seconds']:.0f} s at {summary['tokens_per_second']:,.0f} tok/s, "
        f"probed {summary['probe_seconds']:.0f} s; run folder: {outcome.folder} (report: {outcome.folder}/report.md)"
    )


@app.command()
def status(run: Annotated[Path, typer.Argument(help="A run folder (the --out of demo, train, compare ...).")]) -> None:
    """Say whether a run is finished, running (a process holds its lock), interrupted (resumable) or failed, and
    for a failed run why."""
    from revcurse.records import describe_progress, failure_reason, partial_folder, run_status

    state = run_status(run)
    if state == "absent":
        raise InputError("no run here (nor an unfinished .partial folder beside it)", run)
    detail = "" if state == "finished" else f": {describe_progress(partial_folder(run))}"
    console.print(f"{run}: {state}{detail}", soft_wrap=True)
    reason = failure_reason(run) if state == "failed" else None
    if reason:
        console.print(f"failed with: {reason}", soft_wrap=True, markup=False)
    if state in ("interrupted", "failed"):
        console.print(f"continue it with: revcurse train --resume {run}", soft_wrap=True)
    if state == "failed":
        console.print("or, to change its config, start it again with --overwrite", soft_wrap=True)


@app.command()
def compare(
    cures: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated arms: paraphrase, bidirectional, reverse-token, reverse-word, reverse-entity, "
            "reverse-segment, mlm-u; join with + to compose (reverse-entity+paraphrase). The baseline runs too."
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per arm (the same worlds in every arm).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder; default runs/compare-<date>-<time>.")] = None,
    name: NameOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    jobs: Annotated[int, typer.Option(help="Runs side by side in single-threaded processes.")] = 2,
    allow_pickle: AllowPickleOption = False,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the interrupted comparison DIR (its --out) with its own config and arms."),
    ] = None,
) -> None:
    """Baseline and cures side by side: accuracy per cure, subset and asked direction, with 95% intervals.

    Writes compare.json (tidy records with a `cure` field; the baseline is `none`), compare.md, compare.png
    (a bar chart) and one run folder per arm (cure-<arm>/).
    """
    from revcurse.compare import compare_table, load_started_comparison, parse_arms, run_compare
    from revcurse.paths import output_folder
    from revcurse.records import resumable_folder

    overrides = with_allow_pickle(list(set_ or []), allow_pickle)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    if resume is not None:
        refuse_beside_resume(cures=cures, config=config, set=set_, seeds=seeds, out=out, name=name,
                             allow_pickle=allow_pickle, overwrite=overwrite)
        out = resume
        run_config, arms = load_started_comparison(resumable_folder(resume))
    elif cures is None:
        raise InputError("--cures is required (e.g. --cures reverse-entity,paraphrase); see --help")
    else:
        out = output_folder(out, name, f"compare-{datetime.now():%Y%m%d-%H%M%S}")
        arms = parse_arms(cures)
        run_config = load_config(config, overrides)
    outcome = run_compare(
        run_config, arms, out, overwrite=overwrite, show_progress=not quiet, log=console.print, processes=jobs,
        resume=resume is not None,
    )
    console.print(compare_table(outcome.records, title=f"Cures compared over {run_config.seeds} seed(s)"))
    console.print(f"folder: {outcome.folder} (compare.json, compare.md, compare.png)")


@app.command()
def show(run: Annotated[Path, typer.Argument(help="A run folder written by `revcurse demo`.")]) -> None:
    """Print the result table of a finished run from its metrics.json (the model is not run again)."""
    from revcurse.report import check_records, result_table
    from revcurse.report_page import read_json

    metrics = run / "metrics.json"
    if not metrics.is_file():
        raise InputError("not a finished run folder: expected metrics.json", run)
    records = check_records(read_json(metrics), metrics)
    console.print(result_table(records, title=str(run)))


@app.command()
def calibrate(
    run: Annotated[Path, typer.Argument(help="A finished run folder (demo, train, probe-remote, a compare arm).")],
    draws: Annotated[int, typer.Option(min=1, help="Placebo draws per (subset, asked) group.")] = 1000,
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5, help="Significance level of each test.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the placebo draws.")] = 0,
) -> None:
    """How often the run's tests find knowledge that is not there: their false-positive rate under a placebo.

    \b
    Each draw swaps every fact's correct target for another fact's target in
    the same phrasing (it fits the prompt's form, but names a relation the
    model never saw), scores it against the remaining distractors from the
    run's predictions.jsonl (the model is not run again), and runs the log p
    and rank tests as on real probes. A test whose rate is near alpha can be
    trusted on this run; one far above it finds differences of form, not
    knowledge.
    """
    from revcurse.metrics import placebo_rejections
    from revcurse.records import read_probe_runs
    from revcurse.report import ASKED_LABEL, TEST_LABEL, grid_table

    runs = read_probe_runs(run)
    records = placebo_rejections(runs, draws=draws, alpha=alpha, seed=seed)
    rows = []
    for record in records:
        rows.append([
            record["subset"], ASKED_LABEL.get(record["asked"], record["asked"]), "yes" if record["trained"] else "no",
            TEST_LABEL.get(record["test"], record["test"]),
            f"{record['rejections']}/{record['draws']}",
            f"{record['rate']:.3f} [{record['ci95_low']:.3f}, {record['ci95_high']:.3f}]",
        ])
    header = ["subset", "asked", "trained", "test", "rejections", "rate [95% CI]"]
    console.print(grid_table(f"Placebo rejection rate at alpha={alpha}: {run}", header, rows))
    worst = max((r["rate"] for r in records if r["draws"] and r["test"] != "paper_t"), default=float("nan"))
    limit = alpha + 0.02
    console.print(f"randomization tests: highest rate {worst:.3f} (a calibrated test stays near {alpha}; revcurse "
                  f"asks <= {limit:.2f}); the paper's t-test is shown for comparison")


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write, in the paper's Experiment 1 layout.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the world.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Write a made-up world in the paper's layout (p2d_*, d2p_*, both_*, *_reverse_*, all_prompts_train, ...)."""
    from revcurse.corpus import build_corpus
    from revcurse.paper_format import write_experiment1
    from revcurse.world import make_celebrities

    run_config = load_config(config, list(set_ or []))
    world = make_celebrities(run_config.world.facts_per_subset, run_config.world.background, seed=seed)
    corpus = build_corpus(
        world,
        run_config.corpus.train_phrasings,
        run_config.corpus.held_out_phrasings,
        run_config.corpus.background_phrasings,
        seed=seed,
    )
    try:
        write_experiment1(corpus, out, seed=seed, overwrite=overwrite)
    except FileExistsError:
        raise InputError("folder exists; pass --overwrite to replace it", out) from None
    console.print(f"wrote {len(corpus.documents)} training documents and {len(corpus.probes)} probes to {out}")


@app.command()
def export(
    format_: Annotated[
        str, typer.Option("--format", "-f", help="lm-eval, openai-chat, trl or paper (see above).", show_default=False)
    ],
    out: Annotated[Path, typer.Option(help="Folder to write; refused if it exists unless --overwrite.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed whose world to export; default the config's seed.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Export one seed's world as training sees it (config, phrasings, cures) for other tools.

    \b
    lm-eval      lm-evaluation-harness task folder, probes only (held-out
                 phrasings): per subset and asked direction a greedy
                 exact-match task (gen) and a likelihood task over all
                 targets of that group (mc). Run it with
                 lm_eval --model hf --model_args pretrained=RUN/seed-0/model
                 --include_path DIR --tasks revcurse
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
    result = export_world(run_config, format_, out, seed=seed, overwrite=overwrite)
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


@app.command()
def parents(
    pairs: Annotated[Path, typer.Argument(help="The paper's parent_child_pairs.csv (child,parent,parent_type,...).")],
    model: Annotated[str, typer.Option(help="A local causal LM folder (transformers, safetensors weights).")],
    samples: Annotated[int, typer.Option(min=1, help="Sampled answers per question.")] = 10,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 answers greedily.")] = 1.0,
    limit: Annotated[int | None, typer.Option(min=1, help="Ask only the first N rows (the file still counts).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest sampled answer, in tokens.")] = 24,
    distractors: Annotated[int, typer.Option(min=0, help="Other names of the file scored against the answer.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the samples and of the distractor draw.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/parents-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    allow_pickle: AllowPickleOption = False,
    strict: Annotated[
        bool,
        typer.Option(
            help=strict_help(
                "a row with an empty child or parent, a parent_type other than mother or father, a row repeating "
                "an earlier one (the first is kept)",
                "a file that is not UTF-8 or CSV, an empty file, a missing column, a row with the wrong number of "
                "fields, a can_reverse other than True, False or empty, no usable row left",
            )
        ),
    ] = False,
) -> None:
    """Experiment 2: ask "Who is X's mother/father?" and "Name a child of Y." of a model, in chat and completion
    style, by sampling and by log-prob; parent vs child with 95% intervals and paired tests.

    Writes a run folder: parents.json (tidy records), answers.jsonl (every question, prompt and sampled answer),
    report.md, run.json and skipped.jsonl (unusable rows left out; see --strict).
    """
    import platform
    import time

    import torch
    import transformers

    import revcurse
    from revcurse.config import ModelConfig
    from revcurse.errors import warn_skipped, write_skipped
    from revcurse.model import load_checkpoint
    from revcurse.parents import (
        markdown_report,
        parents_calibration,
        parents_tables,
        read_parent_child_pairs,
        run_parents,
    )
    from revcurse.probe import HFBackend, MaskedLMBackend
    from revcurse.records import run_folder

    read = read_parent_child_pairs(pairs, strict)
    all_pairs = read.pairs
    warn_skipped(read.skipped, total=len(all_pairs) + len(read.skipped))
    asked = all_pairs[:limit] if limit else all_pairs
    out = out or Path("runs") / f"parents-{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists() and not overwrite:  # refuse before loading a model, not after
        raise InputError("run folder exists; pass --overwrite to replace it", out)
    transformers.utils.logging.disable_progress_bar()
    start = time.perf_counter()
    lm, tokenizer = load_checkpoint(ModelConfig(checkpoint=model, allow_pickle=allow_pickle), what="--model")
    bidirectional = getattr(lm.config, "is_causal", True) is False  # an MLM-U run's model
    backend = (MaskedLMBackend if bidirectional else HFBackend)(lm, tokenizer)
    load_seconds = time.perf_counter() - start
    run = run_parents(
        asked, backend, tokenizer, n_samples=samples, temperature=temperature, max_new_tokens=max_new_tokens,
        seed=seed, n_distractors=distractors, reference=all_pairs, show_progress=not quiet,
    )
    summary = {
        "pairs_file": str(pairs), "rows": len(all_pairs), "rows_asked": len(asked), "skipped_lines": len(read.skipped),
        "model": model,
        "parameters": sum(p.numel() for p in lm.parameters()), "samples": samples, "temperature": temperature,
        "max_new_tokens": max_new_tokens, "distractors": distractors, "seed": seed, "rendering": run.rendering,
        "backend": type(backend).__name__, "seconds": {"load": load_seconds, **run.seconds},
        "versions": {"revcurse": revcurse.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
    }
    with run_folder(out, overwrite) as staging:
        (staging / "parents.json").write_text(json.dumps(run.records, indent=1), encoding="utf-8")
        calibration = parents_calibration(run.answers, seed=seed)  # the tests under a placebo, as Exp 1's
        (staging / "calibration.json").write_text(json.dumps(calibration, indent=1), encoding="utf-8")
        with open(staging / "answers.jsonl", "w", encoding="utf-8") as handle:
            for answer in run.answers:
                handle.write(json.dumps(answer, ensure_ascii=False) + "\n")
        (staging / "report.md").write_text(markdown_report(run.records, summary), encoding="utf-8")
        (staging / "run.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        write_skipped(staging, read.skipped)
    results, tests = parents_tables(run.records, title=f"Parent vs child: {model}, {len(asked)} rows")
    console.print(results)
    console.print(tests)
    console.print(
        f"sampled {run.seconds['sample']:.0f} s, log-prob {run.seconds['logprob']:.0f} s; chat prompts: "
        f"{run.rendering}; run folder: {out} (report: {out}/report.md)"
    )


@app.command()
def audit(
    facts: Annotated[Path, typer.Argument(help="Your facts: .csv with a subject,relation,object header, or .jsonl.")],
    templates: Annotated[
        Path | None, typer.Option(help="YAML of per-relation statement / question / reverse_question templates.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/audit-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    allow_pickle: AllowPickleOption = False,
    strict: Annotated[
        bool,
        typer.Option(
            help=strict_help(
                "a fact with an empty subject, relation or object, a fact given again (the first is kept)",
                "a file type other than .csv or .jsonl, a file that is not UTF-8, CSV or JSON lines, a missing "
                "column or field, a row with the wrong number of values, a field that is not text, no usable fact "
                "left",
            )
        ),
    ] = False,
) -> None:
    """Your own facts: train on them forward only, then ask each one forward and in reverse.

    FACTS is a CSV with a header (extra columns are ignored) ...
        subject,relation,object
        Orla Fenwright,wrote,The Salt Cartographer
        Corwin Ashgrove,was born in,Pellmarch
    ... or JSONL, one fact a line:
        {"subject": "Orla Fenwright", "relation": "wrote",
         "object": "The Salt Cartographer"}

    --templates FILE.yaml phrases each relation with {subject}, {object} and
    {relation}; a list of statements gives several training phrasings:
        wrote:
          statement:
            - "{subject} wrote {object}."
            - "{subject} is the author of {object}."
          question: "Q: Which book did {subject} write? A:"
          reverse_question: "Q: Who wrote {object}? A:"
    Defaults: statement "{subject} {relation} {object}."; forward question:
    the statement up to its object (so it measures recall of the trained
    text, not generalisation); reverse question
    "Who or what {relation} {object}? Answer:".

    Trains a tiny model from scratch, or fine-tunes --set model.checkpoint=DIR.
    Prints each fact's forward and reverse answer (✓/✗) and writes a run
    folder: audit.jsonl, audit.md, config.yaml, skipped.jsonl, model/. A fact
    with an empty field or given twice is skipped with a warning naming file
    and line (--strict refuses it); a bad file (missing column, wrong number
    of values, unknown placeholder) exits 2 with the file and line. Example:
        revcurse audit configs/own-facts-example.csv \\
            --templates configs/own-facts-templates.yaml
    """
    from rich.table import Table

    from revcurse.own_facts import FORWARD, REVERSE, run_audit, summary_line

    run_config = load_config(config, with_allow_pickle(list(set_ or []), allow_pickle))
    out = out or Path("runs") / f"audit-{datetime.now():%Y%m%d-%H%M%S}"
    result = run_audit(
        facts, templates, run_config, out, overwrite, show_progress=not quiet, log=console.print, strict=strict
    )
    summary = result.summary
    table = Table(title=f"Own facts: {summary['model']}, {summary['parameters']:,} parameters")
    for column in ("line", "fact", "forward answer", "reverse answer"):
        table.add_column(column)
    by_fact: dict[int, dict] = {}
    for row in result.rows:
        by_fact.setdefault(row.line, {})[row.direction] = row
    for line, pair in by_fact.items():
        cells = [
            f"[green]✓[/] {pair[d].answer.strip()}" if pair[d].correct else f"[red]✗[/] {pair[d].answer.strip()}"
            for d in (FORWARD, REVERSE)
        ]
        fact = pair[FORWARD]
        table.add_row(str(line), f"{fact.subject} | {fact.relation} | {fact.object}", *cells, end_section=False)
    console.print(table)
    console.print(summary_line(summary))
    console.print(
        f"trained {summary['train_seconds']:.0f} s on {summary['documents']} documents, probed "
        f"{summary['probe_seconds']:.0f} s; run folder: {result.folder} (report: {result.folder}/audit.md)"
    )


@app.command()
def families(
    config: ConfigOption = None,
    set_: SetOption = None,
    fractions: Annotated[
        str, typer.Option(help="Comma-separated fractions r of families that also get parent-side text.")
    ] = "0,0.01,0.05,0.1,0.25,0.5",
    count: Annotated[int, typer.Option("--families", help="Test families (probed).")] = 100,
    background: Annotated[int, typer.Option(help="Background families, stated both ways; never probed.")] = 100,
    seeds: Annotated[int | None, typer.Option(help="Seeds per fraction (95% intervals over seeds).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder; default runs/families-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Synthetic Experiment 2: how much parent-side text does a model need to name a parent's child?

    Every family's text names the parent from the child's side ("Ada Vale's mother is Mira Holt."); a fraction r
    of families also gets parent-side text ("Mira Holt has a child named Ada Vale."). A tiny model is trained
    from scratch per r and seed, then asked both ways with held-out questions. Writes families.json (tidy
    records with `fraction`), families.md, families.png (reverse accuracy against r) and predictions.jsonl.
    Without --config the model is a d64 tiny Llama trained 30 epochs (as configs/families.yaml).

    Example: revcurse families --seeds 3 --out runs/families
    """
    from revcurse.families import DEFAULT_OVERRIDES, SWEEP_HEADER, run_sweep, sweep_rows
    from revcurse.report import grid_table

    try:
        values = tuple(float(x) for x in fractions.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--fractions expects numbers like 0,0.1,0.5, got {fractions!r}") from None
    overrides = list(set_ or [])
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    run_config = load_config(config, overrides if config else [*DEFAULT_OVERRIDES, *overrides])
    out = out or Path("runs") / f"families-{datetime.now():%Y%m%d-%H%M%S}"
    outcome = run_sweep(run_config, out, values, count, background, overwrite=overwrite, log=console.print)
    title = f"Synthetic Experiment 2 over {run_config.seeds} seed(s): accuracy [95% CI]"
    console.print(grid_table(title, SWEEP_HEADER, sweep_rows(outcome.records)))
    console.print(f"folder: {outcome.folder} (families.json, families.md, families.png)")


@app.command()
def incontext(
    config: ConfigOption = None,
    set_: SetOption = None,
    episodes: Annotated[
        int, typer.Option(help="Training episodes (facts in the prompt, then a question) over made-up people.")
    ] = 6000,
    facts_per_episode: Annotated[
        int, typer.Option(help="Facts in each episode's prompt (one is asked); the probes show as many.")
    ] = 1,
    train: Annotated[
        bool, typer.Option(help="Train (tiny model, or fine-tune model.checkpoint); --no-train probes as is.")
    ] = True,
    seeds: Annotated[int | None, typer.Option(help="Seeds (95% intervals over seeds).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder; default runs/incontext-<date>-<time>.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    allow_pickle: AllowPickleOption = False,
) -> None:
    """In-context control: the reverse question with the fact in the prompt, against the same question asked of
    the weights.

    The tiny model trains on Experiment 1's corpus plus episodes over made-up people ("Facts: ... Question: Who
    is ...? Answer: ..."), so it learns to read its prompt. Then each fact under test is given in the prompt,
    stated in its trained direction beside a distractor, and asked in both directions; the same questions
    without the facts ask the weights. For any model: --set model.checkpoint=DIR --no-train.

    Example: revcurse incontext --seeds 3 --out runs/incontext
    """
    from revcurse.incontext import DEFAULT_OVERRIDES as INCONTEXT_DEFAULTS
    from revcurse.incontext import INCONTEXT_HEADER, EpisodeConfig, incontext_rows, run_incontext
    from revcurse.report import grid_table

    overrides = with_allow_pickle(list(set_ or []), allow_pickle)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    run_config = load_config(config, overrides if config else [*INCONTEXT_DEFAULTS, *overrides])
    if not train and run_config.model.checkpoint is None:
        raise InputError("--no-train needs a model to ask: --set model.checkpoint=DIR")
    out = out or Path("runs") / f"incontext-{datetime.now():%Y%m%d-%H%M%S}"
    outcome = run_incontext(
        run_config, out, EpisodeConfig(episodes, facts_per_episode), train, overwrite, not quiet, console.print
    )
    title = f"In context vs in weights over {run_config.seeds} seed(s): accuracy"
    console.print(grid_table(title, INCONTEXT_HEADER, incontext_rows(outcome.records)))
    console.print(f"folder: {outcome.folder} (incontext.json, incontext.md, predictions.jsonl)")


@app.command()
def instructions(
    config: ConfigOption = None,
    set_: SetOption = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds (new questions and models; 95% t intervals).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/instructions-<date>-<time>.")] = None,
    from_: Annotated[
        Path | None, typer.Option("--from", help="Train and probe on a folder in the paper's instruction layout.")
    ] = None,
    write: Annotated[
        Path | None, typer.Option(help="Only write the generated data (first seed, first arm) in the paper's layout.")
    ] = None,
    control: Annotated[
        bool, typer.Option(help="Also run the question-first control on the same questions (twice the time).")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    strict: Annotated[
        bool,
        typer.Option(
            help=strict_help(
                "in a --from folder, an example with an empty prompt or answer, an example whose id an earlier one has "
                "(the first is kept), an unrealized example that no guidance answers",
                "a missing or empty file, a line that is not JSON or misses or mistypes a field, an example with "
                "other than one id, a 'realized' flag contradicting its file, an id no example has, a held-out "
                "example in all.jsonl, no usable example left",
            )
        ),
    ] = False,
) -> None:
    """Experiment 3, reversing instructions: guidances give each answer before its question; the realized questions
    are also shown as Q/A examples, the unrealized ones are held out and asked.

    Runs the paper's answer-first guidances (with --control also question-first ones on the same questions) and
    prints realized and unrealized accuracy (95% interval) with the likelihood test. Writes config.yaml,
    instructions.json (tidy records), predictions.jsonl, report.md and seed-N/ARM/{data,model}.

    Example: revcurse instructions --seeds 3 --out runs/instructions
    """
    from revcurse.instructions import (
        generate_data,
        instructions_table,
        load_instructions_config,
        run_instructions,
        write_instructions,
    )

    overrides = list(set_ or [])
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    run_config = load_instructions_config(config, overrides)
    if control and "question_first" not in run_config.instructions.orders:
        section = run_config.instructions
        orders = [*section.orders, "question_first"]
        run_config = run_config.model_copy(update={"instructions": section.model_copy(update={"orders": orders})})
    if write is not None:
        order = run_config.instructions.orders[0]
        data = generate_data(run_config, run_config.seed, order)
        write_instructions(data, write, overwrite=overwrite)
        console.print(
            f"wrote {len(data.train)} training lines ({len(data.guidances)} guidance documents, guidances "
            f"{order.replace('_', ' ')}), {len(data.realized)} realized and {len(data.unrealized)} unrealized "
            f"examples to {write}"
        )
        return
    out = out or Path("runs") / f"instructions-{datetime.now():%Y%m%d-%H%M%S}"
    outcome = run_instructions(run_config, out, from_, overwrite, not quiet, console.print, strict)
    summary = outcome.summary
    console.print(
        instructions_table(
            outcome.records,
            title=f"Reversing instructions: tiny Llama from scratch, {summary['parameters']:,} parameters, "
            f"{run_config.seeds} seed(s)",
        )
    )
    console.print(
        f"trained {summary['train_seconds']:.0f} s, probed {summary['probe_seconds']:.0f} s, wall "
        f"{summary['wall_seconds']:.0f} s; run folder: {outcome.folder} (report: {outcome.folder}/report.md)"
    )


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="A local causal-LM folder (config.json, *.safetensors).")],
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1 is reachable by others.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port (0: any free one).")] = 8000,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key; when set, requests must carry it.")
    ] = "REVCURSE_API_KEY",
    model_name: Annotated[str | None, typer.Option(help="Model id in the API; default: the folder's name.")] = None,
    allow_pickle: AllowPickleOption = False,
) -> None:
    """Serve a model folder over an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions).

    Completions give prompt log-probs with echo=true, max_tokens=0, logprobs=N, so any OpenAI-compatible client
    (revcurse.remote, lm-evaluation-harness's local-completions) can probe it. Ctrl-C stops it.
    """
    import logging

    from revcurse.serve import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_server(
        model_dir, host=host, port=port, api_key_env=api_key_env, model_name=model_name, log=console.print,
        allow_pickle=allow_pickle,
    )


@app.command(name="probe-remote")
def probe_remote(
    run: Annotated[Path, typer.Argument(help="A run folder (its config.yaml) or a YAML config: what to probe.")],
    url: Annotated[str, typer.Option(help="The OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")],
    model: Annotated[str | None, typer.Option(help="Model id on the server; default: its only model.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    seed: Annotated[int, typer.Option(help="Which seed's world to probe.")] = 0,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Prompts per request.")] = 16,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Greedy answer length; default: the config's probe.max_new_tokens, else 32.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write a results folder: config.yaml, metrics.json, predictions.jsonl, remote.json."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Probe a model behind any OpenAI-compatible server on a run's facts and print the table.

    The server must give prompt log-probs (completions with echo=true, max_tokens=0, logprobs=1), as vLLM and
    `revcurse serve` do. With --out the results are written too; remote.json records the URL and the *name* of
    the key's environment variable, never the key.
    """
    import time

    from revcurse.config import dump_config
    from revcurse.metrics import aggregate
    from revcurse.probe import run_probes
    from revcurse.records import run_folder
    from revcurse.remote import backend_from_url
    from revcurse.report import result_table
    from revcurse.runner import build_trial

    config_file = run / "config.yaml" if run.is_dir() else run
    if not config_file.is_file():
        raise InputError("expected a run folder with config.yaml, or a YAML config", run)
    if out is not None and out.exists() and not overwrite:  # refuse before probing, not after
        raise InputError("folder exists; pass --overwrite to replace it", out)
    run_config = load_config(config_file)
    trial = build_trial(run_config, seed)
    corpus, world_seed = trial.corpus, trial.world_seed
    start = time.perf_counter()
    with backend_from_url(url, model, api_key_env, concurrency=concurrency, batch_size=batch_size) as backend:
        # No tokenizer here to size answers by their targets' tokens: a fixed length, enough for names and roles.
        answer_tokens = max_new_tokens or run_config.probe.max_new_tokens or 32
        results = run_probes(
            backend, corpus, answer_tokens, show_progress=not quiet,
            distractors=run_config.probe.distractors, seed=world_seed,
        )
        name, base_url = backend.model, backend.base_url
    seconds = time.perf_counter() - start
    records = aggregate([(seed, world_seed, results)])
    console.print(result_table(records, title=f"Reversal curse: {name} at {url}"))
    console.print(f"{len(results)} probes in {seconds:.0f} s" + (f"; results: {out}" if out else ""))
    if out is None:
        return
    remote = {"url": base_url, "model": name, "api_key_env": api_key_env, "seed": seed, "world_seed": world_seed,
              "probes": len(results), "max_new_tokens": answer_tokens, "seconds": seconds}  # fmt: skip
    with run_folder(out, overwrite) as staging:
        (staging / "config.yaml").write_text(dump_config(run_config), encoding="utf-8")
        (staging / "metrics.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
        with open(staging / "predictions.jsonl", "w", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps({"seed": seed, **result.to_json()}, ensure_ascii=False) + "\n")
        (staging / "remote.json").write_text(json.dumps(remote, indent=1), encoding="utf-8")


@app.command()
def sweep(
    grid: Annotated[
        list[str],
        typer.Option(help="A grid dimension KEY=V1,V2,... (repeatable; the grid is their product). See above."),
    ],
    out: Annotated[Path, typer.Option(help="Sweep folder; run the same command again to resume it.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per cell (95% intervals over seeds).")] = None,
    jobs: Annotated[int, typer.Option(help="Cells side by side in processes of train.threads // jobs threads.")] = 1,
    plot_x: Annotated[
        str | None,
        typer.Option(help="Grid key on the plot's x axis, or 'parameters'; default the first key (parameters, log "
                     "axis, for a model size key)."),
    ] = None,
    metric: Annotated[str, typer.Option(help="Plotted metric: accuracy, rank1, mrr or likelihood_diff.")] = "accuracy",
    overwrite: Annotated[bool, typer.Option(help="Replace the folder, finished cells included.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars (with --jobs 1; workers never show them).")] = False,
    allow_pickle: AllowPickleOption = False,
) -> None:
    """Run Experiment 1 over a grid of config values: one run folder per cell, one tidy table, one plot.

    \b
    --grid KEY=V1,V2,...   any config key; values parsed as YAML, as --set
                           e.g. --grid train.epochs=2,5,10
    --grid K1,K2=A1:A2,B1:B2
                           keys that move together: commas between keys,
                           colons between their values (two cells here)
                           e.g. --grid model.hidden_size,model.intermediate_size=64:256,96:384
    --grid size=xs,s,m,l   model presets (hidden, intermediate, layers,
                           heads): xxs 16/64/1/2, xs 32/128/2/2,
                           s 64/256/2/4, m 96/384/2/4 (default model),
                           l 160/640/2/4, xl 256/1024/4/8
    --grid cures=none,reverse-entity,reverse-entity+paraphrase
                           arms as in `revcurse compare`
    Several --grid options give their product.

    \b
    Writes DIR/sweep.json (grid and base config), DIR/cells/<slug>/ (one run
    folder per cell), DIR/sweep.csv and DIR/sweep.parquet (every metric
    record of every cell + a column per grid key + parameters), sweep.md and
    sweep.png. Interrupted? Run the same command again: finished cells are
    skipped, the cut-off one resumes from its checkpoint. A different grid or base
    config in the same DIR is refused unless --overwrite. Several processes
    may run the same sweep at once: a lock per cell (DIR/.locks/) shares the
    cells out, each runs once, and each process ends with the whole table.

    Example: revcurse sweep --grid size=xs,s,m,l --seeds 2 --jobs 2 --out runs/sweep-size
    """
    from revcurse.sweep import run_sweep, summary_rows, sweep_table

    overrides = with_allow_pickle(list(set_ or []), allow_pickle)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    outcome = run_sweep(
        config, overrides, list(grid), out, jobs=jobs, overwrite=overwrite, show_progress=not quiet,
        log=console.print, plot_x=plot_x, metric=metric,
    )
    summary = summary_rows(outcome.rows, outcome.cells)
    seeds_per_cell = outcome.cells[0].config.seeds
    title = f"Sweep over {len(outcome.cells)} cells, {seeds_per_cell} seed(s) each: accuracy [95% CI]"
    console.print(sweep_table(summary, title))
    console.print(
        f"ran {len(outcome.ran)} cell(s), skipped {len(outcome.skipped)} finished"
        + (f", {len(outcome.by_others)} run by another process" if outcome.by_others else "")
        + f"; folder: {outcome.folder} "
        "(sweep.csv, sweep.parquet, sweep.md, sweep.png, cells/)"
    )


@app.command()
def report(
    folders: Annotated[
        list[Path], typer.Argument(help="Run folders (`revcurse demo`) or compare folders (`revcurse compare`).")
    ],
    out: Annotated[
        Path | None, typer.Option(help="The page; default FOLDER/report.html (needed with several folders).")
    ] = None,
) -> None:
    """One self-contained HTML page (plots inline, no network) and a Markdown summary beside it (.md).

    Accuracy forward and reverse with 95% intervals, the likelihood of the correct vs the other targets, training
    loss per seed, the cures side by side (compare folders), and which facts fail in which direction with the
    model's answers. Several folders make one page with a section each. Reads the run files; runs no model.
    """
    from revcurse.report_page import write_report

    page = write_report(folders, out)
    console.print(f"report: {page} (summary: {page.with_suffix('.md')})")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one clear line and exit 2 (a run stopped by a diverging loss: 1); never a
    traceback."""
    try:
        app(args=argv)
    except (InputError, NonFiniteLoss) as error:
        # One unwrapped line, so file and line stay greppable (quoted user text may hold line breaks).
        print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)
        sys.exit(2 if isinstance(error, InputError) else 1)  # 1: the run failed (a diverging loss), not the input


if __name__ == "__main__":
    main()
