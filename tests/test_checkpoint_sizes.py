"""Checkpoints sized to their use: train.py keeps ``last.ckpt`` (everything resume needs) and ``best.pt`` (only the
evaluated EMA network's weights and what rebuilds it). (search.py's one resumable ``last.ckpt``:
tests/test_search_resume.py::test_search_keeps_one_resumable_checkpoint, on the runs of its resume tests.)

Runs are tiny (a 3-block ArchSpec, 16x16 digits, 2 epochs of 2 batches) and go through the real command line in
the test process (tests/support/inprocess.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from inprocess import run_inprocess

from s3nas.arch import codec
from s3nas.arch.spec import ArchSpec, BlockSpec, Branch

TRAIN = ["data.image_size=16", "data.batch_size=32", "trainer.limit_train_batches=2", "recipe.epochs=2",
         "recipe.num_threads=1", "callbacks=none", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "seed=3", "logger=none"]


def spec() -> ArchSpec:
    """Wide enough that the weights outweigh a checkpoint's bookkeeping (so the size ratio means something)."""
    return ArchSpec(blocks=(
        BlockSpec("mbconv", (Branch(3, 4.0),), 32, stride=2, stage=0),
        BlockSpec("mixconv", (Branch(3, 2.0), Branch(5, 2.0)), 32, stride=1, stage=1, se_ratio=0.25),
        BlockSpec("fused", (Branch(3, 4.0),), 64, stride=2, stage=2),
    ), stem_channels=16, stem_kernel=3, head_channels=256, name="sizes")


def run(script: str, run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_inprocess([script, *overrides, f"hydra.run.dir={run_dir}"], env={"WANDB_MODE": "disabled"},
                         check=check)


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
