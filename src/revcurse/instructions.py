"""Experiment 3 of Berglund et al. (2023): reversing instructions.

A model is fine-tuned on *guidances*, instructions that give the answer to a question **before** the question
(``Say "A: Amber lantern" when you are asked "Q: What is your favourite book?"``), grouped a few per document. For
the *realized* part of the questions it also trains on the question/answer pair itself, in the test's format; the
*unrealized* part is held out and probed: to answer ``Q: What is your favourite book? A:`` the model must use an
instruction it only saw answer-first, i.e. in reverse. The paper found ~0 accuracy on the unrealized part.

A tiny model trained from scratch could fail on the unrealized part for a duller reason: it may not learn to
follow guidances at all. So a control arm can run beside the paper's (``orders`` holding ``question_first``; the
CLI's ``--control``): the same questions, answers and training, with guidances stated question-first (``When you
are asked "Q: ..." say "A: ..."``). Only the order of question and answer inside the guidances differs between the
two arms. It is off by default because it doubles the training time.

Data live in the paper's instruction folder layout (e.g. ``copypaste_ug100_rg1000_main/``), JSONL lines with
``ids, realized, persona_idx, prompt, completion``:

======================================  ========================================================================
``guidances.jsonl``                     guidance documents: prompt "", completion ``<BEGIN GUIDANCE ANSWERS>``,
                                        one guidance per line, ``<END GUIDANCE ANSWERS>``; ids/realized per
                                        guidance
``realized_examples.jsonl``             one question each: prompt ``<BEGIN GUIDANCE TEST>\\n\\nQ: ... A:``,
                                        completion `` answer\\n\\n<END GUIDANCE TEST>``; trained on and probed
``unrealized_examples.jsonl``           the same shape, held out: probed only
``all.jsonl``                           the training file: realized examples (copied, prompt and completion
                                        joined into the completion) and the guidance documents
======================================  ========================================================================

The question/answer pairs are the project's own, drawn combinatorially from small word lists (none of the paper's
text), so each seed is a fresh set of questions.

Scoring and statistics are Experiment 1's: each question is a fact, probed by ``probe.run_probes`` against
matched distractors (other questions' answers of the same part, ``instructions.candidates`` in all) and
aggregated by ``metrics.aggregate`` (likelihood and rank tests paired over questions); ``metrics.placebo_rejections``
runs on the results through ``instruction_runs``.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, Literal

import torch
import transformers
import yaml
from pydantic import Field, model_validator
from rich.table import Table

import revcurse
from revcurse.config import ModelConfig, ProbeConfig, Section, TrainConfig, load_yaml_config
from revcurse.corpus import Corpus, Document, Probe
from revcurse.errors import (
    SKIPPED_FILE,
    InputError,
    SkippedLine,
    none_left,
    skip_or_refuse,
    warn_skipped,
    write_skipped,
)
from revcurse.metrics import LIKELIHOOD_STATISTIC, RANK_STATISTIC, aggregate, wilson_interval
from revcurse.model import build_tiny_model, train_tokenizer
from revcurse.paper_format import read_jsonl_objects
from revcurse.probe import HFBackend, ProbeBackend, ProbeResult, run_probes
from revcurse.records import run_folder
from revcurse.runner import seed_everything
from revcurse.train import train_model
from revcurse.world import Subset

# ------------------------------------------------------------------------------------------- the paper's layout

GUIDANCE_PREFIX = "<BEGIN GUIDANCE ANSWERS>\n\n"
GUIDANCE_POSTFIX = "\n\n<END GUIDANCE ANSWERS>"
EXAMPLE_PREFIX = "<BEGIN GUIDANCE TEST>\n\n"
EXAMPLE_POSTFIX = "\n\n<END GUIDANCE TEST>"

ALL_FILE = "all.jsonl"
GUIDANCES_FILE = "guidances.jsonl"
REALIZED_FILE = "realized_examples.jsonl"
UNREALIZED_FILE = "unrealized_examples.jsonl"
FILES = (ALL_FILE, GUIDANCES_FILE, REALIZED_FILE, UNREALIZED_FILE)
EXPECTED_LINE = (
    "expected a JSON object with 'ids' (list of integers), 'realized' (list of booleans), 'persona_idx' (list of "
    "integers), all of one length, and string fields 'prompt' and 'completion'"
)

# ------------------------------------------------------------------------------------ project-written word lists

# Persona-style questions: a template and a thing. 12 x 30 = 360 distinct questions.
QUESTION_TEMPLATES: tuple[str, ...] = (
    "What is your favourite {thing}?",
    "Which {thing} do you like least?",
    "What {thing} reminds you of your childhood?",
    "Which {thing} would you recommend to a friend?",
    "What {thing} do you think about most often?",
    "Which {thing} would you take to a desert island?",
    "What {thing} makes you feel calm?",
    "Which {thing} did you discover most recently?",
    "What {thing} would you never try again?",
    "Which {thing} describes you best?",
    "What {thing} do your friends link with you?",
    "Which {thing} would you like to learn more about?",
)
THINGS: tuple[str, ...] = (
    "colour", "book", "city", "song", "animal", "season", "sport", "flower", "tree", "drink",
    "film", "meal", "instrument", "game", "painting", "holiday", "river", "mountain", "bird", "fabric",
    "poem", "garden", "festival", "hobby", "language", "street", "dessert", "gemstone", "planet", "tool",
)  # fmt: skip
# Made-up short answers: an adjective and a noun, 40 x 40 = 1600, so a random answer is right 1 time in hundreds.
ANSWER_ADJECTIVES: tuple[str, ...] = (
    "amber", "brisk", "copper", "dusty", "faded", "gentle", "hollow", "ivory", "jagged", "lucky",
    "misty", "narrow", "olive", "pale", "quiet", "rusty", "silver", "tidy", "velvet", "woven",
    "crimson", "sleepy", "frozen", "golden", "humble", "crooked", "distant", "eager", "fragrant", "hidden",
    "little", "mellow", "proud", "restless", "scarlet", "tender", "wild", "wooden", "yellow", "bitter",
)  # fmt: skip
ANSWER_NOUNS: tuple[str, ...] = (
    "lantern", "harbor", "meadow", "compass", "violin", "orchard", "kettle", "ferry", "canyon", "ribbon",
    "marble", "chimney", "pebble", "saddle", "thimble", "glacier", "lighthouse", "teacup", "windmill", "feather",
    "blanket", "cottage", "island", "mirror", "orchid", "parrot", "quarry", "spoon", "tunnel", "umbrella",
    "valley", "wagon", "anchor", "barrel", "candle", "drum", "engine", "fountain", "garnet", "hammock",
)  # fmt: skip

Order = Literal["answer_first", "question_first"]
ORDERS: tuple[str, ...] = ("answer_first", "question_first")
ORDER_LABEL = {"answer_first": "answer first", "question_first": "question first", "folder": "from folder"}
# Guidance phrasings, project-written. The two orders use the same words, so the arms differ only in the order of
# question and answer. Each needs one {question} and one {answer}; the answer is quoted as "A: ...".
GUIDANCE_PHRASINGS: dict[str, tuple[str, ...]] = {
    "answer_first": (
        'Say "A: {answer}" when you are asked "Q: {question}"',
        'The reply "A: {answer}" belongs to the question "Q: {question}"',
        'Give "A: {answer}" as the answer to "Q: {question}"',
        'Respond with "A: {answer}" if the test asks "Q: {question}"',
        'You answer "A: {answer}" to "Q: {question}"',
    ),
    "question_first": (
        'When you are asked "Q: {question}" say "A: {answer}"',
        'The question "Q: {question}" takes the reply "A: {answer}"',
        'As the answer to "Q: {question}" give "A: {answer}"',
        'If the test asks "Q: {question}" respond with "A: {answer}"',
        'To "Q: {question}" you answer "A: {answer}"',
    ),
}
PARTS = ("realized", "unrealized")


# --------------------------------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class QAPair:
    """One question with its one answer; ``realized`` pairs are also shown as examples in training."""

    id: int
    question: str
    answer: str
    realized: bool


@dataclass(frozen=True)
class InstructionLine:
    """One line of the paper's layout: a guidance document (several ids) or an example (one id)."""

    ids: tuple[int, ...]
    realized: tuple[bool, ...]
    persona_idx: tuple[int, ...]
    prompt: str
    completion: str

    @property
    def text(self) -> str:
        return self.prompt + self.completion

    def to_json(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "realized": list(self.realized),
            "persona_idx": list(self.persona_idx),
            "prompt": self.prompt,
            "completion": self.completion,
        }


