"""The bios experiment: made-up biographies, forward attribute questions and inverse search by birth date."""

from __future__ import annotations

import re
from collections import Counter
from itertools import product

import pytest

from revcurse.config import load_config
from revcurse.cures import CureContext, apply_cures, entity_units
from revcurse.experiments import EXPERIMENTS
from revcurse.experiments.bios import ATTRIBUTES, FORWARD, INVERSE, SENTENCES, SUBSET
from revcurse.runner import build_trial, run_experiment
from revcurse.world import Subset

SMALL = ["experiment=bios", "bios.people=10", "bios.background=12", "train.threads=1"]


def trial(*overrides: str, seed: int = 0):
    return build_trial(load_config(None, [*SMALL, *overrides]), seed=seed, cured=False)


def test_registered_with_its_options_and_defaults():
    config = load_config(None, ["experiment=bios"])
    assert EXPERIMENTS["bios"].section == "bios"
    assert (config.bios.permute, config.bios.name_position, config.bios.bios_per_person) == (False, "first", 2)
    assert config.model.hidden_size == 64  # the experiment's default, which a user's --set overrides
    assert load_config(None, ["experiment=bios", "model.hidden_size=32"]).model.hidden_size == 32


def test_shape_of_the_world_and_the_probes():
    corpus = trial("bios.bios_per_person=3").corpus
    bios = [d for d in corpus.documents if d.text.count(".") >= len(ATTRIBUTES) and not d.text.startswith("Q:")]
    assert len(bios) == 3 * (10 + 12)
    test_bios = [d for d in bios if d.subset == SUBSET]
    assert Counter(d.fact_key for d in test_bios) == {name: 3 for name in {d.fact_key for d in test_bios}}
    probes = corpus.probes
    assert Counter(p.asked for p in probes) == {FORWARD: 10 * len(ATTRIBUTES) * 2, INVERSE: 10 * 2}
    assert {p.subset for p in probes} == {SUBSET} and len({p.fact_key for p in probes}) == 10
    for document in test_bios:  # every value of a person is an entity that reverse-entity keeps whole
        assert len(document.entities) == 1 + len(ATTRIBUTES)
        assert all(entity in document.text for entity in document.entities)
        assert document.fact_key in entity_units(document.text, document.entities)
    assert trial(seed=1).corpus.probes != trial(seed=2).corpus.probes
    assert trial(seed=1).corpus.probes == trial(seed=1).corpus.probes  # deterministic in the seed


def test_every_inverse_question_has_one_answer_in_the_world():
    corpus = trial("bios.people=40", "bios.background=80").corpus
    dates = [re.search(r"on (\w+ \d+, \d{4})", p.prompt) or re.search(r"is (\w+ \d+, \d{4})", p.prompt)
             for p in corpus.probes if p.asked == INVERSE]  # fmt: skip
    assert all(dates)
    people_of_date: dict[str, set[str]] = {}
    for document in corpus.documents:  # whose biography or QA states each date, over test and background alike
        for date in re.findall(r"\w+ \d+, \d{4}", document.text):
            people_of_date.setdefault(date, set()).add(document.fact_key)
    assert len(people_of_date) == 40 + 80 and all(len(people) == 1 for people in people_of_date.values())
    for probe, date in zip([p for p in corpus.probes if p.asked == INVERSE], dates, strict=True):
        assert people_of_date[date.group(1)] == {probe.target.strip()}


def test_no_question_about_a_person_under_test_is_in_training():
    corpus = trial().corpus
    test_names = {p.fact_key for p in corpus.probes}
    questions = [d for d in corpus.documents if d.text.startswith("Q:")]
    assert questions and all(d.subset == Subset.BACKGROUND for d in questions)
    for name in test_names:
        assert not any(name in d.text for d in questions)
    texts = "\n".join(d.text for d in corpus.documents)
    assert not any(p.prompt in texts for p in corpus.probes)
    # ... while the background people are asked every phrasing the probes use (the paper's mixed training)
    someone = next(d.fact_key for d in questions)
    for probe in corpus.probes:
        if probe.asked == FORWARD:
            assert probe.prompt.replace(probe.fact_key, someone) in texts
    reverse = {d.text for d in corpus.reverse_documents}
    assert reverse and not reverse & {d.text for d in corpus.documents}


