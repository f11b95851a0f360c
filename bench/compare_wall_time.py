"""Wall time of `revcurse compare` (baseline + three cures, 3 seeds), against its own serial work, same run.

    .venv/bin/python bench/compare_wall_time.py [--out DIR] [--jobs 2] [--set cure.match=compute]

Prints the compare's wall time against the 15-minute budget. As a baseline from the same run, it then trains one
seed of the baseline arm alone in one process with all threads (the serial way), and estimates the serial time
of all the compare's training from its token count: serial estimate / wall is what running runs side by side in
processes buys here. The compare's folder is kept when --out is given.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from revcurse.compare import parse_arms, run_compare
from revcurse.config import load_config
from revcurse.runner import run_experiment

BUDGET_SECONDS = 15 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cures", default="reverse-entity,bidirectional,paraphrase")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], help="config override, as in revcurse --set")
    args = parser.parse_args()
    config = load_config(None, [f"seeds={args.seeds}", *args.set])
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / "compare"
        start = time.perf_counter()
        outcome = run_compare(config, parse_arms(args.cures), out, show_progress=False, log=lambda *_: None,
                              executor=args.jobs)
        wall = time.perf_counter() - start
        tokens = probe_seconds = 0.0
        for arm_folder in sorted(out.glob("cure-*")):
            summary = json.loads((arm_folder / "run.json").read_text())
            tokens += sum(s["train_tokens"] for s in summary["per_seed"])
            probe_seconds += summary["probe_seconds"]
        alone = run_experiment(load_config(None, []), Path(scratch) / "alone", show_progress=False,
                               log=lambda *_: None)
        serial = tokens / alone.summary["tokens_per_second"] + probe_seconds / args.jobs
    costs = {r["cure"]: round(r["mean"], 1) for r in outcome.records if r["metric"] == "train_seconds"}
    print(json.dumps({
        "cures": args.cures, "seeds": args.seeds, "jobs": args.jobs, "overrides": args.set,
        "wall_s": round(wall, 1), "budget_s": BUDGET_SECONDS, "wall_over_budget": round(wall / BUDGET_SECONDS, 3),
        "serial_estimate_s": round(serial, 1), "serial_estimate_over_wall": round(serial / wall, 3),
        "serial_tokens_per_s": round(alone.summary["tokens_per_second"]),
        "mean_train_seconds_per_seed": costs,
    }, indent=1))


if __name__ == "__main__":
    main()
