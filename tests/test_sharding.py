"""Big models on CPU: a real 2-process FSDP2 run (accelerate launch, gloo) that matches one process and resumes
after a kill; a probing-only checkpoint placed by ``model.device_map``; 4-bit QLoRA's settings and refusals (its
loading and training need CUDA: not run here)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from revcurse import sharding
from revcurse.cli import main
from revcurse.config import ModelConfig, load_config
from revcurse.errors import InputError
from revcurse.model import load_checkpoint
from revcurse.probe import HFBackend
from revcurse.runner import build_trial, check_inputs
from revcurse.tiny_checkpoints import TinySize, build_tiny_checkpoint
from tests.processes import kill_at_first_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FSDP_CONFIG = ROOT / "configs" / "accelerate-fsdp.yaml"
TINY = [
    "world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "model.hidden_size=32", "model.layers=1", "model.heads=2",
    "model.intermediate_size=64", "model.vocab_size=400", "train.batch_size=16", "train.threads=1",
]  # fmt: skip


def sets(*extra: str) -> list[str]:
    return [a for s in [*TINY, *extra] for a in ("--set", s)]


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "seed-0" / "train_log.jsonl").read_text().splitlines()]


def accuracies(run: Path) -> list[float]:
    records = json.loads((run / "metrics.json").read_text())
    return [r["mean"] for r in records if r["metric"] == "accuracy"]


def launch(entry: list[str]) -> list[str]:
    """``accelerate launch`` with the FSDP config on 2 CPU processes (fp32: the config's bf16 is for GPUs)."""
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
            "--num_processes", "2", "--main_process_port", str(port), "--mixed_precision", "no", *entry]


def environment() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


