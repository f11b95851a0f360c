"""Tiny random-initialised checkpoint folders of real architectures, with tokenizers in the styles real ones ship.

``build_tiny_checkpoint(folder, "gpt_neox", "byte-bpe", texts)`` writes what a downloaded checkpoint holds
(``config.json``, ``model.safetensors``, ``generation_config.json``, ``tokenizer.json``, ``tokenizer_config.json``),
loadable offline by ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` and so by ``model.checkpoint``.
Nothing is downloaded: the model comes from ``transformers``' own config class for the architecture, the
tokenizer is trained by ``tokenizers`` on ``texts``. It lets the tests and ``bench/architectures.py`` run every
step (fine-tune, probe, save, reload, serve) on each architecture and tokenizer style in seconds on a CPU.

Tokenizer styles, as real checkpoints ship them:

- ``byte-bpe``: byte-level BPE, one special token ``<|endoftext|>`` that is BOS, EOS and unknown, no pad token,
  and nothing added by the tokenizer itself (GPT-2, Pythia; OPT differs only in adding ``</s>`` first).
- ``metaspace``: SentencePiece style: ``▁`` marks a word start (the Metaspace pre-tokenizer, prepended to the
  first word only), BPE with byte fallback (``<0x00>`` .. ``<0xFF>`` pieces for characters never seen), and a BOS
  that the post-processor adds to every encoding (Llama, Mistral, Gemma).
- ``chat``: byte-level BPE with ChatML specials, a chat template, no BOS, and pad = EOS (Qwen2).

Sizes are matched across architectures (``TinySize``): the same width, depth and heads, embeddings tied, no
dropout, and an MLP of about the same parameters (a gated MLP gets 2/3 of a plain one's width), so parameter
counts stay within a few percent of each other (and of the project's own tiny Llama of that shape), apart from
the learned position tables GPT-2 and OPT add (``positions`` x ``hidden``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Phi3Config,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

TOKENIZER_STYLES = ("byte-bpe", "metaspace", "chat")

# ChatML as Qwen2 ships it (its default system turn left out): the answer follows "<|im_start|>assistant\n".
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2's pre-tokenizer pattern: GPT-2's, with case-insensitive contractions, one digit per token and a
# punctuation mark allowed to lead a word.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TinySize:
    """The shape every architecture gets: ``intermediate`` is a plain MLP's width (gated ones get 2/3 of it)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: int = 256
    positions: int = 256  # learned position tables (GPT-2, OPT) and every config's max_position_embeddings

    @property
    def gated_intermediate(self) -> int:
        """A gated MLP (three matrices) of about the parameters of a plain one (two) of ``intermediate``."""
        return max(8, round(self.intermediate * 2 / 3))


@dataclass(frozen=True)
class TokenIds:
    vocab: int
    bos: int | None
    eos: int
    pad: int | None


def _gpt2(size: TinySize, ids: TokenIds) -> PreTrainedConfig:
    return GPT2Config(
        vocab_size=ids.vocab, n_positions=size.positions, n_embd=size.hidden, n_layer=size.layers, n_head=size.heads,
        n_inner=size.intermediate, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=ids.bos,
        eos_token_id=ids.eos, pad_token_id=ids.pad, tie_word_embeddings=True,
    )


def _gpt_neox(size: TinySize, ids: TokenIds) -> PreTrainedConfig:
    return GPTNeoXConfig(
        vocab_size=ids.vocab, hidden_size=size.hidden, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, intermediate_size=size.intermediate, max_position_embeddings=size.positions,
        attention_dropout=0.0, hidden_dropout=0.0, bos_token_id=ids.bos, eos_token_id=ids.eos,
        pad_token_id=ids.pad, tie_word_embeddings=True,
    )


def _opt(size: TinySize, ids: TokenIds) -> PreTrainedConfig:
    return OPTConfig(
        vocab_size=ids.vocab, hidden_size=size.hidden, num_hidden_layers=size.layers, ffn_dim=size.intermediate,
        num_attention_heads=size.heads, max_position_embeddings=size.positions, word_embed_proj_dim=size.hidden,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, bos_token_id=ids.bos, eos_token_id=ids.eos,
        pad_token_id=ids.pad, tie_word_embeddings=True,
    )


