"""Killing a multi-process training run as a lost node would: shared by the DDP and FSDP resume tests."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil


def kill_at_first_checkpoint(command: list[str], environment: dict, out: Path) -> Path:
    """Start ``command`` (a launcher writing the run ``out``), SIGKILL it and every worker it started as soon as
    the first training checkpoint of seed 0 exists, and return that checkpoint. Launchers start each worker in
    its own session, so the whole tree is killed, not the launcher alone."""
    killed = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = out.parent / f".{out.name}.partial" / "seed-0" / "checkpoints"
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("step-*[0-9]")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    launcher = psutil.Process(killed.pid)
    victims = [*launcher.children(recursive=True), launcher]
    for process in victims:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=30)
    killed.wait()
    assert not out.exists(), "the run finished before it could be killed"
    (checkpoint,) = checkpoints.glob("step-*[0-9]")
    return checkpoint
