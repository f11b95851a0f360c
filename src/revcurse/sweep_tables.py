"""A finished sweep's tables: the tidy records of every cell (CSV, parquet), one row per cell, and the plot.

Read from the cells' run folders (metrics.json, run.json), never by running a model.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path
from statistics import fmean

from rich.table import Table

from revcurse.experiments import EXPERIMENTS
from revcurse.metrics import t_interval
from revcurse.sweep_grid import CELLS, MODEL_SIZE_KEYS, PARAMETERS, Cell, grid_value

PROPORTION_METRICS = ("accuracy", "rank1", "mrr")
PLOT_METRICS = (*PROPORTION_METRICS, "likelihood_diff")
SUBSET_SHORT = {"NameToDescription": "N2D", "DescriptionToName": "D2N"}
ASKED_SHORT = {"name_to_description": "n→d", "description_to_name": "d→n"}
ASKED_LONG = {"name_to_description": "name→desc", "description_to_name": "desc→name"}


def sweep_rows(out: Path, cells: list[Cell]) -> list[dict]:
    """The tidy table: every metric record of every cell, with the cell, its grid values and its size."""
    rows = []
    for cell in cells:
        folder = out / CELLS / cell.slug
        records = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        summary = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        grid_values = {key: grid_value(raw) for key, raw in cell.values.items()}
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


POOLED = {experiment.pooled for experiment in EXPERIMENTS.values() if experiment.pooled}


def _pooled(records: list[dict], metric: str, asked: str, trained: bool) -> tuple[float, float, float] | None:
    """Mean and 95% interval of ``metric`` over the subsets asked ``asked`` with this ``trained`` flag.

    Subsets have equal fact counts, so per seed the pooled value is the mean over subsets, and the interval is
    Student-t over seeds. With one seed (or a metric without per-seed values) the subsets' bounds are averaged.
    """
    group = [r for r in records if r["metric"] == metric and r["asked"] == asked and r["trained"] == trained
             and r["subset"] not in POOLED]  # an experiment's pooled group repeats its subsets' facts
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


def direction_lines(records: list[dict]) -> list[tuple[str, bool]]:
    """The (asked, trained) lines of any experiment's records: trained ones first, directions as first seen
    (Experiment 1: n→d and d→n trained, then n→d and d→n reversed)."""
    asked = list(dict.fromkeys(r["asked"] for r in records if "asked" in r))
    lines = set((r["asked"], bool(r["trained"])) for r in records if r.get("metric") == "accuracy")
    return sorted(lines, key=lambda line: (not line[1], asked.index(line[0])))


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
        entry[PARAMETERS] = f"{first[PARAMETERS]:,}" if isinstance(first[PARAMETERS], int) else "?"
        for asked, trained in direction_lines(records):
            pooled = _pooled(records, "accuracy", asked, trained)
            entry[_line_label(asked, trained)] = "-" if pooled is None else _format_interval(*pooled)
        tests = [
            f"{SUBSET_SHORT.get(r['subset'], r['subset'])} p={r['mean']:.2g}"
            for r in records if r["metric"] == "likelihood_p" and not r["trained"]
        ]
        entry["reverse log p"] = ", ".join(tests) or "-"
        entry["s/seed"] = f"{(first['train_seconds'] or 0) / max(1, first['n_seeds']):.0f}"
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
        lines = direction_lines(rows)
        for asked, trained in lines:
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
            color = f"C{[a for a, _ in lines].index(asked) % 10}"
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


def write_text(path: Path, text: str) -> None:
    """Write beside, then rename: a reader never sees half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