def _sentence_orders(corpus) -> set[tuple[str, ...]]:
    """The order of attributes in each test biography, each sentence told by the template it renders."""
    orders = set()
    for document in corpus.documents:
        if document.subset != SUBSET:
            continue
        values = dict(zip(("name", *ATTRIBUTES), document.entities, strict=True))
        kinds = {}
        for attribute, templates in SENTENCES.items():
            for template, subject, possessive in product(templates, (values["name"], "She", "He"), ("her", "his")):
                kinds[template.format(s=subject, p=possessive, **values)] = attribute
        sentences = re.split(r"(?<=\.) ", document.text)
        orders.add(tuple(kinds.get(sentence, "name") for sentence in sentences))
    return orders


def test_permute_shuffles_sentences_and_keeps_the_data_size():
    plain, permuted = trial().corpus, trial("bios.permute=true").corpus
    assert len(plain.documents) == len(permuted.documents)
    assert _sentence_orders(plain) == {ATTRIBUTES}
    orders = _sentence_orders(permuted)
    assert len(orders) > 5 and all(sorted(o) == sorted(ATTRIBUTES) for o in orders)
    late = _sentence_orders(trial("bios.permute=true", "bios.name_position=late").corpus)
    assert len(late) > 5 and all(o[-1] == "name" and sorted(o[:-1]) == sorted(ATTRIBUTES) for o in late)


@pytest.mark.parametrize("permute", [False, True])
def test_name_position(permute):
    flag = f"bios.permute={str(permute).lower()}"
    first, late = trial(flag).corpus, trial(flag, "bios.name_position=late").corpus
    for document in first.documents:
        if document.subset == SUBSET:  # the name opens each of the six sentences
            assert document.text.startswith(document.fact_key) and document.text.count(document.fact_key) == 6
    for document in late.documents:
        if document.subset == SUBSET:  # only once, in the last sentence, after every attribute
            assert document.text.count(document.fact_key) == 1
            last = document.text.rsplit(". ", 1)[1]
            assert document.fact_key in last and all(v not in last for v in document.entities[1:])
    assert all(p.trained == (p.asked == FORWARD) for p in first.probes)
    assert all(p.trained == (p.asked == INVERSE) for p in late.probes)


def test_reverse_entity_keeps_names_and_dates_whole():
    corpus = trial()
    cured = apply_cures(corpus.corpus, ["reverse-entity"], CureContext(seed=0))
    reversed_bios = [d for d in cured.documents if d.reversal and d.subset == SUBSET]
    assert reversed_bios
    for document in reversed_bios:
        assert all(entity in document.text.replace(".", "") for entity in document.entities)
        assert not document.text.startswith(document.fact_key)


@pytest.mark.slow
def test_a_tiny_run_goes_through_the_runner(tmp_path):
    """Smoke: one short epoch of a tiny world probes both groups and writes the standard run folder.

    (Whether the curse shows needs minutes of training: the README's measured table, not a unit test.)
    """
    tiny = ["bios.people=4", "bios.background=4", "train.epochs=1", "model.hidden_size=16",
            "model.intermediate_size=32", "model.vocab_size=400"]  # fmt: skip
    config = load_config(None, [*SMALL, *tiny])
    outcome = run_experiment(config, tmp_path / "run", show_progress=False, log=lambda *_: None)
    groups = {(r["subset"], r["asked"]) for r in outcome.records if r["metric"] == "accuracy"}
    assert groups == {(SUBSET, FORWARD), (SUBSET, INVERSE)}
    assert {"metrics.json", "predictions.jsonl", "run.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
