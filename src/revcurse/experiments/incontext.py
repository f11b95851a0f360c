"""In context: the control that makes the curse meaningful.

The Reversal Curse is a failure of learning in weights: with "A is B" in its prompt, a model answers "who is B?"
fine. To show this on Experiment 1's world, a model trained from scratch must first learn to read its context, so
its training corpus gains *episodes*: a few facts, then a question about one of them in either direction, then the
answer. Episode people are made up afresh for every episode (a name and a description drawn from the same pools,
never a fact under test), so memory cannot answer and the model must copy from the prompt.

The probes then give each fact under test in the prompt, stated in its trained direction (beside
``facts_per_episode - 1`` distractor facts of the same subset), and ask it both ways: setting ``in_context``. The
same questions without the facts ask the weights: setting ``in_weights``. Both settings ask the one model of a
seed. With ``train.enabled: false`` nothing is trained: any model answers (``model.checkpoint``, or a server
through ``probe.backend: openai``).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pydantic import Field

from revcurse import vocabulary
from revcurse.corpus import Corpus, Document, Probe, Template, default_templates
from revcurse.errors import InputError
from revcurse.experiments import celebrities
from revcurse.experiments.base import Column, Experiment, Trial
from revcurse.sections import Section
from revcurse.world import Direction, Fact, Subset, World, _draw_description, trained_directions

if TYPE_CHECKING:
    from revcurse.config import RunConfig

FACTS_HEADER = "Facts:"
QUESTIONS = {
    # asked direction -> question, as (text before the answer); the answer follows after a space
    Direction.NAME_TO_DESCRIPTION: "Question: Who is {name}? Answer:",
    Direction.DESCRIPTION_TO_NAME: "Question: Who is {description}? Answer:",
}
IN_CONTEXT = "in_context"
IN_WEIGHTS = "in_weights"
SETTINGS = (IN_CONTEXT, IN_WEIGHTS)


class IncontextOptions(Section):
    episodes: int = Field(
        6000, ge=0, description="training episodes (facts in the prompt, then a question) over made-up people"
    )
    facts_per_episode: int = Field(
        1, ge=1, description="facts in each episode's prompt (one is asked); the in-context probes show as many"
    )


def question(fact: Fact, asked: Direction) -> str:
    return QUESTIONS[asked].format(name=fact.name, description=fact.description)


def episode_prompt(statements: list[str], fact: Fact, asked: Direction) -> str:
    """The facts, then the question: the text a model continues with the answer."""
    return " ".join([FACTS_HEADER, *statements, question(fact, asked)])


def make_episodes(
    world: World, count: int, facts_per_episode: int, templates: list[Template], seed: int
) -> list[Document]:
    """Training episodes over made-up people seen nowhere else; questions asked in both directions equally.

    Names and descriptions of facts under test never appear, so an episode cannot leak a tested fact.
    """
    rng = random.Random(f"{seed}-episodes")
    taken_names = {fact.name for fact in world.facts_under_test}
    taken_descriptions = {fact.description for fact in world.facts_under_test}
    documents = []
    for _ in range(count):
        people: list[Fact] = []
        while len(people) < facts_per_episode:
            name = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
            description = _draw_description(rng)
            if name in taken_names or description in taken_descriptions or any(p.name == name for p in people):
                continue
            people.append(Fact(name, description, Subset.BACKGROUND))
        statements = [rng.choice(templates).render(person) for person in people]
        asked_about = rng.choice(people)
        asked = rng.choice(list(Direction))
        prompt = episode_prompt(statements, asked_about, asked)
        answer = asked_about.target(asked)
        documents.append(
            Document(
                f"{prompt} {answer}.",
                Subset.BACKGROUND,
                prompt_chars=len(prompt),
                entities=tuple(e for p in people for e in (p.name, p.description)),
                answer_only=True,
            )
        )
    return documents


def in_context_probes(
    world: World, train_phrasings: int, held_out_phrasings: int, seed: int, facts_in_prompt: int = 2
) -> list[Probe]:
    """One probe per fact under test, asked direction and setting: the in-context ones, then the in-weights ones.

    ``in_context``: the fact stated in (one of) its trained direction(s) with a training phrasing, beside
    ``facts_in_prompt - 1`` distractor facts of the same subset, in random order; then the question.
    ``in_weights``: the question alone.
    """
    train, _ = default_templates(train_phrasings, held_out_phrasings)
    rng = random.Random(f"{seed}-in-context-probes")
    probes: dict[str, list[Probe]] = {setting: [] for setting in SETTINGS}
    for subset in (Subset.NAME_TO_DESCRIPTION, Subset.DESCRIPTION_TO_NAME, Subset.BOTH):
        facts = world.subset(subset)
        for fact in facts:
            for asked in Direction:
                stated = rng.choice(trained_directions(subset))
                pool = [t for t in train if t.direction is stated]
                others = [f for f in facts if f != fact]
                shown = [fact, *rng.sample(others, min(len(others), facts_in_prompt - 1))]
                rng.shuffle(shown)
                statements = [rng.choice(pool).render(f) for f in shown]
                trained = asked in trained_directions(subset)
                target = " " + fact.target(asked)
                prompt = episode_prompt(statements, fact, asked)
                probes[IN_CONTEXT].append(
                    Probe(fact.name, subset, asked, trained, "in-context", prompt, target, setting=IN_CONTEXT)
                )
                probes[IN_WEIGHTS].append(
                    Probe(fact.name, subset, asked, trained, "in-weights", question(fact, asked), target,
                          setting=IN_WEIGHTS)
                )
    return probes[IN_CONTEXT] + probes[IN_WEIGHTS]


def build(config: RunConfig, seed: int) -> Trial:
    """Experiment 1's world and training documents plus episodes (when training), and the two probe settings."""
    options: IncontextOptions = config.incontext
    base = celebrities.build(config, seed)
    world = World(tuple(base.corpus.facts), base.world_seed)
    if not world.facts_under_test:
        raise InputError("in-context probes need facts under test (a generated world or paper folder)")
    phrasings = config.corpus
    probes = in_context_probes(
        world, phrasings.train_phrasings, phrasings.held_out_phrasings, base.world_seed, options.facts_per_episode
    )
    documents: list[Document] = []
    if config.train.enabled:  # episodes teach reading a context; a model asked as it is needs none
        templates, _ = default_templates(phrasings.train_phrasings, phrasings.held_out_phrasings)
        episodes = make_episodes(world, options.episodes, options.facts_per_episode, templates, base.world_seed)
        documents = base.corpus.documents + episodes
    # The tokenizer also learns Experiment 1's own text (its held-out questions too): the same vocabulary as the
    # measurements this control was first made with, so its in-weights arm matches Experiment 1's model.
    corpus = Corpus(documents, probes, list(world.facts), base.corpus.skipped,
                    tokenizer_texts=[p.prompt + p.target for p in probes] + base.corpus.texts_seen())
    return Trial(corpus, base.world_seed)


EXPERIMENT = Experiment(
    name="incontext",
    title="In-context control: the same questions with the facts in the prompt and without",
    build=build,
    options=IncontextOptions,
    # the training this control was measured with (10 epochs, batches of 128), longer than the embedded
    # default's 5 x 64: a from-scratch model needs the steps to learn to read its prompt
    defaults=("train.epochs=10", "train.batch_size=128"),
    columns=(
        Column("in context [95% CI]", setting=IN_CONTEXT),
        Column("in weights [95% CI]", setting=IN_WEIGHTS),
    ),
)
