"""The non-reciprocal experiment (Kitouni et al. 2024): chains "A admires B", "B admires C"; the incorrect
inference "B admires A" is what entity reversal without delimiters puts in the training data."""

from __future__ import annotations

import pytest

from revcurse.config import load_config
from revcurse.experiments import EXPERIMENTS
from revcurse.experiments.nonreciprocal import BACKWARD, FORWARD, INCORRECT
from revcurse.runner import build_trial, run_experiment

TINY = ["experiment=nonreciprocal", "nonreciprocal.chains=12", "train.epochs=80", "train.batch_size=16",
        "model.hidden_size=64", "model.intermediate_size=256", "train.threads=1"]  # fmt: skip


def probes_of(corpus):
    return {(p.fact_key, p.asked): p for p in corpus.probes}


@pytest.mark.parametrize("delimiters", [False, True])
def test_chains_train_forward_and_ask_three_questions(delimiters):
    config = load_config(None, [*TINY, f"nonreciprocal.delimiters={delimiters}"])
    corpus = build_trial(config, seed=1).corpus
    texts = {d.text for d in corpus.documents}
    assert len(texts) == len(corpus.documents) == 24
    probes = probes_of(corpus)
    assert {asked for _, asked in probes} == {FORWARD, BACKWARD, INCORRECT} and len(probes) == 3 * 12
    for (_, asked), probe in probes.items():
        if asked == FORWARD:
            assert probe.prompt + probe.target in texts and probe.trained  # B admires C, as trained
        else:  # neither the backward question nor the wrong inference is a training text
            assert probe.prompt + probe.target not in texts and not probe.trained
    incorrect = {fact: p for (fact, asked), p in probes.items() if asked == INCORRECT}
    forward = {fact: p for (fact, asked), p in probes.items() if asked == FORWARD}
    assert all(incorrect[f].prompt == forward[f].prompt != "" for f in incorrect)  # same question, wrong answer
    assert EXPERIMENTS["nonreciprocal"].columns[2].asked == INCORRECT


@pytest.mark.parametrize(("delimiters", "confused"), [(False, True), (True, False)])
def test_entity_reversal_states_the_wrong_inference_only_without_delimiters(delimiters, confused):
    config = load_config(None, [*TINY, f"nonreciprocal.delimiters={delimiters}", "cures=[reverse-entity]"])
    corpus = build_trial(config, seed=1).corpus
    reversed_texts = {d.text for d in corpus.documents if d.reversal}
    assert len(reversed_texts) == 24
    for (_, asked), probe in probes_of(corpus).items():
        if asked == INCORRECT:  # "B admires A" in the training data: the wrong inference, literally
            assert (probe.prompt + probe.target in reversed_texts) == confused
        if asked == BACKWARD:  # asked in the reversed form, which reversal trains on either way
            assert probe.prompt + probe.target in reversed_texts


def test_a_masked_model_is_asked_backward_by_filling_a_blank():
    corpus = build_trial(load_config(None, [*TINY, "train.objective=mlm-u", "nonreciprocal.delimiters=true"]), 1).corpus
    texts = {d.text for d in corpus.documents}
    backward = [p for p in corpus.probes if p.asked == BACKWARD]
    assert backward and all(p.after and p.prompt + p.target + p.after in texts for p in backward)


@pytest.mark.slow
def test_a_tiny_causal_run_answers_forward_and_never_infers_the_reverse(tmp_path):
    outcome = run_experiment(load_config(None, TINY), tmp_path / "run", show_progress=False, log=lambda *_: None)
    accuracy = {r["asked"]: r["mean"] for r in outcome.records if r["metric"] == "accuracy"}
    assert accuracy[FORWARD] >= 0.8 and accuracy[BACKWARD] <= 0.1 and accuracy[INCORRECT] <= 0.1, accuracy
