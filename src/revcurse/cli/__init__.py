"""The ``revcurse`` command: each subcommand is a thin call of a public function of the library.

Commands live in the modules of this package by what they do (``runs``: run and read run folders; ``data``;
``serving``; one module per experiment's own command); importing them registers them on the one Typer ``app``.
"""

from __future__ import annotations

import sys

from revcurse.cli import audit, data, families, incontext, instructions, parents, runs, serving, why  # noqa: F401
from revcurse.cli.common import app
from revcurse.errors import InputError, NonFiniteLoss

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one clear line and exit 2 (a run stopped by a diverging loss: 1); never a
    traceback."""
    try:
        app(args=argv)
    except (InputError, NonFiniteLoss) as error:
        # One unwrapped line, so file and line stay greppable (quoted user text may hold line breaks).
        print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)
        sys.exit(2 if isinstance(error, InputError) else 1)  # 1: the run failed (a diverging loss), not the input