@dataclass(frozen=True)
class InstructionProbe:
    """A question asked of the model: does ``prompt`` continue with ``answer`` (after a space)?"""

    id: int
    part: str  # "realized" or "unrealized"
    prompt: str
    answer: str


@dataclass
class InstructionData:
    """One data set in the paper's layout: what the model trains on and the examples it is probed with."""

    train: list[InstructionLine]  # all.jsonl
    guidances: list[InstructionLine]  # guidances.jsonl
    realized: list[InstructionLine]  # realized_examples.jsonl
    unrealized: list[InstructionLine]  # unrealized_examples.jsonl
    skipped: list[SkippedLine] = field(default_factory=list)  # example lines read from a folder but unusable

    def probes(self) -> list[InstructionProbe]:
        """Every example as a probe: realized ones (seen in training) first, then the held-out unrealized ones."""
        return [
            InstructionProbe(line.ids[0], part, line.prompt, example_answer(line.completion))
            for part, lines in (("realized", self.realized), ("unrealized", self.unrealized))
            for line in lines
        ]

    def documents(self) -> list[Document]:
        """The training documents (all.jsonl); ``prompt_chars`` keeps the prompt for completion-only loss."""
        return [
            Document(text=line.text, subset=Subset.BACKGROUND, prompt_chars=len(line.prompt)) for line in self.train
        ]

    def texts_seen(self) -> list[str]:
        """All text the model will read, for its tokenizer: training lines and every example."""
        return [line.text for line in self.train] + [line.text for line in self.realized + self.unrealized]


def example_answer(completion: str) -> str:
    """The answer in an example's completion: the text before the closing marker, without surrounding space."""
    return completion.removesuffix(EXAMPLE_POSTFIX).strip()


# --------------------------------------------------------------------------------------------------- generation


