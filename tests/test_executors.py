"""Executors: the options refused before any work, the missing extras named, SLURM parameters, and real runs on
the engines: a sweep over a two-node Ray cluster started here, whose worker is killed mid-cell (the cell is run
again, resumes from its checkpoint and finishes), and a sweep of SLURM jobs through submitit's LocalExecutor;
both give the local executor's tables."""

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import revcurse
from revcurse.cli import main
from revcurse.config import load_config
from revcurse.errors import InputError
from revcurse.executors import Executor, Task, _check_ray_resources, _slurm_parameters, parse_slurm_options, run_tasks
from revcurse.runner import run_seeds, seed_jobs
from revcurse.sweep import run_sweep

SOURCE = str(Path(revcurse.__file__).parents[1])
# Two cells of ~70 training steps, a checkpoint after each: long enough to kill one mid-cell.
CELL = [
    "world.facts_per_subset=3", "world.background=12", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "model.intermediate_size=64", "model.heads=2", "model.vocab_size=600",
    "train.threads=1", "train.epochs=6", "train.batch_size=8", "train.checkpoint_every=1",
]  # fmt: skip
GRID = "model.hidden_size=16,32"
SLUGS = ["hidden_size-16", "hidden_size-32"]
# Wall time, not results: train_seconds in sweep.csv, the s/seed column of sweep.md.
TIME_COLUMNS = {"train_seconds"}
KILL_AFTER_STEP = 10  # of ~70: the worker dies mid-cell


# ---------------------------------------------------------------- refused before any work


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "dask"}, "--executor must be one of local, ray, slurm, slurm-local"),
        ({"kind": "local", "address": "10.0.0.1:6379"}, "--address joins a Ray cluster"),
        ({"kind": "ray", "slurm": {"partition": "gpu"}}, "--slurm sets SLURM job parameters"),
        ({"kind": "local", "jobs": 0}, "--jobs must be at least 1"),
        ({"kind": "ray", "max_retries": -1}, "--max-retries must be 0 or more"),
    ],
)
def test_executor_options_of_another_executor_or_out_of_range_are_refused(settings, message):
    with pytest.raises(InputError, match=message):
        Executor(**settings)


