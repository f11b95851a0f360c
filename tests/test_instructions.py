"""Experiment 3 (experiments/instructions.py and `revcurse instructions`): its trial, its probes through the shared
scorer and statistics, and a tiny end-to-end run of both guidance orders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from revcurse.cli import main
from revcurse.config import load_config
from revcurse.errors import InputError
from revcurse.experiments.instructions import ASKED, FOLDER_WORLD, build
from revcurse.instruction_data import EXAMPLE_POSTFIX, REALIZED_FILE, build_instructions, make_qa_pairs
from revcurse.instruction_data import write_instructions as write_data
from revcurse.metrics import aggregate, lookup, placebo_rejections
from revcurse.probe import run_probes
from tests.fakes import FakeBackend


def config(*overrides: str):
    return load_config(None, ["experiment=instructions", *overrides])


def run_cli(args: list) -> int:
    """``revcurse ARGS`` in-process, as a user runs it (errors exit 2); the exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    return exit_info.value.code


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def folder(tmp_path) -> Path:
    """A small data folder in the paper's layout (12 questions, 4 unrealized)."""
    data = build_instructions(make_qa_pairs(12, 4, seed=3), guidance_copies=3, example_copies=2, per_document=(1, 4))
    return write_data(data, tmp_path / "data")


def test_defaults_are_the_tuned_training_and_30_candidates_and_options_are_checked():
    loaded = config()
    assert (loaded.train.epochs, loaded.train.batch_size, loaded.train.learning_rate) == (15, 32, 3e-3)
    assert loaded.probe.distractors == 29 and loaded.instructions.order == "answer_first"
    assert config("train.epochs=2").train.epochs == 2  # the user's value wins over the experiment's
    assert config("instructions.pairs=30").instructions.unrealized == 10
    with pytest.raises(InputError, match="instructions.order"):
        config("instructions.order=sideways")
    with pytest.raises(InputError, match="exceeds"):
        config("instructions.guidances_per_document_min=6")


@pytest.mark.parametrize("order", ["answer_first", "question_first"])
def test_trial_asks_each_question_once_grouped_by_part_and_never_trains_an_unrealized_example(order):
    trial = build(config("instructions.pairs=30", f"instructions.order={order}"), seed=4)
    assert trial.world_seed == 4
    probes = trial.corpus.probes
    assert [p.subset for p in probes].count("unrealized") == 10 and len(probes) == 30
    assert len({p.fact_key for p in probes}) == 30  # one probe per question, the id its fact
    assert all(p.asked == ASKED and p.trained == (p.subset == "realized") and p.phrasing == "Q/A" for p in probes)
    texts = [d.text for d in trial.corpus.documents]
    for probe in probes:
        assert probe.prompt.endswith(" A:") and probe.target.startswith(" ") and EXAMPLE_POSTFIX not in probe.target
        shown = sum(probe.prompt + probe.target + EXAMPLE_POSTFIX == text for text in texts)
        assert shown == (10 if probe.trained else 0)  # example_copies, or held out
    flipped = "question_first" if order == "answer_first" else "answer_first"
    other = build(config("instructions.pairs=30", f"instructions.order={flipped}"), seed=4)
    assert [(p.prompt, p.target) for p in other.corpus.probes] == [(p.prompt, p.target) for p in probes]
    # the bidirectional cure's statements: this order's guidance documents are the other order's reverse ones
    guidance_texts = [d.text for d in other.corpus.documents if d.text.startswith("<BEGIN GUIDANCE ANSWERS>")]
    assert [d.text for d in trial.corpus.reverse_documents] == guidance_texts


def test_distractors_are_answers_of_other_questions_of_the_same_part_capped():
    corpus = build(config("instructions.pairs=60"), seed=1).corpus
    results = run_probes(FakeBackend(), corpus, 4, False, distractors=5, seed=1)
    part_of = {p.fact_key: p.subset for p in corpus.probes}
    for result in results:
        assert result.n_candidates == 6 and result.fact_key not in result.distractor_keys
        assert all(part_of[key] == result.subset for key in result.distractor_keys)


@pytest.mark.parametrize("test", ["likelihood", "rank"])
def test_under_a_placebo_the_tests_reject_about_alpha(test):
    corpus = build(config(), seed=0).corpus  # the default sizes: 150 questions, 30 candidates each
    runs = [(0, 0, run_probes(FakeBackend(), corpus, 4, False, distractors=29, seed=0))]
    placebo = [r for r in placebo_rejections(runs, draws=400, alpha=0.05) if r["test"] == test]
    assert [(r["subset"], r["n_facts"]) for r in placebo] == [("realized", 100), ("unrealized", 50)]
    assert all(r["rate"] <= 0.083 for r in placebo), placebo  # alpha + 3 standard errors of 400 draws