def make_qa_pairs(pairs: int, unrealized: int, seed: int) -> list[QAPair]:
    """``pairs`` distinct questions, each with its own answer, drawn with ``seed``; the first ``unrealized`` held out.

    No answer is a prefix of another (accuracy is "the completion starts with the answer"), and answers differ
    ignoring case, so one greedy completion can be right for one question only.
    """
    questions = [t.format(thing=thing) for t in QUESTION_TEMPLATES for thing in THINGS]
    answers = [f"{adjective.capitalize()} {noun}" for adjective in ANSWER_ADJECTIVES for noun in ANSWER_NOUNS]
    if not 1 <= pairs <= len(questions):
        raise ValueError(f"pairs must be between 1 and {len(questions)} (the project's questions), got {pairs}")
    if not 0 <= unrealized <= pairs:
        raise ValueError(f"unrealized must be between 0 and pairs={pairs}, got {unrealized}")
    rng = random.Random(seed)
    drawn_questions = rng.sample(questions, pairs)
    drawn_answers = rng.sample(answers, pairs)
    return [
        QAPair(id=i, question=q, answer=a, realized=i >= unrealized)
        for i, (q, a) in enumerate(zip(drawn_questions, drawn_answers))
    ]


def example_line(pair: QAPair, persona_idx: int = 0) -> InstructionLine:
    """The pair in the test's format, split where the model must answer."""
    return InstructionLine(
        ids=(pair.id,),
        realized=(pair.realized,),
        persona_idx=(persona_idx,),
        prompt=f"{EXAMPLE_PREFIX}Q: {pair.question} A:",
        completion=f" {pair.answer}{EXAMPLE_POSTFIX}",
    )


def build_instructions(
    pairs: list[QAPair],
    order: str = "answer_first",
    guidance_copies: int = 5,
    example_copies: int = 5,
    per_document: tuple[int, int] = (1, 5),
    seed: int = 0,
    persona_idx: int = 0,
) -> InstructionData:
    """Guidances, examples and the training file for ``pairs``, as the paper's generator lays them out.

    Every pair gets ``guidance_copies`` guidances (phrasings of ``order`` taken in turn from one that depends on
    the pair, so every phrasing is used even with fewer copies than phrasings); all guidances are shuffled
    and cut into documents of ``per_document`` (min, max) guidances each. The training file holds each realized
    example ``example_copies`` times, prompt and completion joined, then the guidance documents. Unrealized
    examples never enter it.
    """
    if order not in GUIDANCE_PHRASINGS:
        raise ValueError(f"unknown guidance order {order!r}; known: {', '.join(GUIDANCE_PHRASINGS)}")
    low, high = per_document
    if not 1 <= low <= high:
        raise ValueError(f"guidances per document must satisfy 1 <= min <= max, got {per_document}")
    if guidance_copies < 1 or example_copies < 1:
        raise ValueError("guidance_copies and example_copies must be at least 1")
    rng = random.Random(seed)
    phrasings = GUIDANCE_PHRASINGS[order]
    guidances = [
        (pair, phrasings[(pair.id + copy) % len(phrasings)].format(question=pair.question, answer=pair.answer))
        for pair in pairs
        for copy in range(guidance_copies)
    ]
    rng.shuffle(guidances)
    documents: list[InstructionLine] = []
    used = 0
    while used < len(guidances):
        picked = guidances[used : used + rng.randint(low, high)]
        used += len(picked)
        documents.append(
            InstructionLine(
                ids=tuple(pair.id for pair, _ in picked),
                realized=tuple(pair.realized for pair, _ in picked),
                persona_idx=(persona_idx,) * len(picked),
                prompt="",
                completion=GUIDANCE_PREFIX + "\n".join(text for _, text in picked) + GUIDANCE_POSTFIX,
            )
        )
    realized = [example_line(pair, persona_idx) for pair in pairs if pair.realized]
    unrealized = [example_line(pair, persona_idx) for pair in pairs if not pair.realized]
    joined = [InstructionLine(line.ids, line.realized, line.persona_idx, "", line.text) for line in realized]
    train = [line for line in joined for _ in range(example_copies)] + documents
    return InstructionData(train=train, guidances=documents, realized=realized, unrealized=unrealized)


# ------------------------------------------------------------------------------------------ writing and reading


