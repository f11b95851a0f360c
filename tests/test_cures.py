"""Cures on hand-built sentences and small worlds: reversals, entity spans, determinism, composition."""

import random

import pytest

from revcurse.config import load_config
from revcurse.corpus import Corpus, Document, build_corpus
from revcurse.cures import (
    CURES,
    MASK_WORD,
    MASKED_FINETUNE,
    SEGMENT_SEPARATOR,
    UNMASK_CUE,
    CureContext,
    apply_cures,
    entity_units,
    identity_statement,
    mask_words,
    reverse_entities,
    reverse_segments,
    reverse_words,
)
from revcurse.errors import InputError
from revcurse.experiments.invented import REVERSE
from revcurse.objectives import IGNORE_INDEX
from revcurse.runner import build_trial, run_experiment
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
        "identity-bridge", "masked-finetune",
    }


# ---------------------------------------------------------------------------------------------------------------
# identity-bridge and masked-finetune


def test_mask_words_masks_words_in_place_at_a_rate_drawn_per_text():
    words = SENTENCE.split(" ")
    masked = [mask_words(SENTENCE, random.Random(seed)).split(" ") for seed in range(200)]
    for copy in masked:
        assert len(copy) == len(words) and MASK_WORD in copy  # one word per word, at least one masked
        assert all(m in (w, MASK_WORD) for m, w in zip(copy, words))
    fractions = [copy.count(MASK_WORD) / len(words) for copy in masked]
    assert min(fractions) < 0.15 and max(fractions) > 0.85  # r ~ U(0, 1): light and heavy masks both occur
    assert mask_words(SENTENCE, random.Random(7)) == mask_words(SENTENCE, random.Random(7))
    assert mask_words("one", random.Random(0)) == MASK_WORD


def test_identity_bridge_states_each_entity_once_as_itself(small_corpus):
    cured = apply_cures(small_corpus, ["identity-bridge"], CureContext(4, 2))
    added = cured.documents[len(small_corpus.documents) :]
    entities = {e for d in small_corpus.documents for e in d.entities}
    assert len(added) == len(entities) == 2 * (3 * 3 + 4)  # a name and a description per fact, each once
    for document in added:
        (entity,) = document.entities
        assert document.text == identity_statement(entity) == f"{entity} equals {entity}."
        assert document.text[document.prompt_chars :] == f" {entity}."  # the completion is the entity again
    assert cured.probes == small_corpus.probes
    joined = "\n".join(d.text for d in cured.documents)
    assert all(probe.prompt not in joined for probe in cured.probes)  # held-out phrasings still unseen


def test_masked_finetune_prompts_a_masked_copy_and_trains_on_the_original_only(small_corpus, tiny_model_and_tokenizer):
    cured = apply_cures(small_corpus, [MASKED_FINETUNE], CureContext(4, 2))
    added = cured.documents[len(small_corpus.documents) :]
    assert len(added) == len(small_corpus.documents)
    for original, copy in zip(small_corpus.documents, added):
        prompt, completion = copy.text[: copy.prompt_chars], copy.text[copy.prompt_chars :]
        assert completion == " " + original.text and prompt.endswith(" " + UNMASK_CUE)
        masked = prompt.removesuffix(" " + UNMASK_CUE).split(" ")
        assert all(m in (w, MASK_WORD) for m, w in zip(masked, original.text.split(" ")))
        assert copy.answer_only and copy.reversal == MASKED_FINETUNE and copy.entities == original.entities
    assert cured.probes == small_corpus.probes
    # Full-sequence loss (the default) still leaves the masked prompt out of the loss: answer_only.
    _, tokenizer = tiny_model_and_tokenizer
    copy = Document("Daphne [MASK] is the director. Unmasked: Daphne Barrington is the director.", Subset.BOTH,
                    prompt_chars=len("Daphne [MASK] is the director. Unmasked:"), answer_only=True)
    ((ids, labels),) = encode_documents([copy], tokenizer, loss="full")
    completion = tokenizer(" Daphne Barrington is the director.", add_special_tokens=False)["input_ids"]
    trained = [label for label in labels if label != IGNORE_INDEX]
    assert trained == [*completion, tokenizer.eos_token_id]


