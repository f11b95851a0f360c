"""Model: a tiny Llama-style causal LM built from a config, or any causal LM loaded from a checkpoint.

Both give a ``transformers`` model and tokenizer, so training and probing have one code path. The tiny model's
tokenizer is a byte-level BPE trained by ``tokenizers`` on all text the model will see (training documents,
probes), so every word of a phrasing or a name is known, and decoding gives the exact text back.
"""

from __future__ import annotations

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

from revcurse.config import ModelConfig
from revcurse.errors import InputError

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
    model = LlamaForCausalLM(llama)
    return set_bidirectional(model) if bidirectional else model


def set_bidirectional(model: PreTrainedModel) -> PreTrainedModel:
    """Drop the causal mask: the config flag picks a bidirectional padding mask, the module flags stop SDPA from
    falling back to causal attention when no padding mask is needed. Re-apply after loading a saved model."""
    model.config.is_causal = False
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
    return model


def load_checkpoint(config: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a causal LM and its tokenizer from a local folder (or a hub id), weights from safetensors only."""
    source = config.checkpoint
    assert source is not None
    local = Path(source).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise InputError("not a model folder: expected config.json (a transformers checkpoint)", local)
    if local.exists() and not any(local.glob("*.safetensors")):
        raise InputError("no *.safetensors weights (pickle weights are not loaded)", local)
    location = str(local) if local.exists() else source
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location, use_safetensors=True, trust_remote_code=config.trust_remote_code, dtype=torch.float32
        )
    except OSError as error:
        raise InputError(f"could not load checkpoint {source!r}: {error}") from None
    if getattr(model.config, "is_causal", True) is False:  # saved by an MLM-U run
        set_bidirectional(model)
    if tokenizer.pad_token is None:
        # Causal LMs often ship without a pad token; batching needs one. Labels mask pads by the attention mask.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
