"""The one runner through the Python API: determinism, a local checkpoint, the curse itself on a small world, a
run resumed after a kill, any registered experiment (a throwaway one too) and a remote backend."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import Field

import revcurse.config
from revcurse.config import load_config
from revcurse.corpus import Corpus, Document, Probe
from revcurse.errors import InputError
from revcurse.experiments import EXPERIMENTS, Experiment, Trial
from revcurse.metrics import lookup
from revcurse.records import run_status
from revcurse.runner import run_experiment
from revcurse.sections import Section

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
    for name in ["metrics.json", "predictions.jsonl", "seed-0/train_log.jsonl", "seed-0/curve.jsonl"]:
        assert (tmp_path / "killed" / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    assert run_status(tmp_path / "killed") == "finished" and not (tmp_path / ".killed.partial").exists()
    assert not list((tmp_path / "killed").glob("seed-0/checkpoints"))  # removed once the seed was done


INVENTED = ["experiment=invented", "invented.inventors=4", "invented.background=6", "train.epochs=3",
            "model.hidden_size=32", "model.intermediate_size=64", "model.heads=2", "model.vocab_size=400",
            "train.threads=1"]


class EchoOptions(Section):
    pairs: int = Field(3, ge=1, description="facts under test")


def echo_build(config, seed: int) -> Trial:
    """A throwaway experiment: "wug-i is zop-i", asked forward (trained) and backward (never trained)."""
    pairs = [(f"wug{i}", f"zop{i}") for i in range(config.echo.pairs)]
    documents = [Document(f"{a} is {b}.", "Echo", a) for a, b in pairs]
    probes = [Probe(a, "Echo", asked, asked == "forward", "p0", prompt, target)
              for a, b in pairs for asked, prompt, target in (("forward", f"{a} is", f" {b}"),
                                                              ("backward", f"{b} is", f" {a}"))]
    return Trial(Corpus(documents, probes), seed)


def test_a_new_experiment_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    """Registering an Experiment (its options included) is all it takes: config, runner and records follow."""
    echo = Experiment(name="echo", title="throwaway", build=echo_build, options=EchoOptions, defaults=("seeds=2",))
    monkeypatch.setitem(EXPERIMENTS, "echo", echo)
    monkeypatch.setattr(revcurse.config, "RunConfig", revcurse.config.build_run_config())
    config = load_config(None, ["experiment=echo", "echo.pairs=4", *TINY, "train.threads=1"])
    assert config.seeds == 2 and config.echo.pairs == 4
    outcome = run_experiment(config, tmp_path / "echo", show_progress=False, log=lambda *_: None)
    accuracy = {(r["asked"], r["trained"]): r for r in outcome.records if r["metric"] == "accuracy"}
    assert set(accuracy) == {("forward", True), ("backward", False)}
    assert accuracy["forward", True]["n_items"] == 4 * 2  # four facts, two seeds
    assert "echo:" in (tmp_path / "echo" / "config.yaml").read_text(encoding="utf-8")
    assert run_status(tmp_path / "echo") == "finished"


def test_invented_asked_through_revcurse_serve_gives_the_local_metrics(tmp_path):
    """probe.backend=openai: the runner asks a model served on 127.0.0.1 (trained by an earlier invented run)
    and gets the numbers the local backend got from the same model on the same probes."""
    from revcurse.model import load_checkpoint
    from revcurse.serve import make_server
    from tests.test_serve import running

    local = run_experiment(load_config(None, INVENTED), tmp_path / "local", show_progress=False, log=lambda *_: None)
    model, tokenizer = load_checkpoint(load_config(None, [f"model.checkpoint={tmp_path / 'local/seed-0/model'}"]).model)
    with running(make_server(model, tokenizer, "tiny", port=0, quiet=True)) as server:
        remote_config = load_config(None, [*INVENTED, "train.enabled=false", "probe.backend=openai",
                                           f"probe.url={server.url}", "probe.model_name=tiny",
                                           "probe.api_key_env=REVCURSE_TEST_UNSET"])
        remote = run_experiment(remote_config, tmp_path / "remote", show_progress=False, log=lambda *_: None)
    assert remote.summary["per_seed"][0]["documents"] == 0  # nothing trained: only asked
    for metric in ("accuracy", "rank1", "mrr"):
        for asked in ("who_to_what", "what_to_who"):
            here = lookup(local.records, "Inventors", asked, metric)["mean"]
            there = lookup(remote.records, "Inventors", asked, metric)["mean"]
            assert there == pytest.approx(here, abs=1e-6), (metric, asked)
    assert lookup(remote.records, "Inventors", "who_to_what", "mrr")["mean"] > 0
    assert lookup(remote.records, "Inventors", "what_to_who", "rank1")["n_items"] == 4  # facts
