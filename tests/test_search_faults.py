"""Faults: failed checkpoint writes, unusable caches and run dirs, interrupts, strict JSON, file modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import forkserver
import pytest
import torch
from inprocess import SMALL_SPACE

from s3nas.latency.lut import build_latency_table
from s3nas.search.checkpoint_io import AtomicCheckpointIO
from s3nas.arch.space import SearchSpace
from s3nas.utils.io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
TINY_SUPERNET = {"name": "tiny", "widths": [16, 24, 32], "strides": [2, 2, 2], "depths": [2, 2, 2],
                 "stem_channels": 16, "head_channels": 64}
TINY_CANDIDATES = {"mixconv": {"max_kernels": [3, 5], "expansions": [0, 2], "min_kernel": 3}}


def test_failed_checkpoint_write_keeps_the_good_one(tmp_path, monkeypatch):
    """A full disk during a checkpoint write (injected ENOSPC half-way) leaves the previous file intact."""
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "s3nas": {"phase": "warmup"}}, path)
    good = path.read_bytes()

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"\x80\x02partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


@pytest.mark.parametrize("kind", ["file", "proc", "readonly"])
def test_unusable_cache_dir_falls_back_to_memory(tmp_path, kind):
    space = SearchSpace.from_config(TINY_SUPERNET, TINY_CANDIDATES, num_classes=10, input_size=64)
    if kind == "file":
        cache_dir = tmp_path / "a_file"
        cache_dir.write_text("not a directory")
    elif kind == "proc":
        cache_dir = Path("/proc/s3nas-cache")
    else:
        cache_dir = tmp_path / "ro"
        cache_dir.mkdir()
        cache_dir.chmod(0o500)
        if os.access(cache_dir, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: a read-only directory is still writable")
    with pytest.warns(UserWarning, match="using the table in memory"):
        table = build_latency_table(space, "midap", cache_dir=cache_dir, workers=1, progress=False,
                                    samples_per_option=2)
    assert table.max_ms > table.min_ms > 0


def test_strict_json_and_umask_modes(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "summary.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": 2})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": 2}
    assert (path.stat().st_mode & 0o777) == 0o644


def _env() -> dict:
    return dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unwritable_run_dir_is_one_line(tmp_path, where, run_inproc):
    """In the test process (tests/support/inprocess.py): exit code 2, one line naming the run dir."""
    run_dir = tmp_path / "a_file" if where == "file" else Path("/proc/s3nas-run")
    if where == "file":
        run_dir.write_text("x")
    proc = run_inproc(["-m", "s3nas.search.check", f"hydra.run.dir={run_dir}", "logger=none"],
                      env={"WANDB_MODE": "disabled"}, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(run_dir) in lines[0], proc.stderr[-2000:]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


def test_sigint_during_training_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    # the warm-up's checkpoint after 4 steps, then 80 more: still training when the interrupt comes. In the 6-position
    # space (SMALL_SPACE: its table built in the command's process in a fraction of a second, in the test's own cache
    # dir; an empty cache had the debug space's table built by two spawned workers, ~9 CPU-s): Ctrl-C is the subject,
    # not the space; the 80 steps still take seconds
    cmd = ["search.py", "debug=search_tiny", "data.image_size=16", "callbacks=default",
           "callbacks.rich_progress_bar=null", "schedule.search_epochs=20", *SMALL_SPACE, "latency=0.5ms",
           f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"]
    proc = forkserver.popen(cmd, REPO, _env())  # a real process, forked from tests/support/forkserver.py's server
    deadline = time.time() + 600
    while not list((run_dir / "checkpoints").glob("*.ckpt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)  # wait for the first epoch's checkpoint: training is under way
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "resume with: python search.py" in lines[0] and f"hydra.run.dir={run_dir}" in lines[0]
    assert not (run_dir / "arch.json").exists()


def test_sigkill_during_table_build_leaves_no_workers(tmp_path):
    """``kill -9`` of a search while its spawned table workers run: they notice and end (no orphans). The search
    is forked from tests/support/forkserver.py's server (its table workers are fresh spawned interpreters); its
    own imports' temp files (W&B's, which a SIGKILL leaves behind) are the server's, removed when it ends."""
    cmd = ["search.py", "debug=search_small", f"paths.cache_dir={tmp_path / 'cache'}", "schedule.lut_workers=2",
           f"hydra.run.dir={tmp_path / 'run'}"]
    proc = forkserver.popen(cmd, REPO, _env())
    try:
        deadline, workers = time.time() + 300, []
        while time.time() < deadline and proc.poll() is None:
            workers = [c for c in _children(proc.pid) if "spawn" in Path(f"/proc/{c}/cmdline").read_text()]
            if len(workers) >= 2:
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    if not workers:
        pytest.skip("the table was built before its workers could be observed")
    deadline = time.time() + 30
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)


def test_ctrl_c_during_a_checkpoint_write_is_delivered_after_it(tmp_path, monkeypatch):
    """An interrupt inside torch.save would corrupt its zip writer: it is held, the file completes, then raised."""
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    real_save = torch.save

    def save_then_interrupt(obj, handle, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the write
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "s3nas": {"phase": "search"}}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=False)["s3nas"] == {"phase": "search"}  # complete and readable
