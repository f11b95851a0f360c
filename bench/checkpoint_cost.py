"""What resumable checkpoints cost: training with a checkpoint every K steps against none, same run.

    .venv/bin/python bench/checkpoint_cost.py [--steps 120] [--every 20] [--rounds 3] [--threads 2]

Both train a fresh copy of the embedded default model (same init, same batches) through ``train_model``; one
saves a checkpoint (accelerate's save_state + progress.json, then drops the older one) every ``--every`` steps.
Rounds alternate the two so machine noise hits both; prints the measured seconds per checkpoint, that in
training steps, the overhead at the chosen interval, and the (noisier) ratio of total times.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch
from train_throughput import demo_setup  # bench/ is on sys.path when run as a script

from revcurse.model import build_tiny_model
from revcurse.train import TrainResult, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config, corpus, tokenizer = demo_setup(args.threads)
    steps_per_epoch = math.ceil(len(corpus.documents) / config.train.batch_size)
    plain = config.train.model_copy(update={"epochs": args.steps / steps_per_epoch, "checkpoint_minutes": 0})
    checkpointed = plain.model_copy(update={"checkpoint_every": args.every})

    def train(train_config, checkpoint_dir: Path | None) -> TrainResult:
        torch.manual_seed(0)
        model = build_tiny_model(config.model, tokenizer, 128)
        return train_model(model, tokenizer, corpus.documents, train_config, seed=0, show_progress=False,
                           checkpoint_dir=checkpoint_dir)

    without, with_checkpoints = [], []
    for _ in range(args.rounds):
        without.append(train(plain, None))
        with tempfile.TemporaryDirectory() as scratch:
            with_checkpoints.append(train(checkpointed, Path(scratch)))
    per_save = sorted(r.checkpoint_seconds / r.checkpoints for r in with_checkpoints)[args.rounds // 2]
    per_step = sorted(r.seconds / r.steps for r in without)[args.rounds // 2]
    totals = sorted(r.seconds for r in with_checkpoints)[args.rounds // 2], sorted(r.seconds for r in without)[
        args.rounds // 2]
    print(json.dumps({
        "steps": args.steps, "checkpoint_every": args.every, "checkpoints_per_run": with_checkpoints[0].checkpoints,
        "parameters": sum(p.numel() for p in build_tiny_model(config.model, tokenizer, 128).parameters()),
        "seconds_without": [round(r.seconds, 2) for r in without],
        "seconds_with": [round(r.seconds, 2) for r in with_checkpoints],
        "seconds_per_checkpoint_median": round(per_save, 4),
        "seconds_per_step_median": round(per_step, 4),
        "checkpoint_in_steps": round(per_save / per_step, 2),
        "overhead_at_every": round(per_save / (args.every * per_step), 4),
        "time_ratio_median": round(totals[0] / totals[1], 3),
    }, indent=1))


if __name__ == "__main__":
    main()
