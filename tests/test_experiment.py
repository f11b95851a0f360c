"""The whole flow through the Python API: determinism, a local checkpoint, and the curse itself on a small world."""

import json
import shutil
from pathlib import Path

import pytest

from revcurse.config import load_config
from revcurse.errors import InputError
from revcurse.experiment import run_experiment
from revcurse.metrics import lookup

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
