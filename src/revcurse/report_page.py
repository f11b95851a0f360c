"""The report page: one self-contained HTML file (and a Markdown summary) for finished run and compare folders.

Why a page beside the table: the table says *that* reverse accuracy is zero; the page shows *how* — the error
bars, the likelihood of the right answer against the wrong ones probe by probe, whether training converged, and
which facts failed with what the model said instead. It reads only what a run wrote (records, predictions,
training logs, run.json, config.yaml) and never runs a model.

Self-contained: plots are inline PNGs (matplotlib, Agg backend) and the CSS is inline, with no script and no
network, so the file can be mailed or archived as it is. Every text that comes from the model or the data is
escaped (``html.escape``): completions are model output. Files are written under a temporary name and renamed.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
import tempfile
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from revcurse.errors import InputError, parse_json, read_user_text
from revcurse.metrics import ASKED_ORDER, SUBSET_ORDER, lookup
from revcurse.report import ASKED_LABEL, calibration_lines, check_records, markdown_report, result_rows, shown_columns

FAILING_ROWS_PER_GROUP = 25  # per (subset, asked direction): enough to see the pattern, small enough to read
DPI = 90
ARM_NAME = re.compile(r"[a-z0-9][a-z0-9+-]*")  # what `revcurse compare` names its arms (cure-<arm>/)
STAGING_NAME = re.compile(r"^\.(.+)\.(?:tmp-[^/]*|partial)$")  # records.run_folder's name for a run in progress


class ReportPageWarning(UserWarning):
    """The page could not be written after a run; the run itself is kept (tests turn this into an error)."""


@dataclass
class RunData:
    """What one run folder holds, read once."""

    folder: Path
    records: list[dict]
    summary: dict
    config_text: str
    predictions: list[dict]
    train_logs: dict[str, list[dict]] = field(default_factory=dict)  # seed folder name -> log lines
    calibration: list[dict] = field(default_factory=list)  # calibration.json: the tests' placebo rejection rates


@dataclass
class CompareData:
    """A compare folder: its records (with ``cure``) and the run folder of each arm that is present."""

    folder: Path
    records: list[dict]
    arms: dict[str, RunData]


# ---------------------------------------------------------------- reading


def read_json(path: Path) -> object:
    """A JSON file's value; unreadable, not UTF-8 or not JSON is an ``InputError`` naming the file and line."""
    return parse_json(read_user_text(path, "file"), path)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(read_user_text(path, "file").split("\n"), start=1):
        if line.strip():
            row = parse_json(line, path, number)
            if not isinstance(row, dict):
                raise InputError("expected a JSON object on each line", path, number)
            rows.append(row)
    return rows


def read_run(folder: Path) -> RunData:
    """A run folder written by ``revcurse demo`` (metrics.json and run.json)."""
    for name in ("metrics.json", "run.json"):
        if not (folder / name).is_file():
            raise InputError(f"not a finished run folder: expected {name}", folder)
    records = check_records(read_json(folder / "metrics.json"), folder / "metrics.json")
    summary = read_json(folder / "run.json")
    if not isinstance(summary, dict):
        raise InputError("expected a JSON object (the run's summary)", folder / "run.json")
    config_path = folder / "config.yaml"
    logs = {
        seed_folder.name: [e for e in _read_jsonl(seed_folder / "train_log.jsonl") if "loss" in e and "step" in e]
        for seed_folder in sorted(folder.glob("seed-*"), key=lambda p: _seed_number(p.name))
    }
    return RunData(
        folder=folder,
        records=records,
        summary=summary,
        config_text=read_user_text(config_path, "file") if config_path.is_file() else "",
        predictions=_read_jsonl(folder / "predictions.jsonl"),
        train_logs={name: log for name, log in logs.items() if log},
        calibration=_calibration(folder / "calibration.json"),
    )


def _calibration(path: Path) -> list[dict]:
    """calibration.json's records, or none for a run written before it existed (or one that does not have it)."""
    if not path.is_file():
        return []
    records = read_json(path)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError("expected a list of placebo records", path)
    return records


def _seed_number(name: str) -> int:
    suffix = name.removeprefix("seed-")
    return int(suffix) if suffix.isdigit() else 1 << 30


