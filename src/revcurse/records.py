"""Run records: the one writer and reader of run folders, so every command can read what any experiment wrote.

A run folder is built under a temporary name beside its destination and renamed into place only when the run
has finished, so an interrupted or failed run never looks finished, and an existing folder is never replaced
unless asked. Every experiment's run folder has the same layout::

    RUN/config.yaml          resolved config (defaults filled in): the run can be repeated from its folder alone
    RUN/metrics.json         tidy records aggregated over seeds (metrics.aggregate)
    RUN/calibration.json     each test's rejection rate under a placebo (metrics.placebo_rejections)
    RUN/predictions.jsonl    one line per (seed, probe): prompt, target, greedy answer, log-probs, rank
    RUN/report.md, .html     the result table and how to read it (report, report_page)
    RUN/run.json             experiment, seeds, timings, library versions, git commit, model size
    RUN/status.json          "finished" (while running, in .RUN.partial/: "running", or "failed")
    RUN/seed-N/model/        a trained model (safetensors) and tokenizer (none when nothing was trained)
    RUN/seed-N/metrics.json  the same records for that seed alone
    RUN/seed-N/train_log.jsonl  loss per step
    RUN/seed-N/outcome.json  that seed's probe results and stats (what a resumed run reads back)
    RUN/trackers/            with train.report_to: tensorboard/, wandb/, mlflow/ files (revcurse.trackers)

While it runs the folder is ``.RUN.partial/``, locked by the writing process, and each seed checkpoints its
training into ``seed-N/checkpoints/step-K/`` (see train.py); ``revcurse train --resume RUN`` continues there.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from revcurse.config import RunConfig, dump_config, load_config
from revcurse.errors import InputError, NonFiniteLoss, SkippedLine, parse_json, read_user_text, write_skipped
from revcurse.experiments import get_experiment
from revcurse.metrics import aggregate, placebo_rejections, pooled_groups
from revcurse.paths import partial_folder
from revcurse.probe import ProbeResult
from revcurse.report import markdown_report
from revcurse.report_page import write_report_after_run
from revcurse.trackers import log_run_summary
from revcurse.versions import library_versions


@dataclass
class RunOutcome:
    """What a finished run returns to its caller: where it is and its records."""

    folder: Path
    records: list[dict]
    summary: dict


SeedOutput = tuple[int, list[ProbeResult], dict]  # (world seed, probe results, stats) of one seed


STATUS_FILE = "status.json"  # {"status": "running" | "failed" | "finished", ...}: what state a run folder is in
LOCK_FILE = ".lock"  # held while a process writes the run; a killed process's lock is released by the OS


def write_status(folder: Path, status: str, **details: object) -> None:
    """Record a run folder's state atomically (a reader never sees half a status file)."""
    record = {"status": status, "pid": os.getpid(), "host": platform.node(), "time": time.time(), **details}
    temporary = folder / f".{STATUS_FILE}.tmp"
    temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(temporary, folder / STATUS_FILE)


def run_status(destination: Path) -> str:
    """'finished', 'running' (a process holds the lock), 'interrupted' (killed: resumable), 'failed' or 'absent'."""
    if (destination / STATUS_FILE).is_file() or (destination / "run.json").is_file():
        return "finished"
    staging = partial_folder(destination)
    if not staging.is_dir():
        return "absent"
    try:
        with FileLock(staging / LOCK_FILE, timeout=0):
            pass
    except Timeout:
        return "running"
    recorded = _recorded_status(staging).get("status", "running")
    return "interrupted" if recorded == "running" else recorded


ARMS_FILE = "arms.json"  # a comparison's arms (written by compare.run_compare): it marks a compare folder


def resume_command(destination: Path) -> str:
    """The command that continues an interrupted run: ``compare --resume`` for a comparison, else ``train``."""
    command = "compare" if (partial_folder(destination) / ARMS_FILE).is_file() else "train"
    return f"revcurse {command} --resume {destination}"


def failure_reason(destination: Path) -> str | None:
    """Why a failed run stopped (the error recorded in its ``.partial`` folder), or None."""
    reason = _recorded_status(partial_folder(destination)).get("error")
    return reason if isinstance(reason, str) else None


