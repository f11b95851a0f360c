"""revcurse probes as an inspect_ai task: the accuracy of Berglund et al. (2023) on phrasings held out from training.

Written by `revcurse export --format inspect` next to ``probes.jsonl``; it imports only inspect_ai, so it runs where
revcurse is not installed. One sample per probe: its raw prompt (no system prompt) is completed greedily with at
most the tokens revcurse's probing generates (``max_new_tokens`` in the sample's metadata), and the completion is
correct when it starts with the target, ignoring case and leading whitespace: what the model says after the target
does not matter. Metrics: accuracy over all probes, per ``direction`` (forward: asked the way the fact was trained;
reverse: the other way), and per ``cell`` (subset and asked direction, the rows of revcurse's table).

The models are base models: the prompt must reach them as plain text. inspect's ``hf`` provider renders messages
with a chat template, so ``hf_model_args.yaml`` (beside this file) gives it one that writes the prompt alone, after
the tokenizer's BOS token as revcurse does, and turns sampling off:

    inspect eval task.py --model hf/local --model-config hf_model_args.yaml -M model_path=RUN/seed-0/model

From another folder name the task, ``DIR/task.py@revcurse_probes`` (inspect globs a bare path, and Python 3.11's
glob refuses an absolute one). Other providers (vLLM, an OpenAI-compatible server) are greedy at temperature 0.
"""

from __future__ import annotations

import json
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, grouped, scorer, stderr
from inspect_ai.solver import Generate, TaskState, solver

PROBES = Path(__file__).with_name("probes.jsonl")


def is_correct(completion: str, target: str) -> bool:
    """The completion starts with the target (case-insensitive, leading whitespace ignored)."""
    return completion.lstrip().lower().startswith(target.strip().lower())


def read_probes(path: Path = PROBES) -> MemoryDataset:
    """One sample per line of ``probes.jsonl``; every field but prompt and target goes to the metadata."""
    samples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                row = json.loads(line)
                metadata = {k: v for k, v in row.items() if k not in ("prompt", "target")}
                samples.append(Sample(input=row["prompt"], target=row["target"], id=number, metadata=metadata))
    return MemoryDataset(samples, name="revcurse", location=str(path))


@solver
def greedy_completion():
    """Generate once, up to the sample's ``max_new_tokens``: the greedy completion revcurse scores."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        return await generate(state, max_tokens=state.metadata["max_new_tokens"])

    return solve


@scorer(
    metrics=[accuracy(), stderr(), grouped(accuracy(), "direction", all=False), grouped(accuracy(), "cell", all=False)]
)
def starts_with_target():
    """Correct when the completion starts with the target: revcurse's (and the paper's) accuracy."""

    async def score(state: TaskState, target: Target) -> Score:
        completion = state.output.completion
        correct = is_correct(completion, target.text)
        return Score(value=CORRECT if correct else INCORRECT, answer=completion)

    return score


@task
def revcurse_probes() -> Task:
    """Every probe of the exported world, forward and reverse, scored as revcurse scores them.

    Temperature 0: greedy for API providers; inspect's ``hf`` provider also needs ``do_sample: false`` (it samples
    by default, and refuses temperature 0 when sampling rather than sample silently)."""
    return Task(
        dataset=read_probes(),
        solver=greedy_completion(),
        scorer=starts_with_target(),
        config=GenerateConfig(temperature=0.0),
    )
