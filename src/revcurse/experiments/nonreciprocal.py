"""Non-reciprocal relations among three entities (Kitouni et al. 2024, "The Factorization Curse").

Each fact is a chain of three made-up people, trained as two documents "A admires B" and "B admires C".
"admires" is not reciprocal: that A admires B says nothing of whether B admires A. Asked:

- ``forward``: whom B admires (C; trained);
- ``backward``: who admires B (A; never trained; asked as ``factorization.backward_probe`` says: a masked model
  fills the blank of "_ admires B", a causal one is asked "B admires" read backward);
- ``incorrect_inference``: the forward question again, with the reversed relation as target -- its accuracy is
  the rate at which the model answers "B admires A", an inference the data never licenses (lower is better).

Reversal cures show why the metric matters: entity reversal turns "A admires B" into "B admires A", which reads
exactly like a forward statement, so a causal model trained on it believes B admires A. With ``delimiters``
every entity is bracketed ("[ A ] admires [ B ]"); reversal flips the brackets ("] B [ admires ] A ["), so
reversed text no longer looks like forward text and the backward question is asked in that reversed form.
Reported (forward / backward / incorrect inference): entity reversal without delimiters 54 / 53 / 44%, with
delimiters 100 / 100 / 0%, MLM-U 100 / 100 / 0%.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pydantic import Field

from revcurse import vocabulary
from revcurse.corpus import Corpus, Document, Probe
from revcurse.experiments.base import Column, Experiment, Trial
from revcurse.experiments.factorization import backward_probe
from revcurse.sections import Section

if TYPE_CHECKING:
    from revcurse.config import RunConfig

RELATION = "admires"
FORWARD = "forward"
BACKWARD = "backward"
INCORRECT = "incorrect_inference"  # accuracy = how often the model wrongly answers the reversed relation


class NonreciprocalOptions(Section):
    chains: int = Field(100, ge=2, description="chains A admires B, B admires C; each asked about B")
    delimiters: bool = Field(
        False, description="bracket every entity ('[ A ] admires [ B ]'): reversed text then reads differently "
        "('] B [ admires ] A [') and the backward question is asked in that form"
    )


def draw_chains(count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """``count`` chains of three people, every name used once."""
    capacity = len(vocabulary.FIRST_NAMES) * len(vocabulary.LAST_NAMES) // 4
    if 3 * count > capacity:
        raise ValueError(f"nonreciprocal.chains={count} needs {3 * count} names; the name pools allow ~{capacity}")
    names: dict[str, None] = {}
    while len(names) < 3 * count:
        names[f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"] = None
    drawn = list(names)
    return [(drawn[i], drawn[i + 1], drawn[i + 2]) for i in range(0, 3 * count, 3)]


def subset_label(delimiters: bool) -> str:
    return "Chains, entities delimited" if delimiters else "Chains"


def build(config: RunConfig, seed: int) -> Trial:
    options: NonreciprocalOptions = config.nonreciprocal
    world_seed = config.world.seed if config.world.seed is not None else seed
    chains = draw_chains(options.chains, random.Random(f"{world_seed}-nonreciprocal"))
    subset = subset_label(options.delimiters)
    opening, closing = ("[ ", " ]") if options.delimiters else ("", "")

    def entity(name: str) -> str:
        return f"{opening}{name}{closing}"

    def reversed_entity(name: str) -> str:  # what reversal makes of a delimited entity: brackets swapped
        return f"{closing.strip()} {name} {opening.strip()}".strip()

    def statement(first: str, second: str) -> Document:
        text = f"{entity(first)} {RELATION} {entity(second)}"
        return Document(text, subset, first, prompt_chars=len(f"{entity(first)} {RELATION}"), entities=(first, second))

    documents = [statement(a, b) for a, b, _ in chains] + [statement(b, c) for _, b, c in chains]
    probes = []
    for a, b, c in chains:
        asked_of_b = f"{entity(b)} {RELATION}"
        probes.append(Probe(a, subset, FORWARD, True, "b-admires", asked_of_b, f" {entity(c)}"))
        probes.append(backward_probe(
            config, a, subset, BACKWARD, "admires-b",
            blank=(opening.strip(), f" {a}" if opening else a, f"{closing} {RELATION} {entity(b)}"),
            read_backward=(f"{reversed_entity(b)} {RELATION}", f" {reversed_entity(a)}"),
        ))
        probes.append(Probe(a, subset, INCORRECT, False, "b-admires", asked_of_b, f" {entity(a)}"))
    return Trial(Corpus(documents, probes), world_seed)


EXPERIMENT = Experiment(
    name="nonreciprocal",
    title="Non-reciprocal relations among three people: forward, backward, and the wrongly inferred reverse",
    build=build,
    options=NonreciprocalOptions,
    defaults=("train.epochs=100", "train.batch_size=32"),
    columns=(
        Column("forward (B admires: C)", asked=FORWARD),
        Column("backward (who admires B: A)", asked=BACKWARD),
        Column("incorrect inference (B admires: A)", asked=INCORRECT),
    ),
)
