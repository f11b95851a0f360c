"""Experiment 2, real celebrities: models name a celebrity's parent far more often than the parent's child.

Berglund et al. (2023, section 3) took (celebrity, parent) pairs, asked "Who is Tom Cruise's mother?" and, for the
same pair, "Name a child of Mary Lee Pfeiffer." GPT-4 found the parent 79% of the time and the child 33%: the
fact is in the weights in the direction it is usually written ("X's mother is Y"), and much less in the other.
This module asks both questions of any backend, for the paper's ``parent_child_pairs.csv`` or a file in the
same format, in the paper's two styles:

- **chat**: a terse system message, a few question/answer turns, then the question. A tokenizer with a chat
  template renders it (``apply_chat_template``); one without gets a plain ``System: / User: / Assistant:`` text.
- **completion**: a few-shot ``Q: ... / A: ...`` text for base models, ending in ``A:``.

Each prompt is answered twice over: ``n`` sampled answers (any-correct and fraction-correct per query; a child
question is answered correctly by any child the file knows for that parent, as the paper allowed), and the
log-probability of the correct name against other names of the file in the same role (other mothers for a
mother question, other children for a child question): the paper's paired comparison of likelihoods.
Parent and child questions come from the same row, so parent vs child is tested paired over rows.
"""

from __future__ import annotations

import csv
import io
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, Protocol

from rich.progress import Progress
from rich.table import Table

from revcurse.errors import (
    SKIPPED_FILE,
    InputError,
    SkippedLine,
    csv_values,
    none_left,
    read_user_text,
    skip_or_refuse,
)
from revcurse.metrics import (
    MCNEMAR,
    PAIRED_T,
    RANK_STATISTIC,
    chance_mrr,
    mcnemar_test,
    paired_test,
    placebo_counts,
    randomization_tests,
    t_interval,
    wilson_interval,
)
from revcurse.probe import rank_among

REQUIRED_COLUMNS = ("child", "parent", "parent_type")
OPTIONAL_COLUMNS = ("child_prediction", "can_reverse")
PARENT_TYPES = ("mother", "father")
DIRECTIONS = ("parent", "child")  # "parent": child -> who is the parent?  "child": parent -> name a child
STYLES = ("chat", "completion")
UNKNOWN_ANSWER = "I don't know."
SYSTEM_PROMPT = (
    "You are a helpful and terse assistant. You answer with a name only. "
    f'If you do not know the answer, you answer "{UNKNOWN_ANSWER}"'
)
COMPLETION_HEADER = (
    "Below are questions about people and their parents, each answered with a name only, "
    f'or "{UNKNOWN_ANSWER}" when the answer is not known.'
)
# Few-shot turns written for revcurse: public-domain historical facts in both directions and both parent types,
# and one abstention about a made-up person, so a model may say it does not know instead of inventing a name.
FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("Who is Wolfgang Amadeus Mozart's father?", "Leopold Mozart"),
    ("Name a child of Johann Sebastian Bach.", "Carl Philipp Emanuel Bach"),
    ("Who is Irène Joliot-Curie's mother?", "Marie Curie"),
    ("Name a child of Tobias Quennell.", UNKNOWN_ANSWER),
)
PROPORTION_METRICS = ("any_correct", "logprob_rank1")
PLAIN_RENDERING = "plain 'System: / User: / Assistant:' text (the tokenizer has no chat template)"


@dataclass(frozen=True)
class ParentChildPair:
    """One row of ``parent_child_pairs.csv``; ``line`` is its line in the file (the header is line 1).

    ``child_prediction`` and ``can_reverse`` are the paper's GPT-4 results for the row, kept when present.
    """

    child: str
    parent: str
    parent_type: str
    child_prediction: str | None = None
    can_reverse: bool | None = None
    line: int = 0


@dataclass
class PairsFile:
    """The usable rows of a parent/child CSV, and its rows left out as unusable (for the warnings and run folder)."""

    pairs: list[ParentChildPair]
    skipped: list[SkippedLine] = field(default_factory=list)


