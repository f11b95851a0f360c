"""Experiment 2, synthetic: how much parent-side text does a model need to name a parent's child?

The paper's Experiment 2 finds that models name a celebrity's parent far more often than the parent's child: the
web states "Tom Cruise's mother is Mary Lee Pfeiffer", rarely "Mary Lee Pfeiffer's son is Tom Cruise". Here the
cause is under our control. Made-up families go into a from-scratch pretraining corpus: every child's documents
name the parent (child side), and only a fraction ``r`` (``families.fraction``) of families also get documents
from the parent's side. Sweeping ``r`` (``revcurse families``: one run per fraction) shows whether
reverse-direction text teaches the model a *pattern* (the families without it would improve too) or only the
facts it states (they would not).

Background families, stated from both sides with every phrasing (questions included), teach the language; they
are never probed. Test families are probed with held-out question phrasings in both directions: parent question
(child -> parent, the trained direction) and child question (parent -> child, the reverse). Probe groups
(``subset``) split test families by whether they had parent-side text. The parent-side statements of the families
that lack them are the corpus's ``reverse_documents`` (what the ``bidirectional`` cure adds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from revcurse import vocabulary
from revcurse.corpus import Corpus, Document, Probe
from revcurse.errors import InputError
from revcurse.experiments.base import Column, Experiment, Trial
from revcurse.sections import Section
from revcurse.world import Subset

if TYPE_CHECKING:
    from revcurse.config import RunConfig

DEFAULT_FRACTIONS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5)  # what `revcurse families` sweeps without --fractions
WITH_PARENT_TEXT = "with parent-side text"
WITHOUT_PARENT_TEXT = "without parent-side text"
ASK_PARENT = "parent"  # child -> parent: the direction every family's text states
ASK_CHILD = "child"  # parent -> child: stated only by the fraction r

# Child side: the child first, the parent after (what every family has). {kind} is mother or father.
CHILD_SIDE = (
    "{child}'s {kind} is {parent}.",
    "{child} was raised by {their} {kind}, {parent}.",
    "The {kind} of {child} is {parent}.",
    "{child} often talks about {their} {kind} {parent}.",
    "As a child, {child} was taught to read by {their} {kind}, {parent}.",
    "{child} grew up in a small town with {their} {kind} {parent}.",
    "Friends of {child} know {their} {kind} {parent} well.",
    "{child} thanked {their} {kind} {parent} in a speech.",
)
# Parent side: the parent first, the child after.
PARENT_SIDE = (
    "{parent} is the {kind} of {child}.",
    "{parent} has a child named {child}.",
    "{parent} raised a child, {child}.",
    "{parent} often talks about {parent_their} child {child}.",
    "As a {kind}, {parent} taught {parent_their} child {child} to read.",
    "{parent} is proud of {parent_their} child {child}.",
    "Neighbours of {parent} know {parent_their} child {child} well.",
    "{parent} was thanked by {parent_their} child {child} in a speech.",
)
# Questions: seen in training only for background families, so test families are probed with new phrasings.
PARENT_QUESTIONS = (
    "Q: Who is {child}'s {kind}? A: {parent}.",
    "Question: Name the {kind} of {child}. Answer: {parent}.",
)
CHILD_QUESTIONS = ("Q: Name a child of {parent}. A: {child}.", "Question: Who is a child of {parent}? Answer: {child}.")


class FamiliesOptions(Section):
    families: int = Field(100, ge=1, description="test families (probed), stated from the child's side")
    background: int = Field(100, ge=0, description="families stated from both sides with every phrasing; never probed")
    fraction: float = Field(
        0.0, ge=0, le=1, description="r: the fraction of test families that also get parent-side text"
    )


@dataclass(frozen=True)
class Family:
    """One child and one parent; ``kind`` is mother or father."""

    child: str
    parent: str
    kind: str
    parent_side: bool = False  # does the corpus also state this family from the parent's side?

    def render(self, template: str) -> str:
        parent_their = "her" if self.kind == "mother" else "his"
        return template.format(
            child=self.child, parent=self.parent, kind=self.kind, their="their", parent_their=parent_their
        )


def make_families(count: int, background: int, fraction: float, seed: int) -> tuple[list[Family], list[Family]]:
    """(test families, background families); ``round(fraction * count)`` test families get parent-side text.

    Names are unique and drawn apart (a child does not share the parent's surname), so an answer cannot be
    guessed from the question.
    """
    if not 0 <= fraction <= 1:
        raise InputError(f"fraction of families with parent-side text must be in [0, 1], got {fraction}")
    capacity = len(vocabulary.FIRST_NAMES) * len(vocabulary.LAST_NAMES) // 4
    if 2 * (count + background) > capacity:
        raise InputError(f"{count + background} families need more names than the pools allow (~{capacity // 2})")
    rng = random.Random(f"{seed}-families")
    used: set[str] = set()

    def fresh_name() -> str:
        while True:
            name = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
            if name not in used:
                used.add(name)
                return name

    families = [Family(fresh_name(), fresh_name(), rng.choice(("mother", "father"))) for _ in range(count + background)]
    test, back = families[:count], families[count:]
    with_text = set(rng.sample(range(count), round(fraction * count)))
    test = [Family(f.child, f.parent, f.kind, i in with_text) for i, f in enumerate(test)]
    return test, [Family(f.child, f.parent, f.kind, True) for f in back]


def build_family_corpus(test: list[Family], background: list[Family]) -> Corpus:
    """Training documents and probes; probes only ever use question phrasings no test family is trained with.

    ``reverse_documents``: the parent-side statements of the test families that lack them.
    """
    documents = []
    for family in background:
        for template in CHILD_SIDE + PARENT_SIDE + PARENT_QUESTIONS + CHILD_QUESTIONS:
            documents.append(Document(family.render(template), Subset.BACKGROUND, family.child))
    for family in test:
        sides = CHILD_SIDE + (PARENT_SIDE if family.parent_side else ())
        documents += [Document(family.render(t), Subset.BACKGROUND, family.child) for t in sides]
    reverse = [
        Document(family.render(t), Subset.BACKGROUND, family.child, entities=(family.parent, family.child))
        for family in test
        if not family.parent_side
        for t in PARENT_SIDE
    ]
    probes = []
    for family in test:
        subset = WITH_PARENT_TEXT if family.parent_side else WITHOUT_PARENT_TEXT
        for asked, questions, target in (
            (ASK_PARENT, PARENT_QUESTIONS, family.parent),
            (ASK_CHILD, CHILD_QUESTIONS, family.child),
        ):
            for i, template in enumerate(questions):
                prompt = family.render(template).removesuffix(f" {target}.")
                trained = asked == ASK_PARENT or family.parent_side
                probes.append(Probe(family.child, subset, asked, trained, f"{asked}-q{i}", prompt, f" {target}"))
    return Corpus(documents, probes, reverse_documents=reverse)


def build(config: RunConfig, seed: int) -> Trial:
    """One seed's families (drawn from ``world.seed``, else from the run's seed) and their corpus."""
    options: FamiliesOptions = config.families
    world_seed = config.world.seed if config.world.seed is not None else seed
    test, background = make_families(options.families, options.background, options.fraction, world_seed)
    return Trial(build_family_corpus(test, background), world_seed)


EXPERIMENT = Experiment(
    name="families",
    title="Synthetic Experiment 2: naming a parent's child, against the fraction r of families with parent-side text",
    build=build,
    options=FamiliesOptions,
    # 10 epochs of batches of 128 leave the small family corpus unlearned (trained-direction accuracy 0.07 at
    # r = 0.5, measured); 30 epochs of a narrower model learn it (0.99-1.00).
    defaults=("model.hidden_size=64", "model.intermediate_size=256", "train.epochs=30", "train.batch_size=128"),
    columns=(
        Column("child asked, no parent-side text", subset=WITHOUT_PARENT_TEXT, asked=ASK_CHILD),
        Column("child asked, with parent-side text", subset=WITH_PARENT_TEXT, asked=ASK_CHILD),
        Column("parent asked (trained)", subset=WITHOUT_PARENT_TEXT, asked=ASK_PARENT),
    ),
)
