"""Errors a user can fix: the CLI prints them as one line without a traceback, exit code 2 for bad input
(InputError) and 1 for a run that failed on its own (NonFiniteLoss)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
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


class NotGivenError(InputError):
    """A backend cannot give a number it was asked for (a server that returns no prompt log-probs): the scorer
    records it as not given (NaN, with this message) instead of failing or inventing it."""


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss, or the weights after an update, became inf or nan.

    The run stops at that step rather than finish as a normal run with a table of zeros: no checkpoint is written
    after it and the loss log holds finite steps only. ``records.run_folder`` keeps the run, marked failed, when
    there is a checkpoint to resume from (and calls ``explain``); the CLI prints one line and exits 1.
    """

    def __init__(
        self, seed: int, step: int, total_steps: int, problem: str, learning_rate: float, checkpoint_step: int | None
    ) -> None:
        super().__init__(seed, step, total_steps, problem, learning_rate, checkpoint_step)  # args: picklable
        self.seed, self.step, self.total_steps, self.problem = seed, step, total_steps, problem
        self.learning_rate, self.checkpoint_step = learning_rate, checkpoint_step
        self.next_steps = ""

    def __str__(self) -> str:
        return (
            f"training seed {self.seed} stopped at step {self.step} of {self.total_steps}: {self.problem} "
            f"(is train.learning_rate={self.learning_rate:g} too high?){self.next_steps}"
        )

    def explain(self, kept_in: Path | None, resume_command: str | None) -> None:
        """Add where the run is and what the user can do: resume runs the same config, which may diverge again."""
        if self.next_steps:  # already said by an inner run folder
            return
        if kept_in is None:
            self.next_steps = "; nothing was kept (no checkpoint before it): start again with a lower learning rate"
            return
        saved = (
            f"with a checkpoint after step {self.checkpoint_step}" if self.checkpoint_step is not None
            else "(no checkpoint of this seed before it)"
        )
        retry = ""
        if resume_command:
            retry = f"{resume_command} retries from there with the same config, which may diverge again; "
        self.next_steps = (
            f"; the run is marked failed in {kept_in} {saved}: {retry}to change the config (a lower learning rate), "
            "start again with --overwrite"
        )


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


def csv_values(row: dict[str | None, object], columns: list[str]) -> int:
    """How many values a ``csv.DictReader`` row held. It files surplus values under the key None and fills missing
    ones with None, so this is where a row with the wrong number of fields shows: a fault of the file's structure,
    as its values would be read under the wrong columns."""
    surplus = row.get(None)
    return len(columns) + (len(surplus) if isinstance(surplus, list) else 0) - sum(row[c] is None for c in columns)


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


SKIPPED_FILE = "skipped.jsonl"  # in a run folder: one line per input example a reader skipped, with why


@dataclass(frozen=True)
class SkippedLine:
    """One input example a reader could not use (an empty answer, a duplicate) and left out of the run.

    Published data has such lines; one of them must not stop a run of a thousand. A reader skips it with a
    warning naming the file and line, the run folder records it (``skipped.jsonl``), and ``--strict`` refuses.
    """

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}, line {self.line}: {self.reason}; skipped"

    def to_json(self) -> dict[str, object]:
        return {"file": self.path, "line": self.line, "reason": self.reason}


def skip_or_refuse(reason: str, path: str | Path, line: int, strict: bool, skipped: list[SkippedLine]) -> None:
    """Record an unusable example in ``skipped``, or with ``strict`` refuse it as an InputError (exit 2)."""
    if strict:
        raise InputError(f"{reason} (--strict refuses an unusable line; without it the line is skipped)", path, line)
    skipped.append(SkippedLine(str(path), line, reason))


def print_warning(text: str) -> None:
    """A warning on stderr beside the ``error:`` lines, as plain text: quoted user text is never read as markup."""
    print(text, file=sys.stderr)


def none_left(what: str, path: str | Path, skipped: list[SkippedLine]) -> InputError:
    """The refusal of a file whose every usable line was skipped: a run on nothing would only bury the warnings.
    Names the first skipped line of ``path``, as --strict would have."""
    mine = [entry for entry in skipped if entry.path == str(path)]
    first = f" (first: line {mine[0].line}: {mine[0].reason})" if mine else ""
    return InputError(f"no usable {what}: all {len(mine)} skipped{first}", path)


def warn_skipped(
    skipped: list[SkippedLine], log: Callable[[str], object] = print_warning, total: int | None = None
) -> None:
    """Print one warning per skipped line (the first 20) and the count, so a user sees what was left out."""
    if not skipped:
        return
    for entry in skipped[:20]:
        log(f"warning: {entry}")
    if len(skipped) > 20:
        log(f"warning: ... and {len(skipped) - 20} more (all listed in {SKIPPED_FILE})")
    of = f" of {total}" if total is not None else ""
    log(f"warning: skipped {len(skipped)} unusable line(s){of}; pass --strict to refuse instead")


def write_skipped(folder: Path, skipped: list[SkippedLine]) -> None:
    """Record the skipped lines in a run folder (always written, empty when nothing was skipped)."""
    lines = "".join(json.dumps(entry.to_json(), ensure_ascii=False) + "\n" for entry in skipped)
    (Path(folder) / SKIPPED_FILE).write_text(lines, encoding="utf-8")
