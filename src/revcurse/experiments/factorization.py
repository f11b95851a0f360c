"""What the factorization-curse tasks (Kitouni et al. 2024: ``retrieval``, ``nonreciprocal``) share: made-up
words, and how a model is asked for the first entity of a document it was trained on.

Not an experiment (not in ``EXPERIMENTS``): a helper of the two that are.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from revcurse.corpus import Probe
from revcurse.sections import MASKED_OBJECTIVES

if TYPE_CHECKING:
    from revcurse.config import RunConfig

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def made_up_words(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct pronounceable non-words of two or three consonant-vowel syllables ("bako", "tiremu")."""
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    if count > len(syllables) ** 2:
        raise ValueError(f"{count} made-up words asked for; at most {len(syllables) ** 2}")
    words: dict[str, None] = {}  # insertion-ordered: a set's order follows the process's string hashing
    while len(words) < count:
        words["".join(rng.choices(syllables, k=rng.choice((2, 3))))] = None
    return list(words)


def backward_probe(config: RunConfig, fact_key: str, subset: str, asked: str, phrasing: str,
                   blank: tuple[str, str, str], read_backward: tuple[str, str], setting: str = "") -> Probe:
    """Ask for the first entity of a trained document, the way this model can be asked.

    A masked model (``train.objective`` mlm-u, mlm) fills a blank in the forward document: ``blank`` is (text
    before it, the entity, text after it, ``Probe.after``), its training document with the entity masked, as
    Kitouni et al. ask. A causal model cannot read after a blank; it is asked ``read_backward`` (prompt, target):
    the document read backward entity by entity, the form entity-preserving reversal trains on.
    """
    if config.train.objective in MASKED_OBJECTIVES:
        before, entity, after = blank
        return Probe(fact_key, subset, asked, False, phrasing, before, entity, after=after, setting=setting)
    prompt, target = read_backward
    return Probe(fact_key, subset, asked, False, phrasing, prompt, target, setting=setting)
