"""The lock (requirements.lock): exact versions with hashes that `make` installs, consistent with pyproject.toml.

`make demo` and `make test` install the lock with --require-hashes --no-deps, so the lock must pin every package
the project needs, each to one version with its hashes, and satisfy pyproject.toml's ranges (which is what
`pip install revcurse` gets). The environment the tests run in is the one the lock describes.
"""

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
PINNED_APART = {"torch"}  # installed first by the Makefile, pinned there (the CPU build), not in the lock


def locked() -> dict[str, tuple[Version, int]]:
    """Name -> (version, number of hashes) for every requirement of the lock."""
    pins: dict[str, tuple[Version, int]] = {}
    for entry in re.split(r"\n(?=\S)", LOCK.read_text()):
        line = entry.split("\n", 1)[0]
        if not line.strip() or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"requirements.lock: an option line ({line!r}) ties the lock to a machine"
        requirement = Requirement(line.rstrip(" \\"))
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"requirements.lock: {line!r} is not pinned"
        pins[canonicalize_name(requirement.name)] = (Version(specifiers[0].version), entry.count("--hash=sha256:"))
    return pins


def project_requirements() -> list[Requirement]:
    """The project's own dependencies and its dev extra: what `make` installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_every_package_is_pinned_to_one_version_with_its_hashes():
    pins = locked()
    assert len(pins) > 50
    assert all(hashes >= 1 for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if h == 0]


def test_the_lock_holds_no_torch_and_no_cuda_libraries():
    names = set(locked())
    assert not names & PINNED_APART
    assert not {n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"}


def test_the_lock_satisfies_every_range_of_pyproject():
    pins = locked()
    makefile = (ROOT / "Makefile").read_text()
    torch_pin = Version(re.search(r"torch==([\w.+]+)", makefile).group(1))
    for requirement in project_requirements():
        name = canonicalize_name(requirement.name)
        version = torch_pin if name in PINNED_APART else pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement} vs locked {version}"


def test_the_lock_is_closed_every_dependency_of_a_locked_package_is_locked():
    """--no-deps installs only what the lock lists: a dependency missing from it would be missing at run time."""
    pins = locked()
    missing = []
    for name in [*pins, "revcurse"]:
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue  # an extra of that package, or another platform's dependency
            dependency = canonicalize_name(requirement.name)
            if dependency not in pins and dependency not in PINNED_APART:
                missing.append(f"{name} needs {requirement}")
    assert not missing, missing


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").is_file(), reason="not in the environment `make` builds")
def test_the_installed_environment_is_the_lock():
    """What the tests run on is what the lock says: the versions CI tested are the versions a fresh clone gets."""
    different = {}
    for name, (version, _) in locked().items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            different[name] = f"locked {version}, installed {installed}"
    assert not different, different


def test_make_installs_the_lock_with_hashes_and_no_resolution():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r $(LOCK)" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    assert "lock:" in makefile and "pip-compile --upgrade" in makefile
