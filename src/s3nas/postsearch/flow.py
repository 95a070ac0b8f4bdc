"""The paper's flow as one table: ``python -m s3nas.postsearch.flow 'runs=[<run dir>,...]'``.

S3NAS' third step is a chain of commands, each taking the previous one's run dir (README, "Scaling and
post-processing"): search -> train -> post-process (SE, h-swish) -> scale -> SE removal -> train. This
command reads the run dirs in order and writes one comparison table (flow.md) and summary.json: per stage
its accuracy (train.py runs: test accuracy of the retrained EMA weights; a search run: its weight-sharing
estimate, no retraining; the transform steps train nothing), and the network's simulated latency, params
and MACs, all recomputed here from each run dir's arch.json at its own deployment input size on one
hardware backend, so every row is measured the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from s3nas.errors import ConfigError
from s3nas.latency.backend import make_backend
from s3nas.outputs import FlowStage, FlowSummary, SearchSummary, TrainSummary, load_summary, write_summary
from s3nas.postsearch.stepio import load_arch, measure
from s3nas.runtime.entry import run
from s3nas.utils import tables
from s3nas.utils.io import atomic_write_text


def _task_of(run_dir: Path, summary: Any) -> str:
    """The command that made ``run_dir``: its summary's kind, else its config's task_name, else the dir name."""
    if summary is not None:
        return summary.kind
    config = run_dir / "config_resolved.yaml"
    if config.is_file():
        for line in config.read_text().splitlines():
            if line.startswith("task_name:"):
                return line.split(":", 1)[1].strip().strip("'\"")
    return run_dir.name


def stage_row(run_dir: Path, backend: Any) -> dict:
    """One table row for a run dir (ConfigError when it holds no arch.json or an unreadable summary.json)."""
    spec, _ = load_arch(run_dir, key=f"runs ({run_dir})")
    summary_path = run_dir / "summary.json"
    summary = load_summary(summary_path) if summary_path.is_file() else None
    task = _task_of(run_dir, summary)
    figures = measure(spec, backend)
    accuracy, source = None, "not trained here"
    if isinstance(summary, TrainSummary):
        accuracy, source = summary.test_acc, f"retrained ({summary.data}, test split, EMA)"
    elif isinstance(summary, SearchSummary):
        accuracy, source = summary.test_acc, "search estimate (weight sharing, no retraining)"
    se = sum(1 for b in spec.blocks if b.se_ratio > 0)
    acts = sorted({spec.act, *(b.act for b in spec.blocks)})
    return FlowStage(stage=task, run_dir=str(run_dir), test_acc=accuracy, accuracy_source=source,
                     latency_ms=figures.latency_ms, params=figures.params, macs=figures.macs,
                     input_size=spec.input_size, blocks=len(spec.blocks), se_blocks=se, activations=acts,
                     target_ms=getattr(summary, "target_ms", None)).to_dict()


def table_markdown(rows: list[dict], hardware: str) -> str:
    """The comparison table as Markdown."""

    def accuracy(r: dict) -> str:
        if r["test_acc"] is None:
            return "-"
        return f"{r['test_acc']:.4f}" + ("*" if r["accuracy_source"].startswith("search") else "")

    table = tables.markdown_table(
        [{"index": i, **r} for i, r in enumerate(rows)],
        ["index", "stage", "test_acc", "latency_ms", "params", "macs", "input_size", "blocks", "se_blocks",
         "activations"],
        {"test_acc": accuracy, "latency_ms": ".4f", "params": ",", "macs": ",",
         "activations": lambda r: "/".join(r["activations"])},
        headers=["#", "stage", "test acc", f"latency ms ({hardware}, simulated)", "params", "MACs", "input",
                 "blocks", "SE", "act"])
    note = ("test acc: retrained EMA weights on the run's data (* = the search's weight-sharing estimate); "
            "latency, params and MACs: each run dir's arch.json at its deployment input size.")
    return f"{table}\n{note}\n"


def check(cfg: Any) -> tuple[list[Path], Any]:
    """Run dirs exist and hold arch.json; the hardware backend loads."""
    runs = cfg.get("runs")
    if runs is None or isinstance(runs, str) or len(runs) == 0:
        raise ConfigError("runs: pass the run dirs of the flow in order, e.g. 'runs=[outputs/search/..., "
                          "outputs/train/...]'")
    dirs = []
    for text in runs:
        path = Path(str(text)).expanduser()
        if not (path / "arch.json").is_file():
            raise ConfigError(f"runs: '{path}' is not a run dir holding arch.json")
        if (path / "summary.json").is_file():
            load_summary(path / "summary.json")  # an old or malformed summary: one line before anything is written
        dirs.append(path)
    return dirs, make_backend(cfg.hardware)


def main(cfg: Any, checked: Optional[tuple] = None) -> float:
    """Hydra task: write flow.md and summary.json; returns the last stage's simulated latency."""
    dirs, backend = checked or check(cfg)
    rows = [stage_row(d, backend) for d in dirs]
    text = table_markdown(rows, backend.name)
    out = Path(str(cfg.paths.output_dir))
    atomic_write_text(out / "flow.md", text)
    write_summary(out, FlowSummary(hardware=backend.name, stages=rows))
    print(text, end="")
    print(f"run dir: {out}")
    return rows[-1]["latency_ms"]


def cli() -> None:
    """Console script ``s3nas-flow`` (also ``python -m s3nas.postsearch.flow``)."""
    run(main, "flow", check=check)


if __name__ == "__main__":
    cli()
