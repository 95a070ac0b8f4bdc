"""A multirun always ends with sweep_summary.csv/.md listing every job (overrides, status, one-line reason,
figures when ok) and an exit code saying whether something failed: a failing job (an infeasible target), an
interrupted job, and parallel jobs (the joblib launcher) sharing one latency-table cache.

The sweeps with Hydra's basic launcher (jobs one after the other in the command's process) run in the test process
(tests/support/inprocess.py: the command's exit code is its ``sys.exit``); the joblib sweep, whose jobs are worker
processes, runs as a real process and checks its exit status. All sweeps search a 6-position space (``SMALL_SPACE``:
the sweep's bookkeeping is tested, not the space); the joblib sweep's cache starts empty, and its jobs build the table
into it with two spawned table workers each (processes started inside the launcher's worker processes)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS

# tiny searches at 2 batches an epoch (1 validation batch, 2 for the BN statistics): the sweep's bookkeeping is
# what is tested, not the search
TINY = ["debug=search_tiny", "data.image_size=16", *SHORT_SEARCH, *SMALL_SPLITS]
# the joblib sweep: the table built by 2 spawned workers in each job (SMALL_SPACE builds it in the job's process). Two
# processes building one table at the same time (released together at a barrier): faults/test_concurrency.py
JOBLIB_TABLE_WORKERS = "schedule.lut_workers=2"
INFEASIBLE = "latency: target 0.01 ms is below the fastest architecture"


def _sweep(run, sweep_dir: Path, *overrides: str, env=None):
    """``run`` (run_cmd: a real process, run_inproc: in the test process) the sweep -> CompletedProcess."""
    return run(["search.py", "-m", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}"], env=env, timeout=600,
               check=False)


def _rows(sweep_dir: Path) -> dict[str, dict]:
    with (sweep_dir / "sweep_summary.csv").open() as handle:
        return {row["job"]: row for row in csv.DictReader(handle)}


def _assert_ok_row(row: dict, job_dir: Path, target_ms: float) -> dict:
    """An ok row holds the figures of its job's own summary.json, and the search met its target."""
    summary = json.loads((job_dir / "summary.json").read_text())
    assert row["status"] == "ok" and row["reason"] == ""
    assert float(row["latency_ms"]) == summary["latency_ms"] <= target_ms
    assert float(row["target_ms"]) == target_ms and float(row["val_acc"]) == summary["val_acc"]
    return summary


def _assert_failed_row(row: dict) -> None:
    assert row["status"] == "failed" and "latency=0.01ms" in row["overrides"].split()
    assert row["reason"].startswith(INFEASIBLE) and "\n" not in row["reason"]
    assert row["latency_ms"] == "" and row["val_acc"] == ""


def test_a_failing_job_is_in_the_summary_with_its_reason(tmp_path, run_inproc):
    sweep_dir = tmp_path / "sweep"
    proc = _sweep(run_inproc, sweep_dir, *SMALL_SPACE, "latency=0.01ms,2.5ms", f"paths.cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 2, proc.stderr[-3000:]  # something failed
    assert "Traceback" not in proc.stderr
    assert f"error: sweep: 1 of 2 jobs failed or were interrupted; see {sweep_dir / 'sweep_summary.md'}" in proc.stderr
    rows = _rows(sweep_dir)
    assert sorted(rows) == ["0", "1"]
    _assert_failed_row(rows["0"])
    assert "latency=2.5ms" in rows["1"]["overrides"].split()
    _assert_ok_row(rows["1"], sweep_dir / "1", 2.5)
    status = json.loads((sweep_dir / "0" / "job_status.json").read_text())
    assert status["status"] == "failed" and "latency=0.01ms" in status["overrides"]
    markdown = (sweep_dir / "sweep_summary.md").read_text().splitlines()
    assert len(markdown) == 4 and "| failed |" in markdown[2] and INFEASIBLE in markdown[2] and "| ok |" in markdown[3]


def test_crashed_jobs_and_an_interrupted_sweep(tmp_path, run_inproc):
    """Both jobs crash (an exception that is no user error, injected after 2 steps): the sweep exits 1 and the
    summary gives each crash's type and message. Then the same sweep dir as an interrupt leaves it (job 0
    without its status file, job 1 never started) is listed as interrupted, with the planned overrides."""
    from s3nas.runtime.sweep import collect_sweep

    sweep_dir = tmp_path / "sweep"
    proc = _sweep(run_inproc, sweep_dir, *SMALL_SPACE, "latency=2.5ms,3ms", f"paths.cache_dir={tmp_path / 'cache'}",
                  env={"S3NAS_FAULT_INTERRUPT_AFTER_STEPS": "2"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: sweep: 2 of 2 jobs failed or were interrupted" in proc.stderr
    rows = _rows(sweep_dir)
    assert sorted(rows) == ["0", "1"] and {row["status"] for row in rows.values()} == {"failed"}
    assert all(row["reason"].startswith("SearchInterrupted: interrupted after 2 steps") for row in rows.values())
    assert "latency=3ms" in rows["1"]["overrides"].split()

    (sweep_dir / "0" / "job_status.json").unlink()
    shutil.rmtree(sweep_dir / "1")
    rows = {row["job"]: row for row in collect_sweep(sweep_dir)}
    assert rows["0"]["status"] == "interrupted" and "latency=2.5ms" in rows["0"]["overrides"].split()
    assert rows["1"]["status"] == "interrupted" and rows["1"]["reason"].startswith("not started")
    assert "latency=3ms" in rows["1"]["overrides"].split()


def test_parallel_jobs_share_one_cache_and_the_summary(tmp_path, run_cmd):
    """hydra/launcher=joblib (worker processes, 2 at a time): the failing job's reason reaches the summary, the
    two searches build the same latency table into one shared cache dir, and the cache holds one valid table."""
    sweep_dir, cache = tmp_path / "sweep", tmp_path / "cache"
    proc = _sweep(run_cmd, sweep_dir, *SMALL_SPACE, JOBLIB_TABLE_WORKERS, "latency=0.01ms,2.5ms,3ms",
                  f"paths.cache_dir={cache}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: sweep: 1 of 3 jobs failed or were interrupted" in proc.stderr
    rows = _rows(sweep_dir)
    assert sorted(rows) == ["0", "1", "2"]
    _assert_failed_row(rows["0"])
    first = _assert_ok_row(rows["1"], sweep_dir / "1", 2.5)
    second = _assert_ok_row(rows["2"], sweep_dir / "2", 3.0)
    # one latency table (same space, same hardware) seen identically by both jobs
    assert (first["lut_min_ms"], first["lut_max_ms"]) == (second["lut_min_ms"], second["lut_max_ms"])
    luts = sorted(cache.glob("*.json"))
    assert len(luts) == 1, sorted(cache.iterdir())
    table = json.loads(luts[0].read_text())  # complete, not a torn write
    assert (table["min_ms"], table["max_ms"]) == (first["lut_min_ms"], first["lut_max_ms"])
