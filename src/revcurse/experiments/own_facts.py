"""Your own facts: a CSV or JSONL of ``subject, relation, object`` -> training text -> a model -> an audit.

The audit answers, fact by fact, whether a model trained on "A relation B" can give B when asked about A
(forward, the trained direction) and A when asked about B (reverse, never trained): the Reversal Curse on the
user's own knowledge. The files and their templates are read by ``revcurse.facts_file`` (formats and defaults
there).

Training text states every user fact forward only (subject before object), ``corpus.train_phrasings`` documents
per fact and epoch, cycling through the relation's statements, so the reverse column measures the curse.
``world.background`` made-up facts (spread over the relations) are stated with every statement, asked forward
and asked in reverse, each with its answer, ``corpus.background_phrasings`` times per direction and epoch: they
teach a model trained from scratch the language of the questions and that a fact can be asked either way, as the
background people do in Experiment 1. They are never probed. ``reverse_documents`` state each user fact object
first, as many times, for the ``bidirectional`` cure.

Probes: one question per fact and direction. A probe's fact identity is the question itself (``fact_key`` = its
prompt): facts that ask the same question (another book of the same author) are one fact, so none of their
answers is ever another's distractor, and the tests count each question once. Its group is (relation,
direction): distractors are answers of the same relation asked the same way. ``train.enabled=false`` trains
nothing and only asks ``model.checkpoint`` (or a server, ``probe.backend=openai``): the audit of a trained model.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pydantic import Field

from revcurse import vocabulary
from revcurse.corpus import Corpus, Document, Probe
from revcurse.experiments.base import Experiment, Trial
from revcurse.facts_file import OwnFact, RelationTemplates, read_facts, read_templates, render, statement_prefix
from revcurse.sections import Section
from revcurse.world import Subset

if TYPE_CHECKING:
    from revcurse.config import RunConfig

FORWARD, REVERSE = "forward", "reverse"


class OwnFactsOptions(Section):
    facts: str | None = Field(None, description="your facts: .csv with a subject,relation,object header, or .jsonl")
    templates: str | None = Field(None, description="YAML of per-relation statement and question templates")
    strict: bool = Field(False, description="refuse an unusable fact (empty field, given twice) instead of skipping")


def build_own_corpus(
    facts: list[OwnFact],
    templates: dict[str, RelationTemplates],
    documents_per_fact: int = 30,
    background: int = 0,
    background_phrasings: int = 4,
    seed: int = 0,
) -> Corpus:
    """Training documents (each user fact forward only, then the background), two probes per fact (forward,
    reverse) and each fact's reverse statements; see the module docstring."""
    relations = list(dict.fromkeys(fact.relation for fact in facts))
    chosen = {relation: templates.get(relation) or RelationTemplates.default() for relation in relations}
    documents, reverse = [], []
    for fact in facts:
        statements = chosen[fact.relation].statements
        backwards = reverse_statements(chosen[fact.relation])
        for i in range(documents_per_fact):
            documents.append(_statement(statements[i % len(statements)], fact, Subset.NAME_TO_DESCRIPTION))
            reverse.append(_reverse_statement(backwards[i % len(backwards)], fact))
    documents += _background_documents(facts, chosen, background, background_phrasings, seed)
    probes = []
    for fact in facts:
        template = chosen[fact.relation]
        for asked, question, target in ((FORWARD, template.question, fact.object),
                                        (REVERSE, template.reverse_question, fact.subject)):  # fmt: skip
            prompt = render(question, fact.subject, fact.relation, fact.object).rstrip()
            probes.append(Probe(prompt, fact.relation, asked, asked == FORWARD, asked, prompt, " " + target))
    return Corpus(documents, probes, reverse_documents=reverse)


def reverse_statements(template: RelationTemplates) -> tuple[str, ...]:
    """The relation's statements object first: the user's, else its reverse question and the subject."""
    return template.reverse_statements or (f"{template.reverse_question} {{subject}}",)