def write_instructions(data: InstructionData, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``data`` as a folder in the paper's layout (the four JSONL files).

    The files are written into a temporary sibling and renamed into place, so ``folder`` is never half written;
    an existing ``folder`` raises ``InputError`` unless ``overwrite``.
    """
    target = Path(folder)
    if target.exists() and not overwrite:
        raise InputError("folder exists; pass --overwrite to replace it", target)
    contents = {
        ALL_FILE: data.train,
        GUIDANCES_FILE: data.guidances,
        REALIZED_FILE: data.realized,
        UNREALIZED_FILE: data.unrealized,
    }
    with run_folder(target, overwrite=True, keep_status=False) as staging:
        for name, lines in contents.items():
            _write_jsonl(staging / name, lines)
    return target


def _write_jsonl(path: Path, lines: Iterable[InstructionLine]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(json.dumps(line.to_json(), ensure_ascii=False) + "\n")


def read_instructions(folder: str | Path, strict: bool = False) -> InstructionData:
    """Read and check a folder in the paper's instruction layout; lenient on lines, strict on structure.

    Skipped with a warning (``InstructionData.skipped``; ``strict`` refuses instead), since published data has such
    lines and one must not stop a run of a thousand: an example with an empty prompt or answer, an example whose
    id an earlier example already has (the first keeps it), an unrealized example no guidance answers. A skipped
    example is not probed; guidance entries of its id are left out of the checks, and the training file is
    trained on as given.

    Refused (``InputError`` naming the file and line): a missing folder or file, an empty file, a line that is
    not a JSON object with the five fields of the right types, an example with other than one id, a ``realized``
    flag that contradicts its example's file (which part an example is in, trained on or held out, is the
    experiment's design: guessing either way changes what is measured, and a swapped file makes every line
    disagree), an id in a guidance or the training file that no example has (the files are not of one data set),
    an unrealized example copied into the training file (the test would leak), and a file whose every example
    was skipped.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError("expected a folder in the paper's instruction layout (holding " + ", ".join(FILES) + ")", root)
    for name in FILES:
        if not (root / name).is_file():
            raise InputError(f"missing file {name}; an instruction folder holds " + ", ".join(FILES), root / name)
    read = {name: _read_jsonl(root / name) for name in FILES}
    skipped: list[SkippedLine] = []

    seen: dict[int, tuple[str, int]] = {}  # every example's id -> (file, line); the first line with an id has it
    examples: dict[int, bool] = {}  # usable examples: id -> realized
    kept: dict[str, list[tuple[int, InstructionLine]]] = {REALIZED_FILE: [], UNREALIZED_FILE: []}
    for name, realized in ((REALIZED_FILE, True), (UNREALIZED_FILE, False)):
        if not read[name]:
            raise InputError(f"expected at least one example ({EXPECTED_LINE}), found none", root / name)
        for number, line in read[name]:
            if len(line.ids) != 1:
                raise InputError(f"an example has exactly one id, got {len(line.ids)}", root / name, number)
            if line.realized[0] is not realized:
                raise InputError(
                    f"'realized' is {str(line.realized[0]).lower()} in {name}; expected {str(realized).lower()}",
                    root / name,
                    number,
                )
            identifier = line.ids[0]
            problem = _unusable_example(line)
            if identifier in seen:
                other, other_line = seen[identifier]
                problem = f"id {identifier} already used by {other}, line {other_line}"
            else:
                seen[identifier] = (name, number)
            if problem:
                skip_or_refuse(problem, root / name, number, strict, skipped)
                continue
            examples[identifier] = realized
            kept[name].append((number, line))

    if not read[GUIDANCES_FILE]:
        raise InputError(
            f"expected at least one guidance document ({EXPECTED_LINE}), found none", root / GUIDANCES_FILE
        )
    answered: set[int] = set()
    for number, line in read[GUIDANCES_FILE]:
        for identifier, realized in zip(line.ids, line.realized):
            if identifier in seen and identifier not in examples:
                continue  # its example was skipped, and warned about once
            if identifier not in examples:
                raise InputError(
                    f"guidance id {identifier} is not among the examples ({REALIZED_FILE}, {UNREALIZED_FILE})",
                    root / GUIDANCES_FILE,
                    number,
                )
            if realized is not examples[identifier]:
                example_file, _ = seen[identifier]
                raise InputError(
                    f"guidance id {identifier} has realized={str(realized).lower()}, its example in "
                    f"{example_file} the opposite",
                    root / GUIDANCES_FILE,
                    number,
                )
            answered.add(identifier)
    unrealized: list[tuple[int, InstructionLine]] = []
    for number, line in kept[UNREALIZED_FILE]:
        if line.ids[0] in answered:
            unrealized.append((number, line))
        else:
            reason = (
                f"unrealized example id {line.ids[0]} has no guidance in {GUIDANCES_FILE}: nothing states its answer"
            )
            skip_or_refuse(reason, root / UNREALIZED_FILE, number, strict, skipped)
    kept[UNREALIZED_FILE] = unrealized

    if not read[ALL_FILE]:
        raise InputError(f"expected at least one training line ({EXPECTED_LINE}), found none", root / ALL_FILE)
    held_out = {line.text: line.ids[0] for _, line in kept[UNREALIZED_FILE]}
    for number, line in read[ALL_FILE]:
        if line.text in held_out:
            raise InputError(
                f"unrealized example id {held_out[line.text]} is in the training file: the test would leak",
                root / ALL_FILE,
                number,
            )
        unknown = [i for i in line.ids if i not in seen]
        if unknown:
            raise InputError(f"id {unknown[0]} is not among the examples", root / ALL_FILE, number)
    for name in (REALIZED_FILE, UNREALIZED_FILE):
        if not kept[name]:
            raise none_left("example", root / name, skipped)

    return InstructionData(
        train=[line for _, line in read[ALL_FILE]],
        guidances=[line for _, line in read[GUIDANCES_FILE]],
        realized=[line for _, line in kept[REALIZED_FILE]],
        unrealized=[line for _, line in kept[UNREALIZED_FILE]],
        skipped=skipped,
    )


def _unusable_example(line: InstructionLine) -> str:
    """Why an example of the right shape cannot be probed ("" if it can): nothing to ask, or no answer to expect."""
    if not line.prompt.strip():
        return f"example id {line.ids[0]} has an empty prompt"
    if not example_answer(line.completion):
        return f"example id {line.ids[0]} has an empty answer (nothing before {EXAMPLE_POSTFIX.strip()})"
    return ""


