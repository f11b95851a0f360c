"""Compare: arms, the table's aggregation on hand-made records, the chart, and a tiny end-to-end run."""

import json
import re

import pytest

from revcurse.compare import arm_config, parse_arms
from revcurse.config import load_config
from revcurse.errors import InputError
from revcurse.report_compare import compare_rows, markdown_compare, plot_compare
from tests.test_cli import SMALL, run_cli


def record(cure, subset, asked, metric, mean, low=None, high=None, trained=True, n_facts=30):
    return {
        "cure": cure, "subset": subset, "asked": asked, "trained": trained, "metric": metric, "mean": mean,
        "ci95_low": low if low is not None else mean, "ci95_high": high if high is not None else mean,
        "n_seeds": 3, "n_items": 900, "n_facts": n_facts,
    }


def arm_records(cure, reverse_accuracy, seconds):
    records = [record(cure, "all", "all", "train_seconds", seconds, trained=None)]
    for subset, asked, trained, accuracy in (
        ("NameToDescription", "name_to_description", True, 1.0),
        ("NameToDescription", "description_to_name", False, reverse_accuracy),
    ):
        records += [
            record(cure, subset, asked, "accuracy", accuracy, max(0, accuracy - 0.05), min(1, accuracy + 0.05),
                   trained),
            record(cure, subset, asked, "likelihood_t", 2.5, trained=trained),
            record(cure, subset, asked, "likelihood_p", 0.02, trained=trained),
        ]
    return records


def test_compare_rows_pair_each_cure_with_its_accuracy_test_and_cost():
    records = arm_records("none", 0.0, 60.0) + arm_records("reverse-entity", 0.93, 120.0)
    rows = compare_rows(records)
    assert [(r["cure"], r["trained"]) for r in rows] == [
        ("none", "yes"), ("none", "no"), ("reverse-entity", "yes"), ("reverse-entity", "no"),
    ]
    assert rows[3]["accuracy"] == "0.93 [0.88, 0.98]"
    assert rows[3]["t_test"] == "t(29)=2.50 p=0.02"
    assert rows[0]["train_time"] == "60 s (1.00x)" and rows[2]["train_time"] == "120 s (2.00x)"
    assert "reverse-entity" in markdown_compare(records)


def test_compare_rows_keep_settings_apart(tmp_path):
    """An experiment whose probes have settings (the in-context control) compares each setting's groups."""
    records = []
    for cure, in_context in (("none", 0.9), ("bidirectional", 1.0)):
        records.append(record(cure, "all", "all", "train_seconds", 10.0, trained=None))
        for setting, accuracy in (("in_context", in_context), ("in_weights", 0.0)):
            for metric, mean in (("accuracy", accuracy), ("likelihood_t", 1.0), ("likelihood_p", 0.5)):
                records.append({**record(cure, "Both", "description_to_name", metric, mean), "setting": setting})
    rows = compare_rows(records)
    assert [(r["cure"], r["subset"], r["accuracy"].split()[0]) for r in rows] == [
        ("none", "in_context: Both", "0.90"), ("none", "in_weights: Both", "0.00"),
        ("bidirectional", "in_context: Both", "1.00"), ("bidirectional", "in_weights: Both", "0.00"),
    ]
    plot_compare(records, tmp_path / "settings.png")
    assert (tmp_path / "settings.png").stat().st_size > 0


