"""Report: the result table on the terminal and as Markdown, read from tidy records (never re-running a model)."""

from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table

from revcurse.errors import InputError
from revcurse.experiments import EXPERIMENTS, Column
from revcurse.metrics import lookup

ASKED_LABEL = {"name_to_description": "name→desc", "description_to_name": "desc→name", "question_to_answer": "Q→A"}


TABLE_METRICS = ("accuracy", "rank1", "mrr", "likelihood_diff", "likelihood_t", "likelihood_p")
INTERVAL_METRICS = ("accuracy", "likelihood_diff")


def check_records(records: object, path: str | Path) -> list[dict]:
    """``records`` if they are metric records the result table can show (as ``aggregate`` writes them), else an
    ``InputError`` naming ``path``, the record (0-based) and the field that is missing or of the wrong type."""
    expected = "a list of metric records (objects with subset, asked, trained, metric, mean, ...)"
    if not isinstance(records, list):
        raise InputError(f"expected {expected}, got a JSON {type(records).__name__}", path)
    groups: dict[tuple[str, str, str], set[str]] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(f"record {index}: expected an object, got {type(record).__name__}", path)
        for field in ("subset", "asked", "metric"):
            if not isinstance(record.get(field), str):
                raise InputError(f"record {index}: field {field!r} must be text", path)
        if "trained" not in record:
            raise InputError(f"record {index}: missing field 'trained'", path)
        numbers = ["mean"]
        if record["metric"] in INTERVAL_METRICS:
            numbers += ["ci95_low", "ci95_high"]
        if record["metric"] == "likelihood_diff":
            numbers.append("n_facts")
        for field in numbers:
            value = record.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"record {index} ({record['metric']}): field {field!r} must be a number", path)
        if record["metric"] == "likelihood_diff" and not isinstance(record["n_facts"], int):
            raise InputError(f"record {index} (likelihood_diff): field 'n_facts' must be a whole number", path)
        if not isinstance(record.get("setting", ""), str):
            raise InputError(f"record {index}: field 'setting' must be text", path)
        groups.setdefault((record.get("setting", ""), record["subset"], record["asked"]), set()).add(record["metric"])
    for (setting, subset, asked), metrics in groups.items():
        missing = [metric for metric in TABLE_METRICS if metric not in metrics]
        if missing:
            where = f"setting {setting!r}, " if setting else ""
            raise InputError(f"no {', '.join(missing)} record for {where}subset {subset!r}, asked {asked!r}", path)
    return records


def result_rows(records: list[dict]) -> list[dict[str, str]]:
    """One row per (setting, subset, asked direction), values formatted for people."""
    rows = []
    seen = []
    for record in records:
        key = (record.get("setting", ""), record["subset"], record["asked"])
        if key in seen:
            continue
        seen.append(key)
        setting, subset, asked = key

        def get(metric: str, subset: str = subset, asked: str = asked, setting: str = setting) -> dict:
            return lookup(records, subset, asked, metric, setting)

        accuracy, diff = get("accuracy"), get("likelihood_diff")
        t = get("likelihood_t")["mean"]
        p = get("likelihood_p")["mean"]  # the randomization test (t-test's in old runs)
        answer_accuracy, rank_p = (_optional(get, m) for m in ("answer_accuracy", "rank_p"))
        answer = "n/a" if answer_accuracy is None else f"{answer_accuracy:.2f}"  # absent from older records
        rank_test = "n/a"
        if rank_p is not None and not math.isnan(rank_p):
            rank_test = f"{get('mrr_excess')['mean']:+.2f} p={rank_p:.2g}"
        rows.append(
            {
                "setting": setting,
                "subset": subset,
                "asked": ASKED_LABEL.get(asked, asked),
                "trained": "yes" if record["trained"] else "no",
                "accuracy": f"{accuracy['mean']:.2f} {_interval(accuracy, '.2f')}",
                "answer": answer,
                "rank1": f"{get('rank1')['mean']:.2f}",
                "mrr": f"{get('mrr')['mean']:.2f}",
                "logp_gap": "n/a" if math.isnan(diff["mean"])  # no log-probs given (a chat endpoint)
                else f"{diff['mean']:+.2f} {_interval(diff, '+.2f')}",
                "t_test": format_test(t, p, diff["n_facts"]),
                "rank_test": rank_test,
            }
        )
    return rows


def _interval(record: dict, spec: str) -> str:
    """"[low, high]", or "[n/a]" where there is none (a group of one fact has no interval)."""
    low, high = record.get("ci95_low"), record.get("ci95_high")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "[n/a]"
    return f"[{low:{spec}}, {high:{spec}}]"


def _optional(get, metric: str) -> float | None:
    """The mean of a metric that records written by an older revcurse do not have (None there)."""
    try:
        return get(metric)["mean"]
    except KeyError:
        return None


