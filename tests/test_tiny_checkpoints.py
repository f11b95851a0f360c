"""Every architecture x tokenizer style, from a tiny random checkpoint folder built here (nothing downloaded):
loaded, fine-tuned in full and with LoRA through the runner, probed, saved, reloaded, served over HTTP, and the
prompt/target token boundary and BOS checked against the whole string's encoding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from revcurse.chat import render_as_chat
from revcurse.config import LoraSection, ModelConfig, load_config
from revcurse.corpus import Corpus, Probe
from revcurse.errors import InputError
from revcurse.model import add_lora, load_checkpoint
from revcurse.probe import HFBackend, run_probes
from revcurse.remote import OpenAICompatibleBackend
from revcurse.runner import build_trial, run_seed
from revcurse.serve import make_server
from revcurse.tiny_checkpoints import (
    ARCHITECTURES,
    TOKENIZER_STYLES,
    TinySize,
    build_tiny_checkpoint,
    parameter_count,
    train_style_tokenizer,
)
from revcurse.train import IGNORE_INDEX, encode_documents
from tests.test_serve import call, running

WORLD = [
    "world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.batch_size=16", "train.threads=1", "train.epochs=3",
    "probe.distractors=2",
]  # fmt: skip
SIZE = TinySize(hidden=32, layers=1, heads=2, intermediate=64, positions=128)
COMBINATIONS = [(architecture, style) for architecture in ARCHITECTURES for style in TOKENIZER_STYLES]
IDS = [f"{architecture}-{style}" for architecture, style in COMBINATIONS]
# A Mistral-style template (BOS text first, the answer right after "[/INST]"), to ask the SentencePiece style in chat.
INST_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)
# peft reads transformers' deprecated `is_gradient_checkpointing` in PeftModel.__init__: not ours to fix.
PEFT_DEPRECATION = "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_trial(load_config(None, WORLD), 0).corpus


@pytest.fixture(scope="module")
def checkpoints(corpus, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Every (architecture, style) checkpoint folder, tokenizers trained on the world's text (0.05 s each)."""
    root = tmp_path_factory.mktemp("tiny-checkpoints")
    return {
        (architecture, style): build_tiny_checkpoint(
            root / f"{architecture}-{style}", architecture, style, corpus.texts_seen(), SIZE, vocab_size=500
        )
        for architecture, style in COMBINATIONS
    }


class Runs:
    """One full and one LoRA fine-tuning run per combination through ``runner.run_seed``, each made once."""

    def __init__(self, root: Path, checkpoints: dict[tuple[str, str], Path]) -> None:
        self.root, self.checkpoints, self.done = root, checkpoints, {}

    def get(self, architecture: str, style: str, lora: bool = False) -> tuple[Path, list, dict]:
        key = (architecture, style, lora)
        if key not in self.done:
            overrides = [*WORLD, f"model.checkpoint={self.checkpoints[architecture, style]}"]
            if style == "chat":
                overrides.append("model.chat=true")  # documents and probes through the chat template
            if lora:  # merged on save for two styles, the adapter alone for the third (loaded on its base)
                overrides += ["lora.enabled=true", "lora.rank=4", "train.learning_rate=3e-2",
                              f"lora.merge_on_save={str(style != 'metaspace').lower()}"]
                if architecture == "phi3":
                    overrides.append("lora.target_modules=[qkv_proj]")  # peft has no default for Phi-3
            else:
                overrides.append("train.learning_rate=1e-2")
            folder = self.root / "-".join([architecture, style, "lora" if lora else "full"])
            _, results, stats = run_seed(load_config(None, overrides), 0, folder, show_progress=False)
            self.done[key] = folder, results, stats
        return self.done[key]


@pytest.fixture(scope="module")
def runs(checkpoints, tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("runs"), checkpoints)


def losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("architecture", "style"), COMBINATIONS, ids=IDS)
def test_the_folder_loads_as_its_architecture_with_its_tokenizer_style(architecture, style, checkpoints):
    folder = checkpoints[architecture, style]
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        path.name for path in folder.iterdir()
    }
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(folder)))
    assert model.config.model_type == architecture and model.dtype == torch.float32
    assert len(tokenizer) <= model.get_input_embeddings().num_embeddings
    # The folder's tokenizer.json as written, for Qwen2 too (AutoTokenizer would rebuild it as Qwen2Tokenizer)
    loaded = json.loads(tokenizer.backend_tokenizer.to_str())
    written = json.loads((folder / "tokenizer.json").read_text())
    for part in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "model", "added_tokens"):
        assert loaded[part] == written[part], part
    own = tokenizer("Daphne Barrington")["input_ids"]  # what the tokenizer adds by itself
    bare = tokenizer("Daphne Barrington", add_special_tokens=False)["input_ids"]
    if style == "byte-bpe":  # GPT-2: <|endoftext|> is BOS and EOS, never added; no pad (pad = EOS once loaded)
        assert tokenizer.bos_token == tokenizer.eos_token == "<|endoftext|>" and own == bare
        assert json.loads((folder / "tokenizer_config.json").read_text()).get("pad_token") is None
        assert tokenizer.pad_token_id == tokenizer.eos_token_id
    elif style == "metaspace":  # Llama: the post-processor adds <s>; unseen characters spelled in byte pieces
        assert own == [tokenizer.bos_token_id, *bare] and tokenizer.convert_ids_to_tokens(bare)[0].startswith("▁")
        assert tokenizer.tokenize("ü") == ["▁", "<0xC3>", "<0xBC>"]
        assert tokenizer.decode(tokenizer("Daphne über")["input_ids"], skip_special_tokens=True) == "Daphne über"
    else:  # Qwen2: ChatML template, no BOS, pad = EOS
        assert tokenizer.bos_token is None and own == bare and tokenizer.pad_token == tokenizer.eos_token
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                 add_generation_prompt=True)
        assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_parameter_counts_are_comparable_across_architectures(checkpoints):
    """Same width, depth, heads, tied embeddings, MLPs of equal size: within 5% apart from GPT-2's and OPT's
    learned position tables (positions x hidden), which Llama-style models do not have."""
    counts = {architecture: parameter_count(checkpoints[architecture, "byte-bpe"]) for architecture in ARCHITECTURES}
    position_tables = {"gpt2": SIZE.positions * SIZE.hidden, "opt": (SIZE.positions + 2) * SIZE.hidden}
    base = counts["llama"]
    for architecture, count in counts.items():
        assert abs(count - position_tables.get(architecture, 0) - base) / base < 0.05, (architecture, counts)
    model, _ = load_checkpoint(ModelConfig(checkpoint=str(checkpoints["gpt2", "byte-bpe"])))
    assert counts["gpt2"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
@pytest.mark.parametrize("style", TOKENIZER_STYLES)
def test_prompt_target_boundary_and_bos_agree_with_the_whole_string(style, chat, corpus):
    """The one split at probe time (``encode_pairs``) and at train time (``encode_documents``' completion-only
    prompt length) both cut the whole string's own encoding where the prompt's characters end; BOS once, the
    same at train and probe time, and the tokenizer's own when its post-processor adds one."""
    tokenizer = train_style_tokenizer(corpus.texts_seen(), style, 500)
    if chat:
        tokenizer.chat_template = tokenizer.chat_template or INST_TEMPLATE
        corpus = render_as_chat(corpus, tokenizer)
    backend = HFBackend(torch.nn.Linear(1, 1), tokenizer)  # encoding needs no model

    def whole(text: str, prompt_chars: int) -> tuple[list[int], list[int], int]:
        """(prefix the pipeline puts first, the whole text's tokens, how many of them start in the prompt)."""
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        split = sum(start < prompt_chars for start, _ in encoding["offset_mapping"])
        return backend.prefix_for(text), encoding["input_ids"], split

    requests = [(probe.prompt, probe.target) for probe in corpus.probes]
    for (prompt, target), (context, continuation) in zip(requests, backend.encode_pairs(requests)):
        prefix, ids, split = whole(prompt + target, len(prompt))
        assert context + continuation == prefix + ids and len(context) == len(prefix) + split, (prompt, target)
    documents = [d for d in corpus.documents if d.prompt_chars]
    assert len(documents) > 30
    for document, (full, labels) in zip(documents, encode_documents(documents, tokenizer, "completion")):
        prefix, ids, split = whole(document.text, document.prompt_chars)
        closed = document.text.endswith(tokenizer.eos_token)  # the INST template ends an answer with EOS text
        assert full == prefix + ids + ([] if closed else [tokenizer.eos_token_id]), document.text
        assert full[-1] == tokenizer.eos_token_id and full[-2] != tokenizer.eos_token_id  # one EOS, never two
        first_label = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        assert first_label == len(prefix) + split, document.text
        if style == "metaspace":  # the template's "<s>" text or the prefix: one BOS, the post-processor's own
            assert full.count(tokenizer.bos_token_id) == 1 and full[0] == tokenizer.bos_token_id
            assert tokenizer(document.text.removeprefix("<s>"))["input_ids"][0] == full[0]
        elif style == "byte-bpe":  # <|endoftext|> first (as GPT-2 saw it between documents) and last, as EOS
            assert full[0] == tokenizer.bos_token_id and full.count(tokenizer.bos_token_id) == 2
        else:
            assert prefix == [] and tokenizer.bos_token_id is None
    if tokenizer.bos_token_id is not None:  # every sequence, trained on or asked, starts with the one BOS
        firsts = {backend.encode(probe.prompt)[0] for probe in corpus.probes}
        firsts |= {full[0] for full, _ in encode_documents(corpus.documents, tokenizer)}
        assert firsts == {tokenizer.bos_token_id}


@pytest.mark.slow
@pytest.mark.filterwarnings(PEFT_DEPRECATION)
@pytest.mark.parametrize(("architecture", "style"), COMBINATIONS, ids=IDS)
def test_fine_tune_in_full_and_with_lora_then_reload_the_saved_model(architecture, style, runs):
    folder, results, stats = runs.get(architecture, style)
    loss = losses(folder)
    assert loss[-1] < 0.85 * loss[0] and stats["trained_parameters"] == stats["parameters"]
    assert len(results) == 36 and {r.n_candidates for r in results} == {3}
    if style == "chat":
        assert results[0].prompt.endswith("<|im_start|>assistant\n") and not results[0].target.startswith(" ")
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(folder / "model")))
    scores = HFBackend(model, tokenizer).loglikelihood([(r.prompt, r.target) for r in results])
    assert [s for s, _ in scores] == pytest.approx([r.logprob_correct for r in results], abs=1e-4)

    lora_folder, lora_results, lora_stats = runs.get(architecture, style, lora=True)
    lora_loss = losses(lora_folder)
    assert lora_loss[-1] < lora_loss[0] and 0 < lora_stats["trained_parameters"] < lora_stats["parameters"] / 5
    saved = lora_folder / "model"
    assert (saved / "adapter_config.json").is_file() == (style == "metaspace")
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(saved)))  # merged, or base + adapter
    scores = HFBackend(model, tokenizer).loglikelihood([(r.prompt, r.target) for r in lora_results])
    assert [s for s, _ in scores] == pytest.approx([r.logprob_correct for r in lora_results], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "style"), COMBINATIONS, ids=IDS)
