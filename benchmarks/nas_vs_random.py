"""S3NAS search vs random search vs random selection at the same target (paper 5.4.1), several seeds.

Every method ends with a network trained from scratch with the same train.py recipe and budget, so the
comparison is between architectures (and search costs), not between training schedules:

* s3nas:            `python search.py latency=T debug=search_small seed=S` (the one-minute search), then
                    `python train.py arch=<search run> recipe.epochs=E ...`
* random search:    `python -m s3nas.baselines.random_search latency=T num_samples=K short.epochs=1
                    full.epochs=E ...` (K samples x 1 epoch, best by val acc retrained for E epochs)
* random selection: `python -m s3nas.baselines.random_selection latency=T num_samples=N short.epochs=E ...`

Every training uses the same data settings (`data.image_size`, default 16 like the debug=search_small search, to
fit a shared 2-core CPU; at 8 the 2-epoch trainings stay at chance), logger=none; runs of one invocation go one after
the other (invocations with different --seeds / --methods may run in parallel on the same --out; a last
`--report-only` call builds the table). The defaults are the reduced settings of the README's table (paper: 15 / 20 samples, 350-epoch trainings). Reported per method: mean and std over seeds of the delivered network's test and
validation accuracy and of its simulated latency (as the run reported it, and simulated again at report time, since
the simulator may have changed in between), how many landed within +-2% of the target, and the wall clock of the
search (`search_seconds`) and of everything. Rerunning the same command reuses finished runs (report only). Prints a table; the last line is one JSON object.

    nice -n 10 python benchmarks/nas_vs_random.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)

REPO = Path(__file__).resolve().parents[1]
REPORT_ONLY = False


class NotRun(Exception):
    """--report-only: a run that has not finished is left out of the table."""


def run(command: list[str], log) -> float:
    """Run one command from the repo root (output appended to ``log``); its wall clock in seconds."""
    if REPORT_ONLY:
        raise NotRun(" ".join(command))
    started = time.time()
    log.write(f"\n$ {' '.join(command)}\n")
    log.flush()
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    proc = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)} (see {log.name})")
    return time.time() - started


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def s3nas_run(args, seed: int, out: Path, log) -> dict:
    """search.py (debug=search_small), then train.py on its arch.json."""
    py = sys.executable
    search_dir, train_dir = out / f"s3nas_seed{seed}" / "search", out / f"s3nas_seed{seed}" / "train"
    wall = 0.0
    if not (search_dir / "summary.json").is_file():
        wall += run([py, "search.py", f"latency={args.target}", f"seed={seed}", f"hardware={args.hardware}",
                     "logger=none", "debug=search_small", f"hydra.run.dir={search_dir}"], log)
    if not (train_dir / "summary.json").is_file():
        wall += run([py, "train.py", f"arch={search_dir}", f"seed={seed}", f"hardware={args.hardware}",
                     "logger=none", "callbacks=none", f"data.image_size={args.image_size}",
                     f"recipe.epochs={args.full_epochs}", f"hydra.run.dir={train_dir}"], log)
    search, train = read(search_dir / "summary.json"), read(train_dir / "summary.json")
    return {"method": "s3nas", "seed": seed, "test_acc": train["test_acc"], "val_acc": train["val_acc"],
            "simulated_ms": train["latency_ms"], "search_seconds": search["search_seconds"],
            "total_seconds": search["search_seconds"] + train["train_seconds"], "wall_seconds": wall,
            "run_dir": str(train_dir), "arch": str(train_dir / "arch.json")}


def random_run(args, seed: int, out: Path, log, method: str) -> dict:
    """python -m s3nas.baselines.random_search / random_selection with the reduced budgets."""
    rdir = out / f"{method}_seed{seed}"
    budget = ([f"num_samples={args.rs_samples}", "short.epochs=1", f"full.epochs={args.full_epochs}"]
              if method == "random_search" else [f"num_samples={args.rsel_samples}", f"short.epochs={args.full_epochs}"])
    wall = 0.0
    if not (rdir / "summary.json").is_file():
        wall = run([sys.executable, "-m", f"s3nas.baselines.{method}", f"latency={args.target}", f"seed={seed}",
                    f"hardware={args.hardware}", "logger=none", f"data.image_size={args.image_size}", *budget,
                    f"hydra.run.dir={rdir}"], log)
    s = read(rdir / "summary.json")
    return {"method": method, "seed": seed, "test_acc": s["test_acc"], "val_acc": s["val_acc"],
            "simulated_ms": s["latency_ms"], "search_seconds": s["search_seconds"],
            "total_seconds": s["total_seconds"], "wall_seconds": wall, "run_dir": str(rdir),
            "arch": str(rdir / "arch.json")}


def one_seed(args, seed: int, out: Path, log) -> list[dict]:
    results = []
    for method in args.methods:
        try:
            results.append(s3nas_run(args, seed, out, log) if method == "s3nas"
                           else random_run(args, seed, out, log, method))
        except NotRun:
            pass
    return results


def resimulate(results: list[dict], hardware: str) -> None:
    """Simulate every delivered arch.json again now (the simulator may have changed since the run): 'now_ms'."""
    import simulator

    from s3nas.arch import codec
    from s3nas.arch.graph import archspec_to_graph

    profile = simulator.load_profile(hardware)
    for r in results:
        r["now_ms"] = float(simulator.simulate(archspec_to_graph(codec.load_json(r["arch"])), profile).latency_ms)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--target", default="2.5ms")
    parser.add_argument("--hardware", default="midap")
    parser.add_argument("--image-size", type=int, default=16, help="data.image_size of every training")
    parser.add_argument("--full-epochs", type=int, default=2, help="the 'full' training of every method")
    parser.add_argument("--rs-samples", type=int, default=2, help="random search samples (paper: 15)")
    parser.add_argument("--rsel-samples", type=int, default=2, help="random selection samples (paper: 20)")
    parser.add_argument("--methods", nargs="+", default=["s3nas", "random_search", "random_selection"])
    parser.add_argument("--out", default="outputs/nas_vs_random16")
    parser.add_argument("--report-only", action="store_true", help="start nothing; table of the finished runs")
    args = parser.parse_args()
    global REPORT_ONLY
    REPORT_ONLY = args.report_only
    out = (REPO / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: list[dict] = []
    with open(out / "commands.log", "a") as log:
        for seed in args.seeds:
            results += one_seed(args, seed, out, log)
            (out / "results_partial.json").write_text(json.dumps(results, indent=2))
            print(f"seed {seed} done ({time.time() - started:.0f} s): " + ", ".join(
                f"{r['method']} test {r['test_acc']:.4f} / {r['simulated_ms']:.4f} ms" for r in results
                if r["seed"] == seed), flush=True)
    target_ms = float(args.target.removesuffix("ms"))
    resimulate(results, args.hardware)
    rows = []
    print(f"\n{args.hardware}, target {args.target}, seeds {args.seeds}, data.image_size={args.image_size}, "
          f"every delivered network trained {args.full_epochs} epochs (recipe=digits); random search "
          f"{args.rs_samples} samples x 1 epoch; random selection {args.rsel_samples} samples x {args.full_epochs} epochs")
    print("| method | seeds | test acc mean ± std | val acc mean ± std | simulated ms mean ± std (at run time) | "
          "within ±2% | simulated ms now | within ±2% now | search s (mean) | search + final training s (mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        mine = [r for r in results if r["method"] == method]
        if not mine:
            continue
        test = mean_std([r["test_acc"] for r in mine])
        val = mean_std([r["val_acc"] for r in mine])
        lat = mean_std([r["simulated_ms"] for r in mine])
        within = sum(abs(r["simulated_ms"] / target_ms - 1) <= 0.02 for r in mine)
        now = mean_std([r["now_ms"] for r in mine])
        within_now = sum(abs(r["now_ms"] / target_ms - 1) <= 0.02 for r in mine)
        search = statistics.fmean(r["search_seconds"] for r in mine)
        total = statistics.fmean(r["total_seconds"] for r in mine)
        rows.append({"method": method, "seeds": len(mine), "test_acc_mean": test[0], "test_acc_std": test[1],
                     "val_acc_mean": val[0], "val_acc_std": val[1], "simulated_ms_mean": lat[0],
                     "simulated_ms_std": lat[1], "within_2pct": within, "now_ms_mean": now[0], "now_ms_std": now[1],
                     "within_2pct_now": within_now, "search_seconds_mean": search,
                     "total_seconds_mean": total, "test_acc": [r["test_acc"] for r in mine]})
        print(f"| {method} | {len(mine)} | {test[0]:.4f} ± {test[1]:.4f} | {val[0]:.4f} ± {val[1]:.4f} | "
              f"{lat[0]:.4f} ± {lat[1]:.4f} | {within}/{len(mine)} | {now[0]:.4f} ± {now[1]:.4f} | "
              f"{within_now}/{len(mine)} | {search:.0f} | {total:.0f} |")
    (out / "results.json").write_text(json.dumps({"runs": results, "methods": rows}, indent=2))
    record({"target": args.target, "hardware": args.hardware, "image_size": args.image_size,
            "full_epochs": args.full_epochs, "rs_samples": args.rs_samples, "rsel_samples": args.rsel_samples,
            "seeds": args.seeds, "methods": rows, "wall_seconds": time.time() - started}, "nas_vs_random")


if __name__ == "__main__":
    main()
