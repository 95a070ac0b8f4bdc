"""Simulator speed and memory: wall time to simulate MobileNetV2, EfficientNet-B0 and ResNet-50 on each profile.

Graphs are built once with the torch frontend (timm models, pretrained=False) when torch/timm are installed,
else MobileNetV2 is built by hand and the others are skipped (said in the table). Timing and memory are
measured in a fresh worker process that never imports torch, so the peak memory is the simulator's own:
``peak_mem_mb`` is the worker's maximum resident set size, ``tracemalloc_peak_mb`` the Python allocations
of one simulation. Times are the median of ``--repeat`` runs (first, cold run reported separately).

    python benchmarks/simulator_speed.py [--repeat 5]

Then the CLI's wall time per call (``python -m simulator timm:mobilenetv2_100 --hardware midap``): cold (empty
graph cache: imports torch + timm and builds the graph) and cached (no torch import), median of ``--cli-runs``
each, wall and CPU time with the load average (the machine may be shared).

Last line: one JSON object, e.g. {"mobilenetv2_100@midap_s": 0.01, ..., "peak_mem_mb": 40.0}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)

MODELS = (("mobilenetv2_100", 224), ("efficientnet_b0", 224), ("resnet50", 224))


def build_graphs() -> tuple[dict, list[str]]:
    """{name: graph dict} built with the torch frontend (or by hand for MobileNetV2 without torch)."""
    notes: list[str] = []
    graphs: dict[str, dict] = {}
    try:
        import timm  # noqa: F401

        from simulator.frontends.torch import graph_from_module
    except ImportError as err:  # pragma: no cover - depends on the environment
        from simulator.models import mobilenet_v2

        notes.append(f"torch frontend unavailable ({err}); mobilenetv2 built by hand, others skipped")
        graphs["mobilenetv2_100"] = mobilenet_v2(224).to_dict()
        return graphs, notes
    import timm

    for name, size in MODELS:
        start = time.perf_counter()
        model = timm.create_model(name, pretrained=False).eval()
        graphs[name] = graph_from_module(model, (3, size, size), name=name).to_dict()
        notes.append(f"{name}: graph built by the torch frontend in {time.perf_counter() - start:.1f} s "
                     f"({len(graphs[name]['layers'])} layers)")
    return graphs, notes


def _vm_hwm_kb() -> int:
    """Peak resident set of this process image (VmHWM; unlike ru_maxrss it is not inherited over exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker(path: str, repeat: int) -> None:
    """Time simulations of the graphs in ``path`` on every profile; print one JSON object."""
    import resource
    import tracemalloc

    import simulator
    from simulator.graph import Graph

    assert "torch" not in sys.modules
    graphs = {name: Graph.from_dict(data) for name, data in json.load(open(path)).items()}
    rows = []
    trace_peak = 0
    for profile_name in simulator.list_profiles():
        profile = simulator.load_profile(profile_name)
        for name, graph in graphs.items():
            start = time.perf_counter()
            report = simulator.simulate(graph, profile)
            cold = time.perf_counter() - start
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                simulator.simulate(graph, profile)
                times.append(time.perf_counter() - start)
            tracemalloc.start()
            simulator.simulate(graph, profile)
            trace_peak = max(trace_peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            rows.append({"model": name, "profile": profile_name, "layers": len(graph), "cold_s": cold,
                         "median_s": statistics.median(times), "min_s": min(times),
                         "cycles": report.total_cycles, "latency_ms": report.latency_ms})
    max_rss_kb = _vm_hwm_kb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "max_rss_mb": max_rss_kb / 1024, "tracemalloc_peak_mb": trace_peak / 2**20}))


def cli_wall_times(runs: int = 3) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of one ``python -m simulator timm:mobilenetv2_100 --hardware midap`` call.

    CPU = the child's user + system time: on a shared machine the wall time grows with the load, the CPU
    time much less, so it is the better estimate of the wall time on quiet cores (the call is one thread).
    """
    import resource

    command = [sys.executable, "-m", "simulator", "timm:mobilenetv2_100", "--hardware", "midap"]
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SIMULATOR_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
        for label, fresh in (("cold (no graph cache)", True), ("cached (graph cache filled)", False)):
            walls, cpus, loads = [], [], []
            for _ in range(runs):
                if fresh:
                    for name in os.listdir(cache):
                        subprocess.run(["rm", "-rf", os.path.join(cache, name)], check=True)
                loads.append(os.getloadavg()[0])
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, env=env)
                walls.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            out[label] = {"wall": statistics.median(walls), "cpu": statistics.median(cpus),
                          "load": statistics.median(loads)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cli-runs", type=int, default=5, help="CLI calls per case (median reported)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.repeat)
        return
    graphs, notes = build_graphs()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "graphs.json")
        with open(path, "w") as fh:
            json.dump(graphs, fh)
        out = subprocess.run([sys.executable, __file__, "--worker", path, "--repeat", str(args.repeat)],
                             check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for note in notes:
        print(note)
    print(f"{'model':<18} {'profile':<9} {'layers':>6} {'cold s':>8} {'median s':>9} {'min s':>8} "
          f"{'cycles':>12} {'latency ms':>11}")
    summary: dict[str, float] = {}
    for row in result["rows"]:
        print(f"{row['model']:<18} {row['profile']:<9} {row['layers']:>6} {row['cold_s']:>8.4f} "
              f"{row['median_s']:>9.4f} {row['min_s']:>8.4f} {row['cycles']:>12,} {row['latency_ms']:>11.3f}")
        summary[f"{row['model']}@{row['profile']}_s"] = round(row["median_s"], 5)
    print(f"worker peak memory (max RSS, no torch): {result['max_rss_mb']:.1f} MB; "
          f"tracemalloc peak of one simulation: {result['tracemalloc_peak_mb']:.2f} MB; cpus: {os.cpu_count()}")
    for label, t in cli_wall_times(args.cli_runs).items():
        print(f"CLI per call, {label}: wall {t['wall']:.2f} s, CPU {t['cpu']:.2f} s (median of {args.cli_runs}; "
              f"1-min load average {t['load']:.1f} on {os.cpu_count()} cores)")
        key = label.split()[0]
        summary[f"cli_{key}_s"] = round(t["wall"], 2)
        summary[f"cli_{key}_cpu_s"] = round(t["cpu"], 2)
        summary[f"cli_{key}_load"] = round(t["load"], 1)
    summary["peak_mem_mb"] = round(result["max_rss_mb"], 1)
    summary["tracemalloc_peak_mb"] = round(result["tracemalloc_peak_mb"], 2)
    record(summary, "simulator_speed")


if __name__ == "__main__":
    main()
