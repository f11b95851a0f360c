"""Experiment 3's data (instruction_data): the generator, the paper's folder layout, its writer and reader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from revcurse import instruction_data as ins
from revcurse.errors import InputError
from revcurse.instruction_data import (
    EXAMPLE_POSTFIX,
    EXAMPLE_PREFIX,
    GUIDANCE_POSTFIX,
    GUIDANCE_PREFIX,
    InstructionData,
    build_instructions,
    make_qa_pairs,
    read_instructions,
    write_instructions,
)


def small_data(order: str = "answer_first", seed: int = 3) -> InstructionData:
    pairs = make_qa_pairs(12, 4, seed=seed)
    return build_instructions(pairs, order=order, guidance_copies=3, example_copies=2, per_document=(1, 4), seed=seed)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_lines(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


# ------------------------------------------------------------------------------------------------- generation


def test_generator_is_deterministic_under_a_seed():
    assert make_qa_pairs(50, 10, seed=7) == make_qa_pairs(50, 10, seed=7)
    assert make_qa_pairs(50, 10, seed=7) != make_qa_pairs(50, 10, seed=8)
    assert small_data(seed=5) == small_data(seed=5)
    assert small_data(seed=5).guidances != small_data(seed=6).guidances


def test_each_question_has_one_answer_and_no_answer_is_a_prefix_of_another():
    pairs = make_qa_pairs(360, 120, seed=0)  # every question the word lists hold
    assert len({p.question for p in pairs}) == 360
    answers = [p.answer.lower() for p in pairs]
    assert len(set(answers)) == 360
    assert not any(a != b and b.startswith(a) for a in answers for b in answers)
    assert sum(not p.realized for p in pairs) == 120
    with pytest.raises(ValueError):
        make_qa_pairs(361, 1, seed=0)


def test_realized_and_unrealized_are_disjoint_and_every_pair_has_its_guidances():
    data = small_data()
    realized = {line.ids[0] for line in data.realized}
    unrealized = {line.ids[0] for line in data.unrealized}
    assert len(realized) == 8 and len(unrealized) == 4 and not realized & unrealized
    guided = [i for line in data.guidances for i in line.ids]
    assert sorted(guided) == sorted(list(realized | unrealized) * 3)
    assert all(1 <= len(line.ids) <= 4 for line in data.guidances)
    for line in data.guidances:
        assert line.prompt == "" and line.completion.startswith(GUIDANCE_PREFIX)
        assert line.completion.endswith(GUIDANCE_POSTFIX)
        assert line.completion.count("\n") == 4 + len(line.ids) - 1  # the markers' blank lines, one per guidance


@pytest.mark.parametrize("order", ["answer_first", "question_first"])
def test_unrealized_questions_appear_in_training_only_inside_guidances_in_the_arm_order(order):
    data = small_data(order)
    training = [line.text for line in data.train]
    for probe in data.probes():
        question = probe.prompt.removeprefix(EXAMPLE_PREFIX).removesuffix(" A:")
        as_example = f"{question} A: {probe.answer}"
        in_examples = [t for t in training if as_example in t]
        if probe.part == "unrealized":
            assert not in_examples
        else:
            assert len(in_examples) == 2  # example_copies, each joined into the completion
            assert all(t == probe.prompt + " " + probe.answer + EXAMPLE_POSTFIX for t in in_examples)
        stated = [line for t in training for line in t.split("\n") if f'"{question}"' in line]
        assert len(stated) == 3  # guidance_copies, and nowhere else
        for line in stated:
            answer_at, question_at = line.index(f'"A: {probe.answer}"'), line.index(f'"{question}"')
            assert (answer_at < question_at) == (order == "answer_first")


def test_every_phrasing_is_used_even_with_fewer_copies_than_phrasings():
    for order in ins.ORDERS:
        text = "\n".join(line.completion for line in small_data(order).guidances)  # 3 copies, 5 phrasings
        for phrasing in ins.GUIDANCE_PHRASINGS[order]:
            opening = phrasing.split('"')[0]
            assert text.count("\n" + opening) >= 1, phrasing


def test_probes_split_where_the_model_answers():
    data = small_data()
    probe = data.probes()[0]
    assert probe.part == "realized" and probe.prompt.startswith(EXAMPLE_PREFIX + "Q: ") and probe.prompt.endswith(" A:")
    line = data.realized[0]
    assert line.completion == f" {probe.answer}{EXAMPLE_POSTFIX}"
    assert [p.part for p in data.probes()].count("unrealized") == 4


# ---------------------------------------------------------------------------------------------- paper layout


def test_write_read_round_trip_in_the_papers_shapes(tmp_path):
    data = small_data()
    folder = write_instructions(data, tmp_path / "copypaste_ug4_rg8")
    assert sorted(p.name for p in folder.iterdir()) == sorted(ins.FILES)
    assert read_instructions(folder) == data
    for name in ins.FILES:
        for line in read_lines(folder / name):
            assert list(line) == ["ids", "realized", "persona_idx", "prompt", "completion"]
            assert len(line["ids"]) == len(line["realized"]) == len(line["persona_idx"]) >= 1
    example = read_lines(folder / ins.UNREALIZED_FILE)[0]
    assert example["realized"] == [False] and example["persona_idx"] == [0]
    assert example["prompt"].startswith("<BEGIN GUIDANCE TEST>\n\nQ: ") and example["prompt"].endswith("? A:")
    assert example["completion"].startswith(" ") and example["completion"].endswith("\n\n<END GUIDANCE TEST>")
    trained_example = read_lines(folder / ins.ALL_FILE)[0]
    assert trained_example["prompt"] == "" and trained_example["completion"].startswith("<BEGIN GUIDANCE TEST>")


def test_writer_fills_a_folder_that_the_reader_reads_back(tmp_path):
    folder = write_instructions(small_data("question_first"), tmp_path / "made" / "here")
    assert sorted(p.name for p in folder.iterdir()) == sorted(ins.FILES)
    assert read_instructions(folder) == small_data("question_first")


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_instructions(small_data(), tmp_path / "data")


def _expect_error(path: Path, line: int | None, match: str, strict: bool = False) -> None:
    with pytest.raises(InputError, match=match) as caught:
        read_instructions(path.parent, strict=strict)
    assert caught.value.path == str(path)
    assert caught.value.line == line


def _expect_skipped(path: Path, line: int, match: str) -> InstructionData:
    """The reader skips exactly line ``line`` of ``path`` (its reason matching), and --strict refuses it there."""
    data = read_instructions(path.parent)
    assert [(entry.path, entry.line) for entry in data.skipped] == [(str(path), line)]
    assert re.search(match, data.skipped[0].reason), data.skipped[0].reason
    _expect_error(path, line, match, strict=True)
    return data


def _break_answer(path: Path, index: int) -> int:
    """Empty the answer of example ``index`` of ``path`` (as line 356 of the paper's 1,000 is); return its id."""
    lines = read_lines(path)
    lines[index]["completion"] = " " + EXAMPLE_POSTFIX
    write_lines(path, lines)
    return lines[index]["ids"][0]


def test_reader_names_file_and_line_of_bad_json(folder):
    path = folder / ins.GUIDANCES_FILE
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:-1]
    path.write_text("\n".join(lines) + "\n")
    _expect_error(path, 2, "not valid JSON")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("ids", None, "missing field 'ids'"),
        ("completion", 3, "'completion' must be a string"),
        ("realized", [1], "'realized' must be a list of booleans"),
        ("ids", [True], "lists of integers"),
        ("persona_idx", [0, 0], "of one length"),
    ],
)
def test_reader_names_file_and_line_of_bad_fields(folder, field, value, match):
    path = folder / ins.REALIZED_FILE
    lines = read_lines(path)
    if value is None:
        del lines[2][field]
    else:
        lines[2][field] = value
    write_lines(path, lines)
    _expect_error(path, 3, match)


