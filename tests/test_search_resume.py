"""An interrupted search resumes from its checkpoints and ends with the same architecture (CPU, deterministic);
it keeps one resumable checkpoint, ``last.ckpt``, written at every epoch's end, not one file per epoch beside it.

The searches run in the test process (tests/support/inprocess.py: what is tested is the checkpoints and the
resume, not the process); the crash is the injected $S3NAS_FAULT_INTERRUPT_AFTER_STEPS exception. Real signals
and the exit status of an interrupted process: tests/faults/test_signals.py and tests/test_search_faults.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS, run_inprocess

# 1 warm-up epoch + 2 search epochs of 2 batches of 16 digits at 16x16 (SHORT_SEARCH; 5% val/test splits,
# SMALL_SPLITS: the accuracies compared are of fewer images, still exactly): 6 optimizer steps, epochs
# ending at steps 2, 4 and 6; Lightning's ModelCheckpoint (callbacks=default) keeps last.ckpt, rewritten at each
# epoch's end. In the 6-position MBConv space (SMALL_SPACE), with a target below its all-on network's latency
# (0.32-0.69 ms on midap) so that the latency term trains the thresholds; the debug space's supernet (mixed
# kernels) is resumed exactly by tests/faults/test_signals.py.
TINY = ["debug=search_tiny", "data.image_size=16", "seed=7", "latency=0.5ms", "callbacks=default",
        "callbacks.rich_progress_bar=null", *SHORT_SEARCH, *SMALL_SPLITS, *SMALL_SPACE]
STEPS = 6


def search(run_dir: Path, *overrides: str, check: bool = True,
           crash_after_steps: int | None = None) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "disabled"}
    if crash_after_steps is not None:  # fault injection: not a config key
        env["S3NAS_FAULT_INTERRUPT_AFTER_STEPS"] = str(crash_after_steps)
    return run_inprocess(["search.py", *TINY, *overrides, f"hydra.run.dir={run_dir}"], env=env, check=check)


def checkpoints(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def global_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]


def arch_of(run_dir: Path) -> dict:
    arch = json.loads((run_dir / "arch.json").read_text())
    arch.pop("meta", None)
    return arch


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(uninterrupted run, run crashed at step 5, in the last epoch, then resumed in its run dir)."""
    reference = tmp_path_factory.mktemp("uninterrupted")
    run_dir = tmp_path_factory.mktemp("interrupted")
    search(reference)
    crashed = search(run_dir, check=False, crash_after_steps=5)
    assert crashed.returncode != 0 and "interrupted after" in crashed.stderr
    assert not (run_dir / "arch.json").exists()
    # one checkpoint, the 2nd epoch's end (4 steps), not one file per epoch
    assert checkpoints(run_dir) == ["last.ckpt"] and global_step(run_dir) == 4
    resumed = search(run_dir)
    assert "resuming from" in resumed.stdout and "last.ckpt" in resumed.stdout
    return reference, run_dir


@pytest.fixture(scope="module")
def crashed_early(tmp_path_factory) -> Path:
    """A run crashed in the 1st search epoch (step 3): its latest checkpoint is the warm-up's end (step 2)."""
    crashed_dir = tmp_path_factory.mktemp("crashed")
    crashed = search(crashed_dir, check=False, crash_after_steps=3)
    assert crashed.returncode != 0 and "interrupted after" in crashed.stderr
    return crashed_dir


@pytest.fixture(scope="module")
def reference(runs) -> Path:
    return runs[0]


def test_resume_mid_search_same_architecture(runs):
    # crash in the 2nd search epoch: resumes the search phase from last.ckpt (end of the 1st)
    reference, run_dir = runs
    assert arch_of(run_dir) == arch_of(reference)
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    assert summary["total_steps"] == ref_summary["total_steps"] == STEPS
    assert summary["estimated_ms"] == pytest.approx(ref_summary["estimated_ms"])
    history = json.loads((run_dir / "history.json").read_text())
    ref_history = json.loads((reference / "history.json").read_text())
    assert [row["step"] for row in history] == list(range(1, STEPS + 1))  # no duplicated / missing steps
    # the tiny run's architecture barely moves, so compare the training itself: same losses after the
    # resume point and the same final thresholds (what decoding reads)
    assert [r["ce"] for r in history[4:]] == pytest.approx([r["ce"] for r in ref_history[4:]], rel=1e-5)
    assert history[-1]["thresholds"] == pytest.approx(ref_history[-1]["thresholds"], rel=1e-5, abs=1e-7)
    assert summary["val_acc"] == pytest.approx(ref_summary["val_acc"])
    assert summary["supernet_val_acc"] == pytest.approx(ref_summary["supernet_val_acc"])


def test_search_keeps_one_resumable_checkpoint(runs, crashed_early):
    """One last.ckpt, rewritten at every epoch's end: after a crash in the 2nd epoch of 3 (2 steps each) it is
    the 1st epoch's end; after the resume in the same run dir (runs) it is the end of the search."""
    assert checkpoints(crashed_early) == ["last.ckpt"]
    assert global_step(crashed_early) == 2  # the 1st epoch's end, before the crash
    _, resumed = runs
    assert checkpoints(resumed) == ["last.ckpt"]
    assert global_step(resumed) == STEPS


def test_resume_between_phases_with_ckpt_path(reference, crashed_early, tmp_path):
    # crash in the 1st search epoch: the latest checkpoint is the end of the warm-up (2 steps); resume from it
    # explicitly in another run dir
    checkpoint = crashed_early / "checkpoints" / "last.ckpt"
    assert global_step(crashed_early) == 2
    resumed_dir = tmp_path / "resumed"
    resumed = search(resumed_dir, f"ckpt_path={checkpoint}")
    assert "resuming from" in resumed.stdout and str(checkpoint) in resumed.stdout
    assert arch_of(resumed_dir) == arch_of(reference)
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (resumed_dir, reference))
    assert summary["total_steps"] == ref_summary["total_steps"] == STEPS  # 4 steps run here, after the warm-up's 2
    history = json.loads((resumed_dir / "history.json").read_text())
    ref_history = json.loads((reference / "history.json").read_text())
    assert history[-1]["thresholds"] == pytest.approx(ref_history[-1]["thresholds"], rel=1e-5, abs=1e-7)
    assert summary["val_acc"] == pytest.approx(ref_summary["val_acc"])


def test_callbacks_none_writes_no_checkpoint(tmp_path):
    run_dir = tmp_path / "none"
    search(run_dir, "callbacks=none", "schedule.warmup_epochs=0", "schedule.search_epochs=1")
    assert (run_dir / "summary.json").is_file()
    assert not list(run_dir.rglob("*.ckpt"))
