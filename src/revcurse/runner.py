"""The one runner: any registered experiment, over seeds, into one run folder.

Per seed (``run_seed``): the experiment builds its ``Trial`` (documents and probes), the config's cures change
the documents, a model is built (a tiny Llama with a tokenizer trained on the trial's text) or loaded
(``model.checkpoint``), trained on the documents when there are any, and asked every probe through the backend
``probe.backend`` names; the probe results and the seed's stats are checkpointed in ``seed-N/outcome.json``.
``run_seeds`` runs the seeds in turn, or as tasks of an executor (``revcurse.executors``: local processes, Ray
tasks, SLURM jobs); ``run_experiment`` wraps them in a run folder (``records.run_folder``) and writes its records
(``records.write_run``). Nothing here knows which experiment it runs.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from revcurse.backends import BACKENDS, LOCAL_BACKENDS
from revcurse.chat import render_as_chat, render_conversations
from revcurse.config import RunConfig
from revcurse.corpus import Corpus
from revcurse.cures import CureContext, apply_cures
from revcurse.curve import CURVE_FILE, CurveRecorder, curve_sample
from revcurse.errors import InputError, SkippedLine, warn_skipped
from revcurse.executors import Executor, Finished, Task, as_executor, run_tasks
from revcurse.experiments import Trial, get_experiment
from revcurse.model import add_lora, build_tiny_model, check_checkpoint, load_checkpoint, train_tokenizer
from revcurse.objectives import is_masked
from revcurse.paths import job_files_folder
from revcurse.probe import ProbeResult, run_probes
from revcurse.records import (
    SEED_OUTCOME,
    RunOutcome,
    SeedOutput,
    load_seed_outcome,
    partial_folder,
    record_run,
    save_seed_outcome,
    write_seed_metrics,
)
from revcurse.sampling import SAMPLE_TOKENS
from revcurse.sharding import check_big_model, full_state_dict, is_sharded
from revcurse.trackers import TrackerRun, check_trackers, log_seed_metrics, seed_trackers
from revcurse.train import distributed_state, train_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_trial(config: RunConfig, seed: int, cured: bool = True) -> Trial:
    """One seed's trial of the config's experiment, with the config's cures applied to its documents."""
    try:
        trial = get_experiment(config.experiment).build(config, seed)
        if not cured or not config.cures:
            return trial
        context = CureContext(
            config.corpus.train_phrasings, config.corpus.held_out_phrasings, config.cure.segment_length,
            trial.world_seed,
        )
        return Trial(apply_cures(trial.corpus, config.cures, context), trial.world_seed)
    except ValueError as error:  # a world too large for the name pools, a cure the data cannot take
        raise InputError(str(error)) from None


def epochs_for(config: RunConfig, seed: int, documents: int) -> float:
    """``train.epochs``, or with ``cure.match=compute`` as many documents seen as without cures."""
    if not config.cures or config.cure.match != "compute":
        return config.train.epochs
    return config.train.epochs * len(build_trial(config, seed, cured=False).corpus.documents) / documents


def build_model(config: RunConfig, corpus: Corpus):
    """(model, tokenizer): a tiny Llama with a tokenizer trained on everything it will read, or the checkpoint."""
    masked = is_masked(config.train.objective)
    if config.model.checkpoint is None:
        if not corpus.documents or not config.train.enabled:
            raise InputError("nothing to train and no model to ask: set model.checkpoint, or probe.backend=openai")
        texts = corpus.texts_seen()
        tokenizer = train_tokenizer(texts, config.model.vocab_size)
        longest = max(len(ids) for ids in tokenizer(texts)["input_ids"]) + 2
        # Positions for a prompt plus what the probes generate after it (greedy: a target + 2, sampled: up to
        # SAMPLE_TOKENS), so generation stays within max_position_embeddings (rotary: the weights do not change).
        generated = max(longest, config.probe.max_new_tokens or SAMPLE_TOKENS)
        return build_tiny_model(config.model, tokenizer, longest + generated, bidirectional=masked), tokenizer
    if masked:
        raise InputError(f"train.objective={config.train.objective} trains the tiny model from scratch; unset "
                         "model.checkpoint")
    return load_checkpoint(config.model)