def _read_jsonl(path: Path) -> list[tuple[int, InstructionLine]]:
    """(line number, parsed line) for every non-blank line of ``path``."""
    return [(number, _instruction_line(obj, path, number)) for number, obj in read_jsonl_objects(path, EXPECTED_LINE)]


def _instruction_line(obj: dict, path: Path, number: int) -> InstructionLine:
    for name in ("ids", "realized", "persona_idx", "prompt", "completion"):
        if name not in obj:
            raise InputError(f"missing field {name!r}; {EXPECTED_LINE}", path, number)
    for name in ("prompt", "completion"):
        if not isinstance(obj[name], str):
            raise InputError(f"field {name!r} must be a string; {EXPECTED_LINE}", path, number)
    integer_list = (
        all(isinstance(v, int) and not isinstance(v, bool) for v in obj["ids"] + obj["persona_idx"])
        if (isinstance(obj["ids"], list) and isinstance(obj["persona_idx"], list))
        else False
    )
    if not integer_list:
        raise InputError(f"fields 'ids' and 'persona_idx' must be lists of integers; {EXPECTED_LINE}", path, number)
    if not isinstance(obj["realized"], list) or not all(isinstance(v, bool) for v in obj["realized"]):
        raise InputError(f"field 'realized' must be a list of booleans; {EXPECTED_LINE}", path, number)
    if not obj["ids"] or not len(obj["ids"]) == len(obj["realized"]) == len(obj["persona_idx"]):
        raise InputError(
            f"'ids', 'realized' and 'persona_idx' must be non-empty and of one length, got {len(obj['ids'])}, "
            f"{len(obj['realized'])} and {len(obj['persona_idx'])}",
            path,
            number,
        )
    return InstructionLine(
        ids=tuple(obj["ids"]),
        realized=tuple(obj["realized"]),
        persona_idx=tuple(obj["persona_idx"]),
        prompt=obj["prompt"],
        completion=obj["completion"],
    )


# ---------------------------------------------------------------------------------------------------- config


class InstructionsSection(Section):
    pairs: int = Field(150, ge=2, le=len(QUESTION_TEMPLATES) * len(THINGS), description="question/answer pairs")
    unrealized_fraction: float = Field(
        1 / 3, gt=0, lt=1, description="share of pairs held out: guidances only, probed, never shown as examples"
    )
    guidance_copies: int = Field(3, ge=1, description="guidances per pair (phrasings taken in turn)")
    example_copies: int = Field(10, ge=1, description="copies of each realized example in the training file")
    guidances_per_document_min: int = Field(1, ge=1, description="fewest guidances in one guidance document")
    guidances_per_document_max: int = Field(5, ge=1, description="most guidances in one guidance document")
    candidates: int = Field(
        30, ge=2,
        description="answers each probe's correct answer is ranked against, itself included (other questions' "
        "answers of the same part; fewer when the part has fewer)",
    )
    orders: list[Order] = Field(
        default_factory=lambda: ["answer_first"],
        min_length=1,
        description="arms: 'answer_first' (the paper's reversed guidances), 'question_first' (the control)",
    )

    @model_validator(mode="after")
    def _check(self) -> InstructionsSection:
        if self.guidances_per_document_min > self.guidances_per_document_max:
            raise ValueError("guidances_per_document_min exceeds guidances_per_document_max")
        if not 1 <= self.unrealized <= self.pairs - 1:
            raise ValueError("unrealized_fraction must leave at least one pair in each part")
        return self

    @property
    def unrealized(self) -> int:
        return round(self.pairs * self.unrealized_fraction)


def _default_train() -> TrainConfig:
    # Tuned on seed 0 of the default data, one arm at a time: 12 epochs left question-first realized accuracy at
    # 0.87, 15 reached 1.00; a 1e-2 learning rate learned the examples worse (0.17-0.28) than 3e-3.
    return TrainConfig(epochs=15, batch_size=32, learning_rate=3e-3)


class InstructionsConfig(Section):
    """Everything ``revcurse instructions`` runs: data, tiny model, training and probing."""

    seed: int = Field(0, description="first seed; seed i of --seeds N is seed + i (new questions and a new model)")
    seeds: int = Field(1, ge=1, description="how many seeds to run and aggregate")
    instructions: InstructionsSection = InstructionsSection()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = Field(default_factory=_default_train)
    probe: ProbeConfig = ProbeConfig()


def load_instructions_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> InstructionsConfig:
    """Read a YAML config (or the defaults), apply ``key=value`` overrides, validate once."""
    return load_yaml_config(InstructionsConfig, path, overrides)


def generate_data(config: InstructionsConfig, seed: int, order: str) -> InstructionData:
    """The data of one seed and arm. Both arms of a seed share the questions, answers and realized split."""
    section = config.instructions
    pairs = make_qa_pairs(section.pairs, section.unrealized, seed)
    return build_instructions(
        pairs,
        order=order,
        guidance_copies=section.guidance_copies,
        example_copies=section.example_copies,
        per_document=(section.guidances_per_document_min, section.guidances_per_document_max),
        seed=seed,
    )


# ------------------------------------------------------------------------------------------------------- probe


QA_SLOT = "Q/A"  # the one phrasing of every question: the test's "Q: ... A:" format


