"""The paper's flow as one table: ``python -m s3nas.postsearch.flow 'runs=[<run dir>,...]'``.

S3NAS' third step is a chain of commands, each taking the previous one's run dir (README, "Scaling and
post-processing"): search -> train -> post-process (SE, h-swish) -> scale -> SE removal -> train. This
command reads the run dirs in order and writes one comparison table (flow.md) and summary.json: per stage
its accuracy (train.py runs: test accuracy of the retrained EMA weights and, with ``quantize=int8``, of its
model_int8.onnx, side by side; a search run: its weight-sharing estimate, no retraining; the transform steps
train nothing), and the network's simulated latency, params and MACs, all recomputed here from each run dir's
arch.json at its own deployment input size on one hardware backend, so every row is measured the same way. The
table's header says which number format that hardware computes in, hence which accuracy column it runs.
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


def accuracy_pair(summary: TrainSummary) -> tuple[Optional[float], Optional[float]]:
    """(float EMA, model_int8.onnx) test accuracies of a train summary; an older summary's test_acc is the float one."""
    dtype = summary.accuracy_dtype
    fp32 = summary.test_acc_fp32 if summary.test_acc_fp32 is not None else (
        summary.test_acc if dtype != "int8" else None)
    int8 = summary.test_acc_int8 if summary.test_acc_int8 is not None else (
        summary.test_acc if dtype == "int8" else None)
    return fp32, int8


def stage_row(run_dir: Path, backend: Any) -> dict:
    """One table row for a run dir (ConfigError when it holds no arch.json or an unreadable summary.json)."""
    spec, _ = load_arch(run_dir, key=f"runs ({run_dir})")
    summary_path = run_dir / "summary.json"
    summary = load_summary(summary_path) if summary_path.is_file() else None
    task = _task_of(run_dir, summary)
    figures = measure(spec, backend)
    accuracy, source, dtype, fp32, int8 = None, "not trained here", "fp32", None, None
    if isinstance(summary, TrainSummary):
        accuracy, dtype = summary.test_acc, "int8" if summary.accuracy_dtype == "int8" else "fp32"
        fp32, int8 = accuracy_pair(summary)
        source = (f"retrained ({summary.data}, test split, "
                  + ("model_int8.onnx of the EMA weights)" if dtype == "int8" else "EMA)"))
    elif isinstance(summary, SearchSummary):
        accuracy, source = summary.test_acc, "search estimate (weight sharing, no retraining)"
        fp32 = accuracy
    se = sum(1 for b in spec.blocks if b.se_ratio > 0)
    acts = sorted({spec.act, *(b.act for b in spec.blocks)})
    return FlowStage(stage=task, run_dir=str(run_dir), test_acc=accuracy, accuracy_dtype=dtype, test_acc_fp32=fp32,
                     test_acc_int8=int8, accuracy_source=source,
                     latency_ms=figures.latency_ms, params=figures.params, macs=figures.macs,
                     input_size=spec.input_size, blocks=len(spec.blocks), se_blocks=se, activations=acts,
                     target_ms=getattr(summary, "target_ms", None)).to_dict()


def table_markdown(rows: list[dict], hardware: str, hardware_dtype: str = "fp32") -> str:
    """The comparison table as Markdown: a float and an INT8 accuracy column, the hardware's format named."""

    def fp32(r: dict) -> str:
        value = r.get("test_acc_fp32")
        if value is None and r.get("accuracy_dtype", "fp32") != "int8":
            value = r["test_acc"]  # a flow summary of an older s3nas
        if value is None:
            return "-"
        return f"{value:.4f}" + ("*" if r["accuracy_source"].startswith("search") else "")

    def int8(r: dict) -> str:
        return "-" if r.get("test_acc_int8") is None else f"{r['test_acc_int8']:.4f}"

    runs = "int8" if hardware_dtype == "int8" else "fp32"  # the column of the network the hardware runs
    headers = {dtype: f"test acc {dtype}" + (f" ({hardware} runs this)" if dtype == runs else "")
               for dtype in ("fp32", "int8")}
    table = tables.markdown_table(
        [{"index": i, **r} for i, r in enumerate(rows)],
        ["index", "stage", "test_acc_fp32", "test_acc_int8", "latency_ms", "params", "macs", "input_size", "blocks",
         "se_blocks", "activations"],
        {"test_acc_fp32": fp32, "test_acc_int8": int8, "latency_ms": ".4f", "params": ",", "macs": ",",
         "activations": lambda r: "/".join(r["activations"])},
        headers=["#", "stage", headers["fp32"], headers["int8"], f"latency ms ({hardware}, simulated)", "params",
                 "MACs", "input", "blocks", "SE", "act"])
    header = (f"`{hardware}` computes in {hardware_dtype}: the {runs} accuracy column is the accuracy of the network "
              f"it runs"
              + (" (- : no INT8 model; train with quantize=int8)." if runs == "int8" else "."))
    note = ("test acc fp32: retrained EMA weights on the run's data (* = the search's weight-sharing estimate); "
            "int8: the train run's model_int8.onnx (onnxruntime); latency, params and MACs: each run dir's arch.json "
            "at its deployment input size.")
    return f"{header}\n\n{table}\n{note}\n"


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
    dtype = str(getattr(backend, "data_dtype", "fp32"))
    text = table_markdown(rows, backend.name, dtype)
    out = Path(str(cfg.paths.output_dir))
    atomic_write_text(out / "flow.md", text)
    write_summary(out, FlowSummary(hardware=backend.name, hardware_dtype=dtype, stages=rows))
    print(text, end="")
    print(f"run dir: {out}")
    return rows[-1]["latency_ms"]


def cli() -> None:
    """Console script ``s3nas-flow`` (also ``python -m s3nas.postsearch.flow``)."""
    run(main, "flow", check=check)


if __name__ == "__main__":
    cli()