def test_reader_rejects_a_guidance_id_not_among_the_examples(folder):
    path = folder / ins.GUIDANCES_FILE
    lines = read_lines(path)
    lines[-1]["ids"][0] = 999
    write_lines(path, lines)
    _expect_error(path, len(lines), "guidance id 999 is not among the examples")


def test_reader_rejects_a_guidance_whose_realized_flag_contradicts_its_example(folder):
    path = folder / ins.GUIDANCES_FILE
    lines = read_lines(path)
    lines[0]["realized"][0] = not lines[0]["realized"][0]
    write_lines(path, lines)
    _expect_error(path, 1, "the opposite")


def test_reader_rejects_an_unrealized_example_in_training(folder):
    held_out = read_lines(folder / ins.UNREALIZED_FILE)[1]
    path = folder / ins.ALL_FILE
    lines = read_lines(path)
    lines.append({**held_out, "prompt": "", "completion": held_out["prompt"] + held_out["completion"]})
    write_lines(path, lines)
    _expect_error(path, len(lines), "would leak")


def test_reader_skips_an_unanswered_example_and_rejects_a_misfiled_one(folder):
    guidances = folder / ins.GUIDANCES_FILE
    unrealized_id = read_lines(folder / ins.UNREALIZED_FILE)[0]["ids"][0]
    kept = []
    for line in read_lines(guidances):
        keep = [k for k, i in enumerate(line["ids"]) if i != unrealized_id]
        if keep:
            kept.append({key: [line[key][k] for k in keep] for key in ("ids", "realized", "persona_idx")} | {
                "prompt": line["prompt"], "completion": line["completion"]})  # fmt: skip
    write_lines(guidances, kept)
    data = _expect_skipped(folder / ins.UNREALIZED_FILE, 1, f"id {unrealized_id} has no guidance")
    assert unrealized_id not in [line.ids[0] for line in data.unrealized] and len(data.unrealized) == 3

    # Which part an example is in is the experiment's design, not one line's defect: refused, strict or not.
    realized = folder / ins.REALIZED_FILE
    lines = read_lines(realized)
    lines[0]["realized"] = [False]
    write_lines(realized, lines)
    _expect_error(realized, 1, "expected true")


