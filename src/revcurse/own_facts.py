"""Your own facts: a CSV or JSONL of ``subject, relation, object`` -> training text -> a model -> an audit.

The audit answers, fact by fact, whether the model trained on "A relation B" can give B when asked about A
(forward, the trained direction) and A when asked about B (reverse, never trained): the Reversal Curse on the
user's own knowledge.

Input files:

- facts, ``.csv`` with a header holding ``subject,relation,object`` (other columns are ignored) or ``.jsonl``
  with one ``{"subject": ..., "relation": ..., "object": ...}`` object per line;
- templates (optional), YAML ``{relation: {statement, question, reverse_question}}`` with the placeholders
  ``{subject}``, ``{object}`` and ``{relation}`` (the relation with ``_`` read as spaces). ``statement`` may be a
  list: each item is one training phrasing.

Defaults, for a relation without templates or a key left out (see :data:`DEFAULT_STATEMENT` and friends):

- statement ``"{subject} {relation} {object}."``, so write relations as verb phrases (``was born in``, ``wrote``);
- forward question: the first statement up to ``{object}`` ("Ada Lovelace wrote"). That prompt is the very
  prefix the model was trained on, so the forward column then measures recall of the training text, not
  generalisation to a new question; give a ``question`` template to measure the latter;
- reverse question ``"Who or what {relation} {object}? Answer:"``.

Training text states every user fact forward only (subject before object), ``corpus.train_phrasings`` documents
per fact and epoch, cycling through the relation's statements, so the reverse column measures the curse.
``world.background`` made-up facts (spread over the relations) are stated with every statement, asked forward
and asked in reverse, each with its answer, ``corpus.background_phrasings`` times per direction and epoch: they
teach a model trained from scratch the language of the questions and that a fact can be asked either way, as the
background people do in Experiment 1. They are never audited.

Scoring is Experiment 1's (``probe.run_probes``, ``metrics.aggregate``): each question's expected answer is ranked
by log-prob against up to ``probe.distractors`` (default 15) answers of *other* questions of the same relation and
direction, never an answer that this question also has (another book of the same author); the likelihood and
rank tests run over questions, per direction, into ``run.json`` (``records``) and ``audit.md``. Until this was
shared, every answer of the relation was a candidate (cost quadratic in the facts) and a question's other valid
answers could be counted against it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import shutil
import string
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import transformers
import yaml

from revcurse import vocabulary
from revcurse.config import RunConfig, compose_user_yaml, dump_config
from revcurse.corpus import DEFAULT_DISTRACTORS, Corpus, Document, Probe
from revcurse.errors import (
    SKIPPED_FILE,
    InputError,
    SkippedLine,
    csv_values,
    none_left,
    parse_json,
    read_user_text,
    skip_or_refuse,
    warn_skipped,
    write_skipped,
)
from revcurse.metrics import LIKELIHOOD_STATISTIC, RANK_STATISTIC, aggregate, lookup
from revcurse.probe import ProbeResult, is_correct, run_probes
from revcurse.world import Subset

COLUMNS = ("subject", "relation", "object")
PLACEHOLDERS = ("subject", "object", "relation")
TEMPLATE_KEYS = ("statement", "question", "reverse_question")
DEFAULT_STATEMENT = "{subject} {relation} {object}."
DEFAULT_REVERSE_QUESTION = "Who or what {relation} {object}? Answer:"
FORWARD, REVERSE = "forward", "reverse"


@dataclass(frozen=True)
class OwnFact:
    """One user fact and the line of its file it came from (for messages that point back to it)."""

    subject: str
    relation: str
    object: str
    line: int

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity used to find duplicates: case-insensitive, as the answer check is."""
        return (self.subject.casefold(), self.relation.casefold(), self.object.casefold())


@dataclass(frozen=True)
class RelationTemplates:
    """How one relation is stated in training and asked in each direction.

    ``question`` and ``reverse_question`` are prompts: the answer (`` {object}`` or `` {subject}``) follows them
    with a leading space, as completions do in the paper's files.
    """

    statements: tuple[str, ...]
    question: str
    reverse_question: str

    @staticmethod
    def default(statements: tuple[str, ...] = (DEFAULT_STATEMENT,)) -> RelationTemplates:
        return RelationTemplates(statements, statement_prefix(statements[0]), DEFAULT_REVERSE_QUESTION)