def test_the_served_model_probes_as_the_local_one(architecture, style, runs):
    """The trained folder loaded as ``revcurse serve`` loads it, asked over HTTP on 127.0.0.1 through the openai
    backend: the same scores, ranks and greedy answers as the local backend on the same probes."""
    folder, results, _ = runs.get(architecture, style)
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(folder / "model")))
    probes = [Probe(r.fact_key, r.subset, r.asked, r.trained, r.phrasing, r.prompt, r.target) for r in results[::3]]
    corpus = Corpus([], probes)
    local = run_probes(HFBackend(model, tokenizer), corpus, max_new_tokens=6, show_progress=False, distractors=2,
                       generate_all=True)  # the server generates every probe: so does the local side here
    with running(make_server(model, tokenizer, "tiny", port=0, quiet=True)) as server:
        with OpenAICompatibleBackend(server.url, "tiny", api_key_env="REVCURSE_TEST_UNSET") as remote:
            served = run_probes(remote, corpus, max_new_tokens=6, show_progress=False, distractors=2)
    for mine, theirs in zip(local, served, strict=True):
        assert (mine.completion, mine.correct, mine.rank) == (theirs.completion, theirs.correct, theirs.rank)
        assert mine.logprob_correct == pytest.approx(theirs.logprob_correct, abs=1e-4)
        assert mine.distractor_logprobs == pytest.approx(theirs.distractor_logprobs, abs=1e-4)


