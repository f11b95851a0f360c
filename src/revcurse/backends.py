"""The probe backends, by the name ``probe.backend`` gives them: who answers a run's probes.

Every backend answers the two requests of ``probe.ProbeBackend`` (``loglikelihood`` and ``generate``; ``sample``
where it can). ``hf`` scores the model in this process (trained here, or ``model.checkpoint``); the others ask a
model this process never trains. Adding a backend: a module with its class, and one entry in ``BACKENDS`` (an
optional dependency imported inside its builder, so nobody without it pays for it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from revcurse.errors import InputError

if TYPE_CHECKING:
    from revcurse.config import RunConfig
    from revcurse.probe import ProbeBackend

REQUESTS_PER_CALL = 16  # openai: prompts in one HTTP request (servers cap a request's size, not the model's batch)


def hf_backend(config: RunConfig, model: Any, tokenizer: Any) -> ProbeBackend:
    """The model in this process; any-order (MLM-U) models score and generate by filling masks."""
    from revcurse.masked_probe import MaskedLMBackend
    from revcurse.objectives import is_masked
    from revcurse.probe import HFBackend

    masked = is_masked(config.train.objective)
    return (MaskedLMBackend if masked else HFBackend)(model, tokenizer, config.probe.batch_size)


def vllm_backend(config: RunConfig, model: Any, tokenizer: Any) -> ProbeBackend:
    """``model.checkpoint`` served by vLLM in this process (``pip install 'revcurse[vllm]'``, a GPU)."""
    from revcurse.vllm_backend import VLLMBackend

    if config.model.checkpoint is None:
        raise InputError("probe.backend=vllm asks model.checkpoint: set it to a folder or hub id")
    return VLLMBackend(config.model.checkpoint, trust_remote_code=config.model.trust_remote_code, seed=config.seed)


def openai_backend(config: RunConfig, model: Any, tokenizer: Any) -> ProbeBackend:
    """Any OpenAI-compatible server at ``probe.url`` (vLLM, ``revcurse serve``, a hosted API)."""
    from revcurse.remote import backend_from_url

    if not config.probe.url:
        raise InputError("probe.backend=openai asks probe.url: the server, e.g. http://127.0.0.1:8000/v1")
    return backend_from_url(
        config.probe.url, config.probe.model_name, config.probe.api_key_env,
        concurrency=config.probe.concurrency, batch_size=REQUESTS_PER_CALL,
    )


BACKENDS: dict[str, Callable[[RunConfig, Any, Any], ProbeBackend]] = {
    "hf": hf_backend,
    "vllm": vllm_backend,
    "openai": openai_backend,
}
LOCAL_BACKENDS = {"hf"}  # backends that score a model held in this process: the only ones a run can train for
