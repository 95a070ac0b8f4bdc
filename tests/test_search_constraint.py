"""The latency constraint works: for 1.5/2/2.5/3 ms on midap the decoded network's simulated latency is
<= target, >= 85% of it, and grows with the target (slow; short schedule: the search phase of each target
starts from one shared warm-up: the first search writes it to the warm-up cache, the others reuse it, two at a
time). The default suite checks the same
properties on two targets with tiny searches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from inprocess import SHORT_SEARCH, SMALL_SPLITS

REPO = Path(__file__).resolve().parents[1]
TARGETS_MS = (1.5, 2.0, 2.5, 3.0)
# the default digits schedule (3 + 9 epochs) at 16x16 instead of 32x32: 4x cheaper steps
SHORT = ["logger=none", "callbacks=none", "data.image_size=16", "trainer.enable_progress_bar=false"]


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", S3NAS_WARMUP_CACHE="1")
    cmd = [sys.executable, "search.py", *SHORT, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen) -> None:
    stdout, stderr = proc.communicate(timeout=1200)
    assert proc.returncode == 0, stderr[-4000:]


@pytest.fixture(scope="module")
def summaries(tmp_path_factory) -> dict[float, dict]:
    base = tmp_path_factory.mktemp("constraint")
    cache = f"paths.cache_dir={base / 'cache'}"
    run_dirs = {t: base / f"t{t}" for t in TARGETS_MS}
    first, *targets = TARGETS_MS
    _wait(_start(run_dirs[first], f"latency={first}ms", cache))  # trains the warm-up and caches it
    while targets:  # the others start from it, two at a time
        batch, targets = targets[:2], targets[2:]
        procs = [_start(run_dirs[t], f"latency={t}ms", cache) for t in batch]
        for proc in procs:
            _wait(proc)
    return {t: json.loads((d / "summary.json").read_text()) for t, d in run_dirs.items()}


def test_two_targets_with_tiny_searches_each_meet_their_target(tmp_path, run_inproc):
    """debug=search_tiny at 2 and 3 ms (in the test process): each delivered network's simulated latency
    (recomputed from arch.json) is <= its target and >= 85% of it, so the latency grows with the target."""
    import simulator

    from s3nas.arch import codec
    from s3nas.arch.graph import archspec_to_graph

    midap = simulator.load_profile("midap")
    targets = (2.0, 3.0)
    for target in targets:
        # SHORT_SEARCH (2 training batches an epoch: 6 steps instead of 12; 1 validation batch, 2 batches for the BN
        # statistics) and 5% val/test splits: the delivered networks are the same as at 12 steps (arch.json equal but
        # for its accuracies). At either length the tiny search's own decode is still the all-on network (4.03 ms)
        # and the fit-to-target repair takes it under each target (28 and 9 steps); the search moving the network
        # by itself is tested by test_search_sweep.py's lambda grid and test_measured_states.py. The debug space's
        # table is built in the test process on a cache miss (schedule.lut_workers=1, no spawned workers)
        run_inproc(["search.py", "debug=search_tiny", "data.image_size=16", f"latency={target}ms", *SHORT_SEARCH,
                    *SMALL_SPLITS, "schedule.lut_workers=1", f"hydra.run.dir={tmp_path / f't{target}'}"])
    delivered = {}
    for target in targets:
        run_dir = tmp_path / f"t{target}"
        summary = json.loads((run_dir / "summary.json").read_text())
        latency_ms = simulator.simulate(archspec_to_graph(codec.load_json(run_dir / "arch.json")), midap).latency_ms
        assert summary["latency_ms"] == pytest.approx(latency_ms) and summary["target_ms"] == target
        assert summary["latency_source"].startswith("simulation (midap")
        assert summary["meets_target"] and 0.85 * target <= latency_ms <= target, summary
        delivered[target] = latency_ms
    assert delivered[2.0] < delivered[3.0]


@pytest.mark.slow
def test_simulated_latency_within_85_to_100_percent_of_target(summaries):
    for target, summary in summaries.items():
        assert summary["latency_ms"] <= target, summary
        assert summary["latency_ms"] >= 0.85 * target, summary


@pytest.mark.slow
def test_latency_grows_with_target(summaries):
    simulated = [summaries[t]["latency_ms"] for t in TARGETS_MS]
    assert simulated == sorted(simulated) and len(set(simulated)) == len(simulated)


@pytest.mark.slow
def test_search_itself_moves_towards_the_target(summaries):
    # the latency loss does the bulk of the way down from the all-on supernet; the fit-to-target step
    # (reported as repaired/repair_steps) trims the rest. On this short schedule the search typically
    # stalls ~0.3-1.3 ms above low targets (see benchmarks/search_constraint.py): this asserts at least
    # a third of the way.
    for target, summary in summaries.items():
        start_ms = summary["lut_max_ms"]
        if start_ms <= target:
            continue
        searched_ms = min(summary["decoded_estimated_ms"], summary["final_state_estimated_ms"])
        assert searched_ms <= start_ms - (start_ms - target) / 3, summary