COLUMNS = {
    "setting": "setting",
    "subset": "subset",
    "asked": "asked",
    "trained": "trained",
    "accuracy": "accuracy [95% CI]",
    "answer": "answer",
    "rank1": "rank-1",
    "mrr": "MRR",
    "logp_gap": "log p gap [95% CI]",
    "t_test": "log p: paired t, perm. p",
    "rank_test": "MRR-chance, perm. p",
}


def format_test(t: float, p: float, n_facts: int) -> str:
    if math.isnan(t) or math.isnan(p):
        return "n/a"
    return f"t({n_facts - 1})={t:.2f} p={p:.2g}"


def shown_columns(rows: list[dict[str, str]]) -> dict[str, str]:
    """The table's columns: *answer* only where some target runs on after its answer (it equals accuracy else),
    *setting* only where the run asked under several conditions (the in-context control)."""
    differs = any(row["answer"] not in ("n/a", row["accuracy"].split()[0]) for row in rows)
    settings = any(row["setting"] for row in rows)
    return {key: label for key, label in COLUMNS.items()
            if (key != "answer" or differs) and (key != "setting" or settings)}


def result_table(records: list[dict], title: str = "") -> Table:
    table = Table(title=title or None)
    rows = result_rows(records)
    columns = shown_columns(rows)
    for label in columns.values():
        table.add_column(label, no_wrap=True)
    for row in rows:
        table.add_row(*(row[key] for key in columns))
    return table


def markdown_table(records: list[dict]) -> str:
    rows = result_rows(records)
    columns = shown_columns(rows)
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(row[key] for key in columns) + " |")
    return "\n".join(lines) + "\n"


def arm_rows(arms: dict[str, list[dict]], label: str = "arm") -> tuple[list[str], list[list[str]]]:
    """Several runs' result tables as one grid, a ``label`` column first naming each run (e.g. the guidance orders
    of ``revcurse instructions --control``); for ``grid_table`` and ``grid_markdown``."""
    rows = {arm: result_rows(records) for arm, records in arms.items()}
    columns = shown_columns([row for arm_rows in rows.values() for row in arm_rows])
    grid = [[arm, *(row[key] for key in columns)] for arm, arm_rows in rows.items() for row in arm_rows]
    return [label, *columns.values()], grid


def calibration_lines(calibration: list[dict]) -> list[str]:
    """The placebo rejection rate of each test, one line per (subset, asked) group."""
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for record in calibration:
        groups.setdefault((record["subset"], record["asked"]), {})[record["test"]] = record
    lines = []
    for (subset, asked), tests in groups.items():
        parts = [f"{TEST_LABEL.get(name, name)} {r['rejections']}/{r['draws']} ({r['rate']:.1%})"
                 for name, r in tests.items()]
        alpha = next(iter(tests.values()))["alpha"]
        lines.append(f"{subset} {ASKED_LABEL.get(asked, asked)}: rejects at alpha {alpha}: " + ", ".join(parts))
    return lines


TEST_LABEL = {"paper_t": "paired t (paper's)", "likelihood": "log p randomization", "rank": "rank randomization"}


def parameters_text(parameters: int | None) -> str:
    """", N parameters", or nothing for a model behind a server (its size is not known here)."""
    return f", {parameters:,} parameters" if isinstance(parameters, int) else ""


def markdown_report(records: list[dict], summary: dict, calibration: list[dict] | None = None) -> str:
    """A short Markdown page: what was run, the table, how to read it, and the tests' placebo calibration."""
    n_seeds = records[0]["n_seeds"] if records else 0
    interval = "t interval over seeds" if n_seeds > 1 else "bootstrap over facts (one seed)"
    return (
        "# revcurse run\n\n"
        f"- model: {summary.get('model', '?')}{parameters_text(summary.get('parameters'))}\n"
        f"- seeds: {summary.get('seeds')}; training: {summary.get('train_seconds', 0):.0f} s, "
        f"{summary.get('tokens_per_second', 0):,.0f} tokens/s; probing: {summary.get('probe_seconds', 0):.0f} s\n"
        f"- probes: held-out phrasings only; 95% intervals: {interval}\n\n"
        + markdown_table(records)
        + "\nHow to read it: every number is a mean over facts of per-fact means over their probes, with a 95%"
        " interval of that same quantity. *accuracy* is the paper's (the greedy completion starts with the whole"
        " target); *answer* asks only for the answer inside a target that runs on after it. Each correct target is"
        " ranked against matched distractors: other facts' targets in the same phrasing. *log p gap* is the mean,"
        " over facts, of log p(correct target) minus the mean log p of its distractors on the same prompts; *t* is"
        " the paper's t-test paired over facts, *perm. p* a randomization test over facts (exact when the correct"
        " target is no different from a distractor, whatever their lengths and forms); *MRR-chance* is the"
        " per-fact mean reciprocal rank above its exact chance value, with its randomization test."
        " The reversal curse shows as high accuracy where `trained` is yes and near-zero accuracy"
        " with no likelihood gap where it is no.\n"
        + _experiment_section(records, summary)
        + _calibration_section(calibration)
    )


