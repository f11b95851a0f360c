"""The paper's ``parent_child_pairs.csv`` (Experiment 2): rows of (child, parent, parent_type), read and checked.

A data reader only: it imports no part of training, probing or records, so the experiment module may use it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revcurse.errors import InputError, SkippedLine, csv_values, none_left, read_user_text, skip_or_refuse

REQUIRED_COLUMNS = ("child", "parent", "parent_type")
OPTIONAL_COLUMNS = ("child_prediction", "can_reverse")
PARENT_TYPES = ("mother", "father")

@dataclass(frozen=True)
class ParentChildPair:
    """One row of ``parent_child_pairs.csv``; ``line`` is its line in the file (the header is line 1).

    ``child_prediction`` and ``can_reverse`` are the paper's GPT-4 results for the row, kept when present.
    """

    child: str
    parent: str
    parent_type: str
    child_prediction: str | None = None
    can_reverse: bool | None = None
    line: int = 0


@dataclass
class PairsFile:
    """The usable rows of a parent/child CSV, and its rows left out as unusable (for the warnings and run folder)."""

    pairs: list[ParentChildPair]
    skipped: list[SkippedLine] = field(default_factory=list)


def read_parent_child_pairs(path: str | Path, strict: bool = False) -> PairsFile:
    """Read and check a CSV with columns child,parent,parent_type[,child_prediction,can_reverse].

    Lenient on rows, strict on structure. Skipped with a warning (``strict`` refuses instead), as one such row
    must not stop a run over the rest: a row with an empty child or parent, a parent_type other than mother or
    father, and a row repeating an earlier one (same child, parent and parent_type, names compared as everywhere
    here; the first is kept). Refused, an ``InputError`` naming the file and line so a user can fix the row, not
    guess at it: a file that is not UTF-8 or CSV, an empty file, a missing column, a row with other than one field
    per header column (its values would be read under the wrong names), a can_reverse that is not a boolean, and
    a file with no usable row.
    """
    path = Path(path)
    text = read_user_text(path, "CSV file")
    pairs: list[ParentChildPair] = []
    skipped: list[SkippedLine] = []
    seen: dict[tuple[str, str, str], int] = {}  # (child, parent, parent_type) -> line first given on
    read_rows = 0
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames
            if not header:
                raise InputError(f"empty file; expected the header {','.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}",
                                 path, 1)
            columns = [name.strip() for name in header]
            missing = [name for name in REQUIRED_COLUMNS if name not in columns]
            if missing:
                raise InputError(f"missing column(s) {', '.join(missing)}; the header has {', '.join(columns)}",
                                 path, 1)
            reader.fieldnames = columns
            for row in reader:
                read_rows += 1
                line = reader.line_num
                pair = _parse_row(row, columns, path, line)
                problem = _unusable_row(pair)
                key = (normalize_name(pair.child), normalize_name(pair.parent), pair.parent_type)
                if not problem and key in seen:
                    names = f"{pair.child}, {pair.parent}, {pair.parent_type}"
                    problem = f"duplicate row ({names}): first given on line {seen[key]}"
                if problem:
                    skip_or_refuse(problem, path, line, strict, skipped)
                    continue
                seen[key] = line
                pairs.append(pair)
        except csv.Error as error:  # DictReader.line_num lags a row behind; its csv.reader's is the failing line
            raise InputError(f"not a readable CSV: {error}", path, reader.reader.line_num or None) from None
    if not read_rows:
        raise InputError("no rows after the header", path)
    if not pairs:
        raise none_left("rows", path, skipped)
    return PairsFile(pairs, skipped)


def _parse_row(row: dict[str | None, Any], columns: list[str], path: Path, line: int) -> ParentChildPair:
    """One row as read (checked for structure only: its width and the can_reverse boolean)."""
    given = csv_values(row, columns)
    if given != len(columns):
        raise InputError(f"expected {len(columns)} fields, got {given}", path, line)
    values = {key: (value or "").strip() for key, value in row.items() if key is not None}
    raw_reverse = values.get("can_reverse", "").lower()
    if raw_reverse not in ("", "true", "false", "1", "0"):
        raise InputError(f"can_reverse must be True, False or empty, got {values['can_reverse']!r}", path, line)
    return ParentChildPair(
        child=values["child"],
        parent=values["parent"],
        parent_type=values["parent_type"].lower(),
        child_prediction=values.get("child_prediction") or None,
        can_reverse=None if not raw_reverse else raw_reverse in ("true", "1"),
        line=line,
    )


def _unusable_row(pair: ParentChildPair) -> str:
    """Why a well-formed row cannot be asked ("" if it can): a question needs both names and a parent type."""
    for name in ("child", "parent"):
        if not getattr(pair, name):
            return f"empty {name}"
    if pair.parent_type not in PARENT_TYPES:
        return f"parent_type must be mother or father, got {pair.parent_type!r}"
    return ""


def normalize_name(text: str) -> str:
    """Case-folded, whitespace collapsed: how names are compared everywhere in this module."""
    return " ".join(text.casefold().split())
