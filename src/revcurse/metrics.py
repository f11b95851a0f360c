"""Metrics: per-probe results -> tidy records, one per (subset, asked direction, metric), over seeds.

The unit of evidence is the fact, not the phrasing: the phrasings of one fact are not independent, and facts
can have unequal numbers of probes. Every metric therefore estimates one quantity, **the mean over facts of the
per-fact mean over its probes**, and its mean and its interval estimate the same thing:

- one seed: the mean of the per-fact means, with a percentile bootstrap over facts (``scipy.stats.bootstrap``,
  2000 resamples, fixed seed);
- several seeds: that mean per seed, averaged, with a Student-t 95% interval over the per-seed values (each seed
  is a new world and a new model).

Two tests ask whether the model prefers the correct target to its distractors (other facts' targets in the same
phrasing, see ``corpus.draw_distractors``). Both pool facts over seeds (a fact is keyed by its world seed and
name, so a fixed world is not counted twice) and are paired over facts:

- the paper's likelihood test: ``scipy.stats.ttest_rel`` of per-fact mean log p(correct target) against mean log
  p(distractors), on the same prompts;
- a rank test that needs no equal lengths or forms: ``ttest_rel`` of per-fact mean reciprocal rank against its
  exact chance value (a candidate exchangeable with n - 1 others has E[1/rank] = H(n)/n).

A test is trusted once its false-positive rate is measured: ``placebo_rejections`` swaps each fact's correct
target for another fact's target in the same phrasing (a relation the model never saw) and counts how often the
tests reject at alpha.
"""

from __future__ import annotations

import math
import random
import warnings
from collections import defaultdict
from collections.abc import Iterable
from statistics import fmean

import numpy as np
from scipy import stats

from revcurse.probe import ProbeResult, rank_among

PROPORTIONS = ("accuracy", "answer_accuracy", "rank1", "mrr")
LIKELIHOOD_STATISTIC = (
    "paired t-test over facts (scipy.stats.ttest_rel): per fact, mean log p(correct target) vs mean log p(matched "
    "distractors: other facts' targets in the same phrasing), averaged over phrasings"
)
RANK_STATISTIC = (
    "paired t-test over facts (scipy.stats.ttest_rel): per fact, mean reciprocal rank of the correct target among "
    "its matched distractors vs its exact chance value H(n)/n"
)
TESTS = {"likelihood": LIKELIHOOD_STATISTIC, "rank": RANK_STATISTIC}
PAIRED_T = "paired t-test (scipy.stats.ttest_rel)"
MCNEMAR = "McNemar exact test: two-sided binomial test of the discordant pairs (scipy.stats.binomtest)"
SUBSET_ORDER = ("NameToDescription", "DescriptionToName", "Both")
ASKED_ORDER = ("name_to_description", "description_to_name")


def chance_mrr(n_candidates: int) -> float:
    """E[1/rank] of a candidate that is exchangeable with ``n_candidates - 1`` others: H(n)/n."""
    return sum(1 / k for k in range(1, n_candidates + 1)) / n_candidates


def probe_values(result: ProbeResult) -> dict[str, float]:
    """The per-probe quantities that are averaged into metrics (NaN: not defined for this probe)."""
    return {
        "accuracy": float(result.correct),
        "answer_accuracy": float(result.answer_correct),
        "rank1": float(result.rank == 1),
        "mrr": 1.0 / result.rank,
        "mrr_chance": chance_mrr(result.n_candidates),
        "logprob_correct": result.logprob_correct,
        "logprob_random": result.logprob_random,
    }


def _mean(values: Iterable[float]) -> float:
    """Mean of the defined values (NaN when none is)."""
    kept = [v for v in values if not math.isnan(v)]
    return fmean(kept) if kept else math.nan


def fact_means(values: Iterable[tuple[object, dict[str, float]]]) -> dict[object, dict[str, float]]:
    """Average each quantity over the probes of each fact: ``values`` are (fact key, probe values) pairs."""
    grouped: dict[object, list[dict[str, float]]] = defaultdict(list)
    for key, probe in values:
        grouped[key].append(probe)
    return {key: {m: _mean(v[m] for v in probes) for m in probes[0]} for key, probes in grouped.items()}


def per_fact(results: Iterable[ProbeResult], world_seed: int) -> dict[tuple[int, str], dict[str, float]]:
    """Average each quantity over the phrasings of each fact; keys are (world seed, fact key)."""
    return fact_means(((world_seed, r.fact_key), probe_values(r)) for r in results)


