"""Where sweep cells and seed jobs run: local worker processes, tasks on a Ray cluster, or SLURM jobs (submitit).

One abstraction for both callers (``sweep`` runs cells, ``runner.run_seeds`` runs seeds): a list of ``Task``
(a picklable function, its arguments and the CPUs it uses), run to the end by ``run_tasks``, which reports each
``Finished`` task (its result or its error, and where it ran) as it comes. Running in this process, one task
after another, stays with the callers (``Executor.runs_here``): that path shows progress bars and logs as it goes.

- ``local`` (the default): ``jobs`` spawned processes of this machine, each task with ``train.threads // jobs``
  threads; one job runs in this process, as always.
- ``ray``: each task a Ray task asking ``train.threads`` CPUs and, when it trains on a GPU, one GPU
  (``gpus_per_task``); on a cluster (``address``) or on a Ray started here and stopped at the end. Tasks are
  spread over the nodes. A task whose worker dies (a killed process, a lost node) is run again, up to
  ``max_retries`` times.
- ``slurm``: each task a SLURM job through submitit (``sbatch``), with ``train.threads`` CPUs and the GPUs as for
  Ray, ``--slurm KEY=VALUE`` for the rest (partition, time in minutes, account ...); a job that dies unfinished
  is submitted again, up to ``max_retries`` times. ``slurm-local`` runs the same jobs through submitit's
  ``LocalExecutor`` on this machine: the SLURM path without a cluster (for tests, and to try a sweep first).

Why the callers need nothing else to survive a dead worker: every task is resumable by itself. A sweep cell takes
its lock, finds its ``.SLUG.partial/`` folder and continues from the last training checkpoint; a seed continues
from its ``seed-N/checkpoints/``. So a rerun (Ray's retry, a resubmitted job) is the same call again. Workers
write the same folders as local processes do: the folders must be on a file system every node sees at the same
path, and each task starts in this process's working folder, so relative paths in configs mean the same there.

Ray and submitit are imported only when chosen (extras ``revcurse[ray]``, ``revcurse[slurm]``).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from revcurse.errors import InputError

KINDS = ("local", "ray", "slurm", "slurm-local")
# Generic submitit parameters --slurm may set by their own names; any other KEY becomes slurm_KEY (sbatch's).
SLURM_GENERIC = {"time": "timeout_min", "timeout_min": "timeout_min", "mem_gb": "mem_gb", "name": "name"}
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Executor:
    """How tasks run (the CLI's --executor options). Not part of any config: where a run ran does not change it."""

    kind: str = "local"
    jobs: int = 1  # local: worker processes (1: this process)
    address: str | None = None  # ray: the cluster to join (HOST:PORT, ray://...); None: a Ray started here
    gpus_per_task: float | None = None  # ray, slurm: None = 1 when train.device is cuda (ray: also auto on GPUs)
    max_retries: int = 2  # ray, slurm: reruns of a task whose worker died
    slurm: dict[str, str] = field(default_factory=dict)  # slurm: submitit parameters (partition, time ...)
    log_folder: Path | None = None  # slurm: submitit's job files (pickles, stdout, stderr); set by the caller

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"--executor must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.jobs < 1:
            raise InputError(f"--jobs must be at least 1, got {self.jobs}")
        if self.max_retries < 0:
            raise InputError(f"--max-retries must be 0 or more, got {self.max_retries}")
        if self.gpus_per_task is not None and self.gpus_per_task < 0:
            raise InputError(f"--gpus-per-task must be 0 or more, got {self.gpus_per_task}")
        if self.address is not None and self.kind != "ray":
            raise InputError(f"--address joins a Ray cluster: it goes with --executor ray, not {self.kind}")
        if self.slurm and not self.kind.startswith("slurm"):
            raise InputError(f"--slurm sets SLURM job parameters: it goes with --executor slurm, not {self.kind}")

    def runs_here(self, tasks: int) -> bool:
        """True when the caller should run the tasks itself, in turn (local with one job, or a single task)."""
        return self.kind == "local" and (self.jobs <= 1 or tasks <= 1)

    def threads(self, threads: int) -> int:
        """The threads a task gets of ``train.threads``: local processes share this machine's cores."""
        return max(1, threads // self.jobs) if self.kind == "local" else threads

    def task_config(self, config: Any) -> Any:
        """``config`` (a RunConfig) as one task runs it: with the threads that task gets (``threads``)."""
        train = config.train.model_copy(update={"threads": self.threads(config.train.threads)})
        return config.model_copy(update={"train": train})

    def logging_into(self, folder: Path) -> Executor:
        """This executor with submitit's job files in ``folder`` unless the user chose a folder."""
        return self if self.log_folder is not None else replace(self, log_folder=folder)

    def describe(self) -> str:
        if self.kind == "local":
            return f"{self.jobs} process(es)"
        return f"executor {self.kind}" + (f" at {self.address}" if self.address else "")


def as_executor(executor: Executor | int) -> Executor:
    """An int is the local executor with that many processes (the callers' former ``processes``)."""
    return executor if isinstance(executor, Executor) else Executor(jobs=executor)


def parse_slurm_options(options: list[str] | None) -> dict[str, str]:
    """``--slurm partition=gpu --slurm time=120`` -> {"partition": "gpu", "time": "120"}."""
    parsed: dict[str, str] = {}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"--slurm expects KEY=VALUE (e.g. partition=gpu, time=120), got {option!r}")
        parsed[key.strip().replace("-", "_")] = value.strip()
    return parsed


@dataclass(frozen=True)
class Task:
    """One call to run elsewhere: ``function(*args)``, with ``threads`` CPUs, on ``device`` (train.device)."""

    function: Callable[..., Any]
    args: tuple
    threads: int = 1
    device: str = "auto"
    name: str = ""


@dataclass
class Finished:
    """A task's end: its result, or the error it raised (or why its worker never returned), and where it ran."""

    index: int  # in the list given to run_tasks
    result: Any = None
    error: BaseException | None = None
    where: dict = field(default_factory=dict)

    def place(self) -> str:
        return describe_worker(self.where)


def worker_identity() -> dict:
    """Where this code runs: host and process, and the Ray node or SLURM job when there is one."""
    identity: dict = {"host": socket.gethostname(), "pid": os.getpid()}
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            identity["ray_node"] = ray.get_runtime_context().get_node_id()
    if "SLURM_JOB_ID" in os.environ:
        identity["slurm_job"] = os.environ["SLURM_JOB_ID"]
    return identity


def describe_worker(where: dict) -> str:
    if not where:
        return ""
    text = f"{where.get('host')} pid {where.get('pid')}"
    if "ray_node" in where:
        text += f", ray node {where['ray_node'][:8]}"
    if "slurm_job" in where:
        text += f", slurm job {where['slurm_job']}"
    return text


def _located(function: Callable[..., Any], args: tuple, folder: str) -> tuple[Any, BaseException | None, dict]:
    """Run in the worker: the call's (result, error, where), started in the caller's working folder.

    Errors come back as values, so a task that raised is not mistaken for a dead worker and run again."""
    where = worker_identity()
    try:
        os.chdir(folder)
    except OSError:
        return None, InputError(f"the working folder {folder} is not on {where['host']}: workers need the caller's "
                                "folders on a shared file system, at the same path"), where
    try:
        return function(*args), None, where
    except Exception as error:  # noqa: BLE001 (handed to the caller, which raises or reports it)
        return None, error, where


def run_tasks(executor: Executor, tasks: list[Task], on_finished: Callable[[Finished, int], None],
              log: Callable[[str], None] = lambda _: None) -> list[Finished]:
    """Run every task to its end (a failed one does not stop the others); ``on_finished(task, done)`` as each ends.

    Returns the finished tasks in the order they ended; ``log`` hears what the executor found (Ray's nodes)."""
    runner = {"local": _run_in_processes, "ray": _run_on_ray}.get(executor.kind, _run_as_slurm_jobs)
    finished: list[Finished] = []

    def report(outcome: Finished) -> None:
        finished.append(outcome)
        on_finished(outcome, len(finished))

    runner(executor, tasks, report, log)
    return finished


def _run_in_processes(executor: Executor, tasks: list[Task], report: Callable[[Finished], None], _log) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited torch thread state
    folder = os.getcwd()
    with ProcessPoolExecutor(max_workers=executor.jobs, mp_context=context) as pool:
        futures = {pool.submit(_located, task.function, task.args, folder): index for index, task in enumerate(tasks)}
        for future in as_completed(futures):
            try:
                result, error, where = future.result()
            except Exception as failure:  # the worker died (BrokenProcessPool) or its result did not pickle
                result, error, where = None, failure, {}
            report(Finished(futures[future], result, error, where))


def _import_extra(module: str, extra: str, executor: str):
    try:
        return __import__(module)
    except ImportError:
        raise InputError(f"--executor {executor} needs {module}: pip install 'revcurse[{extra}]'") from None


def _gpus(executor: Executor, task: Task, cluster_has_gpus: bool) -> float:
    """GPUs a task asks: as the user said, else one when it trains on a GPU (train.device cuda, or auto where the
    cluster has GPUs)."""
    if executor.gpus_per_task is not None:
        return executor.gpus_per_task
    return 1.0 if task.device == "cuda" or (task.device == "auto" and cluster_has_gpus) else 0.0


def _run_on_ray(executor: Executor, tasks: list[Task], report: Callable[[Finished], None], log) -> None:
    ray = _import_extra("ray", "ray", "ray")
    joined = ray.is_initialized()  # already connected (a caller of ours, a notebook): leave it connected
    if not joined:
        try:
            ray.init(address=executor.address or "local", logging_level="WARNING", include_dashboard=False)
        except ConnectionError as error:
            raise InputError(f"cannot join the Ray cluster at --address {executor.address}: {error}") from None
    try:
        log(_check_ray_resources(ray, executor, tasks))
        remote = ray.remote(_located)
        folder = os.getcwd()
        pending = {}
        for index, task in enumerate(tasks):
            options = remote.options(
                num_cpus=task.threads, num_gpus=_gpus(executor, task, _ray_gpus(ray) > 0), name=task.name or None,
                max_retries=executor.max_retries, retry_exceptions=False, scheduling_strategy="SPREAD",
            )
            pending[options.remote(task.function, task.args, folder)] = index
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready)
            try:
                result, error, where = ray.get(ready)
            except ray.exceptions.RayError as failure:  # the worker died more than max_retries times
                result, error, where = None, RuntimeError(
                    f"{tasks[index].name}: its Ray worker died {executor.max_retries + 1} time(s): {failure}"), {}
            report(Finished(index, result, error, where))
    finally:
        if not joined:
            ray.shutdown()  # a Ray started here stops; on a cluster, this driver disconnects


