"""Model: a tiny Llama-style causal LM built from a config, or any causal LM loaded from a checkpoint.

Both give a ``transformers`` model and tokenizer, so training and probing have one code path. The tiny model's
tokenizer is a byte-level BPE trained by ``tokenizers`` on all text the model will see (training documents,
probes), so every word of a phrasing or a name is known, and decoding gives the exact text back.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from revcurse.config import LoraSection, ModelConfig
from revcurse.errors import InputError
from revcurse.sharding import placement, prepare_quantized, quantization_config

# Distinct pad and EOS: a collator that masks pad in the labels must not also mask the end of every document.
# <mask> is used only by the MLM-U objective.
SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``texts``; a word seen often enough becomes one token (with its leading space)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def build_tiny_model(
    config: ModelConfig, tokenizer: PreTrainedTokenizerFast, max_length: int, bidirectional: bool = False
) -> LlamaForCausalLM:
    """A small Llama (RMSNorm, rotary positions, SwiGLU), initialised from the global seed.

    ``bidirectional`` (for MLM-U) lets every position attend to every other: the same blocks, no causal mask.
    """
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=max(64, max_length),
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(llama).to(getattr(torch, config.dtype))  # initialised in float32, from the seed
    return set_bidirectional(model) if bidirectional else model


def set_bidirectional(model: PreTrainedModel) -> PreTrainedModel:
    """Drop the causal mask: the config flag picks a bidirectional padding mask, the module flags stop SDPA from
    falling back to causal attention when no padding mask is needed. Re-apply after loading a saved model."""
    model.config.is_causal = False
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
    return model


def load_checkpoint(
    config: ModelConfig, what: str = "model.checkpoint"
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a causal LM and its tokenizer from a local folder (or a hub id), weights from safetensors only.

    Safe by default: pickle weights (``pytorch_model.bin``, ``*.pt``) can run code when loaded, so a folder that
    has only those is refused unless ``model.allow_pickle``; a checkpoint's own code (``auto_map``) never runs
    unless ``model.trust_remote_code``. A folder holding a LoRA adapter (``adapter_config.json``, saved by a run
    with ``lora.merge_on_save: false``) loads its base model and applies the adapter. A hub id needs the network:
    offline, it fails at once with a message that says so rather than waiting on connection timeouts. ``what``
    names the setting in errors (``--model`` for a command that takes it as an option).
    """
    source = config.checkpoint
    assert source is not None
    local = Path(source).expanduser()
    if local.exists() and (local / "adapter_config.json").is_file():
        return _load_adapter(local, config)
    check_checkpoint(config, what)
    location = str(local) if local.exists() else source
    try:
        tokenizer = _tokenizer_class(local).from_pretrained(location, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location,
            # None: safetensors when there are any, else pickle weights (allowed); True: safetensors or an error.
            use_safetensors=None if config.allow_pickle else True,
            trust_remote_code=config.trust_remote_code,
            dtype=getattr(torch, config.dtype),
            attn_implementation=config.attention,
            device_map=placement(config),  # model.device_map; a 4-bit model on this process's GPU
            quantization_config=quantization_config(config),
        )
    except (OSError, ValueError) as error:  # the hub's errors are OSErrors (HTTP) and ValueErrors (validation)
        raise InputError(f"{what}: could not load {source!r}: {' '.join(str(error).split())}") from None
    if getattr(model.config, "is_causal", True) is False:  # saved by an MLM-U run
        set_bidirectional(model)
    if getattr(model, "loss_type", None) is None:
        # transformers picks the loss by class name, and some names (GPT2LMHeadModel) say nothing: it then logs a
        # warning and uses the causal LM loss. A model loaded as a causal LM takes that loss, named.
        model.loss_type = "ForCausalLM"
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:  # an id past the embedding table fails later, deep inside a forward pass
        raise InputError(f"{what}: the tokenizer of {source!r} has {len(tokenizer)} tokens but the model's embedding "
                         f"table only {rows} rows: they do not belong together")
    if tokenizer.pad_token is None:
        # Causal LMs often ship without a pad token; batching needs one. Labels mask pads by the attention mask.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _tokenizer_class(folder: Path) -> type:
    """The folder's own ``tokenizer.json`` as written, when its ``tokenizer_config.json`` names the generic class
    (what ``save_pretrained`` writes for a tokenizer built with ``tokenizers``); else ``AutoTokenizer``.

    ``AutoTokenizer`` picks the class by the model type for some architectures (Qwen2, Phi-3: transformers'
    ``MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS``), and that class rebuilds the tokenizer with its own
    pre-tokenizer and special tokens: a Qwen2 model with a SentencePiece-style tokenizer got ids past its
    vocabulary. A folder that declares the generic class means its ``tokenizer.json`` as it is.
    """
    path = folder / "tokenizer_config.json"
    try:
        declared = json.loads(path.read_text(encoding="utf-8")).get("tokenizer_class") if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        declared = None  # transformers reports a broken file in its own words
    if declared in GENERIC_TOKENIZER_CLASSES and (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast
    return AutoTokenizer


def check_checkpoint(config: ModelConfig, what: str = "model.checkpoint") -> None:
    """The checks of a checkpoint that need no loading: a run calls this before it starts, so a refused folder or
    an unreachable hub id stops it before any folder is made or any work done (no checkpoint, the tiny model,
    needs no check). A folder: safety (pickle, own code) and shape; a path that does not exist: an error, not a
    hub id; a hub id: valid, and cached or the hub reachable. ``what`` names the setting in errors."""
    if config.checkpoint is None:
        return
    local = Path(config.checkpoint).expanduser()
    if not local.exists():
        _check_hub_id(config.checkpoint, what)
        return
    if (local / "adapter_config.json").is_file():
        check_weights(local, config.allow_pickle, "adapter_model.safetensors")
        return
    if not (local / "config.json").is_file():
        raise InputError("not a model folder: expected config.json (a transformers checkpoint)", local)
    check_weights(local, config.allow_pickle)
    check_remote_code(local, config.trust_remote_code)


PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


def pickle_files(folder: Path) -> list[Path]:
    """Files in ``folder`` that ``torch.load`` would unpickle (weights, sharded weights, adapters), sorted."""
    return sorted({path for pattern in PICKLE_PATTERNS for path in folder.glob(pattern) if path.is_file()})


def check_weights(folder: Path, allow_pickle: bool, safetensors_name: str = "*.safetensors") -> None:
    """Refuse a folder whose only weights are pickle files, unless ``allow_pickle``: unpickling runs code.

    With safetensors weights present the pickle files are never read (``use_safetensors=True``), so they are
    not an error; with neither, the folder simply has no weights.
    """
    if any(folder.glob(safetensors_name)):
        return
    pickled = [path for path in pickle_files(folder) if path.name != "training_args.bin"]
    if not pickled:
        raise InputError(f"no {safetensors_name} weights found (a transformers checkpoint saves model.safetensors)",
                         folder)
    if allow_pickle:
        return
    names = ", ".join(path.name for path in pickled[:3]) + (" ..." if len(pickled) > 3 else "")
    raise InputError(
        f"refusing pickle weights {names}: loading a pickle file can run arbitrary code. Convert them to "
        "safetensors (load once where you trust them, then save_pretrained), or pass --allow-pickle "
        "(model.allow_pickle=true) if you trust where this folder came from",
        pickled[0],
    )


def check_remote_code(folder: Path, trust_remote_code: bool) -> None:
    """Refuse, before transformers reads anything, a folder that needs its own Python code (``auto_map``)."""
    if trust_remote_code:
        return
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"not valid JSON: {error}", path) from None
        if isinstance(data, dict) and data.get("auto_map"):
            raise InputError(
                "this checkpoint ships its own Python code (auto_map), which is not run: it would run with your "
                "permissions. It runs only with model.trust_remote_code=true (--set, on commands that take a "
                "config; serve and parents never run it): set that only if you trust where the folder came from",
                path,
            )


