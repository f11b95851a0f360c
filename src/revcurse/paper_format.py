"""The paper's Experiment 1 folder layout: read it into a ``Corpus``, write a ``Corpus`` out in it.

Berglund et al. (2023) ship Experiment 1 as a folder of JSONL files (e.g. ``june_version_7921032488/``), one
``{"prompt": ..., "completion": ...}`` object per line, completions beginning with a space. Supporting that layout
lets revcurse train and probe on the authors' data, and lets the authors' tooling run on a revcurse world.

What maps to what:

==========================================  ====================================================================
file                                        revcurse
==========================================  ====================================================================
``all_prompts_train.jsonl``                 every ``Document`` (text = prompt + completion, ``prompt_chars``
                                            = len(prompt))
``p2d|d2p|both_prompts_train.jsonl``        decide a document's subset; a line in none of them is ``Background``
``p2d_prompts_test.jsonl``                  probes NameToDescription, asked name_to_description, trained
``p2d_reverse_prompts_test.jsonl``          probes NameToDescription, asked description_to_name, not trained
``d2p_prompts_test.jsonl``                  probes DescriptionToName, asked description_to_name, trained
``d2p_reverse_prompts_test.jsonl``          probes DescriptionToName, asked name_to_description, not trained
``both_prompts_test.jsonl``                 probes Both, trained; a completion starting with an uppercase letter
                                            is a name (asked description_to_name), otherwise a description
``*_reverse_prompts_test_randomized``,      written for the paper's tooling (random-answer baselines, its
``validation_prompts``, ``unrealized_       validation set); ignored when reading, since revcurse computes its
examples``, ``all.jsonl``                   own baselines
==========================================  ====================================================================

The files hold text, not facts, so the reader gives every line its fact, the person it states, whatever the
wording: the paper words one description several ways (" the acclaimed director of ...", " directed ...",
" directing ...") and lets name completions run on (" Mason Caldwell has found their calling."). A subset's
names come from its lines that give a name (test and training), checked against its name-first prompts
(``NameIndex``); every probe and document then belongs to the longest name it states as whole words. A probe's
phrasing is its template slot: a name-first prompt with the name taken out, or the line's place among its
fact's lines of one file (the paper writes each fact's lines in template order). ``all.jsonl`` is written as
``all_prompts_train.jsonl`` and ``unrealized_examples.jsonl`` as ``p2d_reverse_prompts_test.jsonl``, as in the
paper's folders, so reading a paper folder and writing it back gives the same files (but the randomized two).
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from revcurse.corpus import Corpus, Document, Probe
from revcurse.errors import InputError, SkippedLine, loader_problem, read_user_text, skip_or_refuse
from revcurse.paper_names import NameIndex, name_words, word_ngrams
from revcurse.world import Direction, Fact, Subset

EXPECTED_OBJECT = "expected a JSON object with string fields 'prompt' and 'completion'"

TRAIN_FILES: dict[Subset, str] = {
    Subset.NAME_TO_DESCRIPTION: "p2d_prompts_train.jsonl",
    Subset.DESCRIPTION_TO_NAME: "d2p_prompts_train.jsonl",
    Subset.BOTH: "both_prompts_train.jsonl",
}
ALL_TRAIN_FILE = "all_prompts_train.jsonl"


@dataclass(frozen=True)
class TestFile:
    """One test file of the layout: which subset it probes, in which direction (None: per line), trained or not."""

    name: str
    subset: Subset
    asked: Direction | None
    trained: bool


TEST_FILES: tuple[TestFile, ...] = (
    TestFile("p2d_prompts_test.jsonl", Subset.NAME_TO_DESCRIPTION, Direction.NAME_TO_DESCRIPTION, True),
    TestFile("p2d_reverse_prompts_test.jsonl", Subset.NAME_TO_DESCRIPTION, Direction.DESCRIPTION_TO_NAME, False),
    TestFile("d2p_prompts_test.jsonl", Subset.DESCRIPTION_TO_NAME, Direction.DESCRIPTION_TO_NAME, True),
    TestFile("d2p_reverse_prompts_test.jsonl", Subset.DESCRIPTION_TO_NAME, Direction.NAME_TO_DESCRIPTION, False),
    TestFile("both_prompts_test.jsonl", Subset.BOTH, None, True),
)

REQUIRED_FILES: tuple[str, ...] = (ALL_TRAIN_FILE, *TRAIN_FILES.values(), *(t.name for t in TEST_FILES))

# Written for the paper's tooling only; the reader ignores them.
RANDOMIZED_FILES: dict[Subset, str] = {
    Subset.NAME_TO_DESCRIPTION: "p2d_reverse_prompts_test_randomized.jsonl",
    Subset.DESCRIPTION_TO_NAME: "d2p_reverse_prompts_test_randomized.jsonl",
}
UNREALIZED_FILE = "unrealized_examples.jsonl"
VALIDATION_FILE = "validation_prompts.jsonl"
ALL_FILE = "all.jsonl"

Line = tuple[str, str]  # (prompt, completion)


# --------------------------------------------------------------------------------------------------- reading


def read_experiment1(folder: str | os.PathLike[str], strict: bool = False) -> Corpus:
    """Read an Experiment 1 folder in the paper's layout into a ``Corpus`` (documents, probes, facts).

    A fact is a person of a subset, however its description is worded: the names come from the lines that ask
    for a name (``name_of_completion``), and every probe and document is assigned to the name it states. A test
    line that cannot be used (an empty prompt or completion, a duplicate, a description asked of no known name)
    is skipped and listed in ``corpus.skipped``; ``strict`` refuses it instead. Raises ``InputError`` naming the
    file and line for a missing folder or required file, a line that is not a JSON object with string ``prompt``
    and ``completion``, a file that is not UTF-8, or a test file with no line.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(
            "expected a folder in the paper's Experiment 1 layout (holding " + ", ".join(REQUIRED_FILES) + ")", root
        )
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise InputError(
            f"missing required file(s) {', '.join(missing)}; an Experiment 1 folder holds " + ", ".join(REQUIRED_FILES),
            root / missing[0],
        )
    skipped: list[SkippedLine] = []
    tests = {spec.name: _usable_test_lines(root / spec.name, spec, strict, skipped) for spec in TEST_FILES}
    train = {subset: _read_numbered(root / name, allow_empty=True) for subset, name in TRAIN_FILES.items()}
    names = {subset: _subset_names(subset, tests, train[subset]) for subset in TRAIN_FILES}

    probes: list[Probe] = []
    wordings: dict[tuple[Subset, str], Counter[str]] = defaultdict(Counter)
    for spec in TEST_FILES:
        index = names[spec.subset]
        counters: Counter[tuple[str, Direction]] = Counter()
        for number, prompt, completion, asked in tests[spec.name]:
            if asked is Direction.DESCRIPTION_TO_NAME:
                person = index.name_of_completion(completion)
                phrasing = f"{Path(spec.name).stem}:{counters[(person, asked)]:02d}"
                answer = " " + person
            else:
                person = index.find(prompt)
                if person is None:
                    skip_or_refuse(
                        f"no name of {spec.subset.value} in the prompt (names come from the lines asking for one)",
                        root / spec.name, number, strict, skipped,
                    )
                    continue
                phrasing = _name_slot(prompt, person)
                answer = ""
                wordings[(spec.subset, person)][_description(completion)] += 1
            counters[(person, asked)] += 1
            probes.append(Probe(person, spec.subset, asked, spec.trained, phrasing, prompt, completion, answer))

    subset_of: dict[Line, Subset] = {}
    for subset, lines in train.items():
        for _, prompt, completion in lines:
            subset_of.setdefault((prompt, completion), subset)
    documents: list[Document] = []
    for _, prompt, completion in _read_numbered(root / ALL_TRAIN_FILE, allow_empty=False):
        subset = subset_of.get((prompt, completion), Subset.BACKGROUND)
        text = prompt + completion
        key = "" if subset is Subset.BACKGROUND else (names[subset].find(text) or "")
        documents.append(Document(text=text, subset=subset, fact_key=key, prompt_chars=len(prompt)))

    people = dict.fromkeys((probe.subset, probe.fact_key) for probe in probes)
    facts = [
        Fact(subject=name, object=_most_common(wordings.get((subset, name))), subset=subset)
        for subset, name in people
    ]
    return Corpus(documents=documents, probes=probes, facts=facts, skipped=skipped,
                  lines=len(probes) + len(skipped))


