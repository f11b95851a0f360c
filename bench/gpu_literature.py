"""GPU runs of the follow-up literature's bigger settings, into one JSON file: the MLM-U compute sweep of
Experiment 1 first (is MLM-U here short of steps, or wrong?).

    python bench/gpu_literature.py --out runs/gpu-literature [--jobs 15] [--budget-s 420]   # one GPU
    python bench/gpu_literature.py --dry-run --out /tmp/literature                         # CPU, tiny (CI)

Each section is one revcurse sweep (``sweep.run_sweep``, one run folder per cell under ``OUT/SECTION/cells``)
whose grid also holds ``seed``, so that every (setting, seed) is its own task and ``--jobs`` processes run them at
once, sharing the GPU (a tiny model leaves it mostly idle: its steps are bound by kernel launches, not FLOPs).
The per-seed accuracies of each setting are then pooled per probe group into a mean and a 95% Student-t interval
over the seeds (``metrics.interval``, clipped to [0, 1]), beside the steps, wall time and final loss of each seed, in
``OUT/gpu_literature.json`` (rewritten after every section, so a cut-short run keeps what it measured).

Sections (``--sections``):

- ``mlmu_compute``: Experiment 1 (the demo's world and model) with ``train.objective=mlm-u`` at 1x, 2x, 5x, 10x
  and 20x the baseline's 5 epochs, and the causal baseline at 1x beside it.
- ``cheap_cures``: the cheap cures (``identity-bridge``, ``masked-finetune``) beside ``bidirectional`` and
  ``reverse-entity`` on the demo's world, data-matched, then compute-matched (``cure.match=compute``).
- ``paper_configs``: the bigger settings of the new experiments (``PAPER_CONFIGS``: a ``configs/*.yaml`` and its
  arms).

Arms are a grid dimension (``cures=none,reverse-entity,...``), as in ``revcurse compare``; a dry run keeps the
first two arms of each.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from revcurse.metrics import interval
from revcurse.sweep import run_sweep

SCHEMA = "revcurse.gpu_literature/1"
ROOT = Path(__file__).resolve().parent.parent
BASELINE_EPOCHS = 5  # the demo's train.epochs: the compute sweep's 1x
ONE_WAY = {"NameToDescription", "DescriptionToName"}


@dataclass(frozen=True)
class Sweep:
    """One section's sweep: a config file (or the embedded default), overrides, and grid dimensions."""

    name: str
    config: Path | None
    overrides: tuple[str, ...]
    grid: tuple[str, ...]


MULTIPLES = (1, 2, 5, 10, 20)
DRY_OVERRIDES = ("world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=4",
                 "corpus.held_out_phrasings=2", "corpus.background_phrasings=2", "model.hidden_size=32",
                 "model.layers=1", "model.heads=2", "model.intermediate_size=64", "model.vocab_size=400",
                 "train.batch_size=16", "train.threads=1", "probe.distractors=3")
CHEAP_CURES = "none,identity-bridge,masked-finetune,bidirectional,reverse-entity"
# name -> (config file, arms)
PAPER_CONFIGS: dict[str, tuple[str, str]] = {
    "bios_paper": ("configs/bios-paper.yaml", "none,reverse-token,reverse-word,reverse-entity,reverse-segment"),
}


def sweeps(dry_run: bool, seeds: int, sections: set[str]) -> list[Sweep]:
    seed_grid = f"seed={','.join(str(s) for s in range(seeds))}"
    extra = DRY_OVERRIDES if dry_run else ()
    multiples = (1, 2) if dry_run else MULTIPLES
    planned = []
    if "mlmu_compute" in sections:
        epochs = ",".join(str(BASELINE_EPOCHS * m) for m in multiples)
        planned.append(Sweep("mlmu_compute", None, ("train.objective=mlm-u", *extra),
                             (f"train.epochs={epochs}", seed_grid)))
        planned.append(Sweep("causal_reference", None, (f"train.epochs={BASELINE_EPOCHS}", *extra), (seed_grid,)))
    def arms(names: str) -> str:
        return ",".join(names.split(",")[:2]) if dry_run else names

    if "cheap_cures" in sections:
        planned.append(Sweep("cheap_cures_data", None, extra, (f"cures={arms(CHEAP_CURES)}", seed_grid)))
        planned.append(Sweep("cheap_cures_compute", None, ("cure.match=compute", *extra),
                             (f"cures={arms(CHEAP_CURES)}", seed_grid)))
    if "paper_configs" in sections:
        for name, (config, names) in PAPER_CONFIGS.items():
            planned.append(Sweep(name, ROOT / config, extra, (f"cures={arms(names)}", seed_grid)))
    return planned


def pooled(rows: list[dict], setting_keys: list[str]) -> list[dict]:
    """Per setting (grid values but the seed) and probe group: accuracy over seeds, mean and 95% t interval."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        if row.get("metric") != "accuracy" or row.get("subset") in (None, "all"):
            continue
        key = (*(row[k] for k in setting_keys), row["subset"], row["asked"], row.get("setting", ""), row["trained"])
        groups[key].append(float(row["mean"]))
    table = []
    for key, values in sorted(groups.items(), key=lambda item: [str(part) for part in item[0]]):
        low, high = interval(values, [], proportion=True)  # Student-t over seeds, within [0, 1]
        *setting, subset, asked, setting_name, trained = key
        table.append({**dict(zip(setting_keys, setting)), "subset": subset, "asked": asked,
                      "setting": setting_name, "trained": trained, "accuracy": fmean(values),
                      "ci95_low": low, "ci95_high": high, "n_seeds": len(values), "per_seed": values})
    return table


def per_seed_costs(folder: Path) -> list[dict]:
    """Each cell's seeds: steps, seconds, final loss (from its run.json)."""
    costs = []
    for run in sorted((folder / "cells").glob("*/run.json")):
        summary = json.loads(run.read_text(encoding="utf-8"))
        for seed in summary["per_seed"]:
            costs.append({"cell": run.parent.name, "seed": seed["seed"], "train_steps": seed.get("train_steps"),
                          "train_seconds": seed.get("train_seconds"), "final_loss": seed.get("final_loss"),
                          "probe_seconds": seed.get("probe_seconds"), "epochs": seed.get("epochs")})
    return costs