@dataclass(frozen=True)
class OwnProbe:
    """One question about one user fact; ``also_valid`` are the targets of other facts it asks for just as well
    (another book of the same author, another person born in the same town)."""

    fact: OwnFact
    direction: str
    trained: bool
    prompt: str
    target: str
    also_valid: tuple[str, ...] = ()

    def as_probe(self) -> Probe:
        """The shared probe (``corpus.Probe``), so the audit is scored as every experiment is (``run_probes``).

        The fact's identity is the question itself (``prompt``): the probes of facts that ask the same question
        (same relation, same subject forward or same object in reverse) are one fact, so none of their answers
        is ever another's distractor. Its group is (relation, direction): distractors are answers of the same
        relation asked the same way. Each relation has one question per direction: one phrasing slot.
        """
        return Probe(
            fact_key=self.prompt,
            subset=self.fact.relation,
            asked=self.direction,
            trained=self.trained,
            phrasing=self.direction,
            prompt=self.prompt,
            target=self.target,
        )


@dataclass
class AuditRow:
    """The audit of one fact in one direction: the prompt, the model's greedy answer and the likelihoods."""

    subject: str
    relation: str
    object: str
    line: int
    direction: str
    trained: bool
    prompt: str
    target: str
    answer: str
    correct: bool
    answers_another_fact: bool
    logprob_correct: float
    logprob_others: float
    rank: float
    n_candidates: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class AuditResult:
    """A finished audit: its run folder, one row per fact and direction, and the counts."""

    folder: Path
    rows: list[AuditRow]
    summary: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------- facts


@dataclass
class FactsFile:
    """The usable facts of a facts file, and its lines left out as unusable (for the warnings and the run folder)."""

    facts: list[OwnFact]
    skipped: list[SkippedLine] = field(default_factory=list)


def read_facts(path: str | Path, strict: bool = False) -> FactsFile:
    """Read facts from ``.csv`` or ``.jsonl``; lenient on lines, strict on structure.

    Skipped with a warning (``strict`` refuses instead), as one such line must not stop an audit of the rest: a
    fact with an empty subject, relation or object, and a fact given again (case-insensitively; the first is
    kept). Refused, an :class:`InputError` naming file and line: an unknown file type, a file that is not UTF-8,
    CSV or JSON lines, a missing column or field, a row with other than one value per header column (its values
    would be read under the wrong names), a field that is not text, and a file with no usable fact.
    """
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise InputError(f"unknown file type {path.suffix or '(none)'!r}: expected .csv or .jsonl", path)
    text = read_user_text(path, "facts file")
    with io.StringIO(text, newline="") as handle:
        records = _read_csv(handle, path) if path.suffix.lower() == ".csv" else _read_jsonl(handle, path)
    if not records:
        raise InputError("no facts: expected at least one subject, relation, object", path)
    kind = "column" if path.suffix.lower() == ".csv" else "field"
    skipped: list[SkippedLine] = []
    facts: list[OwnFact] = []
    seen: dict[tuple[str, str, str], OwnFact] = {}
    for fact in records:
        empty = [column for column in COLUMNS if not getattr(fact, column)]
        earlier = seen.setdefault(fact.key, fact)
        if empty:
            problem = f"empty {kind} {empty[0]!r}"
        elif earlier is not fact:
            problem = (
                f"duplicate fact ({fact.subject}, {fact.relation}, {fact.object}): first given on line {earlier.line}"
            )
        else:
            facts.append(fact)
            continue
        skip_or_refuse(problem, path, fact.line, strict, skipped)
    if not facts:
        raise none_left("facts", path, skipped)
    return FactsFile(facts, skipped)


