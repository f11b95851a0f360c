"""Train: one loop for every model, tiny or pretrained: AdamW, cosine schedule, full-sequence loss by default.

Each document is ``<s> text </s>``. Full-sequence loss (the paper's setting) trains on every token.
Completion-only loss trains only on the part after the prompt, so the model is never trained to produce the
entity that opens a document: the name in name-first text, the description in description-first text. That
changes what the DescriptionToName condition means, so it is an option, not the default.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_cosine_schedule_with_warmup

from revcurse.config import TrainConfig
from revcurse.corpus import Document
from revcurse.errors import InputError, NonFiniteLoss
from revcurse.model import enable_gradient_checkpointing
from revcurse.objectives import IGNORE_INDEX, objective_loss
from revcurse.sharding import check_fsdp, local_weights
from revcurse.trackers import TrackerRun, step_metrics

# Length grouping window, in batches. Measured on the demo (seed 1): 4 keeps accuracy at 1.00 and runs 1.35x
# faster than no grouping; 32 made batches so uniform (one phrasing family each) that description->name
# accuracy fell to 0.81-0.87 over 3 seeds.
LENGTH_WINDOW_BATCHES = 4


@dataclass
class TrainResult:
    """What training did: steps, tokens, wall time and the loss curve (one entry per step)."""

    steps: int
    tokens: int
    seconds: float
    log: list[dict] = field(default_factory=list)
    trainable_parameters: int = 0
    resumed_at_step: int = 0  # 0: trained from the start; K: continued from a checkpoint after step K
    checkpoints: int = 0  # checkpoints saved by this process, and the seconds they took (within ``seconds``)
    checkpoint_seconds: float = 0.0
    step_ends: list[float] = field(default_factory=list)  # wall seconds at the end of each step of this process

    def tokens_per_second_after(self, warmup_steps: int) -> float:
        """Throughput without the first ``warmup_steps`` (>= 1) steps: allocation, torch.compile, kernel tuning."""
        ran = self.log[len(self.log) - len(self.step_ends):]  # the steps this process ran (after a resume, too)
        if warmup_steps < 1 or len(ran) <= warmup_steps:
            return math.nan
        tokens = ran[-1]["tokens"] - ran[warmup_steps - 1]["tokens"]
        return tokens / (self.step_ends[-1] - self.step_ends[warmup_steps - 1])

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def final_loss(self) -> float:
        return self.log[-1]["loss"] if self.log else math.nan


def encode_documents(
    documents: list[Document], tokenizer: PreTrainedTokenizerBase, loss: str = "full"
) -> list[tuple[list[int], list[int]]]:
    """Token ids and labels per document; with ``loss='completion'`` labels of the prompt part are ignored."""
    texts = [d.text for d in documents]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    prompt_lengths = [0] * len(documents)
    if loss == "completion" or any(d.answer_only for d in documents):
        prompts = [d.text[: d.prompt_chars] for d in documents]
        prompt_lengths = [len(p) for p in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    encoded = []
    for document, token_ids, prompt_length in zip(documents, ids, prompt_lengths):
        if document.reversal == "reverse-token":
            token_ids = token_ids[::-1]
        # BOS first, as at probe time, unless the text brings its own (a chat template) or the tokenizer has none.
        bos = [] if tokenizer.bos_token_id is None or document.text.startswith(tokenizer.bos_token) else [
            tokenizer.bos_token_id]
        # EOS last, unless the text ends with its own (a chat template that closes each answer with it).
        eos = [] if document.text.endswith(tokenizer.eos_token) else [tokenizer.eos_token_id]
        full = [*bos, *token_ids, *eos]
        labels = list(full)
        if loss == "completion" or document.answer_only:  # BOS and the prompt are context, never targets
            labels[: len(bos) + prompt_length] = [IGNORE_INDEX] * (len(bos) + prompt_length)
        encoded.append((full, labels))
    return encoded


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions are masked from attention and loss.

    Filled in numpy, then handed to torch without a copy: a torch write per row costs several small ops, which
    made a 256-document step CPU-bound on a GPU (bench/gpu_check.py's profile; bench/collate_speed.py).
    """
    width = max(len(ids) for ids, _ in batch)
    input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    labels = np.full((len(batch), width), IGNORE_INDEX, dtype=np.int64)
    attention_mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, (ids, row_labels) in enumerate(batch):
        input_ids[row, : len(ids)] = ids
        labels[row, : len(ids)] = row_labels
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(attention_mask)}