def plot_compute(data: dict, path: Path) -> None:
    """Accuracy against training compute (multiples of the baseline's epochs) for each one-way subset and
    direction, 95% intervals as error bars; the causal baseline at 1x as open markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep, reference = data["sections"].get("mlmu_compute"), data["sections"].get("causal_reference")
    if sweep is None:
        return
    figure, axis = plt.subplots(figsize=(7, 4.4))
    groups = sorted({(r["subset"], r["asked"], r["trained"]) for r in sweep["accuracy"] if r["subset"] in ONE_WAY})
    for index, (subset, asked, trained) in enumerate(groups):
        rows = sorted((r for r in sweep["accuracy"] if (r["subset"], r["asked"], r["trained"]) == (subset, asked,
                       trained)), key=lambda r: r["train.epochs"])
        xs = [r["train.epochs"] / BASELINE_EPOCHS for r in rows]
        means = [r["accuracy"] for r in rows]
        errors = [[m - r["ci95_low"] for m, r in zip(means, rows)], [r["ci95_high"] - m for m, r in zip(means, rows)]]
        label = f"{subset}, {asked.replace('_', ' ')} ({'trained' if trained else 'reverse'})"
        axis.errorbar(xs, means, yerr=errors, fmt="-o" if trained else "--s", color=f"C{index}", capsize=3,
                      label=f"MLM-U: {label}")
        for r in (reference or {}).get("accuracy", []):
            if (r["subset"], r["asked"], r["trained"]) == (subset, asked, trained):
                axis.plot([1], [r["accuracy"]], "o" if trained else "s", mfc="none", color=f"C{index}", ms=10)
    axis.plot([], [], "o", mfc="none", color="gray", ms=10, label="causal baseline at 1x (open markers)")
    axis.set_xscale("log")
    axis.set_xticks(MULTIPLES, [f"{m}x" for m in MULTIPLES])
    axis.set_ylim(-0.03, 1.05)
    axis.set_xlabel(f"training compute (x the baseline's {BASELINE_EPOCHS} epochs)")
    axis.set_ylabel("accuracy (held-out phrasings)")
    axis.set_title("Experiment 1 under MLM-U: accuracy against compute (95% intervals over seeds)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="center", bbox_to_anchor=(0.45, 0.62))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(out: Path, data: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / "gpu_literature.json.tmp"
    temporary.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    temporary.replace(out / "gpu_literature.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-literature"))
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny world and model (seconds)")
    parser.add_argument("--jobs", type=int, default=15, help="processes running cells at once")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=420, help="start no section after this many seconds")
    parser.add_argument("--sections", default="mlmu_compute,cheap_cures,paper_configs")
    parser.add_argument("--plot", type=Path, help="only draw the compute curve of an existing gpu_literature.json")
    args = parser.parse_args()
    if args.plot:
        plot_compute(json.loads(args.plot.read_text(encoding="utf-8")), args.plot.with_name("mlmu_compute.png"))
        return
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    start = time.perf_counter()
    data: dict = {"schema": SCHEMA, "dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "sections": {}, "errors": [], "skipped": []}
    for sweep in sweeps(args.dry_run, args.seeds, set(args.sections.split(","))):
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            data["skipped"].append(f"{sweep.name}: {elapsed:.0f} s spent of {args.budget_s:.0f}")
            continue
        print(f"[{elapsed:6.1f} s] {sweep.name}: {' '.join(sweep.grid)}", flush=True)
        folder = args.out / sweep.name
        began = time.perf_counter()
        try:
            outcome = run_sweep(sweep.config, list(sweep.overrides), list(sweep.grid), folder, executor=args.jobs,
                                log=lambda line: print(f"  {line}", flush=True))
            setting_keys = [key for spec in sweep.grid for key in spec.split("=")[0].split(",") if key != "seed"]
            data["sections"][sweep.name] = {
                "config": str(sweep.config) if sweep.config else None, "overrides": list(sweep.overrides),
                "grid": list(sweep.grid), "seconds": time.perf_counter() - began,
                "accuracy": pooled(outcome.rows, setting_keys), "per_seed": per_seed_costs(folder)}
        except Exception as error:  # one failed section must not lose the others
            data["errors"].append({"section": sweep.name, "error": f"{type(error).__name__}: {error}",
                                   "traceback": traceback.format_exc(limit=8)})
            print(f"  failed: {type(error).__name__}: {error}", flush=True)
        data["seconds"] = time.perf_counter() - start
        write(args.out, data)
    write(args.out, data)
    plot_compute(data, args.out / "mlmu_compute.png")
    print(f"wrote {args.out / 'gpu_literature.json'} in {time.perf_counter() - start:.0f} s; "
          f"{len(data['errors'])} error(s), {len(data['skipped'])} skipped")


if __name__ == "__main__":
    main()
