"""Metrics on hand-built probe results, checked against direct computations."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import revcurse
from revcurse.metrics import (
    RandomizationTest,
    aggregate,
    interval,
    label_accuracy_test,
    lookup,
    placebo_rejections,
)
from revcurse.probe import ProbeResult, is_correct

REVERSE = {("NameToDescription", "description_to_name"), ("DescriptionToName", "name_to_description")}


def result(fact, correct, logp, logp_random, rank=1.0, subset="NameToDescription", asked="name_to_description",
           distractors=None):
    distractors = distractors or {}
    return ProbeResult(
        fact_key=fact, subset=subset, asked=asked, trained=(subset, asked) not in REVERSE, phrasing="p",
        prompt="prompt", target=" target", completion=" target" if correct else " other", correct=correct,
        is_greedy=correct, logprob_correct=logp, logprob_random=logp_random, rank=rank, n_candidates=3,
        answer_correct=correct, distractor_keys=list(distractors), distractor_logprobs=list(distractors.values()),
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
    p = lookup(records, "NameToDescription", "name_to_description", "likelihood_t_p")
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


def test_a_fact_without_a_value_gives_no_bootstrap_interval_and_no_warning():
    """A NaN (a log p never measured) leaves no interval to draw: NaN, not scipy's DegenerateDataWarning (an
    error under the suite's filterwarnings)."""
    low, high = interval([0.3], [0.5, math.nan, 0.2], proportion=False)
    assert math.isnan(low) and math.isnan(high)


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
            imports_scipy = re.search(r"^\s*(import scipy|from scipy)", text, re.MULTILINE)
            assert not imports_scipy and "ttest_rel" not in text and "binomtest" not in text, path.name
        if path.name != "probe.py":
            assert "sum(s > " not in text and "== correct for" not in text, path.name


def test_with_unequal_probes_per_fact_the_mean_is_the_mean_of_fact_means_and_inside_its_interval():
    # fact a: 8 probes all right; facts b, c, d: one probe each, all wrong. Per probe 8/11, per fact 1/4.
    results = [result("a", True, -1, -2) for _ in range(8)] + [result(f, False, -2, -1, rank=2) for f in "bcd"]
    accuracy = lookup(aggregate([(0, 0, results)]), "NameToDescription", "name_to_description", "accuracy")
    assert accuracy["mean"] == pytest.approx(0.25)
    assert accuracy["ci95_low"] <= accuracy["mean"] <= accuracy["ci95_high"]
    assert accuracy["n_facts"] == 4 and accuracy["n_items"] == 11


def world_of_scores(n_facts, k, rng, knows):
    """Probe results whose log p are drawn per candidate fact (some targets intrinsically likelier, skewed);
    ``knows`` adds a bonus to the correct target."""
    results = []
    bias = {f"f{i}": rng.gamma(0.5, 3.0) for i in range(n_facts)}  # a few very likely targets
    for i in range(n_facts):
        others = [f"f{j}" for j in rng.choice([j for j in range(n_facts) if j != i], k, replace=False)]
        for _ in range(3):  # three phrasings per fact
            scores = {f: -10 + bias[f] + rng.normal() for f in others}
            correct = -10 + bias[f"f{i}"] + rng.normal() + knows
            rank = 1 + sum(s > correct for s in scores.values())
            results.append(result(f"f{i}", False, correct, float(np.mean(list(scores.values()))), rank=rank,
                                  distractors=scores))
    return results


def test_randomization_tests_find_knowledge_and_their_placebo_rate_stays_near_alpha():
    rng = np.random.default_rng(0)
    knowing = aggregate([(0, 0, world_of_scores(30, 8, rng, knows=3.0))])
    assert lookup(knowing, "NameToDescription", "name_to_description", "likelihood_p")["mean"] < 0.01
    assert lookup(knowing, "NameToDescription", "name_to_description", "rank_p")["mean"] < 0.01
    assert lookup(knowing, "NameToDescription", "name_to_description", "mrr_excess")["mean"] > 0.2
    # the true target no different from a distractor: the placebo's false-positive rate near 5%
    cursed = [(0, 0, world_of_scores(30, 8, rng, knows=0.0))]
    for record in placebo_rejections(cursed, draws=1000):
        if record["test"] != "paper_t":
            assert record["draws"] == 1000 and record["rate"] <= 0.07, record
    p = lookup(aggregate(cursed), "NameToDescription", "name_to_description", "likelihood_p")["mean"]
    assert 0.0 < p <= 1.0


def test_randomization_p_is_exact_on_a_tiny_case():
    # two facts, two candidates each: the null sums are 4 equally likely values
    test = RandomizationTest([np.array([1.0, 0.0]), np.array([1.0, 0.0])], resamples=20000, seed=1)
    assert test.null_mean == pytest.approx(1.0)
    assert test.p_value(2.0) == pytest.approx(0.5, abs=0.02)  # |2-1| reached by sums 2 and 0: half the draws
    assert test.p_value(1.0) == pytest.approx(1.0, abs=0.001)


def test_label_accuracy_test_tells_a_read_out_from_chance():
    truth = np.arange(60) % 4
    perfect = label_accuracy_test([(truth.copy(), truth)], 999, 0)
    assert perfect["accuracy"] == 1.0 and perfect["p_value"] < 0.01
    assert perfect["chance"] == pytest.approx(0.25)
    assert perfect["ci95_low"] > 0.9
    shuffled = label_accuracy_test([(np.random.default_rng(1).permutation(truth), truth)], 999, 0)
    assert shuffled["p_value"] > 0.05
