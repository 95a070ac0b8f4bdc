"""The paper's flow as one table: ``python -m s3nas.postsearch.flow 'runs=[<run dir>,...]'``.

S3NAS' third step is a chain of commands, each taking the previous one's run dir (README, "Scaling and
post-processing"): search -> train -> post-process (SE, h-swish) -> scale -> SE removal -> train. This
command reads the run dirs in order and writes one comparison table (flow.md) and summary.json: per stage
its accuracy (train.py runs: test accuracy of the retrained EMA weights; a search run: its weight-sharing
estimate, no retraining; the transform steps train nothing), and the network's simulated latency, params
and MACs, all recomputed here from each run dir's arch.json at its own deployment input size on one
hardware profile, so every row is measured the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from s3nas.errors import ConfigError


def _task_of(run_dir: Path) -> str:
    """The command that made ``run_dir`` (its config's task_name, else the directory name)."""
    config = run_dir / "config_resolved.yaml"
    if config.is_file():
        for line in config.read_text().splitlines():
            if line.startswith("task_name:"):
                return line.split(":", 1)[1].strip().strip("'\"")
    return run_dir.name


def stage_row(run_dir: Path, profile: Any) -> dict:
    """One table row for a run dir (ConfigError when it holds no arch.json)."""
    from s3nas.postsearch.stepio import load_arch, measure

    spec, _ = load_arch(run_dir, key=f"runs ({run_dir})")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    task = _task_of(run_dir)
    figures = measure(spec, profile)
    accuracy, source = None, "not trained here"
    if "test_acc" in summary and task != "search":
        accuracy, source = summary.get("test_acc"), f"retrained ({summary.get('data', '')}, test split, EMA)"
    elif "test_acc" in summary:
        accuracy, source = summary.get("test_acc"), "search estimate (weight sharing, no retraining)"
    se = sum(1 for b in spec.blocks if b.se_ratio > 0)
    acts = sorted({spec.act, *(b.act for b in spec.blocks)})
    return {"stage": task, "run_dir": str(run_dir), "test_acc": accuracy, "accuracy_source": source,
            "latency_ms": figures.latency_ms, "params": figures.params, "macs": figures.macs,
            "input_size": spec.input_size, "blocks": len(spec.blocks), "se_blocks": se, "activations": acts,
            "target_ms": summary.get("target_ms")}


def table_markdown(rows: list[dict], hardware: str) -> str:
    """The comparison table as Markdown."""
    lines = [f"| # | stage | test acc | latency ms ({hardware}, simulated) | params | MACs | input | blocks | SE | act |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        acc = f"{r['test_acc']:.4f}" + ("*" if r["accuracy_source"].startswith("search") else "") \
            if r["test_acc"] is not None else "-"
        lines.append(f"| {i} | {r['stage']} | {acc} | {r['latency_ms']:.4f} | {r['params']:,} | {r['macs']:,} | "
                     f"{r['input_size']} | {r['blocks']} | {r['se_blocks']} | {'/'.join(r['activations'])} |")
    lines.append("")
    lines.append("test acc: retrained EMA weights on the run's data (* = the search's weight-sharing estimate); "
                 "latency, params and MACs: each run dir's arch.json at its deployment input size.")
    return "\n".join(lines) + "\n"


def check(cfg: Any) -> tuple[list[Path], Any]:
    """Run dirs exist and hold arch.json; the hardware profile loads."""
    from s3nas.config import load_hardware

    runs = cfg.get("runs")
    if runs is None or isinstance(runs, str) or len(runs) == 0:
        raise ConfigError("runs: pass the run dirs of the flow in order, e.g. 'runs=[outputs/search/..., "
                          "outputs/train/...]'")
    dirs = []
    for text in runs:
        path = Path(str(text)).expanduser()
        if not (path / "arch.json").is_file():
            raise ConfigError(f"runs: '{path}' is not a run dir holding arch.json")
        dirs.append(path)
    return dirs, load_hardware(cfg.hardware)


def main(cfg: Any, checked: Optional[tuple] = None) -> float:
    """Hydra task: write flow.md and summary.json; returns the last stage's simulated latency."""
    from s3nas.utils.io import atomic_write_json, atomic_write_text

    dirs, profile = checked or check(cfg)
    rows = [stage_row(d, profile) for d in dirs]
    text = table_markdown(rows, profile.name)
    out = Path(str(cfg.paths.output_dir))
    atomic_write_text(out / "flow.md", text)
    atomic_write_json(out / "summary.json", {"hardware": profile.name, "stages": rows})
    print(text, end="")
    print(f"run dir: {out}")
    return rows[-1]["latency_ms"]


if __name__ == "__main__":
    from s3nas.utils.entry import run

    run(main, "flow", check=check)
