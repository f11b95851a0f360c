"""GPU check: training speed and MFU, Experiment 1 at ~125M parameters, and a size sweep, into one JSON file.

    python bench/gpu_check.py [--out runs/gpu-check] [--budget-s 450]   # one H100/H200: about 6 minutes
    python bench/gpu_check.py --dry-run                                # every step on CPU at tiny sizes (CI)

Three sections, each written to ``OUT/gpu_check.json`` as soon as it is done (the schema is
``docs/gpu_check.schema.json``; README "GPU check" reads it):

1. ``throughput``: a ~134M Llama (d=768, 12 layers, 32k vocabulary, untied) trained through revcurse's one loop
   (``train.train_model``) with eager attention, SDPA, SDPA + ``torch.compile`` (``train.compile``), on 1024-token
   documents; then fact-length documents (12-40 tokens) padded as usual and packed (``train.packing``). The
   baseline is a bare PyTorch loop (forward, backward, fused AdamW, bf16 autocast, no per-step sync) on the same
   model and the same batches, in the same run, once per kind of document: every row carries its ratio to it.
   The short baseline also profiles two steps (the top operators by device and CPU time).
2. ``experiment1``: the celebrities experiment (the demo's world) with a ~120M Llama (d=768, 12 layers, MLP 3072,
   the world's 4096-token vocabulary), trained from scratch
   (full), then LoRA with a bf16 base: the full run's model fine-tuned on a new world (new people, world seed 1),
   as one adapts a pretrained model to new facts. Accuracy in the trained and the reverse direction.
3. ``size_sweep``: tokens/s and MFU of the one loop from ~2M to ~320M parameters.

MFU (model FLOPs utilisation) counts 6*N + 12*L*d*seq FLOPs per trained token (N: parameters without the input
embedding, whose lookup is no matrix product; seq: the tokens each token attends to, the document length), over the
GPU's dense bf16 peak from its datasheet (``PEAK_BF16``). Padding is never counted as work. Each row also gives the
same FLOPs over the bf16 matrix-product rate measured at the start of the run (``fraction_of_measured_matmul``),
which is what a CPU dry run has in place of a datasheet. Tokens/s leave out each run's first ``WARMUP_STEPS`` steps
(allocation, compilation, kernel tuning).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from torch._dynamo.utils import counters
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from revcurse.config import TrainConfig, load_config
from revcurse.corpus import Document
from revcurse.runner import run_seed
from revcurse.train import collate, encode_documents, epoch_batches, train_model
from revcurse.versions import library_versions
from revcurse.world import Subset

SCHEMA = "revcurse.gpu_check/1"
WARMUP_STEPS = 3
# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, FLOP/s; the first name found in the
# device's name wins, so the more specific names come first.
PEAK_BF16 = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989.4e12, "H200": 989.4e12, "GH200": 989.4e12,
             "B200": 2250e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12, "RTX 4090": 165e12}
ONE_WAY = {"NameToDescription", "DescriptionToName"}


@dataclass(frozen=True)
class Shape:
    """A Llama's size; ``vocab`` is the word-level vocabulary of the synthetic documents."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int


@dataclass(frozen=True)
class Plan:
    """What one run measures: the GPU plan, or the dry run's tiny one."""

    model: Shape
    long_tokens: int  # tokens per long document (the attention context)
    long_batch: int  # long documents per step
    short_batch: int  # fact-length documents per step
    pack_tokens: int  # row length for packing
    steps: int  # measured steps per throughput run (after WARMUP_STEPS)
    sweep: tuple[Shape, ...]
    sweep_steps: int
    experiment: tuple[str, ...]  # --set overrides of Experiment 1
    matmul_size: int


