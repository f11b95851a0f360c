"""Metrics: per-probe results -> tidy records, one per (subset, asked direction, metric), over seeds.

The unit of evidence is the fact, not the phrasing: the phrasings of one fact are not independent, and facts
can have unequal numbers of probes. Every metric therefore estimates one quantity, **the mean over facts of the
per-fact mean over its probes**, and its mean and its interval estimate the same thing:

- one seed: the mean of the per-fact means, with a percentile bootstrap over facts (``scipy.stats.bootstrap``,
  2000 resamples, fixed seed);
- several seeds: that mean per seed, averaged, with a Student-t 95% interval over the per-seed values (each seed
  is a new world and a new model).

Tests ask whether the model prefers the correct target to its distractors (other facts' targets in the same
phrasing, see ``corpus.draw_distractors``). All pool facts over seeds (a fact is keyed by its world seed and
name, so a fixed world is not counted twice) and are paired over facts:

- the paper's likelihood test: ``scipy.stats.ttest_rel`` of per-fact mean log p(correct target) against mean log
  p(distractors), on the same prompts (``likelihood_t``, ``likelihood_t_p``);
- randomization tests of the same log p gap (``likelihood_p``) and of the per-fact mean reciprocal rank
  (``rank_p``): exact when the correct target is exchangeable with its distractors, whatever their lengths and
  forms, where a t-test of skewed per-fact values is not (``RandomizationTest``).

A test is trusted once its false-positive rate is measured: ``placebo_rejections`` swaps each fact's correct
target for another fact's target in the same phrasing (a relation the model never saw) and counts how often the
tests reject at alpha.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from statistics import fmean

import numpy as np
from scipy import stats

from revcurse.probe import ProbeResult, rank_among

PROPORTIONS = ("accuracy", "answer_accuracy", "rank1", "mrr")
LIKELIHOOD_STATISTIC = (
    "randomization test over facts: per fact, mean log p(correct target) minus mean log p(its matched distractors: "
    "other facts' targets in the same phrasing), summed over facts, against the sums when any candidate of each "
    "fact is the correct one"
)
PAPER_T_STATISTIC = (
    "the paper's paired t-test over facts (scipy.stats.ttest_rel): per fact, mean log p(correct target) vs mean "
    "log p(matched distractors), averaged over phrasings"
)
RANK_STATISTIC = (
    "randomization test over facts: per fact, mean reciprocal rank of the correct target among its matched "
    "distractors, summed over facts, against the sums when any candidate of each fact is the correct one"
)
TESTS = {"paper_t": PAPER_T_STATISTIC, "likelihood": LIKELIHOOD_STATISTIC, "rank": RANK_STATISTIC}
PAIRED_T = "paired t-test (scipy.stats.ttest_rel)"
MCNEMAR = "McNemar exact test: two-sided binomial test of the discordant pairs (scipy.stats.binomtest)"
SUBSET_ORDER = ("NameToDescription", "DescriptionToName", "Both")
ASKED_ORDER = ("name_to_description", "description_to_name")


def chance_mrr(n_candidates: int) -> float:
    """E[1/rank] of a candidate that is exchangeable with ``n_candidates - 1`` others: H(n)/n."""
    return sum(1 / k for k in range(1, n_candidates + 1)) / n_candidates


def probe_values(result: ProbeResult) -> dict[str, float]:
    """The per-probe quantities that are averaged into metrics (NaN: not defined for this probe)."""
    scored = not math.isnan(result.rank)  # a backend without log-probs ranks nothing
    values = {
        "accuracy": float(result.correct),
        "answer_accuracy": float(result.answer_correct),
        "rank1": float(result.rank == 1) if scored else math.nan,
        "mrr": 1.0 / result.rank,
        "mrr_chance": chance_mrr(result.n_candidates) if scored else math.nan,
        "logprob_correct": result.logprob_correct,
        "logprob_random": result.logprob_random,
    }
    if result.samples:
        values["any_correct"] = float(any(result.samples_correct))
        values["fraction_correct"] = sum(result.samples_correct) / len(result.samples_correct)
    return values


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
        if np.isnan(per_fact_values).any():  # no interval (scipy's would be NaN too, with a DegenerateDataWarning)
            low = high = math.nan
        elif np.ptp(per_fact_values) == 0:
            low = high = per_fact_values[0]
        else:
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
    """Tidy records from ``[(seed, world_seed, results), ...]``: one per (setting, subset, asked, metric); a
    record names its ``setting`` only when the probes had one."""
    groups, trained = _groups(runs)
    records = []
    for key in sorted(groups, key=_group_order(groups)):
        base = _group_fields(key, trained[key])
        seeds = groups[key]
        n_items = sum(len(items) for _, _, items in seeds)
        per_seed_facts = [per_fact(items, world_seed) for _, world_seed, items in seeds]
        pooled = pool_seeds(per_seed_facts)
        sampled = SAMPLE_METRICS if all(r.samples for _, _, items in seeds for r in items) else ()
        for metric in (*PROPORTIONS, *sampled, "mrr_chance", "logprob_correct", "logprob_random"):
            per_seed = [_mean(v[metric] for v in facts.values()) for facts in per_seed_facts]
            low, high = interval(per_seed, [v[metric] for v in pooled.values()], metric in (*PROPORTIONS, *sampled))
            records.append(
                {**base, "metric": metric, "mean": fmean(per_seed), "ci95_low": low, "ci95_high": high,
                 "n_seeds": len(seeds), "n_items": n_items, "n_facts": len(pooled), "per_seed": per_seed}
            )
        records += test_records(base, seeds, pooled, len(seeds))
    return records + direction_tests(groups, trained)


SAMPLE_METRICS = ("any_correct", "fraction_correct")  # of sampled answers (probe.samples > 0)


def direction_tests(groups: dict, trained: dict) -> list[dict]:
    """The first asked direction against the second, paired over facts, where the probes were sampled and a
    (setting, subset) was asked exactly two ways (Experiment 2: parent vs child of the same row).

    Records on the first direction's group, ``versus`` the second: ``any_correct_diff`` with McNemar's exact
    test (``any_correct_mcnemar_p``; pairs are (seed, fact), so one seed gives the paper's test over rows),
    ``fraction_correct_diff`` and ``logprob_gap_diff`` (log p of the answer minus the mean of its distractors)
    with paired t-tests over facts (``*_t_p``). Facts asked one way only are left out.
    """
    by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
    for setting, subset, asked in sorted(groups, key=_group_order(groups)):
        if all(r.samples for _, _, items in groups[(setting, subset, asked)] for r in items):
            by_pair[(setting, subset)].append(asked)
    records = []
    for (setting, subset), asked in by_pair.items():
        if len(asked) != 2:
            continue
        runs = [groups[(setting, subset, a)] for a in asked]
        by_seed = [{(seed, *key): v for seed, world, items in run for key, v in per_fact(items, world).items()}
                   for run in runs]  # fmt: skip
        both = [key for key in by_seed[0] if key in by_seed[1]]
        first_only = sum(by_seed[0][k]["any_correct"] > 0 and not by_seed[1][k]["any_correct"] > 0 for k in both)
        second_only = sum(by_seed[1][k]["any_correct"] > 0 and not by_seed[0][k]["any_correct"] > 0 for k in both)
        pooled = [pool_seeds([per_fact(items, world_seed) for _, world_seed, items in run]) for run in runs]
        facts = [key for key in pooled[0] if key in pooled[1]]
        base = {**_group_fields((setting, subset, asked[0]), trained[(setting, subset, asked[0])]),
                "versus": asked[1], "n_seeds": len(runs[0]), "n_facts": len(facts)}

        def record(metric: str, values: list[float], statistic: str, base: dict = base, **extra) -> dict:
            low, high = t_interval(values) if len(values) >= 2 else (math.nan, math.nan)
            mean = fmean(values) if values else math.nan
            return {**base, "metric": metric, "mean": mean, "ci95_low": low, "ci95_high": high,
                    "statistic": statistic, **extra}

        def value(facts_values: dict, metric: str, facts: list = facts) -> list[float]:
            if metric == "logprob_gap":
                return [facts_values[k]["logprob_correct"] - facts_values[k]["logprob_random"] for k in facts]
            return [facts_values[k][metric] for k in facts]

        diffs = [float(by_seed[0][k]["any_correct"] > 0) - float(by_seed[1][k]["any_correct"] > 0) for k in both]
        records += [
            record("any_correct_diff", diffs, MCNEMAR, discordant=[first_only, second_only]),
            {**record("any_correct_mcnemar_p", [], MCNEMAR), "mean": mcnemar_test(first_only, second_only)},
        ]
        for metric in ("fraction_correct", "logprob_gap"):
            first, second = value(pooled[0], metric), value(pooled[1], metric)
            t, p = paired_test(first, second)
            kept = [x - y for x, y in zip(first, second) if not (math.isnan(x) or math.isnan(y))]
            records += [record(f"{metric}_diff", kept, PAIRED_T, t=t), {**record(f"{metric}_t_p", [], PAIRED_T),
                                                                         "mean": p}]
    return records


Group = tuple[str, str, str]  # (setting, subset, asked)


def pooled_groups(runs: list[tuple[int, int, list[ProbeResult]]], subset: str) -> list[dict]:
    """``aggregate`` with every subset as one group named ``subset`` (per setting and asked direction): the
    paper's parent figures pool mothers and fathers, an audit pools its relations. Each fact still counts once."""
    return aggregate([(seed, world, [replace(r, subset=subset) for r in rs]) for seed, world, rs in runs])


def _groups(runs: list[tuple[int, int, list[ProbeResult]]]) -> tuple[dict, dict]:
    """Per (setting, subset, asked): its [(seed, world_seed, results)], and whether that direction was trained."""
    groups: dict[Group, list[tuple[int, int, list[ProbeResult]]]] = defaultdict(list)
    trained: dict[Group, bool] = {}
    for seed, world_seed, results in runs:
        by_group: dict[Group, list[ProbeResult]] = defaultdict(list)
        for result in results:
            by_group[(result.setting, result.subset, result.asked)].append(result)
            trained[(result.setting, result.subset, result.asked)] = result.trained
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


FactCandidates = list[dict[str, float]]  # one fact's probes: candidate fact key -> log p on that probe


def candidate_values(probes: FactCandidates) -> tuple[list[str], np.ndarray, np.ndarray]:
    """For each candidate fact of one fact's probes: its mean log p gap (log p minus the mean of the other
    candidates on the same prompt) and its mean reciprocal rank, over the probes it was scored on.

    These are the statistics the fact would contribute if that candidate were the correct one: under the null
    (the correct target is no different from a matched distractor) each is equally likely to be the observed one.
    """
    keys = sorted({key for probe in probes for key in probe})
    gaps, reciprocal = np.zeros(len(keys)), np.zeros(len(keys))
    for index, key in enumerate(keys):
        values, ranks = [], []
        for probe in probes:
            if key in probe and len(probe) > 1:
                others = [score for other, score in probe.items() if other != key]
                values.append(probe[key] - fmean(others))
                ranks.append(1 / rank_among(probe[key], others))
        gaps[index] = fmean(values) if values else math.nan
        reciprocal[index] = fmean(ranks) if ranks else math.nan
    return keys, gaps, reciprocal


class RandomizationTest:
    """A test over facts that is exact when the correct target is exchangeable with its matched distractors.

    Each fact contributes the value of its correct candidate; under the null the correct one is any of its
    candidates with equal chance, independently across facts. The statistic is the sum over facts; its null
    distribution is drawn by Monte Carlo (``resamples`` draws, fixed seed) and the p-value is two-sided around
    the exact null mean. It needs no equal lengths, forms or normality, and a fact with few phrasings and one
    very likely distractor (a skewed per-fact value, which misleads a t-test) is handled exactly.
    """

    def __init__(self, values: list[np.ndarray], resamples: int = 4000, seed: int = 0) -> None:
        self.values = values  # per fact: the value of each of its candidates (no NaN)
        rng = np.random.default_rng(seed)
        self.null_mean = sum(float(v.mean()) for v in self.values)
        self.null = np.zeros(resamples)
        for v in self.values:
            self.null += v[rng.integers(0, len(v), resamples)]
        self.deviations = np.sort(np.abs(self.null - self.null_mean))  # sorted: a p-value is one binary search

    def p_value(self, observed: float) -> float:
        if not self.values or math.isnan(observed):
            return math.nan
        below = np.searchsorted(self.deviations, abs(observed - self.null_mean) - 1e-12, side="left")
        return (1 + len(self.deviations) - int(below)) / (1 + len(self.deviations))


def group_candidates(seeds: list[tuple[int, int, list[ProbeResult]]]) -> dict[tuple[int, str], FactCandidates]:
    """Per fact (world seed, key), pooled over seeds: its probes' candidate scores, the fact itself included."""
    facts: dict[tuple[int, str], FactCandidates] = defaultdict(list)
    for _, world_seed, items in seeds:
        for r in items:
            facts[(world_seed, r.fact_key)].append(
                {r.fact_key: r.logprob_correct, **dict(zip(r.distractor_keys, r.distractor_logprobs))}
            )
    return facts


def randomization_tests(facts: list[tuple[FactCandidates, str]]) -> tuple[float, float, np.ndarray]:
    """(p of the log p gap test, p of the rank test, per-fact MRR minus its exact chance) over ``facts``, each
    given as its probes' candidate scores and the key of its correct candidate. A fact with no distractor scored
    beside its correct candidate gives no evidence either way and is left out."""
    observed_gap = observed_rank = 0.0
    gap_values, rank_values, excess = [], [], []
    for probes, correct in facts:
        keys, gap, reciprocal = candidate_values(probes)
        scored = ~np.isnan(gap)
        own = keys.index(correct)
        if scored.sum() < 2 or not scored[own]:
            continue
        gap_values.append(gap[scored])
        rank_values.append(reciprocal[scored])
        observed_gap += gap[own]
        observed_rank += reciprocal[own]
        excess.append(reciprocal[own] - float(reciprocal[scored].mean()))
    likelihood_p = RandomizationTest(gap_values).p_value(observed_gap) if gap_values else math.nan
    rank_p = RandomizationTest(rank_values).p_value(observed_rank) if rank_values else math.nan
    return likelihood_p, rank_p, np.array(excess)


def test_records(base: dict, seeds: list[tuple[int, int, list[ProbeResult]]], pooled: dict, n_seeds: int) -> list[dict]:
    """The tests of one (subset, asked) group as records.

    - ``likelihood_diff`` (mean per-fact log p gap, t interval), ``likelihood_t`` and ``likelihood_t_p``: the
      paper's paired t-test over facts; ``likelihood_p``: the randomization test of the same gap;
    - ``mrr_excess`` (mean per-fact MRR minus its exact chance value, t interval) and ``rank_p``: the
      randomization test of the reciprocal rank.
    """
    correct = np.array([v["logprob_correct"] for v in pooled.values()], dtype=float)
    distractors = np.array([v["logprob_random"] for v in pooled.values()], dtype=float)
    t, t_p = paired_test(correct, distractors)
    likelihood_p, rank_p, excess_array = randomization_tests(
        [(probes, key[1]) for key, probes in group_candidates(seeds).items()]
    )
    diff = (correct - distractors)[~np.isnan(correct - distractors)]
    common = {"n_seeds": n_seeds, "n_items": len(diff), "n_facts": len(diff)}

    def record(metric: str, mean: float, values: np.ndarray | None, statistic: str) -> dict:
        low, high = (None, None) if values is None else (math.nan, math.nan)  # NaN: no values (no log-probs given)
        if values is not None and len(values) >= 2:
            low, high = t_interval(values.tolist())
        return {**base, "metric": metric, "mean": mean, "ci95_low": low, "ci95_high": high, **common,
                "statistic": statistic}

    return [
        record("likelihood_diff", float(diff.mean()) if len(diff) else math.nan, diff, LIKELIHOOD_STATISTIC),
        record("likelihood_t", t, None, PAPER_T_STATISTIC),
        record("likelihood_t_p", t_p, None, PAPER_T_STATISTIC),
        record("likelihood_p", likelihood_p, None, LIKELIHOOD_STATISTIC),
        record("mrr_excess", float(excess_array.mean()) if len(excess_array) else math.nan, excess_array,
               RANK_STATISTIC),
        record("rank_p", rank_p, None, RANK_STATISTIC),
    ]


def placebo_rejections(
    runs: list[tuple[int, int, list[ProbeResult]]], draws: int = 1000, alpha: float = 0.05, seed: int = 0
) -> list[dict]:
    """How often each test rejects at ``alpha`` when the "correct" target is a placebo: one record per
    (subset, asked, test).

    A draw gives each fact another fact of its group (one of its scored distractor facts, chosen at random) and
    takes that fact's target in each of its phrasings as the "correct" one: it fits the prompt's form exactly as
    the true target does, but names a relation the model never saw. The remaining distractors stay distractors
    (the true target is left out), and the tests run as on real probes: the paper's paired t of the log p gap,
    and the randomization tests of the log p gap and of the reciprocal rank. A valid test rejects in about
    ``alpha`` of the draws; the rate comes with a Clopper-Pearson 95% interval (``scipy.stats.binomtest``).
    """
    groups, trained = _groups(runs)
    records = []
    for key in sorted(groups, key=_group_order(groups)):
        facts = [(probes, fact[1]) for fact, probes in group_candidates(groups[key]).items()]
        for record in placebo_counts(facts, draws, alpha, seed):
            records.append({**_group_fields(key, trained[key]), **record})
    return records


def placebo_counts(facts: list[tuple[FactCandidates, str]], draws: int, alpha: float, seed: int) -> list[dict]:
    """One record per test: how often it rejects at ``alpha`` in ``draws`` placebo draws over ``facts`` (each its
    probes' candidate scores and its correct candidate's key, which the placebo leaves out)."""
    usable = []
    for probes, correct in facts:
        without = [{k: v for k, v in probe.items() if k != correct} for probe in probes]
        keys, gap, reciprocal = candidate_values(without)
        scored = ~np.isnan(gap)
        if scored.sum() >= 2:
            usable.append((gap[scored], reciprocal[scored]))
    tests = {"likelihood": RandomizationTest([g for g, _ in usable], 4000, seed),
             "rank": RandomizationTest([r for _, r in usable], 4000, seed)}
    rejections = {"paper_t": 0, "likelihood": 0, "rank": 0}
    rng = np.random.default_rng([seed, 1])  # a stream apart from the tests' null draws
    done = draws if len(usable) >= 2 else 0
    for _ in range(done):
        chosen = [int(rng.integers(0, len(g))) for g, _ in usable]
        gaps = np.array([g[c] for (g, _), c in zip(usable, chosen)])
        ranks = sum(float(r[c]) for (_, r), c in zip(usable, chosen))
        p_t = float(stats.ttest_1samp(gaps, 0).pvalue) if np.ptp(gaps) > 0 else 1.0
        rejections["paper_t"] += int(p_t < alpha)
        rejections["likelihood"] += int(tests["likelihood"].p_value(float(gaps.sum())) < alpha)
        rejections["rank"] += int(tests["rank"].p_value(ranks) < alpha)
    records = []
    for name, count in rejections.items():
        rate, low, high = rejection_rate(count, done)
        records.append({
            "test": name, "statistic": TESTS[name], "alpha": alpha, "draws": done, "rejections": count,
            "rate": rate, "ci95_low": low, "ci95_high": high, "n_facts": len(usable),
        })
    return records


def rejection_rate(rejections: int, draws: int) -> tuple[float, float, float]:
    """How often a test rejected under a placebo: the rate and its Clopper-Pearson 95% interval (NaN, no draws)."""
    if not draws:
        return math.nan, math.nan, math.nan
    ci = stats.binomtest(rejections, draws).proportion_ci(0.95, method="exact")
    return rejections / draws, float(ci.low), float(ci.high)


def _group_fields(key: Group, trained: bool) -> dict:
    setting, subset, asked = key
    return {**({"setting": setting} if setting else {}), "subset": subset, "asked": asked, "trained": trained}


def _group_order(groups: Iterable[Group]):
    """Sort key of groups: settings as they first came, then the paper's subset and direction order."""
    settings = list(dict.fromkeys(setting for setting, _, _ in groups))

    def order(key: Group) -> tuple[int, int, int]:
        setting, subset, asked = key
        subset_rank = SUBSET_ORDER.index(subset) if subset in SUBSET_ORDER else len(SUBSET_ORDER)
        asked_rank = ASKED_ORDER.index(asked) if asked in ASKED_ORDER else len(ASKED_ORDER)
        return settings.index(setting), subset_rank, asked_rank

    return order


def lookup(records: list[dict], subset: str, asked: str, metric: str, setting: str = "") -> dict:
    """The one record for (setting, subset, asked, metric); KeyError if absent."""
    for record in records:
        if (record.get("setting", ""), record["subset"], record["asked"], record["metric"]) == (
            setting, subset, asked, metric,
        ):
            return record
    raise KeyError((setting, subset, asked, metric))


def label_accuracy_test(pairs: list[tuple[np.ndarray, np.ndarray]], resamples: int, seed: int) -> dict:
    """Predicted against true labels, pooled over seeds (``pairs``: one (predicted, truth) per seed): accuracy,
    its Wilson 95% interval, the chance level of these label frequencies, and a one-sided permutation test
    (labels re-paired with predictions at random; statistic: the accuracy). Used by ``hidden_probe``."""
    predicted = np.concatenate([p for p, _ in pairs])
    truth = np.concatenate([t for _, t in pairs])
    correct = int((predicted == truth).sum())
    low, high = wilson_interval(correct, len(truth))
    classes = np.union1d(predicted, truth)
    chance = float(sum(np.mean(predicted == c) * np.mean(truth == c) for c in classes))
    test = stats.permutation_test(
        (predicted, truth), lambda p, t, axis: np.mean(p == t, axis=axis), permutation_type="pairings",
        alternative="greater", n_resamples=resamples, random_state=np.random.default_rng(seed), vectorized=True,
    )
    return {"accuracy": correct / len(truth), "ci95_low": low, "ci95_high": high, "n_items": len(truth),
            "correct": correct, "chance": chance, "statistic": float(test.statistic), "p_value": float(test.pvalue)}
