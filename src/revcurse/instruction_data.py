"""Experiment 3's data: reversing instructions, generated or read from the paper's instruction folder layout.

A *guidance* gives the answer to a question before the question (``Say "A: Amber lantern" when you are asked "Q:
What is your favourite book?"``); guidances are grouped a few per document. The *realized* questions are also
shown as question/answer examples in the test's format; the *unrealized* ones are held out and asked. The
question-first order (``When you are asked "Q: ..." say "A: ..."``) is the control: the same words, question and
answer swapped. This module writes and reads data only (``experiments/instructions.py`` turns it into a trial).

The paper's layout (e.g. ``copypaste_ug100_rg1000_main/``), JSONL lines with ``ids, realized, persona_idx, prompt,
completion``:

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
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from revcurse.corpus import Document
from revcurse.errors import InputError, SkippedLine, none_left, skip_or_refuse
from revcurse.paper_format import read_jsonl_objects
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


def write_instructions(data: InstructionData, folder: str | Path) -> Path:
    """Write ``data`` into ``folder`` (made if missing) in the paper's layout: the four JSONL files.

    Not atomic by itself: ``revcurse instructions --write`` writes into ``records.record_folder``'s staging folder.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    contents = {
        ALL_FILE: data.train,
        GUIDANCES_FILE: data.guidances,
        REALIZED_FILE: data.realized,
        UNREALIZED_FILE: data.unrealized,
    }
    for name, lines in contents.items():
        _write_jsonl(target / name, lines)
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
