"""Key -> value retrieval (Kitouni et al. 2024, "The Factorization Curse", the retrieval task).

Each pair is a key and a value, each a few random made-up words; training states every pair once per epoch as
"KEY = VALUE" and nothing else. Forward asks the value after "KEY =" (trained); backward asks the key for a
value (never trained). Reported: a causal model 100 / 0, with token reversal 100 / 0, masked LM at a fixed
15/40/85% about 20 / 20, MLM-U 100 / 100.

How backward is asked depends on what the model can read (``factorization.backward_probe``): a masked model
fills the key's blank before " = VALUE" (the forward document with the key masked, the paper's question); a
causal model, which cannot read after a blank, is asked "VALUE =" -- the document read backward entity by
entity, what entity-preserving reversal trains on (token reversal trains on the value's tokens reversed, so it
is not helped, as the paper reports).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pydantic import Field

from revcurse.corpus import Corpus, Document, Probe
from revcurse.experiments.base import Experiment, Trial
from revcurse.experiments.factorization import backward_probe, made_up_words
from revcurse.sections import Section

if TYPE_CHECKING:
    from revcurse.config import RunConfig

SUBSET = "Pairs"
FORWARD = "key_to_value"
BACKWARD = "value_to_key"
SEPARATOR = "="


class RetrievalOptions(Section):
    pairs: int = Field(60, ge=2, description="key -> value pairs, each trained forward only and asked both ways")
    key_words: int = Field(3, ge=1, description="random words in each key")
    value_words: int = Field(3, ge=1, description="random words in each value")
    words: int = Field(100, ge=4, description="made-up words keys and values are drawn from")


def draw_pairs(options: RetrievalOptions, rng: random.Random) -> list[tuple[str, str]]:
    """``options.pairs`` (key, value) pairs of random words; no key and no value repeats, no key is a value."""
    pool = made_up_words(options.words, rng)
    capacity = min(options.words ** options.key_words, options.words ** options.value_words)
    if 2 * options.pairs > capacity:
        raise ValueError(f"retrieval.pairs={options.pairs} asks for more distinct keys and values than "
                         f"{options.words} words allow ({capacity}); raise retrieval.words or the lengths")
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    while len(pairs) < options.pairs:
        key = " ".join(rng.choices(pool, k=options.key_words))
        value = " ".join(rng.choices(pool, k=options.value_words))
        if key not in seen and value not in seen and key != value:
            seen |= {key, value}
            pairs.append((key, value))
    return pairs


def build(config: RunConfig, seed: int) -> Trial:
    options: RetrievalOptions = config.retrieval
    world_seed = config.world.seed if config.world.seed is not None else seed
    pairs = draw_pairs(options, random.Random(f"{world_seed}-retrieval"))
    documents = [Document(f"{key} {SEPARATOR} {value}", SUBSET, key, prompt_chars=len(f"{key} {SEPARATOR}"),
                          entities=(key, value)) for key, value in pairs]
    reverse = [Document(f"{value} {SEPARATOR} {key}", SUBSET, key, entities=(value, key)) for key, value in pairs]
    probes = []
    for key, value in pairs:
        probes.append(Probe(key, SUBSET, FORWARD, True, "kv", f"{key} {SEPARATOR}", f" {value}"))
        probes.append(backward_probe(config, key, SUBSET, BACKWARD, "vk", blank=("", key, f" {SEPARATOR} {value}"),
                                     read_backward=(f"{value} {SEPARATOR}", f" {key}")))
    return Trial(Corpus(documents, probes, reverse_documents=reverse), world_seed)


EXPERIMENT = Experiment(
    name="retrieval",
    title="Key -> value retrieval of random words, asked both ways (Kitouni et al. 2024)",
    build=build,
    options=RetrievalOptions,
    defaults=("train.epochs=250", "train.batch_size=32"),
)
