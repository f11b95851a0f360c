"""``model.dtype`` (float32 | bfloat16 | float16) and ``train.gradient_checkpointing``, on CPU: what torch allows
there works, and what it does not (fine-tuning float16 weights) is refused before any work."""

from __future__ import annotations

import json

import pytest
import torch

from revcurse.config import LoraSection, ModelConfig, TrainConfig, load_config
from revcurse.errors import InputError
from revcurse.model import add_lora, load_checkpoint
from revcurse.probe import HFBackend
from revcurse.runner import build_trial, check_inputs, run_seed
from revcurse.tiny_checkpoints import TinySize, build_tiny_checkpoint
from revcurse.train import train_model

WORLD = [
    "world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.batch_size=16", "train.threads=1", "train.epochs=2",
    "probe.distractors=2",
]  # fmt: skip
SIZE = TinySize(hidden=32, layers=2, heads=2, intermediate=64, positions=128)


@pytest.fixture(scope="module")
def corpus():
    return build_trial(load_config(None, WORLD), 0).corpus


@pytest.fixture(scope="module")
def folders(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("dtype")
    return {
        architecture: build_tiny_checkpoint(root / architecture, architecture, "metaspace", corpus.texts_seen(), SIZE)
        for architecture in ("llama", "gpt2")
    }


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_half_precision_weights_load_and_probe_on_cpu(architecture, dtype, folders, corpus):
    requests = [(p.prompt, p.target) for p in corpus.probes[:12]]
    full, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(folders[architecture])))
    half, _ = load_checkpoint(ModelConfig(checkpoint=str(folders[architecture]), dtype=dtype))
    assert half.dtype == getattr(torch, dtype) and full.dtype == torch.float32
    exact = [score for score, _ in HFBackend(full, tokenizer).loglikelihood(requests)]
    rounded = [score for score, _ in HFBackend(half, tokenizer).loglikelihood(requests)]
    # the same scores up to the half type's rounding (bfloat16: 8 bits of mantissa), not equal to the digit
    assert rounded == pytest.approx(exact, rel=0.02) and rounded != exact
    assert len(HFBackend(half, tokenizer).generate([p for p, _ in requests[:2]], 3)) == 2


def test_the_tiny_model_trains_and_probes_in_bfloat16(tmp_path):
    config = load_config(None, [*WORLD, "model.dtype=bfloat16", "model.hidden_size=32", "model.layers=1",
                                "model.intermediate_size=64", "train.learning_rate=1e-2"])
    _, results, stats = run_seed(config, 0, tmp_path / "run", show_progress=False)
    log = [json.loads(line)["loss"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1] < log[0] and all(r.logprob_correct < 0 for r in results)
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["dtype"] == "bfloat16"


def test_full_fine_tuning_of_float16_weights_is_refused_but_lora_trains(folders, tmp_path):
    """Pure float16 weights under AdamW give a NaN loss by the second step (its steps underflow): refused up
    front, naming the setting. LoRA on a float16 base trains, its adapters in float32."""
    checkpoint = f"model.checkpoint={folders['llama']}"
    with pytest.raises(InputError, match="model.dtype=float16.*bfloat16.*lora.enabled=true"):
        check_inputs(load_config(None, [*WORLD, checkpoint, "model.dtype=float16"]), log=lambda *_: None)
    check_inputs(load_config(None, [*WORLD, checkpoint, "model.dtype=bfloat16"]), log=lambda *_: None)
    lora = load_config(None, [*WORLD, checkpoint, "model.dtype=float16", "lora.enabled=true", "lora.rank=4",
                              "train.learning_rate=3e-2"])
    check_inputs(lora, log=lambda *_: None)
    _, results, stats = run_seed(lora, 0, tmp_path / "lora", show_progress=False)
    log = [json.loads(line)["loss"] for line in (tmp_path / "lora" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1] < log[0] and stats["trained_parameters"] < stats["parameters"] / 5


class AttentionCalls:
    """Counts calls of the first block's attention: twice per step when the backward pass recomputes the block
    (a hook on the block itself would not see it: transformers keeps block hooks outside the checkpoint)."""

    def __init__(self, model: torch.nn.Module) -> None:
        attention = [m for name, m in model.named_modules() if name.endswith(("layers.0.self_attn", "h.0.attn"))]
        self.calls = 0
        attention[0].register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))


@pytest.mark.parametrize(("architecture", "lora"), [("llama", False), ("gpt2", False), ("llama", True)])
def test_gradient_checkpointing_recomputes_and_gives_the_same_losses(architecture, lora, folders, corpus):
    documents = corpus.documents[:32]
    curves, calls = [], []
    for checkpointing in (False, True):
        model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(folders[architecture])))
        if lora:
            torch.manual_seed(0)  # the same adapter initialisation both times
            model = add_lora(model, LoraSection(rank=4))
        counter = AttentionCalls(model)
        config = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, threads=1,
                             gradient_checkpointing=checkpointing)
        result = train_model(model, tokenizer, documents, config, seed=0, show_progress=False)
        curves.append([entry["loss"] for entry in result.log])
        calls.append(counter.calls)
    assert curves[1] == pytest.approx(curves[0], rel=1e-5) and curves[0][-1] < curves[0][0]
    assert calls[1] == 2 * calls[0] == 2 * len(curves[0])  # each step's block runs again in backward


def test_lora_on_a_bfloat16_base_trains_float32_adapters_and_leaves_the_base_alone(folders, corpus, tmp_path):
    """model.dtype=bfloat16 with LoRA: the frozen base stays bfloat16 (half the memory), peft keeps the adapters
    in float32 (its autocast_adapter_dtype), training moves the adapters only and lowers the loss; merged weights
    are bfloat16 again, a saved adapter float32."""
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(folders["llama"]), dtype="bfloat16"))
    torch.manual_seed(0)
    model = add_lora(model, LoraSection(rank=4))
    base = {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" not in name}
    adapters = {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}
    assert {p.dtype for p in base.values()} == {torch.bfloat16} and {p.dtype for p in adapters.values()} == {
        torch.float32}
    config = TrainConfig(epochs=6, batch_size=16, learning_rate=3e-2, threads=1)
    curve = [e["loss"] for e in train_model(model, tokenizer, corpus.documents, config, 0, show_progress=False).log]
    exact, _ = load_checkpoint(ModelConfig(checkpoint=str(folders["llama"])))
    torch.manual_seed(0)  # the same adapters on the float32 base
    exact = add_lora(exact, LoraSection(rank=4))
    reference = [e["loss"] for e in train_model(exact, tokenizer, corpus.documents, config, 0, show_progress=False).log]
    # the float32 base's curve up to bfloat16's rounding, and it goes down
    assert curve == pytest.approx(reference, rel=0.01) and curve != reference
    assert sum(curve[-3:]) < sum(curve[:3]) - 0.15  # a random base: the adapters alone bring it down slowly
    after = dict(model.named_parameters())
    assert all(
        torch.equal(after[name], frozen) and after[name].dtype == torch.bfloat16 for name, frozen in base.items()
    )
    assert all(after[name].dtype == torch.float32 for name in adapters)
    assert not all(torch.equal(after[name], weight) for name, weight in adapters.items())
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(tmp_path / "adapter" / "adapter_model.safetensors").values()} == {torch.float32}
    assert {p.dtype for p in model.merge_and_unload().parameters()} == {torch.bfloat16}