GPU_PLAN = Plan(
    model=Shape(768, 12, 12, 2048, 32000), long_tokens=1024, long_batch=16, short_batch=256, pack_tokens=2048,
    steps=30,
    sweep=(Shape(128, 2, 4, 512, 4096), Shape(256, 4, 4, 1024, 4096), Shape(512, 8, 8, 2048, 4096),
           Shape(768, 12, 12, 2048, 4096), Shape(1024, 24, 16, 2816, 4096)),
    sweep_steps=10,
    experiment=("model.hidden_size=768", "model.layers=12", "model.heads=12", "model.intermediate_size=3072",
                "train.learning_rate=1e-3", "train.epochs=10", "train.batch_size=64", "train.threads=4"),
    matmul_size=8192,
)
DRY_PLAN = Plan(
    model=Shape(64, 2, 4, 128, 512), long_tokens=64, long_batch=4, short_batch=16, pack_tokens=128, steps=3,
    sweep=(Shape(32, 1, 2, 64, 256), Shape(64, 2, 4, 128, 256)), sweep_steps=2,
    experiment=("world.facts_per_subset=3", "world.background=6", "corpus.train_phrasings=4",
                "corpus.held_out_phrasings=2", "corpus.background_phrasings=2", "model.hidden_size=32",
                "model.layers=1", "model.heads=2", "model.intermediate_size=64", "model.vocab_size=400",
                "train.epochs=2", "train.batch_size=16", "train.threads=1"),
    matmul_size=256,
)
LORA = ("lora.enabled=true", "lora.rank=32", "lora.alpha=64",
        "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]", "model.dtype=bfloat16")


class Check:
    """The JSON being written: sections are added as they finish, and the file is rewritten each time."""

    def __init__(self, out: Path, dry_run: bool, budget_s: float) -> None:
        self.out, self.budget_s, self.start = out, budget_s, time.perf_counter()
        self.data: dict = {"schema": SCHEMA, "dry_run": dry_run, "budget_s": budget_s,
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": 0.0, "errors": [],
                           "skipped": []}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def step(self, section: str, name: str, needs_s: float, work: Callable[[], object]) -> None:
        """Run one measurement into ``section`` unless the budget is spent; an error is recorded, not raised."""
        if self.left() < needs_s:
            self.data["skipped"].append(f"{section}/{name}: {self.left():.0f} s of the budget left, "
                                        f"needs ~{needs_s:.0f}")
        else:
            print(f"[{time.perf_counter() - self.start:6.1f} s] {section}: {name}", flush=True)
            try:
                result = work()
                if isinstance(self.data.get(section), list):
                    self.data[section].append(result)
                else:
                    self.data[section] = result
            except Exception as error:  # one failed measurement must not lose the others
                self.data["errors"].append({"step": f"{section}/{name}", "error": f"{type(error).__name__}: {error}",
                                            "traceback": traceback.format_exc(limit=8)})
                print(f"  failed: {type(error).__name__}: {error}", flush=True)
        self.write()

    def write(self) -> None:
        self.data["seconds"] = round(time.perf_counter() - self.start, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        temporary = self.out / "gpu_check.json.tmp"
        temporary.write_text(json.dumps(self.data, indent=1, allow_nan=False, default=str), encoding="utf-8")
        temporary.replace(self.out / "gpu_check.json")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def environment(device: torch.device, plan: Plan) -> dict:
    """The device, its datasheet peak, and a measured bf16 (CPU: fp32) matrix-product rate."""
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine())
    peak = next((flops for key, flops in PEAK_BF16.items() if key in name), None) if cuda else None
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(plan.matmul_size, plan.matmul_size, device=device, dtype=dtype)
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    synchronize(device)
    start, repeats = time.perf_counter(), 10
    for _ in range(repeats):
        a @ b
    synchronize(device)
    measured = 2 * plan.matmul_size**3 * repeats / (time.perf_counter() - start)
    return {"device": name, "cuda": torch.version.cuda if cuda else None,
            "capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None,
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
            "peak_bf16_flops": peak, "peak_source": "vendor datasheet, dense bf16" if peak else None,
            "measured_matmul_flops": measured, "matmul_dtype": str(dtype).removeprefix("torch."),
            "matmul_size": plan.matmul_size, "versions": library_versions()}