def run_seed(config: RunConfig, seed: int, folder: Path, show_progress: bool) -> SeedOutput:
    """Build, train (when the trial has documents) and probe one model; write its files into ``folder``.

    Resumable: a seed whose ``outcome.json`` exists is not run again, and training continues from the last
    checkpoint in ``folder/checkpoints/`` (removed once the seed is done).

    With ``train.report_to``, the seed's tracker runs stay open from its first training step until its final
    metrics are logged after probing (revcurse.trackers).
    """
    if (folder / SEED_OUTCOME).is_file():
        return load_seed_outcome(folder / SEED_OUTCOME)
    folder.mkdir(parents=True, exist_ok=True)
    main_process = distributed_state(config.train.device).is_main_process
    with seed_trackers(config, folder, main_process) as tracking:
        return _run_seed(config, seed, folder, show_progress, tracking)


def _run_seed(config: RunConfig, seed: int, folder: Path, show_progress: bool, tracking: TrackerRun | None,
              ) -> SeedOutput:
    transformers.utils.logging.disable_progress_bar()  # our own bars only (not "Loading weights")
    trial = build_trial(config, seed)
    corpus, world_seed = trial.corpus, trial.world_seed
    seed_everything(seed)
    torch.set_num_threads(config.train.threads)
    trains = config.train.enabled and bool(corpus.documents)
    stats: dict = {"seed": seed, "world_seed": world_seed, "documents": len(corpus.documents) if trains else 0,
                   "probes": len(corpus.probes)}  # documents: those trained on
    model = tokenizer = None
    if config.probe.backend in LOCAL_BACKENDS:
        model, tokenizer = build_model(config, corpus)
        if config.model.chat:
            corpus = render_as_chat(corpus, tokenizer)
        if trains:
            model = _train(config, seed, folder, show_progress, corpus, model, tokenizer, stats, tracking)
            if model is None:
                return world_seed, [], {}  # data-parallel helper process: the main process saves and probes
        stats["parameters"] = sum(p.numel() for p in model.parameters())
    elif trains:
        raise InputError(f"probe.backend={config.probe.backend} asks a model this process cannot train: set "
                         "train.enabled=false to ask it as it is, or use probe.backend=hf to train one")
    start = time.perf_counter()
    backend = BACKENDS[config.probe.backend](config, model, tokenizer)
    if config.probe.backend not in LOCAL_BACKENDS:
        stats["served_model"] = getattr(backend, "model", None)  # the server's model id (its only one, unnamed)
    try:
        results = probe_settings(backend, config, corpus, world_seed, show_progress, seed, stats)
    finally:
        getattr(backend, "close", lambda: None)()
    stats["probe_seconds"] = time.perf_counter() - start
    write_seed_metrics(folder, seed, world_seed, results)
    log_seed_metrics(tracking, json.loads((folder / "metrics.json").read_text(encoding="utf-8")),
                     stats.get("train_steps", 0))
    save_seed_outcome(folder / SEED_OUTCOME, world_seed, results, stats)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the trained model is saved: no longer needed
    return world_seed, results, stats


def _train(config: RunConfig, seed: int, folder: Path, show_progress: bool, corpus: Corpus, model, tokenizer,
           stats: dict, tracking: TrackerRun | None = None):
    """Train on the corpus's documents and save the model into ``folder/model``; None in a DDP helper process."""
    if config.lora.enabled:
        model = add_lora(model, config.lora)
    train_config = config.train.model_copy(update={"epochs": epochs_for(config, seed, len(corpus.documents))})
    curve = curve_recorder(config, corpus, tokenizer, folder, stats["world_seed"])
    trained = train_model(
        model, tokenizer, corpus.documents, train_config, seed, folder / "train_log.jsonl", show_progress,
        checkpoint_dir=folder / "checkpoints", tracking=tracking, on_step=curve,
    )
    gathered = full_state_dict(model) if is_sharded(model) else None  # FSDP: every process sends its shard
    state = distributed_state(config.train.device)
    if not state.is_main_process:
        return None
    if config.lora.enabled and config.lora.merge_on_save:
        model = model.merge_and_unload()  # plain weights: loads anywhere, probes as fast as the base model
    # LoRA unmerged: the adapter alone
    model.save_pretrained(folder / "model", safe_serialization=True, state_dict=gathered)
    tokenizer.save_pretrained(folder / "model")
    if gathered is not None:  # the sharded model cannot run in one process: the saved one, whole, is probed
        del model, gathered  # its shards leave the GPU before the whole model comes in
        saved = config.model.model_copy(update={"checkpoint": str(folder / "model")})
        model = load_checkpoint(saved)[0].to(state.device)
        stats["fsdp_processes"] = state.num_processes
    stats.update(
        train_steps=trained.steps, train_tokens=trained.tokens, train_seconds=trained.seconds,
        tokens_per_second=trained.tokens_per_second, final_loss=trained.final_loss,
        trained_parameters=trained.trainable_parameters, epochs=train_config.epochs,
        resumed_at_step=trained.resumed_at_step, checkpoints=trained.checkpoints,
        checkpoint_seconds=trained.checkpoint_seconds,
    )
    if curve is not None:  # scoring the curve's sample: not in train_seconds (this process's share, after a resume)
        stats["curve_seconds"] = curve.seconds
    return model