def read_compare(folder: Path) -> CompareData:
    """A compare folder written by ``revcurse compare`` (compare.json and cure-<arm>/ run folders)."""
    records = read_json(folder / "compare.json")
    if not isinstance(records, list) or not all(isinstance(r, dict) and "cure" in r for r in records):
        raise InputError("compare.json must be a list of records with a `cure` field", folder / "compare.json")
    arms = {}
    for arm in dict.fromkeys(r["cure"] for r in records):
        if not isinstance(arm, str) or not ARM_NAME.fullmatch(arm):  # a crafted name must not reach other folders
            raise InputError(f"not a cure name: {arm!r} (letters, digits, '-' and '+')", folder / "compare.json")
        arm_folder = folder / f"cure-{arm}"
        if (arm_folder / "metrics.json").is_file():
            arms[arm] = read_run(arm_folder)
    return CompareData(folder=folder, records=records, arms=arms)


def read_folder(folder: Path) -> RunData | CompareData:
    folder = Path(folder)
    if (folder / "compare.json").is_file():
        return read_compare(folder)
    if (folder / "metrics.json").is_file():
        return read_run(folder)
    if (folder / "sweep.json").is_file():  # its summary is sweep.md and sweep.png; each cell is a run folder
        raise InputError(f"a sweep folder, not a run folder: name its cells, e.g. revcurse report {folder}/cells/* "
                         "--out sweep.html", folder)
    raise InputError("not a run folder (metrics.json) or a compare folder (compare.json)", folder)


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> str:
    """A figure as a base64 PNG data URI (and the figure closed).

    Figures set their margins by hand (``subplots_adjust``): the automatic layouts measure every text first, and
    that was half of the page's time here (the page is written at the end of every run).
    """
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _groups(records: list[dict]) -> list[tuple[str, str, str, bool]]:
    """(setting, subset, asked, trained) of each group with an accuracy record, in order."""
    return list(dict.fromkeys((r.get("setting", ""), r["subset"], r["asked"], r["trained"]) for r in records
                              if r["subset"] != "all" and r["metric"] == "accuracy"))


def _interval(record: dict) -> tuple[float, float]:
    """Error bar lengths below and above the mean (zero where no interval was recorded)."""
    mean, low, high = record["mean"], record.get("ci95_low"), record.get("ci95_high")
    low = mean if low is None or math.isnan(low) else low
    high = mean if high is None or math.isnan(high) else high
    return max(0.0, mean - low), max(0.0, high - mean)


def plot_accuracy(records: list[dict]) -> str:
    """Accuracy per (subset, asked direction), trained and reverse directions coloured apart, 95% intervals."""
    plt = _pyplot()
    groups = _groups(records)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.5 * len(groups) + 1.8), 3.6))
    for position, (setting, subset, asked, trained) in enumerate(groups):
        record = lookup(records, subset, asked, "accuracy", setting)
        below, above = _interval(record)
        axis.bar(position, record["mean"], 0.7, yerr=[[below], [above]], capsize=4,
                 color="#3b7dd8" if trained else "#e0793b", label="trained direction" if trained else "reverse")
        axis.text(position, min(record["mean"] + above, 1.0) + 0.02, f"{record['mean']:.2f}", ha="center",
                  fontsize=8)
    axis.set_xticks(range(len(groups)))
    labels = ["\n".join(filter(None, (g, s, ASKED_LABEL.get(a, a)))) for g, s, a, _ in groups]
    axis.set_xticklabels(labels, fontsize=7)
    axis.set_ylim(0, 1.12)
    axis.set_ylabel("accuracy (held-out phrasings)")
    axis.set_title("Accuracy forward and reverse (95% intervals)")
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axis.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    width = figure.get_figwidth()
    figure.subplots_adjust(left=0.7 / width, right=1 - 1.5 / width, bottom=0.2, top=0.9)
    return _png(figure)