def _read_csv(handle, path: Path) -> list[OwnFact]:
    reader = csv.DictReader(handle)
    try:
        header = reader.fieldnames
    except csv.Error as error:
        raise InputError(f"not valid CSV: {error}", path, 1) from None
    if not header:
        raise InputError("empty file: expected a header line 'subject,relation,object'", path, 1)
    reader.fieldnames = [name.strip().lower() for name in header]
    missing = [column for column in COLUMNS if column not in reader.fieldnames]
    if missing:
        raise InputError(
            f"missing column {', '.join(repr(m) for m in missing)}: the header needs subject,relation,object "
            f"(found {','.join(header)})",
            path,
            1,
        )
    facts = []
    width = len(reader.fieldnames)
    try:
        for row in reader:
            line = reader.line_num
            given = csv_values(row, reader.fieldnames)
            if given != width:
                advice = "quote a field that holds a comma" if given > width else "leave a value empty with ,,"
                raise InputError(f"{given} values for {width} columns: {advice}", path, line)
            facts.append(_fact({column: row[column] for column in COLUMNS}, path, line, "column"))
    except csv.Error as error:
        # DictReader.line_num lags a row behind; its csv.reader's counts the line that failed.
        raise InputError(f"not valid CSV: {error}", path, reader.reader.line_num) from None
    return facts


def _read_jsonl(handle, path: Path) -> list[OwnFact]:
    facts = []
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        record = parse_json(text, path, line)
        if not isinstance(record, dict):
            raise InputError('expected an object {"subject": ..., "relation": ..., "object": ...}', path, line)
        missing = [column for column in COLUMNS if column not in record]
        if missing:
            raise InputError(f"missing field {', '.join(repr(m) for m in missing)}", path, line)
        facts.append(_fact(record, path, line, "field"))
    return facts


def _fact(record: dict, path: Path, line: int, kind: str) -> OwnFact:
    """The record as a fact, its values stripped (an empty one is for :func:`read_facts` to skip); a value that
    is not text (a number is read as text) is a wrong type: refused."""
    values = {}
    for column in COLUMNS:
        value = record[column]
        if isinstance(value, bool) or not isinstance(value, str | int | float | type(None)):
            raise InputError(f"{kind} {column!r} must be text, got {type(value).__name__}", path, line)
        values[column] = "" if value is None else str(value).strip()
    return OwnFact(values["subject"], values["relation"], values["object"], line)


# ------------------------------------------------------------------------------------------------------ templates


def read_templates(path: str | Path) -> dict[str, RelationTemplates]:
    """Read per-relation templates from YAML; keys left out get the defaults of this module's docstring."""
    path = Path(path)
    # Nodes keep their line numbers, which plain loading forgets; a key given twice is refused, as in a config.
    root = compose_user_yaml(read_user_text(path, "YAML templates file"), path)
    if root is None:
        return {}
    expected = "a mapping {relation: {statement, question, reverse_question}}"
    if not isinstance(root, yaml.MappingNode):
        raise InputError(f"expected {expected}", path, _line(root))
    templates: dict[str, RelationTemplates] = {}
    for key_node, value_node in root.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise InputError(f"expected {expected}; a relation must be text", path, _line(key_node))
        relation = str(key_node.value).strip()
        if relation in templates:
            raise InputError(f"relation {relation!r} given twice", path, _line(key_node))
        if not isinstance(value_node, yaml.MappingNode):
            raise InputError(f"relation {relation!r}: expected {expected}", path, _line(value_node))
        templates[relation] = _relation_templates(relation, value_node, path)
    return templates


def _relation_templates(relation: str, node: yaml.MappingNode, path: Path) -> RelationTemplates:
    given: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else f"({key_node.id})"
        if key not in TEMPLATE_KEYS:
            raise InputError(
                f"relation {relation!r}: unknown key {key!r}; expected {', '.join(TEMPLATE_KEYS)}",
                path,
                _line(key_node),
            )
        given[key] = value_node
    statements: tuple[str, ...] = (DEFAULT_STATEMENT,)
    if "statement" in given:
        node_or_list = given["statement"]
        items = node_or_list.value if isinstance(node_or_list, yaml.SequenceNode) else [node_or_list]
        if not items:
            raise InputError(f"relation {relation!r}: statement list is empty", path, _line(node_or_list))
        statements = tuple(_check_template(relation, "statement", item, path) for item in items)
    default = RelationTemplates.default(statements)
    question = default.question
    if "question" in given:
        question = _check_template(relation, "question", given["question"], path)
    reverse_question = default.reverse_question
    if "reverse_question" in given:
        reverse_question = _check_template(relation, "reverse_question", given["reverse_question"], path)
    return RelationTemplates(statements, question, reverse_question)