def word_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """One token per word ``w<i>``: a document of n words is exactly n + 2 tokens (BOS, EOS)."""
    specials = ["<s>", "</s>", "<pad>", "<unk>"]
    words = {word: index for index, word in enumerate(specials + [f"w{i}" for i in range(vocab - len(specials))])}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def random_documents(lengths: list[int], vocab: int, seed: int) -> list[Document]:
    """Documents of random words, ``lengths`` tokens each (BOS and EOS included)."""
    generator = torch.Generator().manual_seed(seed)
    texts = [" ".join(f"w{i}" for i in torch.randint(0, vocab - 4, (n - 2,), generator=generator).tolist())
             for n in lengths]
    return [Document(text, Subset.BACKGROUND) for text in texts]


def build_llama(shape: Shape, attention: str, positions: int, device: torch.device):
    config = LlamaConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.heads, intermediate_size=shape.intermediate,
                         vocab_size=shape.vocab, max_position_embeddings=positions, tie_word_embeddings=False,
                         bos_token_id=0, eos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it trains: seconds instead of minutes for the largest
        return AutoModelForCausalLM.from_config(config, attn_implementation=attention)


def flops_per_token(model, shape: Shape, seq: float) -> float:
    """6*N + 12*L*d*seq: N without the input embedding (a lookup), seq the attended context."""
    n = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    return 6 * n + 12 * shape.layers * shape.hidden * seq


def speed(tokens_per_second: float, flops: float, environment_: dict) -> dict:
    peak = environment_["peak_bf16_flops"]
    return {"tokens_per_second": tokens_per_second,
            "mfu": tokens_per_second * flops / peak if peak else None,
            "fraction_of_measured_matmul": tokens_per_second * flops / environment_["measured_matmul_flops"]}


def memory_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def loop_row(variant: str, shape: Shape, documents: list[Document], batch: int, tokenizer, device: torch.device,
             environment_: dict, attention: str = "sdpa", compile_: bool = False, packing: int = 0) -> dict:
    """revcurse's one training loop over ``documents`` (one epoch), timed after the warm-up steps."""
    reset_memory(device)
    lengths = [len(d.text.split()) + 2 for d in documents]
    model = build_llama(shape, attention, max(lengths), device)
    config = TrainConfig(epochs=1, batch_size=batch, learning_rate=3e-4, warmup_fraction=0, threads=2,
                         checkpoint_minutes=0, compile=compile_, packing=packing)
    graphs = counters["stats"]["unique_graphs"]
    result = train_model(model, tokenizer, documents, config, seed=0, show_progress=False)
    seq = sum(lengths) / len(lengths)
    row = {"variant": variant, "attention": attention, "compile": compile_, "packing": packing, "batch": batch,
           "mean_document_tokens": seq, "parameters": sum(p.numel() for p in model.parameters()),
           "steps": result.steps, "warmup_steps": WARMUP_STEPS, "seconds": result.seconds,
           "first_loss": result.log[0]["loss"], "last_loss": result.log[-1]["loss"],
           "peak_memory_gib": memory_gib(device),
           **speed(result.tokens_per_second_after(WARMUP_STEPS), flops_per_token(model, shape, seq), environment_),
           "compiled_graphs": counters["stats"]["unique_graphs"] - graphs}  # > 0: torch.compile really ran
    del model
    return row


