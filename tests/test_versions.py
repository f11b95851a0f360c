"""Versions: what a run records, and the difference from what is installed now that show and the report state."""

import importlib.metadata
import platform

import revcurse
from revcurse.versions import RECORDED_LIBRARIES, library_versions, version_differences


def test_a_run_records_the_installed_versions_of_the_libraries_its_numbers_depend_on():
    versions = library_versions()
    assert versions["revcurse"] == revcurse.__version__
    assert versions["python"] == platform.python_version()
    for name in RECORDED_LIBRARIES:
        assert versions[name] == importlib.metadata.version(name), name
    assert {"transformers", "tokenizers", "torch"} <= versions.keys()


def test_versions_recorded_now_differ_in_nothing():
    assert version_differences(library_versions()) == []
    assert version_differences(None) == [] and version_differences({}) == []


def test_each_difference_names_the_library_the_recorded_and_the_installed_version():
    installed = importlib.metadata.version("transformers")
    recorded = {**library_versions(), "transformers": "4.0.0", "git_commit": "0" * 40, "python": "3.0.1"}
    assert version_differences(recorded) == [
        f"transformers 4.0.0, installed {installed}",
        f"python 3.0.1, installed {platform.python_version()}",
    ]


def test_a_recorded_library_that_is_not_installed_is_a_difference():
    assert version_differences({"no-such-library-here": "1.0"}) == ["no-such-library-here 1.0, installed none"]