def read_parent_child_pairs(path: str | Path, strict: bool = False) -> PairsFile:
    """Read and check a CSV with columns child,parent,parent_type[,child_prediction,can_reverse].

    Lenient on rows, strict on structure. Skipped with a warning (``strict`` refuses instead), as one such row
    must not stop a run over the rest: a row with an empty child or parent, a parent_type other than mother or
    father, and a row repeating an earlier one (same child, parent and parent_type, names compared as everywhere
    here; the first is kept). Refused, an ``InputError`` naming the file and line so a user can fix the row, not
    guess at it: a file that is not UTF-8 or CSV, an empty file, a missing column, a row with other than one field
    per header column (its values would be read under the wrong names), a can_reverse that is not a boolean, and
    a file with no usable row.
    """
    path = Path(path)
    text = read_user_text(path, "CSV file")
    pairs: list[ParentChildPair] = []
    skipped: list[SkippedLine] = []
    seen: dict[tuple[str, str, str], int] = {}  # (child, parent, parent_type) -> line first given on
    read_rows = 0
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames
            if not header:
                raise InputError(f"empty file; expected the header {','.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}",
                                 path, 1)
            columns = [name.strip() for name in header]
            missing = [name for name in REQUIRED_COLUMNS if name not in columns]
            if missing:
                raise InputError(f"missing column(s) {', '.join(missing)}; the header has {', '.join(columns)}",
                                 path, 1)
            reader.fieldnames = columns
            for row in reader:
                read_rows += 1
                line = reader.line_num
                pair = _parse_row(row, columns, path, line)
                problem = _unusable_row(pair)
                key = (normalize_name(pair.child), normalize_name(pair.parent), pair.parent_type)
                if not problem and key in seen:
                    names = f"{pair.child}, {pair.parent}, {pair.parent_type}"
                    problem = f"duplicate row ({names}): first given on line {seen[key]}"
                if problem:
                    skip_or_refuse(problem, path, line, strict, skipped)
                    continue
                seen[key] = line
                pairs.append(pair)
        except csv.Error as error:  # DictReader.line_num lags a row behind; its csv.reader's is the failing line
            raise InputError(f"not a readable CSV: {error}", path, reader.reader.line_num or None) from None
    if not read_rows:
        raise InputError("no rows after the header", path)
    if not pairs:
        raise none_left("rows", path, skipped)
    return PairsFile(pairs, skipped)


def _parse_row(row: dict[str | None, Any], columns: list[str], path: Path, line: int) -> ParentChildPair:
    """One row as read (checked for structure only: its width and the can_reverse boolean)."""
    given = csv_values(row, columns)
    if given != len(columns):
        raise InputError(f"expected {len(columns)} fields, got {given}", path, line)
    values = {key: (value or "").strip() for key, value in row.items() if key is not None}
    raw_reverse = values.get("can_reverse", "").lower()
    if raw_reverse not in ("", "true", "false", "1", "0"):
        raise InputError(f"can_reverse must be True, False or empty, got {values['can_reverse']!r}", path, line)
    return ParentChildPair(
        child=values["child"],
        parent=values["parent"],
        parent_type=values["parent_type"].lower(),
        child_prediction=values.get("child_prediction") or None,
        can_reverse=None if not raw_reverse else raw_reverse in ("true", "1"),
        line=line,
    )


def _unusable_row(pair: ParentChildPair) -> str:
    """Why a well-formed row cannot be asked ("" if it can): a question needs both names and a parent type."""
    for name in ("child", "parent"):
        if not getattr(pair, name):
            return f"empty {name}"
    if pair.parent_type not in PARENT_TYPES:
        return f"parent_type must be mother or father, got {pair.parent_type!r}"
    return ""


def parent_question(pair: ParentChildPair) -> str:
    return f"Who is {pair.child}'s {pair.parent_type}?"