def pack(batch: list[tuple[list[int], list[int]]], pad_id: int, row_tokens: int) -> dict[str, torch.Tensor]:
    """Documents laid end to end in rows of up to ``row_tokens`` (first fit), right-padded to the widest row.

    Position ids restart at 0 with each document and no attention mask is passed, so transformers builds a
    block-diagonal causal mask (``masking_utils.find_packed_sequence_indices``): a document attends to itself only.
    The first label of each document is ignored, as the shift makes it the previous document's prediction; so the
    loss is the padded batch's, over the same tokens. With SDPA the mask is dense over each row (attention work
    grows with the row, not the document); flash_attention_2 reads the position ids as variable-length sequences.
    """
    rows: list[list[tuple[list[int], list[int]]]] = []
    room: list[int] = []
    for ids, labels in batch:
        row = next((r for r, free in enumerate(room) if free >= len(ids)), None)
        if row is None:
            rows.append([])
            room.append(max(row_tokens, len(ids)))
            row = len(rows) - 1
        rows[row].append((ids, labels))
        room[row] -= len(ids)
    width = max(sum(len(ids) for ids, _ in row) for row in rows)
    input_ids, labels, position_ids = [], [], []
    for row in rows:
        used = sum(len(ids) for ids, _ in row)
        input_ids.append([token for ids, _ in row for token in ids] + [pad_id] * (width - used))
        labels.append([label for _, row_labels in row for label in [IGNORE_INDEX, *row_labels[1:]]]
                      + [IGNORE_INDEX] * (width - used))
        # the padding is a sequence of its own, with no labels
        position_ids.append([p for ids, _ in row for p in range(len(ids))] + list(range(width - used)))
    return {key: torch.from_numpy(np.array(value, dtype=np.int64)) for key, value in (
        ("input_ids", input_ids), ("labels", labels), ("position_ids", position_ids))}


def epoch_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches: a random order, with similar lengths grouped so that little is padded.

    Documents are shuffled, sorted by length within windows of a few batches, cut into batches, and the batches
    shuffled again: a batch of short sentences is not padded to a long one, yet each batch stays a mixed draw.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = LENGTH_WINDOW_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def split_step(
    step_batch: list[int], processes: int, accumulation: int
) -> list[list[list[int]]]:
    """One optimizer step's documents cut into ``processes`` x ``accumulation`` micro-batches.

    Process ``r`` runs the micro-batches ``[r][0..A-1]``. Every process draws the same batches from the same
    seed, so no data has to be sent between them; each one just takes its share.
    """
    parts = processes * accumulation
    micro = [step_batch[i::parts] for i in range(parts)]
    return [micro[r * accumulation : (r + 1) * accumulation] for r in range(processes)]


def label_count(labels: list[int]) -> int:
    """Tokens a sequence is trained on: its labels after the shift that next-token prediction does."""
    return sum(label != IGNORE_INDEX for label in labels[1:])


