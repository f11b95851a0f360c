"""bench/gpu_check.py --dry-run: every step of the GPU check runs on CPU at tiny sizes and writes JSON that follows
docs/gpu_check.schema.json, so the script is ready whenever a GPU is (CI runs this)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-check")
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    completed = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                               capture_output=True, text=True, timeout=600, env=environment, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_follows_the_schema(dry_run):
    schema = json.loads((ROOT / "docs" / "gpu_check.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(dry_run, schema)
    assert dry_run["dry_run"] is True and dry_run["errors"] == [] and dry_run["skipped"] == []
    assert [row["variant"] for row in dry_run["throughput"]] == [
        "bare-pytorch", "revcurse-eager", "revcurse-sdpa", "revcurse-sdpa-compile", "bare-pytorch-short",
        "revcurse-short-padded", "revcurse-short-packed"]
    assert [row["mode"] for row in dry_run["experiment1"]] == ["full", "lora-bf16-base"]
    assert len(dry_run["size_sweep"]) == 2
    assert dry_run["environment"]["peak_bf16_flops"] is None  # a CPU has no datasheet peak: MFU stays empty
    assert all(row["mfu"] is None for row in dry_run["throughput"] + dry_run["size_sweep"])


@pytest.mark.slow
def test_compiled_and_packed_training_start_from_the_same_loss_as_their_plain_runs(dry_run):
    """Same model init and the same first batch: torch.compile and packing change speed, not the numbers."""
    rows = {row["variant"]: row for row in dry_run["throughput"]}
    # compiled for real, though uncompiled runs came first in the process (accelerate keeps its first settings)
    assert rows["revcurse-sdpa-compile"]["compiled_graphs"] >= 1 and rows["revcurse-sdpa"]["compiled_graphs"] == 0
    assert rows["revcurse-sdpa-compile"]["first_loss"] == pytest.approx(rows["revcurse-sdpa"]["first_loss"], rel=1e-4)
    assert rows["revcurse-eager"]["first_loss"] == pytest.approx(rows["revcurse-sdpa"]["first_loss"], rel=1e-4)
    assert rows["revcurse-short-packed"]["first_loss"] == pytest.approx(
        rows["revcurse-short-padded"]["first_loss"], rel=1e-4)
    # the bare loops train the same model on the same batches: the same first loss, and the ratios' baselines
    assert rows["bare-pytorch"]["first_loss"] == pytest.approx(rows["revcurse-sdpa"]["first_loss"], rel=1e-4)
    assert rows["bare-pytorch-short"]["first_loss"] == pytest.approx(
        rows["revcurse-short-padded"]["first_loss"], rel=1e-4)
    assert rows["bare-pytorch"]["ratio_to_bare"] == rows["bare-pytorch-short"]["ratio_to_bare"] == 1.0
    assert "self_cpu_time_total" in rows["bare-pytorch-short"]["profile"]


@pytest.mark.slow
def test_the_lora_row_fine_tunes_the_full_runs_model_on_new_people(dry_run):
    full, lora = dry_run["experiment1"]
    assert (full["world_seed"], lora["world_seed"]) == (0, 1)
    assert lora["trained_parameters"] < full["trained_parameters"] == full["parameters"]
    assert any(o.startswith("model.checkpoint=") and o.endswith("experiment1-full/model") for o in lora["overrides"])


def test_the_committed_h200_figures_follow_the_schema():
    """docs/gpu-check-h200.json is what the README's GPU tables are read from."""
    schema = json.loads((ROOT / "docs" / "gpu_check.schema.json").read_text(encoding="utf-8"))
    figures = json.loads((ROOT / "docs" / "gpu-check-h200.json").read_text(encoding="utf-8"))
    jsonschema.validate(figures, schema)
    assert not figures["dry_run"] and figures["errors"] == [] and figures["environment"]["device"] == "NVIDIA H200"
