"""Compare: the baseline and chosen cures over the same seeds and worlds, side by side.

Each arm is one run folder (``cure-<arm>/``) of ``runner.run_experiment``; an arm is a cure name, several
joined by ``+`` (applied in that order), ``mlm-u`` (the any-order objective) or ``none`` (the baseline, always
run first). Seed i of every arm draws the same world, so arms differ only by the cure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from rich.table import Table

from revcurse.config import RunConfig, dump_config
from revcurse.cures import CURES
from revcurse.errors import InputError
from revcurse.metrics import lookup, t_interval
from revcurse.model import check_checkpoint
from revcurse.records import load_started_config, record_folder, write_run
from revcurse.report import ASKED_LABEL, format_test
from revcurse.report_page import write_report_after_run
from revcurse.runner import run_seeds, seed_jobs

BASELINE = "none"
OBJECTIVES = {"mlm-u"}


@dataclass
class CompareOutcome:
    folder: Path
    records: list[dict]


def parse_arms(text: str, where: str = "--cures") -> list[str]:
    """'reverse-entity,bidirectional' -> the arms run beside the baseline (``where`` names the input in errors).

    Refused before anything is written: no arm (``--cures ""`` would run the baseline alone as a comparison), an
    empty arm between commas, an arm listed twice (two runs into one folder), and names that are not cures.
    """
    example = "e.g. --cures reverse-entity,paraphrase"
    if not text.strip():
        raise InputError(f"{where} is empty: name the cures to compare with the baseline ({example})")
    arms = [arm.strip() for arm in text.split(",")]
    if not all(arms):
        raise InputError(f"{where} {text!r}: an empty name between commas ({example})")
    for arm in arms:
        check_arm(arm, where)
    repeated = sorted({arm for arm in arms if arms.count(arm) > 1})
    if repeated:
        raise InputError(f"{where} {text!r}: {', '.join(repeated)} listed twice")
    cures = [arm for arm in arms if arm != BASELINE]
    if not cures:
        raise InputError(f"{where} names only the baseline ('{BASELINE}', which always runs): add a cure to compare "
                         "with it, or run the baseline alone with revcurse train")
    return cures


def check_arm(arm: str, where: str) -> None:
    """One arm: the baseline, or cure (and objective) names joined by ``+``, none of them empty or the baseline."""
    if arm == BASELINE:
        return
    for name in arm.split("+"):
        if not name.strip():
            raise InputError(f"{where}: arm {arm!r} has an empty name beside '+' (join names as "
                             "reverse-entity+paraphrase)")
        if name == BASELINE:
            raise InputError(f"{where}: arm {arm!r}: '{BASELINE}' is the baseline; it cannot join a cure with '+'")
        if name not in CURES and name not in OBJECTIVES:
            raise InputError(f"unknown cure {name!r} in {where}; known: {', '.join([*CURES, *OBJECTIVES])}")


def arm_config(config: RunConfig, arm: str) -> RunConfig:
    """The config of one arm: the base config with that arm's cures (and objective)."""
    names = [] if arm == BASELINE else arm.split("+")
    train = config.train
    if any(name in OBJECTIVES for name in names):
        train = train.model_copy(update={"objective": "mlm-u"})
    cures = [*config.cures, *(name for name in names if name not in OBJECTIVES)]
    return config.model_copy(update={"cures": cures, "train": train})


