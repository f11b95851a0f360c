"""`revcurse instructions`: Experiment 3, reversing instructions, through the one runner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.cli.common import (
    AddressOption,
    ConfigOption,
    ExecutorOption,
    GpusPerTaskOption,
    MaxRetriesOption,
    SetOption,
    SlurmOption,
    app,
    console,
    default_out,
    executor_from,
    strict_help,
)
from revcurse.errors import InputError

ORDERS = ("answer_first", "question_first")  # --control: the paper's order, then the control beside it
ARM_FOLDER = "order-{}"  # a --control folder holds one run folder per order


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
        Path | None, typer.Option(help="Only write the first seed's generated data in the paper's layout.")
    ] = None,
    control: Annotated[
        bool, typer.Option(help="Also run the question-first control on the same questions (twice the time).")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    jobs: Annotated[int, typer.Option(help="Seeds (and with --control, orders) in parallel processes.")] = 1,
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
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    gpus_per_task: GpusPerTaskOption = None,
    max_retries: MaxRetriesOption = 2,
    slurm: SlurmOption = None,
) -> None:
    """Experiment 3, reversing instructions: guidances give each answer before its question; the realized questions
    are also shown as Q/A examples, the unrealized ones are held out and asked.

    Runs `revcurse train --set experiment=instructions` (the paper's answer-first guidances) and prints realized
    and unrealized accuracy (95% interval) with the likelihood test. With --control, one run folder per order
    (OUT/order-answer_first/, OUT/order-question_first/) on the same questions, and a side-by-side table
    (OUT/control.md); `revcurse show` and `revcurse report` read each.

    Example: revcurse instructions --seeds 3 --control --out runs/instructions
    """
    from revcurse.config import load_config

    where = executor_from(executor, jobs, address, gpus_per_task, max_retries, slurm)
    overrides = ["experiment=instructions", *(set_ or [])]
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    if from_ is not None:
        overrides.append(f"instructions.source={from_}")
    if strict:
        overrides.append("instructions.strict=true")
    run_config = load_config(config, overrides)
    if write is not None:
        _write_data(run_config, write, overwrite)
        return
    out = default_out(out, "instructions")
    if control:
        _run_control(run_config, out, overwrite, not quiet, where)
        return
    from revcurse.report import result_table
    from revcurse.runner import run_experiment

    outcome = run_experiment(run_config, out, overwrite, not quiet, console.print, where)
    console.print(result_table(outcome.records, title=_title(outcome.summary)))
    console.print(f"trained {outcome.summary['train_seconds']:.0f} s, probed {outcome.summary['probe_seconds']:.0f} "
                  f"s; run folder: {out} (report: {out}/report.md)")


def _title(summary: dict, what: str = "Reversing instructions") -> str:
    return (f"{what}: {summary['model']}, {summary['parameters']:,} parameters, "
            f"{len(summary['seeds'])} seed(s)")


def _write_data(config, folder: Path, overwrite: bool) -> None:
    """The first seed's data in the paper's layout, written atomically (``records.record_folder``)."""
    from revcurse.experiments.instructions import instruction_data
    from revcurse.instruction_data import write_instructions
    from revcurse.records import record_folder

    data, _ = instruction_data(config, config.seed)
    with record_folder(folder, overwrite, keep_status=False) as staging:
        write_instructions(data, staging)
    console.print(
        f"wrote {len(data.train)} training lines ({len(data.guidances)} guidance documents, guidances "
        f"{config.instructions.order.replace('_', ' ')}), {len(data.realized)} realized and {len(data.unrealized)} "
        f"unrealized examples to {folder}"
    )


def _run_control(config, out: Path, overwrite: bool, show_progress: bool, executor) -> None:
    """Both guidance orders over the same seeds (so the same questions), one run folder each, as compare does."""
    from revcurse.compare import run_arms
    from revcurse.config import dump_config
    from revcurse.records import record_folder
    from revcurse.report import arm_rows, grid_markdown, grid_table
    from revcurse.report_page import write_report
    from revcurse.runner import check_inputs

    if config.instructions.source != "generated":
        raise InputError("--control generates both guidance orders; a --from folder has its own: drop one of them")
    configs = {order: config.model_copy(update={"instructions": config.instructions.model_copy(
        update={"order": order})}) for order in ORDERS}  # fmt: skip
    check_inputs(configs[ORDERS[0]], console.print)
    arms: dict[str, list[dict]] = {}
    with record_folder(out, overwrite) as staging:
        (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        outcomes = run_arms({ARM_FOLDER.format(order): configs[order] for order in ORDERS}, staging, executor,
                            show_progress, console.print)
        for order, outcome in zip(ORDERS, outcomes.values()):
            arms[order.replace("_", " ")] = outcome.records
        header, rows = arm_rows(arms, "guidances")
        title = _title(outcome.summary, "Reversing instructions, both guidance orders")
        (staging / "control.md").write_text(grid_markdown(title, header, rows), encoding="utf-8")
        write_report([staging / ARM_FOLDER.format(order) for order in ORDERS], staging / "report.html")
    console.print(grid_table(title, header, rows))
    console.print(f"run folders: {', '.join(str(out / ARM_FOLDER.format(o)) for o in ORDERS)} (side by side: "
                  f"{out}/control.md, {out}/report.html)")