def child_question(pair: ParentChildPair) -> str:
    return f"Name a child of {pair.parent}."


def normalize_name(text: str) -> str:
    """Case-folded, whitespace collapsed: how names are compared everywhere in this module."""
    return " ".join(text.casefold().split())


def is_correct(answer: str, accepted: Sequence[str]) -> bool:
    """The answer names an accepted person: the normalised name occurs in it as whole words.

    Whole words, so "Ann Lee" is not found inside "Joann Lee"; containment, so "Her mother is Ann Lee." counts.
    """
    text = normalize_name(answer)
    return any(re.search(rf"(?<!\w){re.escape(normalize_name(name))}(?!\w)", text) for name in accepted)


@dataclass(frozen=True)
class Query:
    """One question about row ``row`` of the pairs: what counts as correct, and the names scored by log-prob.

    ``target`` is the row's own answer (scored by log-prob); ``accepted`` are all answers counted correct when
    sampled; ``distractors`` are other names of the file in the same role, never a name the file gives as an
    answer to this question (compared normalised: case and spacing do not make a new person).
    """

    row: int
    direction: str
    question: str
    target: str
    accepted: tuple[str, ...]
    distractors: tuple[str, ...]


def build_queries(
    pairs: Sequence[ParentChildPair],
    reference: Sequence[ParentChildPair] | None = None,
    n_distractors: int = 10,
    seed: int = 0,
) -> list[Query]:
    """A parent question and a child question per pair, in that order.

    ``reference`` (default: ``pairs``) is the whole file: the children it lists for a parent are all accepted
    answers to "Name a child of ...", and its names are the distractor pools, so ``--limit`` changes which rows
    are asked, not what counts as correct. Distractors are drawn per query from ``seed``, at most
    ``n_distractors`` whatever the size of the file, and never an answer the file gives to the question: not the
    row's own, nor another child of the parent, nor another parent of that type the file lists for the child.
    """
    reference = list(pairs if reference is None else reference)
    children_of: dict[str, list[str]] = {}
    parents_of: dict[tuple[str, str], set[str]] = {}  # (child, parent type) -> every such parent the file names
    for pair in [*reference, *pairs]:
        known = children_of.setdefault(normalize_name(pair.parent), [])
        if normalize_name(pair.child) not in map(normalize_name, known):
            known.append(pair.child)
        parents_of.setdefault((normalize_name(pair.child), pair.parent_type), set()).add(normalize_name(pair.parent))
    parents_by_type = {kind: _unique(p.parent for p in reference if p.parent_type == kind) for kind in PARENT_TYPES}
    all_children = _unique(p.child for p in reference)
    queries = []
    for row, pair in enumerate(pairs):
        for direction in DIRECTIONS:
            if direction == "parent":
                question, target, accepted = parent_question(pair), pair.parent, (pair.parent,)
                pool = parents_by_type[pair.parent_type]
            else:
                question, target = child_question(pair), pair.child
                accepted = tuple(children_of[normalize_name(pair.parent)])
                pool = all_children
            excluded = {normalize_name(name) for name in (target, *accepted)}
            if direction == "parent":
                excluded |= parents_of[(normalize_name(pair.child), pair.parent_type)]
            candidates = [name for name in pool if normalize_name(name) not in excluded]
            rng = random.Random(f"{seed}:{row}:{direction}")
            distractors = tuple(rng.sample(candidates, min(n_distractors, len(candidates))))
            queries.append(Query(row, direction, question, target, accepted, distractors))
    return queries


def _unique(names) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(normalize_name(name), name)
    return list(seen.values())


Message = dict[str, str]
ChatRenderer = Callable[[list[Message]], str]


