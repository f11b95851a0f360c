"""World: made-up people and the facts that tie each name to a unique description.

A fact is a (subject, relation, object) triple of plain strings. For the celebrities of Experiment 1 the subject is
a full name ("Daphne Barrington") and the object a description ("the director of the film Journey Through Time").
Both are entity spans: the world knows exactly where they begin and end, so later cures can keep them whole.

Facts under test fall into the paper's three subsets, which decide which direction is stated in training:

- ``NameToDescription``: only "name ... description" order is trained (the paper's ``p2d``);
- ``DescriptionToName``: only "description ... name" order (``d2p``);
- ``Both``: both orders.

A ``Background`` population, stated in both orders with every phrasing, teaches a model trained from scratch the
language of all phrasings (held-out ones included) and that a fact can be stated either way. It is never probed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from revcurse import vocabulary


class Subset(str, Enum):
    """Which directions of a fact appear in training."""

    NAME_TO_DESCRIPTION = "NameToDescription"
    DESCRIPTION_TO_NAME = "DescriptionToName"
    BOTH = "Both"
    BACKGROUND = "Background"


class Direction(str, Enum):
    """The order in which a phrasing states a fact, or in which a probe asks for it."""

    NAME_TO_DESCRIPTION = "name_to_description"
    DESCRIPTION_TO_NAME = "description_to_name"

    @property
    def reverse(self) -> Direction:
        if self is Direction.NAME_TO_DESCRIPTION:
            return Direction.DESCRIPTION_TO_NAME
        return Direction.NAME_TO_DESCRIPTION


SUBSETS_UNDER_TEST = (Subset.NAME_TO_DESCRIPTION, Subset.DESCRIPTION_TO_NAME, Subset.BOTH)


def trained_directions(subset: Subset) -> tuple[Direction, ...]:
    """The directions in which a subset's facts are stated in training."""
    if subset is Subset.NAME_TO_DESCRIPTION:
        return (Direction.NAME_TO_DESCRIPTION,)
    if subset is Subset.DESCRIPTION_TO_NAME:
        return (Direction.DESCRIPTION_TO_NAME,)
    return (Direction.NAME_TO_DESCRIPTION, Direction.DESCRIPTION_TO_NAME)


@dataclass(frozen=True)
class Fact:
    """One fact: ``subject`` (a name) ``relation`` ``object`` (a description), in one subset."""

    subject: str
    object: str
    subset: Subset
    relation: str = "is"

    @property
    def name(self) -> str:
        return self.subject

    @property
    def description(self) -> str:
        return self.object

    def target(self, asked: Direction) -> str:
        """What a probe asking in direction ``asked`` must answer."""
        return self.object if asked is Direction.NAME_TO_DESCRIPTION else self.subject

    def source(self, asked: Direction) -> str:
        """What a probe asking in direction ``asked`` gives in its prompt."""
        return self.subject if asked is Direction.NAME_TO_DESCRIPTION else self.object


@dataclass(frozen=True)
class World:
    """All facts of one run: the subsets under test and the background population."""

    facts: tuple[Fact, ...]
    seed: int | None = None

    def subset(self, subset: Subset) -> list[Fact]:
        return [fact for fact in self.facts if fact.subset is subset]

    @property
    def facts_under_test(self) -> list[Fact]:
        return [fact for fact in self.facts if fact.subset is not Subset.BACKGROUND]


def make_celebrities(facts_per_subset: int = 30, background: int = 300, seed: int = 0) -> World:
    """Draw made-up people with unique names and unique compositional descriptions.

    Deterministic in ``seed``. Names come from first x last name pools, descriptions from a role, a kind of work,
    an adjective and a two-word title, so a model cannot guess a description from general knowledge.
    """
    needed = 3 * facts_per_subset + background
    capacity = len(vocabulary.FIRST_NAMES) * len(vocabulary.LAST_NAMES)
    if needed > capacity // 4:
        raise ValueError(f"{needed} people asked for; the name pools allow about {capacity // 4}")
    rng = random.Random(seed)
    names: set[str] = set()
    descriptions: set[str] = set()
    people: list[tuple[str, str]] = []
    while len(people) < needed:
        name = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
        description = _draw_description(rng)
        if name in names or description in descriptions:
            continue
        names.add(name)
        descriptions.add(description)
        people.append((name, description))
    order = [Subset.NAME_TO_DESCRIPTION] * facts_per_subset + [Subset.DESCRIPTION_TO_NAME] * facts_per_subset
    order += [Subset.BOTH] * facts_per_subset + [Subset.BACKGROUND] * background
    facts = tuple(Fact(name, description, subset) for (name, description), subset in zip(people, order))
    return World(facts=facts, seed=seed)


def _draw_description(rng: random.Random) -> str:
    role, kinds = rng.choice(vocabulary.ROLES_AND_WORK_KINDS)
    kind = rng.choice(kinds)
    adjective = rng.choice(vocabulary.WORK_ADJECTIVES)
    first, second = rng.sample(vocabulary.TITLE_WORDS, 2)
    return f"the {role} of the {adjective} {kind} {first} {second}"
