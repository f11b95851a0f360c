"""Versions: which library versions a run was made with, and how they differ from those installed now.

A run records them in run.json; ``revcurse show`` and the report say when the installed ones differ, since a
rerun with another ``transformers`` or ``tokenizers`` may not give the same numbers.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

import revcurse

# The libraries a run's numbers depend on: tokenization, model code, training, statistics.
RECORDED_LIBRARIES = ("torch", "transformers", "tokenizers", "accelerate", "peft", "safetensors", "numpy", "scipy")


def library_versions() -> dict[str, str | None]:
    """The versions a run's numbers depend on, and the git commit of revcurse's source when it is a checkout."""
    return {
        "revcurse": revcurse.__version__,
        "git_commit": git_commit(),
        **{name: installed_version(name) for name in RECORDED_LIBRARIES},
        "python": platform.python_version(),
    }


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution (None when it is not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_differences(recorded: dict[str, str | None] | None) -> list[str]:
    """Where the versions a run recorded differ from those installed now, one phrase each ("transformers 5.23.0,
    installed 5.24.0"): a rerun may then not give the same numbers. The git commit is left out (it changes with
    every edit of the source; run.json keeps it), and so is a library the run did not record."""
    installed = {"revcurse": revcurse.__version__, "python": platform.python_version()}
    differences = []
    for name, version in (recorded or {}).items():
        if name == "git_commit" or version is None:
            continue
        now = installed[name] if name in installed else installed_version(name)
        if now != version:
            differences.append(f"{name} {version}, installed {now or 'none'}")
    return differences


def git_commit() -> str | None:
    """The commit of the revcurse source tree (with ``+dirty`` for uncommitted changes); None outside a checkout."""
    source = Path(revcurse.__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "."], cwd=source,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
