"""Experiment 1 end to end: world -> corpus -> train -> probe -> records, over seeds, into one run folder.

The run folder is built under a temporary name beside its destination and renamed into place only when the run
has finished, so an interrupted or failed run never looks finished, and an existing folder is never replaced
unless asked. Layout::

    RUN/config.yaml          resolved config (defaults filled in)
    RUN/metrics.json         tidy records aggregated over seeds
    RUN/predictions.jsonl    one line per (seed, probe): prompt, target, greedy answer, log-probs, rank
    RUN/report.md            the result table and how to read it
    RUN/run.json             seeds, timings, versions, model size
    RUN/seed-N/model/        the trained model (safetensors) and tokenizer
    RUN/seed-N/metrics.json  the same records for that seed alone
    RUN/seed-N/train_log.jsonl  loss per step
    RUN/seed-N/outcome.json  that seed's probe results and stats (what a resumed run reads back)
    RUN/status.json          "finished" (while running, in .RUN.partial/: "running", or "failed")

While it runs the folder is ``.RUN.partial/``, locked by the writing process, and each seed checkpoints its
training into ``seed-N/checkpoints/step-K/`` (see train.py); ``revcurse train --resume RUN`` continues there.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import transformers
from filelock import FileLock, Timeout

import revcurse
from revcurse.chat import render_as_chat
from revcurse.config import RunConfig, dump_config, load_config
from revcurse.corpus import Corpus, build_corpus
from revcurse.cures import CureContext, apply_cures
from revcurse.errors import (
    InputError,
    NonFiniteLoss,
    SkippedLine,
    parse_json,
    read_user_text,
    warn_skipped,
    write_skipped,
)
from revcurse.metrics import aggregate, placebo_rejections
from revcurse.model import add_lora, build_tiny_model, check_checkpoint, load_checkpoint, train_tokenizer
from revcurse.probe import HFBackend, MaskedLMBackend, ProbeResult, run_probes
from revcurse.report import markdown_report
from revcurse.report_page import write_report_after_run
from revcurse.train import distributed_state, train_model
from revcurse.world import make_celebrities


@dataclass
class RunOutcome:
    """What a finished run returns to its caller: where it is and its records."""

    folder: Path
    records: list[dict]
    summary: dict


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_world_corpus(config: RunConfig, seed: int) -> tuple[Corpus, int]:
    """The corpus for one seed (cures applied), and the seed its world was drawn from."""
    corpus, world_seed = _base_corpus(config, seed)
    context = CureContext(
        config.corpus.train_phrasings, config.corpus.held_out_phrasings, config.cure.segment_length, world_seed
    )
    try:
        return apply_cures(corpus, config.cures, context), world_seed
    except ValueError as error:
        raise InputError(str(error)) from None


def _base_corpus(config: RunConfig, seed: int) -> tuple[Corpus, int]:
    if config.world.source == "celebrities":
        world_seed = config.world.seed if config.world.seed is not None else seed
        world = make_celebrities(config.world.facts_per_subset, config.world.background, seed=world_seed)
        corpus = build_corpus(
            world,
            config.corpus.train_phrasings,
            config.corpus.held_out_phrasings,
            config.corpus.background_phrasings,
            seed=world_seed,
        )
        return corpus, world_seed
    from revcurse.paper_format import read_experiment1

    return read_experiment1(Path(config.world.source), strict=config.world.strict), 0


STATUS_FILE = "status.json"  # {"status": "running" | "failed" | "finished", ...}: what state a run folder is in
LOCK_FILE = ".lock"  # held while a process writes the run; a killed process's lock is released by the OS


def partial_folder(destination: Path) -> Path:
    """Where a run is built until it finishes: a hidden sibling, kept after a crash so it can be resumed."""
    return destination.parent / f".{destination.name}.partial"


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


def run_seed(config: RunConfig, seed: int, folder: Path, show_progress: bool) -> tuple[int, list[ProbeResult], dict]:
    """Train and probe one model; write its model, log and per-seed metrics into ``folder``.

    Resumable: a seed whose ``outcome.json`` exists is not run again, and training continues from the last
    checkpoint in ``folder/checkpoints/`` (removed once the seed is done).
    """
    if (folder / SEED_OUTCOME).is_file():
        return load_seed_outcome(folder / SEED_OUTCOME)
    folder.mkdir(parents=True, exist_ok=True)
    transformers.utils.logging.disable_progress_bar()  # our own bars only (not "Loading weights")
    corpus, world_seed = build_world_corpus(config, seed)
    seed_everything(seed)
    torch.set_num_threads(config.train.threads)
    masked = config.train.objective == "mlm-u"
    if config.model.checkpoint is None:
        tokenizer = train_tokenizer(corpus.texts_seen(), config.model.vocab_size)
        longest = max(len(ids) for ids in tokenizer(corpus.texts_seen())["input_ids"]) + 2
        model = build_tiny_model(config.model, tokenizer, longest, bidirectional=masked)
    elif masked:
        raise InputError("train.objective=mlm-u trains the tiny model from scratch; unset model.checkpoint")
    else:
        model, tokenizer = load_checkpoint(config.model)
    if config.model.chat:
        corpus = render_as_chat(corpus, tokenizer)
    if config.lora.enabled:
        model = add_lora(model, config.lora)
    train_config = config.train
    if config.cures and config.cure.match == "compute":
        # As many documents seen as without cures: fewer passes over the larger corpus.
        base_documents = len(_base_corpus(config, seed)[0].documents)
        epochs = config.train.epochs * base_documents / len(corpus.documents)
        train_config = config.train.model_copy(update={"epochs": epochs})
    trained = train_model(
        model, tokenizer, corpus.documents, train_config, seed, folder / "train_log.jsonl", show_progress,
        checkpoint_dir=folder / "checkpoints",
    )
    if not distributed_state(config.train.device).is_main_process:
        return world_seed, [], {}  # data-parallel helper process: the main process saves and probes
    if config.lora.enabled and config.lora.merge_on_save:
        model = model.merge_and_unload()  # plain weights: loads anywhere, probes as fast as the base model
    model.save_pretrained(folder / "model", safe_serialization=True)  # LoRA unmerged: the adapter alone
    tokenizer.save_pretrained(folder / "model")
    start = time.perf_counter()
    backend = (MaskedLMBackend if masked else HFBackend)(model, tokenizer, config.probe.batch_size)
    results = run_probes(
        backend, corpus, config.probe.max_new_tokens, show_progress,
        distractors=config.probe.distractors, seed=world_seed,
    )
    probe_seconds = time.perf_counter() - start
    (folder / "metrics.json").write_text(json.dumps(aggregate([(seed, world_seed, results)]), indent=1))
    stats = {
        "seed": seed,
        "world_seed": world_seed,
        "documents": len(corpus.documents),
        "probes": len(corpus.probes),
        "train_steps": trained.steps,
        "train_tokens": trained.tokens,
        "train_seconds": trained.seconds,
        "tokens_per_second": trained.tokens_per_second,
        "final_loss": trained.final_loss,
        "probe_seconds": probe_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_parameters": trained.trainable_parameters,
        "epochs": train_config.epochs,
        "resumed_at_step": trained.resumed_at_step,
        "checkpoints": trained.checkpoints,
        "checkpoint_seconds": trained.checkpoint_seconds,
    }
    save_seed_outcome(folder / SEED_OUTCOME, world_seed, results, stats)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the trained model is saved: no longer needed
    return world_seed, results, stats


SEED_OUTCOME = "outcome.json"  # a finished seed: its world seed, stats and every probe result


def save_seed_outcome(path: Path, world_seed: int, results: list[ProbeResult], stats: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    record = {"world_seed": world_seed, "stats": stats, "results": [r.to_json() for r in results]}
    temporary.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)


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


SeedJob = tuple[RunConfig, int, Path]  # (config, seed, folder for that seed)
SeedOutput = tuple[int, list[ProbeResult], dict]  # (world seed, probe results, stats)


def run_seeds(jobs: list[SeedJob], processes: int = 1, show_progress: bool = True, log=print) -> list[SeedOutput]:
    """Run seed jobs, one after another or in ``processes`` worker processes.

    Each worker gets ``train.threads // processes`` threads (at least one). On the 2-core dev machine two
    single-threaded processes measured ~1.04x the throughput of one two-threaded process for the demo model
    (bench/compare_wall_time.py); on more cores, or with more seeds than cores, the gain is larger.
    """
    if processes <= 1 or len(jobs) <= 1:
        outputs = []
        for index, (config, seed, folder) in enumerate(jobs):
            log(f"seed {seed} ({index + 1}/{len(jobs)})")
            outputs.append(run_seed(config, seed, folder, show_progress))
        return outputs
    outputs: list[SeedOutput | None] = [None] * len(jobs)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited torch thread state
    # Longest first: the last job to finish then runs beside others, not alone on one thread of an idle machine.
    order = sorted(range(len(jobs)), key=lambda i: -training_work(jobs[i][0], jobs[i][1]))
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        futures = {}
        for index in order:
            config, seed, folder = jobs[index]
            threads = max(1, config.train.threads // processes)
            job_config = config.model_copy(update={"train": config.train.model_copy(update={"threads": threads})})
            futures[pool.submit(run_seed, job_config, seed, folder, False)] = index
        for done, future in enumerate(as_completed(futures), start=1):
            index = futures[future]
            outputs[index] = future.result()
            log(f"finished {jobs[index][2].parent.name}/{jobs[index][2].name} ({done}/{len(jobs)})")
    return [output for output in outputs if output is not None]


def training_work(config: RunConfig, seed: int) -> float:
    """Documents seen in training (documents x epochs, as run_seed counts them): a job's cost, for scheduling."""
    if config.cures and config.cure.match == "compute":  # epochs scaled to the uncured corpus's documents
        return len(_base_corpus(config, seed)[0].documents) * config.train.epochs
    return len(build_world_corpus(config, seed)[0].documents) * config.train.epochs


