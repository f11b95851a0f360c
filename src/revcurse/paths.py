"""Run names from the command line, checked so that a run folder always lands inside the runs folder.

``--name NAME`` is a name, not a path: ``runs/NAME``. A name with a path separator, ``..``, an absolute path, a
leading dot (hidden, and the prefix of revcurse's own staging folders) or a control character could write
outside ``runs/`` or hide a run, so it is refused (exit 2) before anything is created. ``--out`` stays the way
to pick any folder explicitly.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from revcurse.errors import InputError

RUNS_DIR = Path("runs")
MAX_NAME_LENGTH = 200  # under the usual 255-byte file name limit, with room for ".NAME.tmp-XXXX" staging names


def check_run_name(name: str) -> str:
    """``name`` unchanged if it is a plain folder name; an InputError saying what is wrong otherwise."""
    problem = None
    if not name or not name.strip():
        problem = "is empty"
    elif name != name.strip():
        problem = "starts or ends with white space"
    elif any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in name):
        problem = "contains a control character"
    elif Path(name).is_absolute() or (len(name) > 1 and name[0].isalpha() and name[1] == ":"):
        problem = "is an absolute path (or names a drive)"
    elif any(sep in name for sep in ("/", "\\")):
        problem = "contains a path separator"
    elif name.startswith("."):
        problem = "starts with '.' ('..' would leave the runs folder; '.name' is hidden)"
    elif len(name.encode("utf-8")) > MAX_NAME_LENGTH:
        problem = f"is longer than {MAX_NAME_LENGTH} bytes"
    if problem:
        raise InputError(f"run name {name!r} {problem}: give a plain name like 'exp1-seed3', or --out DIR for a path")
    return name


def run_folder_for(name: str, runs_dir: Path = RUNS_DIR) -> Path:
    """``runs_dir / name`` for a checked run name: always a direct child of ``runs_dir``."""
    folder = runs_dir / check_run_name(name)
    assert folder.parent == runs_dir  # guaranteed by check_run_name; kept as the invariant's statement
    return folder


def output_folder(out: Path | None, name: str | None, default_name: str, runs_dir: Path = RUNS_DIR) -> Path:
    """The folder a command writes: ``--out`` as given, ``--name`` under ``runs_dir``, else ``default_name`` there."""
    if out is not None and name is not None:
        raise InputError("give --out DIR or --name NAME, not both")
    if out is not None:
        return out
    return run_folder_for(name if name is not None else default_name, runs_dir)


PARTIAL_SUFFIX = ".partial"


def partial_folder(destination: Path) -> Path:
    """Where a run is built until it finishes: a hidden sibling, kept after a crash so it can be resumed."""
    return destination.parent / f".{destination.name}{PARTIAL_SUFFIX}"


def job_files_folder(destination: Path) -> Path:
    """Where submitit keeps a run's SLURM job files (pickles, stdout, stderr): a hidden sibling, as the partial
    folder is, so the run folder holds the run alone and the files outlive a failed run for reading."""
    return destination.parent / f".{destination.name}.submitit"


def is_partial(folder: Path) -> bool:
    return folder.name.startswith(".") and folder.name.endswith(PARTIAL_SUFFIX)


def destination_name(folder: Path) -> str:
    """The name a run folder has once finished: NAME for ``.NAME.partial`` (partial_folder's inverse)."""
    return folder.name[1 : -len(PARTIAL_SUFFIX)] if is_partial(folder) else folder.name
