"""Training throughput: revcurse's training path against a bare PyTorch loop, same model, same batches, same run.

    .venv/bin/python bench/train_throughput.py [--steps 60] [--rounds 3] [--threads 2]

Both train a fresh copy of the embedded default model (same init) on the same batches of the demo corpus
(``train.epoch_batches``): the bare loop is collate -> forward -> backward -> AdamW step -> zero_grad. Rounds
alternate the two so machine noise hits both; prints tokens/s of each and the ratio (target >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from transformers import PreTrainedTokenizerBase

from revcurse.config import RunConfig, load_config
from revcurse.corpus import Corpus
from revcurse.model import build_tiny_model, train_tokenizer
from revcurse.runner import build_trial
from revcurse.train import collate, encode_documents, epoch_batches, train_model


def bare_loop(model, tokenizer, encoded, batches, learning_rate: float) -> tuple[float, int]:
    """Seconds and tokens of the plainest correct loop over ``batches`` (also used by demo_wall_time.py)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    tokens = 0
    start = time.perf_counter()
    for batch_indices in batches:
        batch = collate([encoded[i] for i in batch_indices], tokenizer.pad_token_id)
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    return time.perf_counter() - start, tokens


def demo_setup(threads: int) -> tuple[RunConfig, Corpus, PreTrainedTokenizerBase]:
    """The embedded default's config, seed-0 corpus and tokenizer (also used by checkpoint_cost.py)."""
    torch.set_num_threads(threads)
    config = load_config(None, [f"train.threads={threads}"])
    corpus = build_trial(config, 0).corpus
    return config, corpus, train_tokenizer(corpus.texts_seen(), config.model.vocab_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config, corpus, tokenizer = demo_setup(args.threads)
    encoded = encode_documents(corpus.documents, tokenizer)
    lengths = [len(ids) for ids, _ in encoded]
    steps_per_epoch = math.ceil(len(encoded) / config.train.batch_size)
    # train_model draws its batches from its seed the same way: the first epoch's batches, in order
    batches = epoch_batches(lengths, config.train.batch_size, torch.Generator().manual_seed(0))[: args.steps]
    train_config = config.train.model_copy(update={"epochs": args.steps / steps_per_epoch})

    def fresh():
        torch.manual_seed(0)
        return build_tiny_model(config.model, tokenizer, 128)

    revcurse_speeds, bare_speeds = [], []
    for _ in range(args.rounds):
        seconds, tokens = bare_loop(fresh(), tokenizer, encoded, batches, config.train.learning_rate)
        bare_speeds.append(tokens / seconds)
        result = train_model(fresh(), tokenizer, corpus.documents, train_config, seed=0, show_progress=False)
        revcurse_speeds.append(result.tokens_per_second)
    best_revcurse, best_bare = max(revcurse_speeds), max(bare_speeds)
    print(json.dumps({
        "steps": args.steps, "threads": args.threads,
        "revcurse_tokens_per_s": [round(s) for s in revcurse_speeds],
        "bare_loop_tokens_per_s": [round(s) for s in bare_speeds],
        "ratio_best": round(best_revcurse / best_bare, 3),
        "ratio_median": round(sorted(revcurse_speeds)[len(revcurse_speeds) // 2]
                              / sorted(bare_speeds)[len(bare_speeds) // 2], 3),
        "target": 0.95,
    }, indent=1))


if __name__ == "__main__":
    main()
