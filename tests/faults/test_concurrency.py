"""Concurrency: two real processes building the same latency table, measurement log, graph cache or BBSSP
cache at the same moment both finish with identical results, and the work is done once (the second waits on
the cache's lock, then loads what the first wrote); a parallel joblib multirun shares one table cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TINY = ("import os\nfrom s3nas.arch.space import SearchSpace\n"
        "SPACE = SearchSpace.from_config({'name': 'tiny', 'widths': [16, 24, 32], 'strides': [2, 2, 2], "
        "'depths': [2, 2, 2], 'stem_channels': 16, 'head_channels': 64}, "
        "{'mixconv': {'max_kernels': [3, 5], 'expansions': [0, 2], 'min_kernel': 3}}, num_classes=10, "
        "input_size=INPUT)\n")
# both processes import everything, then wait for the same start signal: their builds overlap
BARRIER = ("import os, time, json, sys\n"
           "open(sys.argv[2], 'w').close()\n"
           "while not os.path.exists(sys.argv[1]):\n"
           "    time.sleep(0.01)\n")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**env, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", **extra}


def _together(tmp_path: Path, code: str, env: dict | None = None, timeout: float = 240) -> list[tuple[str, str]]:
    """Run ``code`` in two processes released at the same moment; (stdout, stderr) of each (both must exit 0)."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(go), str(tmp_path / f"ready{k}")], cwd=REPO,
                              env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    deadline = time.time() + timeout
    while not all((tmp_path / f"ready{k}").exists() for k in range(2)) and time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.02)
    go.touch()
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    return outs


def _no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*.tmp")], "a temp file was left behind"


def test_two_processes_build_one_latency_table(tmp_path):
    cache = tmp_path / "cache"
    code = (TINY.replace("INPUT", "64") + "from s3nas.latency import lut\n"
            "real = lut.compute_latency_table\n"
            "def counted(*a, **k):\n"
            "    print('BUILT', flush=True)\n"
            "    return real(*a, **k)\n"
            "lut.compute_latency_table = counted\n" + BARRIER +
            f"table = lut.build_latency_table(SPACE, 'midap', cache_dir={str(cache)!r}, workers=1, progress=False,"
            " samples_per_option=8)\n"
            "print(json.dumps(table.to_dict(), sort_keys=True))\n")
    outs = _together(tmp_path, code)
    tables = [out.splitlines()[-1] for out, _ in outs]
    assert tables[0] == tables[1]  # identical results
    assert sum(out.count("BUILT") for out, _ in outs) == 1  # built once; the other waited and loaded it
    cached = list(cache.glob("lut-*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == json.loads(tables[0])
    _no_temp_files(cache)


def test_two_processes_share_one_measurement_log(tmp_path):
    """A noisy device (a different noise seed per process): without the lock each process would measure its
    own numbers and the two tables would differ."""
    cache = tmp_path / "cache"
    code = (TINY.replace("INPUT", "16") +
            "from s3nas.latency.device import SimulatedDevice\n"
            "from s3nas.latency.measured import build_measured_table\n"
            "device = SimulatedDevice('midap', 'noisy_midap', noise_pct=5.0, seed=os.getpid(), repeats=3)\n"
            + BARRIER +
            f"built = build_measured_table(SPACE, device, cache_dir={str(cache)!r}, samples=6, chunk=4, "
            "progress=False, printer=None)\n"
            "print(built.measured_now)\n"
            "print(json.dumps(built.corrected.to_dict(), sort_keys=True))\n")
    outs = _together(tmp_path, code)
    assert outs[0][0].splitlines()[-1] == outs[1][0].splitlines()[-1]  # the same corrected table
    measured = sorted(int(out.splitlines()[-2]) for out, _ in outs)
    log = next(cache.glob("measured-*.jsonl"))
    ids = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    assert measured[0] == 0 and measured[1] == len(ids) > 0  # one process measured, the other read its log
    assert len(ids) == len(set(ids))  # nothing measured twice
    _no_temp_files(cache)


def test_two_processes_share_one_graph_cache(tmp_path):
    pytest.importorskip("timm")
    code = (BARRIER + "from simulator.cli import main\n"
            "rc = main(['timm:mobilenetv3_small_050', '--input-size', '96', '--json'])\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
            "sys.exit(rc)\n")
    outs = _together(tmp_path, code, env=_env(SIMULATOR_CACHE_DIR=str(tmp_path / "cache")))
    reports = [json.loads(out[:out.rindex("}") + 1]) for out, _ in outs]
    assert reports[0]["total_cycles"] == reports[1]["total_cycles"] > 0
    built = [out.splitlines()[-1] for out, _ in outs]
    assert sorted(built) == ["NO-TORCH", "TORCH"]  # one built the graph; the other waited and read it
    graphs = list((tmp_path / "cache" / "graphs").glob("*.json"))
    assert len(graphs) == 1 and json.loads(graphs[0].read_text())["format"]
    _no_temp_files(tmp_path / "cache")


def test_two_processes_share_one_bbssp_latency_cache(tmp_path):
    cache = tmp_path / "bbssp"
    code = ("from s3nas.config import compose_config\n"
            "from s3nas.latency.backend import make_backend\n"
            "from s3nas.profiling import profile_space as ps\n"
            "cfg = compose_config('search', ['debug=search_small'])\n"
            "from s3nas.arch.space import SearchSpace\n"
            "space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=1000, input_size=224)\n"
            "specs = {f'n{k}': space.arch_spec([space.options(i)[(k + i) % len(space.options(i))] "
            "for i in range(len(space.positions))]) for k in range(12)}\n"
            "backend = make_backend(cfg.hardware)\n" + BARRIER +
            f"out = ps.profile_latency(specs, backend, __import__('pathlib').Path({str(cache)!r}))\n"
            "print(sum(not r['cached'] for r in out.values()))\n"
            "print(json.dumps({k: r['latency_ms'] for k, r in out.items()}, sort_keys=True))\n")
    outs = _together(tmp_path, code)
    assert outs[0][0].splitlines()[-1] == outs[1][0].splitlines()[-1]
    assert sum(int(out.splitlines()[-2]) for out, _ in outs) == 12  # each network timed once in all
    assert len(list(cache.glob("latency/*/*.json"))) == 12
    _no_temp_files(cache)


@pytest.mark.slow  # ~2.5 min; tests/faults/test_sweeps.py runs a joblib multirun sharing one cache by default
def test_parallel_joblib_multirun_shares_one_table(tmp_path):
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "search.py", "-m", "seed=1,2", "debug=search_tiny", "hydra/launcher=joblib",
                           "hydra.launcher.n_jobs=2", f"paths.cache_dir={cache}", f"hydra.sweep.dir={sweep}",
                           "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "schedule.search_epochs=1"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    tables = list(cache.glob("lut-*.json"))
    assert len(tables) == 1  # one table, built by one job (the other waited for it or loaded it)
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert len(summaries) == 2 and {s["seed"] for s in summaries} == {1, 2}
    assert all((p.parent / "arch.json").is_file() for p in sweep.glob("*/summary.json"))
    _no_temp_files(tmp_path)
