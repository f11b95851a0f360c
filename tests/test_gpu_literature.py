"""bench/gpu_literature.py --dry-run: the follow-up literature's GPU sweeps run on CPU at tiny sizes and pool each
setting's seeds into a mean and a 95% interval, so the script is ready whenever a GPU is (CI runs this)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_dry_run_pools_seeds_per_setting_and_draws_the_curve(tmp_path):
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, str(ROOT / "bench" / "gpu_literature.py"), "--dry-run", "--out", str(tmp_path),
               "--jobs", "1", "--seeds", "2", "--sections", "mlmu_compute,cheap_cures"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_literature.json").read_text(encoding="utf-8"))
    assert data["errors"] == [] and data["skipped"] == []
    sweep = data["sections"]["mlmu_compute"]
    assert "train.objective=mlm-u" in sweep["overrides"]
    assert {row["train.epochs"] for row in sweep["accuracy"]} == {5, 10}  # 1x and 2x the baseline's epochs
    for row in sweep["accuracy"] + data["sections"]["causal_reference"]["accuracy"]:
        assert row["n_seeds"] == 2 and len(row["per_seed"]) == 2
        assert row["ci95_low"] <= row["accuracy"] <= row["ci95_high"]
    steps = {(cost["epochs"], cost["seed"]): cost["train_steps"] for cost in sweep["per_seed"]}
    assert steps[(10.0, 0)] == 2 * steps[(5.0, 0)]  # 2x compute is twice the steps, nothing else changed
    assert (tmp_path / "mlmu_compute.png").stat().st_size > 10_000
    arms = {(row["cures"], row["subset"]) for row in data["sections"]["cheap_cures_compute"]["accuracy"]}
    assert {arm for arm, _ in arms} == {"none", "identity-bridge"}  # a dry run keeps two arms
    assert "cure.match=compute" in data["sections"]["cheap_cures_compute"]["overrides"]
