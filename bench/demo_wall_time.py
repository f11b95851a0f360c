"""Demo wall time on this machine, against a bare PyTorch loop over the same batches measured in the same run.

    .venv/bin/python bench/demo_wall_time.py [--set key=value ...]

Prints the demo's total wall time and its train-and-probe part (the issue's budget: 180 s on 2 cores), then the
same number of training steps on the same model and batches in a bare loop (AdamW, no scheduler, no logging,
no progress bar): the ratio shows what revcurse's training path costs over the hardware's own speed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from train_throughput import bare_loop  # bench/ is on sys.path when run as a script

from revcurse.config import load_config
from revcurse.model import build_tiny_model, train_tokenizer
from revcurse.runner import build_trial, run_experiment, seed_everything
from revcurse.train import encode_documents, epoch_batches

BUDGET_SECONDS = 180.0


def bare_loop_seconds(config, steps: int) -> tuple[float, int]:
    """Time ``steps`` plain forward/backward/AdamW steps on the demo's model and batches."""
    corpus = build_trial(config, config.seed).corpus
    seed_everything(config.seed)
    tokenizer = train_tokenizer(corpus.texts_seen(), config.model.vocab_size)
    model = build_tiny_model(config.model, tokenizer, 128)
    encoded = encode_documents(corpus.documents, tokenizer)
    generator = torch.Generator().manual_seed(config.seed)
    lengths = [len(ids) for ids, _ in encoded]
    batches: list[list[int]] = []
    while len(batches) < steps:  # as many epochs as the steps need
        batches += epoch_batches(lengths, config.train.batch_size, generator)
    return bare_loop(model, tokenizer, encoded, batches[:steps], config.train.learning_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="config override, as in revcurse --set")
    args = parser.parse_args()
    config = load_config(None, args.set)
    torch.set_num_threads(config.train.threads)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        outcome = run_experiment(config, Path(folder) / "run", show_progress=False, log=lambda *_: None)
        wall = time.perf_counter() - start
        stats = outcome.summary["per_seed"][0]
    bare_seconds, bare_tokens = bare_loop_seconds(config, stats["train_steps"])
    part = stats["train_seconds"] + stats["probe_seconds"]
    result = {
        "demo_wall_s": round(wall, 1),
        "train_s": round(stats["train_seconds"], 1),
        "probe_s": round(stats["probe_seconds"], 1),
        "train_and_probe_s": round(part, 1),
        "budget_s": BUDGET_SECONDS,
        "train_and_probe_over_budget": round(part / BUDGET_SECONDS, 3),
        "train_tokens_per_s": round(stats["tokens_per_second"]),
        "bare_loop_s": round(bare_seconds, 1),
        "bare_loop_tokens_per_s": round(bare_tokens / bare_seconds),
        "train_over_bare_loop_time": round(stats["train_seconds"] / bare_seconds, 3),
        "steps": stats["train_steps"],
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
