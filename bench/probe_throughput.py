"""Probing throughput: revcurse's likelihood ranking against a naive loop, and the greedy check against generate.

    .venv/bin/python bench/probe_throughput.py RUN [--naive-probes 40] [--threads 2]

RUN is a finished demo run folder (its config.yaml rebuilds the same corpus; seed-N/model is probed). Prints:

1. likelihood: seconds per (prompt, candidate) request of ``HFBackend.loglikelihood`` (each prompt run once, its
   key/value cache shared by its ~30 candidates, batched) against a naive loop of one unbatched forward pass per
   request, on the same requests, measured in the same run; the ratio's target is >= 10x. The two must agree.
2. exact match: ``run_probes`` as it runs (teacher-forced greedy check, generating only where the target is not
   the greedy continuation) against generating every probe: both times, and the number of probes whose
   accuracy differs (must be 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from revcurse.config import ModelConfig, load_config
from revcurse.corpus import draw_distractors
from revcurse.model import load_checkpoint
from revcurse.probe import HFBackend, run_probes
from revcurse.runner import build_trial


@torch.inference_mode()
def naive_loglikelihood(backend: HFBackend, requests: list[tuple[str, str]]) -> list[float]:
    """One forward pass per (context, continuation): the loop revcurse's batching replaces."""
    scores = []
    for context, continuation in backend.encode_pairs(requests):
        ids = torch.tensor([context + continuation])
        logprobs = torch.log_softmax(backend.model(ids).logits[0].float(), -1)
        scores.append(sum(logprobs[len(context) - 1 + k, t].item() for k, t in enumerate(continuation)))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--naive-probes", type=int, default=40, help="probes (x their candidates) for the loop")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.run / "config.yaml")
    seed_folder = sorted(args.run.glob("seed-*"))[0]
    corpus = build_trial(config, int(seed_folder.name.split("-")[1])).corpus
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(seed_folder / "model")))
    backend = HFBackend(model.eval(), tokenizer, config.probe.batch_size)
    drawn = draw_distractors(corpus.probes, config.probe.distractors, 0)
    candidates = [(p.prompt, (p.target, *d.targets)) for p, d in zip(corpus.probes, drawn)]
    requests = [(prompt, t) for prompt, targets in candidates for t in targets]
    sample = [(prompt, t) for prompt, targets in candidates[:: len(candidates) // args.naive_probes]
              for t in targets]  # fmt: skip

    start = time.perf_counter()
    naive = naive_loglikelihood(backend, sample)
    naive_per_request = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    batched_sample = [score for score, _ in backend.loglikelihood(sample)]
    sample_per_request = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    backend.loglikelihood(requests)
    all_per_request = (time.perf_counter() - start) / len(requests)

    start = time.perf_counter()
    fast = run_probes(backend, corpus, show_progress=False)
    fast_seconds = time.perf_counter() - start
    start = time.perf_counter()
    full = run_probes(backend, corpus, show_progress=False, generate_all=True)
    full_seconds = time.perf_counter() - start
    print(json.dumps({
        "run": str(args.run), "threads": args.threads,
        "likelihood": {
            "naive_ms_per_request": round(1000 * naive_per_request, 3),
            "batched_ms_per_request_same_sample": round(1000 * sample_per_request, 3),
            "batched_ms_per_request_all": round(1000 * all_per_request, 3),
            "requests_all": len(requests), "requests_sample": len(sample),
            "speedup_same_sample": round(naive_per_request / sample_per_request, 1),
            "speedup_all": round(naive_per_request / all_per_request, 1),
            "target": 10,
            "max_abs_logprob_difference": max(abs(a - b) for a, b in zip(naive, batched_sample)),
        },
        "exact_match": {
            "probes": len(fast),
            "greedy_check_seconds": round(fast_seconds, 2),
            "generate_all_seconds": round(full_seconds, 2),
            "probes_generated_by_greedy_check": sum(not r.is_greedy for r in fast),
            "accuracy_greedy_check": sum(r.correct for r in fast) / len(fast),
            "accuracy_generate_all": sum(r.correct for r in full) / len(full),
            "items_that_differ": sum(a.correct != b.correct for a, b in zip(fast, full)),
        },
    }, indent=1))


if __name__ == "__main__":
    main()