def _ray_gpus(ray) -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def _check_ray_resources(ray, executor: Executor, tasks: list[Task]) -> str:
    """Refuse a task no node can take (Ray would wait for it forever); else say what the cluster has."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    most_cpus = max((resources.get("CPU", 0) for resources in nodes), default=0)
    most_gpus = max((resources.get("GPU", 0) for resources in nodes), default=0)
    for task in tasks:
        if task.threads > most_cpus:
            raise InputError(f"each task asks train.threads={task.threads} CPUs, but the largest Ray node has "
                             f"{most_cpus:g}: lower train.threads")
        gpus = _gpus(executor, task, most_gpus > 0)
        if gpus > most_gpus:
            raise InputError(f"each task asks {gpus:g} GPU(s) (--gpus-per-task, or train.device=cuda), but the "
                             f"largest Ray node has {most_gpus:g}")
    cpus = sum(resources.get("CPU", 0) for resources in nodes)
    gpus = sum(resources.get("GPU", 0) for resources in nodes)
    asked = sorted({(task.threads, _gpus(executor, task, most_gpus > 0)) for task in tasks})
    return (f"ray: {len(nodes)} node(s), {cpus:g} CPU(s), {gpus:g} GPU(s); each task asks "
            + " or ".join(f"{c} CPU(s) and {g:g} GPU(s)" for c, g in asked))


class _Resubmittable:
    """A submitit job's callable: on a timeout or preemption SLURM signals it, and submitit submits it again
    (the rerun resumes from the task's own checkpoints)."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)

    def checkpoint(self, *args: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args)


def _submitit_folder(executor: Executor) -> Path:
    return (executor.log_folder or Path(".submitit")).absolute()


def _slurm_executor(executor: Executor):
    submitit = _import_extra("submitit", "slurm", executor.kind)
    folder = _submitit_folder(executor)
    cluster = "local" if executor.kind == "slurm-local" else "slurm"
    try:
        return submitit, submitit.AutoExecutor(folder=folder / "%j", cluster=cluster,
                                               slurm_max_num_timeout=executor.max_retries)
    except RuntimeError as error:  # no srun on this machine
        raise InputError(f"--executor slurm: {error} (--executor slurm-local runs the jobs here)") from None


def _slurm_parameters(executor: Executor, task: Task) -> dict:
    parameters: dict = {"name": task.name or "revcurse", "cpus_per_task": task.threads,
                        "gpus_per_node": int(_gpus(executor, task, False)), "timeout_min": 60}
    for key, value in executor.slurm.items():
        name = SLURM_GENERIC.get(key, f"slurm_{key}")
        parameters[name] = int(value) if name == "timeout_min" and value.isdigit() else value
    return parameters


def _run_as_slurm_jobs(executor: Executor, tasks: list[Task], report: Callable[[Finished], None], log) -> None:
    submitit, slurm = _slurm_executor(executor)
    folder = os.getcwd()
    jobs: dict = {}
    attempts = [0] * len(tasks)

    def submit(index: int) -> None:
        slurm.update_parameters(**_slurm_parameters(executor, tasks[index]))
        jobs[slurm.submit(_Resubmittable(_located), tasks[index].function, tasks[index].args, folder)] = index
        attempts[index] += 1

    log(f"{executor.kind}: submitting {len(tasks)} job(s); submitit's files in {_submitit_folder(executor)}")

    try:
        for index in range(len(tasks)):
            submit(index)
        while jobs:
            done = [job for job in jobs if job.done()]
            if not done:
                time.sleep(POLL_SECONDS)
            for job in done:
                index = jobs.pop(job)
                try:
                    result, error, where = job.result()
                except submitit.core.utils.UncompletedJobError as failure:  # the job died without a result
                    if attempts[index] <= executor.max_retries:
                        submit(index)
                        continue
                    result, error, where = None, RuntimeError(
                        f"{tasks[index].name}: its SLURM job died {attempts[index]} time(s): {failure}"), {}
                report(Finished(index, result, error, where))
    finally:
        for job in jobs:  # interrupted (Ctrl-C): no job of ours keeps running unseen
            job.cancel(check=False)