def plot_likelihood(predictions: list[dict]) -> str:
    """Per-probe log p(correct target) against the mean log p of the other targets, per asked direction and
    trained/untrained direction: in the reverse direction the two distributions lie on top of each other."""
    plt = _pyplot()
    import numpy as np

    asked_values = [a for a in ASKED_ORDER if any(p["asked"] == a for p in predictions)]
    asked_values += sorted({p["asked"] for p in predictions} - set(asked_values))
    rows = max(1, len(asked_values))
    figure, axes = plt.subplots(rows, 2, figsize=(9, 2.6 * rows + 0.6), squeeze=False)
    for row, asked in enumerate(asked_values):
        for column, trained in enumerate((True, False)):
            axis = axes[row][column]
            chosen = [p for p in predictions if p["asked"] == asked and bool(p["trained"]) == trained]
            correct = np.array([p["logprob_correct"] for p in chosen], dtype=float)
            others = np.array([p["logprob_random"] for p in chosen], dtype=float)
            direction = "trained direction" if trained else "reverse (untrained)"
            axis.set_title(f"asked {ASKED_LABEL.get(asked, asked)}, {direction}", fontsize=9)
            finite = np.concatenate([correct, others])
            finite = finite[np.isfinite(finite)]
            if not len(finite):
                axis.text(0.5, 0.5, "no probes", ha="center", va="center", transform=axis.transAxes)
                axis.set_yticks([])
                continue
            bins = np.histogram_bin_edges(finite, bins=40)
            axis.hist(correct[np.isfinite(correct)], bins=bins, histtype="stepfilled", alpha=0.55, color="#2a9d55",
                      label=f"correct target (mean {np.nanmean(correct):.1f})")
            axis.hist(others[np.isfinite(others)], bins=bins, histtype="stepfilled", alpha=0.55, color="#888888",
                      label=f"other targets (mean {np.nanmean(others):.1f})")
            axis.tick_params(labelsize=7)
            axis.legend(fontsize=7)
    figure.suptitle("Likelihood of the correct vs the other targets of the same subset", fontsize=10)
    figure.supxlabel("log p of the target, per probe (other targets: their mean)", fontsize=8)
    figure.supylabel("probes", fontsize=8)
    height = figure.get_figheight()
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.6 / height, top=1 - 0.65 / height, hspace=0.45,
                           wspace=0.15)
    return _png(figure)


def plot_loss(train_logs: dict[str, list[dict]]) -> str:
    """Training loss per step, one line per seed."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.2))
    losses = [e["loss"] for log in train_logs.values() for e in log if e["loss"] > 0]
    for name, log in train_logs.items():
        axis.plot([e["step"] for e in log], [e["loss"] for e in log], linewidth=1, label=name)
    axis.set_yscale("log")
    if losses:  # round numbers as ticks, plain labels (not 6x10^0)
        from matplotlib.ticker import FormatStrFormatter, NullFormatter

        ticks = [v * 10.0**k for k in range(-3, 4) for v in (1, 2, 5)]
        axis.set_yticks([v for v in ticks if min(losses) <= v <= max(losses)] or [min(losses)])
        axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axis.yaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel("step")
    axis.set_ylabel("training loss (log scale)")
    axis.set_title("Training loss (one line per seed)")
    axis.legend(fontsize=8)
    figure.subplots_adjust(left=0.1, right=0.97, bottom=0.15, top=0.9)
    return _png(figure)


def plot_compare_accuracy(records: list[dict]) -> str:
    """The compare bar chart (compare.plot_compare), inline."""
    from revcurse.compare import plot_compare

    buffer = io.BytesIO()
    plot_compare(records, buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_train_time(records: list[dict]) -> str:
    """Training time per cure (mean over seeds, 95% interval)."""
    plt = _pyplot()
    costs = [r for r in records if r["metric"] == "train_seconds"]
    figure, axis = plt.subplots(figsize=(7, 0.5 * len(costs) + 1.2))
    for position, record in enumerate(costs):
        below, above = _interval(record)
        axis.barh(position, record["mean"], 0.6, xerr=[[below], [above]], capsize=4, color="#6a5acd")
        axis.text(record["mean"] + above, position, f"  {record['mean']:.0f} s", va="center", fontsize=8)
    axis.set_yticks(range(len(costs)))
    axis.set_yticklabels([r["cure"] for r in costs], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("training seconds per seed (95% interval)")
    axis.set_title("Training time per cure")
    axis.margins(x=0.15)
    height = figure.get_figheight()
    figure.subplots_adjust(left=0.22, right=0.95, bottom=0.9 / height, top=1 - 0.45 / height)
    return _png(figure)


# ---------------------------------------------------------------- per-fact results


@dataclass
class FactRow:
    """One fact asked in one direction under one seed: accuracy over its phrasings and a wrong answer."""

    seed: object
    fact: str
    subset: str
    asked: str
    trained: bool
    correct: int
    probes: int
    wrong: dict | None  # one prediction the model got wrong, if any

    @property
    def accuracy(self) -> float:
        return self.correct / self.probes if self.probes else math.nan


def fact_rows(predictions: list[dict]) -> list[FactRow]:
    """Group predictions per (seed, fact, asked direction), in subset and direction order."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for prediction in predictions:
        setting = prediction.get("setting", "")  # the in-context control asks each fact under two settings
        subset = f"{prediction['subset']} ({setting})" if setting else prediction["subset"]
        key = (prediction.get("seed"), prediction["fact_key"], subset, prediction["asked"])
        grouped[key].append(prediction)
    rows = []
    for (seed, fact, subset, asked), items in grouped.items():
        wrong = next((p for p in items if not p["correct"]), None)
        rows.append(FactRow(seed, str(fact), subset, asked, bool(items[0]["trained"]),
                            sum(bool(p["correct"]) for p in items), len(items), wrong))
    return sorted(rows, key=lambda r: (_rank(SUBSET_ORDER, r.subset), _rank(ASKED_ORDER, r.asked)))


