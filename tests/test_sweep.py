"""Sweeps: grid parsing, cell folder names, a tiny real sweep into CSV and Parquet, resuming after a cell fails
or after the process is killed (finished cells are skipped, not run again), and two processes sharing one sweep
folder (each cell runs once)."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import revcurse.runner
from revcurse.cli import main
from revcurse.config import load_config
from revcurse.errors import InputError
from revcurse.sweep import cell_lock, prepare_folder, run_sweep
from revcurse.sweep_grid import (
    PARAMETERS,
    build_cells,
    cell_slug,
    check_dimensions,
    parse_grid,
    resolve_plot_x,
    sweep_identity,
)

TINY = [
    "world.facts_per_subset=3", "world.background=12", "corpus.train_phrasings=4", "corpus.held_out_phrasings=2",
    "corpus.background_phrasings=2", "train.epochs=1", "model.intermediate_size=64", "model.heads=2",
    "model.vocab_size=600", "train.threads=1",
]
GRID = ["model.hidden_size=16,32"]
SLUGS = ["hidden_size-16", "hidden_size-32"]
CHECKPOINTED = [*TINY, "train.epochs=15", "train.batch_size=8", "train.checkpoint_every=5"]  # long enough to kill


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
        ("cures=none,reverse-entity+", "empty name beside '\\+'"),
        ("cures=none+paraphrase", "'none' is the baseline"),
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
    real_run_experiment = revcurse.runner.run_experiment
    calls: list[str] = []

    def failing_second_cell(config, folder, **kwargs):
        calls.append(folder.name)
        if len(calls) == 2:
            (folder.parent / f".{folder.name}.tmp-cutoff").mkdir()  # what a killed run leaves behind
            raise RuntimeError("simulated interruption")
        return real_run_experiment(config, folder, **kwargs)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(revcurse.runner, "run_experiment", failing_second_cell)
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
    assert len(rows) == len(table) == 2 * 3 * 2 * 13  # cells x groups x metrics (with the tests' records)
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


def test_grid_takes_phrasings_seeds_and_cures_keys():
    """The issue's examples beside model size: number of phrasings, seeds (first seed and count), cures."""
    cells = build_cells(None, [], [parse_grid("corpus.train_phrasings=4,8"), parse_grid("seed,seeds=0:1,10:3"),
                                   parse_grid("cures=none,bidirectional")])
    assert len(cells) == 8
    first, last = cells[0].config, cells[-1].config
    assert (first.corpus.train_phrasings, first.seed, first.seeds, first.cures) == (4, 0, 1, [])
    assert (last.corpus.train_phrasings, last.seed, last.seeds, last.cures) == (8, 10, 3, ["bidirectional"])
    assert cells[-1].slug == "train_phrasings-8__seed-10__seeds-3__cures-bidirectional"


# ---------------------------------------------------------------- real processes: killed, and two at once


def sweep_process(out, grid, log_path, jobs=1, sets=TINY):
    """``revcurse sweep`` in its own process (and process group), output into ``log_path``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "revcurse.cli", "sweep", "--out", str(out), "--quiet", "--jobs", str(jobs),
               *_cli_sets(sets)]
    command += [arg for spec in grid for arg in ("--grid", spec)]
    with open(log_path, "w", encoding="utf-8") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def finished_cells(out):
    cells = out / "cells"
    if not cells.is_dir():
        return []
    return sorted(p.name for p in cells.iterdir() if not p.name.startswith(".") and (p / "run.json").is_file())


def test_a_sweep_killed_mid_cell_skips_the_finished_cell_when_run_again(tmp_path):
    """SIGKILL while the second cell trains (it has a checkpoint), then the same command again: it resumes there."""
    out = tmp_path / "sweep"
    process = sweep_process(out, GRID, tmp_path / "first.log", sets=CHECKPOINTED)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            staging = list((out / "cells").glob(".*.partial/seed-0/checkpoints/step-*[0-9]"))
            if len(finished_cells(out)) == 1 and staging:
                break
            time.sleep(0.02)
        assert process.poll() is None, "ended before it was killed:\n" + (tmp_path / "first.log").read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    (done,) = finished_cells(out)
    (cut_off,) = set(SLUGS) - {done}
    assert list((out / "cells").glob(f".{cut_off}.partial"))  # the killed cell's unfinished run, checkpointed
    assert not (out / "sweep.csv").exists()
    mtime = (out / "cells" / done / "run.json").stat().st_mtime_ns

    again = sweep_process(out, GRID, tmp_path / "second.log", sets=CHECKPOINTED)
    assert again.wait(timeout=240) == 0, (tmp_path / "second.log").read_text()
    log = (tmp_path / "second.log").read_text()
    assert f"skipping {done}: finished in an earlier run" in log
    assert f"running {cut_off}" in log and f"running {done}" not in log  # not retrained
    (resumed,) = [line for line in log.splitlines() if line.startswith(f"running {cut_off}")]
    assert "resuming the interrupted cell (seed-0 from step" in resumed
    assert "ran 1 cell(s), skipped 1 finished" in log
    assert (out / "cells" / done / "run.json").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (out / "cells").iterdir()) == SLUGS  # the leftover is gone
    with open(out / "sweep.csv", encoding="utf-8") as handle:
        assert {row["cell"] for row in csv.DictReader(handle)} == set(SLUGS)


def test_two_processes_on_one_sweep_folder_share_the_cells_and_run_each_once(tmp_path):
    """Started together on one folder: one runs cells in its own process, the other in a pool of two workers."""
    out = tmp_path / "sweep"
    grid = ["model.hidden_size=16,24,32"]
    slugs = {"hidden_size-16", "hidden_size-24", "hidden_size-32"}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = [sweep_process(out, grid, logs[0]), sweep_process(out, grid, logs[1], jobs=2)]
    try:
        codes = [process.wait(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n----\n".join(outputs)
    started = [re.findall(r"^running (hidden_size-\d+)", text, flags=re.MULTILINE) for text in outputs]
    assert sorted(started[0] + started[1]) == sorted(slugs), started  # every cell once, across both processes
    assert finished_cells(out) == sorted(slugs)
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(slugs)  # no staging leftovers
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    with open(out / "sweep.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["cell"] for row in rows} == slugs and len(rows) == 3 * 3 * 2 * 13
    ran = [int(re.search(r"ran (\d+) cell\(s\), skipped 0 finished", text).group(1)) for text in outputs]
    assert sum(ran) == 3
    for text in outputs:  # each process waited for the other's cells and ends with the whole table
        table = text.rsplit("Sweep over 3 cells", 1)[-1]
        assert all(re.search(rf"^\S\s+{size}\s", table, flags=re.MULTILINE) for size in (16, 24, 32)), table


def test_overwrite_is_refused_while_a_cell_is_held_and_keeps_the_locks(tmp_path):
    out = tmp_path / "sweep"
    identity = sweep_identity([parse_grid(GRID[0])], load_config(None, TINY))
    prepare_folder(out, identity, overwrite=False, log=print)
    (out / "cells" / "hidden_size-16").mkdir()
    with cell_lock(out, "hidden_size-16"):  # held through another open file: as another process would hold it
        with pytest.raises(InputError, match=r"another process is running cell\(s\) \['hidden_size-16'\]"):
            prepare_folder(out, identity, overwrite=True, log=print)
    assert (out / "cells" / "hidden_size-16").is_dir()
    prepare_folder(out, identity, overwrite=True, log=print)
    assert sorted(p.name for p in out.iterdir()) == [".locks", "cells", "sweep.json"]
    assert not list((out / "cells").iterdir())
