"""Measured effect of BBSSP: search in the profiled space vs in the full default space, same target.

    python benchmarks/profile_space_effect.py                      # midap, 2.5 ms, debug=search_small searches
    python benchmarks/profile_space_effect.py --hardware systolic --target 3ms
    python benchmarks/profile_space_effect.py --also-profile cpu_onnxruntime   # + the space chosen on the CPU

1. Profile (``python -m s3nas.profiling.profile_space``) on ``--hardware`` with a cheap accuracy proxy sized
   for a laptop CPU (SSBN depth x0.34 = 1/1/2/1/4 blocks, 16 px digits, ``--epochs`` epochs; latency always on
   the full SSBN at 224 px), cost.latency_weight ``--latency-weight``, top ``--top-k``.
2. Two searches at the same target with ``debug=search_small`` (a one-minute S3NAS search): the default space
   (supernet s3nas_mixconv + candidates s3nas) and the profiled one (``candidates=<written entry>``). Each has
   its own empty latency-table cache, so the wall time includes building its table.
3. Table: delivered val/test accuracy (the decoded child network with the supernet's weights, BN
   re-estimated: search_small does not retrain), simulated latency of the delivered network, search wall
   time, the search's own ``search_seconds``, peak RSS of the search process (the CPU stand-in for the
   paper's GPU memory), supernet parameters, space size. Last line: one JSON object with the figures.
Everything runs under the caller's priority (run it with ``nice -n 10``); outputs go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)

REPO = Path(__file__).resolve().parents[1]


def run_measured(argv: list[str], log: Path) -> tuple[float, float, int]:
    """Run ``argv`` in the repo; (wall seconds, peak RSS MiB, exit code); stdout+stderr to ``log``."""
    started = time.time()
    with log.open("w") as handle:
        proc = subprocess.run(["/usr/bin/time", "-v", *argv], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    wall = time.time() - started
    text = log.read_text(errors="replace")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return wall, (int(match.group(1)) / 1024 if match else float("nan")), proc.returncode


def profile(args: argparse.Namespace, hardware: str, extra: list[str]) -> dict:
    run_dir = args.out / f"profile_{hardware}"
    argv = [sys.executable, "-m", "s3nas.profiling.profile_space", f"hardware={hardware}", "logger=none",
            f"hydra.run.dir={run_dir}", f"paths.cache_dir={args.out / 'cache'}",
            f"output.config_dir={args.out / 'conf'}", f"output.name=bbssp_bench_{hardware}",
            f"cost.latency_weight={args.latency_weight}", f"select.top_k={args.top_k}",
            "profile.accuracy.depth_scale=0.34", f"profile.accuracy.epochs={args.epochs}", "data.image_size=16",
            *args.profile_override, *extra]
    wall, rss, code = run_measured(argv, args.out / f"profile_{hardware}.log")
    if code != 0:
        raise SystemExit(f"profile on {hardware} failed (exit {code}); see {args.out / f'profile_{hardware}.log'}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["wall_seconds"] = wall
    return summary


def search(args: argparse.Namespace, label: str, extra: list[str]) -> dict:
    run_dir = args.out / f"search_{label}"
    argv = [sys.executable, "search.py", "debug=search_small", f"latency={args.target}", f"hardware={args.hardware}",
            "logger=none", f"hydra.run.dir={run_dir}", f"paths.cache_dir={args.out / f'lut_{label}'}",
            f"seed={args.seed}", *extra]
    wall, rss, code = run_measured(argv, args.out / f"search_{label}.log")
    if code != 0:
        raise SystemExit(f"search {label} failed (exit {code}); see {args.out / f'search_{label}.log'}")
    s = json.loads((run_dir / "summary.json").read_text())
    params = None
    try:
        from omegaconf import OmegaConf

        from s3nas.arch.space import SearchSpace

        cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
        space = SearchSpace.from_config(cfg.supernet, cfg.candidates)
        size = float(space.size())
        block_type = sorted({p.type for p in space.positions})
        try:
            from s3nas.nn.supernet import Supernet  # type: ignore

            params = sum(p.numel() for p in Supernet(space, num_classes=10).parameters())
        except Exception:  # noqa: BLE001 - the parameter count is informative only
            params = None
    except Exception:  # noqa: BLE001
        size, block_type = float("nan"), []
    return {"space": label, "block_type": "+".join(block_type), "space_size": size,
            "target_ms": s.get("target_ms"), "delivered_ms": s.get("latency_ms"), "val_acc": s.get("val_acc"),
            "test_acc": s.get("test_acc"), "repaired": s.get("repaired"), "search_seconds": s.get("search_seconds"),
            "wall_seconds": wall, "peak_rss_mib": rss, "supernet_params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hardware", default="midap")
    parser.add_argument("--target", default="2.5ms")
    parser.add_argument("--latency-weight", type=float, default=0.5)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--also-profile", nargs="*", default=[], help="more hardware configs to profile (no search)")
    parser.add_argument("--profile-override", nargs="*", default=[],
                        help="extra profile_space overrides, e.g. profile.candidates=[s3nas]")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_profile_space")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    prof = profile(args, args.hardware, [])
    name = prof["candidates_name"]
    others = {}
    for hardware in args.also_profile:
        extra = ["deploy.input_size=32", "deploy.num_classes=10"] if "cpu" in hardware else []
        others[hardware] = profile(args, hardware, extra)
    default = search(args, "default", [])
    profiled = search(args, "profiled", [f"candidates={name}", f"hydra.searchpath=[file://{args.out / 'conf'}]"])

    print(f"\nBBSSP profile on {args.hardware}: {prof['num_ssbns']} SSBNs in {prof['wall_seconds']:.0f} s wall "
          f"(w={args.latency_weight}, top {args.top_k}); selected {', '.join(prof['selected'])}; "
          f"space: {prof['block_type']} {json.dumps(prof['candidates'][prof['block_type']])}")
    for hardware, p in others.items():
        print(f"BBSSP profile on {hardware}: selected {', '.join(p['selected'])}; space: {p['block_type']} "
              f"{json.dumps(p['candidates'][p['block_type']])} ({p['wall_seconds']:.0f} s wall)")
    columns = ("space", "block_type", "space_size", "target_ms", "delivered_ms", "val_acc", "test_acc", "repaired",
               "search_seconds", "wall_seconds", "peak_rss_mib", "supernet_params")
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in (default, profiled):
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        print("| " + " | ".join(cells) + " |")
    ratio = {
        "search_time_ratio": default["wall_seconds"] / profiled["wall_seconds"],
        "peak_rss_ratio": default["peak_rss_mib"] / profiled["peak_rss_mib"],
        "latency_ratio": (default["delivered_ms"] or 0) / (profiled["delivered_ms"] or 1),
    }
    print(f"default / profiled: wall time x{ratio['search_time_ratio']:.2f}, peak RSS x{ratio['peak_rss_ratio']:.2f}, "
          f"delivered latency x{ratio['latency_ratio']:.2f}")
    record({"hardware": args.hardware, "target": args.target, "latency_weight": args.latency_weight,
            "top_k": args.top_k, "profile": {k: prof[k] for k in ("selected", "block_type", "candidates",
                                                                  "wall_seconds", "num_ssbns")},
            "other_profiles": {h: {k: p[k] for k in ("selected", "block_type", "candidates")}
                               for h, p in others.items()},
            "default": default, "profiled": profiled, **ratio}, "profile_space_effect")


if __name__ == "__main__":
    main()
