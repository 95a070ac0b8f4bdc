"""Checkpoints sized to their use: train.py keeps ``last.ckpt`` (everything resume needs) and ``best.pt`` (only the
evaluated EMA network's weights and what rebuilds it); search.py keeps one resumable ``last.ckpt``, written at
every epoch's end, not one file per epoch beside it.

Runs are tiny (train: a 3-block ArchSpec, 16x16 digits, 2 epochs of 2 batches; search: debug=search_tiny) and go
through the real CLI in subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s3nas.arch import codec
from s3nas.arch.spec import ArchSpec, BlockSpec, Branch

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["data.image_size=16", "data.batch_size=32", "trainer.limit_train_batches=2", "recipe.epochs=2",
         "recipe.num_threads=1", "callbacks=none", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "seed=3", "logger=none"]
SEARCH = ["debug=search_tiny", "data.image_size=16", "seed=7", "latency=2.5ms", "callbacks=default",
          "callbacks.rich_progress_bar=null", "logger=none"]


def spec() -> ArchSpec:
    """Wide enough that the weights outweigh a checkpoint's bookkeeping (so the size ratio means something)."""
    return ArchSpec(blocks=(
        BlockSpec("mbconv", (Branch(3, 4.0),), 32, stride=2, stage=0),
        BlockSpec("mixconv", (Branch(3, 2.0), Branch(5, 2.0)), 32, stride=1, stage=1, se_ratio=0.25),
        BlockSpec("fused", (Branch(3, 4.0),), 64, stride=2, stage=2),
    ), stem_channels=16, stem_kernel=3, head_channels=256, name="sizes")


def run(script: str, run_dir: Path, *overrides: str, crash_after_steps: int | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "S3NAS_FAULT_INTERRUPT_AFTER_STEPS")}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    if crash_after_steps is not None:  # fault injection: not a config key
        env["S3NAS_FAULT_INTERRUPT_AFTER_STEPS"] = str(crash_after_steps)
    proc = subprocess.run([sys.executable, script, *overrides, f"hydra.run.dir={run_dir}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    arch = tmp_path_factory.mktemp("arch") / "arch.json"
    codec.save_json(spec(), arch)
    run_dir = tmp_path_factory.mktemp("train") / "run"
    run("train.py", run_dir, *TRAIN, f"arch={arch}")
    return run_dir


def test_train_best_holds_only_the_evaluated_weights(trained):
    ckpt_dir = trained / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.pt", "last.ckpt"]
    best, last = load(ckpt_dir / "best.pt"), load(ckpt_dir / "last.ckpt")
    assert set(best) == {"state_dict", "s3nas_train", "summary"}  # no optimizer, loops, schedulers, callbacks
    assert {"optimizer_states", "loops", "lr_schedulers"} <= set(last)
    ema = {k[len("ema.module."):]: v for k, v in last["state_dict"].items() if k.startswith("ema.module.")}
    assert ema and best["state_dict"].keys() == ema.keys()  # the EMA network alone, no raw-model copy
    assert best["s3nas_train"]["network"] == last["s3nas_train"]["network"] and best["s3nas_train"]["ema"] is True
    summary = json.loads((trained / "summary.json").read_text())
    assert best["summary"]["val/acc"] == summary["best_val_acc"]
    assert best["summary"]["epoch"] in (0, 1)
    if best["summary"]["epoch"] == 1:  # the last epoch was the best: the same weights as last's EMA
        assert all(torch.equal(best["state_dict"][k], ema[k]) for k in ema)
    # model + EMA + optimizer state (RMSprop: two buffers per parameter) against the EMA weights alone
    assert (ckpt_dir / "best.pt").stat().st_size < (ckpt_dir / "last.ckpt").stat().st_size / 2


def test_train_best_rebuilds_the_network(trained):
    from s3nas.train.export import load_trained

    model, meta = load_trained(trained, weights=str(trained / "checkpoints" / "best.pt"))
    best = load(trained / "checkpoints" / "best.pt")["state_dict"]
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)
    assert meta["num_classes"] == 10


def test_train_last_resumes_and_best_does_not(trained, tmp_path):
    refused = run("train.py", tmp_path / "other", *TRAIN, f"ckpt_path={trained / 'checkpoints' / 'best.pt'}",
                  check=False)
    assert refused.returncode == 2
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ckpt_path:") and "weights only" in lines[0]
    before = json.loads((trained / "summary.json").read_text())
    run("train.py", trained, *TRAIN)  # same run dir, no arch=: resumes from last.ckpt (training already done)
    after = json.loads((trained / "summary.json").read_text())
    assert after["resumed_from"] == str(trained / "checkpoints" / "last.ckpt")
    for key in ("steps", "epochs", "val_acc", "test_acc", "best_val_acc"):
        assert after[key] == before[key], key


def test_search_keeps_one_resumable_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    crashed = run("search.py", run_dir, *SEARCH, crash_after_steps=6, check=False)  # 2nd epoch of 3 (4 steps each)
    assert crashed.returncode != 0
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert files == ["last.ckpt"], files
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4  # the 1st epoch's end, before the crash
    resumed = run("search.py", run_dir, *SEARCH)
    assert "resuming from" in resumed.stdout and "last.ckpt" in resumed.stdout
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 12
