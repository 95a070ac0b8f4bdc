"""SIGTERM / SIGUSR1 (a cluster's stop and time-limit warning) during search.py, train.py and the random baselines:
a resumable checkpoint at that step, one line naming the resume command, exit 128 + signum, and the same
command then ends with exactly the results of an uninterrupted run.

The signals are real: ``$S3NAS_FAULT_SIGNAL_AT_STEP=N:TERM`` makes the training send itself the signal after
optimizer step N (so the step is known), one test sends it from outside while training runs, and the
second-signal test sends one during the checkpoint write. The interrupted commands are real processes (exit
status, handlers, the resume line), forked from tests/support/forkserver.py's server; the uninterrupted references and the final resume that runs to the end, whose
outputs are compared, run in the test process (tests/support/inprocess.py). Each search and train test stops one
command twice (SIGTERM, then SIGUSR1 or the other way round, in the resumed run), so the resumed run is itself
interrupted and resumed. The injected-step search test and the random search draw from the 6-position MBConv space
(SMALL_SPACE): what they test is where a signal lands and the exact resume, not the space. The SIGTERM from outside
searches a 6-position MixConv space: the suite's one exact resume of a mixed-kernel search (tests/test_search_resume.py
and faults/test_full_disk.py resume the MBConv SMALL_SPACE).
"""

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
from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS, run_inprocess

from s3nas.arch import codec
from s3nas.arch.spec import ArchSpec, BlockSpec, Branch

REPO = Path(__file__).resolve().parents[2]
# search: 1 warm-up epoch + 2 search epochs of 2 batches (steps 1-2 warm-up, 3-6 search; 1 validation batch, 2 for
# the BN statistics: what is tested is where the signals land and the resume, not how far the search gets)
TINY_SEARCH = ["debug=search_tiny", "data.image_size=16", "seed=7", "callbacks=default",
               "callbacks.rich_progress_bar=null", *SHORT_SEARCH, *SMALL_SPLITS]
# the injected signals: in the 6-position MBConv space (a search ~2.3 CPU-s cheaper a process or run, its table built
# in the command's process), a target under its all-on network's 0.69 ms on midap, so the search steps train the
# thresholds and the resume is compared on trained thresholds
SEARCH = [*TINY_SEARCH, "latency=0.5ms", *SMALL_SPACE]
# the SIGTERM from outside: a 6-position MixConv space (the debug space's block type and kernel candidates, so the
# suite's one exact resume of a mixed-kernel search; SMALL_SPACE is MBConv) at 0.8 ms, under its all-on network's
# 1.06 ms on midap; its table built in the command's process. Its search runs ~1.5 s after the warm-up's checkpoint
# appears (the debug space's ~8 s); the signal is sent within ~50 ms of it
MIXED_SEARCH = [*TINY_SEARCH, "latency=0.8ms", "supernet.depths=[1,1,1,1,2]", "schedule.lut_workers=1"]
SEARCH_STEPS = 6
# train: 3 epochs of 4 batches (12 steps), EMA and random shifts on (the recipe's defaults)
TRAIN = ["data.image_size=16", "data.batch_size=32", "trainer.limit_train_batches=4", "recipe.epochs=3",
         "recipe.num_threads=1", "callbacks=none", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "seed=3", "logger=none"]
# random search: 1 sample trained 1 epoch of 2 batches, then retrained 2 epochs (4 steps); drawn from SMALL_SPACE's
# space (its table built in the command's process: the random baselines' config has lut_workers at the top level) at
# 0.5 ms +-2% on midap (its networks span 0.32-0.69 ms): a network of at most 6 MBConv blocks to train and checkpoint
# instead of one of up to 29 MixConv blocks of the default space, whose table an empty cache built first (~20 CPU-s,
# two spawned workers)
RANDOM = ["debug=fast", "data.image_size=16", "logger=none", "latency=0.5ms", "num_samples=1", "full.epochs=2",
          *[o for o in SMALL_SPACE if o.startswith(("supernet.", "candidates."))], "lut_workers=1"]


def _env(fault: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "S3NAS_FAULT_SIGNAL_AT_STEP")}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    if fault:
        env["S3NAS_FAULT_SIGNAL_AT_STEP"] = fault  # fault injection: not a config key
    return env


def start(command: list[str], run_dir: Path, fault: str | None = None) -> subprocess.Popen:
    """``python <command>`` as a real process (forked from tests/support/forkserver.py's server: its own pid,
    signal handlers and exit status, without the ~6 CPU-s of imports)."""
    return forkserver.popen([*command, f"hydra.run.dir={run_dir}"], REPO, _env(fault))


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_to_the_end(command: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    """The same command, uninterrupted, in the test process (its outputs are what is compared)."""
    return run_inprocess([*command, f"hydra.run.dir={run_dir}"], env={"WANDB_MODE": "disabled"})


def assert_stopped(done: subprocess.CompletedProcess, signum: int, run_dir: Path, script: str, step: int | None):
    """Exit 128 + signum, one 'interrupted by SIG...' line naming the checkpoint and the resume command."""
    name = signal.Signals(signum).name
    assert done.returncode == 128 + signum, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-4000:]
    assert lines[0].startswith(f"error: interrupted by {name}; ")
    assert f"resume with: {script}" in lines[0] and f"hydra.run.dir={run_dir}" in lines[0]
    if step is not None:
        assert f"saved a checkpoint at step {step} (" in lines[0]


