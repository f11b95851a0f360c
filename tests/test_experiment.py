"""The whole flow through the Python API: determinism, a local checkpoint, the curse itself on a small world, and
run folders that record their status, lock out a second writer and resume after a kill."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from revcurse.config import dump_config, load_config
from revcurse.errors import InputError
from revcurse.metrics import lookup
from revcurse.records import run_folder, run_status
from revcurse.runner import run_experiment

TINY = [
    "world.facts_per_subset=3", "world.background=12", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.epochs=1", "model.hidden_size=32", "model.intermediate_size=64",
    "model.heads=2", "model.vocab_size=600",
]


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    config = load_config(None, [*TINY, "seed=3"])
    first = run_experiment(config, tmp_path / "a", show_progress=False, log=lambda *_: None)
    second = run_experiment(config, tmp_path / "b", show_progress=False, log=lambda *_: None)
    assert first.records == second.records
    assert (tmp_path / "a" / "predictions.jsonl").read_text() == (tmp_path / "b" / "predictions.jsonl").read_text()


def test_fine_tunes_a_local_checkpoint_folder(tmp_path):
    config = load_config(None, TINY)
    base = run_experiment(config, tmp_path / "base", show_progress=False, log=lambda *_: None)
    checkpoint = base.folder / "seed-0" / "model"
    tuned = run_experiment(
        load_config(None, [*TINY, f"model.checkpoint={checkpoint}", "seed=1"]),
        tmp_path / "tuned",
        show_progress=False,
        log=lambda *_: None,
    )
    assert tuned.summary["model"] == str(checkpoint)
    assert (tmp_path / "tuned" / "seed-1" / "model" / "model.safetensors").is_file()
    assert lookup(tuned.records, "Both", "name_to_description", "accuracy")["n_items"] == 3 * 2


def test_checkpoint_without_safetensors_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    config = load_config(None, [*TINY, f"model.checkpoint={folder}"])
    with pytest.raises(InputError, match="safetensors"):
        run_experiment(config, tmp_path / "run", show_progress=False, log=lambda *_: None)
    assert not (tmp_path / "run").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging folder left


def test_overwrite_replaces_a_run_folder(tmp_path):
    config = load_config(None, TINY)
    run_experiment(config, tmp_path / "run", show_progress=False, log=lambda *_: None)
    (tmp_path / "run" / "stale.txt").write_text("old")
    with pytest.raises(InputError, match="exists"):
        run_experiment(config, tmp_path / "run", show_progress=False, log=lambda *_: None)
    run_experiment(config, tmp_path / "run", overwrite=True, show_progress=False, log=lambda *_: None)
    assert not (tmp_path / "run" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    shutil.rmtree(tmp_path / "run")


@pytest.mark.slow
def test_the_reversal_curse_on_a_small_world(tmp_path):
    """Regression on a CI-sized world: trained directions learned, reverse at chance, with a fixed seed."""
    config = load_config(Path(__file__).parent.parent / "configs" / "small.yaml")
    outcome = run_experiment(config, tmp_path / "run", show_progress=False, log=lambda *_: None)
    for record in outcome.records:
        if record["metric"] != "accuracy":
            continue
        if record["trained"]:
            assert record["mean"] >= 0.9, record
        else:
            assert record["mean"] <= 0.05, record
    for subset in ("NameToDescription", "DescriptionToName"):
        asked = "name_to_description" if subset == "NameToDescription" else "description_to_name"
        assert lookup(outcome.records, subset, asked, "likelihood_p")["mean"] < 0.01


def _revcurse(*args: str) -> list[str]:
    return [sys.executable, "-c", "from revcurse.cli import main; main()", *args]


def test_a_run_killed_with_sigkill_resumes_to_the_same_metrics(tmp_path):
    """A real process, a real SIGKILL mid-training, then `revcurse train --resume`: the same numbers."""
    settings = [arg for key in [*TINY, "train.epochs=30", "train.batch_size=8", "train.threads=1",
                                "train.checkpoint_every=5"] for arg in ("--set", key)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_revcurse("train", "--quiet", "--out", str(tmp_path / "whole"), *settings), check=True, env=env,
                   capture_output=True)
    killed = subprocess.Popen(_revcurse("train", "--quiet", "--out", str(tmp_path / "killed"), *settings), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / ".killed.partial" / "seed-0" / "checkpoints"
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("step-*[0-9]")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed").exists()  # an interrupted run never looks finished
    assert json.loads((tmp_path / ".killed.partial" / "status.json").read_text())["status"] == "running"
    assert run_status(tmp_path / "killed") == "interrupted"  # nobody holds its lock

    resumed = subprocess.run(_revcurse("train", "--quiet", "--resume", str(tmp_path / "killed")), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "from step" in resumed.stdout
    run = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert run["per_seed"][0]["resumed_at_step"] > 0
    for name in ["metrics.json", "predictions.jsonl", "seed-0/train_log.jsonl"]:
        assert (tmp_path / "killed" / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    assert run_status(tmp_path / "killed") == "finished" and not (tmp_path / ".killed.partial").exists()
    assert not list((tmp_path / "killed").glob("seed-0/checkpoints"))  # removed once the seed was done


def test_a_run_folder_records_its_status_and_is_locked_while_written(tmp_path):
    destination = tmp_path / "run"
    with run_folder(destination, overwrite=False) as staging:
        assert json.loads((staging / "status.json").read_text())["status"] == "running"
        assert run_status(destination) == "running"
        with pytest.raises(InputError, match="unfinished run"):  # a second writer, without --resume
            with run_folder(destination, overwrite=False):
                pass
        with pytest.raises(InputError, match="another process"):  # a second writer, resuming
            with run_folder(destination, overwrite=False, resume=True):
                pass
        assert staging.is_dir()
    assert json.loads((destination / "status.json").read_text())["status"] == "finished"
    with pytest.raises(InputError, match="nothing to resume"):
        with run_folder(destination, overwrite=False, resume=True):
            pass


def test_a_failed_run_is_marked_failed_when_resumable_and_removed_otherwise(tmp_path):
    with pytest.raises(RuntimeError):
        with run_folder(tmp_path / "empty", overwrite=False):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # nothing worth keeping: nothing left
    with pytest.raises(RuntimeError):
        with run_folder(tmp_path / "run", overwrite=False) as staging:
            (staging / "seed-0" / "checkpoints" / "step-0000005").mkdir(parents=True)
            raise RuntimeError("out of memory")
    status = json.loads((tmp_path / ".run.partial" / "status.json").read_text())
    assert status["status"] == "failed" and "out of memory" in status["error"]
    assert run_status(tmp_path / "run") == "failed"
    with pytest.raises(InputError, match="--resume"):
        run_experiment(load_config(None, TINY), tmp_path / "run", show_progress=False, log=lambda *_: None)


def test_resume_refuses_a_different_config(tmp_path):
    with pytest.raises(RuntimeError):
        with run_folder(tmp_path / "run", overwrite=False) as staging:
            (staging / "config.yaml").write_text(dump_config(load_config(None, TINY)))
            (staging / "seed-0" / "checkpoints" / "step-0000005").mkdir(parents=True)
            raise RuntimeError("killed")
    changed = load_config(None, [*TINY, "train.epochs=2"])
    with pytest.raises(InputError, match="differs"):
        run_experiment(changed, tmp_path / "run", resume=True, show_progress=False, log=lambda *_: None)
    assert run_status(tmp_path / "run") == "failed"  # still there to resume with the right config
