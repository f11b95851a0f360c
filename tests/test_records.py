"""The run-record module: run folders record their status, lock out a second writer, keep what a failure leaves
for --resume, and say how to resume (train or compare)."""

import json

import pytest

from revcurse.config import dump_config, load_config
from revcurse.errors import InputError
from revcurse.records import ARMS_FILE, partial_folder, resume_command, run_folder, run_status
from revcurse.runner import run_experiment
from tests.test_runner import TINY


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


def test_resume_command_says_compare_for_a_comparison_and_train_otherwise(tmp_path):
    for name in ("run", "cmp"):
        with pytest.raises(RuntimeError):
            with run_folder(tmp_path / name, overwrite=False) as staging:
                (staging / "seed-0" / "checkpoints" / "step-0000005").mkdir(parents=True)
                if name == "cmp":
                    (staging / ARMS_FILE).write_text('["bidirectional"]')
                raise RuntimeError("killed")
    assert partial_folder(tmp_path / "cmp").is_dir()
    assert resume_command(tmp_path / "run") == f"revcurse train --resume {tmp_path / 'run'}"
    assert resume_command(tmp_path / "cmp") == f"revcurse compare --resume {tmp_path / 'cmp'}"