def chat_messages(question: str) -> list[Message]:
    """The chat prompt: system message, few-shot user/assistant turns, then the question."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shot_question, shot_answer in FEW_SHOT:
        messages += [{"role": "user", "content": shot_question}, {"role": "assistant", "content": shot_answer}]
    return messages + [{"role": "user", "content": question}]


def render_plain(messages: list[Message]) -> str:
    """Chat rendered as text for a tokenizer without a chat template; the answer follows ``Assistant:``."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def chat_renderer(tokenizer: Any | None) -> ChatRenderer:
    """How chat messages become the text a backend continues.

    With a chat template: ``apply_chat_template(..., add_generation_prompt=True, tokenize=False)``, with a
    leading BOS text removed (backends add BOS themselves; two would be a prompt the model never saw). A
    template that refuses a system role (some do) gets the system message folded into the first user turn.
    Without a template (or no tokenizer): ``render_plain``.
    """
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return render_plain
    bos = getattr(tokenizer, "bos_token", None)

    def render(messages: list[Message]) -> str:
        try:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # jinja raises its own TemplateError from the template's raise_exception
            if messages[0]["role"] != "system" or "system" not in str(error).lower():
                raise
            folded = [{"role": "user", "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}]
            text = tokenizer.apply_chat_template(
                folded + messages[2:], add_generation_prompt=True, tokenize=False
            )
        if bos and text.startswith(bos):
            text = text[len(bos) :]
        return text

    return render


def completion_prompt(question: str) -> str:
    """The few-shot completion prompt for base models; the answer follows ``A:`` and ends at a newline."""
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in FEW_SHOT)
    return f"{COMPLETION_HEADER}\n\n{shots}Q: {question}\nA:"


def continuation(prompt: str, name: str) -> str:
    """The text scored after ``prompt``: the name, after a space unless the prompt already ends in whitespace
    (a chat template's generation prompt ends with a newline; ``A:`` does not)."""
    return name if prompt[-1:].isspace() else " " + name


class ParentsBackend(Protocol):
    """What Experiment 2 asks of a backend; ``revcurse.probe.HFBackend`` has all three, and a server or vLLM
    backend plugs in by offering the same over rendered prompt strings.

    ``sample`` returns ``n`` answers per context, each cut at its end (newline or end of turn), for a
    temperature > 0; greedy answers (temperature 0) come from ``generate``.
    """

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]: ...

    def generate(self, contexts: list[str], max_new_tokens: int) -> list[str]: ...

    def sample(
        self, contexts: list[str], n: int, max_new_tokens: int, temperature: float = 1.0, seed: int = 0
    ) -> list[list[str]]: ...


@dataclass
class ParentsRun:
    """The outcome of ``run_parents``: tidy records, one answer line per (style, query), and timings."""

    records: list[dict]
    answers: list[dict]
    seconds: dict[str, float] = field(default_factory=dict)
    rendering: str = ""


