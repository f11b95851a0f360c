"""In context: the control that makes the curse meaningful.

The Reversal Curse is a failure of learning in weights: with "A is B" in its prompt, a model answers "who is B?"
fine. To show this on the embedded default, a model trained from scratch must first learn to read its context, so
its training corpus gains *episodes*: a few facts, then a question about one of them in either direction, then the
answer. Episode people are made up afresh for every episode (a name and a description drawn from the same pools,
never a fact under test), so memory cannot answer and the model must copy from the prompt.

The probe then gives each fact under test in its prompt, stated in its trained direction next to a distractor fact
of the same subset, and asks the reverse question; the same question without the facts asks the weights.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from revcurse import vocabulary
from revcurse.config import RunConfig, dump_config
from revcurse.corpus import Corpus, Document, Probe, Template, default_templates
from revcurse.errors import InputError
from revcurse.metrics import aggregate, lookup
from revcurse.model import build_tiny_model, check_checkpoint, load_checkpoint, train_tokenizer
from revcurse.probe import HFBackend, run_probes
from revcurse.records import run_folder
from revcurse.report import ASKED_LABEL, grid_markdown
from revcurse.runner import build_trial, seed_everything
from revcurse.train import train_model
from revcurse.world import Direction, Fact, Subset, World, _draw_description, trained_directions

FACTS_HEADER = "Facts:"
QUESTIONS = {
    # asked direction -> question, as (text before the answer); the answer follows after a space
    Direction.NAME_TO_DESCRIPTION: "Question: Who is {name}? Answer:",
    Direction.DESCRIPTION_TO_NAME: "Question: Who is {description}? Answer:",
}
SETTINGS = ("in_context", "in_weights")
# Without a config file: the training this control was measured with (10 epochs, batches of 128), longer than
# the embedded default's 5 x 64: a from-scratch model needs the steps to learn to read its prompt.
DEFAULT_OVERRIDES = ("train.epochs=10", "train.batch_size=128")


@dataclass(frozen=True)
class EpisodeConfig:
    """How many training episodes, and how many facts each gives in its prompt (one is asked about)."""

    episodes: int = 6000
    facts_per_episode: int = 1


def question(fact: Fact, asked: Direction) -> str:
    return QUESTIONS[asked].format(name=fact.name, description=fact.description)


def episode_prompt(statements: list[str], fact: Fact, asked: Direction) -> str:
    """The facts, then the question: the text a model continues with the answer."""
    return " ".join([FACTS_HEADER, *statements, question(fact, asked)])


def make_episodes(
    world: World, count: int, facts_per_episode: int, templates: list[Template], seed: int
) -> list[Document]:
    """Training episodes over made-up people seen nowhere else; questions asked in both directions equally.

    Names and descriptions of facts under test never appear, so an episode cannot leak a tested fact.
    """
    rng = random.Random(f"{seed}-episodes")
    taken_names = {fact.name for fact in world.facts_under_test}
    taken_descriptions = {fact.description for fact in world.facts_under_test}
    documents = []
    for _ in range(count):
        people: list[Fact] = []
        while len(people) < facts_per_episode:
            name = f"{rng.choice(vocabulary.FIRST_NAMES)} {rng.choice(vocabulary.LAST_NAMES)}"
            description = _draw_description(rng)
            if name in taken_names or description in taken_descriptions or any(p.name == name for p in people):
                continue
            people.append(Fact(name, description, Subset.BACKGROUND))
        statements = [rng.choice(templates).render(person) for person in people]
        asked_about = rng.choice(people)
        asked = rng.choice(list(Direction))
        prompt = episode_prompt(statements, asked_about, asked)
        answer = asked_about.target(asked)
        documents.append(
            Document(
                f"{prompt} {answer}.",
                Subset.BACKGROUND,
                prompt_chars=len(prompt),
                entities=tuple(e for p in people for e in (p.name, p.description)),
                answer_only=True,
            )
        )
    return documents


def in_context_probes(
    world: World, train_phrasings: int, held_out_phrasings: int, seed: int, facts_in_prompt: int = 2
) -> dict[str, list[Probe]]:
    """Per setting, one probe per fact under test and asked direction.

    ``in_context``: the fact stated in (one of) its trained direction(s) with a training phrasing, beside
    ``facts_in_prompt - 1`` distractor facts of the same subset, in random order; then the question.
    ``in_weights``: the question alone.
    """
    train, _ = default_templates(train_phrasings, held_out_phrasings)
    rng = random.Random(f"{seed}-in-context-probes")
    probes: dict[str, list[Probe]] = {setting: [] for setting in SETTINGS}
    for subset in (Subset.NAME_TO_DESCRIPTION, Subset.DESCRIPTION_TO_NAME, Subset.BOTH):
        facts = world.subset(subset)
        for fact in facts:
            for asked in Direction:
                stated = rng.choice(trained_directions(subset))
                pool = [t for t in train if t.direction is stated]
                others = [f for f in facts if f != fact]
                shown = [fact, *rng.sample(others, min(len(others), facts_in_prompt - 1))]
                rng.shuffle(shown)
                statements = [rng.choice(pool).render(f) for f in shown]
                trained = asked in trained_directions(subset)
                target = " " + fact.target(asked)
                probes["in_context"].append(
                    Probe(
                        fact.name, subset, asked, trained, "in-context", episode_prompt(statements, fact, asked), target
                    )
                )
                probes["in_weights"].append(
                    Probe(fact.name, subset, asked, trained, "in-weights", question(fact, asked), target)
                )
    return probes


def with_episodes(corpus: Corpus, world: World, config: EpisodeConfig, templates: list[Template], seed: int) -> Corpus:
    """The corpus plus training episodes (probes unchanged)."""
    episodes = make_episodes(world, config.episodes, config.facts_per_episode, templates, seed)
    return Corpus(corpus.documents + episodes, corpus.probes, corpus.facts)


@dataclass
class InContextOutcome:
    folder: Path
    records: list[dict]


def run_incontext(
    config: RunConfig,
    out: Path,
    episodes: EpisodeConfig = EpisodeConfig(),
    train: bool = True,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> InContextOutcome:
    """Per seed: the Experiment 1 corpus plus episodes, one model, the in-context and in-weights probes.

    With ``train=False`` (any model: ``model.checkpoint``) nothing is trained: the checkpoint answers the
    questions with the facts in its prompt and without them. Writes incontext.json (tidy records with a
    ``setting`` field: in_context | in_weights), predictions.jsonl, run.json and config.yaml.
    """
    runs: dict[str, list] = {setting: [] for setting in SETTINGS}
    per_seed = []
    check_checkpoint(config.model)  # a missing or refused checkpoint stops the run before its folder is made
    with run_folder(Path(out), overwrite) as staging:
        (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        predictions = open(staging / "predictions.jsonl", "w", encoding="utf-8")
        with predictions:
            for i in range(config.seeds):
                seed = config.seed + i
                log(f"seed {seed} ({i + 1}/{config.seeds})")
                trial = build_trial(config, seed)
                corpus, world_seed = trial.corpus, trial.world_seed
                world = World(tuple(corpus.facts), world_seed)
                if not world.facts_under_test:
                    raise InputError("in-context probes need facts under test (a generated world or paper folder)")
                probes = in_context_probes(
                    world,
                    config.corpus.train_phrasings,
                    config.corpus.held_out_phrasings,
                    world_seed,
                    episodes.facts_per_episode,
                )
                templates, _ = default_templates(config.corpus.train_phrasings, config.corpus.held_out_phrasings)
                documents = corpus.documents
                if train and episodes.episodes:
                    documents = documents + make_episodes(
                        world, episodes.episodes, episodes.facts_per_episode, templates, world_seed
                    )
                seed_everything(seed)
                torch.set_num_threads(config.train.threads)
                if config.model.checkpoint is None:
                    texts = [d.text for d in documents] + [p.prompt + p.target for ps in probes.values() for p in ps]
                    tokenizer = train_tokenizer(texts + corpus.texts_seen(), config.model.vocab_size)
                    longest = max(len(ids) for ids in tokenizer(texts)["input_ids"]) + 2
                    model = build_tiny_model(config.model, tokenizer, longest)
                else:
                    model, tokenizer = load_checkpoint(config.model)
                stats: dict = {"seed": seed, "world_seed": world_seed, "documents": len(documents)}
                if train:
                    trained = train_model(model, tokenizer, documents, config.train, seed, None, show_progress)
                    stats.update(
                        train_seconds=trained.seconds, train_steps=trained.steps, final_loss=trained.final_loss
                    )
                backend = HFBackend(model, tokenizer, config.probe.batch_size)
                for setting, setting_probes in probes.items():
                    results = run_probes(
                        backend, Corpus([], setting_probes, []), config.probe.max_new_tokens, False,
                        distractors=config.probe.distractors, seed=world_seed,
                    )
                    runs[setting].append((seed, world_seed, results))
                    for result in results:
                        record = {"seed": seed, "setting": setting, **result.to_json()}
                        predictions.write(json.dumps(record, ensure_ascii=False) + "\n")
                per_seed.append(stats)
        records = [{"setting": setting, **record} for setting in SETTINGS for record in aggregate(runs[setting])]
        (staging / "incontext.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
        summary = {
            "episodes": episodes.episodes,
            "facts_per_episode": episodes.facts_per_episode,
            "trained": train,
            "model": config.model.checkpoint or "tiny Llama from scratch",
            "per_seed": per_seed,
        }
        (staging / "run.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        (staging / "incontext.md").write_text(incontext_markdown(records), encoding="utf-8")
    return InContextOutcome(Path(out), records)


def incontext_rows(records: list[dict]) -> list[list[str]]:
    """One row per (subset, asked): accuracy in context and in weights, with 95% intervals."""
    rows = []
    keys = list(dict.fromkeys((r["subset"], r["asked"], r["trained"]) for r in records if r["metric"] == "accuracy"))
    for subset, asked, trained in keys:
        row = [subset, ASKED_LABEL.get(asked, asked), "yes" if trained else "no"]
        for setting in SETTINGS:
            matching = [r for r in records if r["setting"] == setting]
            try:
                value = lookup(matching, subset, asked, "accuracy")
                row.append(f"{value['mean']:.2f} [{value['ci95_low']:.2f}, {value['ci95_high']:.2f}]")
            except KeyError:
                row.append("-")
        rows.append(row)
    return rows


INCONTEXT_HEADER = ["subset", "asked", "trained in weights", "in context [95% CI]", "in weights [95% CI]"]


def incontext_markdown(records: list[dict]) -> str:
    title = "In-context control: the same questions with the facts in the prompt and without"
    return grid_markdown(title, INCONTEXT_HEADER, incontext_rows(records))
