"""Metrics on hand-built probe results, checked against direct computations."""

import math
from pathlib import Path

import pytest
from scipy import stats

import revcurse
from revcurse.metrics import aggregate, interval, lookup
from revcurse.probe import ProbeResult, is_correct

REVERSE = {("NameToDescription", "description_to_name"), ("DescriptionToName", "name_to_description")}


def result(fact, correct, logp, logp_random, rank=1.0, subset="NameToDescription", asked="name_to_description"):
    return ProbeResult(
        fact_key=fact, subset=subset, asked=asked, trained=(subset, asked) not in REVERSE, phrasing="p",
        prompt="prompt", target=" target", completion=" target" if correct else " other", correct=correct,
        is_greedy=correct, logprob_correct=logp, logprob_random=logp_random, rank=rank, n_candidates=3,
    )


def test_is_correct_is_case_insensitive_prefix_match():
    assert is_correct(" Daphne Barrington was", " daphne barrington")
    assert is_correct("daphne barrington", " Daphne Barrington")
    assert not is_correct(" Daphne", " Daphne Barrington")
    assert not is_correct(" Uriah Barrington", " Daphne Barrington")


def test_accuracy_rank_and_mrr_on_one_seed():
    results = [
        result("a", True, -1.0, -5.0, rank=1), result("a", False, -2.0, -5.0, rank=2),
        result("b", True, -1.0, -4.0, rank=1), result("b", True, -1.5, -4.0, rank=1),
    ]
    records = aggregate([(0, 0, results)])
    assert lookup(records, "NameToDescription", "name_to_description", "accuracy")["mean"] == pytest.approx(0.75)
    assert lookup(records, "NameToDescription", "name_to_description", "rank1")["mean"] == pytest.approx(0.75)
    assert lookup(records, "NameToDescription", "name_to_description", "mrr")["mean"] == pytest.approx(0.875)
    accuracy = lookup(records, "NameToDescription", "name_to_description", "accuracy")
    assert accuracy["n_seeds"] == 1 and accuracy["n_items"] == 4 and accuracy["n_facts"] == 2
    assert accuracy["trained"] is True


def test_likelihood_test_averages_phrasings_per_fact_before_the_paired_t():
    # Fact "a" has three phrasings, fact "b" one, fact "c" two: a per-probe test would weight "a" thrice.
    results = [
        result("a", True, -1.0, -3.0), result("a", True, -2.0, -3.0), result("a", True, -3.0, -3.0),
        result("b", True, -1.0, -1.5),
        result("c", True, -4.0, -2.0), result("c", True, -2.0, -2.0),
    ]
    records = aggregate([(0, 0, results)])
    correct = [-2.0, -1.0, -3.0]
    random = [-3.0, -1.5, -2.0]
    expected = stats.ttest_rel(correct, random)
    t = lookup(records, "NameToDescription", "name_to_description", "likelihood_t")
    p = lookup(records, "NameToDescription", "name_to_description", "likelihood_p")
    assert t["mean"] == pytest.approx(expected.statistic)
    assert p["mean"] == pytest.approx(expected.pvalue)
    assert t["n_facts"] == 3 and "paired t-test over facts" in t["statistic"]
    diff = lookup(records, "NameToDescription", "name_to_description", "likelihood_diff")
    assert diff["mean"] == pytest.approx((1.0 + 0.5 - 1.0) / 3)


def test_seeds_give_a_t_interval_over_seed_means_and_pool_facts_for_the_test():
    seed0 = [result("a", True, -1, -2), result("b", True, -1, -2.5)]
    seed1 = [result("a", False, -1, -2.2, rank=2), result("b", True, -1, -2)]
    records = aggregate([(0, 0, seed0), (1, 1, seed1)])
    accuracy = lookup(records, "NameToDescription", "name_to_description", "accuracy")
    assert accuracy["per_seed"] == [1.0, 0.5]
    half = stats.t.ppf(0.975, 1) * stats.sem([1.0, 0.5])
    assert accuracy["ci95_low"] == pytest.approx(max(0.0, 0.75 - half))
    assert accuracy["ci95_high"] == pytest.approx(min(1.0, 0.75 + half))
    # different world seeds: four distinct facts in the pooled test
    assert lookup(records, "NameToDescription", "name_to_description", "likelihood_t")["n_facts"] == 4
    # the same world under two seeds: facts averaged over seeds, two facts
    same_world = aggregate([(0, 7, seed0), (1, 7, seed1)])
    assert lookup(same_world, "NameToDescription", "name_to_description", "likelihood_t")["n_facts"] == 2


def test_single_seed_interval_is_a_bootstrap_over_facts_and_contains_the_mean():
    low, high = interval([0.5], [0.0, 1.0, 0.5, 0.5, 1.0, 0.0], proportion=True)
    assert 0.0 <= low < 0.5 < high <= 1.0
    assert interval([1.0], [1.0, 1.0, 1.0], proportion=True) == (1.0, 1.0)


def test_groups_are_ordered_and_carry_trained_flag():
    results = [
        result("a", False, -5, -5, rank=2, subset="DescriptionToName", asked="name_to_description"),
        result("b", False, -5, -4, rank=3, subset="DescriptionToName", asked="name_to_description"),
        result("a", True, -1, -5, subset="NameToDescription"),
        result("b", True, -1, -4, subset="NameToDescription"),
    ]
    records = aggregate([(0, 0, results)])
    assert [r["subset"] for r in records][0] == "NameToDescription"
    reverse = lookup(records, "DescriptionToName", "name_to_description", "accuracy")
    assert reverse["mean"] == 0.0 and reverse["trained"] is False
    assert not math.isnan(lookup(records, "DescriptionToName", "name_to_description", "likelihood_t")["mean"])


def test_every_statistical_test_and_rank_lives_in_one_place():
    """One statistics module: scipy is imported by metrics.py alone, and ranks come from probe.rank_among."""
    for path in sorted(Path(revcurse.__file__).parent.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "metrics.py":
            assert "scipy" not in text and "ttest_rel" not in text and "binomtest" not in text, path.name
        if path.name != "probe.py":
            assert "sum(s > " not in text and "== correct for" not in text, path.name
