"""Experiment 3 (reversing instructions): generator, the paper's folder layout, probing and a tiny end-to-end run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

from revcurse import instructions as ins
from revcurse.cli import app, main
from revcurse.errors import InputError
from revcurse.instructions import (
    EXAMPLE_POSTFIX,
    EXAMPLE_PREFIX,
    GUIDANCE_POSTFIX,
    GUIDANCE_PREFIX,
    InstructionData,
    build_instructions,
    load_instructions_config,
    make_qa_pairs,
    read_instructions,
    run_instructions,
    write_instructions,
)
from revcurse.metrics import placebo_rejections
from tests.fakes import FakeBackend


def run_cli(args: list) -> int:
    """``revcurse ARGS`` in-process, as a user runs it (errors exit 2); the exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    return exit_info.value.code


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


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


def test_writer_refuses_an_existing_folder_unless_asked(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="exists"):
        write_instructions(small_data(), folder)
    assert (folder / "keep.txt").exists()
    write_instructions(small_data(), folder, overwrite=True)
    assert not (folder / "keep.txt").exists() and (folder / ins.ALL_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging folder left behind


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


def test_config_overrides_and_validation():
    assert load_instructions_config().instructions.orders == ["answer_first"]  # the paper's arm only
    config = load_instructions_config(None, ["instructions.pairs=30", "instructions.orders=[question_first]"])
    assert config.instructions.unrealized == 10 and config.instructions.orders == ["question_first"]
    with pytest.raises(InputError, match="instructions.orders"):
        load_instructions_config(None, ["instructions.orders=[sideways]"])
    with pytest.raises(InputError, match="exceeds"):
        load_instructions_config(None, ["instructions.guidances_per_document_min=6"])


def test_probe_ranks_against_distinct_answers_of_the_same_part_only():
    probes = [
        ins.InstructionProbe(1, "realized", "q1", "Yes"),
        ins.InstructionProbe(2, "realized", "q2", "yes"),  # the paper repeats short answers
        ins.InstructionProbe(3, "realized", "q3", "No"),
        ins.InstructionProbe(4, "realized", "q4", "Maybe"),
        ins.InstructionProbe(5, "unrealized", "q5", "Amber lantern"),
        ins.InstructionProbe(6, "unrealized", "q6", "Quiet meadow"),
    ]
    backend = FakeBackend(
        {("q1", " Yes"): -1.0, ("q1", " No"): -2.0, ("q5", " Quiet meadow"): -1.0, ("q5", " Amber lantern"): -3.0},
        {"q1": " Yes\n\n<END", "q2": " No", "q3": " no way", "q4": " May", "q5": " Quiet meadow", "q6": ""},
        default=-10.0,
    )
    results = ins.probe_instructions(backend, probes, seed=0, arm="answer_first", max_new_tokens=4, candidates=3)
    asked = backend.candidates([r.n_candidates for r in results])
    assert asked[0][0] == " Yes" and set(asked[0][1:]) <= {" No", " Maybe"}  # "yes" of q2 is the same answer
    assert asked[4] == [" Amber lantern", " Quiet meadow"]  # realized answers are not candidates
    assert [r.correct for r in results] == [True, False, True, False, False, False]
    first, unrealized = results[0], results[4]
    assert first.rank == 1 and first.n_candidates == len(asked[0]) <= 3
    assert first.logprob_other == sum(backend.score(("q1", c)) for c in asked[0][1:]) / (len(asked[0]) - 1)
    assert unrealized.rank == 2 and unrealized.logprob_correct == -3.0 and unrealized.n_candidates == 2
    assert unrealized.distractor_keys == ["6"] and unrealized.distractor_logprobs == [-1.0]


def random_results(
    n_pairs: int = 60, unrealized: int = 20, seeds: tuple[int, ...] = (0,), arm: str = "answer_first",
    candidates: int = 16,
) -> list[ins.InstructionResult]:
    """Probe results of a model that knows nothing: every answer's log-prob an independent draw."""
    results = []
    for seed in seeds:
        pairs = make_qa_pairs(n_pairs, unrealized, seed=0 if arm == "folder" else seed)
        probes = build_instructions(pairs, seed=seed).probes()
        backend = FakeBackend({(p.prompt, " " + p.answer): -4.0 + 0.3 * seed for p in probes[::7]})
        results += ins.probe_instructions(backend, probes, seed, arm, max_new_tokens=4, candidates=candidates)
    return results


@pytest.mark.parametrize("candidates", [5, 100])
def test_distractors_are_other_questions_answers_capped_at_k(candidates):
    pairs = make_qa_pairs(60, 20, seed=1)
    probes = build_instructions(pairs, seed=1).probes()
    backend = FakeBackend()
    results = ins.probe_instructions(backend, probes, 0, "answer_first", max_new_tokens=4, candidates=candidates)
    scored = backend.candidates([r.n_candidates for r in results])
    part_of = {p.id: p.part for p in probes}
    answer_of = {p.id: p.answer for p in probes}
    for probe, result, asked in zip(probes, results, scored):
        others = sum(p.part == probe.part for p in probes) - 1
        assert result.n_candidates == len(asked) == 1 + min(candidates - 1, others)  # capped, whatever the size
        assert asked[0] == " " + probe.answer
        assert {a.strip().casefold() for a in asked[1:]}.isdisjoint({probe.answer.casefold()})
        assert str(probe.id) not in result.distractor_keys
        assert all(part_of[int(key)] == probe.part for key in result.distractor_keys)  # same part only
        assert asked[1:] == [" " + answer_of[int(key)] for key in result.distractor_keys]
        assert result.distractor_logprobs == [backend.score((probe.prompt, a)) for a in asked[1:]]
    assert len(backend.requests) == sum(r.n_candidates for r in results)


# --------------------------------------------------------------------------------------------------- metrics


def result(seed: int, part: str, correct: bool, gap: float, index: int) -> ins.InstructionResult:
    return ins.InstructionResult(
        seed=seed, arm="answer_first", part=part, id=index, prompt="p", answer="a", completion="a" if correct else "b",
        correct=correct, logprob_correct=-5.0 + gap, logprob_other=-5.0, rank=1.0 if correct else 3.0,
        n_candidates=5,
    )  # fmt: skip


def test_aggregate_intervals_over_seeds_and_wilson_for_one_seed():
    one_seed = [result(0, "unrealized", False, 0.1 * (i % 3 - 1), i) for i in range(20)]
    records = ins.aggregate_instructions(one_seed)
    accuracy = ins._lookup(records, "answer_first", "unrealized", "accuracy")
    assert accuracy["mean"] == 0 and accuracy["ci95_low"] == 0 and 0.1 < accuracy["ci95_high"] < 0.2
    assert accuracy["interval"] == "Wilson over questions"
    assert ins._lookup(records, "answer_first", "unrealized", "likelihood_t_p")["mean"] > 0.5

    seeds = [result(s, "realized", i < 8 + s, 2.0 + 0.1 * i, i) for s in range(3) for i in range(10)]
    records = ins.aggregate_instructions(seeds)
    accuracy = ins._lookup(records, "answer_first", "realized", "accuracy")
    assert accuracy["per_seed"] == [0.8, 0.9, 1.0] and accuracy["interval"] == "t over seeds"
    assert accuracy["ci95_low"] < 0.9 < accuracy["ci95_high"] <= 1.0
    t = ins._lookup(records, "answer_first", "realized", "likelihood_t")
    assert t["df"] == 29 and t["mean"] > 10


def chance(n: int) -> float:
    return sum(1 / k for k in range(1, n + 1)) / n


def means(groups: list[list[ins.InstructionResult]], value) -> list[float]:
    """Per group (a fact's probes), the mean of ``value``."""
    return [sum(value(r) for r in group) / len(group) for group in groups]


@pytest.mark.parametrize(("arm", "seeds"), [("answer_first", (0,)), ("answer_first", (0, 1, 2)), ("folder", (0, 1, 2))])
def test_aggregate_matches_scipy_over_questions_and_each_mean_is_inside_its_interval(arm, seeds):
    results = random_results(40, 15, seeds, arm)
    records = ins.aggregate_instructions(results)
    for part in ins.PARTS:
        items = [r for r in results if r.part == part]
        # a folder's questions are the same under every seed: one fact each, averaged over seeds
        facts: dict[tuple[int, int], list[ins.InstructionResult]] = {}
        for r in items:
            facts.setdefault((0 if arm == "folder" else r.seed, r.id), []).append(r)
        assert {len(v) for v in facts.values()} == {len(seeds) if arm == "folder" else 1}

        groups = list(facts.values())
        likelihood = stats.ttest_rel(
            means(groups, lambda r: r.logprob_correct), means(groups, lambda r: r.logprob_other)
        )
        rank = stats.ttest_rel(means(groups, lambda r: 1 / r.rank), means(groups, lambda r: chance(r.n_candidates)))
        t = ins._lookup(records, arm, part, "likelihood_t")
        assert t["mean"] == pytest.approx(likelihood.statistic) and t["df"] == len(facts) - 1
        assert ins._lookup(records, arm, part, "likelihood_t_p")["mean"] == pytest.approx(likelihood.pvalue)
        assert 0 < ins._lookup(records, arm, part, "rank_p")["mean"] <= 1  # the randomization test
        assert rank.statistic is not None
        accuracy = ins._lookup(records, arm, part, "accuracy")
        assert accuracy["interval"] == ("t over seeds" if len(seeds) > 1 else "Wilson over questions")
        per_seed = [sum(r.correct for r in items if r.seed == s) / (len(items) / len(seeds)) for s in seeds]
        assert accuracy["per_seed"] == pytest.approx(per_seed)
    assert {r["metric"] for r in records} >= {"mrr_excess", "rank_p", "likelihood_diff", "logprob_other"}
    for record in records:
        if record["ci95_low"] is not None:
            assert record["ci95_low"] - 1e-12 <= record["mean"] <= record["ci95_high"] + 1e-12, record


@pytest.mark.parametrize("test", ["likelihood", "rank"])
def test_under_a_placebo_the_tests_reject_at_most_7_percent(test):
    runs = ins.instruction_runs(random_results(150, 50, candidates=30))  # the default sizes
    placebo = [r for r in placebo_rejections(runs, draws=400, alpha=0.05) if r["test"] == test]
    assert [(r["asked"], r["n_facts"]) for r in placebo] == [("realized", 100), ("unrealized", 50)]
    for record in placebo:
        assert record["draws"] == 400
        assert record["rate"] <= 0.07, record


# ------------------------------------------------------------------------------------------------ end to end

TINY = [
    "instructions.pairs=12",
    "instructions.guidance_copies=2",
    "instructions.example_copies=2",
    "instructions.candidates=4",
    "model.hidden_size=32",
    "model.intermediate_size=64",
    "model.heads=2",
    "model.layers=1",
    "model.vocab_size=400",
    "train.epochs=2",
    "train.batch_size=16",
    "train.threads=1",
]


@pytest.mark.slow
def test_tiny_run_writes_a_run_folder_with_records_for_both_parts(tmp_path):
    config = load_instructions_config(None, TINY)
    outcome = run_instructions(config, tmp_path / "run", show_progress=False, log=lambda _: None)
    folder = outcome.folder
    for name in ("config.yaml", "instructions.json", "predictions.jsonl", "report.md", "run.json", "skipped.jsonl"):
        assert (folder / name).is_file(), name
    assert (folder / "skipped.jsonl").read_text() == ""  # always written: nothing was skipped
    assert json.loads((folder / "run.json").read_text())["skipped_lines"] == 0
    assert read_instructions(folder / "seed-0" / "answer_first" / "data").unrealized
    records = json.loads((folder / "instructions.json").read_text())
    parts = {(r["part"], r["metric"]) for r in records}
    for part in ("realized", "unrealized"):
        for metric in ("accuracy", "rank1", "mrr", "likelihood_diff", "likelihood_t", "likelihood_p", "mrr_excess",
                       "rank_p"):  # fmt: skip
            assert (part, metric) in parts
    predictions = read_lines(folder / "predictions.jsonl")
    assert [p["part"] for p in predictions].count("unrealized") == 4
    assert [p["part"] for p in predictions].count("realized") == 8
    assert all(p["n_candidates"] == 4 == 1 + len(p["distractor_keys"]) == 1 + len(p["distractor_logprobs"])
               for p in predictions)  # fmt: skip
    assert "| answer first | unrealized | no |" in (folder / "report.md").read_text()
    with pytest.raises(InputError, match="exists"):
        run_instructions(config, folder, show_progress=False, log=lambda _: None)


@pytest.mark.slow
def test_tiny_run_from_a_folder_in_the_papers_layout(tmp_path):
    source = write_instructions(small_data(), tmp_path / "source")
    config = load_instructions_config(None, TINY)
    outcome = run_instructions(config, tmp_path / "run", source=source, show_progress=False, log=lambda _: None)
    assert {r["arm"] for r in outcome.records} == {"folder"}
    assert {(r.part, r.id) for r in outcome.results} == {(p.part, p.id) for p in small_data().probes()}
    assert not (outcome.folder / "seed-0" / "folder" / "data").exists()


@pytest.mark.slow
def test_cli_runs_the_control_arm_and_writes_the_papers_layout(tmp_path):
    runner = CliRunner()
    overrides = [arg for item in TINY for arg in ("--set", item)]
    run = runner.invoke(app, ["instructions", *overrides, "--control", "--quiet", "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    assert "question first" in run.output and "unrealized" in run.output
    records = json.loads((tmp_path / "run" / "instructions.json").read_text())
    assert {r["arm"] for r in records} == {"answer_first", "question_first"}

    written = runner.invoke(app, ["instructions", *overrides, "--write", str(tmp_path / "data")])
    assert written.exit_code == 0, written.output
    assert len(read_instructions(tmp_path / "data").unrealized) == 4


def test_cli_strict_refuses_an_unusable_example_in_one_line_and_writes_nothing(folder, tmp_path, capsys):
    path = folder / ins.REALIZED_FILE
    broken = _break_answer(path, 2)
    out = tmp_path / "runs" / "run"
    assert run_cli(["instructions", "--from", folder, "--strict", "--quiet", "--out", out, *sets(TINY)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {path}, line 3: example id {broken} has an empty answer (nothing before <END GUIDANCE TEST>) "
        "(--strict refuses an unusable line; without it the line is skipped)"
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_cli_skips_an_unusable_example_with_a_warning_and_records_it_in_the_run_folder(folder, tmp_path, capsys):
    path = folder / ins.REALIZED_FILE
    broken = _break_answer(path, 2)
    out = tmp_path / "run"
    assert run_cli(["instructions", "--from", folder, "--quiet", "--out", out, *sets(TINY)]) == 0
    reason = f"example id {broken} has an empty answer (nothing before <END GUIDANCE TEST>)"
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"warning: {path}, line 3: {reason}; skipped",
        "warning: skipped 1 unusable line(s) of 12; pass --strict to refuse instead",
    ]
    assert read_lines(out / "skipped.jsonl") == [{"file": str(path), "line": 3, "reason": reason}]
    assert json.loads((out / "run.json").read_text())["skipped_lines"] == 1
    assert "skipped: 1 unusable example line(s)" in (out / "report.md").read_text()
    predictions = read_lines(out / "predictions.jsonl")
    assert len(predictions) == 11 and broken not in [p["id"] for p in predictions]