def interval(per_seed: list[float], per_fact_values: list[float], proportion: bool) -> tuple[float, float]:
    """95% interval: over seeds when there are several, else a bootstrap over facts."""
    if len(per_seed) >= 2:
        low, high = t_interval(per_seed)
    elif len(per_fact_values) >= 2:
        if np.ptp(per_fact_values) == 0:
            low = high = per_fact_values[0]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                boot = stats.bootstrap(
                    (np.asarray(per_fact_values),), np.mean, n_resamples=2000, confidence_level=0.95,
                    method="percentile", rng=np.random.default_rng(0),
                )
            low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    else:
        low = high = per_seed[0] if per_seed else math.nan
    if proportion:
        low, high = max(0.0, low), min(1.0, high)
    return low, high


def t_interval(values: list[float]) -> tuple[float, float]:
    mean = fmean(values)
    sem = stats.sem(values)
    if sem == 0 or math.isnan(sem):
        return mean, mean
    half = stats.t.ppf(0.975, len(values) - 1) * sem
    return mean - half, mean + half


def aggregate(runs: list[tuple[int, int, list[ProbeResult]]]) -> list[dict]:
    """Tidy records from ``[(seed, world_seed, results), ...]``: one per (subset, asked, metric)."""
    groups, trained = _groups(runs)
    records = []
    for key in sorted(groups, key=_group_order):
        subset, asked = key
        base = {"subset": subset, "asked": asked, "trained": trained[key]}
        seeds = groups[key]
        n_items = sum(len(items) for _, _, items in seeds)
        per_seed_facts = [per_fact(items, world_seed) for _, world_seed, items in seeds]
        pooled = pool_seeds(per_seed_facts)
        for metric in (*PROPORTIONS, "mrr_chance", "logprob_correct", "logprob_random"):
            per_seed = [_mean(v[metric] for v in facts.values()) for facts in per_seed_facts]
            low, high = interval(per_seed, [v[metric] for v in pooled.values()], metric in PROPORTIONS)
            records.append(
                {**base, "metric": metric, "mean": fmean(per_seed), "ci95_low": low, "ci95_high": high,
                 "n_seeds": len(seeds), "n_items": n_items, "n_facts": len(pooled), "per_seed": per_seed}
            )
        records += test_records(base, pooled, len(seeds))
    return records


def _groups(runs: list[tuple[int, int, list[ProbeResult]]]) -> tuple[dict, dict]:
    """Per (subset, asked): its [(seed, world_seed, results)], and whether that direction was trained."""
    groups: dict[tuple[str, str], list[tuple[int, int, list[ProbeResult]]]] = defaultdict(list)
    trained: dict[tuple[str, str], bool] = {}
    for seed, world_seed, results in runs:
        by_group: dict[tuple[str, str], list[ProbeResult]] = defaultdict(list)
        for result in results:
            by_group[(result.subset, result.asked)].append(result)
            trained[(result.subset, result.asked)] = result.trained
        for key, items in by_group.items():
            groups[key].append((seed, world_seed, items))
    return groups, trained


def pool_seeds(per_seed_facts: list[dict[object, dict[str, float]]]) -> dict[object, dict[str, float]]:
    """One value per fact over seeds: a fact of a fixed world probed by several seeds' models is one fact."""
    return fact_means((key, values) for facts in per_seed_facts for key, values in facts.items())