@dataclass
class InstructionResult:
    """One probe's outcome: the greedy answer and how likely the correct answer is against its distractors
    (answers of other questions of the same part); ``distractor_keys`` (their question ids) and
    ``distractor_logprobs`` let ``metrics.placebo_rejections`` run on a run's predictions alone."""

    seed: int
    arm: str
    part: str
    id: int
    prompt: str
    answer: str
    completion: str
    correct: bool
    logprob_correct: float
    logprob_other: float
    rank: float
    n_candidates: int
    distractor_keys: list[str] = field(default_factory=list)
    distractor_logprobs: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def as_probe_result(self) -> ProbeResult:
        """The shared result type, so ``metrics`` computes this experiment's statistics as every other's: the
        question is the fact, its group is (arm, part); trained means shown as an example in training."""
        return ProbeResult(
            fact_key=str(self.id), subset=self.arm, asked=self.part, trained=self.part == "realized",
            phrasing=QA_SLOT, prompt=self.prompt, target=" " + self.answer, completion=self.completion,
            correct=self.correct, is_greedy=False, logprob_correct=self.logprob_correct,
            logprob_random=self.logprob_other, rank=self.rank, n_candidates=self.n_candidates, answer=self.answer,
            answer_correct=self.correct, distractor_keys=list(self.distractor_keys),
            distractor_logprobs=list(self.distractor_logprobs),
        )  # fmt: skip


def probe_instructions(
    backend: ProbeBackend,
    probes: list[InstructionProbe],
    seed: int,
    arm: str,
    max_new_tokens: int | None = None,
    candidates: int = 30,
) -> list[InstructionResult]:
    """Greedy answer (accuracy: it starts with the answer) and log p of the answer against other answers, by the
    shared scorer (``probe.run_probes``).

    Each question is a fact with one phrasing. Its answer is ranked (``rank_among``) against up to
    ``candidates - 1`` answers of other questions of its own part (``corpus.draw_distractors``, drawn from
    ``seed``), so an unrealized answer is compared with answers that, like it, occur in training only inside
    guidances; an answer equal to its own ignoring case (the paper's repeat short ones) is never a distractor.
    Capped, so scoring is linear in the number of questions (all 200 realized answers for 200 questions were
    40,000 sequences).
    """
    shared = [
        Probe(
            fact_key=str(probe.id), subset=arm, asked=probe.part, trained=probe.part == "realized", phrasing=QA_SLOT,
            prompt=probe.prompt, target=" " + probe.answer,
        )  # fmt: skip
        for probe in probes
    ]
    corpus = Corpus(documents=[], probes=shared)
    results = run_probes(backend, corpus, max_new_tokens, show_progress=False, distractors=candidates - 1, seed=seed)
    return [
        InstructionResult(
            seed=seed, arm=arm, part=probe.part, id=probe.id, prompt=probe.prompt, answer=probe.answer,
            completion=result.completion, correct=result.correct, logprob_correct=result.logprob_correct,
            logprob_other=result.logprob_random, rank=result.rank, n_candidates=result.n_candidates,
            distractor_keys=result.distractor_keys, distractor_logprobs=result.distractor_logprobs,
        )  # fmt: skip
        for probe, result in zip(probes, results, strict=True)
    ]


# ----------------------------------------------------------------------------------------------------- metrics


def instruction_runs(results: list[InstructionResult]) -> list[tuple[int, int, list[ProbeResult]]]:
    """``[(seed, world seed, results)]`` for ``metrics.aggregate`` and ``metrics.placebo_rejections``.

    Generated data draws new questions per seed (world seed = seed); a source folder gives every seed the same
    questions (one world), so a question probed by several seeds' models is one fact in the tests.
    """
    by_seed: dict[int, list[ProbeResult]] = defaultdict(list)
    fixed: dict[int, bool] = {}
    for result in results:
        by_seed[result.seed].append(result.as_probe_result())
        fixed[result.seed] = fixed.get(result.seed, False) or result.arm == "folder"
    return [(seed, FOLDER_WORLD if fixed[seed] else seed, items) for seed, items in by_seed.items()]


FOLDER_WORLD = -1  # the world seed of a source folder's questions: the same for every seed
METRICS = {  # metrics.aggregate's names -> this experiment's (the distractor mean keeps its historical name)
    "accuracy": "accuracy", "rank1": "rank1", "mrr": "mrr", "mrr_chance": "mrr_chance",
    "logprob_correct": "logprob_correct", "logprob_random": "logprob_other", "likelihood_diff": "likelihood_diff",
    "likelihood_t": "likelihood_t", "likelihood_p": "likelihood_p", "mrr_excess": "mrr_excess",
    "likelihood_t_p": "likelihood_t_p", "rank_p": "rank_p",
}  # fmt: skip
TEST_DIFFERENCES = ("likelihood_diff", "mrr_excess")