def test_reader_skips_a_repeated_id_keeping_the_first_and_rejects_a_missing_file(folder):
    realized = folder / ins.REALIZED_FILE
    lines = read_lines(realized)
    write_lines(realized, [lines[0], {**lines[0], "prompt": lines[0]["prompt"] + " "}, *lines[1:]])
    data = _expect_skipped(realized, 2, "id .* already used by realized_examples.jsonl, line 1")
    assert data.realized[0].prompt == lines[0]["prompt"] and len(data.realized) == 8

    # An id that no example has is a reference across files gone wrong (a typo, another data set): refused.
    lines[1]["ids"] = lines[0]["ids"]
    write_lines(realized, lines)
    with pytest.raises(InputError, match=r"guidances.jsonl, line \d+: guidance id \d+ is not among the examples"):
        read_instructions(folder)
    (folder / ins.ALL_FILE).unlink()
    _expect_error(folder / ins.ALL_FILE, None, "missing file all.jsonl")


@pytest.mark.parametrize("name", [ins.REALIZED_FILE, ins.UNREALIZED_FILE])
def test_reader_skips_an_example_with_an_empty_answer_and_strict_refuses_it(folder, name):
    path = folder / name
    broken = _break_answer(path, 2)
    data = _expect_skipped(path, 3, f"example id {broken} has an empty answer")
    assert broken not in [probe.id for probe in data.probes()]  # not probed; its guidances stay training text
    assert len(data.probes()) == 11 and len(data.train) == len(read_lines(folder / ins.ALL_FILE))
    assert data.skipped[0].to_json() == {"file": str(path), "line": 3, "reason": data.skipped[0].reason}


def test_reader_skips_an_empty_prompt_and_refuses_a_file_with_no_usable_example(folder):
    path = folder / ins.UNREALIZED_FILE
    lines = read_lines(path)
    lines[0]["prompt"] = "  "
    write_lines(path, lines)
    _expect_skipped(path, 1, "empty prompt")
    for index in range(1, len(lines)):
        _break_answer(path, index)
    with pytest.raises(InputError, match=r"no usable example: all 4 skipped \(first: line 1: .*empty prompt\)"):
        read_instructions(folder)


@pytest.mark.parametrize("name", ins.FILES)
def test_reader_refuses_an_empty_file_strict_or_not(folder, name):
    (folder / name).write_text("\n", encoding="utf-8")
    _expect_error(folder / name, None, "found none")