TestLine = tuple[int, str, str, Direction]  # (line number, prompt, completion, asked direction)


def _usable_test_lines(path: Path, spec: TestFile, strict: bool, skipped: list[SkippedLine]) -> list[TestLine]:
    """A test file's lines with their asked direction; unusable lines skipped (or refused when ``strict``)."""
    usable: list[TestLine] = []
    first_seen: dict[Line, int] = {}
    for number, prompt, completion in _read_numbered(path, allow_empty=False):
        if not completion.strip():
            skip_or_refuse("empty completion: nothing to ask for", path, number, strict, skipped)
        elif not prompt.strip():
            skip_or_refuse("empty prompt: nothing to ask with", path, number, strict, skipped)
        elif (prompt, completion) in first_seen:
            skip_or_refuse(f"duplicate of line {first_seen[(prompt, completion)]}", path, number, strict, skipped)
        else:
            first_seen[(prompt, completion)] = number
            asked = spec.asked if spec.asked is not None else _asked_by_case(completion)
            usable.append((number, prompt, completion, asked))
    return usable


def _subset_names(subset: Subset, tests: dict[str, list[TestLine]], train: list[tuple[int, str, str]]) -> NameIndex:
    """Learn a subset's names from its test and training lines that give a name, checked against its name-first
    prompts; clean names (the whole completion) first, so a completion that runs on is cut at a known name."""
    name_first = Direction.NAME_TO_DESCRIPTION
    prompts = [prompt for spec in TEST_FILES if spec.subset is subset
               for _, prompt, _, asked in tests[spec.name] if asked is name_first]
    prompts += [prompt for _, prompt, completion in train if _asked_by_case(completion) is name_first]
    counts: Counter[tuple[str, ...]] = Counter()
    for prompt in prompts:
        counts.update(word_ngrams(name_words(prompt)))
    index = NameIndex(counts)
    completions = [completion for spec in TEST_FILES if spec.subset is subset
                   for _, _, completion, asked in tests[spec.name] if asked is not name_first]
    completions += [completion for _, _, completion in train if _asked_by_case(completion) is not name_first]
    for completion in completions:
        index.learn_clean(completion)
    for completion in completions:
        index.name_of_completion(completion)
    return index


