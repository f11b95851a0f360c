"""Sweeps: grid parsing, cell folder names, a tiny real sweep into CSV and Parquet, and resuming after a cell
fails (finished cells are skipped, not run again)."""

import csv
import json

import pytest

import revcurse.experiment
from revcurse.cli import main
from revcurse.errors import InputError
from revcurse.sweep import (
    PARAMETERS,
    build_cells,
    cell_slug,
    check_dimensions,
    parse_grid,
    resolve_plot_x,
    run_sweep,
)

TINY = [
    "world.facts_per_subset=3", "world.background=12", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.epochs=1", "model.intermediate_size=64", "model.heads=2",
    "model.vocab_size=600", "train.threads=1",
]
GRID = ["model.hidden_size=16,32"]
SLUGS = ["hidden_size-16", "hidden_size-32"]


def test_parse_grid_single_linked_size_and_cures():
    single = parse_grid("train.epochs=1, 2.5 ,10")
    assert single.keys == ("train.epochs",) and single.values == (("1",), ("2.5",), ("10",))
    linked = parse_grid("model.hidden_size,model.intermediate_size=64:256,96:384")
    assert linked.keys == ("model.hidden_size", "model.intermediate_size")
    assert linked.values == (("64", "256"), ("96", "384"))
    assert linked.spec == "model.hidden_size,model.intermediate_size=64:256,96:384"
    assert parse_grid("size=xs,l").values == (("xs",), ("l",))
    assert parse_grid("cures=none,reverse-entity+paraphrase").values == (("none",), ("reverse-entity+paraphrase",))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("model.hidden_size", "expected KEY=V1,V2"),
        ("=1,2", "empty key"),
        ("model.hidden_size=", "one or more comma-separated values"),
        ("model.hidden_size=32,,64", "one or more comma-separated values"),
        ("model.hidden_size,model.intermediate_size=64:256,96", "needs 2 colon-separated parts"),
        ("model.hidden_size=32,32", "listed twice"),
        ("model hidden=1,2", "not a config key"),
        ("size=xs,huge", "unknown size"),
        ("cures=none,reverse-nothing", "unknown cure"),
        ("size,model.layers=xs:1", "dimension of their own"),
    ],
)
def test_bad_grid_is_an_input_error_saying_what_is_wrong(spec, message):
    with pytest.raises(InputError, match=message):
        parse_grid(spec)


def test_a_key_swept_twice_or_an_invalid_value_is_refused_before_any_training():
    with pytest.raises(InputError, match="swept twice"):
        check_dimensions([parse_grid("train.epochs=1,2"), parse_grid("seed,train.epochs=0:1")])
    with pytest.raises(InputError, match="do not sweep"):
        check_dimensions([parse_grid("size=xs,s"), parse_grid("model.layers=1,2")])
    with pytest.raises(InputError, match="model.hidden_size.*integer"):
        build_cells(None, [], [parse_grid("model.hidden_size=32,wide")])
    with pytest.raises(InputError, match="model.width"):
        build_cells(None, [], [parse_grid("model.width=32,64")])


def test_cell_slugs_are_readable_and_safe_folder_names():
    assert cell_slug({"model.hidden_size": "64", "train.epochs": "5"}) == "hidden_size-64__epochs-5"
    assert cell_slug({"size": "xs"}) == "size-xs"
    assert cell_slug({"cures": "reverse-entity+paraphrase"}) == "cures-reverse-entity+paraphrase"
    assert cell_slug({"world.source": "/data/june version"}) == "source-data-june-version"
    # two keys with the same last part keep their full names
    assert cell_slug({"a.seed": "1", "b.seed": "2"}) == "a.seed-1__b.seed-2"


def test_cells_are_the_product_with_presets_and_cures_applied():
    cells = build_cells(None, ["seeds=2"], [parse_grid("size=xs,l"), parse_grid("cures=none,reverse-entity")])
    assert [cell.slug for cell in cells] == [
        "size-xs__cures-none", "size-xs__cures-reverse-entity", "size-l__cures-none", "size-l__cures-reverse-entity"
    ]
    assert (cells[0].config.model.hidden_size, cells[0].config.model.intermediate_size) == (32, 128)
    assert cells[3].config.model.hidden_size == 160 and cells[3].config.cures == ["reverse-entity"]
    assert cells[0].config.cures == [] and all(cell.config.seeds == 2 for cell in cells)


def test_plot_x_defaults_to_parameters_for_a_size_key():
    assert resolve_plot_x(None, [parse_grid("size=xs,s")]) == PARAMETERS
    assert resolve_plot_x(None, [parse_grid("train.epochs=1,2"), parse_grid("size=xs,s")]) == "train.epochs"
    with pytest.raises(InputError, match="--plot-x"):
        resolve_plot_x("train.lr", [parse_grid("train.epochs=1,2")])


