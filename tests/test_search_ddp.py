"""Several processes: a tiny search with DDP on two CPU processes (gloo).

Both ranks must end with the same thresholds (hence the same architecture), and rank 0 alone writes the
run dir's outputs. The search runs in the 6-position MBConv space (SMALL_SPACE, its table built in the processes
into the test's own cache dir, no spawned table workers) at a target of 0.5 ms, below its all-on network (0.69 ms
on midap), so the latency term trains the thresholds on both ranks; 6 steps (SHORT_SEARCH), 5% val/test splits
(SMALL_SPLITS). What is tested is the processes agreeing and one writer, not the space or the search's length:
most of this test's time was the two processes' imports (rank 0 is now forked from a server that has them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import forkserver
from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS

REPO = Path(__file__).resolve().parents[1]


def test_ddp_two_cpu_processes_agree_and_rank0_writes(tmp_path):
    run_dir = tmp_path / "ddp"
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    cmd = ["search.py", "debug=search_tiny", "data.image_size=16", "latency=0.5ms",
           *SMALL_SPACE, *SHORT_SEARCH, *SMALL_SPLITS, f"paths.cache_dir={tmp_path / 'cache'}",
           "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
           "trainer.sync_batchnorm=false", "logger=csv", f"hydra.run.dir={run_dir}"]
    # rank 0 forked from tests/support/forkserver.py's server (a real process without the ~6 CPU-s of imports);
    # Lightning starts rank 1 as a fresh `python search.py ...`
    proc = forkserver.run(cmd, REPO, env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["rank_threshold_max_diff"] == 0.0  # every rank ended with rank 0's thresholds
    assert (run_dir / "arch.json").is_file()
    # one writer: exactly one summary/arch in the tree, one CSV log version
    assert len(list(run_dir.rglob("summary.json"))) == 1 and len(list(run_dir.rglob("arch.json"))) == 1
    assert len(list((run_dir / "csv").glob("version_*"))) == 1
