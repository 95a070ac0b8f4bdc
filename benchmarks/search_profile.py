"""Where the main job's time goes: `python search.py latency=2.5ms`, whole command, split into parts.

    python benchmarks/search_profile.py [--latency 2.5ms] [--config LABEL='overrides' ...] [--repeat N]

Runs search.py once per configuration (sequentially, in fresh run dirs, the default configuration first) and
reads the run's own wall-clock accounting (summary.json ``timings_s``, filled by s3nas.runtime.timing): start-up
(process start, imports, Hydra, the config checks: the command's wall time minus ``search_seconds``), the
latency table, the fit (warm-up steps, search steps with the latency term inside them, the line searches, the
time between steps: data loading and the loop, validation, checkpoint writes, the rest of Lightning's loop),
decoding / repair / the delivered network's latency, BN re-estimation, evaluation, and the rest (model and
loader set-up, outputs). Prints one table of seconds and shares, configurations side by side, and the delivered
network's figures; the last line is one JSON object.

``--config before='schedule.num_threads=1 ...'`` adds a configuration (overrides as search.py takes them);
the README's before/after figures are the default configuration next to the overrides that restore the
previous defaults (see docs/notes/main-job-speed.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
from pathlib import Path

from main_job import run_search_py
from results import record


#: (row label, timings_s key or a derived name, indent): the fit's parts are indented under it
ROWS = [
    ("start-up (imports, Hydra, checks)", "startup", 0),
    ("latency table", "table_build", 0),
    ("fit (Lightning)", "fit", 0),
    ("warm-up steps (fwd+bwd+opt)", "train_step/warmup", 1),
    ("search steps (fwd+bwd+opt)", "train_step/search", 1),
    ("of which latency term", "latency_term", 2),
    ("line searches", "line_search", 1),
    ("data loading + loop", "data_and_loop", 1),
    ("validation", "validation", 1),
    ("checkpoint writes", "checkpoint_write", 1),
    ("rest of the fit loop", "fit_other", 1),
    ("decode, repair, latency", "decode_repair_latency", 0),
    ("BN re-estimation", "bn_reestimation", 0),
    ("evaluation (val+test)", "evaluation", 0),
    ("set-up, outputs, exit", "other", 0),
]


def parts_of(timings: dict, wall_s: float, search_s: float) -> dict:
    """Non-overlapping parts (s) of the whole command from a summary's ``timings_s``."""
    t = {k: float(v) for k, v in timings.items()}
    parts = {key: t.get(key, 0.0) for key in
             ("table_build", "fit", "train_step/warmup", "train_step/search", "latency_term", "line_search",
              "validation", "checkpoint_write", "decode_repair_latency", "bn_reestimation", "evaluation")}
    parts["startup"] = max(0.0, wall_s - search_s)
    parts["data_and_loop"] = max(0.0, t.get("between_steps", 0.0) - parts["line_search"])
    inside_fit = ("train_step/warmup", "train_step/search", "line_search", "data_and_loop", "validation",
                  "checkpoint_write")
    parts["fit_other"] = max(0.0, parts["fit"] - sum(parts[k] for k in inside_fit))
    parts["other"] = max(0.0, search_s - sum(parts[k] for k in
                                             ("table_build", "fit", "decode_repair_latency", "bn_reestimation",
                                              "evaluation")))
    return parts


def run_once(label: str, overrides: list[str], latency: str, out_root: Path) -> dict:
    out = out_root / label
    summary, wall_s, load_before = run_search_py([f"latency={latency}", "logger=csv", *overrides], out,
                                                 label=f"[{label}] ")
    if not summary.get("timings_s"):
        raise SystemExit(f"[{label}] summary.json has no timings_s (a search.py older than this benchmark?)")
    parts = parts_of(summary["timings_s"], wall_s, float(summary["search_seconds"]))
    checkpoints = sorted((out / "checkpoints").glob("*.ckpt")) if (out / "checkpoints").is_dir() else []
    return {"label": label, "overrides": " ".join(overrides), "wall_s": round(wall_s, 1),
            "search_seconds": round(float(summary["search_seconds"]), 1),
            "parts_s": {k: round(v, 2) for k, v in parts.items()},
            "latency_ms": summary["latency_ms"], "target_ms": summary["target_ms"],
            "meets_target": summary["meets_target"], "repaired": summary["repaired"],
            "val_acc": summary["val_acc"], "test_acc": summary["test_acc"],
            "num_threads": summary.get("num_threads"), "warmup_source": summary.get("warmup_source"),
            "checkpoint_mb": round(sum(p.stat().st_size for p in checkpoints) / 1e6, 1),
            "checkpoints": len(checkpoints),
            "load_avg_before": round(load_before, 2), "load_avg_after": round(os.getloadavg()[0], 2)}


def print_table(runs: list[dict]) -> None:
    header = f"{'part':<38}" + "".join(f"{r['label']:>22}" for r in runs)
    print(header)
    print("-" * len(header))
    for name, key, indent in ROWS:
        cells = ""
        for r in runs:
            seconds = r["parts_s"].get(key, 0.0)
            cells += f"{seconds:>12.1f} s {100 * seconds / r['wall_s']:>5.1f}%  "
        print(f"{'  ' * indent + name:<38}{cells}")
    print("-" * len(header))
    for key in ("wall_s", "search_seconds", "num_threads", "warmup_source", "latency_ms", "target_ms", "meets_target", "repaired",
                "val_acc", "test_acc", "checkpoints", "checkpoint_mb", "load_avg_before"):
        print(f"{key:<38}" + "".join(f"{str(r[key] if not isinstance(r[key], float) else round(r[key], 4))[:20]:>22}"
                                      for r in runs))
    if len(runs) > 1:
        base = runs[-1]
        for r in runs[:-1]:
            print(f"wall time {r['label']} / {base['label']}: {r['wall_s'] / base['wall_s']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", default="2.5ms")
    parser.add_argument("--config", action="append", default=[], metavar="LABEL='OVERRIDES'",
                        help="another configuration, run after the default one (repeatable)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run dirs here (default: deleted)")
    args = parser.parse_args()
    configs = [("default", [])]
    for item in args.config:
        label, _, overrides = item.partition("=")
        if not label or not _:
            raise SystemExit(f"--config: expected LABEL='overrides', got {item!r}")
        configs.append((label, shlex.split(overrides)))
    with tempfile.TemporaryDirectory(prefix="s3nas-search-profile-") as tmp:
        out_root = args.keep.resolve() if args.keep else Path(tmp)
        runs = [run_once(label, overrides, args.latency, out_root) for label, overrides in configs]
    print_table(runs)
    figures = {"latency": args.latency, "runs": runs}
    default = runs[0]
    figures.update(wall_s=default["wall_s"], search_seconds=default["search_seconds"],
                   shares={k: round(v / default["wall_s"], 4) for k, v in default["parts_s"].items()})
    if len(runs) > 1:
        figures["wall_ratio_vs_default"] = {r["label"]: round(r["wall_s"] / default["wall_s"], 3) for r in runs[1:]}
    record(figures, "search_profile")


if __name__ == "__main__":
    main()
