"""The command line end to end: a smoke run, the run folder, and bad input (exit code 2, nothing left behind)."""

import json
import re

import pytest

from revcurse.cli import main
from tests.test_train import strict_json

SMALL = [
    "--set", "world.facts_per_subset=3", "--set", "world.background=12", "--set", "corpus.train_phrasings=4",
    "--set", "corpus.held_out_phrasings=2", "--set", "corpus.background_phrasings=2", "--set", "train.epochs=1",
    "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64", "--set", "model.heads=2",
    "--set", "model.vocab_size=600",
]


def run_cli(args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "smoke"
    assert run_cli(["demo", "--quiet", "--out", str(out), "--seeds", "2", *SMALL]) == 0
    return out


def test_demo_writes_a_complete_run_folder(smoke_run):
    for name in ("config.yaml", "metrics.json", "predictions.jsonl", "report.md", "run.json"):
        assert (smoke_run / name).is_file(), name
    for seed in (0, 1):
        assert (smoke_run / f"seed-{seed}" / "model" / "model.safetensors").is_file()
        assert (smoke_run / f"seed-{seed}" / "model" / "tokenizer.json").is_file()
        assert (smoke_run / f"seed-{seed}" / "train_log.jsonl").is_file()
    records = json.loads((smoke_run / "metrics.json").read_text())
    required = {"subset", "asked", "trained", "metric", "mean", "ci95_low", "ci95_high", "n_seeds", "n_items"}
    assert all(required <= record.keys() for record in records)
    assert {r["subset"] for r in records} == {"NameToDescription", "DescriptionToName", "Both"}
    assert {r["metric"] for r in records} >= {"accuracy", "likelihood_t", "likelihood_p", "rank1", "mrr"}
    assert all(r["n_seeds"] == 2 for r in records)
    predictions = [json.loads(line) for line in (smoke_run / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2 * 9 * 2 * 2  # seeds x facts x directions x held-out phrasings
    assert {p["seed"] for p in predictions} == {0, 1}
    # no staging folders left beside the run
    assert [p.name for p in smoke_run.parent.iterdir()] == ["smoke"]
    # the tests' false-positive rate under a placebo, measured on this run (a generated world)
    calibration = json.loads((smoke_run / "calibration.json").read_text())
    assert len(calibration) == 6 * 3 and all(r["draws"] == 1000 for r in calibration)
    assert all(r["rate"] <= 0.07 for r in calibration if r["test"] != "paper_t")


def test_existing_run_folder_is_refused_without_overwrite(smoke_run, capsys):
    before = (smoke_run / "metrics.json").read_text()
    assert run_cli(["demo", "--quiet", "--out", str(smoke_run), *SMALL]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (smoke_run / "metrics.json").read_text() == before


def test_show_prints_the_table_from_records(smoke_run, capsys):
    assert run_cli(["show", str(smoke_run)]) == 0
    output = capsys.readouterr().out
    assert "DescriptionToName" in output and "accuracy" in output


def test_bad_paper_folder_exits_2_and_leaves_no_run_folder(tmp_path, capsys):
    paper = tmp_path / "paper"
    paper.mkdir()
    out = tmp_path / "runs" / "bad"
    assert run_cli(["demo", "--quiet", "--paper", str(paper), "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "all_prompts_train.jsonl" in err or "p2d_prompts_train.jsonl" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not any((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else True


def test_malformed_line_in_paper_folder_names_file_and_line(tmp_path, capsys):
    paper = tmp_path / "paper"
    assert run_cli(["generate", "--out", str(paper), *SMALL]) == 0
    lines = (paper / "d2p_prompts_test.jsonl").read_text().splitlines()
    lines[1] = '{"prompt": "Who is", "completion": '
    (paper / "d2p_prompts_test.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "runs" / "bad"
    assert run_cli(["demo", "--quiet", "--paper", str(paper), "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "d2p_prompts_test.jsonl" in err and "line 2" in err
    assert not out.exists()


def test_missing_field_in_paper_folder(tmp_path, capsys):
    paper = tmp_path / "paper"
    assert run_cli(["generate", "--out", str(paper), *SMALL]) == 0
    (paper / "p2d_prompts_test.jsonl").write_text('{"prompt": "x"}\n')
    assert run_cli(["import", str(paper)]) == 2
    err = capsys.readouterr().err
    assert "p2d_prompts_test.jsonl" in err and "line 1" in err and "completion" in err


def test_demo_trains_and_probes_on_a_paper_folder(tmp_path):
    paper = tmp_path / "paper"
    assert run_cli(["generate", "--out", str(paper), *SMALL]) == 0
    out = tmp_path / "run"
    assert run_cli(["demo", "--quiet", "--paper", str(paper), "--out", str(out), *SMALL]) == 0
    records = json.loads((out / "metrics.json").read_text())
    assert {(r["subset"], r["asked"]) for r in records} == {
        (s, a) for s in ("NameToDescription", "DescriptionToName", "Both")
        for a in ("name_to_description", "description_to_name")
    }


def test_bad_override_exits_2(tmp_path, capsys):
    assert run_cli(["demo", "--quiet", "--out", str(tmp_path / "x"), "--set", "train.epochs=zero"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_help_teaches():
    assert run_cli(["--help"]) == 0
    assert run_cli(["demo", "--help"]) == 0


TINY_MODEL = [
    "--set", "train.epochs=2", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64",
    "--set", "model.heads=2", "--set", "model.vocab_size=900",
]


@pytest.mark.slow
def test_a_paper_folder_with_an_unusable_line_runs_names_it_and_is_calibrated(tmp_path, capsys):
    from tests.paper_folders import untidy_paper_folder

    untidy_paper_folder(tmp_path / "paper", facts_per_subset=8, background=16, empty_line=True)
    out = tmp_path / "run"
    assert run_cli(["train", "--quiet", "--paper", str(tmp_path / "paper"), "--out", str(out), *TINY_MODEL]) == 0
    printed = capsys.readouterr().out
    assert "p2d_prompts_test.jsonl, line 2: empty completion" in printed and "skipped 1 unusable line" in printed
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["line"], s["reason"]) for s in skipped] == [(2, "empty completion: nothing to ask for")]
    records = json.loads((out / "metrics.json").read_text())
    for record in records:
        if record.get("ci95_low") is not None:
            assert record["ci95_low"] - 1e-9 <= record["mean"] <= record["ci95_high"] + 1e-9, record
    assert {r["n_facts"] for r in records if r["metric"] == "accuracy"} == {8}
    calibration = json.loads((out / "calibration.json").read_text())
    assert {r["test"] for r in calibration} == {"paper_t", "likelihood", "rank"}
    assert all(r["draws"] == 1000 and r["rate"] <= 0.07 for r in calibration if r["test"] != "paper_t")
    assert "Calibration" in (out / "report.md").read_text()
    assert run_cli(["calibrate", str(out), "--draws", "200"]) == 0
    assert "rank randomization" in capsys.readouterr().out
    # --strict refuses the folder: exit 2, nothing written
    assert run_cli(["train", "--quiet", "--strict", "--paper", str(tmp_path / "paper"), "--out",
                    str(tmp_path / "strict"), *TINY_MODEL]) == 2
    assert "line 2: empty completion" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists() and not (tmp_path / ".strict.partial").exists()


def test_import_counts_facts_per_subset_not_wordings(tmp_path, capsys):
    from tests.paper_folders import untidy_paper_folder

    untidy_paper_folder(tmp_path / "paper", facts_per_subset=7)
    assert run_cli(["import", str(tmp_path / "paper")]) == 0
    printed = capsys.readouterr().out
    assert "21 facts" in printed and printed.count(" 7 facts,") == 3
    assert "NameToDescription  asked description_to_name  reverse: 26 probes of 7 facts (3-4 a fact)" in printed


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        ("seed: 0\nseeds: 3\nseeds: 4\n", [], "config.yaml, line 3: key 'seeds' given twice (first on line 2)"),
        ("train:\n  learning_rate: .inf\n", [], "config.yaml, line 2: train.learning_rate: '.inf' is not a finite"),
        ("seed: 0\n", ["--set", "train.learning_rate=-.inf"], "--set train.learning_rate: '-.inf' is not a finite"),
    ],
)
def test_a_config_with_a_key_given_twice_or_a_non_finite_number_exits_2_and_writes_nothing(
    tmp_path, capsys, text, args, expected
):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    out = tmp_path / "runs" / "bad"
    assert run_cli(["train", "--quiet", "--config", str(config), "--out", str(out), *SMALL, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err
    assert not (tmp_path / "runs").exists()


def test_a_diverging_run_stops_with_one_line_marked_failed_and_resumable_never_finished(tmp_path, capsys):
    out = tmp_path / "runs" / "nan"
    diverging = [*SMALL, "--set", "train.learning_rate=1e30", "--set", "train.batch_size=8"]
    code = run_cli(["train", "--quiet", "--out", str(out), *diverging, "--set", "train.checkpoint_every=1"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    step = int(re.search(r"training seed 0 stopped at step (\d+) of \d+: the loss is nan", err).group(1))
    staging = tmp_path / "runs" / ".nan.partial"
    assert f"marked failed in {staging} with a checkpoint after step {step - 1}" in err
    assert f"revcurse train --resume {out}" in err and "--overwrite" in err
    assert not out.exists()  # never a finished run
    status = json.loads((staging / "status.json").read_text())
    assert status["status"] == "failed" and f"NonFiniteLoss: training seed 0 stopped at step {step}" in status["error"]
    assert [p.name for p in (staging / "seed-0" / "checkpoints").iterdir()] == [f"step-{step - 1:07d}"]
    log = (staging / "seed-0" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == step - 1 and all(strict_json(line)["loss"] > 0 for line in log)  # strict JSON: no bare NaN
    assert run_cli(["status", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"{out}: failed" in shown and f"stopped at step {step} of" in shown and "--resume" in shown
    # Without a checkpoint before the step there is nothing to resume: nothing is left behind, and it says so.
    assert run_cli(["train", "--quiet", "--out", str(tmp_path / "runs" / "lost"), *diverging]) == 1
    assert "nothing was kept" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".nan.partial"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"seed": 0, "fact_key": "a"}', "no distractor scores (written by an older revcurse)"),
        ("not json", "not valid JSON"),
        ('{"seed": 0, "fact_key": "a", "distractor_keys": []}', "not a probe result"),
    ],
)
def test_calibrate_names_the_line_of_predictions_it_cannot_use(tmp_path, capsys, line, expected):
    (tmp_path / "predictions.jsonl").write_text(line + "\n", encoding="utf-8")
    assert run_cli(["calibrate", str(tmp_path)]) == 2
    assert f"predictions.jsonl, line 1: {expected}" in capsys.readouterr().err


def test_calibrate_refuses_scores_of_the_wrong_type(smoke_run, tmp_path, capsys):
    row = json.loads((smoke_run / "predictions.jsonl").read_text().splitlines()[0])
    row["distractor_logprobs"] = ["x"] * len(row["distractor_keys"])
    (tmp_path / "predictions.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert run_cli(["calibrate", str(tmp_path)]) == 2
    assert "line 1: expected a fact_key, a number logprob_correct" in capsys.readouterr().err


def test_show_and_the_report_say_when_the_run_was_made_with_other_versions(smoke_run, tmp_path, capsys):
    import shutil

    from revcurse.report_page import write_report

    assert "other versions" not in (smoke_run / "report.html").read_text()  # made with what is installed
    assert run_cli(["show", str(smoke_run)]) == 0
    assert "other versions" not in capsys.readouterr().out
    older = tmp_path / "older"
    shutil.copytree(smoke_run, older)
    summary = json.loads((older / "run.json").read_text())
    summary["versions"]["tokenizers"] = "0.1.0"
    (older / "run.json").write_text(json.dumps(summary))
    assert run_cli(["show", str(older)]) == 0
    output = " ".join(capsys.readouterr().out.split())
    assert "made with other versions than those installed: tokenizers 0.1.0, installed" in output
    page = write_report([older], None)
    assert "tokenizers 0.1.0, installed" in page.read_text()
