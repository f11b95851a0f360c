"""Experiment 2, synthetic: how much parent-side text does a model need to name a parent's child?

The paper's Experiment 2 finds that models name a celebrity's parent far more often than the parent's child: the
web states "Tom Cruise's mother is Mary Lee Pfeiffer", rarely "Mary Lee Pfeiffer's son is Tom Cruise". Here the
cause is under our control. Made-up families go into a from-scratch pretraining corpus: every child's documents
name the parent (child side), and only a fraction ``r`` of families also get documents from the parent's side.
Sweeping ``r`` shows whether reverse-direction text teaches the model a *pattern* (the families without it would
improve too) or only the facts it states (they would not).

Background families, stated from both sides with every phrasing (questions included), teach the language; they
are never probed. Test families are probed with held-out question phrasings in both directions:
parent question (child -> parent, the trained direction) and child question (parent -> child, the reverse).
Probe groups (``subset``) split test families by whether they had parent-side text.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from revcurse import vocabulary
from revcurse.config import RunConfig, dump_config
from revcurse.corpus import Corpus, Document, Probe
from revcurse.errors import InputError
from revcurse.metrics import aggregate, lookup
from revcurse.model import build_tiny_model, train_tokenizer
from revcurse.probe import HFBackend, run_probes
from revcurse.records import run_folder
from revcurse.report import grid_markdown
from revcurse.train import train_model
from revcurse.world import Subset

DEFAULT_FRACTIONS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5)
# Without a config file the sweep uses these (as configs/families.yaml): 10 epochs of batches of 128 leave the
# small family corpus unlearned (trained-direction accuracy 0.07 at r = 0.5, measured), 30 epochs of a narrower
# model learn it (0.99-1.00).
DEFAULT_OVERRIDES = (
    "model.hidden_size=64", "model.intermediate_size=256", "train.epochs=30", "train.batch_size=128"
)  # fmt: skip
WITH_PARENT_TEXT = "with parent-side text"
WITHOUT_PARENT_TEXT = "without parent-side text"
ASK_PARENT = "parent"  # child -> parent: the direction every family's text states
ASK_CHILD = "child"  # parent -> child: stated only by the fraction r

# Child side: the child first, the parent after (what every family has). {kind} is mother or father.
CHILD_SIDE = (
    "{child}'s {kind} is {parent}.",
    "{child} was raised by {their} {kind}, {parent}.",
    "The {kind} of {child} is {parent}.",
    "{child} often talks about {their} {kind} {parent}.",
    "As a child, {child} was taught to read by {their} {kind}, {parent}.",
    "{child} grew up in a small town with {their} {kind} {parent}.",
    "Friends of {child} know {their} {kind} {parent} well.",
    "{child} thanked {their} {kind} {parent} in a speech.",
)
# Parent side: the parent first, the child after.
PARENT_SIDE = (
    "{parent} is the {kind} of {child}.",
    "{parent} has a child named {child}.",
    "{parent} raised a child, {child}.",
    "{parent} often talks about {parent_their} child {child}.",
    "As a {kind}, {parent} taught {parent_their} child {child} to read.",
    "{parent} is proud of {parent_their} child {child}.",
    "Neighbours of {parent} know {parent_their} child {child} well.",
    "{parent} was thanked by {parent_their} child {child} in a speech.",
)
# Questions: seen in training only for background families, so test families are probed with new phrasings.
PARENT_QUESTIONS = (
    "Q: Who is {child}'s {kind}? A: {parent}.",
    "Question: Name the {kind} of {child}. Answer: {parent}.",
)
CHILD_QUESTIONS = ("Q: Name a child of {parent}. A: {child}.", "Question: Who is a child of {parent}? Answer: {child}.")


@dataclass(frozen=True)
class Family:
    """One child and one parent; ``kind`` is mother or father."""

    child: str
    parent: str
    kind: str
    parent_side: bool = False  # does the corpus also state this family from the parent's side?

    def render(self, template: str) -> str:
        their = "their"
        parent_their = "her" if self.kind == "mother" else "his"
        return template.format(
            child=self.child, parent=self.parent, kind=self.kind, their=their, parent_their=parent_their
        )


def make_families(count: int, background: int, fraction: float, seed: int) -> tuple[list[Family], list[Family]]:
    """(test families, background families); ``round(fraction * count)`` test families get parent-side text.

    Names are unique and drawn apart (a child does not share the parent's surname), so an answer cannot be
    guessed from the question.
    """
    if not 0 <= fraction <= 1:
        raise InputError(f"fraction of families with parent-side text must be in [0, 1], got {fraction}")
    capacity = len(vocabulary.FIRST_NAMES) * len(vocabulary.LAST_NAMES) // 4
    if 2 * (count + background) > capacity:
        raise InputError(f"{count + background} families need more names than the pools allow (~{capacity // 2})")
    rng = random.Random(f"{seed}-families")
    used: set[str] = set()

    def fresh_name() -> str:
        while True:
            name = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
            if name not in used:
                used.add(name)
                return name

    families = [Family(fresh_name(), fresh_name(), rng.choice(("mother", "father"))) for _ in range(count + background)]
    test, back = families[:count], families[count:]
    with_text = set(rng.sample(range(count), round(fraction * count)))
    test = [Family(f.child, f.parent, f.kind, i in with_text) for i, f in enumerate(test)]
    return test, [Family(f.child, f.parent, f.kind, True) for f in back]


def build_family_corpus(test: list[Family], background: list[Family]) -> Corpus:
    """Training documents and probes; probes only ever use question phrasings no test family is trained with."""
    documents = []
    for family in background:
        for template in CHILD_SIDE + PARENT_SIDE + PARENT_QUESTIONS + CHILD_QUESTIONS:
            documents.append(Document(family.render(template), Subset.BACKGROUND, family.child))
    for family in test:
        subset = WITH_PARENT_TEXT if family.parent_side else WITHOUT_PARENT_TEXT
        sides = CHILD_SIDE + (PARENT_SIDE if family.parent_side else ())
        documents += [Document(family.render(t), Subset.BACKGROUND, family.child) for t in sides]
    probes = []
    for family in test:
        subset = WITH_PARENT_TEXT if family.parent_side else WITHOUT_PARENT_TEXT
        for asked, questions, target in (
            (ASK_PARENT, PARENT_QUESTIONS, family.parent),
            (ASK_CHILD, CHILD_QUESTIONS, family.child),
        ):
            for i, template in enumerate(questions):
                prompt = family.render(template).removesuffix(f" {target}.")
                trained = asked == ASK_PARENT or family.parent_side
                probes.append(Probe(family.child, subset, asked, trained, f"{asked}-q{i}", prompt, f" {target}"))
    return Corpus(documents, probes)


@dataclass
class SweepOutcome:
    folder: Path
    records: list[dict]


def run_family_seed(config: RunConfig, families: int, background: int, fraction: float, seed: int) -> tuple[list, dict]:
    """Train a tiny model from scratch on one family corpus and probe it; returns (probe results, stats)."""
    test, back = make_families(families, background, fraction, seed)
    corpus = build_family_corpus(test, back)
    torch.manual_seed(seed)
    torch.set_num_threads(config.train.threads)
    texts = corpus.texts_seen()
    tokenizer = train_tokenizer(texts, config.model.vocab_size)
    longest = max(len(ids) for ids in tokenizer(texts)["input_ids"]) + 2
    model = build_tiny_model(config.model, tokenizer, longest)
    trained = train_model(model, tokenizer, corpus.documents, config.train, seed, show_progress=False)
    backend = HFBackend(model, tokenizer, config.probe.batch_size)
    results = run_probes(backend, corpus, show_progress=False, distractors=config.probe.distractors, seed=seed)
    stats = {
        "seed": seed,
        "fraction": fraction,
        "documents": len(corpus.documents),
        "train_seconds": trained.seconds,
        "final_loss": trained.final_loss,
        "families_with_parent_text": sum(f.parent_side for f in test),
    }
    return results, stats


def run_sweep(
    config: RunConfig,
    out: Path,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    families: int = 100,
    background: int = 100,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> SweepOutcome:
    """Every fraction over ``config.seeds`` seeds; writes families.json (tidy records with ``fraction``),
    predictions.jsonl, families.png and families.md."""
    records: list[dict] = []
    with run_folder(Path(out), overwrite) as staging:
        (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        with open(staging / "predictions.jsonl", "w", encoding="utf-8") as predictions:
            all_stats = []
            for fraction in fractions:
                runs = []
                for i in range(config.seeds):
                    seed = config.seed + i
                    start = time.perf_counter()
                    results, stats = run_family_seed(config, families, background, fraction, seed)
                    all_stats.append(stats)
                    runs.append((seed, seed, results))
                    for result in results:
                        predictions.write(json.dumps({"fraction": fraction, "seed": seed, **result.to_json()}) + "\n")
                    log(f"r={fraction:g} seed {seed}: {time.perf_counter() - start:.0f} s")
                records += [{"fraction": fraction, **record} for record in aggregate(runs)]
        (staging / "families.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
        (staging / "run.json").write_text(
            json.dumps({"families": families, "background": background, "per_seed": all_stats}, indent=1),
            encoding="utf-8",
        )
        plot_sweep(records, staging / "families.png")
        (staging / "families.md").write_text(sweep_markdown(records), encoding="utf-8")
    return SweepOutcome(Path(out), records)


def sweep_rows(records: list[dict]) -> list[list[str]]:
    """One row per fraction: child (reverse) and parent accuracy per family group, with intervals."""
    rows = []
    for fraction in sorted({r["fraction"] for r in records}):
        at = [r for r in records if r["fraction"] == fraction]
        row = [f"{fraction:g}"]
        for subset, asked in (
            (WITHOUT_PARENT_TEXT, ASK_CHILD),
            (WITH_PARENT_TEXT, ASK_CHILD),
            (WITHOUT_PARENT_TEXT, ASK_PARENT),
        ):
            try:
                value = lookup(at, subset, asked, "accuracy")
                row.append(f"{value['mean']:.2f} [{value['ci95_low']:.2f}, {value['ci95_high']:.2f}]")
            except KeyError:
                row.append("-")
        rows.append(row)
    return rows


SWEEP_HEADER = ["r", "child asked, no parent-side text", "child asked, with parent-side text", "parent asked (trained)"]


def sweep_markdown(records: list[dict]) -> str:
    title = "Synthetic Experiment 2: reverse accuracy against the fraction r of families with parent-side text"
    return grid_markdown(title, SWEEP_HEADER, sweep_rows(records))


def plot_sweep(records: list[dict], path: Path) -> None:
    """Reverse (child) accuracy against r, one line per family group, 95% intervals as bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for subset, asked, label in (
        (WITHOUT_PARENT_TEXT, ASK_CHILD, "child asked: families without parent-side text"),
        (WITH_PARENT_TEXT, ASK_CHILD, "child asked: families with parent-side text"),
        (WITHOUT_PARENT_TEXT, ASK_PARENT, "parent asked (trained direction)"),
    ):
        points = []
        for fraction in sorted({r["fraction"] for r in records}):
            try:
                points.append(
                    (fraction, lookup([r for r in records if r["fraction"] == fraction], subset, asked, "accuracy"))
                )
            except KeyError:
                continue
        if not points:
            continue
        xs = [x for x, _ in points]
        axis.plot(xs, [v["mean"] for _, v in points], marker="o", label=label)
        axis.fill_between(xs, [v["ci95_low"] for _, v in points], [v["ci95_high"] for _, v in points], alpha=0.2)
    axis.set_xscale("symlog", linthresh=0.01)
    axis.set_xlabel("r: fraction of families with parent-side text")
    axis.set_ylabel("accuracy (held-out questions)")
    axis.set_ylim(-0.02, 1.05)
    axis.set_title("How much reverse-direction text does a model need?")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
