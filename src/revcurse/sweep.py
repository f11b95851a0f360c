"""Sweep: the same experiment over a grid of config values, one resumable run folder per cell, one tidy table.

The paper says the curse is robust across model sizes; a sweep is how to check such a claim here. A grid is the
product of dimensions, each one ``--grid KEY=V1,V2,...``:

- ``KEY`` is any config key (``model.hidden_size``, ``train.epochs``, ``corpus.train_phrasings``, ``seed``);
  each value is parsed as YAML, exactly as ``--set KEY=VALUE`` would be;
- several keys that move together are joined by commas, their values by colons:
  ``model.hidden_size,model.intermediate_size=64:256,96:384`` is two cells, not four;
- ``size`` names model presets (``size=xs,s,m,l``: width, MLP width, layers and heads together, see SIZES);
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
the tables take the sweep lock (``DIR/.locks/sweep.lock``), and each file is written beside and renamed. Layout::

    DIR/sweep.json            grid, resolved base config, seeds
    DIR/cells/<slug>/         one run folder per cell (config.yaml, metrics.json, run.json, seed-N/...)
    DIR/sweep.csv             every metric record of every cell + a column per grid key + parameters
    DIR/sweep.parquet         the same table (needs pyarrow: pip install 'revcurse[parquet]')
    DIR/sweep.md              one row per cell: accuracy per asked direction, trained or not
    DIR/sweep.png             a metric against a swept key, 95% intervals
    DIR/.locks/               the sweep lock and one lock per cell (empty files; safe to delete when idle)
"""

from __future__ import annotations

import csv
import itertools
import json
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

import yaml
from filelock import FileLock, Timeout
from rich.table import Table

from revcurse.config import RunConfig, load_config
from revcurse.errors import InputError
from revcurse.metrics import t_interval

SIZE_KEY = "size"
CURES_KEY = "cures"
PARAMETERS = "parameters"
# Model presets for ``--grid size=...``: (hidden, intermediate, layers, heads). "m" is the embedded default.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "xxs": (16, 64, 1, 2),
    "xs": (32, 128, 2, 2),
    "s": (64, 256, 2, 4),
    "m": (96, 384, 2, 4),
    "l": (160, 640, 2, 4),
    "xl": (256, 1024, 4, 8),
}
SIZE_FIELDS = ("model.hidden_size", "model.intermediate_size", "model.layers", "model.heads")
MODEL_SIZE_KEYS = {SIZE_KEY, *SIZE_FIELDS}
SWEEP_FILE = "sweep.json"
CELLS = "cells"
LOCKS = ".locks"
# What claiming a cell found: this process ran it, another process finished it, another process holds it.
RAN, DONE_ELSEWHERE, BUSY = "ran", "done elsewhere", "busy"
PROPORTION_METRICS = ("accuracy", "rank1", "mrr")
PLOT_METRICS = (*PROPORTION_METRICS, "likelihood_diff")
SUBSET_SHORT = {"NameToDescription": "N2D", "DescriptionToName": "D2N"}
ASKED_SHORT = {"name_to_description": "n→d", "description_to_name": "d→n"}
ASKED_LONG = {"name_to_description": "name→desc", "description_to_name": "desc→name"}


