"""`revcurse instructions`: Experiment 3, reversing instructions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    ConfigOption,
    SetOption,
    app,
    console,
    strict_help,
)


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