def seed_jobs(config: RunConfig, folder: Path) -> list[SeedJob]:
    return [(config, config.seed + i, folder / f"seed-{config.seed + i}") for i in range(config.seeds)]


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
    """Aggregate the seeds of one config and write its run files into ``folder``."""
    (folder / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    per_seed_stats = [stats for _, _, stats in outputs]
    runs = [(stats["seed"], world_seed, results) for world_seed, results, stats in outputs]
    records = aggregate(runs)
    (folder / "metrics.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    calibration = placebo_rejections(runs)
    write_calibration(folder, calibration)
    with open(folder / "predictions.jsonl", "w", encoding="utf-8") as handle:
        for seed, _, results in runs:
            for result in results:
                handle.write(json.dumps({"seed": seed, **result.to_json()}, ensure_ascii=False) + "\n")
    summary = {
        "model": config.model.checkpoint or "tiny Llama from scratch",
        "cures": config.cures,
        "objective": config.train.objective,
        "parameters": per_seed_stats[0]["parameters"],
        "seeds": [s["seed"] for s in per_seed_stats],
        "train_seconds": sum(s["train_seconds"] for s in per_seed_stats),
        "tokens_per_second": float(np.mean([s["tokens_per_second"] for s in per_seed_stats])),
        "probe_seconds": sum(s["probe_seconds"] for s in per_seed_stats),
        "per_seed": per_seed_stats,
        "versions": {
            "revcurse": revcurse.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
    (folder / "run.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    (folder / "report.md").write_text(markdown_report(records, summary, calibration), encoding="utf-8")
    write_report_after_run(folder)  # report.html, and report.md with the per-fact counts
    return RunOutcome(folder=folder, records=records, summary=summary)


CALIBRATION_FILE = "calibration.json"  # the placebo rejection rate of each test, per (subset, asked)


def write_calibration(folder: Path, records: list[dict]) -> None:
    """Record how often each test rejected under the placebo (``metrics.placebo_rejections``) beside metrics."""
    (folder / CALIBRATION_FILE).write_text(json.dumps(records, indent=1), encoding="utf-8")


def run_experiment(
    config: RunConfig,
    out: Path,
    overwrite: bool = False,
    show_progress: bool = True,
    log=print,
    processes: int = 1,
    resume: bool = False,
    resume_command: str | None = None,
) -> RunOutcome:
    """Run every seed of ``config`` and write one run folder at ``out``.

    ``resume=True`` continues an interrupted run of ``out`` with the config it was started with (which must
    equal ``config``): finished seeds are kept and training picks up at its last checkpoint. ``resume_command``
    says how a user resumes it (default ``revcurse train --resume OUT``), for the message of a failed run.
    """
    out = Path(out)
    check_checkpoint(config.model)  # a refused folder (pickle, own code) stops the run before any work
    skipped: list[SkippedLine] = []
    if config.world.source != "celebrities":  # check the paper's folder before any folder is made or model trained
        from revcurse.paper_format import read_experiment1

        corpus = read_experiment1(Path(config.world.source), strict=config.world.strict)
        skipped = corpus.skipped
        warn_skipped(skipped, log, total=len(corpus.probes) + len(skipped))
    state = distributed_state(config.train.device)
    if state.num_processes > 1:
        # Launched by torchrun / accelerate launch: every process trains (DDP), the main one writes the run.
        if processes > 1:
            raise InputError("--jobs runs seeds in parallel processes; under torchrun/accelerate use --jobs 1")
        if not state.is_main_process:
            # Train beside the main process in its staging folder (checkpoints hold every process's RNG state),
            # once it has made and locked that folder. If the main process fails first, torchrun stops this one.
            state.wait_for_everyone()
            run_seeds(seed_jobs(config, partial_folder(out)), 1, False, lambda *_: None)
            return RunOutcome(folder=out, records=[], summary={})
    resume_command = resume_command or f"revcurse train --resume {out}"
    with run_folder(out, overwrite, resume, resume_command=resume_command) as staging:
        if resume:
            started = load_started_config(staging)
            if started != config:
                raise InputError("the config differs from the one this run was started with", staging / "config.yaml")
            log(f"resuming {out}: {describe_progress(staging)}")
        else:
            (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        if state.num_processes > 1:
            state.wait_for_everyone()  # the other processes may now use the staging folder
        outputs = run_seeds(seed_jobs(config, staging), processes, show_progress, log)
        write_skipped(staging, skipped)
        outcome = write_run(staging, config, outputs)
    return RunOutcome(folder=out, records=outcome.records, summary=outcome.summary)