def _recorded_status(staging: Path) -> dict:
    """The status.json of a ``.partial`` folder; {} when missing or unreadable (a kill mid-write: "running")."""
    try:
        record = json.loads((staging / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def resumable_folder(destination: Path) -> Path:
    """The ``.partial`` folder of an interrupted run, or an InputError saying why there is none to resume."""
    staging = partial_folder(destination)
    if not staging.is_dir():
        if run_status(destination) == "finished":
            raise InputError("this run has finished; there is nothing to resume", destination)
        raise InputError(f"no interrupted run to resume (expected {staging.name} beside it)", destination)
    return staging


def _resumable(staging: Path) -> bool:
    """Anything worth keeping after a failure: a training checkpoint or a finished seed."""
    return any(staging.glob("**/seed-*/checkpoints/step-*")) or any(staging.glob(f"**/seed-*/{SEED_OUTCOME}"))


@contextmanager
def run_folder(
    destination: Path, overwrite: bool, resume: bool = False, keep_status: bool = True,
    resume_command: str | None = None,
) -> Iterator[Path]:
    """Yield the staging folder that becomes ``destination`` only if the block finishes without error.

    While the block runs, ``.NAME.partial/`` holds ``status.json`` ("running") and a lock, so a second process
    cannot write the same run. A failure leaves it marked "failed" when there is something to resume (a
    checkpoint or a finished seed) and removes it otherwise; a killed process leaves it "running" with its lock
    released, which ``run_status`` reports as "interrupted". ``resume=True`` continues in that folder.
    ``keep_status=False`` drops status.json from the finished folder (an exported dataset, not a run).
    ``resume_command`` (how to resume it) goes into the message of a run stopped by a diverging loss.
    """
    destination = Path(destination)
    staging = partial_folder(destination)
    if resume:
        resumable_folder(destination)
    else:
        if destination.exists() and not overwrite:
            raise InputError("run folder exists; pass --overwrite to replace it", destination)
        if staging.exists() and not overwrite:
            raise InputError(
                f"an unfinished run of this name is in {staging.name}: continue it with --resume, or pass "
                "--overwrite to start again", destination,
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(staging / LOCK_FILE, timeout=0)
    try:
        staging.mkdir(exist_ok=True)
        lock.acquire()
    except Timeout:
        raise InputError("another process is writing this run right now (its lock is held)", destination) from None
    try:
        if not resume and any(p.name != LOCK_FILE for p in staging.iterdir()):  # --overwrite of a partial run
            for leftover in staging.iterdir():
                if leftover.name != LOCK_FILE:
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        write_status(staging, "running", resumed=resume)
        try:
            yield staging
        except BaseException as error:
            kept = resume or (_resumable(staging) and not isinstance(error, InputError))
            if kept:
                write_status(staging, "failed", error=f"{type(error).__name__}: {error}")
            else:
                shutil.rmtree(staging, ignore_errors=True)
            if isinstance(error, NonFiniteLoss):
                error.explain(staging if kept else None, resume_command)
            raise
        write_status(staging, "finished")
        if not keep_status:
            (staging / STATUS_FILE).unlink()
        (staging / LOCK_FILE).unlink(missing_ok=True)
        if destination.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
            os.replace(destination, trash / "run")
            os.replace(staging, destination)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, destination)
    finally:
        lock.release()


def record_run(
    out: Path,
    config: RunConfig,
    work: Callable[[Path], list[SeedOutput]],
    overwrite: bool = False,
    resume: bool = False,
    resume_command: str | None = None,
    skipped: Sequence[SkippedLine] = (),
    log: Callable[..., None] = print,
) -> RunOutcome:
    """The run folder ``out`` of one config: ``work(staging)`` runs its seeds into the staging folder, and the
    records are written from their outputs. A resumed run must have been started with the same config."""
    with run_folder(out, overwrite, resume, resume_command=resume_command) as staging:
        start_or_resume(staging, config, resume, log)
        outputs = work(staging)
        write_skipped(staging, list(skipped))
        outcome = write_run(staging, config, outputs)
    return RunOutcome(folder=Path(out), records=outcome.records, summary=outcome.summary)


def start_or_resume(staging: Path, config: RunConfig, resume: bool, log: Callable[..., None] = print) -> None:
    """Write the config first thing into a new run; check a resumed run's config is the one it started with."""
    if not resume:
        (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        return
    if load_started_config(staging) != config:
        raise InputError("the config differs from the one this run was started with", staging / "config.yaml")
    log(f"resuming {staging.name.removeprefix('.').removesuffix('.partial')}: {describe_progress(staging)}")


@contextmanager
def record_folder(out: Path, overwrite: bool = False, resume: bool = False, resume_command: str | None = None,
                  keep_status: bool = True) -> Iterator[Path]:
    """A folder of several runs (a comparison's arms) or of data (an export), written atomically as a run is:
    the staging folder to fill, renamed to ``out`` when the block finishes."""
    with run_folder(out, overwrite, resume, keep_status, resume_command) as staging:
        yield staging


SEED_OUTCOME = "outcome.json"  # a finished seed: its world seed, stats and every probe result


def write_record(path: Path, text: str) -> None:
    """Write one file of a run folder beside it, then rename: a reader never sees half of it (a seed's outcome,
    its curve while it trains, an analysis added to a finished run)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def save_seed_outcome(path: Path, world_seed: int, results: list[ProbeResult], stats: dict) -> None:
    record = {"world_seed": world_seed, "stats": stats, "results": [r.to_json() for r in results]}
    write_record(path, json.dumps(record, ensure_ascii=False))


def load_seed_outcome(path: Path) -> tuple[int, list[ProbeResult], dict]:
    record = json.loads(path.read_text(encoding="utf-8"))
    return record["world_seed"], [ProbeResult(**r) for r in record["results"]], record["stats"]


def read_probe_runs(folder: Path) -> list[tuple[int, int, list[ProbeResult]]]:
    """A finished run's probe results per seed, ``[(seed, world_seed, results)]``, read back from its
    predictions.jsonl (the model is not run again); world seeds from run.json or remote.json (else the seed)."""
    path = folder / "predictions.jsonl"
    if not path.is_file():
        raise InputError("not a run folder: expected predictions.jsonl (a compare folder: pass an arm)", folder)
    world_seeds: dict[int, int] = {}
    for name in ("run.json", "remote.json"):
        if (folder / name).is_file():
            record = parse_json(read_user_text(folder / name, "file"), folder / name)
            entries = record.get("per_seed", [record]) if isinstance(record, dict) else []
            world_seeds.update({e["seed"]: e["world_seed"] for e in entries if isinstance(e, dict)
                                and isinstance(e.get("seed"), int) and isinstance(e.get("world_seed"), int)})
    fields_of_result = {f.name for f in fields(ProbeResult)}
    by_seed: dict[int, list[ProbeResult]] = defaultdict(list)
    for number, line in enumerate(read_user_text(path, "file").split("\n"), start=1):
        if not line.strip():
            continue
        row = parse_json(line, path, number)
        if not isinstance(row, dict) or "distractor_keys" not in row:
            raise InputError("no distractor scores (written by an older revcurse): probe the model again", path, number)
        try:
            result = ProbeResult(**{k: v for k, v in row.items() if k in fields_of_result})
        except TypeError as error:
            raise InputError(f"not a probe result: {error}", path, number) from None
        scores = result.distractor_logprobs if isinstance(result.distractor_logprobs, list) else [None]
        if (not isinstance(row.get("seed", 0), int)
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in [result.logprob_correct, *scores])
                or not isinstance(result.distractor_keys, list)
                or not all(isinstance(k, str) for k in [result.fact_key, *result.distractor_keys])
                or len(result.distractor_keys) != len(scores)):
            raise InputError("expected a fact_key, a number logprob_correct, distractor_keys (text) with as many "
                             "distractor_logprobs (numbers), and a whole-number seed", path, number)
        by_seed[row.get("seed", 0)].append(result)
    return [(seed, world_seeds.get(seed, seed), results) for seed, results in sorted(by_seed.items())]


def load_started_config(staging: Path) -> RunConfig:
    """The config an interrupted run was started with (written first thing into its folder)."""
    if not (staging / "config.yaml").is_file():
        raise InputError("the interrupted run has no config.yaml; start it again with --overwrite", staging)
    return load_config(staging / "config.yaml")


def describe_progress(staging: Path) -> str:
    """What an interrupted run had done: finished seeds and the step of each seed's last checkpoint."""
    parts = []
    for seed_folder in sorted(p for p in staging.glob("**/seed-*") if p.is_dir()):  # compare: cure-X/seed-N
        name = seed_folder.relative_to(staging).as_posix()
        if (seed_folder / SEED_OUTCOME).is_file():
            parts.append(f"{name} finished")
        elif steps := sorted(seed_folder.glob("checkpoints/step-*[0-9]")):
            parts.append(f"{name} from step {int(steps[-1].name.split('-')[1])}")
        else:
            parts.append(f"{name} from the start")
    return ", ".join(parts) or "nothing done yet; starting from the beginning"


def write_run(folder: Path, config: RunConfig, outputs: list[SeedOutput]) -> RunOutcome:
    """Aggregate the seeds of one config and write its run files into ``folder``: the one place that does."""
    (folder / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    per_seed_stats = [stats for _, _, stats in outputs]
    runs = [(stats["seed"], world_seed, results) for world_seed, results, stats in outputs]
    records = aggregate(runs)
    pooled = get_experiment(config.experiment).pooled
    if pooled:  # the subsets as one group too (the paper pools mothers and fathers), each fact still counted once
        records += pooled_groups(runs, pooled)
    (folder / "metrics.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    calibration = placebo_rejections(runs)
    write_calibration(folder, calibration)
    with open(folder / "predictions.jsonl", "w", encoding="utf-8") as handle:
        for seed, _, results in runs:
            for result in results:
                handle.write(json.dumps({"seed": seed, **result.to_json()}, ensure_ascii=False) + "\n")
    trained = [s for s in per_seed_stats if "train_seconds" in s]
    summary = {
        "experiment": config.experiment,
        "model": describe_model(config, per_seed_stats[0].get("served_model")),
        "cures": config.cures,
        "objective": config.train.objective,
        "parameters": per_seed_stats[0].get("parameters"),
        "seeds": [s["seed"] for s in per_seed_stats],
        "train_seconds": sum(s["train_seconds"] for s in trained),
        "tokens_per_second": float(np.mean([s["tokens_per_second"] for s in trained])) if trained else 0.0,
        "probe_seconds": sum(s["probe_seconds"] for s in per_seed_stats),
        "per_seed": per_seed_stats,
        "versions": library_versions(),
    }
    (folder / "run.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    (folder / "report.md").write_text(markdown_report(records, summary, calibration), encoding="utf-8")
    write_report_after_run(folder)  # report.html, and report.md with the per-fact counts
    log_run_summary(config, folder, records, (folder / "report.md").read_text(encoding="utf-8"))  # report_to
    return RunOutcome(folder=folder, records=records, summary=summary)


def write_seed_metrics(folder: Path, seed: int, world_seed: int, results: list[ProbeResult]) -> None:
    """One seed's records alone (``seed-N/metrics.json``), beside its model."""
    (folder / "metrics.json").write_text(json.dumps(aggregate([(seed, world_seed, results)]), indent=1))


def describe_model(config: RunConfig, served: str | None = None) -> str:
    """Who answered, in words: the server's model, the checkpoint, or the tiny model built here."""
    if config.probe.backend == "openai":
        return f"{served or config.probe.model_name or 'the only model'} at {config.probe.url}"
    return config.model.checkpoint or "tiny Llama from scratch"


CALIBRATION_FILE = "calibration.json"  # the placebo rejection rate of each test, per (subset, asked)


def write_calibration(folder: Path, records: list[dict]) -> None:
    """Record how often each test rejected under the placebo (``metrics.placebo_rejections``) beside metrics."""
    write_record(folder / CALIBRATION_FILE, json.dumps(records, indent=1))


