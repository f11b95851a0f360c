"""Sweep: the same experiment over a grid of config values, one resumable run folder per cell, one tidy table.

The paper says the curse is robust across model sizes; a sweep is how to check such a claim here. A grid is the
product of dimensions, each one ``--grid KEY=V1,V2,...``:

- ``KEY`` is any config key (``model.hidden_size``, ``train.epochs``, ``corpus.train_phrasings``, ``seed``);
  each value is parsed as YAML, exactly as ``--set KEY=VALUE`` would be;
- several keys that move together are joined by commas, their values by colons:
  ``model.hidden_size,model.intermediate_size=64:256,96:384`` is two cells, not four;
- ``size`` names model presets (``size=xs,s,m,l``: width, MLP width, layers and heads together, see sweep_grid.SIZES);
- ``cures`` takes arms as ``revcurse compare`` does: ``cures=none,reverse-entity,reverse-entity+paraphrase``.

Why one run folder per cell: ``runner.run_experiment`` writes a folder atomically, so after an interruption
every folder under ``cells/`` is a finished cell. Running the same sweep again skips them, resumes the cell that
was cut off from its last training checkpoint (``.SLUG.partial/``), and runs what is missing. ``sweep.json``
records the grid and the resolved base config, so a different sweep is refused in the same folder instead of
mixing with it.

Several processes may run the same sweep folder at once (two terminals, two machines on one file system): they
share the work. Each cell has a lock (``DIR/.locks/<slug>.lock``, filelock); a process claims a cell without
waiting, skips the cells another process holds, and at the end waits for those (running one itself if its holder
died). So every cell runs once, and every process ends with the whole table. Setting the folder up and writing
the tables take the sweep lock (``DIR/.locks/sweep.lock``), and each file is written beside and renamed.

``--executor ray|slurm`` runs each cell as a Ray task or a SLURM job (``revcurse.executors``), on machines that
see this folder at the same path. Nothing else changes: a task claims its cell's lock as a local worker does, so a
worker that dies mid-cell lets go of the lock, and the task's rerun (Ray's retry, a resubmitted job, or the same
command again) resumes the cell from its checkpoint. Layout::

    DIR/sweep.json            grid, resolved base config, seeds
    DIR/cells/<slug>/         one run folder per cell (config.yaml, metrics.json, run.json, seed-N/...)
    DIR/sweep.csv             every metric record of every cell + a column per grid key + parameters
    DIR/sweep.parquet         the same table (needs pyarrow: pip install 'revcurse[parquet]')
    DIR/sweep.md              one row per cell: accuracy per asked direction, trained or not
    DIR/sweep.png             a metric against a swept key, 95% intervals
    DIR/attempts/<slug>.jsonl every attempt at a cell: started/resumed, finished/failed, host, pid, Ray node
    DIR/.locks/               the sweep lock and one lock per cell (empty files; safe to delete when idle)
    DIR/.submitit/            with --executor slurm: submitit's job files (pickles, stdout, stderr)

Three modules: ``sweep_grid`` parses the grid into cells, this one schedules and runs them, ``sweep_tables``
writes the tables and the plot from the finished cells.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from revcurse.config import RunConfig, load_config
from revcurse.errors import InputError
from revcurse.executors import Executor, Finished, Task, as_executor, run_tasks, worker_identity
from revcurse.sweep_grid import CELLS, Cell, build_cells, parse_grid, resolve_plot_x, sweep_identity
from revcurse.sweep_tables import (
    PLOT_METRICS,
    plot_sweep,
    summary_rows,
    sweep_markdown,
    sweep_rows,
    write_tables,
    write_text,
)

SWEEP_FILE = "sweep.json"
LOCKS = ".locks"
ATTEMPTS = "attempts"
# What claiming a cell found: this process ran it, another process finished it, another process holds it.
RAN, DONE_ELSEWHERE, BUSY = "ran", "done elsewhere", "busy"


@dataclass
class SweepOutcome:
    folder: Path
    rows: list[dict]  # the tidy table
    cells: list[Cell]
    ran: list[str]  # slugs run this time
    skipped: list[str]  # slugs found finished
    by_others: list[str] = field(default_factory=list)  # slugs another process ran meanwhile


def _flatten(data: object, prefix: str = "") -> dict[str, object]:
    if isinstance(data, dict):
        flat: dict[str, object] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


def sweep_lock(out: Path) -> FileLock:
    """The lock around setting the folder up and writing the tables (not around training)."""
    return FileLock(out / LOCKS / "sweep.lock")


def cell_lock(out: Path, slug: str) -> FileLock:
    """Held by the one process running a cell, for as long as it runs it."""
    return FileLock(out / LOCKS / f"{slug}.lock")


def _is_held_elsewhere(lock: FileLock) -> bool:
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def prepare_folder(out: Path, identity: dict, overwrite: bool, log: Callable[[str], None]) -> None:
    """Create DIR and sweep.json, or check an existing sweep is the same one (under the sweep lock)."""
    sweep_file = out / SWEEP_FILE
    if out.exists() and not overwrite and not sweep_file.is_file() and not (out / LOCKS).is_dir() \
            and any(out.iterdir()):  # checked before .locks is made, so a folder that is refused stays as it was
        raise InputError("folder exists and is not a sweep (no sweep.json); choose another --out or pass --overwrite",
                         out)
    (out / LOCKS).mkdir(parents=True, exist_ok=True)
    with sweep_lock(out):
        if overwrite:
            busy = [p.stem for p in sorted((out / LOCKS).glob("*.lock"))
                    if p.name != "sweep.lock" and _is_held_elsewhere(FileLock(p))]
            if busy:
                raise InputError(f"another process is running cell(s) {busy} of this sweep: let it finish or stop "
                                 "it before --overwrite", out)
            log(f"--overwrite: removing the contents of {out}")
            for child in out.iterdir():
                if child.name != LOCKS:  # the locks stay: a lock file removed while held would lock nothing
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        _check_or_create(out, identity)


def _check_or_create(out: Path, identity: dict) -> None:
    sweep_file = out / SWEEP_FILE
    if sweep_file.is_file():
        try:
            previous = json.loads(sweep_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"not valid JSON ({error.msg}); pass --overwrite to start over", sweep_file) from None
        if previous.get("grid") != identity["grid"]:
            old = " ".join(f"--grid {','.join(d['keys'])}={','.join(':'.join(v) for v in d['values'])}"
                           for d in previous.get("grid", []))
            raise InputError(
                f"holds a sweep over a different grid ({old}); choose another --out or pass --overwrite to replace it",
                out,
            )
        before, now = _flatten(previous.get("base_config", {})), _flatten(identity["base_config"])
        changed = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
        if changed:
            details = ", ".join(f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in changed)
            raise InputError(
                f"holds a sweep with a different base config ({details}); choose another --out or pass --overwrite",
                out,
            )
    elif any(child.name != LOCKS for child in out.iterdir()):
        raise InputError("folder exists and is not a sweep (no sweep.json); choose another --out or pass --overwrite",
                         out)
    (out / CELLS).mkdir(parents=True, exist_ok=True)
    if not sweep_file.is_file():
        write_text(sweep_file, json.dumps(identity, indent=1))


def is_finished(folder: Path) -> bool:
    """run_experiment renames a cell into place only when done; run.json and metrics.json confirm it."""
    return (folder / "run.json").is_file() and (folder / "metrics.json").is_file()


def cell_cost(config: RunConfig) -> float:
    """Relative cost, for longest-first scheduling: documents seen x seeds x multiply-adds per token."""
    from revcurse.runner import training_work

    model = config.model
    per_token = model.layers * (4 * model.hidden_size**2 + 3 * model.hidden_size * model.intermediate_size)
    per_token += model.hidden_size * model.vocab_size  # the output layer
    return training_work(config, config.seed) * config.seeds * per_token


def record_attempt(out: Path, slug: str, event: str, **details: object) -> None:
    """One line of ``DIR/attempts/SLUG.jsonl``: what happened to the cell, when, and on which host, process and
    Ray node or SLURM job (only the cell's lock holder writes it). A killed worker leaves a start without an end."""
    line = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **worker_identity(), **details}
    (out / ATTEMPTS).mkdir(exist_ok=True)
    with open(out / ATTEMPTS / f"{slug}.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def run_cell(config: RunConfig, folder: Path, show_progress: bool = False, resume: bool = False) -> float:
    """Run one cell into its own run folder (atomic), or resume its killed run; returns wall seconds."""
    from revcurse.runner import run_experiment

    start = time.perf_counter()
    run_experiment(config, folder, overwrite=False, show_progress=show_progress, log=lambda *_: None, executor=1,
                   resume=resume, resume_command="running the same revcurse sweep command again")
    return time.perf_counter() - start


def claim_and_run(
    config: RunConfig, out: Path, slug: str, wait: bool, show_progress: bool = False,
    log: Callable[[str], None] | None = None, label: str = "", executor: str = "local",
) -> tuple[str, float, list[str]]:
    """Run a cell if no other process holds it: (RAN | DONE_ELSEWHERE | BUSY, seconds, log lines).

    ``wait``: wait for a holder to let go instead of answering BUSY; then the cell is finished, or its holder
    died and this process runs it. A worker process's entry point (its log lines come back in the result).
    Each attempt is recorded in ``DIR/attempts/SLUG.jsonl``: where it ran and how it ended.
    """
    from revcurse.records import describe_progress, partial_folder

    lines: list[str] = []

    def say(line: str) -> None:
        (log or lines.append)(line)

    lock = cell_lock(out, slug)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        return BUSY, 0.0, lines
    try:
        folder = out / CELLS / slug
        if is_finished(folder):
            return DONE_ELSEWHERE, 0.0, lines
        if folder.exists():  # not written by run_experiment: something else left it
            raise InputError("cell folder exists but is not a finished run; remove it to rerun that cell", folder)
        # Staging leftovers of this cell are a killed run's: no live process holds the cell (we do).
        for leftover in sorted((out / CELLS).glob(f".{slug}.tmp-*")) + sorted((out / CELLS).glob(f".{slug}.old-*")):
            say(f"removing the unfinished leftover {leftover.name} of an interrupted cell")
            shutil.rmtree(leftover, ignore_errors=True)
        partial = partial_folder(folder)
        if partial.is_dir() and not (partial / "config.yaml").is_file():  # killed before it had begun
            shutil.rmtree(partial, ignore_errors=True)
        resume = partial.is_dir()
        if resume:
            say(f"running {slug}{label}: resuming the interrupted cell ({describe_progress(partial)})")
        else:
            say(f"running {slug}{label}")
        record_attempt(out, slug, "resumed" if resume else "started", executor=executor)
        try:
            seconds = run_cell(config, folder, show_progress, resume=resume)
        except BaseException as error:
            record_attempt(out, slug, "failed", error=f"{type(error).__name__}: {error}")
            raise
        record_attempt(out, slug, "finished", seconds=round(seconds, 3))
        return RAN, seconds, lines
    finally:
        lock.release()


def run_sweep(
    config_path: Path | None,
    overrides: list[str],
    grid: list[str],
    out: Path,
    executor: Executor | int = 1,
    overwrite: bool = False,
    show_progress: bool = False,
    log: Callable[[str], None] = print,
    plot_x: str | None = None,
    metric: str = "accuracy",
) -> SweepOutcome:
    """Run every unfinished cell (longest first; ``executor``: where, an int is that many local processes), then
    write the table, Markdown and plot."""
    out = Path(out)
    dimensions = [parse_grid(spec) for spec in grid]
    cells = build_cells(config_path, overrides, dimensions)
    x_key = resolve_plot_x(plot_x, dimensions)
    if metric not in PLOT_METRICS:
        raise InputError(f"--metric must be one of {', '.join(PLOT_METRICS)}; got {metric!r}")
    executor = as_executor(executor).logging_into(out / ".submitit")
    base = load_config(config_path, overrides)
    prepare_folder(out, sweep_identity(dimensions, base), overwrite, log)
    skipped = [cell for cell in cells if is_finished(out / CELLS / cell.slug)]
    for cell in skipped:
        log(f"skipping {cell.slug}: finished in an earlier run")
    pending = [cell for cell in cells if cell not in skipped]
    pending.sort(key=lambda cell: -cell_cost(cell.config))  # longest first: the last cell does not run alone
    log(f"{len(cells)} cells ({len(skipped)} finished earlier, {len(pending)} to run), {executor.describe()}, "
        f"{base.seeds} seed(s) each")
    status = _run_pending(pending, out, executor, show_progress, log)
    with sweep_lock(out):  # another process of this sweep may be writing the same files
        rows = sweep_rows(out, cells)
        write_tables(rows, out, log)
        cell_summary = summary_rows(rows, cells)
        write_text(out / "sweep.md", sweep_markdown(cell_summary, base.seeds))
        plot_sweep(rows, [key for d in dimensions for key in d.keys], x_key, out / "sweep.png", metric)
    return SweepOutcome(out, rows, cells, [c.slug for c in pending if status[c.slug] == RAN],
                        [c.slug for c in skipped], [c.slug for c in pending if status[c.slug] == DONE_ELSEWHERE])


def _run_pending(
    pending: list[Cell], out: Path, executor: Executor, show_progress: bool, log: Callable[[str], None]
) -> dict[str, str]:
    """Run the cells no other process holds, then wait for (or take over) the held ones; slug -> status.

    A failed cell does not stop the others (their folders stay finished); its error is raised last.
    """
    failures: list[tuple[Cell, Exception]] = []
    status: dict[str, str] = {}
    for wait in (False, True):
        failed = {cell.slug for cell, _ in failures}
        todo = [cell for cell in pending if status.get(cell.slug, BUSY) == BUSY and cell.slug not in failed]
        if not todo:
            continue
        if wait:
            log(f"waiting for {len(todo)} cell(s) another process is running: {', '.join(c.slug for c in todo)}")
        if executor.runs_here(len(todo)):
            _run_here(todo, out, wait, show_progress, log, status, failures)
        else:
            _run_elsewhere(todo, out, executor, wait, log, status, failures)
    if failures:
        log(f"{len(failures)} cell(s) failed; the finished ones are kept: run the same command again to retry")
        raise failures[0][1]
    return status


def _report(cell: Cell, result: str, seconds: float, done: str, log: Callable[[str], None]) -> None:
    if result == RAN:
        log(f"finished {cell.slug} in {seconds:.0f} s ({done})")
    elif result == DONE_ELSEWHERE:
        log(f"{cell.slug} was finished by another process ({done})")
    else:
        log(f"another process is running {cell.slug}: back to it at the end ({done})")


def _run_here(
    todo: list[Cell], out: Path, wait: bool, show_progress: bool, log: Callable[[str], None],
    status: dict[str, str], failures: list[tuple[Cell, Exception]],
) -> None:
    for done, cell in enumerate(todo, start=1):
        try:
            result, seconds, _ = claim_and_run(cell.config, out, cell.slug, wait, show_progress, log,
                                               f" ({done}/{len(todo)})")
        except Exception as error:
            failures.append((cell, error))
            log(f"FAILED {cell.slug} ({done}/{len(todo)}): {error}")
            continue
        status[cell.slug] = result
        _report(cell, result, seconds, f"{done}/{len(todo)}", log)


def _run_elsewhere(
    todo: list[Cell], out: Path, executor: Executor, wait: bool, log: Callable[[str], None],
    status: dict[str, str], failures: list[tuple[Cell, Exception]],
) -> None:
    """Each cell a task of the executor (worker processes, Ray, SLURM); their log lines come back with them."""
    tasks = [Task(claim_and_run, (executor.task_config(cell.config), out.absolute(), cell.slug, wait, False, None,
                                  "", executor.kind), executor.threads(cell.config.train.threads),
                  cell.config.train.device, cell.slug) for cell in todo]
    log(f"running {len(todo)} cells, {executor.describe()}: {', '.join(c.slug for c in todo)}")

    def finished(task: Finished, done: int) -> None:
        cell = todo[task.index]
        if task.error is not None:
            failures.append((cell, task.error))
            log(f"FAILED {cell.slug} ({done}/{len(todo)}){_on(task)}: {task.error}")
            return
        result, seconds, lines = task.result
        for line in lines:
            log(line)
        status[cell.slug] = result
        _report(cell, result, seconds, f"{done}/{len(todo)}{_on(task)}", log)

    run_tasks(executor, tasks, finished, log)


def _on(task: Finished) -> str:
    return f", on {task.place()}" if task.where else ""
