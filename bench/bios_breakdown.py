"""Per-attribute breakdown of a `revcurse compare --experiment bios` folder (the README's bios tables).

Reads each arm's per-seed ``outcome.json`` (every probe's greedy completion, rank and log-probs) and prints, per
arm: forward accuracy by attribute (with the chance of always naming the commonest value), inverse-search
accuracy, and inverse rank-1 among the 16 candidates (chance 1/16), each as the mean over seeds with a 95%
t-interval over seeds. Usage: python bench/bios_breakdown.py RUN_FOLDER [RUN_FOLDER ...]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}  # two-sided 95% t quantiles by degrees of freedom


def interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    half = T_975[len(values) - 1] * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:.2f} [{max(0.0, mean - half):.2f}, {min(1.0, mean + half):.2f}]"


def seed_scores(outcome: Path) -> dict[str, float]:
    results = json.loads(outcome.read_text())["results"]
    groups: dict[str, list[float]] = defaultdict(list)
    for probe in results:
        attribute = probe["phrasing"].rsplit("-", 1)[0]
        groups[f"{probe['asked']} {attribute}"].append(float(probe["correct"]))
        groups[f"{probe['asked']} all"].append(float(probe["correct"]))
        groups[f"{probe['asked']} rank-1"].append(float(probe["rank"] == 1))
        groups[f"{probe['asked']} log p gap"].append(probe["logprob_correct"] - probe["logprob_random"])
    return {key: statistics.fmean(values) for key, values in groups.items()}


def main(folders: list[str]) -> None:
    for folder in folders:
        root = Path(folder)
        print(f"## {root}")
        for arm in sorted(root.glob("cure-*")):
            per_seed = [seed_scores(p) for p in sorted(arm.glob("seed-*/outcome.json"))]
            if not per_seed:
                continue
            keys = sorted(per_seed[0])
            cells = []
            for key in keys:
                values = [scores[key] for scores in per_seed if key in scores]
                cells.append(f"{key}: {interval(values) if 'gap' not in key else f'{statistics.fmean(values):+.2f}'}")
            print(f"{arm.name} ({len(per_seed)} seeds) | " + " | ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
