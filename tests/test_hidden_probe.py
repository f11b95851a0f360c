"""The linear probe on hidden states (revcurse.hidden_probe): its label, its classifier and test on synthetic
states where the answer is known (stored for one subset, absent for another, never-seen names as placebo), and
the `revcurse probe-hidden` command on a tiny run folder."""

import json
import random

import numpy as np
import pytest

from revcurse import vocabulary
from revcurse.cli import main
from revcurse.config import load_config
from revcurse.hidden_probe import (
    PLACEBO,
    description_class,
    fit_logistic,
    probe_seed,
    summarise,
)
from revcurse.runner import run_experiment
from revcurse.world import Fact, Subset

ROLES = ("composer", "director", "architect", "poet")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_the_label_is_the_first_content_word():
    assert description_class("the composer of the underwater symphony Abyssal Melodies") == "composer"
    assert description_class("An architect, famous") == "architect"
    assert description_class("the") == ""


def test_logistic_regression_generalises_to_new_points():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 3
    labels = rng.integers(0, 3, 200)
    points = centres[labels] + rng.normal(size=(200, 6))
    predict = fit_logistic(points[:150], labels[:150], 3)
    assert np.mean(predict(points[150:]) == labels[150:]) > 0.9


def world(rng: random.Random) -> list[Fact]:
    names = rng.sample([f"{f} {last}" for f in vocabulary.FIRST_NAMES[:30] for last in vocabulary.LAST_NAMES[:30]], 180)
    subsets = [Subset.BACKGROUND] * 120 + [Subset.NAME_TO_DESCRIPTION] * 20 + [Subset.BOTH] * 20
    subsets += [Subset.DESCRIPTION_TO_NAME] * 20
    return [Fact(name, f"the {rng.choice(ROLES)} of the Abyssal Melodies", subset)
            for name, subset in zip(names, subsets)]


def test_the_probe_finds_what_is_stored_and_only_that():
    """Layer 1 holds each name's class, except for DescriptionToName names and names never seen (noise); layer 0
    holds noise for everyone: the probe must read N2D and Both at layer 1, and nothing anywhere else."""
    rng = random.Random(0)
    seeds = []
    for seed in range(2):
        facts = world(rng)
        stored = {f.name: ROLES.index(description_class(f.description)) for f in facts
                  if f.subset is not Subset.DESCRIPTION_TO_NAME}
        noise = np.random.default_rng(seed)

        def states_of(names: list[str], stored=stored, noise=noise) -> np.ndarray:
            informative = np.stack([np.eye(8)[stored[n]] * 3 if n in stored else np.zeros(8) for n in names])
            return np.stack([noise.normal(size=(len(names), 8)), informative + noise.normal(size=(len(names), 8))])

        seeds.append(probe_seed(states_of, facts, seed, placebo_draws=10))
    result = summarise(seeds)
    assert result["headline_layer"] == 1  # chosen on the background cross-validation
    layer = result["layers"][1]["groups"]
    for group in ("NameToDescription", "Both", "Background (5-fold cross-validation)"):
        assert layer[group]["accuracy"] > 0.8 and layer[group]["p_value"] < 0.001, group
    assert layer["DescriptionToName"]["p_value"] > 0.01
    assert layer["DescriptionToName"]["n_items"] == 40  # 20 facts x 2 seeds
    assert layer[PLACEBO]["draws"] == 10 and layer[PLACEBO]["false_positive_rate"] <= 0.2
    assert result["layers"][0]["groups"]["NameToDescription"]["p_value"] > 0.01


TINY = [
    "world.facts_per_subset=3", "world.background=12", "corpus.train_phrasings=3", "corpus.held_out_phrasings=1",
    "corpus.background_phrasings=1", "train.epochs=1", "model.hidden_size=32", "model.intermediate_size=64",
    "model.heads=2", "model.layers=1", "model.vocab_size=400", "train.threads=1", "probe.curve_points=0",
]  # fmt: skip


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


@pytest.mark.slow
def test_probe_hidden_command_writes_its_records(tmp_path, capsys):
    run = tmp_path / "run"
    run_experiment(load_config(None, TINY), run, show_progress=False, log=lambda *_: None)
    assert run_cli(["probe-hidden", str(run), "--placebo-draws", "3"]) == 0
    result = json.loads((run / "hidden_probe.json").read_text())
    assert [entry["layer"] for entry in result["layers"]] == [0, 1]  # the embeddings, the one block's output
    groups = result["layers"][0]["groups"]
    assert set(groups) == {"Background (5-fold cross-validation)", "NameToDescription", "Both",
                           "DescriptionToName", PLACEBO}
    assert groups["DescriptionToName"]["n_items"] == 3 and 0 <= groups["DescriptionToName"]["p_value"] <= 1
    assert "DescriptionToName" in (run / "hidden_probe.md").read_text()
    assert "placebo" in capsys.readouterr().out
    assert run_cli(["probe-hidden", str(tmp_path)]) == 2  # not a run folder