def _experiment_section(records: list[dict], summary: dict) -> str:
    """The run's experiment's own summary table (``Experiment.columns``), when it declares one."""
    experiment = EXPERIMENTS.get(summary.get("experiment", ""))
    if experiment is None or not experiment.columns:
        return ""
    header, rows = column_grid(records, experiment.columns)
    return "\n" + grid_markdown(experiment.title, header, rows).replace("# ", "## ", 1)


def _calibration_section(calibration: list[dict] | None) -> str:
    if not calibration:
        return ""
    lines = calibration_lines(calibration)
    return (
        "\n## Calibration: the tests under a placebo\n\nEach fact's correct target swapped for another fact's target"
        " in the same phrasing (a relation the model never saw), scored against the other distractors; a valid"
        " test rejects in about alpha of the draws (`revcurse calibrate RUN`).\n\n"
        + "".join(f"- {line}\n" for line in lines)
    )


def grid_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """A terminal table from ready-made string rows (the experiments' own result grids)."""
    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def grid_markdown(title: str, header: list[str], rows: list[list[str]]) -> str:
    """The same grid as a Markdown page: a heading and a table."""
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


GROUP_LABEL = {"setting": "setting", "subset": "subset", "asked": "asked"}


def column_grid(records: list[dict], columns: tuple[Column, ...], by: str | None = None,
                by_header: str | None = None) -> tuple[list[str], list[list[str]]]:
    """An experiment's own summary table (``Experiment.columns``) as (header, rows) of strings.

    Rows are the groups the columns leave open (e.g. the in-context control's columns fix the setting, so a row
    is a subset and asked direction, with whether it was trained) and, with ``by``, each value of that record
    field (a sweep's grid key, e.g. ``families.fraction``: one row per r). A cell is the column's metric as
    mean [95% interval], "-" where the run has no such group.
    """
    open_fields = [f for f in GROUP_LABEL if all(getattr(column, f) is None for column in columns)
                   and any(record.get(f) for record in records)]  # no run without settings shows a setting
    header = ([by_header or by] if by else []) + [GROUP_LABEL[f] for f in open_fields]
    header += (["trained"] if open_fields else []) + [column.header for column in columns]
    keys = list(dict.fromkeys(
        (record.get(by) if by else None, *(record.get(f, "") for f in open_fields))
        for record in records if record["metric"] == "accuracy"
    ))
    if by and all(isinstance(key[0], int | float) for key in keys):
        keys.sort(key=lambda key: key[0])
    rows = []
    for key in keys:
        at = [r for r in records if not by or r.get(by) == key[0]]
        group = dict(zip(open_fields, key[1:]))
        row = [f"{key[0]:g}" if isinstance(key[0], float) else str(key[0])] if by else []
        row += [ASKED_LABEL.get(v, v) if f == "asked" else v for f, v in group.items()]
        cells, trained = [], []
        for column in columns:
            try:
                value = lookup(at, *_column_group(column, group), column.metric, _column_setting(column, group))
            except KeyError:
                cells.append("-")
                continue
            trained.append(value["trained"])
            low, high = value.get("ci95_low"), value.get("ci95_high")
            interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
            cells.append(f"{value['mean']:.2f}{interval}")
        if open_fields:
            row.append(("yes" if trained[0] else "no") if trained else "-")
        rows.append(row + cells)
    return header, rows


def _column_group(column: Column, group: dict[str, str]) -> tuple[str, str]:
    return (column.subset if column.subset is not None else group.get("subset", ""),
            column.asked if column.asked is not None else group.get("asked", ""))


def _column_setting(column: Column, group: dict[str, str]) -> str:
    return column.setting if column.setting is not None else group.get("setting", "")


def plot_column_grid(records: list[dict], columns: tuple[Column, ...], by: str, path: Path, xlabel: str,
                     title: str) -> None:
    """Each column's metric against the record field ``by`` (a swept key), 95% intervals as bands; the x axis
    is linear below its smallest positive value and logarithmic above it, so r = 0, 0.01 and 0.5 all show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs_all = sorted({r[by] for r in records if isinstance(r.get(by), int | float)})
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for column in columns:
        points = []
        for x in xs_all:
            try:
                value = lookup([r for r in records if r.get(by) == x], column.subset or "", column.asked or "",
                               column.metric, column.setting or "")
            except KeyError:
                continue
            points.append((x, value))
        if not points:
            continue
        xs = [x for x, _ in points]
        axis.plot(xs, [v["mean"] for _, v in points], marker="o", label=column.header)
        axis.fill_between(xs, [v.get("ci95_low", v["mean"]) for _, v in points],
                          [v.get("ci95_high", v["mean"]) for _, v in points], alpha=0.2)
    positive = [x for x in xs_all if x > 0]
    if positive and max(positive) / min(positive) >= 10:
        axis.set_xscale("symlog", linthresh=min(positive))
    axis.set_xlabel(xlabel)
    axis.set_ylabel(f"{columns[0].metric if columns else 'accuracy'} (held-out questions)")
    axis.set_ylim(-0.02, 1.05)
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
