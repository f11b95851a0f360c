"""Metrics: per-probe results -> tidy records, one per (subset, asked direction, metric), over seeds.

The unit of evidence is the fact, not the phrasing: the ten phrasings of one fact are not independent, so every
test averages them per fact first. Intervals:

- several seeds: Student-t 95% interval over the per-seed means (each seed is a new world and a new model);
- one seed: percentile bootstrap over facts (``scipy.stats.bootstrap``, 2000 resamples, fixed seed).

The likelihood test pools facts over seeds (a fact is keyed by its world seed and name, so a fixed world is not
counted twice) and runs a paired t-test over facts of mean log p(correct target) against mean log p(the other
targets of the same subset), on the same prompts.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable
from statistics import fmean

import numpy as np
from scipy import stats

from revcurse.probe import ProbeResult

PROPORTIONS = ("accuracy", "rank1", "mrr")
LIKELIHOOD_STATISTIC = (
    "paired t-test over facts (scipy.stats.ttest_rel): per fact, mean log p(correct target) vs mean log p(other "
    "targets of the same subset), averaged over phrasings"
)
SUBSET_ORDER = ("NameToDescription", "DescriptionToName", "Both")
ASKED_ORDER = ("name_to_description", "description_to_name")


def probe_values(result: ProbeResult) -> dict[str, float]:
    """The per-probe quantities that are averaged into metrics."""
    return {
        "accuracy": float(result.correct),
        "rank1": float(result.rank == 1),
        "mrr": 1.0 / result.rank,
        "logprob_correct": result.logprob_correct,
        "logprob_random": result.logprob_random,
    }


def per_fact(results: Iterable[ProbeResult], world_seed: int) -> dict[tuple[int, str], dict[str, float]]:
    """Average each quantity over the phrasings of each fact; keys are (world seed, fact key)."""
    grouped: dict[tuple[int, str], list[dict[str, float]]] = defaultdict(list)
    for result in results:
        grouped[(world_seed, result.fact_key)].append(probe_values(result))
    return {key: {m: fmean(v[m] for v in values) for m in values[0]} for key, values in grouped.items()}


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
    groups: dict[tuple[str, str], list[tuple[int, int, list[ProbeResult]]]] = defaultdict(list)
    trained: dict[tuple[str, str], bool] = {}
    for seed, world_seed, results in runs:
        by_group: dict[tuple[str, str], list[ProbeResult]] = defaultdict(list)
        for result in results:
            by_group[(result.subset, result.asked)].append(result)
            trained[(result.subset, result.asked)] = result.trained
        for key, items in by_group.items():
            groups[key].append((seed, world_seed, items))
    records = []
    for key in sorted(groups, key=_group_order):
        subset, asked = key
        base = {"subset": subset, "asked": asked, "trained": trained[key]}
        seeds = groups[key]
        n_items = sum(len(items) for _, _, items in seeds)
        facts: dict[tuple[int, str], list[dict[str, float]]] = defaultdict(list)
        for _, world_seed, items in seeds:
            for fact_key, values in per_fact(items, world_seed).items():
                facts[fact_key].append(values)
        fact_means = {k: {m: fmean(v[m] for v in vs) for m in vs[0]} for k, vs in facts.items()}
        for metric in (*PROPORTIONS, "logprob_correct", "logprob_random"):
            per_seed = [fmean(probe_values(r)[metric] for r in items) for _, _, items in seeds]
            low, high = interval(per_seed, [v[metric] for v in fact_means.values()], metric in PROPORTIONS)
            records.append(
                {**base, "metric": metric, "mean": fmean(per_seed), "ci95_low": low, "ci95_high": high,
                 "n_seeds": len(seeds), "n_items": n_items, "n_facts": len(fact_means), "per_seed": per_seed}
            )
        records += likelihood_records(base, fact_means, len(seeds))
    return records


def likelihood_records(base: dict, fact_means: dict[tuple[int, str], dict[str, float]], n_seeds: int) -> list[dict]:
    """Paired t-test over facts: is the correct target likelier than the other targets of its subset?"""
    correct = np.array([v["logprob_correct"] for v in fact_means.values()])
    random = np.array([v["logprob_random"] for v in fact_means.values()])
    diff = correct - random
    common = {"n_seeds": n_seeds, "n_items": len(diff), "n_facts": len(diff), "statistic": LIKELIHOOD_STATISTIC}
    if len(diff) >= 2 and np.ptp(diff) > 0:
        test = stats.ttest_rel(correct, random)
        t, p = float(test.statistic), float(test.pvalue)
        low, high = t_interval(diff.tolist())
    else:
        t = p = math.nan
        low = high = float(diff.mean()) if len(diff) else math.nan
    return [
        {**base, "metric": "likelihood_diff", "mean": float(diff.mean()), "ci95_low": low, "ci95_high": high,
         **common},
        {**base, "metric": "likelihood_t", "mean": t, "ci95_low": None, "ci95_high": None, **common},
        {**base, "metric": "likelihood_p", "mean": p, "ci95_low": None, "ci95_high": None, **common},
    ]


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
