"""Benchmark: cold build and warm (cached) load of a latency table.

python benchmarks/lut_build.py [--supernet s3nas_mixconv] [--candidates s3nas] [--profile midap] [--workers 2]
Prints a table, then one JSON line with cold_s, warm_s, entries.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from hydra import compose, initialize_config_dir

from s3nas.config import CONF_DIR, register_configs
from s3nas.latency.lut import build_latency_table
from s3nas.arch.space import SearchSpace
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)


def load_space(supernet: str, candidates: str, input_size: int, num_classes: int) -> SearchSpace:
    """Compose the real supernet/candidates configs and build the deployment search space."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=None, overrides=[f"+supernet={supernet}", f"+candidates={candidates}"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, input_size=input_size, num_classes=num_classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", default="s3nas_mixconv")
    ap.add_argument("--candidates", default="s3nas")
    ap.add_argument("--profile", default="midap")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples-per-option", type=int, default=16)
    ap.add_argument("--method", default="context", choices=["context", "isolated"])
    args = ap.parse_args()

    space = load_space(args.supernet, args.candidates, args.input_size, args.num_classes)
    with tempfile.TemporaryDirectory() as cache_dir:
        kw = dict(cache_dir=cache_dir, workers=args.workers, method=args.method,
                  samples_per_option=args.samples_per_option)
        t0 = time.perf_counter()
        table = build_latency_table(space, args.profile, progress=True, **kw)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = build_latency_table(space, args.profile, progress=False, **kw)
        warm_s = time.perf_counter() - t0
    assert warm.entries == table.entries
    entries = table.num_entries
    print(f"{'phase':<8} {'seconds':>9}  detail")
    print(f"{'cold':<8} {cold_s:9.2f}  {entries} entries over {len(space.positions)} positions, "
          f"method={args.method}, {table.meta.get('networks', entries)} simulations, workers={args.workers}")
    print(f"{'warm':<8} {warm_s:9.4f}  cached JSON, key {table.key[:12]}")
    print(f"space {space.name}: min {table.min_ms:.3f} ms, max {table.max_ms:.3f} ms, fixed {table.fixed_ms:.3f} ms "
          f"on {args.profile} at {args.input_size}")
    record({"cold_s": round(cold_s, 3), "warm_s": round(warm_s, 4), "entries": entries,
            "positions": len(space.positions), "method": args.method, "workers": args.workers,
            "min_ms": round(table.min_ms, 4), "max_ms": round(table.max_ms, 4)}, "lut_build")


if __name__ == "__main__":
    main()
