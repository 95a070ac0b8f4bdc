"""The paper's third-step flow end to end, as the README's command sequence, one run dir per stage.

    python benchmarks/paper_flow.py --out runs/flow [--search runs/m] [--latency 5.2ms] [--train "recipe.epochs=3"]

Stages (each takes the previous stage's run dir; a stage whose run dir already holds its outputs is skipped,
so an interrupted flow resumes):
  0 search      python search.py latency=2.5ms               (or --search <existing search run dir>)
  1 train       python train.py arch=<0>
  2 plus        python -m s3nas.postsearch.postprocess arch=<1> se=all act=hswish
  3 scaled      python -m s3nas.postsearch.scaling arch=<2> latency=<final>
  4 train       python train.py arch=<3>
  5 rmse        python -m s3nas.postsearch.se_removal run_dir=<4> fraction=0.4
  6 train       python train.py arch=<5>
then `python -m s3nas.postsearch.flow runs=[0..6]` prints the comparison table. Prints the commands it runs, the table,
and as the last line one JSON object with every stage's figures.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], done: Path) -> float:
    """Run one stage unless ``done`` exists; returns its wall seconds (0 when skipped)."""
    if done.exists():
        print(f"# skip (done): {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        return 0.0
    print(f"$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    started = time.time()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"stage failed (exit {proc.returncode}): {' '.join(cmd)}")
    return time.time() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for the stages' run dirs")
    parser.add_argument("--search", type=Path, help="an existing search run dir (skips stage 0)")
    parser.add_argument("--search-args", default="latency=2.5ms", help="overrides for search.py")
    parser.add_argument("--train", default="", help="overrides for every train.py call, e.g. 'recipe.epochs=3'")
    parser.add_argument("--latency", default="5.2ms", help="final target of the scaling stage")
    parser.add_argument("--latency-factor", type=float, default=None,
                        help="instead of --latency: the final target as a multiple of stage 2's simulated latency")
    parser.add_argument("--scaling-args", default="", help="overrides for s3nas.postsearch.scaling")
    parser.add_argument("--removal", default="fraction=0.4", help="count=N, fraction=F or threshold=T")
    parser.add_argument("--removal-args", default="", help="more overrides for s3nas.postsearch.se_removal (e.g. images=500)")
    parser.add_argument("--common", default="logger=none", help="overrides for search.py and train.py")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    py = sys.executable
    common, train = shlex.split(args.common), shlex.split(args.train)
    dirs = {name: out / name for name in ("search", "train", "plus", "scaled", "scaled_train", "rmse", "rmse_train")}
    if args.search:
        dirs["search"] = args.search.resolve()
    seconds = {}
    if not args.search:
        seconds["search"] = run([py, "search.py", *shlex.split(args.search_args), *common,
                                 f"hydra.run.dir={dirs['search']}"], dirs["search"] / "arch.json")
    seconds["train"] = run([py, "train.py", f"arch={dirs['search']}", *common, *train,
                            f"hydra.run.dir={dirs['train']}"], dirs["train"] / "summary.json")
    seconds["plus"] = run([py, "-m", "s3nas.postsearch.postprocess", f"arch={dirs['train']}", "se=all", "act=hswish",
                           f"hydra.run.dir={dirs['plus']}"], dirs["plus"] / "summary.json")
    latency = args.latency
    if args.latency_factor:
        plus_ms = json.loads((dirs["plus"] / "summary.json").read_text())["latency_ms"]
        latency = f"{args.latency_factor * plus_ms:.6f}ms"
    seconds["scaled"] = run([py, "-m", "s3nas.postsearch.scaling", f"arch={dirs['plus']}", f"latency={latency}",
                             *shlex.split(args.scaling_args), f"hydra.run.dir={dirs['scaled']}"],
                            dirs["scaled"] / "summary.json")
    seconds["scaled_train"] = run([py, "train.py", f"arch={dirs['scaled']}", *common, *train,
                                   f"hydra.run.dir={dirs['scaled_train']}"], dirs["scaled_train"] / "summary.json")
    seconds["rmse"] = run([py, "-m", "s3nas.postsearch.se_removal", f"run_dir={dirs['scaled_train']}",
                           *shlex.split(args.removal), *shlex.split(args.removal_args),
                           f"hydra.run.dir={dirs['rmse']}"], dirs["rmse"] / "summary.json")
    seconds["rmse_train"] = run([py, "train.py", f"arch={dirs['rmse']}", *common, *train,
                                 f"hydra.run.dir={dirs['rmse_train']}"], dirs["rmse_train"] / "summary.json")
    runs = ",".join(str(d) for d in dirs.values())
    table_dir = out / "table"
    proc = subprocess.run([py, "-m", "s3nas.postsearch.flow", f"runs=[{runs}]", f"hydra.run.dir={table_dir}"], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    print((table_dir / "flow.md").read_text(), end="")
    stages = json.loads((table_dir / "summary.json").read_text())["stages"]
    scaled = json.loads((dirs["scaled"] / "summary.json").read_text())
    removal = json.loads((dirs["rmse"] / "summary.json").read_text())
    result = {"stages": [{k: s[k] for k in ("stage", "test_acc", "latency_ms", "params", "macs", "input_size",
                                            "se_blocks")} for s in stages],
              "scaling_target_ms": scaled["target_ms"], "scaling_coefficient": scaled["width_depth_coefficient"],
              "removed_se_blocks": removal["removed_blocks"], "stage_seconds": seconds}
    record(result, "paper_flow")
    return result


if __name__ == "__main__":
    main()