def bare_row(variant: str, shape: Shape, documents: list[Document], batch: int, tokenizer, device: torch.device,
             environment_: dict, profile: bool = False) -> dict:
    """The baseline: the plainest fast PyTorch loop on the same model and the same batches as revcurse's loop draws
    (``epoch_batches`` from seed 0), padded by ``collate``; fused AdamW, bf16 autocast, no per-step sync.
    ``profile``: the top operators of two steps after the warm-up, by self device and by self CPU time."""
    reset_memory(device)
    encoded = encode_documents(documents, tokenizer)
    lengths = [len(ids) for ids, _ in encoded]
    model = build_llama(shape, "sdpa", max(lengths), device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda")
    batches = epoch_batches(lengths, batch, torch.Generator().manual_seed(0))

    def train_step(indices: list[int]) -> torch.Tensor:
        tensors = {k: v.to(device, non_blocking=True) for k, v in collate([encoded[i] for i in indices],
                                                                          tokenizer.pad_token_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(**tensors, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    losses, start = [], time.perf_counter()
    for index, indices in enumerate(batches):
        if index == WARMUP_STEPS:
            synchronize(device)
            start = time.perf_counter()
        losses.append(train_step(indices))
    synchronize(device)
    seconds = time.perf_counter() - start
    table = None
    if profile:  # two more steps, after the timed ones: the profiler's own cost stays out of the rate
        activities = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.profiler.profile(activities=activities) as profiler:
            for indices in batches[:2]:
                train_step(indices)
            synchronize(device)
        averages = profiler.key_averages()
        table = {key: averages.table(sort_by=key, row_limit=12, max_name_column_width=50)
                 for key in (["self_cuda_time_total"] if device.type == "cuda" else []) + ["self_cpu_time_total"]}
    rate = sum(lengths[i] for indices in batches[WARMUP_STEPS:] for i in indices) / seconds
    seq = sum(lengths) / len(lengths)
    row = {"variant": variant, "attention": "sdpa", "compile": False, "packing": 0, "batch": batch,
           "mean_document_tokens": seq, "parameters": sum(p.numel() for p in model.parameters()),
           "steps": len(batches), "warmup_steps": WARMUP_STEPS, "seconds": seconds, "first_loss": losses[0].item(),
           "last_loss": losses[-1].item(), "peak_memory_gib": memory_gib(device),
           **speed(rate, flops_per_token(model, shape, seq), environment_)}
    if table:
        row["profile"] = table
    return row


def throughput(check: Check, plan: Plan, device: torch.device) -> None:
    environment_ = check.data["environment"]
    shape, steps = plan.model, WARMUP_STEPS + plan.steps
    tokenizer = word_tokenizer(shape.vocab)
    long = random_documents([plan.long_tokens] * plan.long_batch * steps, shape.vocab, seed=0)
    generator = torch.Generator().manual_seed(1)
    short = random_documents(torch.randint(12, 41, (plan.short_batch * steps,), generator=generator).tolist(),
                             shape.vocab, seed=2)
    check.data["throughput"] = []
    run = check.step
    run("throughput", "bare-pytorch", 20, lambda: bare_row("bare-pytorch", shape, long, plan.long_batch, tokenizer,
                                                             device, environment_))
    for attention in ("eager", "sdpa"):
        run("throughput", f"revcurse-{attention}", 20, lambda a=attention: loop_row(
            f"revcurse-{a}", shape, long, plan.long_batch, tokenizer, device, environment_, attention=a))
    run("throughput", "revcurse-sdpa-compile", 120, lambda: loop_row(
        "revcurse-sdpa-compile", shape, long, plan.long_batch, tokenizer, device, environment_, compile_=True))
    run("throughput", "bare-pytorch-short", 20, lambda: bare_row(
        "bare-pytorch-short", shape, short, plan.short_batch, tokenizer, device, environment_, profile=True))
    run("throughput", "revcurse-short-padded", 20, lambda: loop_row(
        "revcurse-short-padded", shape, short, plan.short_batch, tokenizer, device, environment_))
    run("throughput", "revcurse-short-packed", 20, lambda: loop_row(
        "revcurse-short-packed", shape, short, plan.short_batch, tokenizer, device, environment_,
        packing=plan.pack_tokens))
    rows = check.data["throughput"]
    # each row against the bare loop on the same documents: long ones, or fact-length ones
    bare = {kind: next((r for r in rows if r["variant"] == name), None)
            for kind, name in (("long", "bare-pytorch"), ("short", "bare-pytorch-short"))}
    for row in rows:
        baseline = bare["short" if "short" in row["variant"] else "long"]
        row["ratio_to_bare"] = row["tokens_per_second"] / baseline["tokens_per_second"] if baseline else None
    check.write()


def experiment_row(mode: str, overrides: list[str], folder: Path, seed: int) -> dict:
    """Train and probe one seed of Experiment 1; accuracy pooled over the one-way facts' probes."""
    config = load_config(None, [*overrides, f"seed={seed}"])
    start = time.perf_counter()
    world_seed, results, stats = run_seed(config, seed, folder, show_progress=False)
    one_way = [r for r in results if r.subset in ONE_WAY]
    trained = [r.correct for r in one_way if r.trained]
    reverse = [r.correct for r in one_way if not r.trained]
    return {"mode": mode, "seed": seed, "world_seed": world_seed, "overrides": overrides,
            "parameters": stats["parameters"], "trained_parameters": stats["trained_parameters"],
            "documents": stats["documents"], "train_steps": stats["train_steps"],
            "train_seconds": stats["train_seconds"], "tokens_per_second": stats["tokens_per_second"],
            "final_loss": stats["final_loss"], "probe_seconds": stats["probe_seconds"],
            "seconds": time.perf_counter() - start,
            "trained_accuracy": sum(trained) / len(trained), "reverse_accuracy": sum(reverse) / len(reverse),
            "probes": len(one_way)}


def experiment1(check: Check, plan: Plan) -> None:
    check.data["experiment1"] = []
    full = check.out / "experiment1-full"
    check.step("experiment1", "full", 60, lambda: experiment_row("full", list(plan.experiment), full, 0))
    if (full / "model").is_dir():
        overrides = [*plan.experiment, *LORA, f"model.checkpoint={full / 'model'}"]
        check.step("experiment1", "lora", 60, lambda: experiment_row(
            "lora-bf16-base", overrides, check.out / "experiment1-lora", 1))


def size_sweep(check: Check, plan: Plan, device: torch.device) -> None:
    check.data["size_sweep"] = []
    environment_ = check.data["environment"]
    steps = WARMUP_STEPS + plan.sweep_steps
    for shape in plan.sweep:
        tokenizer = word_tokenizer(shape.vocab)
        documents = random_documents([plan.long_tokens] * plan.long_batch * steps, shape.vocab, seed=3)
        check.step("size_sweep", f"d{shape.hidden}-l{shape.layers}", 15, lambda s=shape, t=tokenizer, d=documents: {
            **asdict(s), **loop_row(f"d{s.hidden}-l{s.layers}", s, d, plan.long_batch, t, device, environment_)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"), help="folder for gpu_check.json and runs")
    parser.add_argument("--dry-run", action="store_true", help="every step on CPU at tiny sizes (seconds)")
    parser.add_argument("--budget-s", type=float, default=450, help="skip the steps that would end past this")
    parser.add_argument("--sections", default="throughput,experiment1,size_sweep",
                        help="comma-separated: throughput, experiment1, size_sweep")
    args = parser.parse_args()
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU one, also on a GPU machine
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --dry-run for the CPU version")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    check = Check(args.out, args.dry_run, args.budget_s)
    check.step("environment", "matmul", 0, lambda: environment(device, plan))
    sections = set(args.sections.split(","))
    if "throughput" in sections:
        throughput(check, plan, device)
    if "experiment1" in sections:
        experiment1(check, plan)
    if "size_sweep" in sections:
        size_sweep(check, plan, device)
    check.write()
    print(f"wrote {args.out / 'gpu_check.json'} in {check.data['seconds']:.0f} s; "
          f"{len(check.data['errors'])} error(s), {len(check.data['skipped'])} skipped")


if __name__ == "__main__":
    main()
