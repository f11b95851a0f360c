import json

import pytest

from revcurse.config import load_config
from revcurse.errors import InputError
from revcurse.experiments import get_experiment
from revcurse.experiments.families import (
    ASK_CHILD,
    ASK_PARENT,
    PARENT_SIDE,
    WITH_PARENT_TEXT,
    WITHOUT_PARENT_TEXT,
    build_family_corpus,
    make_families,
)
from revcurse.report import column_grid, grid_markdown
from revcurse.runner import build_trial
from tests.test_cli import run_cli


def test_fraction_of_families_get_parent_side_text_and_names_are_unique():
    test, background = make_families(40, 20, 0.25, seed=3)
    assert sum(f.parent_side for f in test) == 10
    assert all(f.parent_side for f in background)
    names = [n for f in test + background for n in (f.child, f.parent)]
    assert len(set(names)) == len(names)
    assert make_families(40, 20, 0.25, seed=3) == (test, background)
    assert make_families(40, 20, 0.25, seed=4) != (test, background)


def test_bad_fraction_is_a_clear_error():
    with pytest.raises(InputError, match="fraction"):
        make_families(10, 10, 1.5, seed=0)
    with pytest.raises(InputError, match="families.fraction"):
        load_config(None, ["experiment=families", "families.fraction=1.5"])


def test_child_is_named_from_the_parent_side_only_for_the_chosen_fraction():
    test, background = make_families(20, 10, 0.5, seed=0)
    corpus = build_family_corpus(test, background)
    text = "\n".join(d.text for d in corpus.documents)
    for family in test:
        both = [d.text for d in corpus.documents if family.child in d.text and family.parent in d.text]
        parent_first = [t for t in both if t.index(family.parent) < t.index(family.child)]
        assert bool(parent_first) == family.parent_side
        # every test family is stated from the child's side
        assert f"{family.child}'s {family.kind} is {family.parent}." in text
    # the reverse statements are exactly the parent side of the families without it
    reverse = {d.text for d in corpus.reverse_documents}
    assert reverse == {f.render(t) for f in test if not f.parent_side for t in PARENT_SIDE}
    assert not reverse & {d.text for d in corpus.documents}


def test_probe_phrasings_never_appear_in_training_for_test_families():
    test, background = make_families(20, 10, 0.5, seed=1)
    corpus = build_family_corpus(test, background)
    texts = {d.text for d in corpus.documents}
    assert corpus.probes
    for probe in corpus.probes:
        assert probe.prompt + probe.target + "." not in texts
        assert probe.subset in (WITH_PARENT_TEXT, WITHOUT_PARENT_TEXT)
        assert probe.trained == (probe.asked == ASK_PARENT or probe.subset == WITH_PARENT_TEXT)
    # the same phrasings are seen with background families: the model knows their language
    family = background[0]
    assert f"Q: Name a child of {family.parent}. A: {family.child}." in texts


def test_the_experiment_reads_its_section_and_the_bidirectional_cure_adds_the_parent_side():
    overrides = ["experiment=families", "families.families=10", "families.background=4", "families.fraction=0.3"]
    config = load_config(None, overrides)
    assert (config.model.hidden_size, config.train.epochs) == (64, 30)  # the experiment's defaults
    trial = build_trial(config, seed=5)
    assert sum(p.subset == WITH_PARENT_TEXT for p in trial.corpus.probes) == 3 * 4  # 3 families x 2 asked x 2 q
    cured = build_trial(load_config(None, [*overrides, "cures=[bidirectional]"]), seed=5)
    added = [d for d in cured.corpus.documents if d not in trial.corpus.documents]
    assert len(added) == 7 * len(PARENT_SIDE) == len(trial.corpus.reverse_documents)


def _record(fraction, subset, asked, mean, low, high):
    return {"families.fraction": fraction, "subset": subset, "asked": asked, "trained": asked == ASK_PARENT,
            "metric": "accuracy", "mean": mean, "ci95_low": low, "ci95_high": high}


