"""The likelihood curve while training (revcurse.curve): its steps and sample, its file on a tiny run (shape, the
trained gap rising, the same curve from the same seed, training untouched by it), rows rewritten on resume, and
its figure in the report."""

import json
import math

import pytest

from revcurse.config import load_config
from revcurse.corpus import Probe
from revcurse.curve import CURVE_FILE, CurveRecorder, curve_sample, curve_steps, curve_summary, read_curve
from revcurse.probe import HFBackend
from revcurse.runner import run_experiment

TINY = [
    "world.facts_per_subset=4", "world.background=12", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.epochs=6", "train.batch_size=8", "train.learning_rate=1e-2",
    "model.hidden_size=32", "model.intermediate_size=64", "model.heads=2", "model.layers=1", "model.vocab_size=500",
    "train.threads=1", "probe.curve_points=6",
]  # fmt: skip
GROUPS = 6  # Experiment 1: three subsets, each asked both ways


def test_curve_steps_span_training_evenly():
    assert curve_steps(84, 6) == {0, 14, 28, 42, 56, 70, 84}
    assert curve_steps(3, 20) == {0, 1, 2, 3}  # fewer steps than points: every step once
    assert curve_steps(84, 0) == set()


def probe(fact: str, phrasing: str, subset: str = "S", asked: str = "a", messages=()) -> Probe:
    return Probe(fact, subset, asked, True, phrasing, f"{fact} is", f" the {fact} one", messages=messages)


def test_curve_sample_is_fixed_facts_in_two_phrasings_per_group():
    probes = [probe(f"f{i}", f"p{k}", subset) for subset in ("S", "T") for i in range(10) for k in range(4)]
    probes.append(probe("f0", "p0", "S", messages=(("user", "f0 is"),)))  # asked as a conversation: left out
    sample = curve_sample(probes, 3, seed=1)
    for subset in ("S", "T"):
        group = [p for p in sample if p.subset == subset]
        assert len({p.fact_key for p in group}) == 3
        assert {p.phrasing for p in group} == {"p0", "p1"}
        assert len(group) == 6
    assert not any(p.messages for p in sample)
    assert curve_sample(list(reversed(probes)), 3, seed=1) == sorted(sample, key=lambda p: -probes.index(p))
    assert curve_sample(probes, 3, seed=1) != curve_sample(probes, 3, seed=2)