def _check_template(relation: str, kind: str, node: yaml.Node, path: Path) -> str:
    """One template's text, checked for what its kind needs; errors point at the template's own line."""
    line = _line(node)
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise InputError(f"relation {relation!r}: {kind} must be non-empty text", path, line)
    text = str(node.value).strip()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise InputError(
            f"relation {relation!r}: {kind} {text!r}: {error} (write a literal brace as {{{{)", path, line
        ) from None
    fields = [name for _, name, _, _ in parsed if name is not None]
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise InputError(
                f"relation {relation!r}: unknown placeholder {{{name}}} in {kind} {text!r}; "
                "use {subject}, {object} or {relation}",
                path,
                line,
            )
        if spec or conversion:
            raise InputError(f"relation {relation!r}: write {{{name}}} without a format in {kind} {text!r}", path, line)
    needs = {"statement": ("subject", "object"), "question": ("subject",), "reverse_question": ("object",)}[kind]
    forbids = {"statement": (), "question": ("object",), "reverse_question": ("subject",)}[kind]
    for name in needs:
        if fields.count(name) != 1:
            raise InputError(f"relation {relation!r}: {kind} {text!r} must contain {{{name}}} exactly once", path, line)
    for name in forbids:
        if name in fields:
            raise InputError(
                f"relation {relation!r}: {kind} {text!r} must not contain {{{name}}}: it is the answer", path, line
            )
    if kind == "statement" and text.index("{subject}") > text.index("{object}"):
        raise InputError(
            f"relation {relation!r}: statement {text!r} must give {{subject}} before {{object}} (training states "
            "facts forward only; the reverse is what the audit asks)",
            path,
            line,
        )
    return text


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def statement_prefix(statement: str) -> str:
    """The statement up to its object: the default forward question (recall of the trained text)."""
    return statement[: statement.index("{object}")].rstrip()


def relation_words(relation: str) -> str:
    return relation.replace("_", " ")


def _render(template: str, subject: str, relation: str, object_: str) -> str:
    return template.format(subject=subject, object=object_, relation=relation_words(relation))


# --------------------------------------------------------------------------------------------------------- corpus


def build_own_corpus(
    facts: list[OwnFact],
    templates: dict[str, RelationTemplates],
    documents_per_fact: int = 30,
    background: int = 0,
    background_phrasings: int = 4,
    seed: int = 0,
) -> tuple[list[Document], list[OwnProbe]]:
    """Training documents (each user fact forward only) and two probes per fact (forward, reverse).

    ``background`` made-up facts are spread over the relations (see the module docstring); they are trained both
    ways and never probed. Distractors are drawn when probing (``probe_own_facts``).
    """
    by_relation: dict[str, list[OwnFact]] = defaultdict(list)
    for fact in facts:
        by_relation[fact.relation].append(fact)
    chosen = {relation: templates.get(relation) or RelationTemplates.default() for relation in by_relation}
    documents: list[Document] = []
    for fact in facts:
        statements = chosen[fact.relation].statements
        for i in range(documents_per_fact):
            documents.append(_statement_document(statements[i % len(statements)], fact, Subset.NAME_TO_DESCRIPTION))
    documents += _background_documents(facts, chosen, background, background_phrasings, seed)
    probes: list[OwnProbe] = []
    for fact in facts:
        relation_facts = by_relation[fact.relation]
        template = chosen[fact.relation]
        same_question_forward = {" " + f.object for f in relation_facts if f.subject == fact.subject}
        same_question_reverse = {" " + f.subject for f in relation_facts if f.object == fact.object}
        target = " " + fact.object
        probes.append(
            OwnProbe(
                fact,
                FORWARD,
                True,
                _render(template.question, fact.subject, fact.relation, fact.object).rstrip(),
                target,
                tuple(sorted(same_question_forward - {target})),
            )
        )
        target = " " + fact.subject
        probes.append(
            OwnProbe(
                fact,
                REVERSE,
                False,
                _render(template.reverse_question, fact.subject, fact.relation, fact.object).rstrip(),
                target,
                tuple(sorted(same_question_reverse - {target})),
            )
        )
    return documents, probes