def paired_test(first: Iterable[float], second: Iterable[float]) -> tuple[float, float]:
    """(t, p) of ``scipy.stats.ttest_rel`` over facts, pairs with a NaN left out; NaN when fewer than two pairs
    or no variation in their differences (the t statistic is then undefined)."""
    a, b = np.asarray(list(first), dtype=float), np.asarray(list(second), dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    diff = a[keep] - b[keep]
    if len(diff) < 2 or np.ptp(diff) == 0:
        return math.nan, math.nan
    test = stats.ttest_rel(a[keep], b[keep])
    return float(test.statistic), float(test.pvalue)


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion of independent items: unlike a bootstrap, not [0, 0] when
    nothing is right (NaN for no items)."""
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_test(first_only: int, second_only: int) -> float:
    """p of McNemar's exact test from the discordant pairs; 1 when there are none (nothing tells them apart)."""
    discordant = first_only + second_only
    return float(stats.binomtest(first_only, discordant, 0.5).pvalue) if discordant else 1.0


def fact_tests(pooled: dict[object, dict[str, float]]) -> dict[str, tuple[np.ndarray, float, float]]:
    """Per test name: (per-fact differences, t, p), paired over facts."""
    def column(metric: str) -> np.ndarray:
        return np.array([v[metric] for v in pooled.values()], dtype=float)

    out = {}
    for name, (first, second) in {"likelihood": ("logprob_correct", "logprob_random"),
                                  "rank": ("mrr", "mrr_chance")}.items():
        a, b = column(first), column(second)
        diff = a - b
        out[name] = (diff[~np.isnan(diff)], *paired_test(a, b))
    return out


def test_records(base: dict, pooled: dict[object, dict[str, float]], n_seeds: int) -> list[dict]:
    """The likelihood and rank tests as records: the mean per-fact difference with its t interval, t and p."""
    records = []
    for name, (diff, t, p) in fact_tests(pooled).items():
        low, high = t_interval(diff.tolist()) if len(diff) >= 2 else (math.nan, math.nan)
        mean = float(diff.mean()) if len(diff) else math.nan
        common = {"n_seeds": n_seeds, "n_items": len(diff), "n_facts": len(diff), "statistic": TESTS[name]}
        metric = {"likelihood": "likelihood_diff", "rank": "mrr_excess"}[name]
        records += [
            {**base, "metric": metric, "mean": mean, "ci95_low": low, "ci95_high": high, **common},
            {**base, "metric": f"{name}_t", "mean": t, "ci95_low": None, "ci95_high": None, **common},
            {**base, "metric": f"{name}_p", "mean": p, "ci95_low": None, "ci95_high": None, **common},
        ]
    return records


def placebo_rejections(
    runs: list[tuple[int, int, list[ProbeResult]]], draws: int = 200, alpha: float = 0.05, seed: int = 0
) -> list[dict]:
    """How often each test rejects at ``alpha`` when the "correct" target is a placebo: one record per
    (subset, asked, test).

    A draw gives each fact another fact of its group (one of its scored distractor facts, chosen at random) and
    takes that fact's target in each of its phrasings as the "correct" one: it fits the prompt's form exactly as
    the true target does, but names a relation the model never saw. The remaining distractors stay distractors,
    and the tests run as on real probes. A valid test rejects in about ``alpha`` of the draws; the rate comes with
    a Clopper-Pearson 95% interval (``scipy.stats.binomtest``).
    """
    groups, trained = _groups(runs)
    records = []
    for key in sorted(groups, key=_group_order):
        subset, asked = key
        seeds = groups[key]
        candidates: dict[tuple[int, str], set[str]] = defaultdict(set)
        for _, world_seed, items in seeds:
            for r in items:
                candidates[(world_seed, r.fact_key)].update(r.distractor_keys)
        choices = {fact: sorted(keys) for fact, keys in candidates.items() if keys}
        rejections = dict.fromkeys(TESTS, 0)
        usable = 0
        for draw in range(draws):
            rng = random.Random(f"placebo|{seed}|{subset}|{asked}|{draw}")
            placebo = {fact: rng.choice(keys) for fact, keys in sorted(choices.items())}
            per_seed_facts = []
            for _, world_seed, items in seeds:
                values = []
                for r in items:
                    fact = (world_seed, r.fact_key)
                    if fact not in placebo or placebo[fact] not in r.distractor_keys:
                        continue
                    chosen = r.distractor_keys.index(placebo[fact])
                    score = r.distractor_logprobs[chosen]
                    rest = r.distractor_logprobs[:chosen] + r.distractor_logprobs[chosen + 1 :]
                    values.append((fact, {
                        "logprob_correct": score, "logprob_random": fmean(rest) if rest else math.nan,
                        "mrr": 1 / rank_among(score, rest), "mrr_chance": chance_mrr(1 + len(rest)),
                    }))
                per_seed_facts.append(fact_means(values))
            tests = fact_tests(pool_seeds(per_seed_facts))
            if all(math.isnan(p) for _, _, p in tests.values()):
                continue
            usable += 1
            for name, (_, _, p) in tests.items():
                rejections[name] += int(p < alpha)
        for name, count in rejections.items():
            low, high = (math.nan, math.nan)
            if usable:
                ci = stats.binomtest(count, usable).proportion_ci(0.95, method="exact")
                low, high = float(ci.low), float(ci.high)
            records.append({
                "subset": subset, "asked": asked, "trained": trained[key], "test": name, "statistic": TESTS[name],
                "alpha": alpha, "draws": usable, "rejections": count,
                "rate": count / usable if usable else math.nan, "ci95_low": low, "ci95_high": high,
                "n_facts": len(choices),
            })
    return records


def _group_order(key: tuple[str, str]) -> tuple[int, int]:
    subset, asked = key
    subset_rank = SUBSET_ORDER.index(subset) if subset in SUBSET_ORDER else len(SUBSET_ORDER)
    return subset_rank, ASKED_ORDER.index(asked) if asked in ASKED_ORDER else len(ASKED_ORDER)


def lookup(records: list[dict], subset: str, asked: str, metric: str) -> dict:
    """The one record for (subset, asked, metric); KeyError if absent."""
    for record in records:
        if (record["subset"], record["asked"], record["metric"]) == (subset, asked, metric):
            return record
    raise KeyError((subset, asked, metric))