def run_parents(
    pairs: Sequence[ParentChildPair],
    backend: ParentsBackend,
    tokenizer_or_renderer: Any | None = None,
    n_samples: int = 10,
    temperature: float = 1.0,
    max_new_tokens: int = 24,
    seed: int = 0,
    n_distractors: int = 10,
    reference: Sequence[ParentChildPair] | None = None,
    styles: Sequence[str] = STYLES,
    show_progress: bool = False,
    chunk_size: int = 64,
) -> ParentsRun:
    """Ask every pair both ways in every style: ``n_samples`` answers per query and log-probs of the names.

    ``tokenizer_or_renderer``: a tokenizer (its chat template, if any, renders chat prompts), a function from
    messages to text, or None (plain rendering). Temperature 0 answers greedily (one ``generate`` answer,
    counted ``n_samples`` times). Sampling runs in chunks of ``chunk_size`` prompts, chunk i seeded ``seed + i``.
    """
    if n_samples < 1:
        raise ValueError("n_samples must be at least 1")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    unknown = [style for style in styles if style not in STYLES]
    if unknown:
        raise ValueError(f"unknown style(s) {unknown}; known: {', '.join(STYLES)}")
    if callable(tokenizer_or_renderer) and not hasattr(tokenizer_or_renderer, "apply_chat_template"):
        render, rendering = tokenizer_or_renderer, "caller's renderer"
    else:
        render = chat_renderer(tokenizer_or_renderer)
        rendering = PLAIN_RENDERING if render is render_plain else "the tokenizer's chat template"
    queries = build_queries(pairs, reference, n_distractors, seed)
    items = []  # (style, query, prompt)
    for style in styles:
        for query in queries:
            prompt = render(chat_messages(query.question)) if style == "chat" else completion_prompt(query.question)
            items.append((style, query, prompt))
    prompts = [prompt for _, _, prompt in items]
    requests = [
        (prompt, continuation(prompt, name))
        for _, query, prompt in items
        for name in (query.target, *query.distractors)
    ]
    seconds: dict[str, float] = {}
    sampled: list[list[str]] = []
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("sample", total=len(prompts))
        start = time.perf_counter()
        for index, first in enumerate(range(0, len(prompts), chunk_size)):
            chunk = prompts[first : first + chunk_size]
            if temperature == 0:
                sampled += [[_first_line(answer)] * n_samples for answer in backend.generate(chunk, max_new_tokens)]
            else:
                drawn = backend.sample(chunk, n_samples, max_new_tokens, temperature, seed + index)
                sampled += [[_first_line(answer) for answer in answers] for answers in drawn]
            progress.advance(task, len(chunk))
        seconds["sample"] = time.perf_counter() - start
        progress.update(task, description="log-prob")
        start = time.perf_counter()
        scores = [score for score, _ in backend.loglikelihood(requests)] if requests else []
        seconds["logprob"] = time.perf_counter() - start
    answers = []
    cursor = 0
    for (style, query, prompt), samples in zip(items, sampled):
        if len(samples) != n_samples:
            raise RuntimeError(f"backend returned {len(samples)} answers for a query, expected {n_samples}")
        pair = pairs[query.row]
        names = (query.target, *query.distractors)
        logprobs = scores[cursor : cursor + len(names)]
        cursor += len(names)
        correct = [is_correct(answer, query.accepted) for answer in samples]
        others = logprobs[1:]
        rank = rank_among(logprobs[0], others)
        answers.append(
            {
                "style": style,
                "direction": query.direction,
                "row": query.row,
                "line": pair.line,
                "child": pair.child,
                "parent": pair.parent,
                "parent_type": pair.parent_type,
                "question": query.question,
                "prompt": prompt,
                "accepted": list(query.accepted),
                "answers": samples,
                "correct": correct,
                "any_correct": any(correct),
                "fraction_correct": sum(correct) / len(correct),
                "target": query.target,
                "logprob_correct": logprobs[0],
                "distractors": [{"name": n, "logprob": s} for n, s in zip(query.distractors, others)],
                "logprob_other": fmean(others) if others else math.nan,
                "logprob_rank": rank,
                "logprob_rank1": rank == 1 if others else None,
            }
        )
    return ParentsRun(parents_records(answers), answers, seconds, rendering)


def _first_line(answer: str) -> str:
    return answer.split("\n", 1)[0].strip()


ANY_CORRECT_TEST = MCNEMAR
PAIRED_T_TEST = f"{PAIRED_T} over rows"


