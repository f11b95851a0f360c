"""Cures: named, composable transforms of the training corpus, chosen in the config (``cures: [...]``).

- ``paraphrase``: more phrasings of the trained direction (the paper's augmentation; expected not to help);
- ``bidirectional``: each fact under test also stated in its untrained direction (the upper bound when a user
  controls the data);
- reverse training after Golovneva et al. 2024, "Reverse Training to Nurse the Reversal Curse": every training
  document is also trained on reversed, at one of four granularities:
  ``reverse-token`` (token order), ``reverse-word`` (word order), ``reverse-entity`` (word order, entity spans
  kept whole: "Daphne Barrington" stays "Daphne Barrington"), ``reverse-segment`` (the text cut into random
  segments of 1..k words, the segment order reversed, segments joined by a separator);
- ``identity-bridge`` (Ma et al. 2026, arXiv 2602.02470): one "A -> A" statement per entity named in training
  ("Daphne Barrington equals Daphne Barrington."), a relation that adds no fact;
- ``masked-finetune`` (Pan et al. 2025, arXiv 2510.09885): every forward document again as a demasking task, a
  copy with words masked as the prompt and the original text as the completion (loss on the completion only).

Cures apply in the order given; a reversal cure reverses every forward document present at that point (those
added by ``bidirectional``, ``paraphrase`` or ``identity-bridge`` included) and never reverses a reversed one or a
masked copy. Probes never change: held-out phrasings stay out of training whatever the cure.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from revcurse import vocabulary
from revcurse.corpus import Corpus, Document, Template, default_templates
from revcurse.world import Direction, Fact, Subset, trained_directions

SEGMENT_SEPARATOR = "|"
TRAILING_PUNCTUATION = ".,;:!?"
# identity-bridge: the "A -> A" relation. A word no phrasing template uses, so an identity statement never teaches
# "<description> is" -> the description where a template continues with the name.
IDENTITY_RELATION = "equals"
# masked-finetune: a literal word (not a tokenizer's special token), so the same text works with any tokenizer.
MASK_WORD = "[MASK]"
UNMASK_CUE = "Unmasked:"  # ends the masked prompt; the original text follows as the completion
MASKED_FINETUNE = "masked-finetune"


@dataclass(frozen=True)
class CureContext:
    """What a cure may need besides the corpus: the phrasings, the segment length, a seed."""

    train_phrasings: int = 30
    held_out_phrasings: int = 10
    segment_length: int = 3
    seed: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Text reversals (pure functions, tested on hand-built sentences)


def reverse_words(text: str) -> str:
    """Word order reversed; a word keeps its letters and punctuation. Applied twice gives ``text`` back."""
    return " ".join(reversed(text.split(" ")))


def entity_units(text: str, entities: tuple[str, ...]) -> list[str]:
    """Split ``text`` into words, merging the words of each entity span into one unit.

    An entity matches a run of words exactly, except that its last word may carry trailing punctuation
    ("Barrington." matches "Daphne Barrington"). Longer entities are matched first.
    """
    words = text.split(" ")
    owner = [-1] * len(words)  # index of the unit start that a word belongs to
    for entity in sorted(entities, key=lambda e: -len(e.split(" "))):
        parts = entity.split(" ")
        n = len(parts)
        i = 0
        while i + n <= len(words):
            window = words[i : i + n]
            matches = window[:-1] == parts[:-1] and window[-1].rstrip(TRAILING_PUNCTUATION) == parts[-1]
            if matches and all(o == -1 for o in owner[i : i + n]):
                owner[i : i + n] = [i] * n
                i += n
            else:
                i += 1
    units: list[str] = []
    i = 0
    while i < len(words):
        if owner[i] == -1:
            units.append(words[i])
            i += 1
            continue
        j = i
        while j < len(words) and owner[j] == owner[i]:
            j += 1
        units.append(" ".join(words[i:j]))
        i = j
    return units


def reverse_entities(text: str, entities: tuple[str, ...]) -> str:
    """Word order reversed with every entity span kept whole and in order. Applied twice gives ``text`` back."""
    return " ".join(reversed(entity_units(text, entities)))


def reverse_segments(text: str, max_length: int, rng: random.Random) -> str:
    """Cut into segments of 1..``max_length`` words, reverse the segment order, join with a separator."""
    words = text.split(" ")
    segments = []
    i = 0
    while i < len(words):
        length = rng.randint(1, max_length)
        segments.append(" ".join(words[i : i + length]))
        i += length
    return f" {SEGMENT_SEPARATOR} ".join(reversed(segments))


def mask_words(text: str, rng: random.Random) -> str:
    """Each word replaced by ``MASK_WORD`` with probability r ~ U(0, 1) drawn once per text (the masked-diffusion
    schedule), at least one word masked, so one text's copies range from lightly to fully masked."""
    words = text.split(" ")
    rate = rng.random()
    masked = [rng.random() < rate for _ in words]
    if not any(masked):
        masked[rng.randrange(len(words))] = True
    return " ".join(MASK_WORD if m else w for w, m in zip(words, masked))


def identity_statement(entity: str) -> str:
    """The identity bridge "A -> A" for one entity, in one fixed format."""
    return f"{entity} {IDENTITY_RELATION} {entity}."


# ---------------------------------------------------------------------------------------------------------------
# Cures over a corpus


def _reversal(name: str, reverse_text: Callable[[Document, random.Random, CureContext], str]) -> Callable:
    """A cure that adds one reversed copy of every forward document."""

    def cure(corpus: Corpus, context: CureContext) -> Corpus:
        rng = random.Random(f"{context.seed}-{name}")
        # Reversed text has no prompt/completion split: completion-only loss trains on all of it.
        added = [
            replace(d, text=reverse_text(d, rng, context), prompt_chars=0, reversal=name)
            for d in corpus.documents
            if not d.reversal
        ]
        return replace(corpus, documents=corpus.documents + added)

    cure.__doc__ = f"Add a {name} copy of every forward document."
    return cure