def test_recorder_rewrites_the_steps_a_resumed_run_records_again(tmp_path, tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    probes = [Probe(name, "S", "a", True, "p0", f"{name} is", target)
              for name, target in (("Uriah", " the composer"), ("Hawthorne", " the symphony"))]
    path = tmp_path / CURVE_FILE
    stale = [{"step": step, "subset": "S", "asked": "a", "trained": True, "gap": 99.0} for step in (0, 5, 10)]
    path.write_text("".join(json.dumps(row) + "\n" for row in stale))
    recorder = CurveRecorder(probes, lambda m: HFBackend(m, tokenizer), path, points=2, distractors=15, seed=0)
    model.train()
    recorder(5, 10, model)  # resumed at step 5: the killed process's rows from step 5 on are replaced
    rows = read_curve(path)
    assert [row["step"] for row in rows] == [0, 5]
    assert rows[0]["gap"] == 99.0 and rows[1]["gap"] != 99.0
    assert rows[1]["logprob_target"] - rows[1]["logprob_distractor"] == pytest.approx(rows[1]["gap"])
    assert model.training  # put back in train mode
    recorder(3, 10, model)  # not a curve step: nothing written
    assert len(read_curve(path)) == 2
    model.eval()


def curve_of(run) -> list[dict]:
    return [json.loads(line) for line in (run / "seed-0" / CURVE_FILE).read_text().splitlines()]


@pytest.mark.slow
def test_curve_of_a_tiny_run(tmp_path):
    runs = {}
    for name, extra in (("a", []), ("b", []), ("off", ["probe.curve_points=0"])):
        run_experiment(load_config(None, [*TINY, *extra]), tmp_path / name, show_progress=False, log=lambda *_: None)
        runs[name] = tmp_path / name
    rows = curve_of(runs["a"])
    steps = sorted({row["step"] for row in rows})
    total = json.loads((runs["a"] / "seed-0" / "train_log.jsonl").read_text().splitlines()[-1])["step"]
    assert steps == sorted(curve_steps(total, 6))
    assert all(sum(row["step"] == step for row in rows) == GROUPS for step in steps)
    assert {"subset", "asked", "trained", "logprob_target", "logprob_distractor", "gap", "probes"} <= rows[0].keys()

    def trained_gap(step: int) -> float:
        gaps = [row["gap"] for row in rows if row["step"] == step and row["trained"]]
        return sum(gaps) / len(gaps)

    assert trained_gap(steps[0]) < 0.2
    assert trained_gap(steps[-1]) > trained_gap(steps[0]) + 1.0  # training raises the trained directions' gap
    assert curve_of(runs["b"]) == rows  # same seed, same curve
    assert not (runs["off"] / "seed-0" / CURVE_FILE).exists()
    logs = {name: [{k: v for k, v in json.loads(line).items()} for line in
                   (run / "seed-0" / "train_log.jsonl").read_text().splitlines()] for name, run in runs.items()}
    assert [e["loss"] for e in logs["a"]] == [e["loss"] for e in logs["off"]]  # the curve does not change training
    page = (runs["a"] / "report.html").read_text()
    assert "Likelihood gap while training" in page
    section = page.split("Likelihood gap while training", 1)[1]
    assert section.split("<h", 1)[0].count("data:image/png;base64,") == 1
    assert "Likelihood gap while training" not in (runs["off"] / "report.html").read_text()


def test_curve_summary_and_command(tmp_path, capsys):
    from revcurse.cli import main

    for seed, rise in enumerate((2.0, 2.5, 3.0)):
        rows = [{"step": step, "subset": "S", "asked": "name_to_description", "trained": trained,
                 "gap": rise * step / 10 if trained else 0.01 * seed}  # the reverse gap never moves
                for step in (0, 5, 10) for trained in (True, False)]
        (tmp_path / f"seed-{seed}").mkdir()
        (tmp_path / f"seed-{seed}" / CURVE_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows))
    curves = {f"seed-{s}": read_curve(tmp_path / f"seed-{s}" / CURVE_FILE) for s in range(3)}
    trained, reverse = curve_summary(curves)
    assert trained["gap_start"] == 0 and trained["gap_end"] == pytest.approx(2.5) and trained["peak_step"] == 10
    assert trained["gap_end_ci95"][0] < 2.5 < trained["gap_end_ci95"][1]
    assert trained["moved_p"] < 0.05 and trained["seeds"] == 3
    assert reverse["gap_end"] == pytest.approx(0.01) and math.isnan(reverse["moved_p"])  # no change: no t
    with pytest.raises(SystemExit) as exit_info:
        main(["curve", str(tmp_path)])
    assert exit_info.value.code == 0
    assert "+2.50" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["curve", str(tmp_path / "seed-0")])  # no seed folders below: refused with a message
    assert exit_info.value.code == 2


def test_a_diverged_model_scores_null_not_nan():
    """NaN log-probs (a diverged model, stopped right after by NonFiniteLoss) are written as null: valid JSON."""
    from types import SimpleNamespace

    from revcurse.curve import curve_rows

    result = SimpleNamespace(setting="", subset="S", asked="a", trained=True, logprob_correct=math.nan,
                             logprob_random=-3.0, distractor_logprobs=[-3.0])
    (row,) = curve_rows(7, [result])
    assert row["logprob_target"] is None and row["gap"] is None and row["logprob_distractor"] == -3.0
    json.dumps(row, allow_nan=False)
