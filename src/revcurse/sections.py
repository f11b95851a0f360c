"""The config sections every experiment shares: world, corpus, model, LoRA, training, probing, cures.

Each field carries its default, its bounds and a description (which ``--help`` and the README show). An
experiment's own options are a ``Section`` in its module (``experiments/``); ``config.RunConfig`` gathers them all
into the one config root. This module imports nothing of revcurse, so any module may import it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MASKED_OBJECTIVES = ("mlm-u", "mlm")  # train.objective values that train a bidirectional mask-filling model


class Section(BaseModel):
    # allow_inf_nan=False: a learning rate of "inf" (a string YAML leaves to pydantic) trains at loss NaN.
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class WorldConfig(Section):
    source: str = Field("celebrities", description="'celebrities' (made up) or a folder in the paper's Exp. 1 layout")
    facts_per_subset: int = Field(30, ge=1, description="facts in each of NameToDescription, DescriptionToName, Both")
    background: int = Field(300, ge=0, description="people stated both ways with all phrasings; never probed")
    seed: int | None = Field(None, description="seed of the world; None: the run's seed, so each seed is new people")
    strict: bool = Field(
        False, description="a paper folder's unusable line (empty, duplicate, no known name) is refused, not skipped"
    )


class CorpusConfig(Section):
    train_phrasings: int = Field(30, ge=1, description="templates per direction used in training")
    held_out_phrasings: int = Field(10, ge=1, description="templates per direction used only to probe")
    background_phrasings: int = Field(4, ge=1, description="templates per direction for each background person")


class ModelConfig(Section):
    checkpoint: str | None = Field(None, description="local folder or hub id of a causal LM; None: build a tiny one")
    trust_remote_code: bool = Field(False, description="let a checkpoint run its own code (off: safe by default)")
    allow_pickle: bool = Field(
        False, description="load pickle weights (.bin, .pt) when a folder has no safetensors; unpickling runs code"
    )
    hidden_size: int = Field(96, ge=8, description="tiny model: width")
    layers: int = Field(2, ge=1, description="tiny model: transformer blocks")
    heads: int = Field(4, ge=1, description="tiny model: attention heads")
    intermediate_size: int = Field(384, ge=8, description="tiny model: MLP width")
    tie_embeddings: bool = Field(
        False, description="tiny model: one matrix for input and output embeddings (Llama: separate)"
    )
    vocab_size: int = Field(4096, ge=300, description="tiny model: largest tokenizer vocabulary trained on the corpus")
    chat: bool = Field(
        False, description="render documents and probes as conversations with the checkpoint's chat template"
    )
    attention: str = Field("sdpa", description="checkpoint attention implementation: sdpa, eager, flash_attention_2")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="weights' dtype, loaded or built: bfloat16/float16 halve memory (train.precision is "
        "autocast, apart); float16 weights probe and take LoRA but are not fine-tuned in full (refused: NaN)"
    )
    device_map: str | dict[str, str | int] | None = Field(
        None, description="probing only (train.enabled=false): where from_pretrained places model.checkpoint; 'auto' "
        "spreads a big one over every GPU (then CPU, then disk), 'cuda:0', or {module: device}; None: whole on CPU"
    )
    quantization: Literal["none", "4bit"] = Field(
        "none", description="'4bit': load model.checkpoint in 4-bit NF4 (bitsandbytes, bf16 compute, double "
        "quantization); training it needs lora.enabled (QLoRA); CUDA only, pip install 'revcurse[qlora]'"
    )


class LoraSection(Section):
    """LoRA (peft): train small low-rank adapters instead of every weight of a checkpoint."""

    enabled: bool = Field(False, description="fine-tune with LoRA adapters; off: full fine-tuning")
    rank: int = Field(16, ge=1, description="adapter rank r")
    alpha: float = Field(32, gt=0, description="scaling numerator (update scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | None = Field(
        None, description="module names to adapt; None: peft's defaults for the architecture (q_proj, v_proj...)"
    )
    merge_on_save: bool = Field(True, description="save merged full weights; off: save the adapter alone")


def tracker_list(value: object) -> object:
    """``train.report_to``: 'none' (or nothing) is no tracker; one name or 'a,b' is a list (repeats dropped)."""
    if value is None:
        return []
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list):
        return names  # pydantic says a list was expected
    names = [name.strip() if isinstance(name, str) else name for name in names]
    return list(dict.fromkeys(name for name in names if name not in ("none", "")))


Trackers = Annotated[list[Literal["tensorboard", "wandb", "mlflow", "trackio"]], BeforeValidator(tracker_list)]


class TrainConfig(Section):
    enabled: bool = Field(
        True, description="train on the experiment's documents; false: ask the model as it is (model.checkpoint, "
        "or a server with probe.backend=openai), e.g. to audit a model trained elsewhere"
    )
    epochs: float = Field(5, gt=0, description="passes over the training documents")
    batch_size: int = Field(64, ge=1, description="documents per optimizer step")
    learning_rate: float = Field(3e-3, gt=0, description="peak AdamW learning rate (cosine decay after warmup)")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="fraction of steps with linear warmup")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    loss: Literal["full", "completion"] = Field(
        "full", description="'full': every token; 'completion': only after the prompt (never trains on a d2p name)"
    )
    report_to: Trackers = Field(
        default_factory=list,
        description="experiment trackers for loss, learning rate, tokens/s, final metrics and report: none, or any of "
        "tensorboard, wandb, mlflow, trackio (comma-separated or a list); offline, in RUN/trackers/ (trackio: its own)",
    )
    threads: int = Field(2, ge=1, description="CPU threads for torch")
    objective: Literal["causal", "mlm-u", "mlm"] = Field(
        "causal",
        description="'causal': next token; 'mlm-u': any-order masked tokens, rate ~ U(0,1) (Kitouni et al. 2024); "
        "'mlm': masked tokens at the fixed rate train.mask_rate",
    )
    mask_rate: float | None = Field(
        None, gt=0, lt=1, description="objective=mlm: the fraction of tokens masked in every sequence (None: "
        "BERT's 0.15); refused with any other objective"
    )
    gradient_accumulation: int = Field(
        1, ge=1, description="micro-batches per optimizer step (same update as one batch, less memory)"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="'auto': bf16 autocast on a GPU that has it, fp32 on CPU"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': the GPU when there is one")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass instead of keeping them: less memory, "
        "more time; same losses"
    )
    packing: int = Field(
        0, ge=0, description="pack each micro-batch's documents into rows of up to N tokens, each document seeing "
        "only itself (position ids restart; no padding between); 0: one padded row per document. Same loss up to "
        "float order; pays on a GPU with short documents"
    )
    compile: bool = Field(
        False, description="torch.compile the model (inductor): ~30 s of compiling in the first steps, then faster "
        "ones on a GPU (1.76x SDPA's tokens/s for a 134M Llama on an H200)"
    )
    checkpoint_every: int = Field(
        0, ge=0, description="save a resumable checkpoint every N optimizer steps (0: by time only)"
    )
    checkpoint_minutes: float = Field(
        5.0, ge=0, description="save a resumable checkpoint when this many minutes passed since the last (0: never)"
    )

    @model_validator(mode="after")
    def _packing_is_causal(self) -> TrainConfig:
        if self.packing and self.objective != "causal":
            raise ValueError("train.packing needs train.objective=causal (a masked model attends both ways, across "
                             "documents)")
        if self.mask_rate is not None and self.objective != "mlm":
            raise ValueError(f"train.mask_rate is the rate of train.objective=mlm; objective={self.objective} "
                             "masks no tokens (causal) or draws its rate (mlm-u): unset train.mask_rate")
        return self


class ProbeConfig(Section):
    backend: str = Field(
        "hf",
        description="who answers: 'hf' the model in this process (trained here or model.checkpoint), 'vllm' "
        "model.checkpoint in vLLM, 'openai' any OpenAI-compatible server at probe.url (nothing is trained); "
        "the names are revcurse.backends.BACKENDS",
    )
    url: str | None = Field(None, description="openai backend: the server, e.g. http://127.0.0.1:8000/v1")
    model_name: str | None = Field(None, description="openai backend: the model id on the server; None: its only one")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai backend: the environment variable holding the key (never the key)"
    )
    concurrency: int = Field(8, ge=1, description="openai backend: requests in flight at once")
    batch_size: int = Field(512, ge=1, description="sequences per forward pass when scoring (hf, vllm)")
    max_new_tokens: int | None = Field(
        None, description="greedy generation length; None: longest target + 2 (sampled answers: 24)"
    )
    samples: int = Field(0, ge=0, description="answers sampled per probe (any-correct, fraction-correct); 0: none")
    temperature: float = Field(1.0, ge=0, description="sampling temperature; 0 repeats the greedy answer")
    distractors: int = Field(
        15, ge=1,
        description="other facts' targets (same phrasing) each correct target is ranked against; cost is linear in it",
    )
    curve_points: int = Field(
        20, ge=0, description="points of the likelihood curve recorded while training (seed-N/curve.jsonl: each "
        "group's mean log p of the correct target and of its distractors, revcurse.curve); 0: no curve"
    )
    curve_facts: int = Field(
        4, ge=2, description="facts per probe group the curve follows (2 phrasings each, the same at every point; "
        "bench/curve_overhead.py: 4 costs the demo < 5% of its training time)"
    )


class CureConfig(Section):
    match: Literal["data", "compute"] = Field(
        "data",
        description="'data': every document once forward and once per added form; 'compute': epochs scaled so "
        "training sees as many documents as without cures",
    )
    segment_length: int = Field(3, ge=1, description="reverse-segment: longest segment, in words")
