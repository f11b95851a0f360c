"""What the likelihood curve costs: the demo's training with the curve (revcurse.curve) against without, same run.

    .venv/bin/python bench/curve_overhead.py [--epochs E] [--points 20] [--facts 8] [--threads 2]

Both train a fresh copy of the embedded default model (same init, same batches, the seed-0 demo world) through
``train_model``; one passes the runner's curve recorder (``runner.curve_recorder``: ``probe.curve_points`` points
over ``probe.curve_facts`` facts per group, 2 phrasings each). Prints the wall seconds of each, their ratio, and
the seconds the curve itself spent (its share of the run with it). ``--epochs`` below the demo's 5 makes the bench
shorter but overstates the overhead (the same points over fewer steps); the demo's own ratio is the default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from train_throughput import demo_setup  # bench/ is on sys.path when run as a script

from revcurse.model import build_tiny_model
from revcurse.runner import curve_recorder
from revcurse.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--facts", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config, corpus, tokenizer = demo_setup(args.threads)
    config = config.model_copy(update={"probe": config.probe.model_copy(
        update={"curve_points": args.points, "curve_facts": args.facts})})
    train_config = config.train.model_copy(update={"checkpoint_minutes": 0, **(
        {"epochs": args.epochs} if args.epochs else {})})
    longest = max(len(ids) for ids in tokenizer(corpus.texts_seen())["input_ids"]) + 2

    def train(with_curve: bool) -> dict:
        torch.manual_seed(0)
        model = build_tiny_model(config.model, tokenizer, 2 * longest)
        with tempfile.TemporaryDirectory() as scratch:
            curve = curve_recorder(config, corpus, tokenizer, Path(scratch), world_seed=0) if with_curve else None
            began = time.perf_counter()
            result = train_model(model, tokenizer, corpus.documents, train_config, seed=0, show_progress=False,
                                 on_step=curve)
            wall = time.perf_counter() - began
            points = len({json.loads(line)["step"] for line in (Path(scratch) / "curve.jsonl").read_text(
                ).splitlines()}) if curve else 0
        return {"wall": wall, "steps": result.steps, "curve_seconds": curve.seconds if curve else 0.0,
                "points": points, "probes": len(curve.probes.probes) if curve else 0, "loss": result.final_loss}

    without = train(False)
    with_curve = train(True)
    print(json.dumps({
        "steps": without["steps"], "curve_points": with_curve["points"], "curve_probes": with_curve["probes"],
        "seconds_without": round(without["wall"], 2), "seconds_with": round(with_curve["wall"], 2),
        "time_ratio": round(with_curve["wall"] / without["wall"], 4),
        "curve_seconds": round(with_curve["curve_seconds"], 2),
        "curve_share_of_run": round(with_curve["curve_seconds"] / with_curve["wall"], 4),
        "same_final_loss": with_curve["loss"] == without["loss"],
    }, indent=1))


if __name__ == "__main__":
    main()