def curve_recorder(config: RunConfig, corpus: Corpus, tokenizer, folder: Path, world_seed: int,
                   ) -> CurveRecorder | None:
    """The likelihood curve's recorder (revcurse.curve) for a run that probes in this process; none for a
    data-parallel launch (the model is split over processes) or with ``probe.curve_points=0``."""
    if config.probe.curve_points == 0 or distributed_state(config.train.device).num_processes > 1:
        return None
    sample = curve_sample(corpus.probes, config.probe.curve_facts, world_seed)
    # the final probes' distractors (drawn from the world seed), among the sample's facts
    return CurveRecorder(sample, lambda model: BACKENDS["hf"](config, model, tokenizer), folder / CURVE_FILE,
                         config.probe.curve_points, config.probe.distractors, world_seed)


def probe_settings(backend, config: RunConfig, corpus: Corpus, world_seed: int, show_progress: bool,
                   seed: int = 0, stats: dict | None = None) -> list[ProbeResult]:
    """``run_probes`` once per setting (probes of one setting draw their distractors among themselves).

    Probes asked as conversations are rendered here to one text (``chat.render_conversations``), unless the
    backend has a chat endpoint (``sample_chat``), which gets the conversations themselves."""
    stats = {} if stats is None else stats
    if not hasattr(backend, "sample_chat"):
        corpus, rendering = render_conversations(corpus, getattr(backend, "tokenizer", None))
        stats.update({"chat_rendering": rendering} if rendering else {})
    settings: dict[str, list] = {}
    for probe in corpus.probes:
        settings.setdefault(probe.setting, []).append(probe)
    results: list[ProbeResult] = []
    for probes in settings.values():
        setting = Corpus([], probes)
        results += run_probes(
            backend, setting, config.probe.max_new_tokens, show_progress,
            distractors=config.probe.distractors, seed=world_seed, samples=config.probe.samples,
            temperature=config.probe.temperature, sample_seed=seed,
        )
    if not_given := sorted({r.not_given for r in results if r.not_given}):
        stats["not_given"] = not_given  # numbers this backend could not give: NaN in the records, said here
    return results


SeedJob = tuple[RunConfig, int, Path]  # (config, seed, folder for that seed)


def run_seeds(jobs: list[SeedJob], executor: Executor | int = 1, show_progress: bool = True, log=print,
              ) -> list[SeedOutput]:
    """Run seed jobs, one after another here, or as tasks of ``executor`` (an int: that many local processes).

    Local workers get ``train.threads // jobs`` threads each (at least one). On the 2-core dev machine two
    single-threaded processes measured ~1.04x the throughput of one two-threaded process for the demo model
    (bench/compare_wall_time.py); on more cores, or with more seeds than cores, the gain is larger. A seed whose
    worker died is resumed from its checkpoints by the rerun (revcurse.executors).
    """
    executor = as_executor(executor)
    if executor.runs_here(len(jobs)):
        outputs = []
        for index, (config, seed, folder) in enumerate(jobs):
            log(f"seed {seed} ({index + 1}/{len(jobs)})")
            outputs.append(run_seed(config, seed, folder, show_progress))
        return outputs
    # Longest first: the last job to finish then runs beside others, not alone on one thread of an idle machine.
    order = sorted(range(len(jobs)), key=lambda i: -training_work(jobs[i][0], jobs[i][1]))
    tasks = []
    for index in order:
        config, seed, folder = jobs[index]
        job_config = executor.task_config(config)
        tasks.append(Task(run_seed, (job_config, seed, folder.absolute(), False), job_config.train.threads,
                          config.train.device, f"{folder.parent.name}/{folder.name}"))
    if executor.kind != "local":
        log(f"running {len(tasks)} seed job(s), {executor.describe()}")

    def finished(task: Finished, done: int) -> None:
        place = f", on {task.place()}" if task.where and executor.kind != "local" else ""
        state = "FAILED" if task.error is not None else "finished"
        log(f"{state} {tasks[task.index].name} ({done}/{len(jobs)}){place}")

    ended = run_tasks(executor, tasks, finished, log)
    failed = [task.error for task in ended if task.error is not None]
    if failed:
        raise failed[0]
    outputs: dict[int, SeedOutput] = {order[task.index]: task.result for task in ended}
    return [outputs[index] for index in range(len(jobs))]