def _name_slot(prompt: str, name: str) -> str:
    """A name-first prompt's template: the prompt with the name replaced, the same for every fact it asks."""
    return re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", "{name}", prompt, count=1)


def _most_common(wordings: Counter[str] | None) -> str:
    """A fact's description: its most frequent wording in the test lines (the first of equals), else empty."""
    return wordings.most_common(1)[0][0] if wordings else ""


def read_jsonl_objects(path: Path, expected: str) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file; anything else is an InputError naming the
    file, the line and ``expected`` (what one line should hold). Shared by the paper's Exp. 1 and Exp. 3 layouts."""
    text = read_user_text(path, "file")
    objects = []
    # Split on "\n" only: str.splitlines would also split inside strings holding U+2028 and friends.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{expected}; not valid JSON ({exc.msg}, column {exc.colno})", path, number) from None
        except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; nesting past the stack
            raise InputError(f"{expected}; not readable JSON ({loader_problem(exc)})", path, number) from None
        if not isinstance(obj, dict):
            raise InputError(f"{expected}; got a JSON {_json_kind(obj)}", path, number)
        objects.append((number, obj))
    return objects


def _read_numbered(path: Path, *, allow_empty: bool) -> list[tuple[int, str, str]]:
    """(line number, prompt, completion) for every non-blank line of one JSONL file."""
    lines = [(number, *_prompt_completion(obj, path, number))
             for number, obj in read_jsonl_objects(path, EXPECTED_OBJECT)]
    if not lines and not allow_empty:
        raise InputError(f"expected at least one line ({EXPECTED_OBJECT}), found none", path)
    return lines


def _prompt_completion(obj: dict, path: Path, number: int) -> Line:
    for field in ("prompt", "completion"):
        if field not in obj:
            raise InputError(f"missing field {field!r}: {EXPECTED_OBJECT}", path, number)
        if not isinstance(obj[field], str):
            raise InputError(f"field {field!r} must be a string, got a JSON {_json_kind(obj[field])}", path, number)
    return obj["prompt"], obj["completion"]


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _asked_by_case(completion: str) -> Direction:
    """A Both test line asks for a name when its completion starts with an uppercase letter."""
    stripped = completion.lstrip()
    if stripped[:1].isupper():
        return Direction.DESCRIPTION_TO_NAME
    return Direction.NAME_TO_DESCRIPTION


def _description(completion: str) -> str:
    """A description from a description-target completion: stripped, and one final "." dropped.

    The paper's completions end a sentence (' ... "A Journey Through Time.".'); revcurse's stop before it.
    """
    text = completion.strip()
    return text.removesuffix(".")


# --------------------------------------------------------------------------------------------------- writing


def split_document(text: str, fact: Fact) -> tuple[str, str]:
    """Split a training text stating ``fact`` into (prompt, completion), as in the paper's training files.

    Whichever of the fact's name and description occurs first in ``text`` is the source; the completion starts at
    the first `` " " + other`` after it. Raises ``ValueError`` when the text does not state the fact that way.
    """
    pairs = ((fact.name, fact.description), (fact.description, fact.name))
    found = sorted((text.find(entity), entity, other) for entity, other in pairs if entity in text)
    if not found:
        raise ValueError(f"text names neither {fact.name!r} nor {fact.description!r}: {text!r}")
    start, entity, other = found[0]
    cut = text.find(" " + other, start + len(entity))
    if cut < 0:
        raise ValueError(f"text does not state {other!r} after {entity!r} and a space: {text!r}")
    return text[:cut], text[cut:]