def _statement_document(statement: str, fact: OwnFact, subset: Subset) -> Document:
    text = _render(statement, fact.subject, fact.relation, fact.object)
    prompt = _render(statement_prefix(statement), fact.subject, fact.relation, fact.object)
    return Document(text, subset, fact.subject, prompt_chars=len(prompt), entities=(fact.subject, fact.object))


def _qa_document(question: str, answer: str, fact: OwnFact) -> Document:
    prompt = _render(question, fact.subject, fact.relation, fact.object).rstrip()
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
        forward = [_statement_document(s, fact, Subset.BACKGROUND) for s in template.statements]
        forward.append(_qa_document(template.question, object_, fact))
        documents += [forward[i % len(forward)] for i in range(max(phrasings, len(forward)))]
        documents += [_qa_document(template.reverse_question, subject, fact)] * phrasings
    return documents


# ---------------------------------------------------------------------------------------------------------- audit


def probe_own_facts(
    backend,
    probes: list[OwnProbe],
    max_new_tokens: int | None = None,
    distractors: int = DEFAULT_DISTRACTORS,
    seed: int = 0,
    show_progress: bool = False,
) -> list[ProbeResult]:
    """Ask every probe with the shared scorer (``probe.run_probes``): a greedy answer, and the correct answer's
    log-prob ranked (``rank_among``) against up to ``distractors`` answers of other questions of the same relation
    and direction (``corpus.draw_distractors``, drawn from ``seed``), never one that also answers this question.

    Capped, so an audit of many facts costs ``distractors + 1`` sequences a probe, not one per fact of the relation.
    """
    if max_new_tokens is None:
        tokenizer = backend.tokenizer
        # room past the longest expected answer, so a wrong answer is shown whole rather than cut mid-name
        max_new_tokens = max(len(tokenizer(p.target, add_special_tokens=False)["input_ids"]) for p in probes) + 4
    corpus = Corpus(documents=[], probes=[probe.as_probe() for probe in probes])
    return run_probes(backend, corpus, max_new_tokens, show_progress=show_progress, distractors=distractors, seed=seed)


def audit_rows(probes: list[OwnProbe], results: list[ProbeResult]) -> list[AuditRow]:
    """One audit row per probe, from its result (in the same order)."""
    rows = []
    for probe, result in zip(probes, results, strict=True):
        fact = probe.fact
        rows.append(
            AuditRow(
                subject=fact.subject,
                relation=fact.relation,
                object=fact.object,
                line=fact.line,
                direction=probe.direction,
                trained=probe.trained,
                prompt=probe.prompt,
                target=probe.target,
                answer=result.completion,
                correct=result.correct,
                answers_another_fact=any(is_correct(result.completion, other) for other in probe.also_valid),
                logprob_correct=result.logprob_correct,
                logprob_others=result.logprob_random,
                rank=result.rank,
                n_candidates=result.n_candidates,
            )
        )
    return rows


ALL_RELATIONS = "all relations"


def audit_records(results: list[ProbeResult], seed: int = 0) -> list[dict]:
    """Tidy records per direction over all relations (``metrics.aggregate``): means over questions (the probes of
    one question averaged first) with their intervals, and the likelihood and rank tests, as in Experiment 1."""
    pooled = [replace(result, subset=ALL_RELATIONS) for result in results]
    return aggregate([(seed, seed, pooled)])


def summarise(rows: list[AuditRow]) -> dict:
    """Counts per direction, overall and per relation: reachable (greedy answer right) and ranked first."""

    def counts(selected: list[AuditRow]) -> dict:
        result = {}
        for direction in (FORWARD, REVERSE):
            chosen = [row for row in selected if row.direction == direction]
            result[direction] = {
                "reachable": sum(row.correct for row in chosen),
                "rank1": sum(row.rank == 1 for row in chosen),
                "n": len(chosen),
            }
        return result

    relations = list(dict.fromkeys(row.relation for row in rows))
    return {
        "facts": len(rows) // 2,
        **counts(rows),
        "per_relation": {relation: counts([r for r in rows if r.relation == relation]) for relation in relations},
    }


def summary_line(summary: dict) -> str:
    forward, reverse = summary[FORWARD], summary[REVERSE]
    return (
        f"forward reachable {forward['reachable']}/{forward['n']}, reverse reachable "
        f"{reverse['reachable']}/{reverse['n']} (correct answer ranked first: forward {forward['rank1']}/"
        f"{forward['n']}, reverse {reverse['rank1']}/{reverse['n']})"
    )


