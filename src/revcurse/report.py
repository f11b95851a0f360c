"""Report: the result table on the terminal and as Markdown, read from tidy records (never re-running a model)."""

from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table

from revcurse.errors import InputError
from revcurse.metrics import lookup

ASKED_LABEL = {"name_to_description": "name→desc", "description_to_name": "desc→name"}


TABLE_METRICS = ("accuracy", "rank1", "mrr", "likelihood_diff", "likelihood_t", "likelihood_p")
INTERVAL_METRICS = ("accuracy", "likelihood_diff")


def check_records(records: object, path: str | Path) -> list[dict]:
    """``records`` if they are metric records the result table can show (as ``aggregate`` writes them), else an
    ``InputError`` naming ``path``, the record (0-based) and the field that is missing or of the wrong type."""
    expected = "a list of metric records (objects with subset, asked, trained, metric, mean, ...)"
    if not isinstance(records, list):
        raise InputError(f"expected {expected}, got a JSON {type(records).__name__}", path)
    groups: dict[tuple[str, str], set[str]] = {}
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
        groups.setdefault((record["subset"], record["asked"]), set()).add(record["metric"])
    for (subset, asked), metrics in groups.items():
        missing = [metric for metric in TABLE_METRICS if metric not in metrics]
        if missing:
            raise InputError(f"no {', '.join(missing)} record for subset {subset!r}, asked {asked!r}", path)
    return records


def result_rows(records: list[dict]) -> list[dict[str, str]]:
    """One row per (subset, asked direction), values formatted for people."""
    rows = []
    seen = []
    for record in records:
        key = (record["subset"], record["asked"])
        if key in seen:
            continue
        seen.append(key)
        subset, asked = key
        accuracy = lookup(records, subset, asked, "accuracy")
        diff = lookup(records, subset, asked, "likelihood_diff")
        t = lookup(records, subset, asked, "likelihood_t")["mean"]
        p = lookup(records, subset, asked, "likelihood_p")["mean"]  # the randomization test (t-test's in old runs)
        answer_accuracy, rank_p = (_optional(records, subset, asked, m) for m in ("answer_accuracy", "rank_p"))
        answer = "n/a" if answer_accuracy is None else f"{answer_accuracy:.2f}"  # absent from older records
        rank_test = "n/a"
        if rank_p is not None and not math.isnan(rank_p):
            rank_test = f"{lookup(records, subset, asked, 'mrr_excess')['mean']:+.2f} p={rank_p:.2g}"
        rows.append(
            {
                "subset": subset,
                "asked": ASKED_LABEL.get(asked, asked),
                "trained": "yes" if record["trained"] else "no",
                "accuracy": f"{accuracy['mean']:.2f} [{accuracy['ci95_low']:.2f}, {accuracy['ci95_high']:.2f}]",
                "answer": answer,
                "rank1": f"{lookup(records, subset, asked, 'rank1')['mean']:.2f}",
                "mrr": f"{lookup(records, subset, asked, 'mrr')['mean']:.2f}",
                "logp_gap": f"{diff['mean']:+.2f} [{diff['ci95_low']:+.2f}, {diff['ci95_high']:+.2f}]",
                "t_test": format_test(t, p, diff["n_facts"]),
                "rank_test": rank_test,
            }
        )
    return rows


def _optional(records: list[dict], subset: str, asked: str, metric: str) -> float | None:
    """The mean of a metric that records written by an older revcurse do not have (None there)."""
    try:
        return lookup(records, subset, asked, metric)["mean"]
    except KeyError:
        return None


COLUMNS = {
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
    """The table's columns: *answer* only where some target runs on after its answer (it equals accuracy else)."""
    differs = any(row["answer"] not in ("n/a", row["accuracy"].split()[0]) for row in rows)
    return {key: label for key, label in COLUMNS.items() if key != "answer" or differs}


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


def parameters_text(summary: dict) -> str:
    """The model's size as run.json has it; '?' for a model asked remotely (its weights are not here)."""
    parameters = summary.get("parameters")
    return f"{parameters:,}" if isinstance(parameters, int) else "?"


def markdown_report(records: list[dict], summary: dict, calibration: list[dict] | None = None) -> str:
    """A short Markdown page: what was run, the table, how to read it, and the tests' placebo calibration."""
    n_seeds = records[0]["n_seeds"] if records else 0
    interval = "t interval over seeds" if n_seeds > 1 else "bootstrap over facts (one seed)"
    return (
        "# revcurse run\n\n"
        f"- model: {summary.get('model', '?')}, {parameters_text(summary)} parameters\n"
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
        + _calibration_section(calibration)
    )


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