def run_compare(
    config: RunConfig,
    arms: list[str],
    out: Path,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[..., None] = print,
    processes: int = 1,
    resume: bool = False,
) -> CompareOutcome:
    """Run the baseline and every arm; write compare.json (tidy records with ``cure``), compare.md, compare.png.

    ``resume=True`` continues an interrupted comparison at ``out`` (same config and arms): finished seeds are
    kept and training picks up at each seed's last checkpoint.
    """
    out = Path(out)
    check_checkpoint(config.model)  # a refused folder (pickle, own code) stops the comparison before any work
    records: list[dict] = []
    all_arms = [BASELINE, *arms]
    with record_folder(out, overwrite, resume, resume_command=f"revcurse compare --resume {out}") as staging:
        if resume and load_started_comparison(staging) != (config, arms):
            raise InputError("the config or arms differ from those this comparison was started with", staging)
        if not resume:
            (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
            (staging / ARMS_FILE).write_text(json.dumps(arms), encoding="utf-8")
        jobs = []
        for arm in all_arms:
            (staging / f"cure-{arm}").mkdir(exist_ok=True)
            jobs += seed_jobs(arm_config(config, arm), staging / f"cure-{arm}")
        log(f"{len(jobs)} runs: {len(all_arms)} arms x {config.seeds} seeds, {processes} process(es)")
        outputs = run_seeds(jobs, processes, show_progress, log)
        for i, arm in enumerate(all_arms):
            arm_outputs = outputs[i * config.seeds : (i + 1) * config.seeds]
            outcome = write_run(staging / f"cure-{arm}", arm_config(config, arm), arm_outputs)
            records += [{"cure": arm, **record} for record in outcome.records]
            records.append(cost_record(arm, outcome.summary))
        (staging / "compare.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
        (staging / "compare.md").write_text(markdown_compare(records), encoding="utf-8")
        plot_compare(records, staging / "compare.png")
        write_report_after_run(staging)  # report.html: the cures, then each arm
    return CompareOutcome(folder=out, records=records)


ARMS_FILE = "arms.json"  # the arms a comparison was started with (the baseline is implied)


def load_started_comparison(staging: Path) -> tuple[RunConfig, list[str]]:
    """The config and arms an interrupted comparison was started with."""
    if not (staging / ARMS_FILE).is_file():
        raise InputError("the interrupted comparison has no arms.json; start it again with --overwrite", staging)
    try:
        arms = json.loads((staging / ARMS_FILE).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"not valid JSON: {error}", staging / ARMS_FILE) from None
    if not isinstance(arms, list) or not all(isinstance(arm, str) for arm in arms):
        raise InputError("expected a JSON list of arm names", staging / ARMS_FILE)
    return load_started_config(staging), parse_arms(",".join(arms), str(staging / ARMS_FILE))


def cost_record(arm: str, summary: dict) -> dict:
    """Training time of an arm, mean over seeds with a t interval (or the one value)."""
    seconds = [s["train_seconds"] for s in summary["per_seed"]]
    low, high = t_interval(seconds) if len(seconds) > 1 else (seconds[0], seconds[0])
    tokens = fmean(s["train_tokens"] for s in summary["per_seed"])
    return {
        "cure": arm, "subset": "all", "asked": "all", "trained": None, "metric": "train_seconds",
        "mean": fmean(seconds), "ci95_low": low, "ci95_high": high, "n_seeds": len(seconds),
        "n_items": len(seconds), "train_tokens": tokens,
    }


def _arms(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["cure"] for r in records))


def _groups(records: list[dict]) -> list[tuple[str, str, bool]]:
    return list(dict.fromkeys((r["subset"], r["asked"], r["trained"]) for r in records if r["subset"] != "all"))


def compare_rows(records: list[dict]) -> list[dict[str, str]]:
    rows = []
    baseline_seconds = lookup(_only(records, BASELINE), "all", "all", "train_seconds")["mean"]
    for arm in _arms(records):
        arm_records = _only(records, arm)
        seconds = lookup(arm_records, "all", "all", "train_seconds")["mean"]
        for subset, asked, trained in _groups(records):
            accuracy = lookup(arm_records, subset, asked, "accuracy")
            t = lookup(arm_records, subset, asked, "likelihood_t")
            p = lookup(arm_records, subset, asked, "likelihood_p")["mean"]
            rows.append({
                "cure": arm,
                "subset": subset,
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
    "accuracy": "accuracy [95% CI]", "t_test": "likelihood: paired t, facts", "train_time": "train time (vs none)",
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
        values = [lookup(arm_records, s, a, "accuracy") for s, a, _ in groups]
        means = [v["mean"] for v in values]
        errors = [[m - v["ci95_low"] for m, v in zip(means, values)],
                  [v["ci95_high"] - m for m, v in zip(means, values)]]
        positions = [g + (i - (len(arms) - 1) / 2) * width for g in range(len(groups))]
        axis.bar(positions, means, width, yerr=errors, capsize=2, label=arm)
    axis.set_xticks(range(len(groups)))
    axis.set_xticklabels(
        [f"{s}\n{ASKED_LABEL.get(a, a)}\n{'trained' if t else 'REVERSE'}" for s, a, t in groups], fontsize=8
    )
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accuracy (held-out phrasings)")
    axis.set_title("Reversal curse: accuracy by cure (95% intervals)")
    axis.legend(title="cure", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