@dataclass(frozen=True)
class Dimension:
    """One ``--grid`` option: the keys that move together and, per step, one raw value per key."""

    keys: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]

    @property
    def spec(self) -> str:
        return ",".join(self.keys) + "=" + ",".join(":".join(step) for step in self.values)


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its raw values per key, its folder name and its config."""

    index: int
    values: dict[str, str]
    slug: str
    config: RunConfig


@dataclass
class SweepOutcome:
    folder: Path
    rows: list[dict]  # the tidy table
    cells: list[Cell]
    ran: list[str]  # slugs run this time
    skipped: list[str]  # slugs found finished
    by_others: list[str] = field(default_factory=list)  # slugs another process ran meanwhile


def parse_grid(spec: str) -> Dimension:
    """``KEY=V1,V2`` or ``K1,K2=A1:A2,B1:B2`` -> a Dimension; bad input is an InputError saying what is expected."""
    keys_text, sep, values_text = spec.partition("=")
    example = "e.g. --grid model.hidden_size=32,64 or --grid model.hidden_size,model.intermediate_size=32:128,64:256"
    if not sep:
        raise InputError(f"--grid {spec!r}: expected KEY=V1,V2,... ({example})")
    keys = tuple(key.strip() for key in keys_text.split(","))
    if not all(keys) or not keys_text.strip():
        raise InputError(f"--grid {spec!r}: empty key before '=' ({example})")
    if len(set(keys)) != len(keys):
        raise InputError(f"--grid {spec!r}: a key is named twice")
    for key in keys:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
            raise InputError(f"--grid {spec!r}: {key!r} is not a config key like model.hidden_size")
    if (SIZE_KEY in keys or CURES_KEY in keys) and len(keys) > 1:
        raise InputError(f"--grid {spec!r}: '{SIZE_KEY}' and '{CURES_KEY}' take a dimension of their own")
    steps = [step.strip() for step in values_text.split(",")]
    if not values_text.strip() or not all(steps):
        raise InputError(f"--grid {spec!r}: expected one or more comma-separated values after '=' ({example})")
    values = []
    for step in steps:
        parts = tuple(part.strip() for part in step.split(":")) if len(keys) > 1 else (step,)
        if len(parts) != len(keys) or not all(parts):
            raise InputError(
                f"--grid {spec!r}: value {step!r} needs {len(keys)} colon-separated parts, one per key "
                f"({', '.join(keys)})"
            )
        values.append(parts)
    if len(set(values)) != len(values):
        raise InputError(f"--grid {spec!r}: a value is listed twice")
    if SIZE_KEY in keys:
        unknown = [v[0] for v in values if v[0] not in SIZES]
        if unknown:
            raise InputError(f"--grid {spec!r}: unknown size(s) {unknown}; presets: {', '.join(SIZES)}")
    if CURES_KEY in keys:
        from revcurse.compare import check_arm

        for value in values:
            check_arm(value[0], f"--grid {spec!r}")  # raises on an unknown cure or an empty name beside '+'
    return Dimension(keys, tuple(values))


def check_dimensions(dimensions: list[Dimension]) -> None:
    """A key may be swept by one dimension only."""
    seen: dict[str, str] = {}
    for dimension in dimensions:
        for key in dimension.keys:
            if key in seen:
                raise InputError(f"--grid: {key!r} is swept twice ({seen[key]!r} and {dimension.spec!r})")
            seen[key] = dimension.spec
    if not dimensions:
        raise InputError("sweep needs at least one --grid KEY=V1,V2,...")
    if SIZE_KEY in seen:
        clash = sorted(set(seen) & set(SIZE_FIELDS))
        if clash:
            raise InputError(f"--grid: '{SIZE_KEY}' sets {', '.join(SIZE_FIELDS)}; do not sweep {clash} beside it")


def cell_slug(values: dict[str, str]) -> str:
    """A readable folder name: ``hidden_size-64__epochs-5`` (the last part of each key; the full key if two clash)."""
    short = {key: key.rsplit(".", 1)[-1] for key in values}
    clashing = {name for name in short.values() if list(short.values()).count(name) > 1}
    parts = []
    for key, raw in values.items():
        name = key if short[key] in clashing else short[key]
        value = re.sub(r"[^A-Za-z0-9.+-]+", "-", raw).strip("-.") or "empty"
        parts.append(f"{name}-{value}")
    return "__".join(parts)


def cell_overrides(values: dict[str, str]) -> list[str]:
    """The ``key=value`` overrides of a cell (size presets expanded; cures are applied after loading)."""
    overrides = []
    for key, raw in values.items():
        if key == SIZE_KEY:
            overrides += [f"{field}={value}" for field, value in zip(SIZE_FIELDS, SIZES[raw])]
        elif key != CURES_KEY:
            overrides.append(f"{key}={raw}")
    return overrides


def build_cells(config_path: Path | None, overrides: list[str], dimensions: list[Dimension]) -> list[Cell]:
    """Every cell's config, validated now (before any training), in grid order."""
    from revcurse.compare import arm_config
    from revcurse.model import check_checkpoint

    check_dimensions(dimensions)
    cells = []
    for index, steps in enumerate(itertools.product(*(d.values for d in dimensions))):
        values = {key: raw for d, step in zip(dimensions, steps) for key, raw in zip(d.keys, step)}
        try:
            config = load_config(config_path, [*overrides, *cell_overrides(values)])
            check_checkpoint(config.model)  # a missing or refused checkpoint stops the sweep before any cell runs
        except InputError as error:
            raise InputError(f"grid cell {values}: {error}") from None
        if CURES_KEY in values:
            config = arm_config(config, values[CURES_KEY])
        cells.append(Cell(index, values, cell_slug(values), config))
    slugs = [cell.slug for cell in cells]
    duplicates = sorted({slug for slug in slugs if slugs.count(slug) > 1})
    if duplicates:
        raise InputError(f"--grid: different values give the same cell folder name(s) {duplicates}")
    return cells