FSDP_ON_CPU = [str(ROOT / "tests" / "fsdp_on_cpu.py")]  # accelerate's GPU-only gate lifted (see that file)


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_matches_one_process_and_resumes_after_a_kill(tmp_path):
    """One process, then FSDP2 over 2 gloo processes (sharded checkpoints every 5 steps): the same losses up to
    float order, the same accuracies, the model gathered whole into safetensors. Then an FSDP launch killed after
    its first sharded checkpoint resumes under FSDP to the uninterrupted FSDP run's losses, step for step."""
    options = sets("train.epochs=10", "train.checkpoint_every=5")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--quiet", "--out", str(tmp_path / "one"), *options])
    assert exit_info.value.code == 0
    whole = subprocess.run([*launch(FSDP_ON_CPU), "train", "--quiet", "--out", str(tmp_path / "fsdp"), *options],
                           env=environment(), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert json.loads((tmp_path / "fsdp" / "run.json").read_text())["per_seed"][0]["fsdp_processes"] == 2
    one, fsdp = losses(tmp_path / "one"), losses(tmp_path / "fsdp")
    assert len(one) == len(fsdp) == 50
    assert fsdp == pytest.approx(one, rel=1e-4, abs=1e-5) and fsdp != one  # sharded sums: another float order
    assert accuracies(tmp_path / "fsdp") == accuracies(tmp_path / "one")
    from safetensors.torch import load_file

    weights = {run: load_file(tmp_path / run / "seed-0" / "model" / "model.safetensors") for run in ("one", "fsdp")}
    assert weights["fsdp"].keys() == weights["one"].keys()
    assert all(torch.allclose(weights["fsdp"][k], weights["one"][k], atol=1e-4) for k in weights["one"])

    checkpoint = kill_at_first_checkpoint(
        [*launch(FSDP_ON_CPU), "train", "--quiet", "--out", str(tmp_path / "killed"), *options], environment(),
        tmp_path / "killed")
    # Sharded: each process wrote its part of the weights and of the optimizer state.
    assert {p.name for p in (checkpoint / "pytorch_model_fsdp_0").glob("*.distcp")} == {"__0_0.distcp", "__1_0.distcp"}
    resumed = subprocess.run([*launch(FSDP_ON_CPU), "train", "--quiet", "--resume", str(tmp_path / "killed")],
                             env=environment(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["per_seed"][0]["resumed_at_step"] > 0
    assert losses(tmp_path / "killed") == fsdp
    assert (tmp_path / "killed" / "metrics.json").read_text() == (tmp_path / "fsdp" / "metrics.json").read_text()


@pytest.mark.slow
def test_an_fsdp_launch_on_cpu_is_refused_not_run_as_ddp(tmp_path):
    """The user's command, as accelerate runs it on CPU: accelerate keeps MULTI_CPU (DDP); revcurse says so."""
    command = launch(["-m", "revcurse.cli", "demo", "--quiet", "--out", str(tmp_path / "run"), *sets()])
    refused = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "this launch runs as MULTI_CPU" in refused.stderr
    assert "FSDP needs one GPU per process" in refused.stderr
    assert not (tmp_path / "run").exists()


def test_the_fsdp_config_is_fsdp2_full_shard_by_llama_layer():
    from accelerate.commands.config.config_args import load_config_from_file
    from transformers.models.llama import modeling_llama

    config = load_config_from_file(str(FSDP_CONFIG))
    assert config.distributed_type == "FSDP" and not config.use_cpu
    fsdp = config.fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert hasattr(modeling_llama, fsdp["fsdp_transformer_layer_cls_to_wrap"])
    assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"


@pytest.mark.parametrize(("setting", "message"), [("lora.enabled=true", "lora.enabled under FSDP"),
                                                 ("model.quantization=4bit", "model.quantization=4bit under FSDP")])
def test_lora_and_4bit_under_fsdp_are_refused(setting, message, monkeypatch, folder):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # as accelerate launch sets it
    with pytest.raises(InputError, match=message):
        check_inputs(load_config(None, [*TINY, f"model.checkpoint={folder}", setting]), log=print)


# --- probing a checkpoint placed by model.device_map -------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    texts = build_trial(load_config(None, TINY), 0).corpus.texts_seen()
    size = TinySize(hidden=32, layers=2, heads=2, intermediate=64, positions=128)
    return build_tiny_checkpoint(tmp_path_factory.mktemp("sharding") / "llama", "llama", "metaspace", texts, size)


# Part of the model on "disk": accelerate's hooks bring its weights in at each forward, the mechanism that runs a
# model split over several GPUs (which a CPU machine cannot show); "auto" and "cpu" put it all on the CPU here.
OFFLOADED = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", "model.norm": "cpu",
             "model.rotary_emb": "cpu", "lm_head": "cpu"}


# transformers says, rightly, that the offloaded layer's weights are on the meta device until used.
@pytest.mark.library_log_warning("Some parameters are on the meta device")
@pytest.mark.parametrize("device_map", ["cpu", "auto", OFFLOADED])
def test_a_checkpoint_placed_by_device_map_probes_as_the_default_load(device_map, folder):
    corpus = build_trial(load_config(None, TINY), 0).corpus
    requests = [(p.prompt, p.target) for p in corpus.probes[:16]]
    default, tokenizer = load_checkpoint(ModelConfig(checkpoint=str(folder)))
    placed, _ = load_checkpoint(ModelConfig(checkpoint=str(folder), device_map=device_map))
    if device_map == OFFLOADED:
        assert placed.hf_device_map == OFFLOADED and placed.model.layers[1].mlp.up_proj.weight.device.type == "meta"
    expected = HFBackend(default, tokenizer).loglikelihood(requests)
    assert HFBackend(placed, tokenizer).loglikelihood(requests) == expected
    contexts = [prompt for prompt, _ in requests[:4]]
    assert HFBackend(placed, tokenizer).generate(contexts, 3) == HFBackend(default, tokenizer).generate(contexts, 3)


def test_a_probing_only_run_with_device_map_auto_gives_the_default_metrics(folder, tmp_path):
    probe_only = [*TINY, f"model.checkpoint={folder}", "train.enabled=false"]
    for name, extra in (("default", []), ("auto", ["model.device_map=auto"])):
        with pytest.raises(SystemExit) as exit_info:
            main(["demo", "--quiet", "--out", str(tmp_path / name), *sets(*probe_only[len(TINY):], *extra)])
        assert exit_info.value.code == 0
    assert (tmp_path / "auto" / "metrics.json").read_text() == (tmp_path / "default" / "metrics.json").read_text()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["model.device_map=auto"], "model.device_map=auto places a model for probing only"),
        (["model.device_map=auto", "train.enabled=false", "model.checkpoint=null"], "set model.checkpoint"),
    ],
)
def test_device_map_with_training_or_without_a_checkpoint_is_refused(settings, message, folder):
    config = load_config(None, [*TINY, f"model.checkpoint={folder}", *settings])
    with pytest.raises(InputError, match=message):
        check_inputs(config, log=print)