def train_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    documents: list[Document],
    config: TrainConfig,
    seed: int,
    log_path: Path | None = None,
    show_progress: bool = True,
    checkpoint_dir: Path | None = None,
    tracking: TrackerRun | None = None,
    on_step: Callable[[int, int, PreTrainedModel], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``documents``; the data order is drawn from ``seed``.

    Runs through ``accelerate``: on one process it is a plain loop; launched with ``torchrun`` or
    ``accelerate launch`` on N processes it is data-parallel (DDP), each process taking 1/N of every batch.
    The causal loss is weighted so that one step's gradient is the mean over the whole batch's tokens, however
    the batch is split into processes and accumulation micro-batches: results match a single process up to
    floating-point order.

    With ``checkpoint_dir``, a checkpoint is saved there every ``config.checkpoint_every`` steps and/or
    ``config.checkpoint_minutes`` minutes, and training continues from the newest one found there: weights,
    optimizer and scheduler, RNG states, the data order and position, and the loss log so far. On CPU the result
    equals an uninterrupted run's exactly.

    A loss, or weights after an update, that is inf or nan stops training with ``NonFiniteLoss`` at that step:
    nothing after it is logged or checkpointed, so the newest checkpoint is the last finite state.

    With ``tracking`` (``train.report_to``), the Accelerator starts those trackers and logs each step into them;
    the caller finishes them (after the final metrics: see revcurse.trackers).

    ``on_step(steps_done, total_steps, model)`` is called before the first step and after each one (one process
    only: the runner passes none to a data-parallel launch); its time is not counted as training time.
    """
    torch.set_num_threads(config.threads)
    accelerator = make_accelerator(config, tracking.trackers if tracking else None)
    if tracking:
        accelerator.init_trackers(tracking.project, config=tracking.hparams)
    processes, rank = accelerator.num_processes, accelerator.process_index
    encoded = encode_documents(documents, tokenizer, config.loss)
    lengths = [len(ids) for ids, _ in encoded]
    counts = [label_count(labels) for _, labels in encoded]
    steps_per_epoch = len(epoch_batches(lengths, config.batch_size, torch.Generator()))
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
        weight_decay=config.weight_decay, **fused_adamw(accelerator.device),
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_fraction * total_steps), total_steps)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    if config.compile:
        # Here, not through Accelerator(dynamo_backend=...): accelerate keeps its first Accelerator's settings for
        # the whole process, so a second run in it (compare, a sweep, a bench) would silently not compile.
        with warnings.catch_warnings():  # torch 2.13's inductor imports its own deprecated torch.jit.script_method
            warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning)
            model = torch.compile(model)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = TrainResult(steps=0, tokens=0, seconds=0.0, trainable_parameters=trainable)
    batches: list[list[int]] = []
    latest = latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if latest is not None:
        batches = load_checkpoint_state(accelerator, latest, scheduler, generator, result)
        result.resumed_at_step = result.steps
    saved_step = result.steps if latest is not None else None  # the newest checkpoint's step

    def diverged(step: int, problem: str) -> NonFiniteLoss:
        """The error that stops training at ``step``; the finite steps' log is written first."""
        if log_path is not None and accelerator.is_main_process:
            write_train_log(log_path, result.log)
        return NonFiniteLoss(seed, step, total_steps, problem, config.learning_rate, saved_step)

    start = time.perf_counter() - result.seconds
    last_save = time.perf_counter()

    def observe() -> None:
        """Let ``on_step`` look at the model (revcurse.curve), off the training clock."""
        nonlocal start
        if on_step is not None:
            began = time.perf_counter()
            on_step(result.steps, total_steps, accelerator.unwrap_model(model, keep_torch_compile=False))  # eager
            start += time.perf_counter() - began

    observe()
    with _progress(show_progress and accelerator.is_main_process) as progress:
        task = progress.add_task("train", total=total_steps, completed=result.steps, loss=math.nan, speed=0.0)
        for step in range(result.steps, total_steps):
            if step % steps_per_epoch == 0:
                batches = epoch_batches(lengths, config.batch_size, generator)
            step_batch = batches[step % steps_per_epoch]
            step_items = sum(counts[i] for i in step_batch)
            micro_batches = split_step(step_batch, processes, config.gradient_accumulation)[rank]
            step_loss = torch.zeros((), device=accelerator.device)
            for index, micro in enumerate(micro_batches):
                documents_here = [encoded[i] for i in micro]
                tensors = pack(documents_here, tokenizer.pad_token_id, config.packing) if config.packing else collate(
                    documents_here, tokenizer.pad_token_id)
                batch = {k: v.to(accelerator.device) for k, v in tensors.items()}
                last = index == len(micro_batches) - 1
                with accelerator.no_sync(model) if not last else nullcontext(), accelerator.autocast():
                    loss = objective_loss(model, batch, config.objective, tokenizer, generator, step_items,
                                          len(micro_batches), config.mask_rate)
                    accelerator.backward(loss * (processes if config.objective == "causal" else 1))
                step_loss += loss.detach()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if processes > 1:
                step_loss = accelerator.reduce(step_loss, reduction="sum")
                if config.objective != "causal":
                    step_loss = step_loss / processes
            loss_value = step_loss.item()  # the same on every process (reduced): all of them stop together
            if not math.isfinite(loss_value):
                raise diverged(step + 1, f"the loss is {loss_value}")
            result.steps += 1
            result.tokens += sum(lengths[i] for i in step_batch)
            result.seconds = time.perf_counter() - start
            result.step_ends.append(result.seconds)
            result.log.append(
                {"step": result.steps, "epoch": (step + 1) / steps_per_epoch, "loss": loss_value,
                 "lr": scheduler.get_last_lr()[0], "tokens": result.tokens}
            )
            progress.update(task, advance=1, loss=loss_value, speed=result.tokens_per_second)
            accelerator.log(step_metrics(result.log[-1], result.tokens_per_second), step=result.steps)
            observe()
            if checkpoint_dir is not None and result.steps < total_steps and checkpoint_due(
                config, result.steps, time.perf_counter() - last_save, accelerator
            ):
                if not weights_finite(model, accelerator):  # a finite loss, then an update that overflowed
                    raise diverged(result.steps, "the weights hold inf or nan after this step's update")
                saving = time.perf_counter()
                save_checkpoint(accelerator, checkpoint_dir, scheduler, generator, batches, result)
                saved_step = result.steps
                last_save = time.perf_counter()
                result.checkpoints += 1
                result.checkpoint_seconds += last_save - saving
    if not weights_finite(model, accelerator):  # the last update: the model saved next must be finite too
        raise diverged(result.steps, "the weights hold inf or nan after this step's update")
    accelerator.unwrap_model(model).eval()
    if log_path is not None and accelerator.is_main_process:
        write_train_log(log_path, result.log)
    return result


def write_train_log(path: Path, log: list[dict]) -> None:
    """train_log.jsonl: one JSON object per step; strict JSON (a NaN would be written as bare ``NaN``)."""
    path.write_text("".join(json.dumps(entry, allow_nan=False) + "\n" for entry in log), encoding="utf-8")


def weights_finite(model: PreTrainedModel, accelerator: Accelerator) -> bool:
    """Whether every trained weight is finite (one sync; with several processes, all of them agree)."""
    trained = [local_weights(p.detach()) for p in model.parameters() if p.requires_grad]  # FSDP: own shard
    finite = torch.stack([torch.isfinite(p).all() for p in trained]).all() if trained else torch.tensor(True)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce((~finite).float().to(accelerator.device), reduction="sum")
        return bool(bad.item() == 0)
    return bool(finite.item())


PROGRESS_FILE = "progress.json"  # written last: a checkpoint folder without it is incomplete


def checkpoint_due(
    config: TrainConfig, steps: int, seconds_since_last: float, accelerator: Accelerator | None = None
) -> bool:
    """Every ``checkpoint_every`` steps, or when ``checkpoint_minutes`` have passed on any process: processes
    save together, so with several of them the clocks' verdicts are combined (a one-number all-reduce)."""
    by_steps = config.checkpoint_every > 0 and steps % config.checkpoint_every == 0
    by_time = config.checkpoint_minutes > 0 and seconds_since_last >= 60 * config.checkpoint_minutes
    if by_steps or config.checkpoint_minutes <= 0 or accelerator is None or accelerator.num_processes == 1:
        return by_steps or by_time
    verdict = torch.tensor(float(by_time), device=accelerator.device)
    return bool(accelerator.reduce(verdict, reduction="sum").item() > 0)


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint (``step-K`` with its progress file), or None."""
    complete = [p for p in checkpoint_dir.glob("step-*[0-9]") if (p / PROGRESS_FILE).is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(
    accelerator: Accelerator,
    checkpoint_dir: Path,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    batches: list[list[int]],
    result: TrainResult,
) -> Path:
    """Save everything training needs to go on into ``step-K/``, then drop older checkpoints.

    ``accelerate``'s ``save_state`` writes the model (safetensors), the optimizer and the RNG states of every
    process (loaded back with ``weights_only``); ours is the data position in a plain JSON file. The folder is
    built as ``step-K.tmp`` and renamed, so a kill mid-save leaves the previous checkpoint as the newest.
    """
    final = checkpoint_dir / f"step-{result.steps:07d}"
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(staging, safe_serialization=True)
    accelerator.wait_for_everyone()  # every process's RNG state is written before the folder is renamed
    if accelerator.is_main_process:
        progress = {
            "steps": result.steps,
            "tokens": result.tokens,
            "seconds": result.seconds,
            "log": result.log,
            "batches": batches,
            "generator": base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii"),
            "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        }
        (staging / PROGRESS_FILE).write_text(json.dumps(progress, allow_nan=False), encoding="utf-8")
        os.replace(staging, final)
        for older in checkpoint_dir.glob("step-*"):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint_state(
    accelerator: Accelerator,
    folder: Path,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    result: TrainResult,
) -> list[list[int]]:
    """Restore a checkpoint saved by ``save_checkpoint`` in place; returns the current epoch's batches."""
    accelerator.load_state(folder)
    progress = json.loads((folder / PROGRESS_FILE).read_text(encoding="utf-8"))
    result.steps, result.tokens, result.seconds = progress["steps"], progress["tokens"], progress["seconds"]
    result.log = progress["log"]
    state = torch.frombuffer(bytearray(base64.b64decode(progress["generator"])), dtype=torch.uint8)
    generator.set_state(state)
    scheduler.load_state_dict({**scheduler.state_dict(), **progress["scheduler"]})
    return progress["batches"]


def distributed_state(device: str = "auto") -> PartialState:
    """This process's place in a launch: one process, or one of N under ``torchrun`` / ``accelerate launch``.

    ``cpu=True`` where there is no GPU is what lets N CPU processes train data-parallel over gloo.
    """
    return PartialState(cpu=device == "cpu" or not torch.cuda.is_available())


def make_accelerator(config: TrainConfig, trackers: list | None = None) -> Accelerator:
    """The ``accelerate`` state for this run: device, processes, and bf16 autocast where it pays.

    ``precision='auto'`` is bf16 autocast on a GPU that has it and fp32 elsewhere: on the 2-core CPU bf16
    measured slower than fp32 for the tiny model. Under ``accelerate launch`` its settings (mixed precision, and
    FSDP / DeepSpeed plugins, which ``Accelerator`` reads from the launcher's environment) pass through.
    ``trackers`` (accelerate ``GeneralTracker`` objects) are what its ``log`` writes to.
    """
    on_gpu = torch.cuda.is_available() and config.device != "cpu"
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device=cuda, but no CUDA device is available")
    precision = config.precision
    if precision == "auto" and os.environ.get("ACCELERATE_MIXED_PRECISION"):
        # `accelerate launch --mixed_precision/--config_file` decides
        accelerator = Accelerator(cpu=not on_gpu, log_with=trackers)
    else:
        if precision == "auto":
            precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"
        mixed = "no" if precision == "fp32" else precision
        accelerator = Accelerator(cpu=not on_gpu, mixed_precision=mixed, log_with=trackers)
    check_fsdp(accelerator)  # an FSDP launch that accelerate would quietly run as DDP is refused
    return accelerator


def fused_adamw(device: torch.device) -> dict:
    """Fused AdamW on a GPU (one kernel for all parameters); the default elsewhere."""
    return {"fused": True} if device.type == "cuda" else {}


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[speed]:,.0f} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
