"""The README's main job, timed: `python search.py latency=2.5ms` (default: `logger=csv`), as a user runs it.

    python benchmarks/main_job.py [--out DIR] [-- extra search.py overrides]

Runs search.py once in a fresh run dir (a temp dir unless --out), then reads its summary.json. Prints the
delivered network's figures; the last line is one JSON object (wall_s of the whole command, search_seconds,
latency_ms, latency_source, meets_target, repaired, val_acc, test_acc, load average), recorded for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import record

REPO = Path(__file__).resolve().parents[1]
KEYS = ("target_ms", "latency_ms", "latency_source", "meets_target", "repaired", "val_acc", "test_acc",
        "search_seconds", "hardware")


def run_search_py(overrides: list[str], out: Path, label: str = "") -> tuple[dict, float, float]:
    """Run ``python search.py <overrides> hydra.run.dir=<out>`` as a user does; returns (summary.json, wall time of
    the whole command in s, load average before). Exits with the run's last output if it failed."""
    command = [sys.executable, "search.py", *overrides, f"hydra.run.dir={out}"]
    print(f"{label}$ " + " ".join(shlex.quote(c) for c in command[1:]), flush=True)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall_s = time.perf_counter() - started
    if proc.returncode != 0 or not (out / "summary.json").exists():
        sys.stderr.write(proc.stdout[-4000:])
        raise SystemExit(f"{label}search.py failed (exit {proc.returncode}) after {wall_s:.0f} s; nothing recorded")
    return json.loads((out / "summary.json").read_text()), wall_s, load_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="run dir (default: a fresh temp dir)")
    parser.add_argument("--latency", default="2.5ms")
    parser.add_argument("overrides", nargs="*", default=["logger=csv"], help="search.py overrides")
    args = parser.parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="s3nas-main-job-")) / "run").resolve()
    summary, wall_s, load_before = run_search_py([f"latency={args.latency}", *args.overrides], out)
    figures = {key: summary.get(key) for key in KEYS}
    figures.update(command=f"python search.py latency={args.latency} {' '.join(args.overrides)}".strip(),
                   wall_s=round(wall_s, 1), load_avg_before=round(load_before, 2),
                   load_avg_after=round(os.getloadavg()[0], 2), run_dir=str(out))
    for key in ("command", "wall_s", *KEYS):
        print(f"{key:>16}: {figures[key]}")
    record(figures, "main_job")


if __name__ == "__main__":
    main()
