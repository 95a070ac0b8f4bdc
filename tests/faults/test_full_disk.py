"""A full disk (ENOSPC) while writing any output: one line naming the file, no traceback, exit != 0, nothing
half-written in place of a good file, no arch.json claiming success; the same command resumes once space is back.

Two ways to fill the disk: a real 32 KB tmpfs (skipped where the sandbox may not mount one), and the injected
fault ``$S3NAS_FAULT_ENOSPC=<fnmatch pattern of the file name>``, which makes s3nas.utils.io's real writers fail
with ENOSPC after writing part of the temp file (or of the appended line).

The search with W&B on the real tmpfs runs as a real process (``run_cmd``: exit status, stderr of the process,
W&B's own service); the other commands run in the test process (``run_inproc``, tests/support/inprocess.py: the
same command line, stdout/stderr and return code captured; the injected fault is read by s3nas.utils.io at every
write), all at 2 batches an epoch (``SHORT``: what fails is the write of a file, whatever the length of the
training). All searches run in a 6-position space (``SHORT_SMALL``: its table is built in the command's process in a
fraction of a second, into the test's own cache dir): what fails is the write of a file, whatever the space. On the
32 KB disk too: tmpfs counts whole 4 KB pages, and a search's run dir holds 9 files (Hydra's three, the resolved
config, the log, history, choices, summary, arch), so it outgrows 32 KB before the search ends in any space; in
both spaces the first search stops at its first rewrite of history.json.
"""

from __future__ import annotations

import errno
import json
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS

from s3nas.arch import codec
from s3nas.arch.spec import ArchSpec, BlockSpec, Branch
from s3nas.latency.measured import MeasurementLog
from s3nas.utils.io import (FAULT_ENOSPC_ENV, append_lines, atomic_output_path, atomic_write, atomic_write_bytes,
                            atomic_write_json)