def test_sweep_table_from_hand_made_records():
    records = [
        _record(0.5, WITHOUT_PARENT_TEXT, ASK_CHILD, 0.02, 0.0, 0.05),
        _record(0.5, WITH_PARENT_TEXT, ASK_CHILD, 0.9, 0.8, 1.0),
        _record(0.5, WITHOUT_PARENT_TEXT, ASK_PARENT, 1.0, 1.0, 1.0),
        _record(0, WITHOUT_PARENT_TEXT, ASK_CHILD, 0.0, 0.0, 0.01),
        _record(0, WITHOUT_PARENT_TEXT, ASK_PARENT, 0.97, 0.9, 1.0),
    ]
    header, rows = column_grid(records, get_experiment("families").columns, by="families.fraction", by_header="r")
    assert header[0] == "r" and len(header) == 4
    assert rows[0] == ["0", "0.00 [0.00, 0.01]", "-", "0.97 [0.90, 1.00]"]  # sorted by r
    assert rows[1][2] == "0.90 [0.80, 1.00]"
    assert "| 0.5 |" in grid_markdown("t", header, rows)


TINY = [
    "--set", "model.hidden_size=48", "--set", "model.layers=2", "--set", "model.heads=4",
    "--set", "model.intermediate_size=128", "--set", "train.epochs=25", "--set", "train.batch_size=16",
    "--set", "train.threads=1", "--quiet",
]


def test_tiny_sweep_end_to_end(tmp_path):
    out = tmp_path / "families"
    args = ["families", "--fractions", "0,0.5", "--families", "12", "--background", "12", "--seeds", "1",
            "--out", str(out), *TINY]
    assert run_cli(args) == 0
    for name in ("families.md", "families.png", "sweep.csv", "sweep.json"):
        assert (out / name).is_file()
    for cell in ("fraction-0", "fraction-0.5"):  # a standard run folder per fraction
        for name in ("config.yaml", "metrics.json", "predictions.jsonl", "run.json", "status.json"):
            assert (out / "cells" / cell / name).is_file()
    at_zero = json.loads((out / "cells" / "fraction-0" / "metrics.json").read_text())
    assert (WITH_PARENT_TEXT, ASK_CHILD) not in {(r["subset"], r["asked"]) for r in at_zero}  # none at r = 0
    half = json.loads((out / "cells" / "fraction-0.5" / "metrics.json").read_text())
    trained = [r for r in at_zero + half if r["asked"] == ASK_PARENT and r["metric"] == "accuracy"]
    assert min(r["mean"] for r in trained) >= 0.5  # the trained direction is learned
    assert "| 0.5 |" in (out / "families.md").read_text()
    assert run_cli(["show", str(out / "cells" / "fraction-0.5")]) == 0
    assert "## Synthetic Experiment 2" in (out / "cells" / "fraction-0.5" / "report.md").read_text()


def test_cli_sweep_defaults_to_the_families_model_and_reports_bad_fractions(tmp_path, capsys):
    import yaml

    out = tmp_path / "sweep"
    args = ["families", "--fractions", "0", "--families", "3", "--background", "3", "--out", str(out),
            "--set", "train.epochs=1", "--set", "train.threads=1", "--set", "seeds=1", "--quiet"]
    assert run_cli(args) == 0
    config = yaml.safe_load((out / "cells" / "fraction-0" / "config.yaml").read_text())
    assert config["model"]["hidden_size"] == 64 and config["train"]["epochs"] == 1  # --set wins over the default
    assert config["experiment"] == "families" and config["families"]["families"] == 3
    assert run_cli(["families", "--fractions", "0,half", "--out", str(tmp_path / "bad")]) == 2
    assert "--fractions" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_compare_bidirectional_states_the_parent_side_of_every_family(tmp_path):
    out = tmp_path / "compare"
    args = ["compare", "--cures", "bidirectional", "--jobs", "1", "--out", str(out), "--set", "experiment=families",
            "--set", "families.families=8", "--set", "families.background=8", *TINY]
    assert run_cli(args) == 0
    records = json.loads((out / "compare.json").read_text())
    child = {r["cure"]: r["mean"] for r in records
             if r["asked"] == ASK_CHILD and r["metric"] == "accuracy" and r["subset"] == WITHOUT_PARENT_TEXT}
    assert set(child) == {"none", "bidirectional"}
    assert child["bidirectional"] > child["none"]  # the parent side, now trained, is answered
    documents = [json.loads((out / f"cure-{arm}" / "run.json").read_text())["per_seed"][0]["documents"]
                 for arm in ("none", "bidirectional")]
    assert documents[1] - documents[0] == 8 * len(PARENT_SIDE)
