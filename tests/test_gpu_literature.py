"""bench/gpu_literature.py --dry-run: the follow-up literature's GPU sweeps run on CPU at tiny sizes and pool each
setting's seeds into a mean and a 95% interval, so the script is ready whenever a GPU is (CI runs this)."""

import importlib.util
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
               "--jobs", "1", "--seeds", "2", "--sections", "mlmu_compute"]
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
    assert set(data["sections"]) == {"mlmu_compute", "causal_reference"}


def test_the_cure_sections_are_sweeps_over_arms_and_seeds():
    """The sections not run above (CI time): their grids, as the GPU run and the dry run get them."""
    specification = importlib.util.spec_from_file_location("gpu_literature", ROOT / "bench" / "gpu_literature.py")
    module = importlib.util.module_from_spec(specification)
    sys.modules[specification.name] = module  # its dataclasses look their module up there
    specification.loader.exec_module(module)
    planned = {s.name: s for s in module.sweeps(False, 3, {"cheap_cures", "paper_configs"})}
    assert set(planned) == {"cheap_cures_data", "cheap_cures_compute", "bios_paper"}
    assert planned["cheap_cures_data"].grid == (f"cures={module.CHEAP_CURES}", "seed=0,1,2")
    assert "cure.match=compute" in planned["cheap_cures_compute"].overrides
    assert planned["bios_paper"].config.is_file()
    dry = {s.name: s for s in module.sweeps(True, 2, {"cheap_cures"})}
    assert dry["cheap_cures_data"].grid == ("cures=none,identity-bridge", "seed=0,1")