def _statement(statement: str, fact: OwnFact, subset: Subset) -> Document:
    text = render(statement, fact.subject, fact.relation, fact.object)
    prompt = render(statement_prefix(statement), fact.subject, fact.relation, fact.object)
    return Document(text, subset, fact.subject, prompt_chars=len(prompt), entities=(fact.subject, fact.object))


def _reverse_statement(statement: str, fact: OwnFact) -> Document:
    text = render(statement, fact.subject, fact.relation, fact.object)
    prompt = render(statement[: statement.index("{subject}")], fact.subject, fact.relation, fact.object).rstrip()
    return Document(text, Subset.NAME_TO_DESCRIPTION, fact.subject, len(prompt), (fact.object, fact.subject))


def _qa_document(question: str, answer: str, fact: OwnFact) -> Document:
    prompt = render(question, fact.subject, fact.relation, fact.object).rstrip()
    entities = (fact.subject, fact.object)
    return Document(f"{prompt} {answer}", Subset.BACKGROUND, fact.subject, len(prompt), entities)


def _background_documents(
    facts: list[OwnFact], chosen: dict[str, RelationTemplates], count: int, phrasings: int, seed: int
) -> list[Document]:
    """Made-up facts of every relation, stated and asked both ways, so the question forms are known language."""
    if count <= 0:
        return []
    rng = random.Random(seed)
    taken = {f.subject.casefold() for f in facts} | {f.object.casefold() for f in facts}
    relations = list(chosen)
    documents: list[Document] = []
    for index in range(count):
        relation = relations[index % len(relations)]
        subject = object_ = ""
        while not subject or subject.casefold() in taken:
            subject = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
        taken.add(subject.casefold())
        while not object_ or object_.casefold() in taken:
            # one to four words, sometimes with "the": answers of varied length, so none is learnt as the norm
            words = rng.sample(vocabulary.TITLE_WORDS, rng.randint(1, 4))
            object_ = " ".join(["the", *words] if rng.random() < 0.3 else words)
        taken.add(object_.casefold())
        fact = OwnFact(subject, relation, object_, 0)
        template = chosen[relation]
        forward = [_statement(s, fact, Subset.BACKGROUND) for s in template.statements]
        forward.append(_qa_document(template.question, object_, fact))
        documents += [forward[i % len(forward)] for i in range(max(phrasings, len(forward)))]
        documents += [_qa_document(template.reverse_question, subject, fact)] * phrasings
    return documents


def build(config: RunConfig, seed: int) -> Trial:
    """The user's facts as one trial; every seed asks the same facts (``world_seed``: ``world.seed``, else the
    run's first seed), so the tests count each question once however many seeds are run."""
    options: OwnFactsOptions = config.own_facts
    if options.facts is None:
        raise ValueError("own-facts needs your facts file: --set own_facts.facts=FILE.csv (or `revcurse audit FILE`)")
    read = read_facts(options.facts, options.strict)
    templates = read_templates(options.templates) if options.templates is not None else {}
    world_seed = config.world.seed if config.world.seed is not None else config.seed
    corpus = build_own_corpus(
        read.facts, templates, config.corpus.train_phrasings, config.world.background,
        config.corpus.background_phrasings, seed=world_seed,
    )  # fmt: skip
    corpus.skipped = read.skipped
    return Trial(corpus, world_seed)


def unused_templates(config: RunConfig) -> list[str]:
    """Relations of the templates file that no fact has (a typo, most often): for the CLI to mention."""
    options: OwnFactsOptions = config.own_facts
    if options.templates is None or options.facts is None:
        return []
    relations = {fact.relation for fact in read_facts(options.facts).facts}
    return [relation for relation in read_templates(options.templates) if relation not in relations]


ALL_RELATIONS = "all relations"  # the group of every relation pooled, beside one group per relation


EXPERIMENT = Experiment(
    name="own-facts",
    title="Your own facts, trained forward only and asked both ways",
    build=build,
    options=OwnFactsOptions,
    pooled=ALL_RELATIONS,
)
