"""Multirun sweeps of the search: a lambda grid and optuna (two objectives) on tiny searches."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = ["debug=search_tiny", "data.image_size=16"]


def _multirun(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "search.py", "-m", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_lambda_grid_writes_sweep_table(tmp_path):
    proc = _multirun(tmp_path, "loss.lambda1=5,30", "loss.lambda2=100")
    with (tmp_path / "sweep_summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(float(r["lambda1"]) for r in rows) == [5.0, 30.0]
    assert all(float(r["simulated_ms"]) <= float(r["target_ms"]) for r in rows)
    assert "Sweep summary" in proc.stdout
    assert all((tmp_path / str(job) / "summary.json").exists() for job in (0, 1))


@pytest.mark.slow
def test_optuna_two_objectives(tmp_path):
    _multirun(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.population_size=2")
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna"
    assert all(len(trial["values"]) == 2 for trial in results["solutions"])
