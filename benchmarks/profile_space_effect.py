"""Measured effect of BBSSP, as the paper reports it: the profiled space against the default space, same target.

    nice -n 10 python benchmarks/profile_space_effect.py            # midap 2.5 ms and cpu_onnxruntime 10 ms
    python benchmarks/profile_space_effect.py --hardware midap --targets midap=2.5ms --seeds 1   # one quick pass

Per hardware (``--hardware``, each with its target from ``--targets``), side by side in one run:

1. **Profile** (``python -m s3nas.profiling.profile_space``) with the shipped settings (``cost.latency_weight``
   0.5, ``select.top_k`` 3) and a cheap accuracy proxy sized for a 2-core CPU (SSBN depth x0.34 = 1/1/2/1/4
   blocks, 16 px digits, ``--profile-epochs`` epochs; the latency is always that of the full SSBN at the
   deployment size, simulated on an NPU or measured on the device). It writes a candidates entry holding the
   selected blocks, of whatever types (``supernet.block_type: choice`` when they are not one type's cross
   product).
2. **Two searches** at the same target, the same seed and schedule (``python search.py``, the README's main job
   by default): in the default space (``supernet=s3nas_mixconv candidates=s3nas``) and in the profiled one
   (``candidates=<written entry>``). Each builds its own latency table (an empty cache) and its own warm-up
   (``S3NAS_WARMUP_CACHE=0``), so the wall time is the whole search; the peak resident memory of the search
   process stands in for the paper's GPU memory.
3. **Retraining** of each delivered network with ``--seeds`` seeds and the same recipe (``python train.py
   arch=<search run> seed=<s>``): the delivered test accuracy, mean and spread.

Table: per hardware and space: the space's block types and size, the delivered latency (and how it was obtained:
simulation or measurement), its ratio to the target, whether a repair ran, the retrained test accuracy (mean,
std over seeds), the search wall time and peak RSS. Then per hardware and on average, as the paper states its
result (+1.4% accuracy, 1.9x lower latency, 2.7x less search time, 4x less GPU memory): the accuracy gain of the
profiled space, and the default/profiled ratios of latency, search time and peak memory. Last line: one JSON
object with every figure. Everything runs under the caller's priority; outputs go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TARGETS = {"midap": "2.5ms", "cpu_onnxruntime": "10ms"}


def run_measured(argv: list[str], log: Path, env: dict | None = None) -> tuple[float, float, int]:
    """Run ``argv`` in the repo; (wall seconds, peak RSS MiB, exit code); stdout+stderr to ``log``."""
    started = time.time()
    with log.open("w") as handle:
        proc = subprocess.run(["/usr/bin/time", "-v", *argv], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})})
    wall = time.time() - started
    text = log.read_text(errors="replace")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return wall, (int(match.group(1)) / 1024 if match else float("nan")), proc.returncode


def check(code: int, what: str, log: Path) -> None:
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"{what} failed (exit {code}); see {log}\n{tail}")


def profile(args: argparse.Namespace, hardware: str) -> dict:
    run_dir = args.out / f"profile_{hardware}"
    log = args.out / f"profile_{hardware}.log"
    argv = [sys.executable, "-m", "s3nas.profiling.profile_space", f"hardware={hardware}", "logger=none",
            f"hydra.run.dir={run_dir}", f"paths.cache_dir={args.out / 'cache'}",
            f"output.config_dir={args.out / 'conf'}", f"output.name=bbssp_bench_{hardware}",
            "profile.accuracy.depth_scale=0.34", f"profile.accuracy.epochs={args.profile_epochs}",
            "data.image_size=16", *args.profile_override]
    wall, _, code = run_measured(argv, log)
    check(code, f"profile on {hardware}", log)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["wall_seconds"] = wall
    return summary


def search(args: argparse.Namespace, hardware: str, target: str, label: str, extra: list[str]) -> dict:
    run_dir = args.out / f"search_{hardware}_{label}"
    log = args.out / f"search_{hardware}_{label}.log"
    argv = [sys.executable, "search.py", f"latency={target}", f"hardware={hardware}", "logger=none",
            f"hydra.run.dir={run_dir}", f"paths.cache_dir={args.out / f'cache_{hardware}_{label}'}",
            f"seed={args.seed}", *args.search_override, *extra]
    wall, rss, code = run_measured(argv, log, env={"S3NAS_WARMUP_CACHE": "0"})
    check(code, f"search {label} on {hardware}", log)
    shutil.rmtree(args.out / f"cache_{hardware}_{label}", ignore_errors=True)
    s = json.loads((run_dir / "summary.json").read_text())
    for ckpt in run_dir.rglob("*.ckpt"):  # large and not needed: the network is arch.json
        ckpt.unlink()
    from omegaconf import OmegaConf

    from s3nas.arch.space import SearchSpace, option_type

    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates)
    types = sorted({option_type(o, p.type) for i, p in enumerate(space.positions) for o in space.options(i) if o})
    return {"space": label, "block_types": "+".join(types), "space_size": float(space.size()),
            "options_per_block_max": max(space.num_options()), "target_ms": s.get("target_ms"),
            "delivered_ms": s.get("latency_ms"), "latency_source": s.get("latency_source"),
            "target_ratio": s.get("target_ratio"), "repaired": s.get("repaired"),
            "supernet_val_acc": s.get("val_acc"), "search_seconds": s.get("search_seconds"),
            "wall_seconds": wall, "peak_rss_mib": rss, "run_dir": str(run_dir)}


def retrain(args: argparse.Namespace, hardware: str, row: dict) -> None:
    accs, seconds = [], []
    for k in range(args.seeds):
        seed = args.seed + k
        run_dir = args.out / f"train_{hardware}_{row['space']}_s{seed}"
        log = args.out / f"train_{hardware}_{row['space']}_s{seed}.log"
        argv = [sys.executable, "train.py", f"arch={row['run_dir']}", f"seed={seed}", "logger=none",
                f"hydra.run.dir={run_dir}", *args.train_override]
        wall, _, code = run_measured(argv, log)
        check(code, f"retraining {row['space']} on {hardware} (seed {seed})", log)
        s = json.loads((run_dir / "summary.json").read_text())
        accs.append(float(s["test_acc"]))
        seconds.append(wall)
        for ckpt in list(run_dir.rglob("*.ckpt")) + list(run_dir.rglob("*.pt")):
            ckpt.unlink()
    row["test_accs"] = accs
    row["test_acc"] = statistics.fmean(accs)
    row["test_acc_std"] = statistics.pstdev(accs) if len(accs) > 1 else 0.0
    row["train_seconds_mean"] = statistics.fmean(seconds)


def effect(default: dict, profiled: dict) -> dict:
    """Profiled vs default, as the paper reports it: accuracy gain (points), and default/profiled ratios."""
    return {"accuracy_gain": profiled["test_acc"] - default["test_acc"],
            "latency_ratio": default["delivered_ms"] / profiled["delivered_ms"],
            "search_time_ratio": default["wall_seconds"] / profiled["wall_seconds"],
            "peak_memory_ratio": default["peak_rss_mib"] / profiled["peak_rss_mib"]}


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hardware", nargs="+", default=["midap", "cpu_onnxruntime"])
    parser.add_argument("--targets", nargs="*", default=[], help="HW=TARGET pairs, e.g. midap=2.5ms "
                        f"(defaults: {' '.join(f'{k}={v}' for k, v in DEFAULT_TARGETS.items())})")
    parser.add_argument("--seeds", type=int, default=3, help="retrainings per delivered network")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--profile-epochs", type=int, default=2)
    parser.add_argument("--profile-override", nargs="*", default=[], help="extra profile_space overrides")
    parser.add_argument("--search-override", nargs="*", default=[], help="extra overrides of both searches")
    parser.add_argument("--train-override", nargs="*", default=[], help="extra overrides of every retraining")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_profile_space")
    args = parser.parse_args()
    targets = dict(DEFAULT_TARGETS)
    for pair in args.targets:
        hw, _, target = pair.partition("=")
        if not target:
            parser.error(f"--targets: expected HW=TARGET, got {pair!r}")
        targets[hw] = target
    for hw in args.hardware:
        if hw not in targets:
            parser.error(f"--targets: no target for {hw}; add {hw}=<T>ms")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict = {}
    for hw in args.hardware:
        prof = profile(args, hw)
        print(f"BBSSP on {hw}: {prof['num_ssbns']} SSBNs in {prof['wall_seconds']:.0f} s; selected "
              f"{', '.join(prof['selected'])}; written space: {prof['block_type']}, "
              f"{prof['chosen_space']['architectures']:.3g} architectures, "
              f"{prof['chosen_space']['min_latency_ms']:.4f}..{prof['chosen_space']['max_latency_ms']:.4f} ms",
              flush=True)
        default = search(args, hw, targets[hw], "default", ["supernet=s3nas_mixconv", "candidates=s3nas"])
        profiled = search(args, hw, targets[hw], "profiled",
                          [f"candidates={prof['candidates_name']}", f"hydra.searchpath=[file://{args.out / 'conf'}]"])
        for row in (default, profiled):
            retrain(args, hw, row)
            print(f"{hw} {row['space']}: {fmt(row['delivered_ms'])} ms, test {row['test_acc']:.4f}", flush=True)
        results[hw] = {"target": targets[hw], "profile": {k: prof[k] for k in (
            "selected", "block_type", "candidates", "chosen_space", "wall_seconds", "num_ssbns")},
            "default": default, "profiled": profiled, "effect": effect(default, profiled)}

    columns = ("hardware", "space", "block_types", "space_size", "target_ms", "delivered_ms", "latency_source",
               "target_ratio", "repaired", "test_acc", "test_acc_std", "search_seconds", "wall_seconds",
               "peak_rss_mib")
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for hw, res in results.items():
        for row in (res["default"], res["profiled"]):
            print("| " + " | ".join(fmt(hw if c == "hardware" else row.get(c)) for c in columns) + " |")
    print("\nprofiled vs default (paper, on average: +1.4% accuracy, 1.9x lower latency, 2.7x less search time, "
          "4x less GPU memory):")
    for hw, res in results.items():
        e = res["effect"]
        print(f"  {hw}: accuracy {100 * e['accuracy_gain']:+.2f} points, latency x{e['latency_ratio']:.2f} lower, "
              f"search time x{e['search_time_ratio']:.2f} less, peak memory x{e['peak_memory_ratio']:.2f} less")
    mean = {k: statistics.fmean(res["effect"][k] for res in results.values())
            for k in ("accuracy_gain", "latency_ratio", "search_time_ratio", "peak_memory_ratio")}
    print(f"  average: accuracy {100 * mean['accuracy_gain']:+.2f} points, latency x{mean['latency_ratio']:.2f}, "
          f"search time x{mean['search_time_ratio']:.2f}, peak memory x{mean['peak_memory_ratio']:.2f}")
    record({"hardware": args.hardware, "seeds": args.seeds, "search_override": args.search_override,
            "per_hardware": results, "average": mean}, "profile_space_effect")


if __name__ == "__main__":
    main()
