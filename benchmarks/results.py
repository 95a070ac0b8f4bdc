"""Benchmark results: every benchmark appends its final JSON line here, and RESULTS.md is generated from them.

Two jobs in one file:

* ``record(figures)`` is what a benchmark calls at its end instead of ``print(json.dumps(figures))``: it prints
  the same JSON object as the last stdout line (callers and tests parse it) and appends one record to
  ``benchmarks/records/<benchmark>.jsonl``: the figures plus the git commit (and whether the working tree had
  uncommitted changes), the UTC date, the command line, the wall time of the process and the machine's CPU count
  and load average. Nothing is recorded under pytest (``PYTEST_CURRENT_TEST`` is set, also in the subprocesses a
  test starts) or with ``S3NAS_BENCH_RECORD=0``; ``S3NAS_RESULTS_DIR=<dir>`` records elsewhere.
* ``python benchmarks/results.py`` writes RESULTS.md from those files (one table per benchmark, newest record
  first, with its commit, date and command; benchmarks without a record are listed with the command that makes
  one). ``--check`` exits 1 when RESULTS.md is not what the records give. RESULTS.md is never edited by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(os.environ.get("S3NAS_RESULTS_DIR") or REPO / "benchmarks" / "records")
RESULTS_MD = REPO / "RESULTS.md"
SCHEMA_VERSION = 1

#: benchmark name -> what it measures, the command of the README's record, whether it is long (minutes to
#: hours on 2 CPU cores) and the headline figures shown as columns (dotted paths into the figures; the
#: newest record's every figure is listed below its table).
BENCHMARKS: dict[str, dict[str, Any]] = {
    "main_job": {
        "about": "the README's main job as a user runs it: wall time of the whole command, the delivered network's "
                 "latency and accuracy (digits, `midap`, CPU)",
        "command": "python benchmarks/main_job.py",
        "long": True,
        "headline": ["wall_s", "search_seconds", "latency_ms", "target_ms", "meets_target", "repaired", "val_acc",
                     "test_acc", "load_avg_after"],
    },
    "search_profile": {
        "about": "the main job's wall time split into parts (start-up, table, warm-up and search steps, latency "
                 "term, data loading, validation, checkpoints, BN re-estimation, evaluation), configurations side "
                 "by side",
        "command": "python benchmarks/search_profile.py",
        "long": True,
        "headline": ["wall_s", "search_seconds", "shares.train_step/warmup", "shares.train_step/search",
                     "shares.startup", "wall_ratio_vs_default"],
    },
    "simulator_speed": {
        "about": "wall time of one simulation per model and profile (a worker process without torch), peak "
                 "memory, and the wall/CPU time of one `python -m simulator timm:mobilenetv2_100` call",
        "command": "python benchmarks/simulator_speed.py",
        "headline": ["mobilenetv2_100@midap_s", "efficientnet_b0@midap_s", "resnet50@midap_s", "peak_mem_mb",
                     "cli_cold_s", "cli_cold_cpu_s", "cli_cached_s"],
    },
    "simulator_fidelity": {
        "about": "the `midap` profile against MidapSim's per-layer MobileNetV2 result and the S3NAS paper's "
                 "Table 6 MIDAP latencies",
        "command": "python benchmarks/simulator_fidelity.py",
        "headline": ["mbv2_cycles", "mbv2_cycles_error_pct", "mbv2_dram_access_error_pct",
                     "t6_paper_workloads_max_abs_error_pct", "t6_non_edgetpu_mape_pct", "t6_published_order_kept"],
    },
    "latency_estimator": {
        "about": "the latency table's sum against end-to-end simulation of random architectures of the "
                 "search space (paper: MAPE 0.16% on MIDAP)",
        "command": "python benchmarks/latency_estimator.py",
        "headline": ["profile", "n", "mape_pct", "max_err_pct", "bias_pct", "isolated_mape_pct"],
    },
    "lut_build": {
        "about": "cold build and cached load of the simulated latency table of the default search space",
        "command": "python benchmarks/lut_build.py",
        "headline": ["entries", "positions", "workers", "cold_s", "warm_s", "min_ms", "max_ms"],
    },
    "search_constraint": {
        "about": "does the search meet the latency target by itself? Four searches at 1.5/2/2.5/3 ms on "
                 "`midap`: the search's own result, repair, delivered latency, val accuracy",
        "command": "python benchmarks/search_constraint.py",
        "long": True,
        "headline": ["hardware", "targets_ms", "simulated_ms", "repaired", "all_within_90_100pct_without_repair",
                     "val_acc", "seconds_per_search"],
    },
    "front": {
        "about": "the accuracy-latency front from one search (`latency=[1.5ms,2ms,2.5ms,3ms]`) vs one search per "
                 "target (same seed, each with its own warm-up): delivered latency, repair, val accuracy, time ratio",
        "command": "python benchmarks/front.py",
        "long": True,
        "headline": ["hardware", "targets", "delivered_ms", "repaired", "val_acc_multi", "val_acc_single",
                     "time_ratio", "front_wall_s", "mean_single_wall_s"],
    },
    "nas_vs_random": {
        "about": "S3NAS search vs random search vs random selection at 2.5 ms (paper 5.4.1), three seeds",
        "command": "nice -n 10 python benchmarks/nas_vs_random.py",
        "long": True,
        "headline": ["target", "hardware", "seeds", "wall_seconds"],
    },
    "paper_flow": {
        "about": "the paper's third step end to end: search -> train -> SE/h-swish -> scale -> train -> "
                 "SE removal -> train",
        "command": "python benchmarks/paper_flow.py --out runs/flow --train recipe.epochs=2",
        "long": True,
        "headline": ["scaling_target_ms", "scaling_coefficient", "removed_se_blocks"],
    },
    "latency_correction": {
        "about": "black-box devices: raw sum of per-block measurements vs the layer-adaptive corrected table on "
                 "held-out networks (cpu_onnxruntime and sim_midap_blackbox)",
        "command": "python benchmarks/latency_correction.py",
        "long": True,
        "headline": ["device", "dtype", "raw_mape_pct", "corrected_mape_pct", "within10_pct", "n_heldout",
                     "noise_pct"],
    },
    "int8": {
        "about": "INT8 delivery: the 2.5 ms search's network retrained (3 seeds), float vs post-training quantized vs "
                 "QAT test accuracy (model_int8.onnx on onnxruntime), agreement with the fake-quantized torch "
                 "network, file sizes, onnxruntime CPU latency float vs INT8 at 224 px",
        "command": "python benchmarks/int8.py --arch <2.5 ms search run dir> --jobs 2",
        "long": True,
        "headline": ["test_acc_fp32", "test_acc_int8_ptq", "test_acc_int8_qat", "agreement", "cpu_ms_fp32",
                     "cpu_ms_int8", "size_mb_fp32", "size_mb_int8"],
    },
    "profile_space_effect": {
        "about": "BBSSP: profile the candidate blocks, search in the default and in the profiled space at the same "
                 "target, retrain both delivered networks (3 seeds); per hardware and on average",
        "command": "nice -n 10 python benchmarks/profile_space_effect.py",
        "long": True,
        "headline": ["hardware", "seeds", "average.accuracy_gain", "average.latency_ratio",
                     "average.search_time_ratio", "average.peak_memory_ratio"],
    },
    "train_throughput": {
        "about": "retraining throughput (images/s) at 224x224, CPU and (when present) GPU",
        "command": "python benchmarks/train_throughput.py",
        "long": True,
        "headline": ["threads", "gpu"],
    },
    "search_throughput": {
        "about": "supernet training throughput (images/s) at 224x224 in the warm-up and the search step",
        "command": "python benchmarks/search_throughput.py",
        "long": True,
        "headline": ["cpu_warmup_images_per_s", "cpu_search_images_per_s", "gpu_warmup_images_per_s",
                     "gpu_search_images_per_s", "imagenet_search_minutes", "gpu_name"],
    },
    "supernet_overhead": {
        "about": "one training step of the supernet vs the same-size plain child network: time and memory",
        "command": "python benchmarks/supernet_overhead.py",
        "long": True,
        "headline": ["time_ratio", "mem_ratio", "saved_mem_ratio", "multipath_mem_ratio", "device"],
    },
}


# ------------------------------------------------------------------------------------------ recording
def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _process_seconds() -> float | None:
    """Wall seconds since this process started (Linux /proc; None elsewhere)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime_s - ticks / os.sysconf("SC_CLK_TCK"), 1)
    except (OSError, ValueError, IndexError):
        return None


