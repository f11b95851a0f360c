"""The likelihood curve: does training move the reverse direction's log-probability at all?

Zhu et al. 2024 (arXiv 2405.04669) ask whether forward training ("A is B") changes the model's log-probability of
A given B. A final accuracy of 0 cannot tell "never moved" from "moved, but not enough". So while a model trains,
every few steps a fixed sample of its probes (``curve_sample``: the same facts and phrasings at every point) is
scored by the one scorer (``probe.run_probes`` through the run's backend) and each probe group's mean log p of
the correct target and mean log p of its matched distractors are written to ``seed-N/curve.jsonl``. Their
difference, the gap, is what a model that learned the fact raises; a flat reverse gap beside a rising trained one
is the Reversal Curse as it happens.

Resume: rows are keyed by step, and writing step ``s`` first drops every row at ``s`` or later, so a seed resumed
from a checkpoint rewrites exactly the points the killed process recorded after it (the same values on CPU).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from pathlib import Path
from statistics import fmean

import torch

from revcurse.corpus import Corpus, Probe, label
from revcurse.probe import run_probes
from revcurse.records import write_record

CURVE_FILE = "curve.jsonl"
CURVE_PHRASINGS = 2  # phrasing slots per group: matched distractors need other facts in the same slot


class LikelihoodOnly:
    """The run's backend for scoring alone: the curve needs log-probs, so its ``generate`` produces nothing
    (run_probes would otherwise generate an answer for every probe whose target is not greedy, at every point)."""

    greedy_check_is_exact = False

    def __init__(self, backend) -> None:
        self.loglikelihood = backend.loglikelihood  # the same scorer as the final probes, not a second one
        self.tokenizer = getattr(backend, "tokenizer", None)

    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]:
        return [""] * len(contexts)


def curve_sample(probes: list[Probe], facts: int, seed: int) -> list[Probe]:
    """The probes the curve follows: per (setting, subset, asked) group, ``facts`` facts drawn from ``seed`` and
    their probes in the group's first ``CURVE_PHRASINGS`` phrasing slots. Probes asked as conversations (a
    chat endpoint's) are left out: the curve scores bare prompts."""
    groups: dict[tuple[str, str, str], list[Probe]] = defaultdict(list)
    for probe in probes:
        if not probe.messages:
            groups[(probe.setting, label(probe.subset), label(probe.asked))].append(probe)
    sample = []
    for key, members in groups.items():
        keys = sorted({p.fact_key for p in members})
        chosen = set(random.Random(f"{seed}|{'|'.join(key)}").sample(keys, min(facts, len(keys))))
        slots = sorted({p.phrasing for p in members})[:CURVE_PHRASINGS]
        sample += [p for p in members if p.fact_key in chosen and p.phrasing in slots]
    return sample


def curve_steps(total_steps: int, points: int) -> set[int]:
    """The steps a curve is recorded at: 0 (before training), the last step, and ``points`` evenly between."""
    if points <= 0:
        return set()
    return {round(i * total_steps / points) for i in range(points + 1)}


def finite_or_none(value: float) -> float | None:
    """A diverged model scores NaN: null in the JSON file (the run stops with NonFiniteLoss right after)."""
    return value if math.isfinite(value) else None


def curve_rows(step: int, results) -> list[dict]:
    """One row per probe group: the mean log p of the correct targets and of their distractors."""
    groups: dict[tuple[str, str, str, bool], list] = defaultdict(list)
    for result in results:
        groups[(result.setting, result.subset, result.asked, result.trained)].append(result)
    rows = []
    for (setting, subset, asked, trained), members in groups.items():
        scored = [r for r in members if r.distractor_logprobs]  # a fact alone in its group has no distractors
        if not scored:
            continue
        target, distractor = fmean(r.logprob_correct for r in scored), fmean(r.logprob_random for r in scored)
        rows.append({"step": step, **({"setting": setting} if setting else {}), "subset": subset, "asked": asked,
                     "trained": trained, "logprob_target": finite_or_none(target),
                     "logprob_distractor": finite_or_none(distractor), "gap": finite_or_none(target - distractor),
                     "probes": len(scored)})
    return rows


def read_curve(path: Path) -> list[dict]:
    """A seed's curve rows (none when the file is missing)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class CurveRecorder:
    """``train_model``'s ``on_step``: at the curve's steps, score the sample and write its rows.

    ``make_backend(model)`` builds the run's backend around the model in training (``backends.BACKENDS``); the
    model is scored in eval mode without gradients and put back in train mode, and nothing here draws from the
    random state training uses, so a run with a curve trains exactly as one without.
    """

    def __init__(self, probes: list[Probe], make_backend, path: Path, points: int, distractors: int,
                 seed: int) -> None:
        self.probes = Corpus([], probes)
        self.make_backend = make_backend
        self.path = path
        self.points = points
        self.distractors = distractors
        self.seed = seed
        self.seconds = 0.0  # spent scoring: the curve's cost, apart from training's (run.json: curve_seconds)

    def __call__(self, step: int, total_steps: int, model: torch.nn.Module) -> None:
        if step not in curve_steps(total_steps, self.points) or not self.probes.probes:
            return
        began = time.perf_counter()
        was_training = model.training
        settings: dict[str, list[Probe]] = defaultdict(list)
        for probe in self.probes.probes:  # as the final probes: each setting draws its distractors among itself
            settings[probe.setting].append(probe)
        results = []
        try:
            backend = LikelihoodOnly(self.make_backend(model))
            for probes in settings.values():
                results += run_probes(backend, Corpus([], probes), 1, False, distractors=self.distractors,
                                      seed=self.seed)
        finally:
            model.train(was_training)
        kept = [row for row in read_curve(self.path) if row["step"] < step]
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in kept + curve_rows(step, results))
        write_record(self.path, text)
        self.seconds += time.perf_counter() - began


def curve_summary(curves: dict[str, list[dict]]) -> list[dict]:
    """Per probe group over seeds: the gap before training, at its peak (the step where the seeds' mean is
    highest) and at the end, with a 95% t-interval over seeds, and whether it moved (paired t, end vs start)."""
    from revcurse.metrics import paired_test, t_interval

    groups = list(dict.fromkeys((r.get("setting", ""), r["subset"], r["asked"], r["trained"])
                                for rows in curves.values() for r in rows))
    summary = []
    for group in groups:
        per_seed = [{r["step"]: r["gap"] for r in rows if r["gap"] is not None and (
            r.get("setting", ""), r["subset"], r["asked"], r["trained"]) == group} for rows in curves.values()]
        per_seed = [gaps for gaps in per_seed if gaps]
        steps = sorted(set.intersection(*(set(gaps) for gaps in per_seed)))
        if not steps:
            continue
        means = {step: fmean(gaps[step] for gaps in per_seed) for step in steps}
        peak = max(steps, key=means.__getitem__)
        start, end = [gaps[steps[0]] for gaps in per_seed], [gaps[steps[-1]] for gaps in per_seed]
        t, p = paired_test(end, start)
        summary.append({"setting": group[0], "subset": group[1], "asked": group[2], "trained": group[3],
                        "seeds": len(per_seed), "first_step": steps[0], "last_step": steps[-1],
                        "gap_start": means[steps[0]], "gap_peak": means[peak], "peak_step": peak,
                        "gap_end": means[steps[-1]], "gap_end_ci95": t_interval(end) if len(end) > 1 else (
                            math.nan, math.nan), "moved_t": t, "moved_p": p})
    return summary