def _rank(order: tuple[str, ...], value: str) -> int:
    return order.index(value) if value in order else len(order)


def failure_counts(rows: list[FactRow]) -> list[dict]:
    """Per (subset, asked): facts always right, sometimes right, never right."""
    counts: dict[tuple[str, str], dict] = {}
    for row in rows:
        entry = counts.setdefault((row.subset, row.asked), {
            "subset": row.subset, "asked": row.asked, "trained": row.trained, "all": 0, "some": 0, "none": 0})
        entry["all" if row.correct == row.probes else "none" if row.correct == 0 else "some"] += 1
    return list(counts.values())


# ---------------------------------------------------------------- HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
h3{margin-top:1.8rem}h4{margin-top:1.4rem}
section.arm{border-left:4px solid #ddd;padding-left:1rem;margin-left:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px;background:#fff}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f0f0f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail .acc{color:#b3261e;font-weight:600}.answer{background:#fde3e0;border-radius:2px;padding:0 2px}
img{max-width:100%;height:auto;background:#fff;border:1px solid #eee}
details{margin:.4rem 0}summary{cursor:pointer;font-weight:600}
pre{background:#f4f4f6;padding:.6rem;overflow-x:auto;font-size:12px}
code,.text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem}dl.facts dt{font-weight:600}
dl.facts dd{margin:0}.note{color:#555}nav a{margin-right:1rem}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], raw: bool = False, row_classes: list[str] | None = None,
           numeric: set[int] | None = None) -> str:
    """An HTML table; cells are escaped unless ``raw`` (already-built HTML)."""
    numeric = numeric or set()
    lines = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes else ""
        cells = "".join(
            f'<td{" class=num" if i in numeric else ""}>{cell if raw else _e(cell)}</td>' for i, cell in enumerate(row)
        )
        lines.append(f"<tr{css}>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _seconds(value: object) -> str:
    return f"{value:.0f} s" if isinstance(value, (int, float)) else "?"


def run_facts_html(run: RunData, level: int) -> str:
    """Model, parameters, seeds, timings and the config."""
    s = run.summary
    items = [
        ("model", s.get("model", "?")),
        ("parameters", f"{s['parameters']:,}" if isinstance(s.get("parameters"), int) else "?"),
        ("seeds", ", ".join(str(x) for x in s.get("seeds", []))),
        ("cures", ", ".join(s.get("cures") or []) or "none"),
        ("objective", s.get("objective", "?")),
        ("training", f"{_seconds(s.get('train_seconds'))} in all, "
                     f"{s.get('tokens_per_second', 0):,.0f} tokens/s"),
        ("probing", _seconds(s.get("probe_seconds"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items())),
    ]
    parts = [f"<h{level}>Run facts</h{level}>", '<dl class="facts">']
    parts += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items]
    parts.append("</dl>")
    per_seed = s.get("per_seed") or []
    if per_seed:
        columns = [("seed", "seed"), ("world_seed", "world seed"), ("documents", "documents"),
                   ("probes", "probes"), ("train_steps", "steps"), ("train_seconds", "train s"),
                   ("tokens_per_second", "tokens/s"), ("final_loss", "final loss"), ("probe_seconds", "probe s")]
        rows = [[_format_stat(key, stats.get(key)) for key, _ in columns] for stats in per_seed]
        parts.append(_table([label for _, label in columns], rows, numeric=set(range(len(columns)))))
    if run.config_text:
        parts.append(f"<details><summary>config.yaml</summary><pre>{_e(run.config_text)}</pre></details>")
    return "\n".join(parts)


def _format_stat(key: str, value: object) -> str:
    if value is None:
        return ""
    if key in ("train_seconds", "probe_seconds"):
        return f"{value:.1f}"
    if key == "tokens_per_second":
        return f"{value:,.0f}"
    if key == "final_loss":
        return f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def fact_table_html(rows: list[FactRow], level: int) -> str:
    """A <details> per subset: counts per direction, then the failing facts with an example wrong answer."""
    parts = [f"<h{level}>Per-fact results</h{level}>",
             '<p class="note">Accuracy of each fact over its held-out phrasings, per seed and asked direction. '
             f"Failing facts first, at most {FAILING_ROWS_PER_GROUP} per direction; the example is one phrasing "
             "the model got wrong, with its greedy answer.</p>"]
    by_subset: dict[str, list[FactRow]] = defaultdict(list)
    for row in rows:
        by_subset[row.subset].append(row)
    for subset, subset_rows in by_subset.items():
        counts = failure_counts(subset_rows)
        failing = sum(c["some"] + c["none"] for c in counts)
        parts.append(f'<details class="subset"><summary>{_e(subset)}: {failing} of {len(subset_rows)} '
                     "(fact, seed, direction) rows not always right</summary>")
        parts.append(_table(
            ["asked", "trained", "always right", "sometimes", "never right"],
            [[ASKED_LABEL.get(c["asked"], c["asked"]), "yes" if c["trained"] else "no", str(c["all"]),
              str(c["some"]), str(c["none"])] for c in counts],
            numeric={2, 3, 4},
        ))
        table_rows, not_shown = [], []
        for asked in dict.fromkeys(r.asked for r in subset_rows):
            wrong = sorted((r for r in subset_rows if r.asked == asked and r.correct < r.probes),
                           key=lambda r: (r.accuracy, r.fact, str(r.seed)))
            table_rows += [_fact_cells(row) for row in wrong[:FAILING_ROWS_PER_GROUP]]
            if len(wrong) > FAILING_ROWS_PER_GROUP:
                not_shown.append(f"{len(wrong) - FAILING_ROWS_PER_GROUP} more {ASKED_LABEL.get(asked, asked)}")
        if table_rows:
            parts.append(_table(["seed", "fact", "asked", "trained", "accuracy", "example wrong answer"],
                                table_rows, raw=True, row_classes=["fail"] * len(table_rows)))
            if not_shown:
                parts.append(f'<p class="note">Not shown: {_e(", ".join(not_shown))} failing rows.</p>')
        else:
            parts.append('<p class="note">Every fact right on every phrasing.</p>')
        parts.append("</details>")
    return "\n".join(parts)


def _fact_cells(row: FactRow) -> list[str]:
    example = ""
    if row.wrong is not None:
        completion = row.wrong.get("completion")
        answer = "(not generated)" if completion is None else completion
        example = (f'<span class="text">{_e(row.wrong.get("prompt", ""))}<b> → </b>'
                   f'<span class="answer">{_e(answer)}</span></span>'
                   f'<br><span class="note">expected: <span class="text">{_e(row.wrong.get("target", ""))}'
                   "</span></span>")
    return [_e(row.seed), _e(row.fact), _e(ASKED_LABEL.get(row.asked, row.asked)),
            "yes" if row.trained else "no", f'<span class="acc">{row.correct}/{row.probes}</span>', example]


def run_section_html(run: RunData, level: int) -> str:
    """Everything about one run folder, headings from ``level`` down."""
    h = level
    parts = [run_facts_html(run, h)]
    parts.append(f"<h{h}>Accuracy forward and reverse</h{h}>")
    if run.records:
        parts.append(_img(plot_accuracy(run.records), "accuracy per subset and asked direction"))
        rows = result_rows(run.records)
        columns = shown_columns(rows)
        parts.append(_table(list(columns.values()), [[r[key] for key in columns] for r in rows]))
    if run.calibration:
        lines = "".join(f"<li>{_e(line)}</li>" for line in calibration_lines(run.calibration))
        parts.append(f"<p>Placebo calibration of the tests (another fact's target in the same phrasing as the "
                     f"\"correct\" one):</p><ul>{lines}</ul>")
    parts.append(f"<h{h}>Likelihood of the correct vs random targets</h{h}>")
    if run.predictions:
        parts.append(_img(plot_likelihood(run.predictions), "log p of correct and other targets"))
    else:
        parts.append('<p class="note">No predictions.jsonl in this folder.</p>')
    parts.append(f"<h{h}>Training loss</h{h}>")
    if run.train_logs:
        parts.append(_img(plot_loss(run.train_logs), "training loss per seed"))
    else:
        parts.append('<p class="note">No seed-N/train_log.jsonl in this folder.</p>')
    if run.predictions:
        parts.append(fact_table_html(fact_rows(run.predictions), h))
    return "\n".join(parts)


def compare_section_html(data: CompareData, level: int) -> str:
    """The cures side by side, then each arm's own run section."""
    from revcurse.compare import COLUMNS as COMPARE_COLUMNS
    from revcurse.compare import compare_rows

    h = level
    arm_links = " ".join(f'<a href="#{_anchor(data.folder, arm)}">{_e(arm)}</a>' for arm in data.arms)
    parts = [f"<h{h}>Cures compared</h{h}>", f"<nav>Arms: {arm_links}</nav>",
             _img(plot_compare_accuracy(data.records), "accuracy by cure, subset and asked direction"),
             _img(plot_train_time(data.records), "training time per cure"),
             _table(list(COMPARE_COLUMNS.values()),
                    [[r[key] for key in COMPARE_COLUMNS] for r in compare_rows(data.records)])]
    for arm, run in data.arms.items():
        parts.append(f'<section class="arm" id="{_anchor(data.folder, arm)}"><h{h}>Arm: {_e(arm)} '
                     f'<span class="note">({_e(Path(display_path(run.folder)).name)})</span></h{h}>')
        parts.append(run_section_html(run, h + 1))
        parts.append("</section>")
    return "\n".join(parts)


def display_path(folder: Path) -> str:
    """The folder as people will find it: a run's staging name (``.NAME.partial``) shown as NAME."""
    return str(Path(*(STAGING_NAME.sub(r"\1", part) for part in folder.parts))) if folder.parts else str(folder)


def _anchor(folder: Path, suffix: str = "") -> str:
    name = Path(display_path(folder)).name
    text = f"{name}-{suffix}" if suffix else name
    return "s-" + "".join(c if c.isalnum() else "-" for c in text)


def build_page(items: list[RunData | CompareData], title: str = "revcurse report") -> str:
    """The whole page, one section per folder."""
    nav = " ".join(f'<a href="#{_anchor(i.folder)}">{_e(Path(display_path(i.folder)).name)}</a>' for i in items)
    body = []
    for item in items:
        kind = "Compare" if isinstance(item, CompareData) else "Run"
        heading = f"{kind}: {_e(display_path(item.folder))}"
        body.append(f'<section class="folder" id="{_anchor(item.folder)}"><h2>{heading}</h2>')
        body.append(compare_section_html(item, 3) if isinstance(item, CompareData) else run_section_html(item, 3))
        body.append("</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_e(title)}</h1>\n"
        '<p class="note">The Reversal Curse, measured: accuracy on held-out phrasings forward and reverse, the '
        "likelihood of the correct answer against the other answers of the same subset, training, and per-fact "
        "answers. Read from the run files; no model was run to make this page.</p>\n"
        f"<nav>{nav}</nav>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------- Markdown


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def run_markdown(run: RunData, title: str) -> str:
    """report.md's content (markdown_report) with the failure counts and the training loss added."""
    text = markdown_report(run.records, run.summary, run.calibration).replace("# revcurse run", f"# {title}", 1)
    lines = [text.rstrip("\n"), ""]
    if run.predictions:
        lines += ["## Facts per direction", "",
                  "| subset | asked | trained | always right | sometimes | never right |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['subset']} | {ASKED_LABEL.get(c['asked'], c['asked'])} | {'yes' if c['trained'] else 'no'} "
                  f"| {c['all']} | {c['some']} | {c['none']} |" for c in failure_counts(fact_rows(run.predictions))]
        lines.append("")
    if run.train_logs:
        finals = ", ".join(f"{name} {log[-1]['loss']:.3f}" for name, log in run.train_logs.items())
        lines += [f"Final training loss: {_md_cell(finals)}.", ""]
    return "\n".join(lines)


def compare_markdown(data: CompareData) -> str:
    from revcurse.compare import markdown_compare

    title = f"# revcurse compare: {display_path(data.folder)}"
    text = markdown_compare(data.records).replace("# revcurse compare", title, 1)
    costs = [r for r in data.records if r["metric"] == "train_seconds"]
    lines = [text.rstrip("\n"), "", "| cure | train seconds per seed [95% CI] |", "|---|---|"]
    lines += [f"| {_md_cell(r['cure'])} | {r['mean']:.0f} [{r['ci95_low']:.0f}, {r['ci95_high']:.0f}] |" for r in costs]
    lines += ["", "Facts never right on any phrasing (per seed), by arm:", ""]
    for arm, run in data.arms.items():
        if run.predictions:
            counts = failure_counts(fact_rows(run.predictions))
            never = ", ".join(f"{c['subset']} {ASKED_LABEL.get(c['asked'], c['asked'])}: {c['none']}/"
                              f"{c['all'] + c['some'] + c['none']}" for c in counts if c["none"])
            lines.append(f"- {_md_cell(arm)}: {never or 'none'}")
    return "\n".join(lines) + "\n"


def build_markdown(items: list[RunData | CompareData], page: Path) -> str:
    """The Markdown summary: each folder's table and counts, and where the page is."""
    sections = [
        compare_markdown(item) if isinstance(item, CompareData)
        else run_markdown(item, f"revcurse run: {display_path(item.folder)}")
        for item in items
    ]
    text = "\n\n".join(section.rstrip("\n") for section in sections)
    return text + f"\n\nThe page with plots and per-fact answers: {page.name}\n"


# ---------------------------------------------------------------- writing


def _write_atomically(path: Path, text: str) -> None:
    """Write under a temporary name beside ``path``, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed before the rename)
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.tmp-", delete=False
    )
    try:
        with handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)  # as an ordinary file (a temporary file is private)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_report(folders: list[Path], out: Path | None = None) -> Path:
    """Write the page (default FOLDER/report.html) and its Markdown summary (same name, .md); return the page.

    Several folders make one page with a section each; they need ``out``.
    """
    folders = [Path(f) for f in folders]
    if not folders:
        raise InputError("name at least one run or compare folder")
    if out is None:
        if len(folders) > 1:
            raise InputError("several folders make one page: say where with --out FILE.html")
        out = folders[0] / "report.html"
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError("the page must end in .html", out)
    items = [read_folder(folder) for folder in folders]
    title = "revcurse report: " + ", ".join(Path(display_path(f)).name for f in folders)
    _write_atomically(out, build_page(items, title))
    _write_atomically(out.with_suffix(".md"), build_markdown(items, out))
    return out


def write_report_after_run(folder: Path) -> None:
    """The hook at the end of a run: write the page, and if that fails, warn and keep the run.

    A run can take many minutes; a plotting problem must not throw it away. The warning names the error (so it
    is never silent), and tests turn ``ReportPageWarning`` into an error.
    """
    try:
        write_report([folder])
    except Exception as error:  # noqa: BLE001 (reported, not swallowed: see the warning)
        warnings.warn(f"report.html not written in {folder}: {type(error).__name__}: {error}", ReportPageWarning,
                      stacklevel=2)