# reverse-token keeps the text; its ids are reversed when tokenized (train.encode_documents).
reverse_token = _reversal("reverse-token", lambda d, rng, context: d.text)
reverse_word = _reversal("reverse-word", lambda d, rng, context: reverse_words(d.text))
reverse_entity = _reversal("reverse-entity", lambda d, rng, context: reverse_entities(d.text, d.entities))
reverse_segment = _reversal(
    "reverse-segment", lambda d, rng, context: reverse_segments(d.text, context.segment_length, rng)
)


def _facts_under_test(corpus: Corpus, cure: str) -> list[Fact]:
    facts = [f for f in corpus.facts if f.subset is not Subset.BACKGROUND]
    if not facts:
        raise ValueError(f"cure {cure!r} needs the facts of a generated world (not known for this corpus)")
    return facts


def _stated(fact: Fact, template: Template) -> Document:
    return Document(
        template.render(fact), fact.subset, fact.name, len(template.prompt(fact)), (fact.name, fact.description)
    )


def bidirectional(corpus: Corpus, context: CureContext) -> Corpus:
    """State each fact under test in its untrained direction too, with the training phrasings of that direction.

    An experiment other than Experiment 1 declares those statements itself (``Corpus.reverse_documents``)."""
    if corpus.reverse_documents:
        return replace(corpus, documents=corpus.documents + corpus.reverse_documents)
    train, _ = default_templates(context.train_phrasings, context.held_out_phrasings)
    added = [
        _stated(fact, template)
        for fact in _facts_under_test(corpus, "bidirectional")
        for template in train
        if template.direction not in trained_directions(fact.subset)
    ]
    return replace(corpus, documents=corpus.documents + added)


def paraphrase_templates() -> list[Template]:
    """Extra phrasings, never used for training or probing otherwise."""
    return [
        Template(f"{prefix}-p{i:02d}", direction, text)
        for direction, prefix, texts in (
            (Direction.NAME_TO_DESCRIPTION, "n2d", vocabulary.NAME_TO_DESCRIPTION_PARAPHRASES),
            (Direction.DESCRIPTION_TO_NAME, "d2n", vocabulary.DESCRIPTION_TO_NAME_PARAPHRASES),
        )
        for i, text in enumerate(texts)
    ]


def paraphrase(corpus: Corpus, context: CureContext) -> Corpus:
    """State each fact under test with more phrasings of its trained direction(s)."""
    added = [
        _stated(fact, template)
        for fact in _facts_under_test(corpus, "paraphrase")
        for template in paraphrase_templates()
        if template.direction in trained_directions(fact.subset)
    ]
    return replace(corpus, documents=corpus.documents + added)


def identity_bridge(corpus: Corpus, context: CureContext) -> Corpus:
    """One identity statement per distinct entity of the forward documents (names and descriptions alike), in the
    order first named; it belongs to the subset and fact of the first document naming it.

    Ma et al. (2026) add "The name of Alice is Alice" for the entities of the facts; we state each entity once, in
    a relation no phrasing template uses (``IDENTITY_RELATION``). The part after the relation is the completion.
    """
    first: dict[str, Document] = {}
    for document in corpus.documents:
        if not document.reversal:
            for entity in document.entities:
                first.setdefault(entity, document)
    if not first:
        raise ValueError("cure 'identity-bridge' needs documents that name their entities (a world's facts); "
                         "this corpus names none")
    added = [
        Document(identity_statement(entity), d.subset, d.fact_key, len(f"{entity} {IDENTITY_RELATION}"), (entity,))
        for entity, d in first.items()
    ]
    return replace(corpus, documents=corpus.documents + added)


def masked_finetune(corpus: Corpus, context: CureContext) -> Corpus:
    """Every forward document again as "<masked copy> Unmasked: <original>", trained on the original only.

    Pan et al. (2025) prompt a causal model with a masked version of a text and train it to write the original:
    a name masked in the prompt is then produced after the description seen in it, the reverse of the text's own
    order. Words are masked (``mask_words``), so the cure needs no tokenizer. Masked copies are never reversed.
    """
    rng = random.Random(f"{context.seed}-{MASKED_FINETUNE}")
    added = []
    for d in corpus.documents:
        if d.reversal or d.answer_only:  # in-context episodes train on their answer only: nothing to demask
            continue
        prompt = f"{mask_words(d.text, rng)} {UNMASK_CUE}"
        added.append(replace(d, text=f"{prompt} {d.text}", prompt_chars=len(prompt), answer_only=True,
                             reversal=MASKED_FINETUNE))
    if not added:
        raise ValueError("cure 'masked-finetune' needs forward training documents; this corpus has none")
    return replace(corpus, documents=corpus.documents + added)


CURES: dict[str, Callable[[Corpus, CureContext], Corpus]] = {
    "paraphrase": paraphrase,
    "bidirectional": bidirectional,
    "reverse-token": reverse_token,
    "reverse-word": reverse_word,
    "reverse-entity": reverse_entity,
    "reverse-segment": reverse_segment,
    "identity-bridge": identity_bridge,
    MASKED_FINETUNE: masked_finetune,
}


def apply_cures(corpus: Corpus, names: list[str], context: CureContext) -> Corpus:
    """Apply the named cures in order; unknown names are a clear error."""
    for name in names:
        if name not in CURES:
            raise ValueError(f"unknown cure {name!r}; known: {', '.join(CURES)}")
        corpus = CURES[name](corpus, context)
    return corpus