def _load_adapter(folder: Path, config: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    from peft import PeftConfig, PeftModel

    # peft falls back to adapter_model.bin (torch.load) when there is no adapter_model.safetensors.
    check_weights(folder, config.allow_pickle, "adapter_model.safetensors")
    base = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    if not base:
        raise InputError("adapter_config.json names no base_model_name_or_path", folder / "adapter_config.json")
    model, tokenizer = load_checkpoint(config.model_copy(update={"checkpoint": base}))
    with _peft_wrapping():
        return PeftModel.from_pretrained(model, str(folder)), tokenizer


@contextmanager
def _peft_wrapping() -> Iterator[None]:
    """peft (0.21) reads ``model.is_gradient_checkpointing`` whenever it wraps a model, and transformers 5.24
    deprecates that property (FutureWarning). The call is peft's, not ours: silenced for that one message here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def looks_like_path(checkpoint: str) -> bool:
    """Whether ``checkpoint`` is written as a folder rather than a hub id (``name`` or ``owner/name``: one slash
    at most, none leading or trailing): ``/abs``, ``./rel``, ``../rel``, ``~/home``, ``a/b/c``, ``folder/``."""
    separators = {"/", os.sep}
    return (
        checkpoint.startswith(("/", "./", "../", "~")) or checkpoint in (".", "..")
        or any(checkpoint.count(separator) > 1 or checkpoint.endswith(separator) for separator in separators)
    )


def _check_hub_id(checkpoint: str, what: str) -> None:
    """A checkpoint that is no folder here: refused if written as a path (else ``./nope`` becomes a hub request
    and a traceback) or not a valid hub id; else the hub id must be cached or the hub reachable."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if looks_like_path(checkpoint):
        resolved = Path(checkpoint).expanduser().resolve()
        shown = "" if str(resolved) == checkpoint else f" ({resolved})"
        raise InputError(f"{what}: no such folder {checkpoint!r}{shown}; a hub id is written owner/name")
    try:
        validate_repo_id(checkpoint)
    except HFValidationError as error:
        raise InputError(
            f"{what}: {checkpoint!r} is no folder here and not a hub id (owner/name): {' '.join(str(error).split())}"
        ) from None
    try:
        _check_hub_reachable(checkpoint)
    except InputError as error:
        raise InputError(f"{what}: {error}") from None


def _check_hub_reachable(repo_id: str) -> None:
    """Fail fast, with the reason, when a hub id cannot be fetched: offline mode, or no route to the hub."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return  # in the local cache: loads without the network
    if constants.HF_HUB_OFFLINE:
        raise InputError(
            f"{repo_id!r} is not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE is set: "
            "download it on a machine with network access, or give model.checkpoint a local folder"
        )
    host = urlparse(os.environ.get("HF_ENDPOINT", constants.ENDPOINT)).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as error:
        raise InputError(
            f"{repo_id!r} is not a local folder or cached, and the hub ({host}) cannot be reached ({error}): "
            "this machine looks offline; give model.checkpoint a local folder"
        ) from None


def add_lora(model: PreTrainedModel, config: LoraSection) -> PreTrainedModel:
    """Wrap ``model`` with LoRA adapters (peft); only the adapters train.

    With no ``target_modules`` peft picks the architecture's usual ones (its per-model-type table: q_proj and
    v_proj for Llama, c_attn for GPT-2, ...). On a bfloat16/float16 base the adapters are float32 (peft's
    ``autocast_adapter_dtype``): half the memory for the frozen weights, full precision for the trained ones.
    A 4-bit base (``model.quantization``) is first readied for k-bit training.
    """
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
        # GPT-2's layers are Conv1D, whose weight is stored transposed (in x out): peft must know (else it warns)
        fan_in_fan_out=any(isinstance(module, Conv1D) for module in model.modules()),
    )
    model = prepare_quantized(model)  # QLoRA: a 4-bit base (model.quantization) readied for adapters
    try:
        with _peft_wrapping():
            return get_peft_model(model, lora)
    except ValueError as error:  # unknown architecture without target_modules, or a name that matches nothing
        layers = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                         if isinstance(module, (torch.nn.Linear, Conv1D)) and not name.endswith("lm_head")})
        raise InputError(f"lora: {error}; set lora.target_modules to the names of the layers to adapt (this "
                         f"model's: {', '.join(layers)})") from None


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """Recompute each block's activations in the backward pass instead of keeping them (non-reentrant: the
    same gradients, and LoRA needs no extra hook; transformers also makes the embeddings' output require grad).
    A peft model is switched on its base model, where transformers' switch is."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise InputError(f"train.gradient_checkpointing: {type(base).__name__} does not support it; set it false")
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