# 1 warm-up + 2 search epochs at 16 px; no checkpoints unless a test adds them
SEARCH = ["search.py", "debug=search_tiny", "data.image_size=16", "seed=7", "latency=2.5ms"]
# at 2 batches an epoch (6 steps; 1 validation batch, 2 for the BN statistics): what fails is the write of a file
# (the run dir's on a 32 KB disk, or the one named by the injected fault), whatever the length of the training
SHORT = [*SEARCH, *SHORT_SEARCH, *SMALL_SPLITS]  # 5% val/test splits: the evaluation is not tested here
# a 6-position MBConv space (as tests/test_blackbox_int8.py): what fails is one named file (injected) or the run
# dir's disk (32 KB: its 9 files take at least 9 pages of 4 KB), ~1.2 CPU-s a search and a table of a fraction of a
# second, against 3.5 s a search and ~4 s a table in the debug space
SHORT_SMALL = [*SHORT, *SMALL_SPACE]  # its table in the command's process: no spawned workers
TRAIN = ["train.py", "data.image_size=16", "data.batch_size=32", "trainer.limit_train_batches=4", "recipe.epochs=1",
         "recipe.num_threads=1", "callbacks=default", "callbacks.rich_progress_bar=null",
         "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "seed=3", "logger=none"]
NO_WANDB = {"WANDB_MODE": "disabled"}


def assert_one_line_naming(proc: subprocess.CompletedProcess, path_part: str) -> str:
    """The command failed with one error line, the last on stderr (Lightning's own notes may come before it):
    the full-disk error naming ``path_part``; no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and [line for line in lines if "error" in line.lower()] == lines[-1:], proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    line = lines[-1]
    assert line.startswith("error: no space left on device writing '"), line
    assert path_part in line and "rerun the same command to resume" in line, line
    return line


def assert_nothing_half_written(run_dir: Path) -> None:
    """No temp file left behind and every JSON file in the run dir parses."""
    leftovers = [p for p in run_dir.rglob("*") if p.name.startswith(".") and p.name.endswith((".tmp", ".json",
                                                                                              ".ckpt", ".onnx"))]
    assert not leftovers, leftovers
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text())


def assert_finished_search(run_dir: Path, steps: int = 12) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    arch = json.loads((run_dir / "arch.json").read_text())
    assert summary["total_steps"] == steps
    assert arch["meta"]["search"]["latency_ms"] == summary["latency_ms"] <= summary["target_ms"]
    assert [row["step"] for row in json.loads((run_dir / "history.json").read_text())] == list(range(1, steps + 1))


def free_space(mount_point: Path) -> None:
    """Space is back: remount the tmpfs at 1 GB."""
    subprocess.run(["mount", "-o", "remount,size=1g", str(mount_point)], check=True)


# ----------------------------------------------------------------------------------- the writers themselves
@pytest.mark.parametrize("writer", ["handle", "by_name"])
def test_injected_enospc_keeps_the_good_file_and_names_the_destination(tmp_path, monkeypatch, writer):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"good": True})
    good = target.read_bytes()
    monkeypatch.setenv(FAULT_ENOSPC_ENV, "other.json,summ*.json")
    with pytest.raises(OSError) as caught:
        if writer == "handle":
            atomic_write_json(target, {"good": False, "payload": list(range(1000))})
        else:
            with atomic_output_path(target) as tmp:
                tmp.write_text(json.dumps({"good": False, "payload": list(range(1000))}))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # the partial temp file is gone
    atomic_write_json(tmp_path / "history.json", [1])  # a name the pattern does not match is written
    assert json.loads((tmp_path / "history.json").read_text()) == [1]


def test_failed_append_leaves_no_partial_line(tmp_path, monkeypatch):
    log = tmp_path / "measured-x.jsonl"
    append_lines(log, [json.dumps({"id": "a", "median_ms": 1.0})])
    before = log.read_bytes()
    monkeypatch.setenv(FAULT_ENOSPC_ENV, "measured-*.jsonl")
    with pytest.raises(OSError) as caught:
        append_lines(log, [json.dumps({"id": f"b{i}", "median_ms": 2.0}) for i in range(50)])
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(log)
    assert log.read_bytes() == before  # truncated back: no half line
    # the log's reader skips a line torn by a kill, and the next append starts on a line of its own
    monkeypatch.delenv(FAULT_ENOSPC_ENV)
    with open(log, "ab") as handle:
        handle.write(b'{"id": "torn", "med')
    append_lines(log, [json.dumps({"id": "c", "median_ms": 3.0})])
    assert sorted(MeasurementLog(log).records) == ["a", "c"]


@pytest.fixture
def tiny_fs(tmp_path):
    """A 32 KB tmpfs (skipped where mounting is not allowed); ``free_space`` makes room on it."""
    mount_point = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or proc.returncode}")

    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_real_full_disk_in_every_writer(tiny_fs):
    good = tiny_fs / "arch.json"
    atomic_write_json(good, {"good": True})
    before = good.read_bytes()
    with pytest.raises(OSError) as caught:  # a write through a handle
        atomic_write_bytes(good, b"x" * 100_000)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(good))
    ckpt = tiny_fs / "last.ckpt"
    with pytest.raises(OSError) as caught:  # torch's zip writer turns ENOSPC into a RuntimeError
        atomic_write(ckpt, lambda handle: torch.save({"w": torch.zeros(50_000)}, handle))
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(ckpt))
    log = tiny_fs / "measured.jsonl"
    append_lines(log, ["{}"])
    with pytest.raises(OSError) as caught:  # a short append is truncated back
        append_lines(log, ["y" * 100_000])
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(log))
    assert good.read_bytes() == before and log.read_bytes() == b"{}\n"
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["arch.json", "measured.jsonl"]


# ----------------------------------------------------------------------------------- whole commands
def test_search_on_a_32k_run_dir_then_resume_after_space_is_freed(tiny_fs, run_inproc, tmp_path):
    """In the test process (the real process on a 32 KB run dir: the W&B test below)."""
    run_dir = tiny_fs / "run"
    args = [*SHORT_SMALL, f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    failed = run_inproc(args, env=NO_WANDB, check=False)
    assert_one_line_naming(failed, str(run_dir))
    assert not (run_dir / "arch.json").exists() and not (run_dir / "summary.json").exists()
    assert_nothing_half_written(run_dir)
    free_space(tiny_fs)
    run_inproc(args, env=NO_WANDB)
    assert_finished_search(run_dir, steps=6)
    assert_nothing_half_written(run_dir)


@pytest.mark.parametrize("target", ["history.json", "choices.csv"])
def test_search_history_on_a_full_disk(target, run_inproc, tmp_path):
    run_dir = tmp_path / "run"
    args = [*SHORT_SMALL, f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    failed = run_inproc(args, env={**NO_WANDB, FAULT_ENOSPC_ENV: target}, check=False)
    assert_one_line_naming(failed, str(run_dir / target))
    assert not (run_dir / target).exists()  # the first write failed: no partial file in its place
    assert not (run_dir / "arch.json").exists() and not (run_dir / "summary.json").exists()
    assert_nothing_half_written(run_dir)
    run_inproc(args, env=NO_WANDB)  # no checkpoint yet: the rerun starts over, the stale rows are not kept
    assert_finished_search(run_dir, steps=6)


def test_search_summary_and_arch_on_a_full_disk_resume_from_the_checkpoint(run_inproc, tmp_path):
    run_dir = tmp_path / "run"
    args = [*SHORT_SMALL, "callbacks=default", "callbacks.rich_progress_bar=null", f"hydra.run.dir={run_dir}",
            f"paths.cache_dir={tmp_path / 'cache'}"]
    failed = run_inproc(args, env={**NO_WANDB, FAULT_ENOSPC_ENV: "summary.json"}, check=False)
    assert_one_line_naming(failed, str(run_dir / "summary.json"))
    assert not (run_dir / "summary.json").exists() and not (run_dir / "arch.json").exists()
    assert_nothing_half_written(run_dir)
    history = (run_dir / "history.json").read_bytes()
    # the fit had finished: the rerun starts from its last checkpoint; now arch.json's disk is full
    failed = run_inproc(args, env={**NO_WANDB, FAULT_ENOSPC_ENV: "arch.json"}, check=False)
    assert "resuming from" in failed.stdout and "last.ckpt" in failed.stdout
    assert_one_line_naming(failed, str(run_dir / "arch.json"))
    assert not (run_dir / "arch.json").exists()  # no arch.json claims a finished search ...
    assert json.loads((run_dir / "summary.json").read_text())["total_steps"] == 6  # ... its figures came first
    assert_nothing_half_written(run_dir)
    resumed = run_inproc(args, env=NO_WANDB)
    assert "resuming from" in resumed.stdout and "last.ckpt" in resumed.stdout
    assert_finished_search(run_dir, steps=6)
    assert (run_dir / "history.json").read_bytes() == history  # the training was not redone


def test_latency_table_cache_on_a_full_disk(run_inproc, tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    # the table built in the command's process: what fails is its cache write (the parallel build's workers:
    # tests/test_lut.py, test_search_faults.py's SIGKILL test, faults/test_sweeps.py's joblib sweep)
    args = [*SHORT_SMALL, f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache}"]
    failed = run_inproc(args, env={**NO_WANDB, FAULT_ENOSPC_ENV: "lut-*.json"}, check=False)
    line = assert_one_line_naming(failed, str(cache / "lut-"))
    assert not list(cache.glob("lut-*.json")) and not list(cache.glob(".lut-*")), line  # no cache file, no temp
    assert not (run_dir / "arch.json").exists()
    run_inproc(args, env=NO_WANDB)
    assert len(list(cache.glob("lut-*.json"))) == 1 and (run_dir / "arch.json").is_file()


def test_measurement_log_on_a_full_disk(run_inproc, tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    # a 6-position MBConv space (as tests/test_blackbox_int8.py): 80 measured networks instead of ~500 for the
    # debug space (2 CPU-s a search instead of 10); what fails is the log's write, whatever the space
    args = ["search.py", "debug=search_tiny", "data.image_size=16", "deploy.input_size=16", "deploy.num_classes=10",
            "supernet.depths=[1,1,1,1,2]", "supernet.block_type=mbconv", "candidates.mbconv.kernels=[3]",
            "hardware=sim_midap_blackbox", "latency=0.3ms", *SHORT_SEARCH, f"paths.cache_dir={cache}",
            f"hydra.run.dir={run_dir}"]
    failed = run_inproc(args, env={**NO_WANDB, FAULT_ENOSPC_ENV: "measured-*.jsonl"}, check=False)
    assert_one_line_naming(failed, str(cache / "measured-"))
    for log in cache.glob("measured-*.jsonl"):  # every line written is a whole record
        assert all(json.loads(line) for line in log.read_text().splitlines())
    assert not (run_dir / "arch.json").exists()
    run_inproc(args, env=NO_WANDB)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["latency_source"].startswith("measurement (sim_midap_blackbox") and (run_dir / "arch.json").is_file()


def test_onnx_export_on_a_full_disk(run_inproc, tmp_path):
    arch = tmp_path / "arch.json"
    codec.save_json(ArchSpec(blocks=(BlockSpec("mbconv", (Branch(3, 2.0),), 16, stride=2, stage=0),
                                     BlockSpec("fused", (Branch(3, 2.0),), 24, stride=2, stage=1)),
                             stem_channels=8, stem_kernel=3, head_channels=32, name="tiny"), arch)
    run_dir = tmp_path / "run"
    args = [*TRAIN, f"arch={arch}", "export.onnx=true", f"hydra.run.dir={run_dir}"]
    failed = run_inproc(args, env={**NO_WANDB, FAULT_ENOSPC_ENV: "model.onnx"}, check=False)
    assert_one_line_naming(failed, str(run_dir / "model.onnx"))
    assert not (run_dir / "model.onnx").exists() and not (run_dir / "summary.json").exists()
    assert not [p for p in run_dir.iterdir() if p.suffix in (".onnx", ".data", ".tmp")]
    run_inproc(args, env=NO_WANDB)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert str(summary["resumed_from"]).endswith("last.ckpt")  # the training was not redone
    assert summary["onnx"]["checked"] and (run_dir / "model.onnx").stat().st_size > 0


def test_wandb_offline_run_on_a_32k_run_dir(tiny_fs, run_cmd, tmp_path):
    """W&B's own files cannot be written atomically by s3nas: its log handlers stay silent and the command
    still ends in one line; after space is back the rerun completes with a new offline run."""
    run_dir = tiny_fs / "run"
    args = [*SHORT_SMALL, "logger=wandb", f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    failed = run_cmd(args, env=env, check=False)
    assert_one_line_naming(failed, str(run_dir))
    assert "Logging error" not in failed.stderr and not (run_dir / "arch.json").exists()
    free_space(tiny_fs)
    run_cmd(args, env=env)
    assert_finished_search(run_dir, steps=6)
    assert list((run_dir / "wandb").glob("offline-run-*/*.wandb"))