def state_of(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


# ------------------------------------------------------------------------------------------------ search
def _search_command(tmp_path_factory, name: str, overrides: list[str]) -> list[str]:
    """search.py with ``overrides`` and a latency-table cache shared by its runs (built by the reference)."""
    return ["search.py", *overrides, f"paths.cache_dir={tmp_path_factory.mktemp(f'{name}_cache')}"]


def _reference(tmp_path_factory, name: str, command: list[str]) -> Path:
    """The command's uninterrupted run (in the test process): what the interrupted and resumed runs must equal."""
    run_dir = tmp_path_factory.mktemp(f"{name}_reference")
    run_to_the_end(command, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def search_command(tmp_path_factory) -> list[str]:
    return _search_command(tmp_path_factory, "search", SEARCH)


@pytest.fixture(scope="module")
def search_reference(tmp_path_factory, search_command) -> Path:
    return _reference(tmp_path_factory, "search", search_command)


@pytest.fixture(scope="module")
def mixed_search_command(tmp_path_factory) -> list[str]:
    return _search_command(tmp_path_factory, "mixed_search", MIXED_SEARCH)


@pytest.fixture(scope="module")
def mixed_search_reference(tmp_path_factory, mixed_search_command) -> Path:
    return _reference(tmp_path_factory, "mixed_search", mixed_search_command)


def arch_of(run_dir: Path) -> dict:
    arch = json.loads((run_dir / "arch.json").read_text())
    arch.pop("meta", None)
    return arch


def assert_same_search(run_dir: Path, reference: Path) -> None:
    assert arch_of(run_dir) == arch_of(reference)
    history = json.loads((run_dir / "history.json").read_text())
    expected = json.loads((reference / "history.json").read_text())
    assert [row["step"] for row in history] == list(range(1, SEARCH_STEPS + 1))  # no duplicated / missing steps
    for row, ref in zip(history, expected):  # exact: same batches, same sub-paths, same learning rates
        assert (row["phase"], row["lr"], row["ce"], row["thresholds"]) == \
               (ref["phase"], ref["lr"], ref["ce"], ref["thresholds"]), row["step"]
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    for key in ("total_steps", "estimated_ms", "val_acc", "supernet_val_acc"):
        assert summary[key] == ref_summary[key], key
    final, ref_final = (state_of(d / "checkpoints" / "last.ckpt") for d in (run_dir, reference))
    assert final["global_step"] == ref_final["global_step"] == SEARCH_STEPS
    assert_same_tensors(final["state_dict"], ref_final["state_dict"])  # supernet weights and thresholds


def test_signals_mid_search_then_same_command_same_result(search_command, search_reference, tmp_path):
    """SIGTERM mid warm-up epoch (step 1 of 2); the same command resumes and gets SIGUSR1 mid search epoch (step 3,
    the first of steps 3-4); the same command again ends with the uninterrupted run's results."""
    run_dir = tmp_path / "run"
    for fault, signum, step in (("1:TERM", signal.SIGTERM, 1), ("3:USR1", signal.SIGUSR1, 3)):
        stopped = finish(start(search_command, run_dir, fault=fault))
        assert_stopped(stopped, signum, run_dir, "python search.py", step)
        if step > 1:  # the second command started from the first one's checkpoint
            assert "resuming from" in stopped.stdout and "last.ckpt" in stopped.stdout
        assert not (run_dir / "arch.json").exists()
        assert state_of(run_dir / "checkpoints" / "last.ckpt")["global_step"] == step  # taken at that step
    resumed = run_to_the_end(search_command, run_dir)
    assert "resuming from" in resumed.stdout and "last.ckpt" in resumed.stdout
    assert_same_search(run_dir, search_reference)


def test_sigterm_from_outside_during_the_search(mixed_search_command, mixed_search_reference, tmp_path):
    """Sent by another process at whatever step the search is at (after the warm-up's checkpoint)."""
    run_dir = tmp_path / "run"
    proc = start(mixed_search_command, run_dir)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the search finished before the signal could be sent")  # not observed on 2 cores
    proc.send_signal(signal.SIGTERM)
    stopped = finish(proc)
    if stopped.returncode == 0:
        pytest.skip("the search finished before the signal arrived")
    assert_stopped(stopped, signal.SIGTERM, run_dir, "python search.py", None)
    run_to_the_end(mixed_search_command, run_dir)
    assert_same_search(run_dir, mixed_search_reference)


# ------------------------------------------------------------------------------------------------ train
def tiny_spec() -> ArchSpec:
    """MBConv, MixConv (two kernels, residual, SE) and fused blocks (as tests/test_train.py)."""
    return ArchSpec(blocks=(
        BlockSpec("mbconv", (Branch(3, 2.0),), 16, stride=2, stage=0),
        BlockSpec("mixconv", (Branch(3, 1.0), Branch(5, 1.0)), 16, stride=1, stage=1, se_ratio=0.25),
        BlockSpec("fused", (Branch(3, 2.0),), 24, stride=2, stage=2),
    ), stem_channels=8, stem_kernel=3, head_channels=32, name="tiny")


@pytest.fixture(scope="module")
def arch_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "arch.json"
    codec.save_json(tiny_spec(), path)
    return path


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory, arch_file) -> Path:
    run_dir = tmp_path_factory.mktemp("train_reference")
    run_to_the_end(["train.py", *TRAIN, f"arch={arch_file}"], run_dir)
    return run_dir


def test_signals_mid_training_then_same_command_same_weights(arch_file, train_reference, tmp_path):
    """SIGUSR1 at step 2 (1st epoch); the same command resumes and gets SIGTERM at step 6 (2nd epoch); the same
    command again ends with the uninterrupted run's weights and figures."""
    reference, run_dir = train_reference, tmp_path / "run"
    command = ["train.py", *TRAIN, f"arch={arch_file}"]
    for fault, signum in (("2:USR1", signal.SIGUSR1), ("6:TERM", signal.SIGTERM)):
        stopped = finish(start(command, run_dir, fault=fault))
        step = int(fault.split(":")[0])
        assert_stopped(stopped, signum, run_dir, "python train.py", step)
        assert not (run_dir / "weights.pt").exists()
        assert state_of(run_dir / "checkpoints" / "last.ckpt")["global_step"] == step
    resumed = run_to_the_end(command, run_dir)
    assert "Traceback" not in resumed.stderr
    weights, ref_weights = (state_of(d / "weights.pt")["state_dict"] for d in (run_dir, reference))
    assert_same_tensors(weights, ref_weights)  # the EMA weights that are evaluated and exported
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    for key in ("steps", "epochs", "val_acc", "test_acc", "best_val_acc"):
        assert summary[key] == ref_summary[key], key
    best, ref_best = (state_of(d / "checkpoints" / "best.pt") for d in (run_dir, reference))
    assert best["summary"]["global_step"] == ref_best["summary"]["global_step"]
    assert_same_tensors(best["state_dict"], ref_best["state_dict"])


# ------------------------------------------------------------------------------------------------ baselines
def test_sigterm_during_a_random_search_sample_resumes_it(tmp_path):
    """The random baselines train through train.py's runner: a signal in the retraining (step 3 of 4) saves its
    checkpoint; the same command reuses the finished sample and resumes the retraining exactly."""
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    command = ["-m", "s3nas.baselines.random_search", *RANDOM, f"paths.cache_dir={tmp_path / 'cache'}"]
    stopped = finish(start(command, run_dir, fault="3:TERM"))
    assert_stopped(stopped, signal.SIGTERM, run_dir, "python -m s3nas.baselines.random_search", 3)
    assert (run_dir / "samples" / "000" / "summary.json").is_file()  # the 2-step sample finished before
    assert not (run_dir / "summary.json").exists()
    run_to_the_end(command, run_dir)
    run_to_the_end(command, reference)
    weights, ref_weights = (state_of(d / "final" / "weights.pt")["state_dict"] for d in (run_dir, reference))
    assert_same_tensors(weights, ref_weights)
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    for key in ("arch", "val_acc", "test_acc", "latency_ms", "full_epochs"):
        assert summary[key] == ref_summary[key], key


# ------------------------------------------------------------------------------------------------ writes
def test_second_signal_during_the_checkpoint_write_is_held(tmp_path, monkeypatch):
    """SIGTERM, then SIGUSR1 in the middle of torch.save: the file completes, then the first signal is delivered
    through the entry point's handler (one SignalInterrupt, exit status of SIGTERM)."""
    from s3nas.runtime import signals
    from s3nas.search.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "s3nas": {"step": 1}}, path)  # the good one
    real_save = torch.save

    def save_with_signals(obj, handle, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # both arrive in the middle of the write
        os.kill(os.getpid(), signal.SIGUSR1)
        real_save(obj, handle, *args, **kwargs)

    restore = signals.install()
    try:
        monkeypatch.setattr(torch, "save", save_with_signals)
        with pytest.raises(signals.SignalInterrupt) as raised:
            io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "s3nas": {"step": 2}}, path)
        monkeypatch.setattr(torch, "save", real_save)
        assert raised.value.signum == signal.SIGTERM and signals.exit_code() == 128 + signal.SIGTERM
        assert torch.load(path, weights_only=False)["s3nas"] == {"step": 2}  # complete, the new one
        assert not [p for p in tmp_path.iterdir() if p.name != "last.ckpt"]  # no temp file left
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is not signals._handler