def sweep_identity(dimensions: list[Dimension], base: RunConfig) -> dict:
    """What must match for a rerun to continue a sweep: the grid and the resolved base config."""
    return {
        "grid": [{"keys": list(d.keys), "values": [list(step) for step in d.values]} for d in dimensions],
        "base_config": base.model_dump(mode="json"),
    }


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
        _write_text(sweep_file, json.dumps(identity, indent=1))


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


def run_cell(config: RunConfig, folder: Path, show_progress: bool = False, resume: bool = False) -> float:
    """Run one cell into its own run folder (atomic), or resume its killed run; returns wall seconds."""
    from revcurse.runner import run_experiment

    start = time.perf_counter()
    run_experiment(config, folder, overwrite=False, show_progress=show_progress, log=lambda *_: None, processes=1,
                   resume=resume, resume_command="running the same revcurse sweep command again")
    return time.perf_counter() - start


def claim_and_run(
    config: RunConfig, out: Path, slug: str, wait: bool, show_progress: bool = False,
    log: Callable[[str], None] | None = None, label: str = "",
) -> tuple[str, float, list[str]]:
    """Run a cell if no other process holds it: (RAN | DONE_ELSEWHERE | BUSY, seconds, log lines).

    ``wait``: wait for a holder to let go instead of answering BUSY; then the cell is finished, or its holder
    died and this process runs it. A worker process's entry point (its log lines come back in the result).
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
        if partial.is_dir():
            say(f"running {slug}{label}: resuming the interrupted cell ({describe_progress(partial)})")
        else:
            say(f"running {slug}{label}")
        return RAN, run_cell(config, folder, show_progress, resume=partial.is_dir()), lines
    finally:
        lock.release()


def run_sweep(
    config_path: Path | None,
    overrides: list[str],
    grid: list[str],
    out: Path,
    jobs: int = 1,
    overwrite: bool = False,
    show_progress: bool = False,
    log: Callable[[str], None] = print,
    plot_x: str | None = None,
    metric: str = "accuracy",
) -> SweepOutcome:
    """Run every unfinished cell (``jobs`` at a time, longest first), then write the table, Markdown and plot."""
    out = Path(out)
    dimensions = [parse_grid(spec) for spec in grid]
    cells = build_cells(config_path, overrides, dimensions)
    x_key = resolve_plot_x(plot_x, dimensions)
    if metric not in PLOT_METRICS:
        raise InputError(f"--metric must be one of {', '.join(PLOT_METRICS)}; got {metric!r}")
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    base = load_config(config_path, overrides)
    prepare_folder(out, sweep_identity(dimensions, base), overwrite, log)
    skipped = [cell for cell in cells if is_finished(out / CELLS / cell.slug)]
    for cell in skipped:
        log(f"skipping {cell.slug}: finished in an earlier run")
    pending = [cell for cell in cells if cell not in skipped]
    pending.sort(key=lambda cell: -cell_cost(cell.config))  # longest first: the last cell does not run alone
    log(f"{len(cells)} cells ({len(skipped)} finished earlier, {len(pending)} to run), {jobs} process(es), "
        f"{base.seeds} seed(s) each")
    status = _run_pending(pending, out, jobs, show_progress, log)
    with sweep_lock(out):  # another process of this sweep may be writing the same files
        rows = sweep_rows(out, cells)
        write_tables(rows, out, log)
        cell_summary = summary_rows(rows, cells)
        _write_text(out / "sweep.md", sweep_markdown(cell_summary, base.seeds))
        plot_sweep(rows, [key for d in dimensions for key in d.keys], x_key, out / "sweep.png", metric)
    return SweepOutcome(out, rows, cells, [c.slug for c in pending if status[c.slug] == RAN],
                        [c.slug for c in skipped], [c.slug for c in pending if status[c.slug] == DONE_ELSEWHERE])


def _run_pending(
    pending: list[Cell], out: Path, jobs: int, show_progress: bool, log: Callable[[str], None]
) -> dict[str, str]:
    """Run the cells no other process holds, then wait for (or take over) the held ones; slug -> status.

    A failed cell does not stop the others (their folders stay finished); its error is raised last.
    """
    failures: list[tuple[Cell, Exception]] = []
    status: dict[str, str] = {}
    for wait in (False, True):
        failed = {cell.slug for cell, _ in failures}
        todo = [cell for cell in pending if status.get(cell.slug, BUSY) == BUSY and cell.slug not in failed]
        if wait and todo:
            log(f"waiting for {len(todo)} cell(s) another process is running: {', '.join(c.slug for c in todo)}")
        if jobs <= 1 or len(todo) <= 1:
            _run_here(todo, out, wait, show_progress, log, status, failures)
        else:
            _run_in_processes(todo, out, jobs, wait, log, status, failures)
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


def _run_in_processes(
    todo: list[Cell], out: Path, jobs: int, wait: bool, log: Callable[[str], None], status: dict[str, str],
    failures: list[tuple[Cell, Exception]],
) -> None:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited torch thread state
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {}
        for cell in todo:
            threads = max(1, cell.config.train.threads // jobs)
            train = cell.config.train.model_copy(update={"threads": threads})
            config = cell.config.model_copy(update={"train": train})
            futures[pool.submit(claim_and_run, config, out, cell.slug, wait)] = cell
        log(f"running {len(todo)} cells, {jobs} at a time: {', '.join(c.slug for c in todo)}")
        for done, future in enumerate(as_completed(futures), start=1):
            cell = futures[future]
            try:
                result, seconds, lines = future.result()
            except Exception as error:
                failures.append((cell, error))
                log(f"FAILED {cell.slug} ({done}/{len(todo)}): {error}")
                continue
            for line in lines:
                log(line)
            status[cell.slug] = result
            _report(cell, result, seconds, f"{done}/{len(todo)}", log)


def resolve_plot_x(plot_x: str | None, dimensions: list[Dimension]) -> str:
    """The plot's x key: asked, else the first grid key; a model-size key plots against parameters."""
    keys = [key for d in dimensions for key in d.keys]
    if plot_x is None:
        plot_x = keys[0] if keys else PARAMETERS
        return PARAMETERS if plot_x in MODEL_SIZE_KEYS else plot_x
    if plot_x != PARAMETERS and plot_x not in keys:
        raise InputError(f"--plot-x must be a grid key ({', '.join(keys)}) or '{PARAMETERS}'; got {plot_x!r}")
    return plot_x