@pytest.fixture(scope="module")
def resumed_sweep(tmp_path_factory):
    """A sweep whose second cell fails (as if cut off, leaving a staging folder), then the same sweep again."""
    out = tmp_path_factory.mktemp("sweeps") / "sweep"
    real_run_experiment = revcurse.experiment.run_experiment
    calls: list[str] = []

    def failing_second_cell(config, folder, **kwargs):
        calls.append(folder.name)
        if len(calls) == 2:
            (folder.parent / f".{folder.name}.tmp-cutoff").mkdir()  # what a killed run leaves behind
            raise RuntimeError("simulated interruption")
        return real_run_experiment(config, folder, **kwargs)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(revcurse.experiment, "run_experiment", failing_second_cell)
    logs: list[str] = []
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run_sweep(None, TINY, GRID, out, log=logs.append)
    first_calls = list(calls)
    finished = sorted(p.name for p in (out / "cells").iterdir() if not p.name.startswith("."))
    mtime = {p.name: (p / "run.json").stat().st_mtime_ns for p in (out / "cells").iterdir() if p.name in finished}
    calls.clear()
    outcome = run_sweep(None, TINY, GRID, out, log=logs.append)
    monkeypatch.undo()
    return {"out": out, "outcome": outcome, "first_calls": first_calls, "finished": finished, "mtime": mtime,
            "second_calls": list(calls), "logs": logs}


def test_resumed_sweep_skips_finished_cells_and_reruns_the_cut_off_one(resumed_sweep):
    out, first_calls = resumed_sweep["out"], resumed_sweep["first_calls"]
    assert sorted(first_calls) == SLUGS  # both cells were started the first time ...
    assert resumed_sweep["finished"] == [first_calls[0]]  # ... only the first finished
    cut_off = first_calls[1]
    assert resumed_sweep["second_calls"] == [cut_off]  # the rerun ran only the missing cell
    assert resumed_sweep["outcome"].skipped == [first_calls[0]] and resumed_sweep["outcome"].ran == [cut_off]
    first = out / "cells" / first_calls[0] / "run.json"
    assert first.stat().st_mtime_ns == resumed_sweep["mtime"][first_calls[0]]  # untouched
    assert f"skipping {first_calls[0]}: finished in an earlier run" in resumed_sweep["logs"]
    assert any("removing the unfinished leftover" in line for line in resumed_sweep["logs"])
    assert sorted(p.name for p in (out / "cells").iterdir()) == SLUGS  # leftover gone, both cells finished


def test_sweep_writes_one_tidy_table_as_csv_and_parquet(resumed_sweep):
    pq = pytest.importorskip("pyarrow.parquet")  # in the dev extra; optional for users (revcurse[parquet])
    out = resumed_sweep["out"]
    with open(out / "sweep.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    table = pq.read_table(out / "sweep.parquet").to_pylist()
    # 2 cells x 3 subsets x 2 asked directions x 8 metrics
    assert len(rows) == len(table) == 2 * 3 * 2 * 8
    expected = {"cell", "model.hidden_size", PARAMETERS, "subset", "asked", "trained", "metric", "mean",
                "ci95_low", "ci95_high", "n_seeds"}
    assert expected <= set(rows[0]) and expected <= set(table[0])
    assert {row["model.hidden_size"] for row in table} == {16, 32}
    assert {row["cell"] for row in rows} == set(SLUGS)
    sizes = {row["model.hidden_size"]: row[PARAMETERS] for row in table}
    assert sizes[16] < sizes[32]
    assert {row["metric"] for row in table} >= {"accuracy", "likelihood_p", "mrr"}
    assert (out / "sweep.png").stat().st_size > 0
    assert "| hidden_size | parameters |" in (out / "sweep.md").read_text(encoding="utf-8")
    saved = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert saved["grid"] == [{"keys": ["model.hidden_size"], "values": [["16"], ["32"]]}]
    assert saved["base_config"]["world"]["facts_per_subset"] == 3


def run_cli(args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def _cli_sets(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def test_rerun_with_another_grid_or_config_is_refused_and_the_same_one_skips_everything(resumed_sweep, capsys):
    out = resumed_sweep["out"]
    before = (out / "sweep.csv").read_text(encoding="utf-8")
    assert run_cli(["sweep", "--grid", "model.hidden_size=16,48", "--out", str(out), *_cli_sets(TINY)]) == 2
    assert "different grid" in capsys.readouterr().err
    changed = [*TINY, "train.epochs=2"]
    assert run_cli(["sweep", "--grid", GRID[0], "--out", str(out), *_cli_sets(changed)]) == 2
    assert "train.epochs: 1.0 -> 2.0" in capsys.readouterr().err
    assert (out / "sweep.csv").read_text(encoding="utf-8") == before
    assert run_cli(["sweep", "--grid", GRID[0], "--out", str(out), "--quiet", *_cli_sets(TINY)]) == 0
    printed = capsys.readouterr().out
    assert "ran 0 cell(s), skipped 2 finished" in printed and "hidden_size-32" in printed


def test_a_folder_that_is_not_a_sweep_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert run_cli(["sweep", "--grid", GRID[0], "--out", str(tmp_path), *_cli_sets(TINY)]) == 2
    assert "not a sweep" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
