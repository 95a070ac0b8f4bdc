"""An interrupted search resumes from its checkpoints and ends with the same architecture (CPU, deterministic)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# 1 warm-up epoch + 2 search epochs of 4 batches of 16 digits at 16x16: 12 optimizer steps; Lightning's
# ModelCheckpoint (callbacks=default) keeps the latest epoch and last.ckpt.
TINY = ["debug=search_tiny", "data.image_size=16", "seed=7", "latency=2.5ms", "callbacks=default",
        "callbacks.rich_progress_bar=null"]


def start(run_dir: Path, *overrides: str, crash_after_steps: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    if crash_after_steps is not None:  # fault injection: not a config key
        env["S3NAS_FAULT_INTERRUPT_AFTER_STEPS"] = str(crash_after_steps)
    cmd = [sys.executable, "search.py", *TINY, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, check: bool = True) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=900)
    if check:
        assert proc.returncode == 0, stderr[-4000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def search(run_dir: Path, *overrides: str, check: bool = True,
           crash_after_steps: int | None = None) -> subprocess.CompletedProcess:
    return finish(start(run_dir, *overrides, crash_after_steps=crash_after_steps), check=check)


def arch_of(run_dir: Path) -> dict:
    arch = json.loads((run_dir / "arch.json").read_text())
    arch.pop("meta", None)
    return arch


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(uninterrupted run, run crashed at step 10 then resumed); the first two run side by side."""
    reference = tmp_path_factory.mktemp("uninterrupted")
    run_dir = tmp_path_factory.mktemp("interrupted")
    procs = [start(reference), start(run_dir, crash_after_steps=10)]
    finish(procs[0])
    crashed = finish(procs[1], check=False)
    assert crashed.returncode != 0 and "interrupted after" in crashed.stderr
    assert not (run_dir / "arch.json").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    resumed = search(run_dir)
    assert "resuming from" in resumed.stdout and "last.ckpt" in resumed.stdout
    return reference, run_dir


@pytest.fixture(scope="module")
def reference(runs) -> Path:
    return runs[0]


def test_resume_mid_search_same_architecture(runs):
    # crash in the 2nd search epoch: resumes the search phase from last.ckpt (end of the 1st)
    reference, run_dir = runs
    assert arch_of(run_dir) == arch_of(reference)
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    assert summary["total_steps"] == ref_summary["total_steps"] == 12
    assert summary["estimated_ms"] == pytest.approx(ref_summary["estimated_ms"])
    history = json.loads((run_dir / "history.json").read_text())
    ref_history = json.loads((reference / "history.json").read_text())
    assert [row["step"] for row in history] == list(range(1, 13))  # no duplicated / missing steps
    # the tiny run's architecture barely moves, so compare the training itself: same losses after the
    # resume point and the same final thresholds (what decoding reads)
    assert [r["ce"] for r in history[8:]] == pytest.approx([r["ce"] for r in ref_history[8:]], rel=1e-5)
    assert history[-1]["thresholds"] == pytest.approx(ref_history[-1]["thresholds"], rel=1e-5, abs=1e-7)
    assert summary["val_acc"] == pytest.approx(ref_summary["val_acc"])
    assert summary["supernet_val_acc"] == pytest.approx(ref_summary["supernet_val_acc"])


def test_resume_between_phases_with_ckpt_path(reference, tmp_path):
    # crash early in the 1st search epoch: the latest checkpoint is the end of the warm-up (4 steps); resume
    # from it explicitly in another run dir
    import torch

    crashed_dir = tmp_path / "crashed"
    crashed = search(crashed_dir, check=False, crash_after_steps=6)
    assert crashed.returncode != 0 and "interrupted after" in crashed.stderr
    checkpoint = crashed_dir / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"] == 4
    resumed_dir = tmp_path / "resumed"
    resumed = search(resumed_dir, f"ckpt_path={checkpoint}")
    assert "resuming from" in resumed.stdout and str(checkpoint) in resumed.stdout
    assert arch_of(resumed_dir) == arch_of(reference)
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (resumed_dir, reference))
    assert summary["total_steps"] == ref_summary["total_steps"] == 12  # 8 steps run here, after the warm-up's 4
    history = json.loads((resumed_dir / "history.json").read_text())
    ref_history = json.loads((reference / "history.json").read_text())
    assert history[-1]["thresholds"] == pytest.approx(ref_history[-1]["thresholds"], rel=1e-5, abs=1e-7)
    assert summary["val_acc"] == pytest.approx(ref_summary["val_acc"])


def test_callbacks_none_writes_no_checkpoint(tmp_path):
    run_dir = tmp_path / "none"
    search(run_dir, "callbacks=none", "schedule.warmup_epochs=0", "schedule.search_epochs=1")
    assert (run_dir / "summary.json").is_file()
    assert not list(run_dir.rglob("*.ckpt"))
