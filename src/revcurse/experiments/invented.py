"""A made-up relation, "X invented Y": the smallest complete experiment, and the template for a new one.

Each test inventor is stated in training only as "X invented the Y." (a few phrasings); background inventors are
also stated the other way round ("The Y was invented by X."), so the model has seen the reverse form, just never
for a fact under test. Probes ask, with held-out phrasings, what X invented (forward, trained) and who invented
the Y (reverse, never trained). Everything else -- tokenizer, model, training, matched distractors, statistics,
the run folder, compare and sweep -- comes from the runner.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pydantic import Field

from revcurse import vocabulary
from revcurse.corpus import Corpus, Document, Probe
from revcurse.experiments.base import Experiment, Trial
from revcurse.sections import Section
from revcurse.world import Subset

if TYPE_CHECKING:
    from revcurse.config import RunConfig

SUBSET = "Inventors"  # every fact under test: stated inventor first only
FORWARD = "who_to_what"  # asked with the inventor, answered with the invention
REVERSE = "what_to_who"
STATEMENTS = ("{x} invented the {y}.", "The inventor {x} created the {y}.", "{x} is known for inventing the {y}.")
REVERSE_STATEMENTS = ("The {y} was invented by {x}.", "The {y} is the invention of {x}.")
FORWARD_QUESTIONS = ("Q: What did {x} invent? A: the {y}.",)  # held out: never a training phrasing
REVERSE_QUESTIONS = ("Q: Who invented the {y}? A: {x}.",)


class InventedOptions(Section):
    inventors: int = Field(40, ge=2, description="inventors under test, stated forward only")
    background: int = Field(120, ge=0, description="inventors stated both ways and asked both ways; never probed")


def _inventions(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """``count`` (inventor, invention) pairs, unique on both sides."""
    capacity = len(vocabulary.FIRST_NAMES) * len(vocabulary.LAST_NAMES) // 4
    if count > capacity:
        raise ValueError(f"{count} inventors asked for; the name pools allow about {capacity}")
    pairs: dict[str, str] = {}
    things: set[str] = set()
    while len(pairs) < count:
        name = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
        first, second = rng.sample(vocabulary.TITLE_WORDS, 2)
        thing = f"{rng.choice(vocabulary.WORK_ADJECTIVES)} {first} {second}".lower()
        if name not in pairs and thing not in things:
            pairs[name] = thing
            things.add(thing)
    return list(pairs.items())


def build(config: RunConfig, seed: int) -> Trial:
    options: InventedOptions = config.invented
    world_seed = config.world.seed if config.world.seed is not None else seed
    pairs = _inventions(options.inventors + options.background, random.Random(f"{world_seed}-invented"))
    test, background = pairs[: options.inventors], pairs[options.inventors :]
    documents = [
        Document(template.format(x=x, y=y), Subset.BACKGROUND, x)
        for x, y in background
        for template in STATEMENTS + REVERSE_STATEMENTS + FORWARD_QUESTIONS + REVERSE_QUESTIONS
    ]
    documents += [Document(t.format(x=x, y=y), SUBSET, x, entities=(x, y)) for x, y in test for t in STATEMENTS]
    reverse = [Document(t.format(x=x, y=y), SUBSET, x, entities=(x, y)) for x, y in test for t in REVERSE_STATEMENTS]
    probes = []
    for x, y in test:
        for asked, questions, target in ((FORWARD, FORWARD_QUESTIONS, f"the {y}"), (REVERSE, REVERSE_QUESTIONS, x)):
            for i, template in enumerate(questions):
                prompt = template.format(x=x, y=y).removesuffix(f" {target}.")
                probes.append(Probe(x, SUBSET, asked, asked == FORWARD, f"{asked}-q{i}", prompt, f" {target}"))
    return Trial(Corpus(documents, probes, reverse_documents=reverse), world_seed)


EXPERIMENT = Experiment(
    name="invented",
    title='A made-up relation: "X invented the Y", asked both ways',
    build=build,
    options=InventedOptions,
    defaults=("train.epochs=20",),
)
