"""Cures on hand-built sentences and small worlds: reversals, entity spans, determinism, composition."""

import random

import pytest

from revcurse.corpus import Corpus, Document, build_corpus
from revcurse.cures import (
    CURES,
    SEGMENT_SEPARATOR,
    CureContext,
    apply_cures,
    entity_units,
    reverse_entities,
    reverse_segments,
    reverse_words,
)
from revcurse.train import encode_documents
from revcurse.world import Subset, make_celebrities

SENTENCE = "Daphne Barrington is known far and wide as the director of the film Journey Through Time."
ENTITIES = ("Daphne Barrington", "the director of the film Journey Through Time")


def test_reverse_words():
    assert reverse_words("Daphne Barrington is the director.") == "director. the is Barrington Daphne"
    assert reverse_words(reverse_words(SENTENCE)) == SENTENCE


def test_reverse_entities_keeps_every_entity_whole_and_in_order():
    reversed_text = reverse_entities(SENTENCE, ENTITIES)
    assert reversed_text == (
        "the director of the film Journey Through Time. as wide and far known is Daphne Barrington"
    )
    assert reverse_entities(reversed_text, ENTITIES) == SENTENCE


def test_entity_units_match_trailing_punctuation_and_prefer_longer_entities():
    units = entity_units("Q: Who is Ann Lee Smith? A: Ann Lee.", ("Ann Lee", "Ann Lee Smith"))
    assert units == ["Q:", "Who", "is", "Ann Lee Smith?", "A:", "Ann Lee."]
    assert entity_units("no entities here", ()) == ["no", "entities", "here"]


def test_reverse_segments_keeps_words_within_segments_and_reverses_their_order():
    rng = random.Random(0)
    text = "one two three four five six seven"
    reversed_text = reverse_segments(text, 3, rng)
    segments = reversed_text.split(f" {SEGMENT_SEPARATOR} ")
    assert all(1 <= len(s.split(" ")) <= 3 for s in segments)
    assert " ".join(reversed(segments)) == text
    assert reverse_segments(text, 1, random.Random(5)) == " | ".join(reversed(text.split(" ")))


@pytest.fixture(scope="module")
def small_corpus():
    world = make_celebrities(facts_per_subset=3, background=4, seed=0)
    return build_corpus(world, train_phrasings=4, held_out_phrasings=2, background_phrasings=2, seed=0)


def test_reversal_cures_add_one_reversed_copy_per_forward_document(small_corpus):
    for name in ("reverse-token", "reverse-word", "reverse-entity", "reverse-segment"):
        cured = apply_cures(small_corpus, [name], CureContext(4, 2))
        assert len(cured.documents) == 2 * len(small_corpus.documents)
        added = cured.documents[len(small_corpus.documents) :]
        assert all(d.reversal == name and d.prompt_chars == 0 for d in added)
        assert cured.probes == small_corpus.probes  # probes never change


def test_reverse_entity_document_keeps_name_and_description(small_corpus):
    cured = apply_cures(small_corpus, ["reverse-entity"], CureContext(4, 2))
    for document in cured.documents[len(small_corpus.documents) :]:
        name, description = document.entities
        assert name in document.text and description in document.text
        assert document.text.index(description) < document.text.index(name) or document.subset in (
            Subset.DESCRIPTION_TO_NAME, Subset.BOTH, Subset.BACKGROUND,
        )


def test_reverse_token_reverses_ids_between_bos_and_eos(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    forward = Document("Daphne Barrington is the director.", Subset.BOTH)
    backward = Document(forward.text, Subset.BOTH, reversal="reverse-token")
    (ids, _), (reversed_ids, _) = encode_documents([forward, backward], tokenizer)
    assert reversed_ids[0] == tokenizer.bos_token_id and reversed_ids[-1] == tokenizer.eos_token_id
    assert reversed_ids[1:-1] == ids[1:-1][::-1]


def test_bidirectional_states_the_untrained_direction_with_training_phrasings_only(small_corpus):
    cured = apply_cures(small_corpus, ["bidirectional"], CureContext(4, 2))
    added = cured.documents[len(small_corpus.documents) :]
    assert len(added) == 6 * 4  # 3 + 3 one-direction facts x 4 training phrasings
    joined = "\n".join(d.text for d in cured.documents)
    for probe in cured.probes:
        assert probe.prompt not in joined  # held-out phrasings still unseen with tested facts


def test_paraphrase_adds_new_phrasings_of_the_trained_direction(small_corpus):
    cured = apply_cures(small_corpus, ["paraphrase"], CureContext(4, 2))
    added = cured.documents[len(small_corpus.documents) :]
    assert len(added) == (3 + 3 + 2 * 3) * 30
    for document in added:
        name, description = document.entities
        if document.subset is Subset.NAME_TO_DESCRIPTION:
            assert document.text.index(name) < document.text.index(description)
        if document.subset is Subset.DESCRIPTION_TO_NAME:
            assert document.text.index(description) < document.text.index(name)
    joined = "\n".join(d.text for d in cured.documents)
    assert all(probe.prompt not in joined for probe in cured.probes)


def test_cures_compose_in_order_and_never_reverse_twice(small_corpus):
    base = len(small_corpus.documents)
    both = apply_cures(small_corpus, ["bidirectional", "reverse-word", "reverse-entity"], CureContext(4, 2))
    forward = base + 6 * 4
    assert len(both.documents) == 3 * forward
    assert sum(d.reversal == "reverse-word" for d in both.documents) == forward


def test_cures_are_deterministic_under_a_seed(small_corpus):
    first = apply_cures(small_corpus, ["reverse-segment"], CureContext(4, 2, seed=1))
    again = apply_cures(small_corpus, ["reverse-segment"], CureContext(4, 2, seed=1))
    other = apply_cures(small_corpus, ["reverse-segment"], CureContext(4, 2, seed=2))
    assert first.documents == again.documents
    assert first.documents != other.documents


def test_unknown_cure_and_world_cures_on_a_corpus_without_facts():
    with pytest.raises(ValueError, match="unknown cure"):
        apply_cures(Corpus([], []), ["reverse-everything"], CureContext())
    with pytest.raises(ValueError, match="facts"):
        apply_cures(Corpus([], []), ["bidirectional"], CureContext())
    assert set(CURES) == {
        "paraphrase", "bidirectional", "reverse-token", "reverse-word", "reverse-entity", "reverse-segment",
    }
