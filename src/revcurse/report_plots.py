"""The report page's plots, each an inline PNG data URI (matplotlib, Agg backend), drawn from a run's records.

matplotlib is imported inside the functions: reading and tables do not pay for it.
"""

from __future__ import annotations

import base64
import io
import math

from revcurse.metrics import ASKED_ORDER, lookup
from revcurse.report import ASKED_LABEL
from revcurse.report_compare import plot_compare

DPI = 90


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


def _finite_mean(values) -> str:
    """The mean of the finite values, or n/a (a group of one fact has no distractors: no scores to average)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return f"{sum(finite) / len(finite):.1f}" if finite else "n/a"


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
                      label=f"correct target (mean {_finite_mean(correct)})")
            axis.hist(others[np.isfinite(others)], bins=bins, histtype="stepfilled", alpha=0.55, color="#888888",
                      label=f"other targets (mean {_finite_mean(others)})")
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
    """The compare bar chart (report_compare.plot_compare), inline."""
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


def plot_curve(curves: dict[str, list[dict]]) -> str:
    """The likelihood curve (revcurse.curve): each probe group's log p of the correct target minus its distractors'
    against the training step; trained directions solid, reverse dashed; each seed a thin line, their mean thick."""
    plt = _pyplot()
    import numpy as np

    groups = list(dict.fromkeys((r.get("setting", ""), r["subset"], r["asked"], bool(r["trained"]))
                                for rows in curves.values() for r in rows))
    figure, axis = plt.subplots(figsize=(8.5, 3.8))
    colours = plt.get_cmap("tab10")
    for number, (setting, subset, asked, trained) in enumerate(groups):
        colour, style = colours(number % 10), "-" if trained else "--"
        per_seed = {}
        for seed, rows in curves.items():
            points = {r["step"]: r["gap"] for r in rows if r["gap"] is not None and (
                r.get("setting", ""), r["subset"], r["asked"], bool(r["trained"])) == (setting, subset, asked, trained)}
            if points:
                per_seed[seed] = points
                axis.plot(sorted(points), [points[s] for s in sorted(points)], style, color=colour, linewidth=0.6,
                          alpha=0.45)
        steps = sorted(set.intersection(*(set(p) for p in per_seed.values()))) if per_seed else []
        if steps:
            mean = [float(np.mean([p[s] for p in per_seed.values()])) for s in steps]
            direction = "trained" if trained else "reverse"
            name = ", ".join(filter(None, (setting, subset, f"asked {ASKED_LABEL.get(asked, asked)}", direction)))
            axis.plot(steps, mean, style, color=colour, linewidth=2, label=name)
    axis.axhline(0, color="#999999", linewidth=0.8)
    axis.set_xlabel("training step")
    axis.set_ylabel("log p(target) - mean log p(distractors)")
    axis.set_title(f"Likelihood gap while training ({len(curves)} seed(s): thin lines; mean: thick)")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.subplots_adjust(left=0.09, right=0.62, bottom=0.14, top=0.9)
    return _png(figure)
