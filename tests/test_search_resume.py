"""An interrupted search resumes from its checkpoints and ends with the same architecture (CPU, deterministic)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# 1 warm-up epoch + 2 search epochs of 4 batches of 16 digits at 16x16: 12 optimizer steps.
TINY = ["debug=search_tiny", "data.image_size=16", "seed=7", "latency=2.5ms"]


def search(run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "search.py", *TINY, *overrides, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def arch_of(run_dir: Path) -> dict:
    arch = json.loads((run_dir / "arch.json").read_text())
    arch.pop("meta", None)
    return arch


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    search(run_dir)
    return run_dir


def _interrupt_and_resume(tmp_path: Path, step: int, resume_overrides=()) -> Path:
    run_dir = tmp_path / "run"
    crashed = search(run_dir, f"schedule.interrupt_after_steps={step}", check=False)
    assert crashed.returncode != 0 and "interrupted after" in crashed.stderr
    assert not (run_dir / "arch.json").exists()
    search(run_dir, *resume_overrides)
    return run_dir


def test_resume_mid_search_same_architecture(reference, tmp_path):
    # crash in the 2nd search epoch: resumes the search phase from last.ckpt (end of the 1st)
    run_dir = _interrupt_and_resume(tmp_path, step=10)
    assert arch_of(run_dir) == arch_of(reference)
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    assert summary["total_steps"] == ref_summary["total_steps"] == 12
    assert summary["estimated_ms"] == pytest.approx(ref_summary["estimated_ms"])
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["step"] for row in history] == list(range(1, 13))  # no duplicated / missing steps


@pytest.mark.slow
def test_resume_between_phases_with_ckpt_path(reference, tmp_path):
    # crash in the 1st search epoch: only warmup.ckpt exists; resume explicitly from it elsewhere
    crashed_dir = tmp_path / "crashed"
    search(crashed_dir, "schedule.interrupt_after_steps=6", check=False)
    resumed_dir = tmp_path / "resumed"
    search(resumed_dir, f"ckpt_path={crashed_dir / 'checkpoints' / 'warmup.ckpt'}")
    assert arch_of(resumed_dir) == arch_of(reference)