# --- 4-bit QLoRA (CUDA only: settings and refusals here) -----------------------------------------------------


def test_4bit_is_nf4_with_bf16_compute_and_double_quantization_on_this_process_gpu():
    config = ModelConfig(checkpoint="x", quantization="4bit")
    quantization = sharding.quantization_config(config)
    assert quantization.load_in_4bit and not quantization.load_in_8bit
    assert quantization.bnb_4bit_quant_type == "nf4" and quantization.bnb_4bit_use_double_quant
    assert quantization.bnb_4bit_compute_dtype == torch.bfloat16
    assert sharding.placement(config) == {"": 0}
    assert sharding.quantization_config(ModelConfig()) is None and sharding.placement(ModelConfig()) is None


def test_4bit_is_refused_without_cuda_before_any_folder_is_made(folder, tmp_path, capsys):
    assert not torch.cuda.is_available()  # this suite runs on CPU
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--quiet", "--out", str(tmp_path / "run"),
              *sets(f"model.checkpoint={folder}", "model.quantization=4bit", "lora.enabled=true")])
    assert exit_info.value.code == 2 and not list(tmp_path.iterdir())
    assert "model.quantization=4bit needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("settings", "bitsandbytes", "message"),
    [
        (["lora.enabled=true", "lora.merge_on_save=false"], False, r"pip install 'revcurse\[qlora\]'"),
        ([], True, "cannot be fine-tuned in full: set lora.enabled=true"),
        (["lora.enabled=true"], True, "set lora.merge_on_save=false"),
        (["model.checkpoint=null", "lora.enabled=true", "lora.merge_on_save=false"], True, "set model.checkpoint"),
    ],
)
def test_4bit_on_a_gpu_machine_is_refused_without_bitsandbytes_or_lora(settings, bitsandbytes, message, folder,
                                                                      monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine: the checks after CUDA's
    if not bitsandbytes:
        find_spec = sharding.importlib.util.find_spec
        monkeypatch.setattr(sharding.importlib.util, "find_spec",
                            lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a))
    config = load_config(None, [*TINY, f"model.checkpoint={folder}", "model.quantization=4bit", *settings])
    with pytest.raises(InputError, match=message):
        sharding.check_big_model(config, trains=True)


def test_4bit_probing_only_with_lora_off_passes_the_checks(folder, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = load_config(None, [*TINY, f"model.checkpoint={folder}", "model.quantization=4bit", "train.enabled=false"])
    sharding.check_big_model(config, trains=False)


def test_the_qlora_path_imports_and_leaves_other_models_alone(tiny_model_and_tokenizer):
    """peft's k-bit preparation and bitsandbytes' 4-bit layer exist in the ``qlora`` extra; a model that is not
    4-bit passes ``prepare_quantized`` untouched (its dtype and trainable weights unchanged)."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes
    from peft import prepare_model_for_kbit_training  # noqa: F401

    assert hasattr(bitsandbytes.nn, "Linear4bit")
    model, _ = tiny_model_and_tokenizer
    before = {name: (p.dtype, p.requires_grad) for name, p in model.named_parameters()}
    assert sharding.prepare_quantized(model) is model
    assert {name: (p.dtype, p.requires_grad) for name, p in model.named_parameters()} == before


def test_bitsandbytes_cpu_kernel_notice_is_dropped_and_its_other_lines_kept(caplog):
    """``import peft`` imports bitsandbytes when installed; on CPU it logs a notice about an optional kernel
    package that no run here uses (the revcurse package filters that line alone)."""
    import revcurse  # noqa: F401  (installs the filter)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.")
        logger.warning("another bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["another bitsandbytes warning"]
