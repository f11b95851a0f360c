"""`revcurse parents`: Experiment 2 on real celebrities and their parents."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    AllowPickleOption,
    app,
    console,
    strict_help,
)
from revcurse.errors import InputError


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
