"""Errors a user can fix: the CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations

import json
from pathlib import Path


class InputError(Exception):
    """Bad user input: names the file, the line (1-based) and what was expected."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}, line {line}"
            where += ": "
        super().__init__(where + message)


def read_user_text(path: Path, what: str) -> str:
    """A user's text file as a string (a leading BOM dropped); a missing, unreadable or non-UTF-8 file is an
    InputError saying which, and for bad UTF-8 on which line. ``what`` names the file: "facts file", ..."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise InputError(f"expected a {what}, got a folder", path) from None
    except OSError as error:
        raise InputError(f"cannot read the {what}: {error.strerror or error}", path) from None
    try:
        return data.decode("utf-8-sig")  # utf-8-sig: a spreadsheet's BOM is not part of the first column
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text: {error.reason} at byte {error.start}", path, line) from None


def loader_problem(error: ValueError | RecursionError, nested: str = "arrays or objects") -> str:
    """What a JSON or YAML loader objected to beyond syntax: nesting past the stack, or an integer of over 4300
    digits (Python's int conversion limit)."""
    if isinstance(error, RecursionError):
        return f"{nested} nested too deeply"
    return str(error).split(";")[0]


def parse_json(text: str, path: Path, line: int | None = None) -> object:
    """``json.loads`` with every failure an InputError naming ``path`` and the line (``line``: the JSONL line
    ``text`` came from; else the line inside ``text``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON: {error.msg} (column {error.colno})", path, line or error.lineno) from None
    except (ValueError, RecursionError) as error:
        raise InputError(f"not readable JSON: {loader_problem(error)}", path, line) from None