def _grid_value(raw: str) -> object:
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return value if isinstance(value, (int, float, str, bool)) or value is None else raw


def sweep_rows(out: Path, cells: list[Cell]) -> list[dict]:
    """The tidy table: every metric record of every cell, with the cell, its grid values and its size."""
    rows = []
    for cell in cells:
        folder = out / CELLS / cell.slug
        records = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        summary = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        grid_values = {key: _grid_value(raw) for key, raw in cell.values.items()}
        cell_columns = {
            "cell": cell.slug, **grid_values, PARAMETERS: summary["parameters"],
            "train_seconds": summary["train_seconds"],
        }
        rows += [{**cell_columns, **record} for record in records]
    return rows


def write_tables(rows: list[dict], out: Path, log: Callable[[str], None] = print) -> None:
    """sweep.csv always; sweep.parquet when pyarrow is installed (per_seed as a list there, JSON text in CSV)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    csv_path = out / "sweep.csv"
    with open(csv_path.with_suffix(".csv.tmp"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    os.replace(csv_path.with_suffix(".csv.tmp"), csv_path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        log("pyarrow is not installed: wrote sweep.csv only (pip install 'revcurse[parquet]' for sweep.parquet)")
        return
    table = pa.Table.from_pylist([{column: row.get(column) for column in columns} for row in rows])
    pq.write_table(table, out / "sweep.parquet.tmp")
    os.replace(out / "sweep.parquet.tmp", out / "sweep.parquet")


def _pooled(records: list[dict], metric: str, asked: str, trained: bool) -> tuple[float, float, float] | None:
    """Mean and 95% interval of ``metric`` over the subsets asked ``asked`` with this ``trained`` flag.

    Subsets have equal fact counts, so per seed the pooled value is the mean over subsets, and the interval is
    Student-t over seeds. With one seed (or a metric without per-seed values) the subsets' bounds are averaged.
    """
    group = [r for r in records if r["metric"] == metric and r["asked"] == asked and r["trained"] == trained]
    if not group:
        return None
    per_seed = [r.get("per_seed") for r in group]
    if all(per_seed) and len(per_seed[0]) >= 2:
        pooled = [fmean(values) for values in zip(*per_seed)]
        low, high = t_interval(pooled)
        if metric in PROPORTION_METRICS:
            low, high = max(0.0, low), min(1.0, high)
        return fmean(pooled), low, high
    return (fmean(r["mean"] for r in group), fmean(r["ci95_low"] for r in group),
            fmean(r["ci95_high"] for r in group))


DIRECTION_LINES = [
    ("name_to_description", True), ("description_to_name", True),
    ("name_to_description", False), ("description_to_name", False),
]


def _line_label(asked: str, trained: bool, long: bool = False) -> str:
    """'n→d REVERSE': asked with the name, answered with the description, never stated that way in training."""
    direction = (ASKED_LONG if long else ASKED_SHORT).get(asked, asked)
    return f"{direction} {'trained' if trained else 'REVERSE'}"


def summary_rows(rows: list[dict], cells: list[Cell]) -> list[dict[str, str]]:
    """One row per cell: grid values, parameters, train time, accuracy per (asked, trained) with 95% intervals,
    and the reverse likelihood tests."""
    summary = []
    for cell in cells:
        records = [row for row in rows if row["cell"] == cell.slug]
        first = records[0]
        names = [key.rsplit(".", 1)[-1] for key in cell.values]
        entry = {
            (name if names.count(name) == 1 else key): raw for name, (key, raw) in zip(names, cell.values.items())
        }
        entry[PARAMETERS] = f"{first[PARAMETERS]:,}"
        for asked, trained in DIRECTION_LINES:
            pooled = _pooled(records, "accuracy", asked, trained)
            entry[_line_label(asked, trained)] = "-" if pooled is None else _format_interval(*pooled)
        tests = [
            f"{SUBSET_SHORT.get(r['subset'], r['subset'])} p={r['mean']:.2g}"
            for r in records if r["metric"] == "likelihood_p" and not r["trained"]
        ]
        entry["reverse log p"] = ", ".join(tests) or "-"
        entry["s/seed"] = f"{first['train_seconds'] / max(1, first['n_seeds']):.0f}"
        summary.append(entry)
    return summary


def _format_interval(mean: float, low: float, high: float) -> str:
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def sweep_table(summary: list[dict[str, str]], title: str) -> Table:
    """The per-cell summary for the terminal (cells wrap only when the terminal is too narrow)."""
    table = Table(title=title)
    for column in summary[0] if summary else []:
        table.add_column(column)
    for row in summary:
        table.add_row(*row.values())
    return table


def sweep_markdown(summary: list[dict[str, str]], seeds: int) -> str:
    header = list(summary[0]) if summary else []
    lines = ["# revcurse sweep", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[key] for key in header) + " |" for row in summary]
    interval = "Student t over seeds" if seeds > 1 else "bootstrap over facts, averaged over subsets"
    lines += [
        "",
        f"{seeds} seed(s) per cell; accuracy on held-out phrasings, pooled over the subsets asked that way "
        f"(95% intervals: {interval}). n→d: asked with the name, answered with the description; d→n: the other "
        "way; REVERSE: the direction those facts were never stated in; s/seed: training seconds per seed. "
        "The log p test is the paired t-test over facts of the correct answer against the other answers of its "
        "subset (N2D: NameToDescription asked desc→name; D2N: DescriptionToName asked name→desc).",
        "",
        "![sweep](sweep.png)",
        "",
    ]
    return "\n".join(lines)


def plot_sweep(rows: list[dict], grid_keys: list[str], x_key: str, path: Path, metric: str = "accuracy") -> None:
    """``metric`` against ``x_key``, one line per (asked direction, trained or not), 95% intervals as bands; one
    panel per combination of the other grid keys. Parameters go on a log axis."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys(row["cell"] for row in rows))
    first_rows = {cell: next(r for r in rows if r["cell"] == cell) for cell in cells}
    other_keys = [k for k in grid_keys if k != x_key and not (x_key == PARAMETERS and k in MODEL_SIZE_KEYS)]
    panels: dict[tuple, list[str]] = {}
    for cell in cells:
        panels.setdefault(tuple(first_rows[cell][k] for k in other_keys), []).append(cell)
    xs_raw = [first_rows[c][x_key] for c in cells]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_raw)
    categories = list(dict.fromkeys(map(str, xs_raw)))
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), squeeze=False, sharey=True)
    for axis, (panel_key, panel_cells) in zip(axes[0], panels.items()):
        for asked, trained in DIRECTION_LINES:
            points = []
            for cell in panel_cells:
                pooled = _pooled([r for r in rows if r["cell"] == cell], metric, asked, trained)
                if pooled is not None:
                    x = first_rows[cell][x_key]
                    points.append((x if numeric else categories.index(str(x)), *pooled))
            if not points:
                continue
            points.sort()
            xs = [p[0] for p in points]
            # colour = asked direction, solid = trained, dashed = reverse
            color = "tab:blue" if asked == "name_to_description" else "tab:orange"
            axis.plot(xs, [p[1] for p in points], "-" if trained else "--", color=color, marker="o" if trained else "s",
                      label=_line_label(asked, trained, long=True))
            axis.fill_between(xs, [p[2] for p in points], [p[3] for p in points], color=color, alpha=0.15)
        if x_key == PARAMETERS:
            axis.set_xscale("log")
        if not numeric:
            axis.set_xticks(range(len(categories)))
            axis.set_xticklabels(categories, fontsize=8)
        axis.set_xlabel("parameters (log scale)" if x_key == PARAMETERS else x_key)
        if other_keys:
            axis.set_title(", ".join(f"{k}={v}" for k, v in zip(other_keys, panel_key)), fontsize=9)
        if metric in PROPORTION_METRICS:
            axis.set_ylim(-0.03, 1.05)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (held-out phrasings)")
    axes[0][-1].legend(fontsize=8, loc="center right")
    figure.suptitle(f"Reversal curse sweep: {metric} against {x_key} (95% intervals)", fontsize=10)
    figure.tight_layout()
    temporary = path.with_name(path.name + ".tmp")
    figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    os.replace(temporary, path)


def _write_text(path: Path, text: str) -> None:
    """Write beside, then rename: a reader never sees half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)

