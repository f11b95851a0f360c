"""The run commands over any registered experiment: --experiment on train, compare and sweep, and show, report,
status and calibrate on the folders they write (the invented experiment, at a tiny size)."""

import csv
import json

import pytest

from revcurse.experiments import EXPERIMENTS
from revcurse.records import ARMS_FILE, run_folder
from tests.test_cli import run_cli

TINY_INVENTED = [
    arg for key in ["invented.inventors=4", "invented.background=6", "train.epochs=2", "model.hidden_size=32",
                    "model.intermediate_size=64", "model.heads=2", "model.vocab_size=400", "train.threads=1"]
    for arg in ("--set", key)
]
SUBSET = "Inventors"


@pytest.fixture(scope="module")
def invented_compare(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cmp"
    code = run_cli(["compare", "--experiment", "invented", "--cures", "bidirectional", "--quiet", "--jobs", "1",
                    "--out", str(out), *TINY_INVENTED])
    assert code == 0
    return out


@pytest.mark.parametrize("command", ["train", "compare", "sweep"])
def test_help_lists_the_registered_experiments(command, capsys):
    assert run_cli([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--experiment" in text
    assert all(name in text for name in EXPERIMENTS), text


def test_compare_runs_any_experiment_with_the_cure_it_declares(invented_compare, capsys):
    records = json.loads((invented_compare / "compare.json").read_text())
    assert {r["cure"] for r in records} == {"none", "bidirectional"}
    assert {r["subset"] for r in records if r["metric"] == "accuracy"} == {SUBSET}
    assert {(r["asked"], r["trained"]) for r in records if r["metric"] == "accuracy"} == {
        ("who_to_what", True), ("what_to_who", False)}
    assert "experiment: invented" in (invented_compare / "config.yaml").read_text()
    documents = {arm: json.loads((invented_compare / f"cure-{arm}" / "run.json").read_text())["per_seed"][0]
                 ["documents"] for arm in ("none", "bidirectional")}  # fmt: skip
    assert documents["bidirectional"] == documents["none"] + 4 * 2  # each test fact stated in both reverse forms
    assert "| bidirectional | Inventors |" in (invented_compare / "compare.md").read_text()


def test_show_report_status_and_calibrate_read_any_experiments_run_folder(invented_compare, capsys):
    arm = invented_compare / "cure-none"
    assert run_cli(["show", str(arm)]) == 0
    shown = capsys.readouterr().out
    assert "Inventors" in shown and "t(3)=" in shown  # four facts under test: 3 degrees of freedom
    assert run_cli(["status", str(arm)]) == 0
    assert f"{arm}: finished" in capsys.readouterr().out
    assert run_cli(["calibrate", str(arm), "--draws", "20"]) == 0
    calibrated = capsys.readouterr().out
    assert "Inventors" in calibrated and "/20" in calibrated  # rejections out of 20 placebo draws
    assert run_cli(["report", str(invented_compare), "--out", str(invented_compare.parent / "page.html")]) == 0
    page = (invented_compare.parent / "page.html").read_text()
    assert "Cures compared" in page and SUBSET in page


def test_sweep_runs_any_experiment_over_its_own_options(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = run_cli(["sweep", "--experiment", "invented", "--grid", "invented.inventors=6,8", "--quiet",
                    "--out", str(out), *TINY_INVENTED])
    assert code == 0
    with open(out / "sweep.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["metric"] == "accuracy"]
    facts = {(row["cell"], row["asked"]): int(row["n_items"]) for row in rows}
    assert facts == {("inventors-6", "who_to_what"): 6, ("inventors-6", "what_to_who"): 6,
                     ("inventors-8", "who_to_what"): 8, ("inventors-8", "what_to_who"): 8}
    assert "experiment: invented" in (out / "cells" / "inventors-8" / "config.yaml").read_text()
    assert "inventors-8" in capsys.readouterr().out


def test_status_suggests_compare_resume_for_an_interrupted_comparison(tmp_path, capsys):
    for name, arms in (("cmp", True), ("run", False)):
        with pytest.raises(RuntimeError):
            with run_folder(tmp_path / name, overwrite=False) as staging:
                (staging / "cure-none" / "seed-0" / "checkpoints" / "step-0000005").mkdir(parents=True)
                if arms:
                    (staging / ARMS_FILE).write_text('["bidirectional"]')
                raise RuntimeError("killed")
    assert run_cli(["status", str(tmp_path / "cmp")]) == 0
    assert f"continue it with: revcurse compare --resume {tmp_path / 'cmp'}" in capsys.readouterr().out
    assert run_cli(["status", str(tmp_path / "run")]) == 0
    assert f"continue it with: revcurse train --resume {tmp_path / 'run'}" in capsys.readouterr().out


def test_experiment_option_is_checked_and_refused_beside_resume(tmp_path, capsys):
    assert run_cli(["train", "--experiment", "nonesuch", "--quiet", "--out", str(tmp_path / "x")]) == 2
    assert "nonesuch" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert run_cli(["train", "--experiment", "invented", "--resume", str(tmp_path / "x")]) == 2
    assert "--experiment" in capsys.readouterr().err