def _gated(config_class: type[PreTrainedConfig], head_dim: bool = False) -> Callable[..., PreTrainedConfig]:
    """A Llama-family config (RMSNorm, rotary positions, gated MLP) of the shared size; ``head_dim`` for configs
    whose default head width is not hidden / heads (Gemma's is 256)."""

    def build(size: TinySize, ids: TokenIds) -> PreTrainedConfig:
        extra = {"head_dim": size.hidden // size.heads} if head_dim else {}
        return config_class(
            vocab_size=ids.vocab, hidden_size=size.hidden, num_hidden_layers=size.layers,
            num_attention_heads=size.heads, num_key_value_heads=size.heads, intermediate_size=size.gated_intermediate,
            max_position_embeddings=size.positions, bos_token_id=ids.bos, eos_token_id=ids.eos, pad_token_id=ids.pad,
            tie_word_embeddings=True, **extra,
        )

    return build


ARCHITECTURES: dict[str, Callable[[TinySize, TokenIds], PreTrainedConfig]] = {
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "opt": _opt,
    "llama": _gated(LlamaConfig),
    "mistral": _gated(MistralConfig),
    "qwen2": _gated(Qwen2Config),
    "gemma": _gated(GemmaConfig, head_dim=True),
    "phi3": _gated(Phi3Config),
}


def architecture_config(architecture: str, size: TinySize, ids: TokenIds) -> PreTrainedConfig:
    """``transformers``' config of ``architecture`` at ``size``, with the tokenizer's special ids."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](size, ids)


def train_style_tokenizer(texts: list[str], style: str, vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """A tokenizer in ``style`` (see the module's docstring) trained on ``texts``."""
    if style == "byte-bpe":
        return _byte_bpe(texts, vocab_size)
    if style == "metaspace":
        return _metaspace(texts, vocab_size)
    if style == "chat":
        return _chat(texts, vocab_size)
    raise ValueError(f"unknown tokenizer style {style!r}; known: {', '.join(TOKENIZER_STYLES)}")


def _trainer(vocab_size: int, special_tokens: list[str], alphabet: list[str]) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=special_tokens, initial_alphabet=alphabet,
        show_progress=False,
    )


def _byte_bpe(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """GPT-2's layout: byte-level BPE, ``<|endoftext|>`` as BOS, EOS and unknown, no pad, nothing added."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    end = "<|endoftext|>"
    tokenizer.train_from_iterator(texts, _trainer(vocab_size, [end], pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=end, eos_token=end, unk_token=end)


def _metaspace(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Llama's layout: ``<unk>``, ``<s>``, ``</s>``, the 256 byte pieces, then the learned pieces; BOS added.

    The byte pieces are ordinary vocabulary (decoded by ``ByteFallback``), not special tokens: a character the
    tokenizer never saw is spelled in bytes and decodes back to itself.
    """
    specials = ["<unk>", "<s>", "</s>"]
    byte_pieces = [f"<0x{byte:02X}>" for byte in range(256)]
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    learned_size = max(vocab_size - len(specials) - len(byte_pieces), 64)
    learner.train_from_iterator(texts, _trainer(learned_size, [], []))
    learned = json.loads(learner.to_str())["model"]
    vocab = {piece: index for index, piece in enumerate(specials + byte_pieces)}
    for piece in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in learned["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tokenizer.add_special_tokens(specials)
    # Unsplit, as transformers converts Llama's: learned on words, so no piece spans a word boundary anyway.
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _chat(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Qwen2's layout: NFC, its split pattern, byte-level BPE, ChatML specials, no BOS, pad = EOS."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer.train_from_iterator(texts, _trainer(vocab_size, specials, pre_tokenizers.ByteLevel.alphabet()))
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def build_tiny_checkpoint(
    folder: Path,
    architecture: str,
    tokenizer_style: str,
    texts: list[str],
    size: TinySize = TinySize(),
    vocab_size: int = 1000,
    seed: int = 0,
) -> Path:
    """Write a random-initialised ``architecture`` model (weights from ``seed``) and a ``tokenizer_style``
    tokenizer trained on ``texts`` into ``folder``, as a checkpoint folder; returns ``folder``."""
    tokenizer = train_style_tokenizer(texts, tokenizer_style, vocab_size)
    ids = TokenIds(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    config = architecture_config(architecture, size, ids)
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def parameter_count(folder: Path) -> int:
    """Parameters of the checkpoint in ``folder`` (tied embeddings counted once), read from its config alone."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())