def test_chart_is_written(tmp_path):
    records = arm_records("none", 0.0, 60.0) + arm_records("bidirectional", 1.0, 90.0)
    plot_compare(records, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arms_parse_and_configure():
    assert parse_arms("reverse-entity, bidirectional,none,reverse-word+paraphrase") == [
        "reverse-entity", "bidirectional", "reverse-word+paraphrase",
    ]
    with pytest.raises(InputError, match="reverse-everything"):
        parse_arms("reverse-everything")
    base = load_config(None, [])
    assert arm_config(base, "none").cures == [] and arm_config(base, "none").train.objective == "causal"
    assert arm_config(base, "reverse-word+paraphrase").cures == ["reverse-word", "paraphrase"]
    assert arm_config(base, "mlm-u").train.objective == "mlm-u" and arm_config(base, "mlm-u").cures == []


@pytest.mark.parametrize(
    ("cures", "message"),
    [
        ("", "--cures is empty"),
        ("  ", "--cures is empty"),
        (",", "an empty name between commas"),
        ("reverse-entity,,paraphrase", "an empty name between commas"),
        ("reverse-entity+", "arm 'reverse-entity+' has an empty name beside '+'"),
        ("none", "--cures names only the baseline"),
        ("none+paraphrase", "'none' is the baseline"),
        ("paraphrase,bidirectional,paraphrase", "paraphrase listed twice"),
    ],
)
def test_no_cure_an_empty_one_or_one_twice_exits_2_before_anything_is_written(tmp_path, capsys, cures, message):
    with pytest.raises(InputError, match=re.escape(message)):
        parse_arms(cures)
    out = tmp_path / "runs" / "compare"
    assert run_cli(["compare", "--cures", cures, "--quiet", "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "runs").exists()


def test_compare_end_to_end(tmp_path):
    out = tmp_path / "cmp"
    assert run_cli(["compare", "--cures", "reverse-entity,mlm-u", "--quiet", "--seeds", "2", "--out", str(out),
                    *SMALL]) == 0
    records = json.loads((out / "compare.json").read_text())
    assert {r["cure"] for r in records} == {"none", "reverse-entity", "mlm-u"}
    assert all(r["n_seeds"] == 2 for r in records)
    assert (out / "compare.png").is_file() and (out / "compare.md").is_file()
    for arm in ("none", "reverse-entity", "mlm-u"):
        assert (out / f"cure-{arm}" / "metrics.json").is_file()
    config = (out / "cure-mlm-u" / "config.yaml").read_text()
    assert "objective: mlm-u" in config
    # the same worlds in every arm: same probes for seed 0
    def prompts(arm):
        lines = (out / f"cure-{arm}" / "predictions.jsonl").read_text().splitlines()
        return [json.loads(line)["prompt"] for line in lines]
    assert prompts("none") == prompts("reverse-entity") == prompts("mlm-u")


def test_compute_matched_cure_trains_the_same_number_of_documents(tmp_path):
    from revcurse.runner import run_experiment

    overrides = [s for s in SMALL if s != "--set"]
    data = run_experiment(load_config(None, [*overrides, "cures=[reverse-word]"]), tmp_path / "d",
                          show_progress=False, log=lambda *_: None)
    compute = run_experiment(load_config(None, [*overrides, "cures=[reverse-word]", "cure.match=compute"]),
                             tmp_path / "c", show_progress=False, log=lambda *_: None)
    assert data.summary["per_seed"][0]["epochs"] == 1
    assert compute.summary["per_seed"][0]["epochs"] == pytest.approx(0.5)
    assert compute.summary["per_seed"][0]["train_steps"] < data.summary["per_seed"][0]["train_steps"]


def test_an_interrupted_comparison_resumes_keeping_its_finished_seeds(tmp_path, monkeypatch, capsys):
    import revcurse.runner as experiment

    out = tmp_path / "cmp"
    original, calls, resuming = experiment.run_seed, [], False

    def dies_on_the_second_seed(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2 and not resuming:
            raise RuntimeError("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(experiment, "run_seed", dies_on_the_second_seed)
    with pytest.raises(RuntimeError):
        run_cli(["compare", "--cures", "reverse-entity", "--quiet", "--jobs", "1", "--out", str(out), *SMALL])
    finished = tmp_path / ".cmp.partial" / "cure-none" / "seed-0" / "outcome.json"
    assert not out.exists() and finished.is_file()
    finished_at = finished.stat().st_mtime_ns
    assert run_cli(["status", str(out)]) == 0
    assert "failed: cure-none/seed-0 finished" in capsys.readouterr().out
    assert run_cli(["compare", "--cures", "mlm-u", "--resume", str(out)]) == 2  # its own arms only
    calls.clear()
    resuming = True
    assert run_cli(["compare", "--quiet", "--jobs", "1", "--resume", str(out)]) == 0
    assert [folder.parent.name for folder in calls] == ["cure-none", "cure-reverse-entity"]
    assert (out / "cure-none" / "seed-0" / "outcome.json").stat().st_mtime_ns == finished_at  # not run again
    records = json.loads((out / "compare.json").read_text())
    assert {r["cure"] for r in records} == {"none", "reverse-entity"}
    assert json.loads((out / "status.json").read_text())["status"] == "finished"
