"""Compare: the baseline and chosen cures over the same seeds and worlds, side by side.

Each arm is one run folder (``cure-<arm>/``) of ``runner.run_experiment``; an arm is a cure name, several
joined by ``+`` (applied in that order), an objective -- ``mlm-u`` (the any-order objective) or ``mlm-P``, masked-LM
at a fixed P% of tokens (``mlm-15``: ``train.objective=mlm``, ``train.mask_rate=0.15``; P from 1 to 99) -- or
``none`` (the baseline, always run first). Seed i of every arm draws the same world, so arms differ only by the cure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from pydantic import ValidationError

from revcurse.config import RunConfig, dump_config
from revcurse.cures import CURES
from revcurse.errors import InputError
from revcurse.executors import Executor, as_executor
from revcurse.metrics import t_interval
from revcurse.model import check_checkpoint
from revcurse.paths import job_files_folder
from revcurse.records import ARMS_FILE, RunOutcome, load_started_config, record_folder, write_run
from revcurse.report_compare import BASELINE, markdown_compare, plot_compare
from revcurse.report_page import write_report_after_run
from revcurse.runner import run_seeds, seed_jobs

OBJECTIVES = {"mlm-u"}
FIXED_RATE_ARM = re.compile(r"mlm-(\d+)")  # mlm-15: masked-LM at a fixed 15% (objective_update)


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
        if name not in CURES and objective_update(name, where) is None:
            raise InputError(f"unknown cure {name!r} in {where}; known: {', '.join([*CURES, *OBJECTIVES])}, "
                             "mlm-P (masked-LM at a fixed P% of tokens, e.g. mlm-15)")
    if sum(objective_update(name, where) is not None for name in arm.split("+")) > 1:
        raise InputError(f"{where}: arm {arm!r} names two objectives; an arm trains with one")


def objective_update(name: str, where: str = "--cures") -> dict | None:
    """The ``train`` fields an objective arm sets (``mlm-u``; ``mlm-P``: fixed rate P%), None for a cure name.
    ``mlm-`` followed by digits outside 1..99 is refused (0% masks nothing; 100% leaves nothing to read)."""
    if name in OBJECTIVES:
        return {"objective": name, "mask_rate": None}
    fixed = FIXED_RATE_ARM.fullmatch(name)
    if fixed is None:
        return None
    percent = int(fixed.group(1))
    if not 1 <= percent <= 99:
        raise InputError(f"{where}: arm {name!r}: mlm-P masks P% of tokens, P a whole number from 1 to 99 "
                         "(e.g. mlm-15)")
    return {"objective": "mlm", "mask_rate": percent / 100}


def arm_config(config: RunConfig, arm: str) -> RunConfig:
    """The config of one arm: the base config with that arm's cures (and objective)."""
    names = [] if arm == BASELINE else arm.split("+")
    train = config.train
    for name in names:
        update = objective_update(name)
        if update is not None:
            try:  # validated: e.g. train.packing needs the causal objective
                train = type(train).model_validate({**train.model_dump(), **update})
            except ValidationError as error:
                reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
                raise InputError(f"arm {arm!r}: {reasons}") from None
    cures = [*config.cures, *(name for name in names if objective_update(name) is None)]
    return config.model_copy(update={"cures": cures, "train": train})


def run_compare(
    config: RunConfig,
    arms: list[str],
    out: Path,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[..., None] = print,
    executor: Executor | int = 1,
    resume: bool = False,
) -> CompareOutcome:
    """Run the baseline and every arm; write compare.json (tidy records with ``cure``), compare.md, compare.png.

    ``resume=True`` continues an interrupted comparison at ``out`` (same config and arms): finished seeds are
    kept and training picks up at each seed's last checkpoint. ``executor`` runs the seeds of every arm
    (revcurse.executors; an int: that many local processes).
    """
    out = Path(out)
    executor = as_executor(executor).logging_into(job_files_folder(out))
    check_checkpoint(config.model)  # a refused folder (pickle, own code) stops the comparison before any work
    records: list[dict] = []
    all_arms = [BASELINE, *arms]
    with record_folder(out, overwrite, resume, resume_command=f"revcurse compare --resume {out}") as staging:
        if resume and load_started_comparison(staging) != (config, arms):
            raise InputError("the config or arms differ from those this comparison was started with", staging)
        if not resume:
            (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
            (staging / ARMS_FILE).write_text(json.dumps(arms), encoding="utf-8")
        outcomes = run_arms({f"cure-{arm}": arm_config(config, arm) for arm in all_arms}, staging, executor,
                            show_progress, log)
        for arm, outcome in zip(all_arms, outcomes.values()):
            records += [{"cure": arm, **record} for record in outcome.records]
            records.append(cost_record(arm, outcome.summary))
        (staging / "compare.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
        (staging / "compare.md").write_text(markdown_compare(records), encoding="utf-8")
        plot_compare(records, staging / "compare.png")
        write_report_after_run(staging)  # report.html: the cures, then each arm
    return CompareOutcome(folder=out, records=records)


def run_arms(configs: dict[str, RunConfig], staging: Path, executor: Executor | int = 1, show_progress: bool = True,
             log: Callable[..., None] = print) -> dict[str, RunOutcome]:
    """Every seed of every arm (``{folder name: config}``) as tasks of one executor, then one run folder per arm
    inside ``staging`` (resumable: finished seeds are kept)."""
    jobs = []
    for name, config in configs.items():
        (staging / name).mkdir(exist_ok=True)
        jobs += seed_jobs(config, staging / name)
    seeds = {name: config.seeds for name, config in configs.items()}
    executor = as_executor(executor)
    log(f"{len(jobs)} runs: {len(configs)} arms x {max(seeds.values())} seeds, {executor.describe()}")
    outputs = run_seeds(jobs, executor, show_progress, log)
    outcomes, start = {}, 0
    for name, config in configs.items():
        outcomes[name] = write_run(staging / name, config, outputs[start : start + config.seeds])
        start += config.seeds
    return outcomes


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
