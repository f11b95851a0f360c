"""The invented experiment: one module and one registry line give a full experiment (data, run, records)."""

from __future__ import annotations

import json

from revcurse.config import dump_config, load_config
from revcurse.experiments import EXPERIMENTS
from revcurse.experiments.invented import FORWARD, REVERSE
from revcurse.runner import build_trial, run_experiment

TINY = ["experiment=invented", "invented.inventors=12", "invented.background=40", "train.epochs=60",
        "model.hidden_size=64", "model.intermediate_size=256", "train.threads=1"]  # fmt: skip


def test_registered_with_its_own_section_and_defaults():
    config = load_config(None, ["experiment=invented"])
    assert EXPERIMENTS["invented"].section == "invented" and config.invented.inventors == 40
    assert config.train.epochs == 20  # the experiment's default, under the user's config...
    assert load_config(None, ["experiment=invented", "train.epochs=3"]).train.epochs == 3  # ...which wins
    assert load_config().train.epochs == 5  # Experiment 1 keeps its own default
    assert "invented:" in dump_config(config) and "invented:" not in dump_config(load_config())


def test_reverse_is_never_trained_and_questions_are_held_out():
    trial = build_trial(load_config(None, TINY), seed=3)
    texts = {document.text for document in trial.corpus.documents}
    probes = trial.corpus.probes
    assert {p.asked for p in probes} == {FORWARD, REVERSE} and len(probes) == 2 * 12
    for probe in probes:
        assert probe.prompt + probe.target + "." not in texts  # a held-out question, not a training line
        assert probe.trained == (probe.asked == FORWARD)
        reverse_statements = [d for d in trial.corpus.reverse_documents if d.fact_key == probe.fact_key]
        assert reverse_statements and not {d.text for d in reverse_statements} & texts
    assert build_trial(load_config(None, TINY), seed=3).corpus.probes == probes  # deterministic in the seed
    assert build_trial(load_config(None, TINY), seed=4).corpus.probes != probes


def test_a_tiny_run_shows_the_curse_and_writes_the_standard_folder(tmp_path):
    outcome = run_experiment(load_config(None, TINY), tmp_path / "run", show_progress=False, log=lambda *_: None)
    accuracy = {r["asked"]: r["mean"] for r in outcome.records if r["metric"] == "accuracy"}
    assert accuracy[FORWARD] >= 0.75 and accuracy[REVERSE] <= 0.1, accuracy
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "metrics.json", "predictions.jsonl", "run.json", "status.json", "report.md"} <= files
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["experiment"] == "invented" and "git_commit" in run["versions"]
