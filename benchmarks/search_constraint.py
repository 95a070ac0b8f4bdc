"""Does the search meet the latency target by itself? Independent searches for several targets.

For each target T it runs ``python search.py latency=T`` (default digits schedule, its own warm-up) and
reports: the search's own result (decoded network, simulated, before any repair), where the search ended
(its final state, simulated), whether the fit-to-target repair ran, the delivered network's simulated
latency and simulated/target, its own val accuracy (child network with the supernet's weights, BN
re-estimated) and the search's wall time. Targets are given in ms (``--targets``) or as fractions of the
search space's latency range on the chosen hardware (``--range-fractions 0.3 0.7``).

    python benchmarks/search_constraint.py [--targets 1.5 2.0 2.5 3.0] [--hardware midap]
                                           [--range-fractions F ...] [--parallel 2] [--out DIR] [-- overrides]

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
    """(fastest, slowest) LUT latency of the configured search space on ``hardware``."""
    sys.path.insert(0, str(REPO / "src"))
    from s3nas.config import compose_config
    from s3nas.latency.lut import build_latency_table
    from s3nas.config import load_hardware
    from s3nas.arch.space import SearchSpace

    cfg = compose_config("search", [f"hardware={hardware}", *overrides], output_dir=tempfile.gettempdir())
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=int(cfg.deploy.num_classes),
                                    input_size=int(cfg.deploy.input_size))
    table = build_latency_table(space, load_hardware(cfg.hardware), cache_dir=cfg.paths.cache_dir, progress=False)
    return float(table.min_ms), float(table.max_ms)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", default=None)
    parser.add_argument("--range-fractions", type=float, nargs="+", default=None,
                        help="targets at these fractions of the space's latency range (fastest + f * span)")
    parser.add_argument("--hardware", default="midap")
    parser.add_argument("--out", type=Path, default=None, help="where the run dirs go (default: a temp dir)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="extra search.py overrides, e.g. loss.lambda1=30")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="s3nas_constraint_"))
    out.mkdir(parents=True, exist_ok=True)

    fastest_ms = slowest_ms = None
    if args.range_fractions:
        fastest_ms, slowest_ms = space_range_ms(args.hardware, args.overrides)
        targets = [round(fastest_ms + f * (slowest_ms - fastest_ms), 4) for f in args.range_fractions]
    else:
        targets = args.targets or [1.5, 2.0, 2.5, 3.0]
    jobs = []
    for target in targets:
        run_dir = out / f"{args.hardware}_{target:g}ms"
        shutil.rmtree(run_dir, ignore_errors=True)
        jobs.append((run_dir, [f"latency={target:g}ms", f"hardware={args.hardware}", *args.overrides]))
    results = run_all(jobs, args.parallel)

    rows = []
    for (run_dir, _), target in zip(jobs, targets):
        code, seconds, tail = results[run_dir]
        if code != 0:
            rows.append({"target_ms": target, "error": tail.strip().splitlines()[-1] if tail.strip() else "failed"})
            continue
        s = json.loads((run_dir / "summary.json").read_text())
        rows.append({"target_ms": target, "search_simulated_ms": s["decoded_latency_ms"],
                     "search_end_simulated_ms": s["final_state_latency_ms"], "decode_step": s["decode_step"],
                     "repaired": s["repaired"], "repair_steps": len(s["repair_steps"]),
                     "simulated_ms": s["latency_ms"], "ratio": s["latency_ms"] / target, "val_acc": s["val_acc"],
                     "supernet_val_acc": s["supernet_val_acc"], "seconds": seconds})
    print(f"run dirs: {out}; hardware: {args.hardware}"
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
    ok = [r for r in rows if "error" not in r]
    sims = [r["simulated_ms"] for r in ok]
    figures = {
        "hardware": args.hardware,
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
    record(figures, "search_constraint")


if __name__ == "__main__":
    main()
