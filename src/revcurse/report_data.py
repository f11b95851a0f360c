"""What a report reads from run and compare folders: their records, predictions, training logs and summaries.

Reading only: nothing here runs a model or writes a file. A crafted folder is an ``InputError``, never a crash.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from revcurse.errors import InputError, parse_json, read_user_text
from revcurse.metrics import ASKED_ORDER, SUBSET_ORDER
from revcurse.report import check_records

ARM_NAME = re.compile(r"[a-z0-9][a-z0-9+-]*")  # what `revcurse compare` names its arms (cure-<arm>/)


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
    curves: dict[str, list[dict]] = field(default_factory=dict)  # seed folder name -> curve.jsonl rows


@dataclass
class CompareData:
    """A compare folder: its records (with ``cure``) and the run folder of each arm that is present."""

    folder: Path
    records: list[dict]
    arms: dict[str, RunData]


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
    curves = {  # the likelihood curve while training (revcurse.curve)
        seed_folder.name: [e for e in _read_jsonl(seed_folder / "curve.jsonl") if {"step", "gap"} <= e.keys()]
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
        curves={name: rows for name, rows in curves.items() if rows},
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