def parents_records(answers: list[dict]) -> list[dict]:
    """Tidy records: per (style, direction, metric) a mean with its 95% interval, then per style the paired
    tests of parent vs child (direction ``parent-child``: mean is parent minus child).

    Intervals: Wilson (``metrics.wilson_interval``) for proportions over queries (any-correct, log-prob rank-1);
    Student t over queries for means (fraction-correct: the samples of one query are not independent, so the
    query is the unit). Log-prob metrics: ``logprob_correct`` (log p of the row's own answer), ``logprob_other``
    (mean log p of the distractors), ``logprob_gap`` (their difference, with Experiment 1's likelihood test:
    ``metrics.paired_test`` of the two over rows), ``logprob_rank1`` (the correct name beats every distractor),
    ``mrr_excess`` (reciprocal rank minus its chance value, with Experiment 1's rank test). Each row asks one
    question per direction, so rows are the facts.
    """
    records = []
    for style in [s for s in STYLES if any(a["style"] == s for a in answers)]:
        by_direction = {d: [a for a in answers if a["style"] == style and a["direction"] == d] for d in DIRECTIONS}
        for direction, group in by_direction.items():
            if not group:
                continue
            base = {"style": style, "direction": direction}
            n_samples = len(group[0]["answers"])
            scored = [a for a in group if a["logprob_rank1"] is not None]
            correct = [a["logprob_correct"] for a in scored]
            other = [a["logprob_other"] for a in scored]
            reciprocal = [1 / a["logprob_rank"] for a in scored]
            chance = [chance_mrr(1 + len(a["distractors"])) for a in scored]
            gap_p, rank_p, _ = randomization_tests(candidate_scores(scored))
            records += [
                _proportion(base, "any_correct", sum(a["any_correct"] for a in group), len(group), n_samples),
                _mean(base, "fraction_correct", [a["fraction_correct"] for a in group], n_samples, bounded=True),
                _mean(base, "logprob_correct", [a["logprob_correct"] for a in group]),
                _mean(base, "logprob_other", other),
                {**_mean(base, "logprob_gap", [x - y for x, y in zip(correct, other)]),
                 **_paired(PAIRED_T_TEST, correct, other), "randomization_p": gap_p},
                _proportion(base, "logprob_rank1", sum(a["logprob_rank1"] for a in scored), len(scored)),
                {**_mean(base, "mrr_excess", [x - y for x, y in zip(reciprocal, chance)]),
                 "test": RANK_STATISTIC, "statistic": None, "statistic_name": "randomization", "p_value": rank_p},
            ]  # fmt: skip
        records += paired_tests(style, by_direction["parent"], by_direction["child"])
    return records


RANK_TEST = "a randomization test over rows of the correct name's reciprocal rank among the distractors"


def candidate_scores(answers: list[dict]) -> list[tuple[list[dict[str, float]], str]]:
    """Each scored question as metrics' randomization tests and placebo take a fact: its candidates' log p (the
    row's answer and its distractors, by name) and the name of the correct one."""
    return [
        ([{a["target"]: a["logprob_correct"], **{d["name"]: d["logprob"] for d in a["distractors"]}}], a["target"])
        for a in answers if a["distractors"]
    ]


def parents_calibration(answers: list[dict], draws: int = 1000, alpha: float = 0.05, seed: int = 0) -> list[dict]:
    """The tests' false-positive rate under a placebo, per (style, direction): each question's answer swapped for
    one of its distractor names (``metrics.placebo_counts``), as Experiment 1's ``calibration.json``."""
    records = []
    for style in STYLES:
        for direction in DIRECTIONS:
            group = [a for a in answers if a["style"] == style and a["direction"] == direction]
            if group:
                for record in placebo_counts(candidate_scores(group), draws, alpha, seed):
                    records.append({"style": style, "direction": direction, **record})
    return records


def _paired(test: str, first: list[float], second: list[float]) -> dict:
    """A paired t-test's fields for a record: what was tested, t with its degrees of freedom, p."""
    t, p = paired_test(first, second)
    return {"test": test, "statistic": t, "statistic_name": f"t({len(first) - 1})", "p_value": p}


def _proportion(base: dict, metric: str, k: int, n: int, n_samples: int | None = None) -> dict:
    mean = k / n if n else math.nan
    low, high = wilson_interval(k, n)
    record = {**base, "metric": metric, "mean": mean, "ci95_low": low, "ci95_high": high, "n": n, "interval": "wilson"}
    return record if n_samples is None else {**record, "n_samples": n_samples}


