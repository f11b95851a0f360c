"""Data-parallel training: a real 2-process run on CPU (torchrun, gloo) matches the single-process run, and a
killed one resumes from its checkpoint."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from revcurse.cli import main
from tests.processes import kill_at_first_checkpoint

TINY = [
    "world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "model.hidden_size=32", "model.layers=1", "model.heads=2",
    "model.intermediate_size=64", "model.vocab_size=400", "train.epochs=3", "train.batch_size=16",
    "train.threads=1",
]  # fmt: skip


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "seed-0" / "train_log.jsonl").read_text().splitlines()]


def demo_args(out: Path, *extra: str) -> list[str]:
    return ["demo", "--quiet", "--out", str(out), *[a for s in [*TINY, *extra] for a in ("--set", s)]]


def run_demo(out: Path, *extra: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(demo_args(out, *extra))
    assert exit_info.value.code == 0


@pytest.mark.slow
def test_two_process_training_matches_one_process(tmp_path):
    run_demo(tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free port for the rendezvous (port 0 does not work with torchrun)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    completed = subprocess.run(
        [*torchrun, "-m", "revcurse.cli", *demo_args(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) > 5
    # Same batches, each process half of each: the same updates up to the order of floating-point sums.
    assert two == pytest.approx(one, rel=1e-4, abs=1e-5)
    assert not any(p.name.startswith("two.") for p in tmp_path.iterdir())  # the helper wrote no run folder
    records_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    records_two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert [r["mean"] for r in records_two if r["metric"] == "accuracy"] == [
        r["mean"] for r in records_one if r["metric"] == "accuracy"
    ]


def test_gradient_accumulation_gives_the_same_updates(tmp_path):
    run_demo(tmp_path / "one", "train.epochs=1")
    run_demo(tmp_path / "four", "train.epochs=1", "train.gradient_accumulation=4")
    assert losses(tmp_path / "four") == pytest.approx(losses(tmp_path / "one"), rel=1e-4, abs=1e-5)


def torchrun_command() -> list[str]:
    with socket.socket() as probe:  # a free port for the rendezvous (port 0 does not work with torchrun)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
            "-m", "revcurse.cli"]


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_same_result(tmp_path):
    """torchrun, 2 processes, SIGKILL to the whole launch after a checkpoint, then `train --resume` under torchrun:
    the same losses, step for step, and the same metrics as an uninterrupted 2-process run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sets = [a for s in [*TINY, "train.epochs=30", "train.checkpoint_every=5"] for a in ("--set", s)]
    whole = subprocess.run([*torchrun_command(), "train", "--quiet", "--out", str(tmp_path / "whole"), *sets],
                           env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    # torchrun starts each worker in its own session: the launcher and every worker are killed, as a lost node would
    checkpoint = kill_at_first_checkpoint(
        [*torchrun_command(), "train", "--quiet", "--out", str(tmp_path / "killed"), *sets], env, tmp_path / "killed")
    assert {p.name for p in checkpoint.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}

    resumed = subprocess.run([*torchrun_command(), "train", "--quiet", "--resume", str(tmp_path / "killed")],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, [line for line in resumed.stderr.splitlines() if "error:" in line.lower()]
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["per_seed"][0]["resumed_at_step"] > 0
    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")
    assert (tmp_path / "killed" / "metrics.json").read_text() == (tmp_path / "whole" / "metrics.json").read_text()