@pytest.mark.slow
def test_cli_serves_a_qwen2_folder_with_a_sentencepiece_tokenizer(runs):
    """``revcurse serve`` on a trained Qwen2 folder whose tokenizer is not Qwen2's own (AutoTokenizer alone would
    rebuild it as Qwen2Tokenizer, with ids past the vocabulary): it answers as the local model does."""
    folder, results, _ = runs.get("qwen2", "metaspace")
    local = HFBackend(*load_checkpoint(ModelConfig(checkpoint=str(folder / "model"))))
    prompt = results[0].prompt
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("REVCURSE_API_KEY", None)
    command = [sys.executable, "-m", "revcurse.cli", "serve", str(folder / "model"), "--port", "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        while not seen or ("serving" not in seen[-1] and process.poll() is None):
            seen.append(process.stdout.readline())
        assert "http://127.0.0.1:" in seen[-1], "".join(seen)
        url = seen[-1].split(" at ", 1)[1].split()[0]
        status, body = call(url + "/completions", {"prompt": prompt, "max_tokens": 4, "temperature": 0, "echo": True})
        assert status == 200 and body["choices"][0]["text"] == prompt + local.generate([prompt], 4)[0]
        with OpenAICompatibleBackend(url, "model", api_key_env="REVCURSE_TEST_UNSET") as remote:
            requests = [(r.prompt, r.target) for r in results[:6]]
            assert [s for s, _ in remote.loglikelihood(requests)] == pytest.approx(
                [s for s, _ in local.loglikelihood(requests)], abs=1e-4)
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_generated_text_keeps_the_word_space_of_a_sentencepiece_piece(corpus):
    tokenizer = train_style_tokenizer(corpus.texts_seen(), "metaspace", 500)
    backend = HFBackend(torch.nn.Linear(1, 1), tokenizer)
    context = torch.tensor([backend.encode("Lucasta Oxenford is")])
    continuation = torch.tensor([tokenizer(" the architect", add_special_tokens=False)["input_ids"]])
    assert tokenizer.decode(continuation[0]) == "the architect"  # decoded alone: the space is stripped
    assert backend.continuation_texts(context, continuation) == [" the architect"]


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(corpus, checkpoints, tmp_path):
    folder = build_tiny_checkpoint(tmp_path / "small", "llama", "byte-bpe", corpus.texts_seen(), SIZE, vocab_size=300)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # a tokenizer with more tokens than the model's rows
        (folder / name).write_bytes((checkpoints["llama", "metaspace"] / name).read_bytes())
    with pytest.raises(InputError, match="tokenizer .* has \\d+ tokens but the model's embedding table only"):
        load_checkpoint(ModelConfig(checkpoint=str(folder)))


@pytest.mark.filterwarnings(PEFT_DEPRECATION)
def test_lora_on_an_architecture_peft_has_no_default_for_names_its_layers(checkpoints):
    model, _ = load_checkpoint(ModelConfig(checkpoint=str(checkpoints["phi3", "byte-bpe"])))
    with pytest.raises(InputError, match="lora.target_modules.*gate_up_proj.*qkv_proj"):
        add_lora(model, LoraSection())
    gpt2, _ = load_checkpoint(ModelConfig(checkpoint=str(checkpoints["gpt2", "byte-bpe"])))
    adapted = add_lora(gpt2, LoraSection(rank=2))  # Conv1D layers: fan_in_fan_out set, no peft warning
    assert adapted.peft_config["default"].fan_in_fan_out
