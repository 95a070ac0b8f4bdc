"""The accuracy-latency front from one search vs one search per target, side by side (same seed, same schedule).

    python benchmarks/front.py [--targets 1.5 2 2.5 3] [--hardware midap] [--out DIR] [-- search.py overrides]

Runs ``python search.py latency=T`` once per target, then ``python search.py 'latency=[T1,T2,...]'`` once, each as a
user runs it (``logger=none``), one after the other so none shares the cores with another. Every run trains its own
warm-up (``S3NAS_WARMUP_CACHE=0``): the many-target search is compared with single searches that cost what a first
search costs. Per target: delivered latency, repaired or not, val/test accuracy of the single search's network and
of the front's, and the wall times; ``time_ratio`` is the front's wall time over the mean single search's. The last
line is one JSON object (keys ``targets``, ``delivered_ms``, ``repaired``, ``val_acc_multi``, ``val_acc_single``,
``time_ratio`` and more), recorded for RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from main_job import run_search_py
from results import record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", default=[1.5, 2.0, 2.5, 3.0], help="targets in ms")
    parser.add_argument("--hardware", default="midap")
    parser.add_argument("--out", type=Path, default=None, help="keep the run dirs here (default: a temp dir, removed)")
    parser.add_argument("overrides", nargs="*", default=[], help="search.py overrides for every run")
    args = parser.parse_args()
    os.environ["S3NAS_WARMUP_CACHE"] = "0"  # every run pays its own warm-up
    os.environ.setdefault("WANDB_MODE", "disabled")
    out = (args.out or Path(tempfile.mkdtemp(prefix="s3nas-front-"))).resolve()
    common = [f"hardware={args.hardware}", "logger=none", *args.overrides]
    targets = sorted(args.targets)
    try:
        singles = []
        for i, target in enumerate(targets):
            summary, wall_s, load = run_search_py([f"latency={target:g}ms", *common], out / f"single_{target:g}ms",
                                                  label=f"[single {i + 1}/{len(targets)}] ")
            singles.append((summary, wall_s, load))
        listed = "[" + ",".join(f"{t:g}ms" for t in targets) + "]"
        front, front_wall_s, front_load = run_search_py([f"latency={listed}", *common], out / "front",
                                                        label="[front] ")
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    points = front["points"]
    rows = []
    for target, (single, wall_s, _), point in zip(targets, singles, points):
        rows.append({"target": target, "single_ms": single["latency_ms"], "single_repaired": single["repaired"],
                     "single_val": single["val_acc"], "single_test": single["test_acc"], "single_wall": wall_s,
                     "front_ms": point["latency_ms"], "front_repaired": point["repaired"], "front_val": point["val_acc"],
                     "front_test": point["test_acc"]})
    mean_single_s = sum(w for _, w, _ in singles) / len(singles)
    print()
    print(f"{'target':>7} | {'single ms':>9} {'rep':>5} {'val':>6} {'test':>6} {'wall s':>7} | "
          f"{'front ms':>9} {'rep':>5} {'val':>6} {'test':>6} | {'val gap':>7}")
    for r in rows:
        print(f"{r['target']:>7g} | {r['single_ms']:>9.4f} {str(r['single_repaired']):>5} {r['single_val']:>6.4f} "
              f"{r['single_test']:>6.4f} {r['single_wall']:>7.1f} | {r['front_ms']:>9.4f} {str(r['front_repaired']):>5} "
              f"{r['front_val']:>6.4f} {r['front_test']:>6.4f} | {r['front_val'] - r['single_val']:>+7.4f}")
    print(f"front: {front_wall_s:.1f} s for {len(targets)} targets; mean single search {mean_single_s:.1f} s; "
          f"time ratio {front_wall_s / mean_single_s:.3f}")
    within = all(0.9 * r["target"] <= r["front_ms"] <= r["target"] for r in rows)
    record({
        "hardware": args.hardware, "targets": targets,
        "delivered_ms": [r["front_ms"] for r in rows], "repaired": [r["front_repaired"] for r in rows],
        "val_acc_multi": [r["front_val"] for r in rows], "val_acc_single": [r["single_val"] for r in rows],
        "test_acc_multi": [r["front_test"] for r in rows], "test_acc_single": [r["single_test"] for r in rows],
        "single_delivered_ms": [r["single_ms"] for r in rows], "single_repaired": [r["single_repaired"] for r in rows],
        "time_ratio": round(front_wall_s / mean_single_s, 3), "front_wall_s": round(front_wall_s, 1),
        "single_wall_s": [round(r["single_wall"], 1) for r in rows], "mean_single_wall_s": round(mean_single_s, 1),
        "max_val_acc_drop": round(max(r["single_val"] - r["front_val"] for r in rows), 4),
        "all_within_90_100pct_without_repair": within and not any(r["front_repaired"] for r in rows),
        "front_steps": front["total_steps"], "load_avg_before": [round(load, 2) for _, _, load in singles] +
        [round(front_load, 2)], "load_avg_after": round(os.getloadavg()[0], 2),
        "command": "python benchmarks/front.py " + " ".join(
            [f"--targets {' '.join(f'{t:g}' for t in targets)}", f"--hardware {args.hardware}", *args.overrides]),
    }, "front")


if __name__ == "__main__":
    main()
