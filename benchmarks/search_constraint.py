"""Does the latency constraint work? Searches for several targets on midap, default digits schedule.

For each target T (default 1.5, 2.0, 2.5, 3.0 ms) it runs `python search.py latency=T` and reports the
decoded network's LUT estimate and end-to-end simulated latency, simulated/target, whether the final
fit-to-target repair was needed, val acc and wall time. By default the warm-up phase is run once and shared
(the searches start from copies of its warmup.ckpt: the warm-up does not depend on the target);
``--independent`` runs every search from scratch. Two searches run at a time.

    python benchmarks/search_constraint.py [--targets 1.5 2.0 2.5 3.0] [--out DIR] [-- extra overrides]

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

REPO = Path(__file__).resolve().parents[1]


def search_cmd(run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "search.py", *overrides, "logger=none", f"hydra.run.dir={run_dir}"]


def run_all(jobs: list[tuple[Path, list[str]]], parallel: int) -> dict[Path, tuple[int, float, str]]:
    """Run search.py jobs, ``parallel`` at a time; returns run_dir -> (exit code, seconds, stderr tail)."""
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    results, running, pending = {}, [], list(jobs)
    while pending or running:
        while pending and len(running) < parallel:
            run_dir, overrides = pending.pop(0)
            log = open(run_dir.parent / f"{run_dir.name}.log", "w")
            proc = subprocess.Popen(search_cmd(run_dir, overrides), cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
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
    parser.add_argument("--targets", type=float, nargs="+", default=[1.5, 2.0, 2.5, 3.0])
    parser.add_argument("--out", type=Path, default=None, help="where the run dirs go (default: a temp dir)")
    parser.add_argument("--independent", action="store_true", help="run every warm-up too (no sharing)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="extra search.py overrides, e.g. schedule.search_epochs=8")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="s3nas_constraint_"))
    out.mkdir(parents=True, exist_ok=True)

    shared_seconds = 0.0
    if not args.independent:
        warm_dir = out / "warmup"
        shutil.rmtree(warm_dir, ignore_errors=True)
        result = run_all([(warm_dir, ["schedule.search_epochs=0", *args.overrides])], 1)[warm_dir]
        if result[0] != 0:
            sys.exit(f"warm-up run failed:\n{result[2]}")
        shared_seconds = result[1]
    jobs = []
    for target in args.targets:
        run_dir = out / f"target_{target:g}ms"
        shutil.rmtree(run_dir, ignore_errors=True)
        if not args.independent:
            (run_dir / "checkpoints").mkdir(parents=True)
            shutil.copy(out / "warmup" / "checkpoints" / "warmup.ckpt", run_dir / "checkpoints" / "warmup.ckpt")
        jobs.append((run_dir, [f"latency={target:g}ms", *args.overrides]))
    results = run_all(jobs, args.parallel)

    rows = []
    for (run_dir, _), target in zip(jobs, args.targets):
        code, seconds, tail = results[run_dir]
        if code != 0:
            rows.append({"target_ms": target, "error": tail.strip().splitlines()[-1] if tail.strip() else "failed"})
            continue
        s = json.loads((run_dir / "summary.json").read_text())
        rows.append({"target_ms": target, "estimated_ms": s["estimated_ms"], "simulated_ms": s["simulated_ms"],
                     "ratio": s["simulated_ms"] / target, "decoded_simulated_ms": s["decoded_simulated_ms"],
                     "repaired": s["repaired"], "repair_steps": len(s["repair_steps"]), "val_acc": s["val_acc"],
                     "seconds": seconds})
    print(f"run dirs: {out}; shared warm-up: {shared_seconds:.0f} s" if not args.independent else f"run dirs: {out}")
    print(f"{'target ms':>9} {'LUT ms':>8} {'sim ms':>8} {'sim/T':>6} {'search-end sim ms':>17} {'repaired':>8} "
          f"{'val acc':>7} {'s':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['target_ms']:>9.2f} failed: {r['error']}")
            continue
        print(f"{r['target_ms']:>9.2f} {r['estimated_ms']:>8.4f} {r['simulated_ms']:>8.4f} {r['ratio']:>6.3f} "
              f"{r['decoded_simulated_ms']:>17.4f} {str(r['repaired']) + ('/' + str(r['repair_steps']) if r['repaired'] else ''):>8} "
              f"{r['val_acc']:>7.3f} {r['seconds']:>6.0f}")
    ok = [r for r in rows if "error" not in r]
    sims = [r["simulated_ms"] for r in ok]
    figures = {
        "targets_ms": args.targets,
        "simulated_ms": [round(x, 4) for x in sims],
        "ratios": [round(r["ratio"], 4) for r in ok],
        "all_within_85_100pct": len(ok) == len(rows) and all(0.85 <= r["ratio"] <= 1.0 for r in ok),
        "monotone": all(a < b for a, b in zip(sims, sims[1:])),
        "repaired": [r["repaired"] for r in ok],
        "val_acc": [round(r["val_acc"], 4) for r in ok],
        "seconds_per_search": [round(r["seconds"], 1) for r in ok],
        "shared_warmup_seconds": round(shared_seconds, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
