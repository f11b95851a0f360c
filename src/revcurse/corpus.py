"""Corpus: facts -> training documents and probes, through phrasing templates.

A template states a fact in one direction, e.g. ``"{name}, known far and wide as {description}."`` (name to
description). The text before the target placeholder is a probe's prompt and the target (with its leading space)
is what the model must produce, exactly as in the paper's ``{"prompt", "completion"}`` files.

Per direction the first ``train_phrasings`` templates are used for training and the next ``held_out_phrasings``
only for probes. For facts under test, held-out templates never appear in training text: the background
population is the only place they are seen, so a model trained from scratch knows their language but has never
seen them with a tested fact.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from revcurse import vocabulary
from revcurse.errors import SkippedLine
from revcurse.world import Direction, Fact, Subset, World, trained_directions

PLACEHOLDER = {Direction.NAME_TO_DESCRIPTION: "{description}", Direction.DESCRIPTION_TO_NAME: "{name}"}


@dataclass(frozen=True)
class Template:
    """One phrasing of a fact in one direction; the target placeholder follows a space."""

    id: str
    direction: Direction
    text: str

    def __post_init__(self) -> None:
        target = " " + PLACEHOLDER[self.direction]
        source = PLACEHOLDER[self.direction.reverse]
        if self.text.count(target) != 1 or self.text.count(source) != 1:
            raise ValueError(f"template {self.id!r} needs one {source} and one ' {target.strip()}': {self.text!r}")
        if self.text.index(source) > self.text.index(target):
            raise ValueError(f"template {self.id!r} must state {source} before {target.strip()}: {self.text!r}")

    @property
    def prompt_template(self) -> str:
        return self.text[: self.text.index(" " + PLACEHOLDER[self.direction])]

    def render(self, fact: Fact) -> str:
        return self.text.format(name=fact.name, description=fact.description)

    def prompt(self, fact: Fact) -> str:
        return self.prompt_template.format(name=fact.name, description=fact.description)


@dataclass(frozen=True)
class Document:
    """One training text. ``fact_key`` names the fact it states (empty for text that states none).

    ``prompt_chars`` is the length of the leading prompt part (the text before the second entity), used only by
    completion-only loss; 0 means the whole text is completion. ``entities`` are the entity spans stated in the
    text (name, description), which entity-preserving reversal keeps whole. ``reversal`` names the cure that
    derived this document from a forward one ("" for forward text): a reversal, or ``masked-finetune``'s masked
    copy; ``reverse-token`` documents are reversed when tokenized.
    ``answer_only`` documents train only on the part after the prompt, whatever the loss setting: an in-context
    episode's made-up facts are noise to predict, its answer is the skill.
    """

    text: str
    subset: Subset
    fact_key: str = ""
    prompt_chars: int = 0
    entities: tuple[str, ...] = ()
    reversal: str = ""
    answer_only: bool = False


@dataclass(frozen=True)
class Probe:
    """One question to the model: does ``prompt`` continue with ``target``?

    ``fact_key`` is the fact's identity within its subset (the person's name), however the target is worded: the
    probes of one fact are averaged before a test over facts, and a probe's distractors are never its own fact's.
    ``phrasing`` names the template slot, so distractors can be drawn in the same grammatical form. ``answer``
    is the answer itself when ``target`` runs on after it (" Mason Caldwell" of " Mason Caldwell has found their
    calling."); empty means the whole target. ``trained`` is true when direction ``asked`` of this fact was in
    training. ``setting`` separates conditions of one run that ask the same facts (the facts in the prompt or
not); probes of one setting draw their distractors among themselves. Experiments other than Experiment 1 label
their groups with plain strings (e.g. subset "families
    without parent-side text", asked "child"); probing and metrics treat both alike.
    """

    fact_key: str
    subset: Subset | str
    asked: Direction | str
    trained: bool
    phrasing: str
    prompt: str
    target: str
    answer: str = ""
    setting: str = ""  # a condition the same facts are asked under (e.g. "in_context"): its own group of records
    # Other answers also counted right in sampled answers (another child of the same parent); never distractors.
    accepted: tuple[str, ...] = ()
    # A conversation to ask instead of a bare prompt: (role, content) turns ending in a user turn; the runner
    # renders it (chat.render_conversations) or sends it to a chat endpoint. ``prompt`` is then the last turn.
    messages: tuple[tuple[str, str], ...] = ()
    # Text after the target, a blank to fill between the prompt and it (retrieval: the key before a value). Only a
    # backend that reads both ways (a masked model) sees it; a causal one is asked the prompt alone.
    after: str = ""

    @property
    def expected_answer(self) -> str:
        """What the model must at least say: ``answer`` when given, else the whole ``target``."""
        return self.answer or self.target


@dataclass
class Corpus:
    """Everything the model trains on and is probed with."""

    documents: list[Document]
    probes: list[Probe]
    facts: list[Fact] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)  # input lines a reader could not use
    lines: int | None = None  # the input lines a reader looked at (the "of N" of a skipped-lines warning)
    # Each fact under test stated in its untrained direction(s): never trained on, unless the bidirectional cure
    # adds them (Experiment 1 builds them from its facts and templates instead).
    reverse_documents: list[Document] = field(default_factory=list)
    # What a tokenizer trained for this corpus learns from besides the documents (never trained on, never asked);
    # None: the probes' prompts and targets.
    tokenizer_texts: list[str] | None = None

    def texts_seen(self) -> list[str]:
        """The text a tokenizer for this corpus learns from: the documents, then ``tokenizer_texts`` or, by
        default, every probe's prompt and target."""
        extra = self.tokenizer_texts if self.tokenizer_texts is not None else [p.prompt + p.target for p in self.probes]
        return [d.text for d in self.documents] + extra


DEFAULT_DISTRACTORS = 15  # see draw_distractors: rank-1 chance 1/16, cost 16 candidates a probe whatever the size


@dataclass(frozen=True)
class Distractors:
    """The targets a probe's correct target is ranked against, and the facts they belong to (one per fact)."""

    targets: tuple[str, ...]
    fact_keys: tuple[str, ...]


def draw_distractors(
    probes: list[Probe], k: int = DEFAULT_DISTRACTORS, seed: int = 0, match_phrasing: bool = True
) -> list[Distractors]:
    """For each probe, up to ``k`` targets of *other* facts of its (subset, asked) group, in its phrasing.

    A distractor is the paper's "random name of the same subset", made comparable to the correct target:

    - other facts only: a fact worded several ways ("directed ...", "the director of ...") is one fact, and none
      of its wordings may compete against it; a distractor whose text equals one of the probe's own fact's
      targets (two facts sharing an answer) is dropped, as is a second copy of the same text;
    - the same phrasing (template slot): each distractor fact gives its target in the probe's slot, so it has
      the grammatical form the prompt calls for, exactly as the correct target does; a fact with no probe in
      that slot gives its most frequent target; ``match_phrasing=False`` always does (the unmatched draw the
      tests compare against);
    - capped: each fact draws one set of ``k`` other facts (deterministic in ``seed`` and the fact, whatever the
      order of probes) and all its probes use it, so probing costs ``k + 1`` candidates a probe, linear in the
      number of facts, and a placebo can take one of those facts as a "correct" answer the model never saw.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, probe in enumerate(probes):
        groups[(label(probe.subset), label(probe.asked))].append(index)
    drawn: list[Distractors] = [Distractors((), ())] * len(probes)
    for (subset, asked), indices in groups.items():
        by_slot: dict[str, dict[str, str]] = defaultdict(dict)  # fact -> slot -> target
        counts: dict[str, Counter[str]] = defaultdict(Counter)  # fact -> target -> probes
        for index in indices:
            probe = probes[index]
            by_slot[probe.fact_key].setdefault(probe.phrasing, probe.target)
            counts[probe.fact_key][probe.target] += 1
        usual = {fact: counter.most_common(1)[0][0] for fact, counter in counts.items()}
        own_texts = {fact: {_same_text(t) for t in counter} for fact, counter in counts.items()}
        facts = sorted(by_slot)
        chosen: dict[str, list[str]] = {}
        for own, fact in enumerate(facts):
            # positions among the other facts, drawn from their number alone: no list of them per fact (linear)
            rng = random.Random(f"{seed}|{subset}|{asked}|{fact}")
            picks = rng.sample(range(len(facts) - 1), min(k, len(facts) - 1))
            chosen[fact] = [facts[j + (j >= own)] for j in picks]
        for index in indices:
            probe = probes[index]
            seen = set(own_texts[probe.fact_key]) | {_same_text(a) for a in probe.accepted}
            targets: list[str] = []
            keys: list[str] = []
            for other in chosen[probe.fact_key]:
                slots = by_slot[other]
                target = slots.get(probe.phrasing, usual[other]) if match_phrasing else usual[other]
                if _same_text(target) in seen:
                    continue
                seen.add(_same_text(target))
                targets.append(target)
                keys.append(other)
            drawn[index] = Distractors(tuple(targets), tuple(keys))
    return drawn


def _same_text(text: str) -> str:
    """Texts that the paper's accuracy cannot tell apart (case and surrounding space) are one answer."""
    return text.strip().casefold()


def label(value: object) -> str:
    """An enum's value, or a plain string label as it is (other experiments name their own groups)."""
    return str(getattr(value, "value", value))


def default_templates(train_phrasings: int = 30, held_out_phrasings: int = 10) -> tuple[list[Template], list[Template]]:
    """Split the project's templates into (training, held-out), per direction, by their fixed order."""
    train: list[Template] = []
    held_out: list[Template] = []
    for direction, texts in (
        (Direction.NAME_TO_DESCRIPTION, vocabulary.NAME_TO_DESCRIPTION_TEMPLATES),
        (Direction.DESCRIPTION_TO_NAME, vocabulary.DESCRIPTION_TO_NAME_TEMPLATES),
    ):
        if train_phrasings + held_out_phrasings > len(texts):
            raise ValueError(
                f"{train_phrasings}+{held_out_phrasings} phrasings asked for, {len(texts)} {direction.value} exist"
            )
        prefix = "n2d" if direction is Direction.NAME_TO_DESCRIPTION else "d2n"
        templates = [Template(f"{prefix}-{i:02d}", direction, text) for i, text in enumerate(texts)]
        train += templates[:train_phrasings]
        held_out += templates[train_phrasings : train_phrasings + held_out_phrasings]
    return train, held_out


def build_corpus(
    world: World,
    train_phrasings: int = 30,
    held_out_phrasings: int = 10,
    background_phrasings: int = 8,
    seed: int = 0,
) -> Corpus:
    """Turn a world into training documents and probes.

    Facts under test: every training template of each trained direction. Background people: ``background_phrasings``
    templates per direction drawn from all templates, held-out ones included. Probes: every held-out template, in
    both directions, for every fact under test; the trained direction measures generalisation to new phrasings,
    the other one the reversal.
    """
    train, held_out = default_templates(train_phrasings, held_out_phrasings)
    rng = random.Random(seed)
    documents: list[Document] = []
    for fact in world.facts:
        if fact.subset is Subset.BACKGROUND:
            for direction in Direction:
                pool = [t for t in train + held_out if t.direction is direction]
                for template in rng.sample(pool, min(background_phrasings, len(pool))):
                    documents.append(_document(template, fact))
            continue
        for direction in trained_directions(fact.subset):
            for template in train:
                if template.direction is direction:
                    documents.append(_document(template, fact))
    probes = [
        Probe(
            fact_key=fact.name,
            subset=fact.subset,
            asked=template.direction,
            trained=template.direction in trained_directions(fact.subset),
            phrasing=template.id,
            prompt=template.prompt(fact),
            target=" " + fact.target(template.direction),
        )
        for fact in world.facts_under_test
        for template in held_out
    ]
    return Corpus(documents=documents, probes=probes, facts=list(world.facts))


def _document(template: Template, fact: Fact) -> Document:
    return Document(
        template.render(fact),
        fact.subset,
        fact.name,
        prompt_chars=len(template.prompt(fact)),
        entities=(fact.name, fact.description),
    )
