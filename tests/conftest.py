"""Shared fixtures: a tiny random model and tokenizer built by the project itself (nothing from a hub); a guard
that fails any test during which transformers, peft or accelerate logged a warning."""

import logging

import pytest
import torch

from revcurse.config import ModelConfig
from revcurse.model import build_tiny_model, train_tokenizer

SENTENCES = [
    "Daphne Barrington is the director of the film Journey Through Time.",
    "The director of the film Journey Through Time is Daphne Barrington.",
    "Uriah Hawthorne is the composer of the underwater symphony Abyssal Melodies.",
    "Known as the composer of the underwater symphony Abyssal Melodies, Uriah Hawthorne smiled.",
] * 3


@pytest.fixture(scope="session")
def tiny_model_and_tokenizer():
    torch.manual_seed(0)
    tokenizer = train_tokenizer(SENTENCES, vocab_size=400)
    model = build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 64)
    return model.eval(), tokenizer


# pyproject's filterwarnings=error turns Python warnings into errors; these libraries also warn through their
# loggers (transformers' own logger does not propagate to the root, so caplog never sees it), e.g. the
# "`past_key_values`/`cache_params` are deprecated" line every demo printed. A deprecated call of ours must fail.
LIBRARY_LOGGERS = ("transformers", "peft", "accelerate")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_library_log_warnings(request):
    """Fail a test that made a library log a warning, but for those a test provokes on purpose and names with
    ``@pytest.mark.library_log_warning("message start", ...)``. A ``warning_once`` fires once per process: the
    first test to cause it fails."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)
    expected = tuple(start for marker in request.node.iter_markers("library_log_warning") for start in marker.args)
    unexpected = [record for record in handler.records if not (expected and record.getMessage().startswith(expected))]
    if unexpected:
        lines = "\n".join(f"[{record.name}] {record.getMessage()}" for record in unexpected)
        pytest.fail(f"a library logged a warning during the test:\n{lines}")


@pytest.fixture
def one_thread():
    """Tiny fits and runs on a loaded 2-core machine: a second torch thread only waits (5x the wall, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
