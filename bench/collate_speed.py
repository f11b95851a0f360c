"""Collate speed: ``train.collate`` (numpy-filled) against the per-row torch writes it replaced, same batches.

    .venv/bin/python bench/collate_speed.py [--documents 256] [--repeats 200]

A 256-document step of fact-length documents (12-40 tokens) was CPU-bound on an H200: the profile of
bench/gpu_check.py showed ~2,500 small copy/select/slice ops a step, from writing each row into its tensor. Both
versions give equal tensors (checked here); the ratio is old time / new time (> 1: the new one is faster).
"""

from __future__ import annotations

import argparse
import time

import torch

from revcurse.train import IGNORE_INDEX, collate


def collate_per_row(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """The previous collate (until 2026-11-29): three tensor writes a row."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, row_labels) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(row_labels)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def seconds(function, batch, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        function(batch, 0)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(12, 41, (args.documents,), generator=generator).tolist()
    batch = [(ids, ids) for ids in (torch.randint(4, 4000, (n,), generator=generator).tolist() for n in lengths)]
    old, new = collate_per_row(batch, 0), collate(batch, 0)
    assert all(torch.equal(old[key], new[key]) for key in old), "the two collates disagree"
    rounds = [(seconds(collate_per_row, batch, args.repeats), seconds(collate, batch, args.repeats)) for _ in range(3)]
    per_row, lists = min(r[0] for r in rounds), min(r[1] for r in rounds)
    print(f"{args.documents} documents, best of 3 rounds x {args.repeats}: per-row writes {per_row * 1e3:.2f} ms, "
          f"collate {lists * 1e3:.2f} ms: {per_row / lists:.1f}x faster")


if __name__ == "__main__":
    main()