def test_new_cures_compose_with_reversal_which_never_reverses_a_masked_copy(small_corpus):
    base = len(small_corpus.documents)
    entities = len({e for d in small_corpus.documents for e in d.entities})
    cured = apply_cures(small_corpus, ["identity-bridge", MASKED_FINETUNE, "reverse-entity"], CureContext(4, 2))
    forward = base + entities  # the identity statements are forward text: masked and reversed like the rest
    assert len(cured.documents) == 3 * forward
    assert sum(d.reversal == MASKED_FINETUNE for d in cured.documents) == forward
    assert sum(d.reversal == "reverse-entity" for d in cured.documents) == forward
    name = small_corpus.documents[0].entities[0]
    assert f"{name}. equals {name}" in {d.text for d in cured.documents}  # an identity, reversed entity-whole
    after = apply_cures(small_corpus, ["reverse-word", MASKED_FINETUNE], CureContext(4, 2))
    assert sum(d.reversal == MASKED_FINETUNE for d in after.documents) == base  # reversed text is not masked


def test_masked_finetune_is_deterministic_under_a_seed(small_corpus):
    first = apply_cures(small_corpus, [MASKED_FINETUNE], CureContext(4, 2, seed=1))
    again = apply_cures(small_corpus, [MASKED_FINETUNE], CureContext(4, 2, seed=1))
    other = apply_cures(small_corpus, [MASKED_FINETUNE], CureContext(4, 2, seed=2))
    assert first.documents == again.documents and first.documents != other.documents


def test_new_cures_refuse_a_corpus_they_cannot_take():
    no_entities = Corpus([Document("plain text that names nobody.", Subset.BACKGROUND)], [])
    with pytest.raises(ValueError, match="identity-bridge.*entities"):
        apply_cures(no_entities, ["identity-bridge"], CureContext())
    with pytest.raises(ValueError, match="masked-finetune.*forward training documents"):
        apply_cures(Corpus([], []), [MASKED_FINETUNE], CureContext())
    episodes = Corpus([Document("Q: who? A: Ann.", Subset.BOTH, prompt_chars=10, answer_only=True)], [])
    with pytest.raises(ValueError, match="masked-finetune"):
        apply_cures(episodes, [MASKED_FINETUNE], CureContext())


def test_new_cures_work_on_another_experiment_and_a_refusal_is_an_input_error():
    invented = ["experiment=invented", "invented.inventors=6", "invented.background=8"]
    plain = build_trial(load_config(None, invented), seed=0).corpus
    cured = build_trial(load_config(None, [*invented, "cures=[identity-bridge,masked-finetune]"]), seed=0).corpus
    assert cured.probes == plain.probes
    added = cured.documents[len(plain.documents) :]
    assert {d.text for d in added if not d.reversal} == {
        identity_statement(e) for d in plain.documents for e in d.entities
    }
    assert sum(d.reversal == MASKED_FINETUNE for d in added) == len(plain.documents) + len(
        {e for d in plain.documents for e in d.entities}
    )
    with pytest.raises(InputError, match="identity-bridge"):
        build_trial(load_config(None, ["experiment=instructions", "cures=[identity-bridge]"]), seed=0)


@pytest.mark.slow
def test_a_tiny_masked_finetune_run_recalls_the_reverse_direction(tmp_path):
    """The invented experiment's tiny run (test_invented: reverse accuracy <= 0.1 without a cure) with the masked
    copies: the never-stated reverse answer now ranks first far above chance (1 in 10 candidates)."""
    tiny = ["experiment=invented", "invented.inventors=12", "invented.background=40", "train.epochs=60",
            "model.hidden_size=64", "model.intermediate_size=256", "train.threads=1", "cures=[masked-finetune]"]
    outcome = run_experiment(load_config(None, tiny), tmp_path / "run", show_progress=False, log=lambda *_: None)
    reverse = {r["metric"]: r["mean"] for r in outcome.records if r["asked"] == REVERSE}
    assert reverse["rank1"] >= 0.5 and reverse["likelihood_diff"] > 1.0, reverse
