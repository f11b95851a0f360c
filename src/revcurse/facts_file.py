"""Reading a user's facts file (CSV or JSONL of ``subject, relation, object``) and templates file (YAML).

Data only, for the own-facts experiment (``experiments/own_facts.py``), which turns them into documents and probes.
Every bad input is an :class:`InputError` naming file and line; an unusable fact is skipped with its line recorded
(``strict``: refused).

- facts, ``.csv`` with a header holding ``subject,relation,object`` (other columns are ignored) or ``.jsonl``
  with one ``{"subject": ..., "relation": ..., "object": ...}`` object per line;
- templates (optional), YAML ``{relation: {statement, question, reverse_question, reverse_statement}}`` with
  the placeholders ``{subject}``, ``{object}`` and ``{relation}`` (the relation with ``_`` read as spaces).
  ``statement`` and ``reverse_statement`` may be lists: each item is one phrasing.

Defaults, for a relation without templates or a key left out:

- statement ``"{subject} {relation} {object}."``, so write relations as verb phrases (``was born in``, ``wrote``);
- forward question: the first statement up to ``{object}`` ("Ada Lovelace wrote"). That prompt is the very
  prefix the model was trained on, so the forward column then measures recall of the training text, not
  generalisation to a new question; give a ``question`` template to measure the latter;
- reverse question ``"Who or what {relation} {object}? Answer:"``;
- reverse statement (trained only by the ``bidirectional`` cure): the reverse question followed by the subject,
  the form background facts are asked in.
"""

from __future__ import annotations

import csv
import io
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from revcurse.errors import (
    InputError,
    SkippedLine,
    csv_values,
    none_left,
    parse_json,
    read_user_text,
    skip_or_refuse,
)
from revcurse.user_yaml import compose_user_yaml

COLUMNS = ("subject", "relation", "object")
PLACEHOLDERS = ("subject", "object", "relation")
TEMPLATE_KEYS = ("statement", "question", "reverse_question", "reverse_statement")
DEFAULT_STATEMENT = "{subject} {relation} {object}."
DEFAULT_REVERSE_QUESTION = "Who or what {relation} {object}? Answer:"


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
    with a leading space, as completions do in the paper's files. ``reverse_statements`` state a fact object
    first; empty: the reverse question and its answer (see the module docstring).
    """

    statements: tuple[str, ...]
    question: str
    reverse_question: str
    reverse_statements: tuple[str, ...] = ()

    @staticmethod
    def default(statements: tuple[str, ...] = (DEFAULT_STATEMENT,)) -> RelationTemplates:
        return RelationTemplates(statements, statement_prefix(statements[0]), DEFAULT_REVERSE_QUESTION)


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
    statements = _template_list(relation, "statement", given, path) or (DEFAULT_STATEMENT,)
    default = RelationTemplates.default(statements)
    question = default.question
    if "question" in given:
        question = _check_template(relation, "question", given["question"], path)
    reverse_question = default.reverse_question
    if "reverse_question" in given:
        reverse_question = _check_template(relation, "reverse_question", given["reverse_question"], path)
    reverse_statements = _template_list(relation, "reverse_statement", given, path)
    return RelationTemplates(statements, question, reverse_question, reverse_statements)


def _template_list(relation: str, kind: str, given: dict[str, yaml.Node], path: Path) -> tuple[str, ...]:
    """One template or a list of them (each a phrasing); () when the key is not given."""
    if kind not in given:
        return ()
    node = given[kind]
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if not items:
        raise InputError(f"relation {relation!r}: {kind} list is empty", path, _line(node))
    return tuple(_check_template(relation, kind, item, path) for item in items)


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
    both = ("subject", "object")
    needs = {"question": ("subject",), "reverse_question": ("object",)}.get(kind, both)
    forbids = {"question": ("object",), "reverse_question": ("subject",)}.get(kind, ())
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
    if kind == "reverse_statement" and text.index("{object}") > text.index("{subject}"):
        raise InputError(
            f"relation {relation!r}: reverse_statement {text!r} must give {{object}} before {{subject}}", path, line
        )
    return text


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def statement_prefix(statement: str) -> str:
    """The statement up to its object: the default forward question (recall of the trained text)."""
    return statement[: statement.index("{object}")].rstrip()


def relation_words(relation: str) -> str:
    return relation.replace("_", " ")


def render(template: str, subject: str, relation: str, object_: str) -> str:
    """A template filled in with one fact (the relation's ``_`` read as spaces)."""
    return template.format(subject=subject, object=object_, relation=relation_words(relation))
