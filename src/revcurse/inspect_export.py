"""What ``revcurse export --format inspect`` needs beyond the shared probe rows: the rows' inspect fields (direction,
cell, generation budget) and the model args that make inspect's ``hf`` provider generate as ``HFBackend`` does.

inspect's ``hf`` provider renders a sample's messages with a chat template (``-M chat_template``, else the
tokenizer's, else ``"user: ...\\n"`` lines), tokenizes the text with ``tokenizer_call_args`` (special tokens added by
default), and samples unless ``do_sample`` is false. revcurse's base models are probed on the raw prompt after BOS
(``HFBackend.encode``), greedily: ``inspect_model_args`` says how to get exactly that. The task itself is
``inspect_task.py``, copied into the export as ``task.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from revcurse.corpus import Corpus, Probe
from revcurse.errors import InputError
from revcurse.probe import generation_budget

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TASK_SOURCE = Path(__file__).with_name("inspect_task.py")
# The prompt alone (a sample has one user message), after the tokenizer's BOS token or without it.
PROMPT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
BOS_PROMPT_TEMPLATE = "{% if bos_token is defined %}{{ bos_token }}{% endif %}" + PROMPT_TEMPLATE


def inspect_model_args(tokenizer: PreTrainedTokenizerBase | None = None) -> dict:
    """Model args making inspect's hf provider encode a prompt as ``HFBackend.encode`` does (BOS, then the prompt
    alone), and decode greedily. A tokenizer that adds BOS itself (a SentencePiece-style post-processor) is left to:
    BOS written into the text would change how the first word splits (Metaspace prepends "▁" only at the start).
    Without a tokenizer: revcurse's tiny models' kind (a BOS token the tokenizer does not add)."""
    adds_bos = bool(tokenizer and tokenizer.bos_token_id is not None) and tokenizer("a")["input_ids"] == [
        tokenizer.bos_token_id, *tokenizer("a", add_special_tokens=False)["input_ids"]
    ]  # fmt: skip
    return {
        "chat_template": PROMPT_TEMPLATE if adds_bos else BOS_PROMPT_TEMPLATE,
        "tokenizer_call_args": {"add_special_tokens": adds_bos},
        "do_sample": False,
    }


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The tokenizer of a local model folder (never the hub, never its own code)."""
    from transformers import AutoTokenizer

    if not (folder / "tokenizer_config.json").is_file():
        raise InputError("not a model folder with a tokenizer: expected tokenizer_config.json", folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError) as error:
        raise InputError(f"could not load its tokenizer: {' '.join(str(error).split())}", folder) from None


def inspect_rows(
    corpus: Corpus,
    rows: list[dict],
    max_new_tokens: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[dict]:
    """The probes' rows (``export.probe_rows``, one per probe in order) with what the task reads: ``direction``
    (forward: asked the trained way; reverse), ``cell`` (subset and asked direction), ``setting``, and
    ``max_new_tokens``: the given one, else ``generation_budget`` of the probe's setting, which ``run_probes`` is
    run once per (``runner.probe_settings``)."""
    settings: dict[str, list[Probe]] = {}
    for probe in corpus.probes:
        settings.setdefault(probe.setting, []).append(probe)
    budgets = {
        name: generation_budget(probes, tokenizer) if max_new_tokens is None else max_new_tokens
        for name, probes in settings.items()
    }
    extended = []
    for probe, row in zip(corpus.probes, rows, strict=True):
        direction = "forward" if probe.trained else "reverse"
        extended.append(
            {
                **row,
                "direction": direction,
                "cell": f"{row['subset']} asked {row['asked']} ({direction})",
                "setting": probe.setting,
                "max_new_tokens": budgets[probe.setting],
            }
        )
    return extended