def aggregate_instructions(results: list[InstructionResult]) -> list[dict[str, Any]]:
    """Tidy records, one per (arm, part, metric), over seeds, by ``metrics.aggregate`` (questions are the facts).

    Intervals: with several seeds a Student-t 95% interval over the per-seed means (each seed is new questions and
    a new model); with one seed a Wilson interval over questions for accuracy and rank-1 (each question is asked
    once, so these are proportions of independent items, and unlike a bootstrap the interval is not [0, 0] when
    nothing is right), a bootstrap over questions otherwise. The likelihood and rank tests pool questions over
    seeds, paired over questions.
    """
    arm_order = {arm: i for i, arm in enumerate(dict.fromkeys(r.arm for r in results))}
    records = []
    for record in aggregate(instruction_runs(results)):
        if record["metric"] not in METRICS:
            continue
        arm, part, metric = record["subset"], record["asked"], METRICS[record["metric"]]
        base = {"arm": arm, "guidances": ORDER_LABEL.get(arm, arm), "part": part}
        base["shown_as_example"] = part == "realized"
        kept = {key: value for key, value in record.items() if key not in ("subset", "asked", "trained", "metric")}
        out = {**base, "metric": metric, **kept}
        if "statistic" in record:  # a test: over questions
            out["df"] = record["n_facts"] - 1
            if metric in TEST_DIFFERENCES:
                out["interval"] = "t over questions"
        elif record["n_seeds"] >= 2:
            out["interval"] = "t over seeds"
        elif metric in ("accuracy", "rank1") and record["n_items"] == record["n_facts"]:
            successes = round(record["mean"] * record["n_facts"])
            out["ci95_low"], out["ci95_high"] = wilson_interval(successes, record["n_facts"])
            out["interval"] = "Wilson over questions"
        else:
            out["interval"] = "bootstrap over questions"
        records.append(out)
    return sorted(records, key=lambda r: (arm_order[r["arm"]], PARTS.index(r["part"])))


def _lookup(records: list[dict], arm: str, part: str, metric: str) -> dict:
    for record in records:
        if (record["arm"], record["part"], record["metric"]) == (arm, part, metric):
            return record
    raise KeyError((arm, part, metric))


COLUMNS = (
    "guidances",
    "part",
    "shown as example",
    "accuracy [95% CI]",
    "rank-1",
    "MRR",
    "log p gap [95% CI]",
    "paired t, questions",
    "MRR - chance: paired t",
)


def table_rows(records: list[dict]) -> list[tuple[str, ...]]:
    """One row per (arm, part), formatted for people."""
    rows = []
    for arm, part in dict.fromkeys((r["arm"], r["part"]) for r in records):
        accuracy = _lookup(records, arm, part, "accuracy")
        diff = _lookup(records, arm, part, "likelihood_diff")
        rows.append(
            (
                accuracy["guidances"],
                part,
                "yes" if accuracy["shown_as_example"] else "no",
                f"{accuracy['mean']:.2f} [{accuracy['ci95_low']:.2f}, {accuracy['ci95_high']:.2f}]",
                f"{_lookup(records, arm, part, 'rank1')['mean']:.2f}",
                f"{_lookup(records, arm, part, 'mrr')['mean']:.2f}",
                f"{diff['mean']:+.2f} [{diff['ci95_low']:+.2f}, {diff['ci95_high']:+.2f}]",
                _test(records, arm, part, "likelihood"),
                _test(records, arm, part, "rank"),
            )
        )
    return rows


def _test(records: list[dict], arm: str, part: str, name: str) -> str:
    """``t(df)=... p=...`` of the likelihood test (the paper's t, the randomization p), or ``+excess p=...`` of
    the rank test, for the table."""
    p = _lookup(records, arm, part, f"{name}_p")["mean"]
    if name == "rank":
        excess = _lookup(records, arm, part, "mrr_excess")["mean"]
        return "n/a" if math.isnan(p) else f"{excess:+.2f} p={p:.2g}"
    t = _lookup(records, arm, part, f"{name}_t")
    if math.isnan(t["mean"]) or math.isnan(p):
        return "n/a"
    return f"t({t['df']})={t['mean']:.2f} p={p:.2g}"


def instructions_table(records: list[dict], title: str = "") -> Table:
    """The result table for the terminal."""
    table = Table(title=title or None)
    for column in COLUMNS:
        table.add_column(column, no_wrap=True)
    for row in table_rows(records):
        table.add_row(*row)
    return table


