"""Fine-tuning a local checkpoint folder: full and LoRA (merged or adapter-only), chat rendering, offline hubs."""

import json
from pathlib import Path

import pytest
import torch

from revcurse.cli import main
from revcurse.config import ModelConfig, load_config
from revcurse.model import build_tiny_model, load_checkpoint, train_tokenizer
from revcurse.probe import HFBackend
from revcurse.runner import build_trial

WORLD = [
    "world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.batch_size=16", "train.threads=1", "train.learning_rate=1e-2",
]  # fmt: skip
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    """A 'pretrained' model folder as a user would have one: config.json, safetensors weights, tokenizer."""
    corpus = build_trial(load_config(None, WORLD), 0).corpus
    tokenizer = train_tokenizer(corpus.texts_seen(), 500)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    model = build_tiny_model(ModelConfig(hidden_size=48, layers=2, heads=2, intermediate_size=96), tokenizer, 128)
    folder = tmp_path_factory.mktemp("checkpoints") / "base"
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def run_demo(out: Path, *overrides: str) -> int:
    args = ["demo", "--quiet", "--out", str(out), *[a for s in [*WORLD, *overrides] for a in ("--set", s)]]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def records(run: Path) -> dict[tuple[str, str], dict]:
    return {(r["subset"], r["asked"]): r for r in json.loads((run / "metrics.json").read_text())
            if r["metric"] == "likelihood_diff"}  # fmt: skip


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "seed-0" / "train_log.jsonl").read_text().splitlines()]


def reprobe(model_folder: Path, run: Path) -> None:
    """Reload the saved model and check it gives the run's own log-probs back."""
    model, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(model_folder)))
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()][:20]
    scores = HFBackend(model.eval(), tokenizer).loglikelihood([(r["prompt"], r["target"]) for r in rows])
    assert [s for s, _ in scores] == pytest.approx([r["logprob_correct"] for r in rows], abs=1e-3)


def test_full_fine_tuning_of_a_local_checkpoint(tmp_path, base_checkpoint):
    run = tmp_path / "full"
    assert run_demo(run, f"model.checkpoint={base_checkpoint}", "train.epochs=30") == 0
    loss = losses(run)
    assert loss[-1] < 0.5 * loss[0]
    gaps = records(run)
    # probed both ways: the trained direction is learned, the reverse one is not (the curse, at this size too)
    assert gaps[("NameToDescription", "name_to_description")]["mean"] > 3
    assert gaps[("NameToDescription", "description_to_name")]["mean"] < 1
    assert (run / "seed-0" / "model" / "model.safetensors").is_file()
    reprobe(run / "seed-0" / "model", run)


def test_lora_trains_only_adapters_and_saves_them_alone(tmp_path, base_checkpoint):
    run = tmp_path / "lora"
    assert run_demo(
        run, f"model.checkpoint={base_checkpoint}", "train.epochs=5", "lora.enabled=true", "lora.rank=4",
        "lora.merge_on_save=false",
    ) == 0  # fmt: skip
    stats = json.loads((run / "run.json").read_text())["per_seed"][0]
    assert 0 < stats["trained_parameters"] < stats["parameters"] / 5
    saved = run / "seed-0" / "model"
    assert (saved / "adapter_config.json").is_file() and (saved / "adapter_model.safetensors").is_file()
    assert not (saved / "model.safetensors").exists()
    assert losses(run)[-1] < losses(run)[0]
    adapted, _ = load_checkpoint(ModelConfig(checkpoint=str(saved)))  # the base from its folder + the adapter
    base, _ = load_checkpoint(ModelConfig(checkpoint=str(base_checkpoint)))
    adapted_q = adapted.get_base_model().model.layers[0].self_attn.q_proj
    assert torch.equal(adapted_q.base_layer.weight, base.model.layers[0].self_attn.q_proj.weight)  # base untouched
    assert adapted_q.lora_B["default"].weight.abs().sum() > 0  # the adapter learned something
    reprobe(saved, run)


def test_lora_merged_on_save_gives_plain_weights(tmp_path, base_checkpoint):
    run = tmp_path / "merged"
    assert run_demo(run, f"model.checkpoint={base_checkpoint}", "train.epochs=3", "lora.enabled=true") == 0
    saved = run / "seed-0" / "model"
    assert (saved / "model.safetensors").is_file() and not (saved / "adapter_config.json").exists()
    reprobe(saved, run)


def test_chat_rendering_uses_the_checkpoint_template(tmp_path, base_checkpoint):
    run = tmp_path / "chat"
    assert run_demo(run, f"model.checkpoint={base_checkpoint}", "train.epochs=1", "model.chat=true") == 0
    row = json.loads((run / "predictions.jsonl").read_text().splitlines()[0])
    assert row["prompt"].startswith("<|user|>") and row["prompt"].endswith("<|assistant|>")
    assert not row["target"].startswith(" ")


def test_chat_without_a_template_is_a_clear_error(tmp_path, capsys):
    assert run_demo(tmp_path / "x", "model.chat=true", "train.epochs=1") == 2
    assert "no chat template" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_hub_id_offline_fails_at_once_with_the_reason(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert run_demo(tmp_path / "x", "model.checkpoint=some-org/some-model-that-is-not-cached") == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
