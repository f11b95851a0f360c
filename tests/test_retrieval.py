"""The retrieval experiment (Kitouni et al. 2024): key -> value pairs of random words, asked both ways."""

from __future__ import annotations

import pytest

from revcurse.config import load_config
from revcurse.experiments import EXPERIMENTS
from revcurse.experiments.retrieval import BACKWARD, FORWARD
from revcurse.runner import build_trial, run_experiment

TINY = ["experiment=retrieval", "retrieval.pairs=16", "retrieval.words=24", "train.epochs=120",
        "train.batch_size=16", "model.hidden_size=64", "model.intermediate_size=256", "train.threads=1"]  # fmt: skip


def test_only_key_to_value_is_trained_and_backward_is_asked_as_each_model_can_read():
    causal = build_trial(load_config(None, TINY), seed=2).corpus
    assert EXPERIMENTS["retrieval"].section == "retrieval"
    texts = [document.text for document in causal.documents]
    assert len(texts) == len(set(texts)) == 16
    keys = {d.fact_key for d in causal.documents}
    values = {d.text.split(" = ")[1] for d in causal.documents}
    assert len(keys) == len(values) == 16 and not keys & values
    assert all(len(k.split()) == 3 for k in keys) and all(len(v.split()) == 3 for v in values)
    probes = {(p.fact_key, p.asked): p for p in causal.probes}
    assert len(probes) == 2 * 16
    for document in causal.documents:
        key = document.fact_key
        value = document.text.split(" = ")[1]
        forward, backward = probes[key, FORWARD], probes[key, BACKWARD]
        assert forward.prompt + forward.target == document.text and forward.trained
        # backward: the value first, a text no training document has (reverse_documents are the bidirectional cure's)
        assert (backward.prompt, backward.target, backward.after) == (f"{value} =", f" {key}", "")
        assert not backward.trained and not any(text.startswith(value) for text in texts)
        assert f"{value} = {key}" in {d.text for d in causal.reverse_documents}
    masked = build_trial(load_config(None, [*TINY, "train.objective=mlm-u"]), seed=2).corpus
    assert [d.text for d in masked.documents] == texts  # the same pairs whatever the objective
    for probe in masked.probes:
        if probe.asked == BACKWARD:  # the training document with its key masked
            assert probe.prompt == "" and probe.prompt + probe.target + probe.after in texts
    assert build_trial(load_config(None, TINY), seed=3).corpus.documents != causal.documents


def test_too_many_pairs_for_the_words_is_a_clear_error():
    from revcurse.errors import InputError

    with pytest.raises(InputError, match="retrieval.pairs=50"):
        build_trial(load_config(None, [*TINY, "retrieval.pairs=50", "retrieval.words=4", "retrieval.key_words=2",
                                       "retrieval.value_words=2"]), seed=0)


@pytest.mark.slow
def test_a_tiny_causal_run_retrieves_forward_only(tmp_path):
    outcome = run_experiment(load_config(None, TINY), tmp_path / "run", show_progress=False, log=lambda *_: None)
    accuracy = {r["asked"]: r["mean"] for r in outcome.records if r["metric"] == "accuracy"}
    assert accuracy[FORWARD] >= 0.8 and accuracy[BACKWARD] <= 0.1, accuracy


def test_the_pairs_are_the_same_in_every_process():
    """The words are drawn in an order that does not depend on string hashing (PYTHONHASHSEED), so every arm
    and every worker process of a comparison trains on the same pairs."""
    import os
    import subprocess
    import sys

    code = ("from revcurse.config import load_config; from revcurse.runner import build_trial; "
            "print([d.text for d in build_trial(load_config(None, ['experiment=retrieval']), 5).corpus.documents])")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        outputs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True, timeout=120).stdout)
    assert len(outputs) == 1