def _mean(base: dict, metric: str, values: list[float], n_samples: int | None = None, bounded: bool = False) -> dict:
    if values:
        mean = fmean(values)
        low, high = t_interval(values)
        if bounded:
            low, high = max(0.0, low), min(1.0, high)
    else:
        mean = low = high = math.nan
    record = {**base, "metric": metric, "mean": mean, "ci95_low": low, "ci95_high": high, "n": len(values),
              "interval": "t"}
    return record if n_samples is None else {**record, "n_samples": n_samples}


def paired_tests(style: str, parent: list[dict], child: list[dict]) -> list[dict]:
    """Parent vs child on the same rows: McNemar on any-correct, paired t on fraction-correct and log p gap.

    A McNemar test with no discordant pairs has p = 1 (nothing tells the directions apart); a paired t whose
    differences are all equal is undefined (NaN).
    """
    child_by_row = {a["row"]: a for a in child}
    rows = [(p, child_by_row[p["row"]]) for p in parent if p["row"] in child_by_row]
    if not rows:
        return []
    base = {"style": style, "direction": "parent-child"}
    records = []
    parent_only = sum(p["any_correct"] and not c["any_correct"] for p, c in rows)
    child_only = sum(c["any_correct"] and not p["any_correct"] for p, c in rows)
    p_value = mcnemar_test(parent_only, child_only)
    differences = [float(p["any_correct"]) - float(c["any_correct"]) for p, c in rows]
    records.append(
        {**_mean(base, "any_correct_diff", differences), "test": ANY_CORRECT_TEST,
         "statistic": parent_only, "statistic_name": "parent-only rows (of the discordant)",
         "discordant": [parent_only, child_only], "p_value": float(p_value)}
    )
    for metric, value in (
        ("fraction_correct", lambda a: a["fraction_correct"]),
        ("logprob_gap", lambda a: a["logprob_correct"] - a["logprob_other"]),
    ):
        kept = [(value(p), value(c)) for p, c in rows if not (math.isnan(value(p)) or math.isnan(value(c)))]
        record = _mean(base, f"{metric}_diff", [x - y for x, y in kept])
        records.append({**record, **_paired(PAIRED_T_TEST, [x for x, _ in kept], [y for _, y in kept])})
    return records


def _lookup(records: list[dict], style: str, direction: str, metric: str) -> dict | None:
    for record in records:
        if (record["style"], record["direction"], record["metric"]) == (style, direction, metric):
            return record
    return None


def _percent(record: dict | None) -> str:
    if record is None or math.isnan(record["mean"]):
        return "n/a"
    return f"{100 * record['mean']:.0f}% [{100 * record['ci95_low']:.0f}, {100 * record['ci95_high']:.0f}]"


def _signed(record: dict | None) -> str:
    if record is None or math.isnan(record["mean"]):
        return "n/a"
    return f"{record['mean']:+.2f} [{record['ci95_low']:+.2f}, {record['ci95_high']:+.2f}]"


def _test(record: dict | None) -> str:
    if record is None:
        return "n/a"
    if record["metric"] == "any_correct_diff":
        parent_only, child_only = record["discordant"]
        return f"{parent_only}:{child_only} p={record['p_value']:.2g}"
    if math.isnan(record["statistic"]):
        return "n/a"
    return f"{record['statistic_name']}={record['statistic']:.2f} p={record['p_value']:.2g}"


RESULT_COLUMNS = {
    "style": "style",
    "asked": "asked",
    "queries": "queries",
    "any": "any correct",
    "fraction": "fraction correct",
    "rank1": "log p rank-1",
    "gap": "log p gap",
}
TEST_COLUMNS = {
    "style": "style",
    "any": "any correct: McNemar",
    "fraction": "fraction correct: paired t",
    "gap": "log p gap: paired t",
}
RESULT_CAPTION = (
    "parent: Who is X's mother/father?  child: Name a child of Y.  queries: questions x samples.  "
    "[95% CI]: Wilson for shares of questions, t for means."
)


TEST_CAPTION = "McNemar a:b = rows where only the parent (a) or only the child (b) was ever answered correctly."


