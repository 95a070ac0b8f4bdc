"""Does the search meet the latency target by itself? Independent searches for several targets.

For each target T it runs ``python search.py latency=T`` (default digits schedule, its own warm-up) and
reports: the search's own result (decoded network, simulated, before any repair), where the search ended
(its final state, simulated), whether the fit-to-target repair ran, the delivered network's simulated
latency and simulated/target, its own val accuracy (child network with the supernet's weights, BN
re-estimated) and the search's wall time. Targets are given in ms (``--targets``) or as fractions of the
search space's latency range on the chosen hardware (``--range-fractions 0.3 0.7``).

    python benchmarks/search_constraint.py [--targets 1.5 2.0 2.5 3.0] [--hardware midap [systolic ...]]
                                           [--range-fractions F ...] [--front] [--parallel 2] [--out DIR]
                                           [-- overrides]

``--range-fractions 0.15 0.3 0.5 0.7 0.9 --hardware midap systolic sim_midap_blackbox cpu_onnxruntime`` is the
range check: targets at those fractions of each hardware's range [fastest network, all-on network] (simulated or
measured end to end). ``--front`` runs one many-target search per hardware (``latency=[...]``) instead of one search
per target.

Prints a table; the last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)

REPO = Path(__file__).resolve().parents[1]


def space_range_ms(hardware: str, overrides: list[str]) -> tuple[float, float]:
    """(fastest, slowest) network of the configured search space on ``hardware``, end to end: simulated, or
    measured on a device (what `python search.py` checks a target against)."""
    sys.path.insert(0, str(REPO / "src"))
    from s3nas.arch.space import SearchSpace
    from s3nas.config import compose_config
    from s3nas.latency.backend import make_backend

    cfg = compose_config("search", [f"hardware={hardware}", *overrides], output_dir=tempfile.gettempdir())
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=int(cfg.deploy.num_classes),
                                    input_size=int(cfg.deploy.input_size))
    feasibility = make_backend(cfg.hardware).feasibility(space)
    return float(feasibility.fastest_ms), float(feasibility.slowest_ms)


def run_all(jobs: list[tuple[Path, list[str]]], parallel: int) -> dict[Path, tuple[int, float, str]]:
    """Run search.py jobs, ``parallel`` at a time; returns run_dir -> (exit code, seconds, output tail)."""
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    results, running, pending = {}, [], list(jobs)
    while pending or running:
        while pending and len(running) < parallel:
            run_dir, overrides = pending.pop(0)
            log = open(run_dir.parent / f"{run_dir.name}.log", "w")
            cmd = [sys.executable, "search.py", *overrides, "logger=none", f"hydra.run.dir={run_dir}"]
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((proc, run_dir, time.time(), log))
        time.sleep(1)
        for item in list(running):
            proc, run_dir, started, log = item
            if proc.poll() is not None:
                log.close()
                tail = (run_dir.parent / f"{run_dir.name}.log").read_text()[-1500:]
                results[run_dir] = (proc.returncode, time.time() - started, tail)
                running.remove(item)
    return results


def rows_of(run_dir: Path, target: float, seconds: float, summary: dict) -> dict:
    """One target's figures from its network's summary.json."""
    s = summary
    return {"target_ms": target, "search_simulated_ms": s["decoded_latency_ms"],
            "search_end_simulated_ms": s["final_state_latency_ms"], "decode_step": s["decode_step"],
            "repaired": s["repaired"], "repair_steps": len(s["repair_steps"]),
            "simulated_ms": s["latency_ms"], "ratio": s["latency_ms"] / target, "val_acc": s["val_acc"],
            "supernet_val_acc": s["supernet_val_acc"], "seconds": seconds}


def one_hardware(hardware: str, args, out: Path) -> dict:
    """Every target on one hardware: one search per target, or one many-target search (``--front``)."""
    fastest_ms = slowest_ms = None
    if args.range_fractions:
        fastest_ms, slowest_ms = space_range_ms(hardware, args.overrides)
        targets = [round(fastest_ms + f * (slowest_ms - fastest_ms), 4) for f in args.range_fractions]
    else:
        targets = args.targets or [1.5, 2.0, 2.5, 3.0]
    if args.front:
        run_dir = out / f"{hardware}_front"
        shutil.rmtree(run_dir, ignore_errors=True)
        listed = "[" + ",".join(f"{t:g}ms" for t in targets) + "]"
        jobs = [(run_dir, [f"latency={listed}", f"hardware={hardware}", *args.overrides])]
    else:
        jobs = []
        for target in targets:
            run_dir = out / f"{hardware}_{target:g}ms"
            shutil.rmtree(run_dir, ignore_errors=True)
            jobs.append((run_dir, [f"latency={target:g}ms", f"hardware={hardware}", *args.overrides]))
    results = run_all(jobs, args.parallel)

    rows = []
    if args.front:
        code, seconds, tail = results[jobs[0][0]]
        for target in targets:
            summary = out / f"{hardware}_front" / f"target_{target:g}ms" / "summary.json"
            if code != 0 or not summary.exists():
                rows.append({"target_ms": target, "error": tail.strip().splitlines()[-1] if tail.strip() else "failed"})
            else:
                rows.append(rows_of(summary.parent, target, seconds, json.loads(summary.read_text())))
    else:
        for (run_dir, _), target in zip(jobs, targets):
            code, seconds, tail = results[run_dir]
            if code != 0:
                rows.append({"target_ms": target, "error": tail.strip().splitlines()[-1] if tail.strip() else "failed"})
                continue
            rows.append(rows_of(run_dir, target, seconds, json.loads((run_dir / "summary.json").read_text())))
    print(f"run dirs: {out}; hardware: {hardware}" + (" (one many-target search)" if args.front else "")
          + (f"; space range {fastest_ms:.4f}..{slowest_ms:.4f} ms" if fastest_ms is not None else ""))
    print(f"{'target ms':>9} {'search sim ms':>13} {'search end ms':>13} {'repaired':>8} {'delivered ms':>12} "
          f"{'sim/T':>6} {'val acc':>7} {'supernet':>8} {'wall s':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['target_ms']:>9.4g} failed: {r['error']}")
            continue
        repaired = f"{r['repair_steps']} steps" if r["repaired"] else "no"
        print(f"{r['target_ms']:>9.4g} {r['search_simulated_ms']:>13.4f} {r['search_end_simulated_ms']:>13.4f} "
              f"{repaired:>8} {r['simulated_ms']:>12.4f} {r['ratio']:>6.3f} {r['val_acc']:>7.3f} "
              f"{r['supernet_val_acc'] if r['supernet_val_acc'] is not None else float('nan'):>8.3f} "
              f"{r['seconds']:>6.0f}")
    print()
    ok = [r for r in rows if "error" not in r]
    sims = [r["simulated_ms"] for r in ok]
    figures = {
        "hardware": hardware,
        "targets_ms": targets,
        "search_simulated_ms": [round(r["search_simulated_ms"], 4) for r in ok],
        "search_end_simulated_ms": [round(r["search_end_simulated_ms"], 4) for r in ok],
        "repaired": [r["repaired"] for r in ok],
        "simulated_ms": [round(x, 4) for x in sims],
        "ratios": [round(r["ratio"], 4) for r in ok],
        "all_within_90_100pct_without_repair": len(ok) == len(rows) and all(
            0.90 <= r["ratio"] <= 1.0 and not r["repaired"] for r in ok),
        "monotone": all(a < b for a, b in zip(sims, sims[1:])),
        "val_acc": [round(r["val_acc"], 4) for r in ok],
        "seconds_per_search": [round(r["seconds"], 1) for r in ok],
    }
    if fastest_ms is not None:
        figures["space_range_ms"] = [round(fastest_ms, 4), round(slowest_ms, 4)]
        figures["range_fractions"] = list(args.range_fractions)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", default=None)
    parser.add_argument("--range-fractions", type=float, nargs="+", default=None,
                        help="targets at these fractions of the space's latency range (fastest + f * span)")
    parser.add_argument("--hardware", nargs="+", default=["midap"], help="one or more hardware configs")
    parser.add_argument("--front", action="store_true",
                        help="one many-target search per hardware (latency=[...]) instead of one search per target")
    parser.add_argument("--out", type=Path, default=None, help="where the run dirs go (default: a temp dir)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="extra search.py overrides, e.g. loss.lambda1=30")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="s3nas_constraint_"))
    out.mkdir(parents=True, exist_ok=True)
    per_hardware = [one_hardware(hardware, args, out) for hardware in args.hardware]
    if len(per_hardware) == 1:
        figures = per_hardware[0]
    else:
        figures = {"hardware": list(args.hardware), "by_hardware": {f["hardware"]: f for f in per_hardware},
                   "all_within_90_100pct_without_repair": all(f["all_within_90_100pct_without_repair"]
                                                              for f in per_hardware),
                   "monotone": all(f["monotone"] for f in per_hardware)}
        print(f"every hardware within [0.90 T, T] without repair: {figures['all_within_90_100pct_without_repair']}; "
              f"monotone: {figures['monotone']}")
    figures["mode"] = "front" if args.front else "one search per target"
    record(figures, "search_constraint")


if __name__ == "__main__":
    main()