def _command() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return " ".join(["python", shlex.quote(shown), *(shlex.quote(a) for a in sys.argv[1:])])


def recording() -> bool:
    """Whether record() appends (not under pytest, not with S3NAS_BENCH_RECORD=0)."""
    return not os.environ.get("PYTEST_CURRENT_TEST") and os.environ.get("S3NAS_BENCH_RECORD", "1") != "0"


def record(figures: dict, benchmark: str | None = None) -> dict:
    """Print ``figures`` as the last stdout line (one JSON object) and append it with its provenance."""
    line = json.dumps(figures, default=str)
    if recording():
        name = benchmark or Path(sys.argv[0]).stem
        changed = [ln[3:] for ln in _git("status", "--porcelain", "--untracked-files=no").splitlines() if ln.strip()]
        entry = {
            "schema_version": SCHEMA_VERSION,
            "benchmark": name,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": _git("rev-parse", "HEAD").strip() or None,
            "uncommitted": changed[:40],
            "command": _command(),
            "wall_s": _process_seconds(),
            "cpus": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "figures": json.loads(line),
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        with open(RESULTS_DIR / f"{name}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=False) + "\n")
    print(line, flush=True)
    return figures


# ------------------------------------------------------------------------------------------ RESULTS.md
def load_records(results_dir: Path = RESULTS_DIR) -> dict[str, list[dict]]:
    """{benchmark: [records, newest first]} from every ``*.jsonl`` file of ``results_dir``."""
    found: dict[str, list[dict]] = {}
    for path in sorted(results_dir.glob("*.jsonl")):
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as err:
                raise SystemExit(f"error: {path}:{number}: not a JSON line ({err})") from None
            found.setdefault(entry.get("benchmark") or path.stem, []).append(entry)
    for entries in found.values():
        entries.sort(key=lambda e: e.get("date") or "", reverse=True)
    return found


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b": leaf}; lists of dicts are indexed ("rows.0.model"); other lists stay whole."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}"))
        return out
    return {prefix: value}


def cell(value: Any) -> str:
    """One Markdown table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1e5:
            return f"{value:,.0f}"
        text = f"{value:.4g}"
        return text if any(c in text for c in ".en") else text + ".0"  # -1.0 stays a float, not "-1"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 1e5 else str(value)
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) if len(value) <= 12 else f"{len(value)} values"
    return str(value).replace("|", "\\|").replace("\n", " ")


def commit_cell(entry: dict) -> str:
    commit = (entry.get("commit") or "?")[:7]
    return f"{commit} + uncommitted changes" if entry.get("uncommitted") else commit


def benchmark_section(name: str, spec: dict, entries: list[dict]) -> list[str]:
    """Markdown of one benchmark: its records' headline figures and the newest record's every figure."""
    lines = [f"## {name}", "", f"{spec['about'][0].upper()}{spec['about'][1:]}.", "",
             f"Command: `{spec['command']}`" + (" (long: not re-run for this file)" if spec.get("long") and not entries
                                                else ""), ""]
    if not entries:
        return lines + ["No record yet.", ""]
    newest = flatten(entries[0]["figures"])
    headline = [key for key in spec["headline"] if any(key in flatten(e["figures"]) for e in entries)]
    headline = headline or [k for k, v in newest.items() if not isinstance(v, (list, dict))][:6]
    lines += ["| date (UTC) | commit | command | wall s | load (cpus) | " + " | ".join(headline) + " |",
              "|---" * (5 + len(headline)) + "|"]
    for entry in entries:
        flat = flatten(entry["figures"])
        load = entry.get("load_avg_1min")
        lines.append("| " + " | ".join([entry.get("date", "?").replace("T", " ").rstrip("Z"), commit_cell(entry),
                                        f"`{entry.get('command', '?')}`", cell(entry.get("wall_s")),
                                        f"{cell(load)} ({entry.get('cpus', '?')})"]
                                       + [cell(flat.get(key)) for key in headline]) + " |")
    lines += ["", f"<details><summary>Every figure of the newest record ({entries[0].get('date', '?')})</summary>",
              "", "| figure | value |", "|---|---|"]
    lines += [f"| {key} | {cell(value)} |" for key, value in newest.items()]
    lines += ["", "</details>", ""]
    return lines


def render(records: dict[str, list[dict]]) -> str:
    """The whole RESULTS.md."""
    names = list(BENCHMARKS) + sorted(set(records) - set(BENCHMARKS))
    lines = ["# Benchmark results", "",
             "<!-- generated by `python benchmarks/results.py` from benchmarks/records/*.jsonl; do not edit -->", "",
             "Generated by `python benchmarks/results.py` from the JSON lines the benchmarks append to "
             "`benchmarks/records/<benchmark>.jsonl` (each benchmark's last stdout line, with the commit, date and "
             "command of the run). Not edited by hand: run a benchmark, then regenerate this file.", "",
             "Machine: unless a record says otherwise, a shared 2-core CPU machine without a GPU; the load average "
             "at the end of each run is recorded next to it (other jobs were often running), so wall times are "
             "upper bounds. `+ uncommitted changes` means the working tree differed from the commit when the "
             "benchmark ran.", "",
             "| benchmark | records | newest (UTC) | commit |", "|---|---|---|---|"]
    for name in names:
        entries = records.get(name, [])
        if entries:
            lines.append(f"| [{name}](#{name}) | {len(entries)} | "
                         f"{entries[0].get('date', '?').replace('T', ' ').rstrip('Z')} | {commit_cell(entries[0])} |")
        else:
            lines.append(f"| [{name}](#{name}) | 0 | no record yet | - |")
    lines.append("")
    for name in names:
        spec = BENCHMARKS.get(name, {"about": "(not described in benchmarks/results.py)",
                                     "command": f"python benchmarks/{name}.py", "headline": []})
        lines += benchmark_section(name, spec, records.get(name, []))
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the *.jsonl records are")
    parser.add_argument("--out", type=Path, default=RESULTS_MD)
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs from what the records give")
    args = parser.parse_args()
    text = render(load_records(args.results_dir))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python benchmarks/results.py", file=sys.stderr)
            sys.exit(1)
        print(f"{args.out} is up to date")
        return
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({sum(len(v) for v in load_records(args.results_dir).values())} records)")


if __name__ == "__main__":
    main()