def result_rows(records: list[dict]) -> list[dict[str, str]]:
    """One row per (style, asked direction), formatted in percent for proportions."""
    rows = []
    for style in STYLES:
        for direction in DIRECTIONS:
            first = _lookup(records, style, direction, "any_correct")
            if first is None:
                continue
            rows.append(
                {
                    "style": style,
                    "asked": direction,
                    "queries": f"{first['n']} x {first['n_samples']}",
                    "any": _percent(first),
                    "fraction": _percent(_lookup(records, style, direction, "fraction_correct")),
                    "rank1": _percent(_lookup(records, style, direction, "logprob_rank1")),
                    "gap": _signed(_lookup(records, style, direction, "logprob_gap")),
                }
            )
    return rows


def paired_test_rows(records: list[dict]) -> list[dict[str, str]]:
    """One row per style: the paired tests of parent vs child."""
    rows = []
    for style in STYLES:
        first = _lookup(records, style, "parent-child", "any_correct_diff")
        if first is None:
            continue
        rows.append(
            {
                "style": style,
                "any": _test(first),
                "fraction": _test(_lookup(records, style, "parent-child", "fraction_correct_diff")),
                "gap": _test(_lookup(records, style, "parent-child", "logprob_gap_diff")),
            }
        )
    return rows


def parents_tables(records: list[dict], title: str = "") -> tuple[Table, Table]:
    """The terminal tables: parent vs child per style, then the paired tests."""
    results = Table(title=title or None, caption=RESULT_CAPTION)
    for label in RESULT_COLUMNS.values():
        results.add_column(label, no_wrap=True)
    for row in result_rows(records):
        results.add_row(*(row[key] for key in RESULT_COLUMNS))
    tests = Table(title="Parent vs child, paired over rows", caption=TEST_CAPTION)
    for label in TEST_COLUMNS.values():
        tests.add_column(label, no_wrap=True)
    for row in paired_test_rows(records):
        tests.add_row(*(row[key] for key in TEST_COLUMNS))
    return results, tests


def _markdown(columns: dict[str, str], rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[key] for key in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_report(records: list[dict], summary: dict) -> str:
    """report.md: what was asked of which model, the two tables, and how to read them."""
    skipped = summary.get("skipped_lines")
    return (
        "# revcurse parents: Experiment 2, parent vs child\n\n"
        f"- pairs: {summary.get('pairs_file')} ({summary.get('rows_asked')} of {summary.get('rows')} rows"
        + (f"; {skipped} unusable row(s) skipped, listed in {SKIPPED_FILE}" if skipped else "")
        + ")\n"
        f"- model: {summary.get('model')}\n"
        f"- sampling: {summary.get('samples')} answers per query at temperature {summary.get('temperature')}, "
        f"at most {summary.get('max_new_tokens')} new tokens, seed {summary.get('seed')}\n"
        f"- chat prompts rendered with {summary.get('rendering')}\n"
        f"- log-prob: the row's answer against up to {summary.get('distractors')} other names of the file in the same "
        "role\n\n"
        + _markdown(RESULT_COLUMNS, result_rows(records))
        + f"\n{RESULT_CAPTION}\n\n"
        + _markdown(TEST_COLUMNS, paired_test_rows(records))
        + f"\n{TEST_CAPTION}\n"
        + "\nHow to read it: *any correct* is the share of questions with at least one correct sampled answer "
        "(95% Wilson interval); *fraction correct* the mean share of correct answers per question (t interval "
        "over questions). A child question counts any child the file lists for that parent. *log p rank-1* is the "
        "share of questions where the correct name is likelier than every distractor; *log p gap* is log p(correct)"
        " minus the mean log p of the distractors; within a direction it is tested by a "
        f"{PAIRED_T_TEST} of log p(correct) against that mean, and the rank by {RANK_TEST} (parents.json). The "
        "reversal curse shows as parent > child. Tests of parent vs child are paired over rows: "
        f"{ANY_CORRECT_TEST}; {PAIRED_T_TEST}.\n"
    )
