"""The comparison's presentation: the cures side by side as a table, Markdown and a bar chart, from its records.

Apart from ``compare`` (which runs the arms) so that reports read a comparison without importing the runner.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from revcurse.metrics import lookup
from revcurse.report import ASKED_LABEL, format_test

BASELINE = "none"  # the arm without a cure, always run first; train times are shown relative to it


def _arms(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["cure"] for r in records))


def _groups(records: list[dict]) -> list[tuple[str, str, str, bool]]:
    """(setting, subset, asked, trained) of each group with an accuracy record (not the cost records)."""
    return list(dict.fromkeys((r.get("setting", ""), r["subset"], r["asked"], r["trained"]) for r in records
                              if r["metric"] == "accuracy"))


def _subset_label(setting: str, subset: str) -> str:
    return f"{setting}: {subset}" if setting else subset


def compare_rows(records: list[dict]) -> list[dict[str, str]]:
    rows = []
    baseline_seconds = lookup(_only(records, BASELINE), "all", "all", "train_seconds")["mean"]
    for arm in _arms(records):
        arm_records = _only(records, arm)
        seconds = lookup(arm_records, "all", "all", "train_seconds")["mean"]
        for setting, subset, asked, trained in _groups(records):
            accuracy = lookup(arm_records, subset, asked, "accuracy", setting)
            t = lookup(arm_records, subset, asked, "likelihood_t", setting)
            p = lookup(arm_records, subset, asked, "likelihood_p", setting)["mean"]
            rows.append({
                "cure": arm,
                "subset": _subset_label(setting, subset),
                "asked": ASKED_LABEL.get(asked, asked),
                "trained": "yes" if trained else "no",
                "accuracy": f"{accuracy['mean']:.2f} [{accuracy['ci95_low']:.2f}, {accuracy['ci95_high']:.2f}]",
                "t_test": format_test(t["mean"], p, t["n_facts"]),
                "train_time": f"{seconds:.0f} s ({seconds / baseline_seconds:.2f}x)",
            })
    return rows


def _only(records: list[dict], arm: str) -> list[dict]:
    return [r for r in records if r["cure"] == arm]


COLUMNS = {
    "cure": "cure", "subset": "subset", "asked": "asked", "trained": "trained in baseline",
    "accuracy": "accuracy [95% CI]", "t_test": "log p: paired t, perm. p", "train_time": "train time (vs none)",
}


def compare_table(records: list[dict], title: str = "") -> Table:
    table = Table(title=title or None)
    for label in COLUMNS.values():
        table.add_column(label, no_wrap=True)
    previous = None
    for row in compare_rows(records):
        if previous is not None and previous != row["cure"]:
            table.add_section()
        table.add_row(*(row[key] for key in COLUMNS))
        previous = row["cure"]
    return table


def markdown_compare(records: list[dict]) -> str:
    lines = ["# revcurse compare", "", "| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[key] for key in COLUMNS) + " |" for row in compare_rows(records)]
    n_seeds = records[0]["n_seeds"] if records else 0
    lines += [
        "",
        f"{n_seeds} seed(s); accuracy on held-out phrasings, 95% intervals "
        + ("over seeds (Student t)." if n_seeds > 1 else "by bootstrap over facts.")
        + " `trained in baseline` says whether the asked direction is stated in the uncured training text.",
        "",
        "![accuracy by cure](compare.png)",
        "",
    ]
    return "\n".join(lines)


def plot_compare(records: list[dict], path: Path) -> None:
    """Grouped bars: accuracy per (subset, asked direction), one bar per arm, 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    arms = _arms(records)
    groups = _groups(records)
    width = 0.8 / len(arms)
    figure, axis = plt.subplots(figsize=(max(8, 1.6 * len(groups)), 4.5))
    for i, arm in enumerate(arms):
        arm_records = _only(records, arm)
        values = [lookup(arm_records, s, a, "accuracy", g) for g, s, a, _ in groups]
        means = [v["mean"] for v in values]
        errors = [[m - v["ci95_low"] for m, v in zip(means, values)],
                  [v["ci95_high"] - m for m, v in zip(means, values)]]
        positions = [g + (i - (len(arms) - 1) / 2) * width for g in range(len(groups))]
        axis.bar(positions, means, width, yerr=errors, capsize=2, label=arm)
    axis.set_xticks(range(len(groups)))
    axis.set_xticklabels(
        [f"{_subset_label(g, s)}\n{ASKED_LABEL.get(a, a)}\n{'trained' if t else 'REVERSE'}" for g, s, a, t in groups],
        fontsize=8,
    )
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accuracy (held-out phrasings)")
    axis.set_title("Reversal curse: accuracy by cure (95% intervals)")
    axis.legend(title="cure", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
