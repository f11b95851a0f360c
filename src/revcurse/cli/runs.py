"""Commands that run, resume, compare, sweep and read run folders of any experiment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from revcurse.cli.common import (
    AddressOption,
    AllowPickleOption,
    ConfigOption,
    ExecutorOption,
    ExperimentOption,
    GpusPerTaskOption,
    MaxRetriesOption,
    NameOption,
    SetOption,
    SlurmOption,
    StrictOption,
    app,
    console,
    default_out,
    executor_from,
    refuse_beside_resume,
    with_allow_pickle,
    with_experiment,
)
from revcurse.config import load_config
from revcurse.errors import InputError

if TYPE_CHECKING:
    from revcurse.executors import Executor


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
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    gpus_per_task: GpusPerTaskOption = None,
    max_retries: MaxRetriesOption = 2,
    slurm: SlurmOption = None,
) -> None:
    """Experiment 1 end to end: made-up people -> training text -> a tiny model -> probes forward and reverse.

    Prints accuracy per subset and asked direction (95% interval) with the likelihood test, and writes a run
    folder: config.yaml, metrics.json (tidy records), predictions.jsonl, report.md and seed-N/model/.
    """
    where = executor_from(executor, jobs, address, gpus_per_task, max_retries, slurm)
    _run_config(config, set_, seeds, out, name, paper, overwrite, quiet, where, allow_pickle, None, "demo", strict)


@app.command()
def train(
    experiment: ExperimentOption = None,
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
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    gpus_per_task: GpusPerTaskOption = None,
    max_retries: MaxRetriesOption = 2,
    slurm: SlurmOption = None,
) -> None:
    """Train and probe an experiment (default Experiment 1, as `demo`), checkpointing so a killed run can resume.

    \b
    Checkpoints (weights, optimizer, scheduler, RNG states, data position) go to
    .RUN.partial/seed-N/checkpoints/ every train.checkpoint_minutes (default 5)
    and/or every train.checkpoint_every steps; the run folder RUN appears only
    when every seed has finished. After a crash or a kill:
        revcurse train --resume RUN
    continues from the last checkpoint; on CPU the final metrics equal those of
    an uninterrupted run. `revcurse status RUN` says whether a run is
    finished, running, interrupted or failed.

    \b
    Experiment trackers, offline, into RUN/trackers/:
        --set train.report_to=tensorboard,wandb,mlflow,trackio
    (loss, learning rate, tokens/s per step; then the final metrics and report.md).
    """
    if resume is not None:
        refuse_beside_resume(experiment=experiment)
    where = executor_from(executor, jobs, address, gpus_per_task, max_retries, slurm)
    _run_config(
        config, with_experiment(set_, experiment), seeds, out, name, paper, overwrite, quiet, where, allow_pickle,
        resume, "train", strict,
    )


def _run_config(
    config: Path | None,
    set_: list[str] | None,
    seeds: int | None,
    out: Path | None,
    name: str | None,
    paper: Path | None,
    overwrite: bool,
    quiet: bool,
    executor: Executor,
    allow_pickle: bool,
    resume: Path | None,
    command: str,
    strict: bool = False,
) -> None:
    """What `demo` and `train` share: load the config, run every seed of its experiment, print the result table."""
    from revcurse.records import load_started_config, resumable_folder
    from revcurse.report import parameters_text, result_table
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
        out = default_out(out, command, name)
        run_config = load_config(config, overrides)
    outcome = run_experiment(
        run_config, out, overwrite=overwrite, show_progress=not quiet, log=console.print, executor=executor,
        resume=resume is not None,
    )
    if not outcome.records:  # a data-parallel helper process (torchrun): the main process reports
        return
    summary = outcome.summary
    console.print(
        result_table(
            outcome.records,
            title=f"Reversal curse: {summary['model']}{parameters_text(summary.get('parameters'))}, "
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
    from revcurse.records import describe_progress, failure_reason, partial_folder, resume_command, run_status

    state = run_status(run)
    if state == "absent":
        raise InputError("no run here (nor an unfinished .partial folder beside it)", run)
    detail = "" if state == "finished" else f": {describe_progress(partial_folder(run))}"
    console.print(f"{run}: {state}{detail}", soft_wrap=True)
    reason = failure_reason(run) if state == "failed" else None
    if reason:
        console.print(f"failed with: {reason}", soft_wrap=True, markup=False)
    if state in ("interrupted", "failed"):
        console.print(f"continue it with: {resume_command(run)}", soft_wrap=True)
    if state == "failed":
        console.print("or, to change its config, start it again with --overwrite", soft_wrap=True)


@app.command()
def compare(
    cures: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated arms: paraphrase, bidirectional, reverse-token, reverse-word, reverse-entity, "
            "reverse-segment, identity-bridge, masked-finetune, mlm-u, mlm-P (masked-LM at a fixed P%, e.g. "
            "mlm-15); join with + to compose "
            "(reverse-entity+paraphrase). The baseline runs too."
        ),
    ] = None,
    experiment: ExperimentOption = None,
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
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    gpus_per_task: GpusPerTaskOption = None,
    max_retries: MaxRetriesOption = 2,
    slurm: SlurmOption = None,
) -> None:
    """Baseline and cures side by side: accuracy per cure, subset and asked direction, with 95% intervals.

    Writes compare.json (tidy records with a `cure` field; the baseline is `none`), compare.md, compare.png
    (a bar chart) and one run folder per arm (cure-<arm>/).
    """
    from revcurse.compare import load_started_comparison, parse_arms, run_compare
    from revcurse.records import resumable_folder
    from revcurse.report_compare import compare_table

    where = executor_from(executor, jobs, address, gpus_per_task, max_retries, slurm)
    overrides = with_allow_pickle(with_experiment(set_, experiment), allow_pickle)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    if resume is not None:
        refuse_beside_resume(cures=cures, experiment=experiment, config=config, set=set_, seeds=seeds, out=out,
                             name=name, allow_pickle=allow_pickle, overwrite=overwrite)
        out = resume
        run_config, arms = load_started_comparison(resumable_folder(resume))
    elif cures is None:
        raise InputError("--cures is required (e.g. --cures reverse-entity,paraphrase); see --help")
    else:
        out = default_out(out, "compare", name)
        arms = parse_arms(cures)
        run_config = load_config(config, overrides)
    outcome = run_compare(
        run_config, arms, out, overwrite=overwrite, show_progress=not quiet, log=console.print, executor=where,
        resume=resume is not None,
    )
    console.print(compare_table(outcome.records, title=f"Cures compared over {run_config.seeds} seed(s)"))
    console.print(f"folder: {outcome.folder} (compare.json, compare.md, compare.png)")


@app.command()
def show(
    run: Annotated[Path, typer.Argument(help="A run folder of any experiment (demo, train, a compare arm, a cell).")],
) -> None:
    """Print the result table of a finished run from its metrics.json (the model is not run again)."""
    from revcurse.report import check_records, result_table
    from revcurse.report_data import read_json
    from revcurse.versions import version_differences

    metrics = run / "metrics.json"
    if not metrics.is_file():
        raise InputError("not a finished run folder: expected metrics.json", run)
    records = check_records(read_json(metrics), metrics)
    console.print(result_table(records, title=str(run)))
    summary = read_json(run / "run.json") if (run / "run.json").is_file() else {}
    differences = version_differences(summary.get("versions") if isinstance(summary, dict) else None)
    if differences:
        console.print("[yellow]made with other versions than those installed:[/] " + "; ".join(differences)
                      + " (a rerun may not give the same numbers; `make demo`/`make test` install the lock)")


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
def sweep(
    grid: Annotated[
        list[str],
        typer.Option(help="A grid dimension KEY=V1,V2,... (repeatable; the grid is their product). See above."),
    ],
    out: Annotated[Path, typer.Option(help="Sweep folder; run the same command again to resume it.")],
    experiment: ExperimentOption = None,
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
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    gpus_per_task: GpusPerTaskOption = None,
    max_retries: MaxRetriesOption = 2,
    slurm: SlurmOption = None,
) -> None:
    """Run an experiment over a grid of config values: one run folder per cell, one tidy table, one plot.

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

    \b
    On a cluster (the folder on a file system every node sees):
        --executor ray [--address HEAD:6379]   each cell a Ray task
        --executor slurm --slurm partition=gpu --slurm time=120
    A cell whose worker dies is started again (--max-retries) and resumes
    from its checkpoint; DIR/attempts/<slug>.jsonl says where each ran.

    Example: revcurse sweep --grid size=xs,s,m,l --seeds 2 --jobs 2 --out runs/sweep-size
    """
    from revcurse.sweep import run_sweep
    from revcurse.sweep_tables import summary_rows, sweep_table

    overrides = with_allow_pickle(with_experiment(set_, experiment), allow_pickle)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    where = executor_from(executor, jobs, address, gpus_per_task, max_retries, slurm)
    outcome = run_sweep(
        config, overrides, list(grid), out, executor=where, overwrite=overwrite, show_progress=not quiet,
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
        list[Path], typer.Argument(help="Run folders (demo, train: any experiment) or compare folders (compare).")
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
