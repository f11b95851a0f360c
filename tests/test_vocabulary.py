"""Tests for revcurse.vocabulary: pool sizes and hygiene, template shape, and the prompt prefix rule."""

from __future__ import annotations

import itertools
import re

import pytest

from revcurse import vocabulary
from revcurse.corpus import Template
from revcurse.world import Direction, make_celebrities

N2D = vocabulary.NAME_TO_DESCRIPTION_TEMPLATES
D2N = vocabulary.DESCRIPTION_TO_NAME_TEMPLATES
N2D_PARA = vocabulary.NAME_TO_DESCRIPTION_PARAPHRASES
D2N_PARA = vocabulary.DESCRIPTION_TO_NAME_PARAPHRASES
ALL_TEMPLATES = [(Direction.NAME_TO_DESCRIPTION, t) for t in N2D + N2D_PARA] + [
    (Direction.DESCRIPTION_TO_NAME, t) for t in D2N + D2N_PARA
]
TARGET = {Direction.NAME_TO_DESCRIPTION: "{description}", Direction.DESCRIPTION_TO_NAME: "{name}"}
CAPITALISED_WORD = re.compile(r"[A-Z][a-z]+")
LOWER_WORD = re.compile(r"[a-z]+")


def prompt(direction: Direction, text: str) -> str:
    return text[: text.index(" " + TARGET[direction])]


# --- pools -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "minimum"),
    [
        (vocabulary.FIRST_NAMES, 150),
        (vocabulary.LAST_NAMES, 150),
        (vocabulary.ROLES_AND_WORK_KINDS, 30),
        (vocabulary.WORK_ADJECTIVES, 40),
        (vocabulary.TITLE_WORDS, 150),
    ],
)
def test_pool_is_large_enough_and_distinct(pool, minimum):
    assert len(pool) >= minimum
    assert len(set(pool)) == len(pool)


@pytest.mark.parametrize("pool", [vocabulary.FIRST_NAMES, vocabulary.LAST_NAMES, vocabulary.TITLE_WORDS])
def test_capitalised_ascii_words(pool):
    for word in pool:
        assert CAPITALISED_WORD.fullmatch(word), word


def test_name_pools_do_not_overlap_each_other_or_titles():
    first, last, titles = set(vocabulary.FIRST_NAMES), set(vocabulary.LAST_NAMES), set(vocabulary.TITLE_WORDS)
    assert not first & last
    assert not (first | last) & titles


def test_enough_name_combinations():
    assert len(vocabulary.FIRST_NAMES) * len(vocabulary.LAST_NAMES) >= 10_000


def test_adjectives_are_lowercase_single_words():
    for adjective in vocabulary.WORK_ADJECTIVES:
        assert LOWER_WORD.fullmatch(adjective), adjective


def test_roles_and_kinds():
    roles = [role for role, _ in vocabulary.ROLES_AND_WORK_KINDS]
    assert len(set(roles)) == len(roles)
    for role, kinds in vocabulary.ROLES_AND_WORK_KINDS:
        assert LOWER_WORD.fullmatch(role), role
        assert 3 <= len(kinds) <= 6, role
        assert len(set(kinds)) == len(kinds), role
        for kind in kinds:
            words = kind.split(" ")
            assert 1 <= len(words) <= 2, kind
            assert all(LOWER_WORD.fullmatch(word) for word in words), kind


# --- templates -------------------------------------------------------------------------------------------------


def test_template_counts():
    assert len(N2D) == 40
    assert len(D2N) == 40
    assert len(set(N2D) | set(D2N)) == 80


def test_paraphrase_counts_and_novelty():
    assert len(N2D_PARA) == 30
    assert len(D2N_PARA) == 30
    assert len(set(N2D_PARA) | set(D2N_PARA)) == 60
    assert not (set(N2D_PARA) | set(D2N_PARA)) & (set(N2D) | set(D2N))
    assert len(ALL_TEMPLATES) == 140


@pytest.mark.parametrize(("direction", "text"), ALL_TEMPLATES)
def test_template_shape(direction, text):
    source = TARGET[direction.reverse]
    target = TARGET[direction]
    assert text.count("{name}") == 1
    assert text.count("{description}") == 1
    assert text.count(" " + target) == 1
    assert text.index(source) < text.index(target)
    assert not text.startswith("{description}")
    assert text.isascii()
    assert '"' not in text and "\n" not in text
    assert text.count("{") == 2 and text.count("}") == 2
    assert text.rstrip()[-1] in ".?!"


@pytest.mark.parametrize(("direction", "text"), ALL_TEMPLATES)
def test_template_builds_and_renders(direction, text):
    template = Template("t", direction, text)
    assert template.prompt_template == prompt(direction, text)
    rendered = text.format(
        name="Daphne Barrington", description="the composer of the underwater symphony Abyssal Melodies"
    )
    assert "{" not in rendered and "}" not in rendered


def test_no_prompt_is_a_prefix_of_another_template():
    # Over all 140 templates: the 80 base templates and the 60 paraphrases together.
    for (d1, t1), (d2, t2) in itertools.permutations(ALL_TEMPLATES, 2):
        p1 = prompt(d1, t1)
        assert not prompt(d2, t2).startswith(p1), (t1, t2)
        assert not t2.startswith(p1), (t1, t2)


def test_held_out_prompts_do_not_end_where_training_text_goes_on_otherwise():
    """A held-out prompt's last two words, where training phrasings have them, must be followed by the target in
    at least one: "... goes by" was held out while training had only "... goes by the name {name}", and the model
    answered "the name Kester Pettigrew" (right person, scored wrong) on every fact."""
    training = [t for texts in (N2D[:30], D2N[:30], N2D_PARA, D2N_PARA) for t in texts]
    for direction, text in [(Direction.NAME_TO_DESCRIPTION, t) for t in N2D[30:]] + [
        (Direction.DESCRIPTION_TO_NAME, t) for t in D2N[30:]
    ]:
        ending = " ".join(prompt(direction, text).split()[-2:])
        following = [t[t.index(ending + " ") + len(ending) + 1 :] for t in training if ending + " " in t]
        assert not following or any(f.startswith("{") for f in following), (text, following)


def test_prompts_are_short():
    for direction, text in ALL_TEMPLATES:
        words = prompt(direction, text).replace("{name}", "").replace("{description}", "").split()
        assert len(words) <= 12, text


# --- world built from the pools --------------------------------------------------------------------------------


def test_make_celebrities_gives_unique_names_and_descriptions():
    world = make_celebrities(30, 300, seed=0)
    names = [fact.name for fact in world.facts]
    descriptions = [fact.description for fact in world.facts]
    assert len(names) == 390
    assert len(set(names)) == len(names)
    assert len(set(descriptions)) == len(descriptions)
    assert all(description.startswith("the ") for description in descriptions)