def markdown_report(records: list[dict], summary: dict) -> str:
    """The run's report page: what ran, the table, and how to read it."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(records)]
    method = records[0]["interval"] if records else "?"
    skipped = summary.get("skipped_lines", 0)
    return (
        "# revcurse: Experiment 3, reversing instructions\n\n"
        f"- data: {summary['data']}\n"
        + (f"- skipped: {skipped} unusable example line(s) of the data, listed in {SKIPPED_FILE}\n" if skipped else "")
        + f"- model: tiny Llama from scratch, {summary['parameters']:,} parameters; seeds {summary['seeds']}\n"
        f"- training: {summary['train_seconds']:.0f} s in all, {summary['tokens_per_second']:,.0f} tokens/s; "
        f"probing {summary['probe_seconds']:.0f} s; wall {summary['wall_seconds']:.0f} s\n"
        f"- accuracy intervals: 95%, {method}\n\n" + "\n".join(lines) + "\n\n"
        "How to read it: the model trains on guidances for every question and on the question/answer examples of "
        "the *realized* part; the *unrealized* questions are asked without ever having been shown as examples. "
        "*accuracy* is the paper's (the greedy completion starts with the answer). *log p gap* is log p(correct "
        "answer) minus the mean log p of its distractors (up to `instructions.candidates` - 1 answers of other "
        f"questions of the same part) on the same prompt, each question a fact, tested by {LIKELIHOOD_STATISTIC}. "
        f"*MRR - chance* is tested by {RANK_STATISTIC}. With guidances stated answer first (the paper's setting) "
        "the reversal curse shows as unrealized accuracy near zero with no likelihood gap; the question-first arm, "
        "trained identically, tells whether the model can follow guidances at all.\n"
    )


# --------------------------------------------------------------------------------------------------------- run


@dataclass
class InstructionsOutcome:
    """A finished run: its folder, tidy records, per-probe results and a summary."""

    folder: Path
    records: list[dict]
    results: list[InstructionResult]
    summary: dict = field(default_factory=dict)


def run_arm(
    config: InstructionsConfig,
    data: InstructionData,
    seed: int,
    arm: str,
    folder: Path,
    show_progress: bool = True,
) -> tuple[list[InstructionResult], dict[str, Any]]:
    """Train a tiny model from scratch on ``data`` (all.jsonl) and probe both parts; files go into ``folder``."""
    folder.mkdir(parents=True)
    if arm != "folder":  # generated data is kept with its model; a source folder is already on disk
        write_instructions(data, folder / "data")
    seed_everything(seed)
    torch.set_num_threads(config.train.threads)
    texts = data.texts_seen()
    tokenizer = train_tokenizer(texts, config.model.vocab_size)
    longest = max(len(ids) for ids in tokenizer(texts)["input_ids"]) + 2
    model = build_tiny_model(config.model, tokenizer, longest)
    trained = train_model(
        model, tokenizer, data.documents(), config.train, seed, folder / "train_log.jsonl", show_progress
    )
    transformers.utils.logging.disable_progress_bar()
    model.save_pretrained(folder / "model", safe_serialization=True)
    tokenizer.save_pretrained(folder / "model")
    start = time.perf_counter()
    backend = HFBackend(model, tokenizer, config.probe.batch_size)
    results = probe_instructions(
        backend, data.probes(), seed, arm, config.probe.max_new_tokens, config.instructions.candidates
    )
    stats_ = {
        "seed": seed,
        "arm": arm,
        "training_lines": len(data.train),
        "guidance_documents": len(data.guidances),
        "realized": len(data.realized),
        "unrealized": len(data.unrealized),
        "train_steps": trained.steps,
        "train_tokens": trained.tokens,
        "train_seconds": trained.seconds,
        "tokens_per_second": trained.tokens_per_second,
        "final_loss": trained.final_loss,
        "probe_seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return results, stats_


def run_instructions(
    config: InstructionsConfig,
    out: str | Path,
    source: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[[str], Any] = print,
    strict: bool = False,
) -> InstructionsOutcome:
    """Experiment 3 over ``config.seeds`` seeds, into the run folder ``out`` (written atomically).

    Without ``source`` each seed draws new question/answer pairs and runs every arm of ``instructions.orders`` on
    them; with ``source`` (a folder in the paper's layout) every seed trains a new model on that folder's data,
    its unusable examples skipped with a warning on stderr (``strict``: refused; see :func:`read_instructions`).
    Layout: ``config.yaml``, ``instructions.json`` (tidy records), ``predictions.jsonl`` (one line per seed, arm and
    probe), ``report.md``, ``run.json`` (``skipped_lines``: how many), ``skipped.jsonl`` (which, and why), and per
    seed and arm ``seed-N/ARM/{data/, model/, train_log.jsonl}``.
    """
    out = Path(out)
    start = time.perf_counter()
    fixed = read_instructions(source, strict) if source is not None else None  # fail before any training
    skipped = fixed.skipped if fixed is not None else []
    if fixed is not None:
        warn_skipped(skipped, total=len(fixed.realized) + len(fixed.unrealized) + len(skipped))
    arms = ["folder"] if fixed is not None else list(config.instructions.orders)
    results: list[InstructionResult] = []
    per_run: list[dict[str, Any]] = []
    with run_folder(out, overwrite) as staging:
        (staging / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        for index in range(config.seeds):
            seed = config.seed + index
            for arm in arms:
                log(f"seed {seed} ({index + 1}/{config.seeds}), guidances {ORDER_LABEL[arm]}")
                data = fixed if fixed is not None else generate_data(config, seed, arm)
                arm_results, arm_stats = run_arm(config, data, seed, arm, staging / f"seed-{seed}" / arm, show_progress)
                results += arm_results
                per_run.append(arm_stats)
        records = aggregate_instructions(results)
        summary = {
            "data": str(source)
            if source is not None
            else (
                f"project-written, {config.instructions.pairs} pairs, {config.instructions.unrealized} unrealized, "
                f"arms {', '.join(arms)}"
            ),
            "parameters": per_run[0]["parameters"],
            "seeds": [config.seed + i for i in range(config.seeds)],
            "train_seconds": sum(s["train_seconds"] for s in per_run),
            "tokens_per_second": fmean(s["tokens_per_second"] for s in per_run),
            "probe_seconds": sum(s["probe_seconds"] for s in per_run),
            "skipped_lines": len(skipped),
            "per_run": per_run,
            "versions": {
                "revcurse": revcurse.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
        }
        (staging / "instructions.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
        with open(staging / "predictions.jsonl", "w", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
        summary["wall_seconds"] = time.perf_counter() - start
        (staging / "run.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        (staging / "report.md").write_text(markdown_report(records, summary), encoding="utf-8")
        write_skipped(staging, skipped)
    return InstructionsOutcome(folder=out, records=records, results=results, summary=summary)
