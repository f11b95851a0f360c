"""Experiment 2, real celebrities: models name a celebrity's parent far more often than the parent's child.

Berglund et al. (2023, section 3) took (celebrity, parent) pairs, asked "Who is Tom Cruise's mother?" and, for the
same pair, "Name a child of Mary Lee Pfeiffer." GPT-4 found the parent 79% of the time and the child 33%: the fact
is in the weights in the direction it is usually written, much less in the other. Nothing is trained here: the
probes ask a given model (``model.checkpoint``, or any server with ``probe.backend=openai``) both questions of each
row of ``parents.pairs`` (the paper's ``parent_child_pairs.csv`` layout, read by ``pairs_file``), in two styles:

- **chat** (setting ``chat``): a terse system message, few-shot question/answer turns, then the question, as a
  conversation (``Probe.messages``): the runner renders it with the tokenizer's chat template (plain ``System: /
  User: / Assistant:`` text without one), or sends it to a server's chat endpoint;
- **completion** (setting ``completion``): a few-shot ``Q: ... / A: ...`` text for base models, ending in ``A:``.

Each probe is one row (``fact_key``: its line) asked one way (``asked``: parent or child), grouped by parent type
(``subset``). The one scorer samples ``probe.samples`` answers (any-correct, fraction-correct; a child question is
answered by any child the file knows for that parent, ``Probe.accepted``) and ranks the row's answer by log-prob
against other names of the same role (other mothers for a mother question, other children of the same parent
type for a child question). The metrics pair parent against child over rows (McNemar, paired t), per parent
type and over all rows (``pooled``: the paper's figures pool mothers and fathers).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from revcurse.corpus import Corpus, Probe
from revcurse.errors import InputError
from revcurse.experiments.base import Column, Experiment, Trial
from revcurse.pairs_file import ParentChildPair, normalize_name, read_parent_child_pairs
from revcurse.sections import Section

if TYPE_CHECKING:
    from revcurse.config import RunConfig

STYLES = ("chat", "completion")
PARENT, CHILD = "parent", "child"  # "parent": who is X's mother?  "child": name a child of Y
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


class ParentsOptions(Section):
    pairs: str | None = Field(None, description="CSV of child,parent,parent_type[,child_prediction,can_reverse]")
    styles: list[Literal["chat", "completion"]] = Field(
        list(STYLES), min_length=1, description="how each question is asked: 'chat' turns, 'completion' Q:/A: text"
    )
    few_shot: bool = Field(True, description="put the few-shot question/answer examples before each question")
    limit: int | None = Field(
        None, ge=1, description="ask only the first N usable rows (accepted answers still come from the whole file)"
    )
    strict: bool = Field(False, description="refuse an unusable row (empty name, unknown parent_type, duplicate)")


def parent_question(pair: ParentChildPair) -> str:
    return f"Who is {pair.child}'s {pair.parent_type}?"


def child_question(pair: ParentChildPair) -> str:
    return f"Name a child of {pair.parent}."


def chat_messages(question: str, few_shot: bool = True) -> tuple[tuple[str, str], ...]:
    """The chat conversation: system message, few-shot user/assistant turns, then the question."""
    turns = [turn for q, a in (FEW_SHOT if few_shot else ()) for turn in (("user", q), ("assistant", a))]
    return (("system", SYSTEM_PROMPT), *turns, ("user", question))


def completion_prompt(question: str, few_shot: bool = True) -> str:
    """The few-shot completion prompt for base models; the answer follows ``A:`` and ends at a newline."""
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in (FEW_SHOT if few_shot else ()))
    return f"{COMPLETION_HEADER}\n\n{shots}Q: {question}\nA:"


def accepted_answers(pairs: list[ParentChildPair]) -> tuple[dict[str, list[str]], dict[tuple[str, str], list[str]]]:
    """What the whole file counts right: each parent's children, and each (child, parent type)'s parents."""
    children: dict[str, list[str]] = {}
    parents: dict[tuple[str, str], list[str]] = {}
    for pair in pairs:
        children.setdefault(normalize_name(pair.parent), []).append(pair.child)
        parents.setdefault((normalize_name(pair.child), pair.parent_type), []).append(pair.parent)
    return children, parents


def build(config: RunConfig, seed: int) -> Trial:
    """Two probes per row and style (parent, child); no documents: nothing is trained."""
    options: ParentsOptions = config.parents
    if not options.pairs:
        raise InputError("the parents experiment asks parents.pairs: the pairs CSV (revcurse parents PAIRS.csv)")
    read = read_parent_child_pairs(Path(options.pairs), options.strict)
    spelling: dict[str, str] = {}  # one person, one spelling (the first): case and spacing make no new person
    named = [replace(p, child=spelling.setdefault(normalize_name(p.child), p.child),
                     parent=spelling.setdefault(normalize_name(p.parent), p.parent)) for p in read.pairs]
    children, parents = accepted_answers(named)
    asked = named[: options.limit] if options.limit else named
    probes = []
    for style in options.styles:
        for pair in asked:
            fact = f"line {pair.line}"
            for direction, question, answer, known in (
                (PARENT, parent_question(pair), pair.parent, parents[(normalize_name(pair.child), pair.parent_type)]),
                (CHILD, child_question(pair), pair.child, children[normalize_name(pair.parent)]),
            ):
                others = tuple(dict.fromkeys(n for n in known if normalize_name(n) != normalize_name(answer)))
                if style == "chat":
                    prompt, messages = question, chat_messages(question, options.few_shot)
                else:
                    prompt, messages = completion_prompt(question, options.few_shot), ()
                probes.append(Probe(fact, pair.parent_type, direction, False, style, prompt, f" {answer}",
                                    setting=style, accepted=others, messages=messages))
    # The file is the world: every seed asks the same rows (seeds differ only in their samples).
    return Trial(Corpus([], probes, skipped=read.skipped), world_seed=0)


EXPERIMENT = Experiment(
    name="parents",
    title="Experiment 2: who is X's parent, and name a child of Y, asked of a given model",
    build=build,
    options=ParentsOptions,
    defaults=("probe.samples=10",),
    pooled="all parent types",
    columns=(
        Column("any correct", metric="any_correct"),
        Column("fraction correct", metric="fraction_correct"),
        Column("log p rank-1", metric="rank1"),
        Column("log p gap", metric="likelihood_diff"),
    ),
)
