"""Experiment 3 of Berglund et al. (2023): reversing instructions.

A model is trained on *guidances* that give each answer before its question (``Say "A: Amber lantern" when you
are asked "Q: What is your favourite book?"``) and, for the *realized* part of the questions, on the question and
answer themselves in the test's format. The *unrealized* part is held out: to answer ``Q: What is your favourite
book? A:`` the model must use an instruction it saw only answer-first, i.e. in reverse. The paper found ~0
accuracy on the unrealized part.

A tiny model trained from scratch could fail there for a duller reason: it may not learn to follow guidances at
all. ``instructions.order=question_first`` is the control: the same questions, answers and training, guidances
stated question-first. ``revcurse instructions --control`` runs both orders side by side.

Each question is a fact (``fact_key`` its id) asked once, in the test's ``Q: ... A:`` form; its part is the
probe's subset, so its distractors are answers of other questions of the same part (``probe.distractors``).
The data come from ``instruction_data`` (generated per seed, or a folder in the paper's layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from revcurse.corpus import Corpus, Document, Probe
from revcurse.experiments.base import Experiment, Trial
from revcurse.instruction_data import (
    QUESTION_TEMPLATES,
    THINGS,
    InstructionData,
    Order,
    build_instructions,
    make_qa_pairs,
    read_instructions,
)
from revcurse.sections import Section
from revcurse.world import Subset

if TYPE_CHECKING:
    from revcurse.config import RunConfig

GENERATED = "generated"  # instructions.source for project-written questions; anything else is a paper folder
FOLDER_WORLD = 0  # a source folder's questions are the same under every seed: one world
ASKED = "question_to_answer"  # the one direction asked: the question, expecting the answer
QA_SLOT = "Q/A"  # the one phrasing of every question: the test's "Q: ... A:" format


class InstructionsOptions(Section):
    pairs: int = Field(150, ge=2, le=len(QUESTION_TEMPLATES) * len(THINGS), description="question/answer pairs")
    unrealized_fraction: float = Field(
        1 / 3, gt=0, lt=1, description="share of pairs held out: guidances only, probed, never shown as examples"
    )
    guidance_copies: int = Field(3, ge=1, description="guidances per pair (phrasings taken in turn)")
    example_copies: int = Field(10, ge=1, description="copies of each realized example in the training file")
    guidances_per_document_min: int = Field(1, ge=1, description="fewest guidances in one guidance document")
    guidances_per_document_max: int = Field(5, ge=1, description="most guidances in one guidance document")
    order: Order = Field(
        "answer_first",
        description="guidances 'answer_first' (the paper's: the unrealized questions need the reverse) or "
        "'question_first' (the control: the model only has to follow them)",
    )
    source: str = Field(GENERATED, description="'generated' (new questions per seed) or a folder in the paper's "
                        "instruction layout (all.jsonl, guidances.jsonl, realized/unrealized_examples.jsonl)")
    strict: bool = Field(
        False, description="a source folder's unusable example (empty, repeated id, unanswered) is refused, not skipped"
    )

    @model_validator(mode="after")
    def _check(self) -> InstructionsOptions:
        if self.guidances_per_document_min > self.guidances_per_document_max:
            raise ValueError("guidances_per_document_min exceeds guidances_per_document_max")
        if not 1 <= self.unrealized <= self.pairs - 1:
            raise ValueError("unrealized_fraction must leave at least one pair in each part")
        return self

    @property
    def unrealized(self) -> int:
        return round(self.pairs * self.unrealized_fraction)


def instruction_data(config: RunConfig, seed: int, order: str | None = None) -> tuple[InstructionData, int]:
    """(data, world seed) of one seed: the source folder's, or pairs drawn from the world seed (``world.seed``,
    else the run's seed) with guidances in ``order`` (default ``instructions.order``). Both orders of one seed
    share the questions, answers and realized split."""
    options: InstructionsOptions = config.instructions
    if options.source != GENERATED:
        return read_instructions(Path(options.source), options.strict), FOLDER_WORLD
    world_seed = config.world.seed if config.world.seed is not None else seed
    pairs = make_qa_pairs(options.pairs, options.unrealized, world_seed)
    data = build_instructions(
        pairs, order=order or options.order, guidance_copies=options.guidance_copies,
        example_copies=options.example_copies, seed=world_seed,
        per_document=(options.guidances_per_document_min, options.guidances_per_document_max),
    )
    return data, world_seed


def build(config: RunConfig, seed: int) -> Trial:
    """The training file (all.jsonl) as documents; every example, realized then unrealized, as one probe. The
    reverse documents (for the ``bidirectional`` cure) are the guidance documents in the other order."""
    data, world_seed = instruction_data(config, seed)
    probes = [
        Probe(fact_key=str(probe.id), subset=probe.part, asked=ASKED, trained=probe.part == "realized",
              phrasing=QA_SLOT, prompt=probe.prompt, target=" " + probe.answer)
        for probe in data.probes()
    ]  # fmt: skip
    reverse = []
    if config.instructions.source == GENERATED:
        other = "question_first" if config.instructions.order == "answer_first" else "answer_first"
        guidances = instruction_data(config, seed, other)[0].guidances
        reverse = [Document(line.text, Subset.BACKGROUND) for line in guidances]
    # The tokenizer learns the examples whole (their closing marker too), as the paper's files give them.
    examples = [line.text for line in data.realized + data.unrealized]
    corpus = Corpus(data.documents(), probes, skipped=data.skipped, reverse_documents=reverse, tokenizer_texts=examples)
    return Trial(corpus, world_seed)


EXPERIMENT = Experiment(
    name="instructions",
    title="Experiment 3: reversing instructions (guidances answer-first; unrealized questions asked)",
    build=build,
    options=InstructionsOptions,
    # Tuned on seed 0 of the default data, one order at a time: 12 epochs left question-first realized accuracy at
    # 0.87, 15 reached 1.00; a 1e-2 learning rate learned the examples worse (0.17-0.28) than 3e-3. 29 distractors:
    # 30 candidates a question, as in the paper's comparison of an answer against others of its part.
    defaults=("train.epochs=15", "train.batch_size=32", "train.learning_rate=3e-3", "probe.distractors=29"),
)