def training_work(config: RunConfig, seed: int) -> float:
    """Documents seen in training (documents x epochs, as run_seed counts them): a job's cost, for scheduling."""
    documents = len(build_trial(config, seed).corpus.documents)
    return documents * epochs_for(config, seed, documents) if documents and config.train.enabled else 0.0


def seed_jobs(config: RunConfig, folder: Path) -> list[SeedJob]:
    return [(config, config.seed + i, folder / f"seed-{config.seed + i}") for i in range(config.seeds)]


def check_inputs(config: RunConfig, log=print) -> list[SkippedLine]:
    """Refuse what would fail later before any folder is made or model trained: a refused checkpoint, bad input
    files (the first seed's trial is built); returns the input lines a reader skipped, which it reports."""
    if config.probe.backend in LOCAL_BACKENDS:
        check_checkpoint(config.model)  # a refused folder (pickle, own code) stops the run before any work
    check_trackers(config.train.report_to)  # a tracker's package missing: say which extra installs it
    corpus = build_trial(config, config.seed, cured=False).corpus
    check_big_model(config, trains=config.train.enabled and bool(corpus.documents))
    if config.model.dtype == "float16" and config.train.enabled and corpus.documents and not config.lora.enabled:
        raise InputError(
            "model.dtype=float16 weights cannot be fine-tuned in full: AdamW's steps underflow in float16 and the "
            "loss turns NaN. Use model.dtype=bfloat16 or float32 (train.precision=bf16 autocasts on a GPU), or "
            "lora.enabled=true (the adapters train in float32 on the float16 base)"
        )
    warn_skipped(corpus.skipped, log, total=corpus.lines)
    return corpus.skipped


def run_experiment(
    config: RunConfig,
    out: Path,
    overwrite: bool = False,
    show_progress: bool = True,
    log=print,
    executor: Executor | int = 1,
    resume: bool = False,
    resume_command: str | None = None,
) -> RunOutcome:
    """Run every seed of ``config`` and write one run folder at ``out``.

    ``resume=True`` continues an interrupted run of ``out`` with the config it was started with (which must
    equal ``config``): finished seeds are kept and training picks up at its last checkpoint. ``resume_command``
    says how a user resumes it (default ``revcurse train --resume OUT``), for the message of a failed run.
    ``executor`` runs the seeds (revcurse.executors; an int: that many local processes).
    """
    out = Path(out)
    executor = as_executor(executor).logging_into(job_files_folder(out))
    skipped = check_inputs(config, log)
    state = distributed_state(config.train.device)
    if state.num_processes > 1:
        # Launched by torchrun / accelerate launch: every process trains (DDP), the main one writes the run.
        if executor.kind != "local" or executor.jobs > 1:
            raise InputError("--jobs and --executor run seeds in other processes; under torchrun/accelerate use "
                             "--jobs 1 and the local executor")
        if not state.is_main_process:
            # Train beside the main process in its staging folder (checkpoints hold every process's RNG state),
            # once it has made and locked that folder. If the main process fails first, torchrun stops this one.
            state.wait_for_everyone()
            run_seeds(seed_jobs(config, partial_folder(out)), 1, False, lambda *_: None)
            return RunOutcome(folder=out, records=[], summary={})
    resume_command = resume_command or f"revcurse train --resume {out}"

    def work(staging: Path) -> list[SeedOutput]:
        if state.num_processes > 1:
            state.wait_for_everyone()  # the other processes may now use the staging folder
        return run_seeds(seed_jobs(config, staging), executor, show_progress, log)

    return record_run(out, config, work, overwrite, resume, resume_command, skipped, log)