def test_a_model_that_follows_only_what_it_was_shown_scores_realized_right_and_unrealized_at_chance():
    """The shape the paper reports, through the shared scorer and metrics.aggregate: right where the question
    was an example, at chance where only the answer-first guidance states it."""
    corpus = build(config("instructions.pairs=40"), seed=2).corpus
    shown = {p.prompt: p.target for p in corpus.probes if p.trained}
    backend = FakeBackend({(prompt, target): -0.5 for prompt, target in shown.items()}, shown)
    records = aggregate([(2, 2, run_probes(backend, corpus, 4, False, distractors=29, seed=2))])
    assert lookup(records, "realized", ASKED, "accuracy")["mean"] == 1.0
    assert lookup(records, "realized", ASKED, "likelihood_p")["mean"] < 0.01
    assert lookup(records, "unrealized", ASKED, "accuracy")["mean"] == 0.0
    assert lookup(records, "unrealized", ASKED, "likelihood_p")["mean"] > 0.05


def test_a_source_folder_is_one_world_and_its_skipped_examples_travel_with_the_trial(folder):
    path = folder / REALIZED_FILE
    lines = read_lines(path)
    lines[2]["completion"] = " " + EXAMPLE_POSTFIX
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    trial = build(config(f"instructions.source={folder}"), seed=5)
    assert trial.world_seed == FOLDER_WORLD and len(trial.corpus.probes) == 11
    assert [(s.path, s.line) for s in trial.corpus.skipped] == [(str(path), 3)]
    with pytest.raises(InputError, match="empty answer"):
        build(config(f"instructions.source={folder}", "instructions.strict=true"), seed=5)


TINY = [
    "instructions.pairs=12", "instructions.guidance_copies=2", "instructions.example_copies=2",
    "probe.distractors=3", "model.hidden_size=32", "model.intermediate_size=64", "model.heads=2", "model.layers=1",
    "model.vocab_size=400", "train.epochs=2", "train.batch_size=16", "train.threads=1",
]  # fmt: skip


@pytest.mark.slow
def test_cli_control_runs_both_orders_into_run_folders_that_show_reads(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["instructions", *sets(TINY), "--control", "--quiet", "--out", out]) == 0
    assert "question first" in capsys.readouterr().out
    assert (out / "control.md").is_file() and (out / "report.html").is_file()
    questions = []
    for order in ("answer_first", "question_first"):
        arm = out / f"order-{order}"
        records = json.loads((arm / "metrics.json").read_text())
        assert {(r["subset"], r["asked"], r["trained"]) for r in records} == {
            ("realized", ASKED, True), ("unrealized", ASKED, False)}
        predictions = read_lines(arm / "predictions.jsonl")
        assert [p["subset"] for p in predictions].count("unrealized") == 4 and len(predictions) == 12
        assert all(p["n_candidates"] == 4 for p in predictions)
        questions.append(sorted(p["prompt"] for p in predictions))
        assert run_cli(["show", arm]) == 0
    assert questions[0] == questions[1]  # the two orders ask the same questions
    assert "| answer first | realized |" in (out / "control.md").read_text()


def test_cli_write_writes_the_first_seeds_data_and_refuses_an_existing_folder(tmp_path):
    assert run_cli(["instructions", *sets(TINY), "--write", tmp_path / "data"]) == 0
    assert len(read_lines(tmp_path / "data" / "unrealized_examples.jsonl")) == 4
    assert run_cli(["instructions", *sets(TINY), "--write", tmp_path / "data"]) == 2


def test_cli_strict_refuses_an_unusable_example_in_one_line_and_writes_nothing(folder, tmp_path, capsys):
    path = folder / REALIZED_FILE
    lines = read_lines(path)
    lines[2]["completion"] = " " + EXAMPLE_POSTFIX
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "runs" / "run"
    assert run_cli(["instructions", "--from", folder, "--strict", "--quiet", "--out", out, *sets(TINY)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}, line 3: example id {lines[2]['ids'][0]} has an empty answer" in err
    assert not (tmp_path / "runs").exists()
    assert run_cli(["instructions", "--from", folder, "--control", "--out", out, *sets(TINY)]) == 2
