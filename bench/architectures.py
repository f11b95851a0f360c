"""Experiment 1 on every architecture: a small run trained from a tiny random checkpoint of each, one row each.

    .venv/bin/python bench/architectures.py [--seeds 1] [--threads 2] [--tokenizer byte-bpe]

For each architecture of ``revcurse.tiny_checkpoints`` a random-initialised checkpoint folder is built (the same
width, depth, heads and MLP size, embeddings tied; tokenizer trained on the run's text) and the celebrities
experiment runs through the one runner with ``model.checkpoint=<folder>``, in a small world (``RUN``). The
baseline is the project's own tiny Llama (no checkpoint) at the same shape, measured in the same run: rows are
read as ratios to it. Columns: parameters, accuracy in the trained direction (NameToDescription asked
name->description, DescriptionToName asked description->name), accuracy in the reverse direction (the same facts
asked the other way: the curse is a low number here), and seconds (build/load, train and probe), wall and CPU
(this process's, both threads: less moved by other work on the machine than the wall clock).

``--tokenizer native`` gives each architecture the style its real checkpoints ship (GPT-2, Pythia and OPT
byte-level BPE; Llama, Mistral, Gemma and Phi-3 SentencePiece-style; Qwen2 ChatML); the default, one style for
all, keeps the tokenizer out of the comparison.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from revcurse.config import load_config
from revcurse.runner import build_trial, run_seed
from revcurse.tiny_checkpoints import ARCHITECTURES, TOKENIZER_STYLES, TinySize, build_tiny_checkpoint

# A small world that still shows the curse (the baseline: 0.98 trained, 0.00 reverse; ~30 s on 2 idle cores) and a
# 64-wide two-layer model (the baseline's MLP: 256 gated, as 384 plain)
RUN = ["world.facts_per_subset=10", "world.background=100", "corpus.train_phrasings=20", "corpus.held_out_phrasings=5",
       "train.epochs=8", "train.batch_size=32", "train.learning_rate=5e-3"]
SIZE = TinySize(hidden=64, layers=2, heads=4, intermediate=384, positions=128)
BASELINE = [f"model.hidden_size={SIZE.hidden}", f"model.layers={SIZE.layers}", f"model.heads={SIZE.heads}",
            f"model.intermediate_size={SIZE.gated_intermediate}", "model.tie_embeddings=true"]
NATIVE = {"gpt2": "byte-bpe", "gpt_neox": "byte-bpe", "opt": "byte-bpe", "llama": "metaspace",
          "mistral": "metaspace", "qwen2": "chat", "gemma": "metaspace", "phi3": "metaspace"}
ONE_WAY = {"NameToDescription", "DescriptionToName"}


def run_row(name: str, overrides: list[str], seeds: int, folder: Path, architecture: str | None = None,
            style: str = "byte-bpe") -> dict:
    """Train and probe ``seeds`` seeds (a checkpoint folder built per seed, its tokenizer trained on that seed's
    text, as the baseline's is); accuracies pooled over the seeds' probes, seconds summed (building included)."""
    trained, reverse, seconds, cpu_seconds, parameters = [], [], 0.0, 0.0, 0
    for seed in range(seeds):
        config = load_config(None, [*overrides, f"seed={seed}"])
        start, cpu_start = time.perf_counter(), time.process_time()
        if architecture is not None:
            texts = build_trial(config, seed).corpus.texts_seen()
            checkpoint = build_tiny_checkpoint(folder / f"{name}-{seed}-checkpoint", architecture, style, texts,
                                               SIZE, vocab_size=config.model.vocab_size)
            config = load_config(None, [*overrides, f"seed={seed}", f"model.checkpoint={checkpoint}"])
        _, results, stats = run_seed(config, seed, folder / f"{name}-seed-{seed}", show_progress=False)
        seconds += time.perf_counter() - start
        cpu_seconds += time.process_time() - cpu_start
        parameters = stats["parameters"]
        one_way = [r for r in results if r.subset in ONE_WAY]
        trained += [r.correct for r in one_way if r.trained]
        reverse += [r.correct for r in one_way if not r.trained]
    return {"model": name, "parameters": parameters, "trained_accuracy": sum(trained) / len(trained),
            "reverse_accuracy": sum(reverse) / len(reverse), "seconds": seconds, "cpu_seconds": cpu_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokenizer", choices=[*TOKENIZER_STYLES, "native"], default="byte-bpe")
    parser.add_argument("--only", nargs="*", choices=list(ARCHITECTURES), help="these architectures alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = [*RUN, f"train.threads={args.threads}"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        rows.append(run_row("tiny Llama (baseline, first)", [*run, *BASELINE], args.seeds, root))
        print(json.dumps(rows[-1]), flush=True)
        for architecture in args.only or ARCHITECTURES:
            style = NATIVE[architecture] if args.tokenizer == "native" else args.tokenizer
            rows.append(run_row(f"{architecture} ({style})", run, args.seeds, root, architecture, style))
            print(json.dumps(rows[-1]), flush=True)
        # Again at the end: the first run also pays one-time warm-up, and the machine's load may drift; the
        # ratios are to the mean of both.
        rows.append(run_row("tiny Llama (baseline, last)", [*run, *BASELINE], args.seeds, root / "again"))
        print(json.dumps(rows[-1]), flush=True)
    baseline = {key: (rows[0][key] + rows[-1][key]) / 2 for key in ("seconds", "cpu_seconds")}
    print("\n| model | parameters | trained accuracy | reverse accuracy | seconds | CPU seconds | CPU / baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['model']} | {row['parameters']:,} | {row['trained_accuracy']:.2f} | "
              f"{row['reverse_accuracy']:.2f} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} | "
              f"{row['cpu_seconds'] / baseline['cpu_seconds']:.2f} |")


if __name__ == "__main__":
    main()