def test_cli_refuses_an_unknown_executor_before_any_folder_is_made(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--grid", GRID, "--out", str(tmp_path / "sweep"), "--executor", "dask"])
    assert exit_info.value.code == 2
    assert "--executor must be one of" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "command",
    [["demo"], ["train"], ["compare", "--cures", "bidirectional"], ["sweep", "--grid", GRID], ["families"],
     ["incontext"], ["instructions"]],
)
def test_every_command_that_takes_jobs_takes_the_executor_options(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--out", str(tmp_path / "out"), "--executor", "slurm-local", "--address", "10.0.0.1:6379"])
    assert exit_info.value.code == 2
    assert "--address joins a Ray cluster: it goes with --executor ray, not slurm-local" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_slurm_options_become_submitit_parameters():
    assert parse_slurm_options(["partition=gpu", " time = 120", "cpus-per-gpu=4"]) == {
        "partition": "gpu", "time": "120", "cpus_per_gpu": "4"}
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_slurm_options(["partition"])
    executor = Executor(kind="slurm", slurm={"partition": "gpu", "time": "120", "account": "lab"})
    parameters = _slurm_parameters(executor, Task(print, (), threads=4, device="cuda", name="hidden_size-16"))
    assert parameters == {"name": "hidden_size-16", "cpus_per_task": 4, "gpus_per_node": 1, "timeout_min": 120,
                          "slurm_partition": "gpu", "slurm_account": "lab"}
    on_cpu = _slurm_parameters(Executor(kind="slurm-local"), Task(print, (), threads=2, device="auto"))
    assert (on_cpu["cpus_per_task"], on_cpu["gpus_per_node"], on_cpu["timeout_min"]) == (2, 0, 60)


@pytest.mark.parametrize(("kind", "extra"), [("ray", "ray"), ("slurm-local", "slurm")])
def test_a_missing_engine_names_the_extra_that_installs_it(kind, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray" if kind == "ray" else "submitit", None)  # import fails
    with pytest.raises(InputError, match=rf"pip install 'revcurse\[{extra}\]'"):
        run_tasks(Executor(kind=kind), [Task(print, ())], lambda *_: None)


class FakeRay:
    """What _check_ray_resources reads of ray: the nodes and their resources."""

    def __init__(self, *nodes: dict) -> None:
        self._nodes = [{"Alive": True, "Resources": resources} for resources in nodes]

    def nodes(self) -> list[dict]:
        return self._nodes


def test_a_ray_task_no_node_can_take_is_refused_instead_of_waiting_forever():
    ray = FakeRay({"CPU": 4.0}, {"CPU": 2.0, "GPU": 1.0})
    on_gpu = Task(print, (), threads=2, device="auto")
    assert _check_ray_resources(ray, Executor(kind="ray"), [on_gpu]) == (
        "ray: 2 node(s), 6 CPU(s), 1 GPU(s); each task asks 2 CPU(s) and 1 GPU(s)")  # auto: a GPU where there is one
    with pytest.raises(InputError, match="train.threads=8 CPUs, but the largest Ray node has 4"):
        _check_ray_resources(ray, Executor(kind="ray"), [Task(print, (), threads=8)])
    with pytest.raises(InputError, match="asks 2 GPU.*largest Ray node has 1"):
        _check_ray_resources(ray, Executor(kind="ray", gpus_per_task=2), [on_gpu])
    with pytest.raises(InputError, match="asks 1 GPU"):
        _check_ray_resources(FakeRay({"CPU": 8.0}), Executor(kind="ray"), [Task(print, (), device="cuda")])


def test_a_local_worker_error_comes_back_with_where_it_ran_and_the_others_still_finish():
    ended = run_tasks(Executor(jobs=2), [Task(int, ("7",)), Task(int, ("seven",))], lambda *_: None)
    by_index = {task.index: task for task in ended}
    assert by_index[0].result == 7 and by_index[0].error is None
    assert isinstance(by_index[1].error, ValueError) and by_index[1].result is None
    assert {task.where["pid"] for task in ended} - {os.getpid()}  # ran in worker processes, not here
    assert all(task.where["host"] == socket.gethostname() for task in ended)


# ---------------------------------------------------------------- real engines


RAY_TOKEN = secrets.token_hex(32)


def environment() -> dict:
    """Workers and Ray daemons import this checkout, single-threaded, without reporting usage; the test cluster
    takes a token of its own (Ray's default token auth would read or write ~/.ray/auth_token)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": RAY_TOKEN}


def sweep_command(out: Path, *extra: str) -> list[str]:
    sets = [arg for value in CELL for arg in ("--set", value)]
    return [sys.executable, "-m", "revcurse.cli", "sweep", "--out", str(out), "--quiet", "--grid", GRID, *sets,
            *extra]


def table_rows(out: Path) -> list[dict]:
    with open(out / "sweep.csv", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(handle)]


def markdown_without_seconds(out: Path) -> list[str]:
    """sweep.md with its last column (s/seed, training seconds) cut off each table row."""
    lines = (out / "sweep.md").read_text(encoding="utf-8").splitlines()
    return [line.rsplit("|", 2)[0] if line.startswith("|") else line for line in lines]


def attempts(out: Path, slug: str) -> list[dict]:
    path = out / "attempts" / f"{slug}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    """The reference: the same sweep with the local executor, in this process."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    run_sweep(None, CELL, [GRID], out, log=lambda *_: None)
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ray_cluster():
    """A Ray head and a second Ray node on this machine, one CPU each; every process of both killed at the end.

    Each ``ray start`` runs in a session of its own, and the daemons (and the workers they start) stay in its
    process group, so killing the two groups stops exactly what this test started (not another Ray here).
    The temporary folder is short: Ray's socket paths must fit in 107 characters."""
    pytest.importorskip("ray")
    ray = [sys.executable, "-m", "ray.scripts.scripts", "start", "--num-cpus=1", "--object-store-memory=80000000",
           "--disable-usage-stats"]
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    port = free_port()
    head = [*ray, "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
            f"--ray-client-server-port={free_port()}"]
    worker = [*ray, f"--address=127.0.0.1:{port}"]
    groups: list[int] = []
    try:
        for command in (head, worker):
            started = subprocess.Popen(command, env=environment(), start_new_session=True, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            groups.append(started.pid)
            output, _ = started.communicate(timeout=120)
            assert started.returncode == 0, output[-3000:]
        yield f"127.0.0.1:{port}"
    finally:
        for group in groups:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    break
                time.sleep(1 if sig == signal.SIGTERM else 0)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_sweep_on_two_ray_nodes_survives_a_killed_worker_and_equals_the_local_tables(
        ray_cluster, local_sweep, tmp_path):
    out = tmp_path / "sweep"
    log_path = tmp_path / "sweep.log"
    with open(log_path, "w", encoding="utf-8") as log:
        driver = subprocess.Popen(sweep_command(out, "--executor", "ray", "--address", ray_cluster), env=environment(),
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # The first cell with a checkpoint on disk: kill the Ray worker running it (its pid is in attempts/).
        victim = None
        deadline = time.monotonic() + 180
        while victim is None and driver.poll() is None and time.monotonic() < deadline:
            for slug in SLUGS:
                checkpoints = list((out / "cells").glob(f".{slug}.partial/seed-0/checkpoints/step-*[0-9]"))
                started = attempts(out, slug)
                steps = [int(path.name.split("-")[1]) for path in checkpoints]
                if started and started[-1]["event"] == "started" and max(steps, default=0) >= KILL_AFTER_STEP:
                    victim = slug, started[-1]["pid"]
                    os.kill(victim[1], signal.SIGKILL)
                    break
            time.sleep(0.02)
        assert victim is not None, "no cell to kill:\n" + log_path.read_text()
        assert driver.wait(timeout=240) == 0, log_path.read_text()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    text = log_path.read_text()
    killed, pid = victim
    assert "ray: 2 node(s), 2 CPU(s), 0 GPU(s); each task asks 1 CPU(s) and 0 GPU(s)" in text
    # The killed cell: started, never finished there; run again by Ray in another worker, resumed, finished.
    events = attempts(out, killed)
    assert [e["event"] for e in events] == ["started", "resumed", "finished"], events
    assert events[0]["pid"] == pid and events[1]["pid"] != pid and events[1]["pid"] == events[2]["pid"]
    (resumed,) = [line for line in text.splitlines() if line.startswith(f"running {killed}: resuming")]
    assert int(resumed.rsplit("from step ", 1)[1].split()[0].rstrip(")")) >= KILL_AFTER_STEP, resumed
    (other,) = set(SLUGS) - {killed}
    assert [e["event"] for e in attempts(out, other)] == ["started", "finished"]
    # Both nodes ran cells (one CPU each, two cells at once), as the log lines say too.
    first_attempts = [attempts(out, slug)[0] for slug in SLUGS]
    assert len({attempt["ray_node"] for attempt in first_attempts}) == 2, first_attempts
    assert text.count(", ray node ") == 2 and "ran 2 cell(s), skipped 0 finished" in text
    assert sorted(p.name for p in (out / "cells").iterdir()) == SLUGS  # no leftover of the killed attempt
    assert table_rows(out) == table_rows(local_sweep)
    assert markdown_without_seconds(out) == markdown_without_seconds(local_sweep)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_sweep_of_submitit_jobs_equals_the_local_tables(local_sweep, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "sweep"
    done = subprocess.run(sweep_command(out, "--executor", "slurm-local"), env=environment(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "slurm-local: submitting 2 job(s)" in done.stdout
    job_pids = {attempts(out, slug)[0]["pid"] for slug in SLUGS}
    assert len(job_pids) == 2  # one job process per cell
    assert [p.name for p in (out / ".submitit").iterdir() if p.name != "%j"]  # submitit's job files are kept
    assert table_rows(out) == table_rows(local_sweep)
    assert markdown_without_seconds(out) == markdown_without_seconds(local_sweep)


@pytest.mark.slow
@pytest.mark.cluster
def test_seed_jobs_as_submitit_jobs_equal_the_seeds_run_here(tmp_path, monkeypatch):
    """The runs of `demo/train/compare --executor slurm-local`: each seed a job, the same outcomes as run here."""
    pytest.importorskip("submitit")
    for key, value in environment().items():  # the jobs' interpreters import this checkout, single-threaded
        monkeypatch.setenv(key, value)
    config = load_config(None, [*CELL, "model.hidden_size=16", "train.epochs=2", "train.checkpoint_every=0", "seeds=2"])
    here = run_seeds(seed_jobs(config, tmp_path / "here"), 1, False, lambda *_: None)
    logs: list[str] = []
    executor = Executor(kind="slurm-local").logging_into(tmp_path / "jobs")
    elsewhere = run_seeds(seed_jobs(config, tmp_path / "slurm"), executor, False, logs.append)
    assert [world for world, _, _ in elsewhere] == [world for world, _, _ in here]
    assert [[r.to_json() for r in results] for _, results, _ in elsewhere] == [
        [r.to_json() for r in results] for _, results, _ in here]
    assert [stats["final_loss"] for _, _, stats in elsewhere] == [stats["final_loss"] for _, _, stats in here]
    finished = [line for line in logs if line.startswith("finished ")]
    assert sorted(line.split(" (")[0] for line in finished) == ["finished slurm/seed-0", "finished slurm/seed-1"]
    assert all(f"pid {os.getpid()}" not in line for line in finished)  # each in a job process of its own