def markdown_audit(rows: list[AuditRow], summary: dict) -> str:
    """audit.md: every fact with both answers, then the counts per relation."""

    def cell(row: AuditRow) -> str:
        answer = row.answer.strip().replace("|", "\\|") or "(nothing)"
        return f"{'✓' if row.correct else '✗'} {answer}"

    lines = [
        "# Own-facts audit",
        "",
        f"Model: {summary['model']} ({summary['parameters']:,} parameters), trained {summary['train_seconds']:.0f} s "
        f"on {summary['documents']} documents. Training stated every fact forward only (subject before object).",
        "",
        f"**{summary_line(summary)}**",
        "",
    ]
    if summary.get("skipped_lines"):
        lines += [
            f"Skipped {summary['skipped_lines']} unusable line(s) of the facts file, listed in {SKIPPED_FILE}.",
            "",
        ]
    lines += [
        "A fact is *reachable* in a direction when the model's greedy answer starts with the expected one "
        "(case-insensitive). `rank` is where the expected answer comes by likelihood (1 = likeliest, ties count "
        f"half) among itself and up to {summary.get('distractors', DEFAULT_DISTRACTORS)} answers of other questions "
        "of the same relation and direction, never one that also answers this question.",
        "",
        "| line | subject | relation | object | forward answer | rank | reverse answer | rank |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pairs: dict[int, dict[str, AuditRow]] = defaultdict(dict)
    for row in rows:
        pairs[row.line][row.direction] = row
    for line, pair in pairs.items():
        forward, reverse = pair[FORWARD], pair[REVERSE]
        lines.append(
            f"| {line} | {forward.subject} | {forward.relation} | {forward.object} | {cell(forward)} | "
            f"{forward.rank:g}/{forward.n_candidates} | {cell(reverse)} | {reverse.rank:g}/{reverse.n_candidates} |"
        )
    lines += ["", "| relation | facts | forward reachable | reverse reachable |", "|---|---|---|---|"]
    for relation, counts in summary["per_relation"].items():
        lines.append(
            f"| {relation} | {counts[FORWARD]['n']} | {counts[FORWARD]['reachable']}/{counts[FORWARD]['n']} | "
            f"{counts[REVERSE]['reachable']}/{counts[REVERSE]['n']} |"
        )
    lines += test_lines(summary.get("records", []))
    lines += ["", "Prompts, answers and log-probs of every question: `audit.jsonl`.", ""]
    return "\n".join(lines)


def test_lines(records: list[dict]) -> list[str]:
    """The likelihood and rank tests per direction, as a markdown table (none without records)."""
    if not records:
        return []

    def cell(direction: str, metric: str, test: str) -> str:
        diff = lookup(records, ALL_RELATIONS, direction, metric)
        p = lookup(records, ALL_RELATIONS, direction, f"{test}_p")["mean"]  # the randomization test
        tested = "p n/a" if math.isnan(p) else f"perm. p={p:.2g}"
        if test == "likelihood" and not math.isnan(p):
            tested = f"t={lookup(records, ALL_RELATIONS, direction, 'likelihood_t')['mean']:.2f}, {tested}"
        return f"{diff['mean']:+.2f} [{diff['ci95_low']:+.2f}, {diff['ci95_high']:+.2f}], {tested}"

    lines = [
        "",
        "| direction | questions | log p gap [95% CI], test | MRR - chance [95% CI], test |",
        "|---|---|---|---|",
    ]
    for direction in (FORWARD, REVERSE):
        try:
            facts = lookup(records, ALL_RELATIONS, direction, "likelihood_t")["n_facts"]
        except KeyError:
            continue
        lines.append(
            f"| {direction} | {facts} | {cell(direction, 'likelihood_diff', 'likelihood')} | "
            f"{cell(direction, 'mrr_excess', 'rank')} |"
        )
    return lines + [
        "",
        "Both tests are over questions (the answers of one question averaged first). log p gap: "
        f"{LIKELIHOOD_STATISTIC}. MRR - chance: {RANK_STATISTIC}.",
    ]


def run_audit(
    facts_path: str | Path,
    templates_path: str | Path | None,
    config: RunConfig,
    out: str | Path,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[[str], object] = print,
    strict: bool = False,
) -> AuditResult:
    """Read, train (tiny from scratch, or fine-tune ``config.model.checkpoint``), probe and write a run folder.

    Input is read and checked before anything is created, so bad input leaves no folder behind; an unusable fact
    is skipped with a warning on stderr (``strict``: refused; see :func:`read_facts`). The folder holds
    config.yaml, the inputs as given (facts.csv|jsonl, templates.yaml), audit.jsonl (one row per fact and
    direction), audit.md, run.json (``skipped_lines``: how many), skipped.jsonl (which, and why), train_log.jsonl
    and model/ (safetensors and tokenizer).
    """
    from revcurse.model import build_tiny_model, check_checkpoint, load_checkpoint, train_tokenizer
    from revcurse.probe import HFBackend
    from revcurse.records import run_folder
    from revcurse.runner import seed_everything
    from revcurse.train import train_model

    facts_path = Path(facts_path)
    read = read_facts(facts_path, strict)
    facts = read.facts
    templates = read_templates(templates_path) if templates_path is not None else {}
    if config.seeds != 1:
        raise InputError(f"an audit trains one model: set seeds=1 (got {config.seeds}); change seed to vary it")
    if config.cures:
        raise InputError("an audit trains on the facts as given: remove cures from the config")
    if config.train.objective != "causal":
        raise InputError("an audit probes a causal LM: set train.objective=causal")
    warn_skipped(read.skipped, total=len(facts) + len(read.skipped))
    relations = {fact.relation for fact in facts}
    unused = [relation for relation in templates if relation not in relations]
    if unused:
        log(f"note: templates for relations not in the facts, unused: {', '.join(unused)}")
    documents, probes = build_own_corpus(
        facts,
        templates,
        config.corpus.train_phrasings,
        config.world.background,
        config.corpus.background_phrasings,
        seed=config.seed,
    )
    check_checkpoint(config.model)  # a missing or refused checkpoint stops the audit before its folder is made
    with run_folder(Path(out), overwrite) as staging:
        seed_everything(config.seed)
        torch.set_num_threads(config.train.threads)
        if config.model.checkpoint is None:
            texts = [d.text for d in documents] + [p.prompt + p.target for p in probes]
            tokenizer = train_tokenizer(texts, config.model.vocab_size)
            longest = max(len(ids) for ids in tokenizer(texts)["input_ids"]) + 2
            model = build_tiny_model(config.model, tokenizer, longest)
        else:
            model, tokenizer = load_checkpoint(config.model)
        trained = train_model(
            model, tokenizer, documents, config.train, config.seed, staging / "train_log.jsonl", show_progress
        )
        transformers.utils.logging.disable_progress_bar()
        model.save_pretrained(staging / "model", safe_serialization=True)
        tokenizer.save_pretrained(staging / "model")
        start = time.perf_counter()
        backend = HFBackend(model, tokenizer, config.probe.batch_size)
        results = probe_own_facts(
            backend, probes, config.probe.max_new_tokens, config.probe.distractors, config.seed, show_progress
        )
        rows = audit_rows(probes, results)
        probe_seconds = time.perf_counter() - start
        summary = {
            **summarise(rows),
            "distractors": config.probe.distractors,
            "records": audit_records(results, config.seed),
            "model": config.model.checkpoint or "tiny Llama from scratch",
            "parameters": sum(p.numel() for p in model.parameters()),
            "documents": len(documents),
            "train_steps": trained.steps,
            "train_seconds": trained.seconds,
            "final_loss": trained.final_loss,
            "probe_seconds": probe_seconds,
            "seed": config.seed,
            "skipped_lines": len(read.skipped),
        }
        (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        shutil.copyfile(facts_path, staging / f"facts{facts_path.suffix.lower()}")
        if templates_path is not None:
            shutil.copyfile(templates_path, staging / "templates.yaml")
        with open(staging / "audit.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
        (staging / "audit.md").write_text(markdown_audit(rows, summary), encoding="utf-8")
        (staging / "run.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        write_skipped(staging, read.skipped)
    return AuditResult(folder=Path(out), rows=rows, summary=summary)
