"""Benchmark: LUT-sum latency estimate vs end-to-end simulation of random architectures.

python benchmarks/latency_estimator.py [--n 100] [--supernet s3nas_mixconv] [--profile midap] [--seed 0]
For n random architectures of the space (one uniformly random option per position, skips dropped) it
compares table.estimate_ms(options) with simulate(archspec_to_graph(decoded spec)).latency_ms, for the
in-context table (default) and, for reference, the block-isolated table. Last line: mape_pct, max_err_pct, n.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

import simulator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lut_build import load_space  # noqa: E402

from s3nas.arch.graph import archspec_to_graph  # noqa: E402
from s3nas.latency.lut import build_latency_table  # noqa: E402
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)


def errors_of(table, space, profile, samples):
    """Signed percentage errors of the LUT sum against full simulation."""
    out = []
    for options, full_ms in samples:
        out.append(100.0 * (table.estimate_ms(options) - full_ms) / full_ms)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--supernet", default="s3nas_mixconv")
    ap.add_argument("--candidates", default="s3nas")
    ap.add_argument("--profile", default="midap")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples-per-option", type=int, default=16)
    ap.add_argument("--cache-dir", default=None, help="reuse tables here (default: a fresh temp dir)")
    args = ap.parse_args()

    space = load_space(args.supernet, args.candidates, args.input_size, 1000)
    profile = simulator.load_profile(args.profile)
    rng = random.Random(1_000_003 + args.seed)  # independent of the table's sampling seed
    t0 = time.perf_counter()
    samples = []
    for _ in range(args.n):
        options = space.random_options(rng)
        spec = space.arch_spec(options)
        samples.append((options, simulator.simulate(archspec_to_graph(spec), profile).latency_ms))
    sim_s = time.perf_counter() - t0

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or tmp
        for method in ("context", "isolated"):
            t0 = time.perf_counter()
            table = build_latency_table(space, profile, cache_dir=cache_dir, workers=args.workers, progress=False,
                                        method=method, samples_per_option=args.samples_per_option)
            build_s = time.perf_counter() - t0
            errs = errors_of(table, space, profile, samples)
            rows.append((method, statistics.mean(abs(e) for e in errs), max(abs(e) for e in errs),
                         statistics.mean(errs), build_s))
    lat = [ms for _, ms in samples]
    print(f"{args.n} random architectures of {space.name} on {args.profile} at {args.input_size}: "
          f"simulated {min(lat):.3f}..{max(lat):.3f} ms (mean {statistics.mean(lat):.3f}), {sim_s:.1f} s")
    print(f"{'table':<10} {'MAPE %':>8} {'max err %':>10} {'bias %':>8} {'build s':>8}")
    for method, mape, mx, bias, build_s in rows:
        print(f"{method:<10} {mape:8.4f} {mx:10.4f} {bias:8.4f} {build_s:8.2f}")
    print("paper (MIDAP): MAPE 0.16 %")
    ctx, iso = rows[0], rows[1]
    record({"mape_pct": round(ctx[1], 4), "max_err_pct": round(ctx[2], 4), "n": args.n,
            "bias_pct": round(ctx[3], 4), "isolated_mape_pct": round(iso[1], 4),
            "isolated_max_err_pct": round(iso[2], 4), "profile": args.profile, "supernet": space.name},
           "latency_estimator")


if __name__ == "__main__":
    main()
