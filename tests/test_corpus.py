"""Training documents and probes: held-out phrasings never leak into training for facts under test."""

import pytest

from revcurse.corpus import Probe, Template, build_corpus, default_templates, draw_distractors
from revcurse.world import Direction, Subset, make_celebrities


@pytest.fixture(scope="module")
def world_and_corpus():
    world = make_celebrities(facts_per_subset=30, background=100, seed=0)
    return world, build_corpus(world, background_phrasings=8, seed=0)


def test_held_out_phrasings_never_appear_in_training_for_facts_under_test(world_and_corpus):
    world, corpus = world_and_corpus
    texts = [d.text for d in corpus.documents if d.subset is not Subset.BACKGROUND]
    joined = "\n".join(texts)
    _, held_out = default_templates()
    for fact in world.facts_under_test:
        for template in held_out:
            assert template.render(fact) not in joined
            assert template.prompt(fact) not in joined
    # and every probe prompt is new text for the model, for tested facts
    for probe in corpus.probes:
        assert probe.prompt not in joined


def test_background_people_are_stated_both_ways_with_held_out_phrasings_too(world_and_corpus):
    world, corpus = world_and_corpus
    background = [d.text for d in corpus.documents if d.subset is Subset.BACKGROUND]
    assert len(background) == 100 * 2 * 8
    _, held_out = default_templates()
    used = {t.id for t in held_out for fact in world.subset(Subset.BACKGROUND) if t.render(fact) in background}
    assert len(used) == len(held_out)  # every held-out phrasing's language is seen, with other people


def test_documents_per_subset_state_only_the_trained_direction(world_and_corpus):
    world, corpus = world_and_corpus
    train, _ = default_templates()
    for subset, per_fact in ((Subset.NAME_TO_DESCRIPTION, 30), (Subset.DESCRIPTION_TO_NAME, 30), (Subset.BOTH, 60)):
        docs = [d for d in corpus.documents if d.subset is subset]
        assert len(docs) == 30 * per_fact
    for document in corpus.documents:
        if document.subset is Subset.NAME_TO_DESCRIPTION:
            fact = next(f for f in world.facts if f.name == document.fact_key)
            assert document.text.index(fact.name) < document.text.index(fact.description)
        if document.subset is Subset.DESCRIPTION_TO_NAME:
            fact = next(f for f in world.facts if f.name == document.fact_key)
            assert document.text.index(fact.description) < document.text.index(fact.name)


def test_probes_cover_both_directions_with_held_out_phrasings(world_and_corpus):
    world, corpus = world_and_corpus
    assert len(corpus.probes) == 90 * 2 * 10
    for probe in corpus.probes:
        fact = next(f for f in world.facts if f.name == probe.fact_key)
        assert probe.target == " " + fact.target(probe.asked)
        assert fact.source(probe.asked) in probe.prompt
        assert probe.trained == (
            probe.subset is Subset.BOTH
            or (probe.subset is Subset.NAME_TO_DESCRIPTION) == (probe.asked is Direction.NAME_TO_DESCRIPTION)
        )
    drawn = draw_distractors(corpus.probes, k=15, seed=0)
    for probe, distractors in zip(corpus.probes, drawn):
        assert len(distractors.targets) == 15 and probe.fact_key not in distractors.fact_keys
        assert probe.target not in distractors.targets


def test_prompt_chars_marks_the_prompt_of_each_document(world_and_corpus):
    world, corpus = world_and_corpus
    for document in corpus.documents[:50]:
        assert document.text[document.prompt_chars] == " "
        assert 0 < document.prompt_chars < len(document.text)


def test_build_corpus_is_deterministic_under_a_seed():
    world = make_celebrities(3, 20, seed=5)
    assert build_corpus(world, seed=1).documents == build_corpus(world, seed=1).documents
    assert build_corpus(world, seed=1).documents != build_corpus(world, seed=2).documents


def test_template_validation():
    with pytest.raises(ValueError):
        Template("x", Direction.NAME_TO_DESCRIPTION, "{description} is {name}.")
    with pytest.raises(ValueError):
        Template("x", Direction.DESCRIPTION_TO_NAME, "Who is {description}?{name}.")
    template = Template("x", Direction.DESCRIPTION_TO_NAME, "Who is {description}? It is {name}.")
    assert template.prompt_template == "Who is {description}? It is"


def probe(fact, slot, target, asked="name_to_description"):
    return Probe(fact, "NameToDescription", asked, True, slot, f"prompt of {fact} in {slot}", target)


def test_distractors_are_other_facts_in_the_same_phrasing_never_a_rewording_of_the_own_fact():
    # Fact a is worded per phrasing ("directed X" in slot 1, "the director of X" in slot 2); b and c likewise.
    probes = [
        probe("a", "s1", " directed Alpha"), probe("a", "s2", " the director of Alpha"),
        probe("b", "s1", " directed Beta"), probe("b", "s2", " the director of Beta"),
        probe("c", "s1", " directed Gamma"),  # c has no probe in slot 2
    ]
    drawn = draw_distractors(probes, k=5, seed=0)
    assert set(drawn[0].targets) == {" directed Beta", " directed Gamma"}  # slot 1: the same form
    assert set(drawn[1].targets) == {" the director of Beta", " directed Gamma"}  # c's only wording stands in
    for p, d in zip(probes, drawn):
        assert p.fact_key not in d.fact_keys and not any(p.target.strip() in t for t in d.targets if t == p.target)
    unmatched = draw_distractors(probes, k=5, seed=0, match_phrasing=False)
    assert " directed Beta" in unmatched[1].targets or " the director of Beta" in unmatched[1].targets


def test_a_distractor_equal_to_an_own_answer_is_dropped_and_texts_are_not_repeated():
    probes = [probe("a", "s", " Paris"), probe("b", "s", " paris "), probe("c", "s", " Rome"), probe("d", "s", " Rome")]
    drawn = draw_distractors(probes, k=3, seed=0)
    assert drawn[0].targets == (" Rome",)  # b's " paris " is a's own answer; d's Rome repeats c's
    assert " Paris" not in drawn[1].targets


def test_distractors_are_capped_deterministic_and_independent_of_probe_order():
    probes = [probe(f"f{i}", f"s{j}", f" target {i} {j}") for i in range(40) for j in range(3)]
    drawn = draw_distractors(probes, k=7, seed=3)
    assert all(len(d.targets) == 7 for d in drawn)
    assert drawn == draw_distractors(probes, k=7, seed=3)
    reordered = draw_distractors(probes[::-1], k=7, seed=3)[::-1]
    assert reordered == drawn
    assert draw_distractors(probes, k=7, seed=4) != drawn
    # one set of facts per fact, shared by its phrasings (a placebo picks one of them for every phrasing)
    assert drawn[0].fact_keys == drawn[1].fact_keys == drawn[2].fact_keys