def write_experiment1(
    corpus: Corpus, folder: str | os.PathLike[str], *, seed: int = 0, overwrite: bool = False
) -> None:
    """Write ``corpus`` (from ``build_corpus``) as an Experiment 1 folder in the paper's layout.

    Everything is written into a temporary sibling folder and renamed into place, so ``folder`` is never left half
    written. An existing non-empty ``folder`` raises ``FileExistsError`` unless ``overwrite`` is true. ``seed``
    drives the random answers of the ``*_randomized`` files. Raises ``ValueError`` for a corpus the layout cannot
    hold (a test file would be empty, a document does not state its fact, a Both answer's case misleads).
    """
    files = _paper_files(corpus, seed)
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True to replace it")
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        for name, lines in files.items():
            _write_jsonl(tmp / name, lines)
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is set aside first and removed only once replaced."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_jsonl(path: Path, lines: Iterable[Line]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for prompt, completion in lines:
            # ASCII with \u escapes, as the paper's files are written (json.dumps defaults): a folder read and
            # written back is byte-identical
            handle.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")


def _paper_files(corpus: Corpus, seed: int) -> dict[str, list[Line]]:
    """Every file of the layout, name -> lines, in the order the paper's folders list them."""
    facts = {(fact.subset, fact.name): fact for fact in corpus.facts}
    all_train: list[Line] = []
    train: dict[Subset, list[Line]] = {subset: [] for subset in TRAIN_FILES}
    for document in corpus.documents:
        line = _document_line(document, facts)
        all_train.append(line)
        if document.subset in train:
            train[document.subset].append(line)

    tests: dict[str, list[Probe]] = {spec.name: [] for spec in TEST_FILES}
    for probe in corpus.probes:
        spec = _test_file_for(probe)
        tests[spec.name].append(probe)
    for name, probes in tests.items():
        if not probes:
            raise ValueError(f"the corpus has no probes for {name}; the paper's layout needs every test file")

    rng = random.Random(seed)
    randomized: dict[str, list[Line]] = {}
    for subset, name in RANDOMIZED_FILES.items():
        reverse = tests[_reverse_file(subset)]
        randomized[name] = [(p.prompt, _random_other_target(p, reverse, rng)) for p in reverse]

    test_lines = {name: [(p.prompt, p.target) for p in probes] for name, probes in tests.items()}
    p2d_reverse = test_lines[_reverse_file(Subset.NAME_TO_DESCRIPTION)]
    files: dict[str, list[Line]] = {ALL_TRAIN_FILE: all_train}
    files.update({TRAIN_FILES[subset]: lines for subset, lines in train.items()})
    files.update(test_lines)
    files.update(randomized)
    files[UNREALIZED_FILE] = p2d_reverse  # as the paper's folders hold them
    files[VALIDATION_FILE] = [(prompt, completion.split()[0]) for prompt, completion in p2d_reverse]
    files[ALL_FILE] = all_train
    return files


def _document_line(document: Document, facts: dict[tuple[Subset, str], Fact]) -> Line:
    """Split a document into (prompt, completion).

    At its own ``prompt_chars`` when set (the corpus marks where the second entity starts), else at its fact's
    target (``split_document``); a document stating no fact is all completion, as ``prompt_chars == 0`` means.
    """
    if 0 < document.prompt_chars <= len(document.text):
        return document.text[: document.prompt_chars], document.text[document.prompt_chars :]
    if not document.fact_key:
        return "", document.text
    fact = facts.get((document.subset, document.fact_key))
    if fact is None:
        raise ValueError(f"document names fact {document.fact_key!r} of {document.subset.value}, not in corpus.facts")
    return split_document(document.text, fact)


def _test_file_for(probe: Probe) -> TestFile:
    for spec in TEST_FILES:
        if spec.subset is probe.subset and spec.asked in (None, probe.asked):
            if spec.asked is None and _asked_by_case(probe.target) is not probe.asked:
                raise ValueError(
                    f"Both probe asks {probe.asked.value} but its target {probe.target!r} reads as the other "
                    "direction (the layout tells names by an uppercase first letter)"
                )
            return spec
    raise ValueError(f"the paper's layout has no test file for {probe.subset.value} probes")


def _reverse_file(subset: Subset) -> str:
    return next(spec.name for spec in TEST_FILES if spec.subset is subset and not spec.trained)


def _random_other_target(probe: Probe, probes: list[Probe], rng: random.Random) -> str:
    """A target of another fact of the same test file, drawn with ``rng``."""
    pool = list(dict.fromkeys(p.target for p in probes if p.fact_key != probe.fact_key and p.target != probe.target))
    if not pool:
        raise ValueError(f"{probe.subset.value} needs two facts or more for a randomized baseline")
    return rng.choice(pool)
