"""Big models: training sharded with FSDP, probing a checkpoint placed over several devices, 4-bit QLoRA.

FSDP comes through ``accelerate launch --config_file configs/accelerate-fsdp.yaml``: each process holds a shard of
every weight, so the trained model exists whole nowhere until ``full_state_dict`` gathers it (every process
sends its shard) onto the main process, which saves it and reloads it whole to probe it. ``model.device_map``
places a checkpoint for probing only; ``model.quantization=4bit`` loads it through bitsandbytes. The combinations
that cannot work are refused by ``check_big_model`` before any folder is made or model loaded.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

import torch

from revcurse.errors import InputError

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import BitsAndBytesConfig, PreTrainedModel

    from revcurse.config import RunConfig
    from revcurse.sections import ModelConfig

FSDP_CONFIG = "configs/accelerate-fsdp.yaml"


def fsdp_requested() -> bool:
    """Whether ``accelerate launch`` was asked for FSDP (its config's ``distributed_type: FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_fsdp(accelerator: Accelerator) -> None:
    """Refuse an FSDP launch that would quietly train as something else, or that our save path cannot gather.

    accelerate 1.15 turns FSDP on only for GPU-type launches: on CPU processes (``Accelerator(cpu=True)``) it
    keeps ``MULTI_CPU`` and trains plain DDP, every process holding the whole model, with no word said.
    """
    if not fsdp_requested():
        return
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        raise InputError(
            f"accelerate launch asked for FSDP ({FSDP_CONFIG}), but this launch runs as "
            f"{accelerator.distributed_type.value}: accelerate applies FSDP only to processes on GPUs, and on CPU "
            "it would quietly train plain DDP with the whole model in every process. On CPU, launch with torchrun "
            "(DDP); FSDP needs one GPU per process"
        )
    if accelerator.state.fsdp_plugin.fsdp_version != 2:
        raise InputError(f"FSDP: fsdp_version 1 is not supported here; set fsdp_version: 2 (see {FSDP_CONFIG})")


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP2 sharded ``model`` in place (its weights are DTensors, each process holding a part)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole weights of a sharded model on the main process's CPU ({} on the others); a collective: every
    process must call it, or the main one waits forever."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def local_weights(parameter: torch.Tensor) -> torch.Tensor:
    """This process's part of a sharded weight (a DTensor's local shard), or the weight itself."""
    return parameter.to_local() if hasattr(parameter, "to_local") else parameter


def check_big_model(config: RunConfig, trains: bool) -> None:
    """Refuse, before anything is loaded, what ``model.device_map``, ``model.quantization`` and an FSDP launch
    cannot do. ``trains``: the run fine-tunes (train.enabled and documents to train on)."""
    model = config.model
    if model.device_map is not None:
        if model.checkpoint is None or config.probe.backend != "hf":
            raise InputError("model.device_map places model.checkpoint for probe.backend=hf: set model.checkpoint "
                             "(the tiny model is built in this process, and other backends load their own)")
        if trains:
            raise InputError(
                f"model.device_map={model.device_map} places a model for probing only (train.enabled=false): "
                "training places it itself, on one device or sharded over processes (torchrun for DDP, accelerate "
                f"launch --config_file {FSDP_CONFIG} for FSDP); unset model.device_map to train"
            )
    if fsdp_requested() and trains:
        if config.lora.enabled:
            raise InputError(f"lora.enabled under FSDP ({FSDP_CONFIG}) is not supported: LoRA trains few weights; "
                             "launch it with torchrun (DDP) or on one GPU")
        if model.quantization != "none":
            raise InputError("model.quantization=4bit under FSDP is not supported: run QLoRA on one GPU or with DDP")
    if model.quantization != "none":
        check_quantization(config, trains)


def check_quantization(config: RunConfig, trains: bool) -> None:
    """QLoRA's needs: a checkpoint, a CUDA GPU, bitsandbytes, LoRA to train it, the adapter saved alone."""
    model = config.model
    if model.checkpoint is None:
        raise InputError("model.quantization=4bit loads model.checkpoint in 4-bit: set model.checkpoint")
    if config.probe.backend != "hf":
        raise InputError(f"model.quantization=4bit is for probe.backend=hf (probe.backend={config.probe.backend} "
                         "loads its own model)")
    if not torch.cuda.is_available():
        raise InputError("model.quantization=4bit needs a CUDA GPU (bitsandbytes' 4-bit kernels), and this machine "
                         "has none: set model.quantization=none (LoRA on a bfloat16 base: model.dtype=bfloat16)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError("model.quantization=4bit needs bitsandbytes, which is not installed: "
                         "pip install 'revcurse[qlora]'")
    if trains and not config.lora.enabled:
        raise InputError("model.quantization=4bit weights cannot be fine-tuned in full: set lora.enabled=true "
                         "(QLoRA: LoRA adapters trained on the frozen 4-bit base)")
    if trains and config.lora.merge_on_save:
        raise InputError("model.quantization=4bit with lora.merge_on_save=true would merge the adapters into 4-bit "
                         "weights (rounded): set lora.merge_on_save=false to save the adapter alone")


def quantization_config(config: ModelConfig) -> BitsAndBytesConfig | None:
    """QLoRA's 4-bit loading (Dettmers et al. 2023): NF4 weights, bf16 compute, the constants quantized too."""
    if config.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def placement(config: ModelConfig) -> str | dict[str, str | int] | None:
    """``device_map`` for ``from_pretrained``: the setting; for 4-bit weights (which bitsandbytes quantizes on the
    GPU) this process's GPU unless set; else None (loaded on CPU, moved by training or probing)."""
    if config.device_map is not None:
        return config.device_map
    if config.quantization != "none":
        from accelerate import PartialState

        return {"": PartialState().local_process_index}
    return None


def prepare_quantized(model: PreTrainedModel) -> PreTrainedModel:
    """A 4-bit model made ready for LoRA training (peft): its weights that are not quantized (norms, embeddings,
    head) in float32, inputs that carry gradients into the adapters. Other models are returned as they are."""
    if not getattr(model, "is_loaded_in_4bit", False):
        return model
    from peft import prepare_model_for_kbit_training

    # Gradient checkpointing stays train.gradient_checkpointing's call (peft would switch it on).
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
