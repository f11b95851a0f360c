"""No warnings: a user's run prints none, and the suite turns every warning into an error (pyproject.toml).

Python warnings fail any test through ``filterwarnings = ["error", ...]``; library logger warnings (transformers'
``warning_once``, which are no Python warnings) fail any test through the guard in ``tests/conftest.py``. The end
to end runs below check what a user sees: the whole output of real ``revcurse`` processes.
"""

import re
import subprocess
import sys
import warnings

import pytest
from transformers.utils import logging as transformers_logging

WARNING_LINE = re.compile(r"warning|deprecated", re.IGNORECASE)
TINY = [
    "world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=3", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "model.hidden_size=32", "model.layers=1", "model.heads=2",
    "model.intermediate_size=64", "model.vocab_size=400", "train.epochs=2", "train.batch_size=16", "train.threads=1",
    "probe.samples=2",  # sampled answers too: generate() with do_sample, beyond the greedy answers
]  # fmt: skip


def revcurse(*args: str) -> str:
    """Run ``revcurse`` in a fresh process that shows every Python warning (DeprecationWarning included, which
    Python hides by default outside __main__); its stdout and stderr together."""
    command = [sys.executable, "-W", "default", "-m", "revcurse.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def warning_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if WARNING_LINE.search(line)]


@pytest.mark.slow
def test_a_tiny_demo_then_lora_fine_tuning_print_no_warning(tmp_path):
    """Train from scratch, score (cached contexts), generate and sample; then LoRA on the model it saved."""
    sets = [arg for key in TINY for arg in ("--set", key)]
    demo = revcurse("demo", "--quiet", "--out", str(tmp_path / "demo"), *sets)
    assert "run folder:" in demo  # it did run to the end
    assert warning_lines(demo) == []
    lora = revcurse("train", "--quiet", "--out", str(tmp_path / "lora"), *sets,
                    "--set", f"model.checkpoint={tmp_path / 'demo' / 'seed-0' / 'model'}", "--set", "lora.enabled=true",
                    "--set", "lora.merge_on_save=false")
    assert (tmp_path / "lora" / "seed-0" / "model" / "adapter_config.json").is_file()
    assert warning_lines(lora) == []


def test_the_pattern_finds_what_users_saw():
    """The lines every demo printed with transformers 5.24 before the move to the ``cache`` API are caught."""
    seen = (
        "[transformers] `past_key_values`/`cache_params` are deprecated. Use `cache` instead.\n"
        "module.py:1789: FutureWarning: `past_key_values` is deprecated and will be removed in version 5.40.0\n"
        "trained 3 s at 3,281 tok/s, probed 7 s; run folder: runs/demo"
    )
    assert len(warning_lines(seen)) == 2


def test_the_suite_turns_warnings_into_errors(request):
    """``error`` comes first (later entries win: the exceptions after it stay exceptions), and each exception is
    narrow: ``ignore`` with a message and a category, never a blanket ``ignore`` of a whole category."""
    filters = request.config.getini("filterwarnings")
    assert filters[0] == "error"
    for entry in filters[1:]:
        action, message, category, *_ = entry.split(":") + ["", ""]
        assert action == "ignore" and message.strip() and category.strip(), entry
    with pytest.raises(DeprecationWarning):
        warnings.warn("a deprecated call of ours", DeprecationWarning, stacklevel=1)


@pytest.mark.library_log_warning("a deprecated call of ours")
def test_the_guard_sees_transformers_logger_warnings(no_library_log_warnings):
    """transformers logs to its own logger, which does not reach the root logger: the guard must still see it."""
    transformers_logging.get_logger("transformers.revcurse_test").warning("a deprecated call of ours")
    assert [record.getMessage() for record in no_library_log_warnings] == ["a deprecated call of ours"]
