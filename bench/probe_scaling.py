"""Probing cost linear in facts: time per probe of ``run_probes`` on worlds of 1k and 10k facts, same run.

    .venv/bin/python bench/probe_scaling.py [--sizes 1000 10000] [--k 15] [--threads 1] [--max-new-tokens 4]
    .venv/bin/python bench/probe_scaling.py --quick     # sizes 100 and 1000, a smoke run (~40 s)

Each world is one relation ("the founder of <made-up organisation>" -> <made-up person>), one direction and two
phrasing slots: 2 probes a fact, every fact in one (subset, asked) group, names from random syllables (beyond the
few thousand of ``world.make_celebrities``). A tiny random model (one tokenizer and model for all sizes) probes
each world with ``run_probes`` at K distractors (``corpus.DEFAULT_DISTRACTORS``); a random model's target is never
its greedy continuation, so every probe is also generated, ``--max-new-tokens`` tokens long. Per size it prints:
probes, candidates scored a probe (1 + K), seconds and ms a probe of (a) ``draw_distractors`` alone and (b) the
whole ``run_probes``, split into its likelihood pass and its generation (the backend's calls, timed in place).

How to read it: ``ratio`` is ms/probe of the whole ``run_probes`` at the largest size over the smallest; <= 1.3
means probing cost is linear in the number of facts. The smallest world is probed first and again last and its
mean is the reference, so drift in a noisy machine's load hits both sides; the ratio of CPU time a probe (less
sensitive to other processes) and of each part are printed too: ``draw_distractors`` alone is not linear (it
lists a group's other facts for each fact: ~8x a probe from 1k to 10k facts), but it is <10% of ``run_probes`` at
10k facts, so watch its ratio at larger sizes. One torch thread by default: on a shared 2-core machine two
intra-op threads mostly wait on each other (5x slower wall time measured). The baseline,
measured in the same run on the smallest world, is the old all-candidates ranking: ``--baseline-probes`` probes
each scored against every target of its group (``backend.loglikelihood`` on those requests), giving ms a probe;
``old_vs_new`` says how many times more the old way costs a probe, likelihood alone and whole probe (likelihood
+ the same generation), at the smallest size (measured) and at each size (old likelihood extrapolated linearly in
group size). A JSON line of all figures ends the output.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from revcurse.config import ModelConfig, ProbeConfig
from revcurse.corpus import DEFAULT_DISTRACTORS, Corpus, Probe, draw_distractors
from revcurse.model import build_tiny_model, train_tokenizer
from revcurse.probe import HFBackend, run_probes

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["th" + v for v in "aeio"] + ["sh" + v for v in "aeo"]
SLOTS = {  # phrasing slot -> prompt template; the target is the person's name in both
    "is": "The founder of {org} is",
    "known": "Known far and wide as the founder of {org},",
}
SUBSET, ASKED = "bench", "description_to_name"


def made_up_words(rng: random.Random, words: int, syllables: tuple[int, int]) -> str:
    return " ".join("".join(rng.choices(SYLLABLES, k=rng.randint(*syllables))).capitalize() for _ in range(words))


def make_world(facts: int, seed: int = 0) -> Corpus:
    """``facts`` facts (unique made-up person, made-up organisation), each probed in every slot: a probes-only
    corpus, one (subset, asked) group."""
    rng = random.Random(f"probe-scaling|{seed}")
    names: set[str] = set()
    probes = []
    while len(names) < facts:
        name = made_up_words(rng, 2, (2, 3))
        if name in names:
            continue
        names.add(name)
        org = made_up_words(rng, 2, (2, 3))
        for slot, template in SLOTS.items():
            probes.append(Probe(name, SUBSET, ASKED, True, slot, template.format(org=org), " " + name))
    return Corpus(documents=[], probes=probes)


class TimedBackend:
    """The backend, with the seconds spent in its ``loglikelihood`` and ``generate`` calls added up."""

    def __init__(self, backend: HFBackend) -> None:
        self.backend = backend
        self.seconds = {"loglikelihood": 0.0, "generate": 0.0}
        self.requests = 0

    def __getattr__(self, name: str):  # tokenizer, greedy_check_is_exact, ...
        return getattr(self.backend, name)

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        start = time.perf_counter()
        result = self.backend.loglikelihood(requests)
        self.seconds["loglikelihood"] += time.perf_counter() - start
        self.requests += len(requests)
        return result

    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]:
        start = time.perf_counter()
        result = self.backend.generate(contexts, max_new_tokens)
        self.seconds["generate"] += time.perf_counter() - start
        return result


def ms(seconds: float, probes: int) -> float:
    return round(1000 * seconds / probes, 4)


def measure_size(backend: HFBackend, corpus: Corpus, k: int, max_new_tokens: int) -> dict:
    probes = len(corpus.probes)
    start = time.perf_counter()
    drawn = draw_distractors(corpus.probes, k, seed=0)
    draw_seconds = time.perf_counter() - start
    timed = TimedBackend(backend)
    start, cpu_start = time.perf_counter(), time.process_time()
    results = run_probes(timed, corpus, max_new_tokens=max_new_tokens, show_progress=False, distractors=k)
    total_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    likelihood, generate = timed.seconds["loglikelihood"], timed.seconds["generate"]
    return {
        "facts": len({p.fact_key for p in corpus.probes}),
        "probes": probes,
        "candidates_per_probe": round(timed.requests / probes, 3),
        "distractors_per_probe": round(sum(len(d.targets) for d in drawn) / probes, 3),
        "generated": sum(not r.is_greedy for r in results),
        "draw_seconds": round(draw_seconds, 3),
        "run_probes_seconds": round(total_seconds, 3),
        "run_probes_cpu_seconds": round(cpu_seconds, 3),
        "likelihood_seconds": round(likelihood, 3),
        "generate_seconds": round(generate, 3),
        "draw_ms_per_probe": ms(draw_seconds, probes),
        "ms_per_probe": ms(total_seconds, probes),
        "cpu_ms_per_probe": ms(cpu_seconds, probes),
        "likelihood_ms_per_probe": ms(likelihood, probes),
        "generate_ms_per_probe": ms(generate, probes),
        "other_ms_per_probe": ms(total_seconds - likelihood - generate, probes),  # drawing, bookkeeping
    }


def measure_all_candidates(backend: HFBackend, corpus: Corpus, sample_probes: int) -> dict:
    """The old ranking: each sampled probe against every distinct target of its group (one group here)."""
    targets = list(dict.fromkeys(p.target for p in corpus.probes))
    step = max(1, len(corpus.probes) // sample_probes)
    sample = corpus.probes[::step][:sample_probes]
    requests = [(p.prompt, t) for p in sample for t in targets]
    start = time.perf_counter()
    backend.loglikelihood(requests)
    seconds = time.perf_counter() - start
    return {
        "facts": len({p.fact_key for p in corpus.probes}),
        "probes_sampled": len(sample),
        "candidates_per_probe": len(targets),
        "requests": len(requests),
        "likelihood_seconds": round(seconds, 3),
        "likelihood_ms_per_probe": ms(seconds, len(sample)),
    }


PARTS = ("ms_per_probe", "cpu_ms_per_probe", "likelihood_ms_per_probe", "generate_ms_per_probe", "draw_ms_per_probe")


def print_row(name: str, row: dict) -> None:
    print(f"{name:>12}: {row['probes']} probes, {row['candidates_per_probe']:g} candidates/probe | "
          f"draw {row['draw_seconds']:.2f} s = {row['draw_ms_per_probe']:.4f} ms/probe | "
          f"run_probes {row['run_probes_seconds']:.2f} s = {row['ms_per_probe']:.3f} ms/probe "
          f"(cpu {row['cpu_ms_per_probe']:.3f}; likelihood {row['likelihood_ms_per_probe']:.3f}, "
          f"generate {row['generate_ms_per_probe']:.3f}, other {row['other_ms_per_probe']:.3f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="facts per world")
    parser.add_argument("--k", type=int, default=DEFAULT_DISTRACTORS, help="distractors a probe")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a shared 2-core box spins 2)")
    parser.add_argument("--max-new-tokens", type=int, default=4, help="greedy generation length of each probe")
    parser.add_argument("--batch-size", type=int, default=ProbeConfig().batch_size)
    parser.add_argument("--baseline-probes", type=int, default=50, help="probes scored against all candidates")
    parser.add_argument("--hidden", type=int, default=32, help="tiny random model: width (MLP: twice it)")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="sizes 100 and 1000, 20 baseline probes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.baseline_probes = [100, 1000], 20
    sizes = sorted(set(args.sizes))
    smallest, largest = sizes[0], sizes[-1]
    torch.set_num_threads(args.threads)

    worlds = {size: make_world(size) for size in sizes}
    tokenizer = train_tokenizer(make_world(2000, seed=1).texts_seen(), vocab_size=1000)  # same syllables
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=args.hidden, layers=args.layers, heads=2, intermediate_size=2 * args.hidden)
    backend = HFBackend(build_tiny_model(config, tokenizer, 64).eval(), tokenizer, args.batch_size)
    run_probes(backend, make_world(50, seed=2), max_new_tokens=args.max_new_tokens, show_progress=False)  # warm-up
    print(f"threads {args.threads}, K {args.k}, max_new_tokens {args.max_new_tokens}, batch {args.batch_size}, "
          f"random model hidden {args.hidden} x {args.layers} layer(s), vocab {len(tokenizer)}")  # fmt: skip

    # the smallest world is measured first and again last: its mean is the reference, so drift hits both sides
    runs = {}
    order = [(f"{smallest} (1st)", smallest), *((str(s), s) for s in sizes[1:]), (f"{smallest} (2nd)", smallest)]
    for name, size in order:
        runs[name] = measure_size(backend, worlds[size], args.k, args.max_new_tokens)
        print_row(name, runs[name])
    first, second = runs.pop(f"{smallest} (1st)"), runs.pop(f"{smallest} (2nd)")
    timings = [key for key in first if "seconds" in key or "ms_per_probe" in key]
    per_size = {str(smallest): {**first, **{key: round((first[key] + second[key]) / 2, 4) for key in timings}}, **runs}
    reference = per_size[str(smallest)]
    ratios = {
        str(size): {key: round(per_size[str(size)][key] / max(reference[key], 1e-9), 3) for key in PARTS}
        for size in sizes[1:]
    }
    for size, row in ratios.items():
        print(f"ratio ms/probe {size} / {smallest} facts (mean of its 2 runs): {row['ms_per_probe']:.3f} "
              f"(target <= 1.3) | cpu {row['cpu_ms_per_probe']:.3f}, "
              f"likelihood {row['likelihood_ms_per_probe']:.3f}, generate {row['generate_ms_per_probe']:.3f}, "
              f"draw_distractors {row['draw_ms_per_probe']:.3f}")  # fmt: skip

    baseline = measure_all_candidates(backend, worlds[smallest], args.baseline_probes)
    print(f"baseline, all candidates at {smallest} facts: {baseline['probes_sampled']} probes x "
          f"{baseline['candidates_per_probe']} candidates, {baseline['likelihood_seconds']:.2f} s = "
          f"{baseline['likelihood_ms_per_probe']:.3f} ms/probe (likelihood only)")  # fmt: skip
    old_vs_new = {}
    for size in sizes:
        row = per_size[str(size)]
        old_likelihood = baseline["likelihood_ms_per_probe"] * size / smallest  # linear in the group's targets
        old_vs_new[str(size)] = compared = {
            "old_likelihood_ms_per_probe": round(old_likelihood, 3),
            "old_whole_ms_per_probe": round(old_likelihood + row["generate_ms_per_probe"], 3),
            "extrapolated": size != smallest,
            "times_likelihood": round(old_likelihood / row["likelihood_ms_per_probe"], 1),
            "times_whole_probe": round((old_likelihood + row["generate_ms_per_probe"]) / row["ms_per_probe"], 1),
        }
        extrapolated = " (extrapolated)" if size != smallest else ""
        print(f"old all-candidates vs K={args.k} at {size} facts{extrapolated}: "
              f"{old_likelihood:.1f} ms/probe likelihood ({compared['times_likelihood']}x), "
              f"{compared['old_whole_ms_per_probe']:.1f} ms/probe whole "
              f"({compared['times_whole_probe']}x)")  # fmt: skip
    print(json.dumps({
        "bench": "probe_scaling", "threads": args.threads, "k": args.k, "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size, "hidden": args.hidden, "layers": args.layers, "sizes": sizes,
        "ratio": ratios[str(largest)]["ms_per_probe"] if largest != smallest else None, "target": 1.3,
        "ratios": ratios, "per_size": per_size, "smallest_runs": [first, second],
        "baseline_all_candidates": baseline, "old_vs_new": old_vs_new,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
