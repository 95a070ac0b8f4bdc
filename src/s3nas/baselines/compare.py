"""`python -m s3nas.baselines.compare runs=[dir,...] zoo=[efficientnet_b1,...]`: a Table 6-shaped comparison.

For one dataset and one hardware profile: every network of the given run dirs (search.py, train.py,
random_search, random_selection; a multirun dir stands for its jobs) and the named zoo networks, with its
accuracy (and what kind: weight-sharing, retrained, published ImageNet; fp32 or int8), the float and INT8
(``model_int8.onnx`` of a ``train.py quantize=int8`` run) accuracies side by side, its latency obtained here on the
hardware's backend at its deployment shape (the same backend for every row), weights and MACs at that shape, and the
search cost in wall-clock seconds (a train.py run of a searched network inherits its search's cost; zoo rows
have none). Writes ``compare.csv``, ``compare.md``, ``summary.json`` and ``compare_<hardware>.png`` (the rows on
the accuracy-latency plane). ``notebooks/compare_models.ipynb`` draws the same from run dirs.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.baselines.zoo import ZooEntry, build_graph, select_entries
from s3nas.errors import ConfigError
from s3nas.latency.backend import make_backend
from s3nas.outputs import (
    CompareRow,
    CompareSummary,
    RandomBaselineSummary,
    SearchSummary,
    Summary,
    TrainSummary,
    load_summary,
    write_summary,
)
from s3nas.runtime.entry import run
from s3nas.runtime.loggers import build_loggers
from s3nas.utils import tables
from s3nas.utils.io import atomic_write_text
from s3nas.utils.plots import pyplot

#: compare.csv's columns: the fields of a row of the typed summary (s3nas.outputs.CompareRow).
COLUMNS = tuple(key for _, key, _, _ in CompareRow.fields())


def expand_run_dirs(paths: Iterable[str], key: str = "runs") -> list[Path]:
    """Run dirs with a summary.json; a dir without one stands for its sub-dirs that have one (multirun)."""
    found: list[Path] = []
    for text in paths:
        path = Path(str(text)).expanduser()
        if (path / "summary.json").is_file():
            found.append(path)
            continue
        children = sorted(p.parent for p in path.glob("*/summary.json")) if path.is_dir() else []
        if not children:
            raise ConfigError(f"{key}: '{path}' holds no summary.json (nor do its sub-directories); pass finished "
                              f"search.py / train.py / random baseline run dirs")
        found.extend(children)
    return found


def _read(path: Path) -> Summary:
    """The typed summary at ``path``; ConfigError naming ``runs`` and the file (old, unreadable, off-schema)."""
    try:
        return load_summary(path)
    except ConfigError as error:
        raise ConfigError(f"runs: {error}") from None


def accuracy_pair(summary: Summary, run_dir: Path) -> tuple[Optional[float], Optional[float], str]:
    """(float, INT8) test accuracies (fractions) of a run and the number format of its test_acc.

    A train run has both (INT8 null without quantize=int8; an older summary's test_acc is the float one); a
    random baseline takes its final/ training's; a search's weight-sharing estimate is float.
    """
    if isinstance(summary, RandomBaselineSummary):
        finals = [Path(summary.final_run_dir)] if summary.final_run_dir else []
        for final in [*finals, run_dir / "final"]:
            try:
                trained = load_summary(final / "summary.json") if (final / "summary.json").is_file() else None
            except ConfigError:
                trained = None  # the row keeps the baseline's own figure
            if isinstance(trained, TrainSummary) and trained.test_acc == summary.test_acc:
                return accuracy_pair(trained, final)
    if not isinstance(summary, TrainSummary):
        return summary.test_acc, None, "fp32"
    dtype = "int8" if summary.accuracy_dtype == "int8" else "fp32"
    fp32 = summary.test_acc_fp32 if summary.test_acc_fp32 is not None else (
        summary.test_acc if dtype == "fp32" else None)
    int8 = summary.test_acc_int8 if summary.test_acc_int8 is not None else (
        summary.test_acc if dtype == "int8" else None)
    return fp32, int8, dtype


def _percent(fraction: Optional[float]) -> Optional[float]:
    return None if fraction is None else 100.0 * float(fraction)


def describe_run(run_dir: Path) -> dict:
    """What a run dir delivered: kind, accuracy (and its kind), search cost, the ArchSpec (or timm name)."""
    summary = _read(run_dir / "summary.json")
    arch_path = run_dir / "arch.json"
    spec = codec.load_json(arch_path) if arch_path.is_file() else None
    timm_name = None
    if isinstance(summary, RandomBaselineSummary):
        kind = summary.method
        accuracy_kind = f"retrained {summary.full_epochs} ep"
        search_seconds = summary.search_seconds
    elif isinstance(summary, SearchSummary):
        kind, accuracy_kind = "s3nas search", "weight sharing"
        search_seconds = summary.search_seconds
    elif isinstance(summary, TrainSummary):
        origin = summary.arch_origin
        kind, search_seconds = "trained", None
        if origin.startswith("timm:"):
            timm_name, kind = origin[len("timm:"):], "zoo (trained here)"
        else:
            parent = Path(origin).parent if origin else None
            if parent is not None and (parent / "summary.json").is_file():
                searched = _read(parent / "summary.json")
                search_seconds = getattr(searched, "search_seconds", None)
                kind = ("s3nas" if isinstance(searched, SearchSummary) else
                        searched.method if isinstance(searched, RandomBaselineSummary) else "trained")
                kind = f"{kind} (retrained)" if "retrained" not in kind else kind
        accuracy_kind = f"retrained {summary.epochs} ep"
    else:
        raise ConfigError(f"runs: '{run_dir}' is a {summary.kind} run dir, not a search.py, train.py or random "
                          f"baseline one")
    if spec is None and timm_name is None:
        raise ConfigError(f"runs: '{run_dir}' holds no arch.json")
    fp32, int8, dtype = accuracy_pair(summary, run_dir)
    return {"kind": kind, "accuracy": summary.test_acc, "accuracy_kind": accuracy_kind, "accuracy_dtype": dtype,
            "accuracy_fp32": fp32, "accuracy_int8": int8,
            "data": summary.data, "search_seconds": search_seconds,
            "train_seconds": summary.train_seconds if not isinstance(summary, SearchSummary) else None,
            "target_ms": getattr(summary, "target_ms", None), "seed": summary.seed, "spec": spec,
            "timm_name": timm_name, "run_dir": str(run_dir), "name": (spec.name if spec is not None else timm_name)}


def network_figures(spec: Any, backend: Any) -> tuple[float, float, float]:
    """(latency ms on ``backend``, params M, MACs G) of an ArchSpec at its deployment shape."""
    graph = archspec_to_graph(spec)
    return backend.latency_ms(spec), sum(layer.weight_count for layer in graph) / 1e6, graph.macs / 1e9


def comparison_rows(run_dirs: Iterable[Path], zoo_keys: Iterable[str], backend: Any,
                    data: Optional[str] = None) -> tuple[list[dict], str]:
    """The table's rows (runs on ``data`` first by accuracy, then the zoo) and the dataset used; latency on
    ``backend`` (a LatencyBackend)."""
    runs = [describe_run(Path(d)) for d in run_dirs]
    if data is None and runs:
        data = runs[0]["data"]
    rows = []
    for entry_run in runs:
        if data is not None and entry_run["data"] != data:
            continue
        if entry_run["spec"] is not None:
            latency, params, macs = network_figures(entry_run["spec"], backend)
        else:
            entry = ZooEntry(entry_run["timm_name"], entry_run["timm_name"], entry_run["timm_name"], 224, None, "")
            graph = build_graph(entry)
            latency = backend.evaluate_graph(graph, entry.timm_name, entry.input_size, 1000).latency_ms
            params, macs = sum(layer.weight_count for layer in graph) / 1e6, graph.macs / 1e9
        rows.append({"model": entry_run["name"], "kind": entry_run["kind"], "data": entry_run["data"],
                     "accuracy": _percent(entry_run["accuracy"]),
                     "accuracy_kind": f"{entry_run['accuracy_kind']}, test split, {entry_run['accuracy_dtype']}",
                     "accuracy_fp32": _percent(entry_run["accuracy_fp32"]),
                     "accuracy_int8": _percent(entry_run["accuracy_int8"]),
                     "latency_ms": latency,
                     "target_ms": entry_run["target_ms"], "params_m": params, "macs_g": macs,
                     "search_seconds": entry_run["search_seconds"], "train_seconds": entry_run["train_seconds"],
                     "seed": entry_run["seed"], "run_dir": entry_run["run_dir"]})
    rows.sort(key=lambda r: (-(r["accuracy"] or -1.0), r["latency_ms"]))
    for entry in select_entries(zoo_keys) if list(zoo_keys) else []:
        graph = build_graph(entry)
        z = {"latency_ms": backend.evaluate_graph(graph, entry.timm_name, entry.input_size, 1000).latency_ms,
             "params_m": sum(layer.weight_count for layer in graph) / 1e6, "macs_g": graph.macs / 1e9}
        rows.append({"model": entry.display, "kind": "zoo (published)", "data": "imagenet",
                     "accuracy": entry.published_top1, "accuracy_kind": "published ImageNet top-1, fp32",
                     "accuracy_fp32": entry.published_top1, "accuracy_int8": None,
                     "latency_ms": z["latency_ms"], "target_ms": None, "params_m": z["params_m"],
                     "macs_g": z["macs_g"], "search_seconds": None, "train_seconds": None, "seed": None,
                     "run_dir": ""})
    return rows, data or ""


def _search_cost(row: dict) -> str:
    seconds = row["search_seconds"]
    return "" if seconds is None else f"{seconds:.0f} s ({seconds / 3600:.2f} h)"


def markdown_table(rows: list[dict], hardware: str, data: str, hardware_dtype: Optional[str] = None) -> str:
    """Table 6 shape: model, top-1 (float and INT8 too), latency, params, MACs, search cost (wall clock)."""
    title = (f"Networks on `{data}` and zoo networks, latency simulated on `{hardware}` at each network's deployment "
             f"shape; accuracies of different kinds are not comparable across kinds.")
    if hardware_dtype is not None:
        title += (f" `{hardware}` computes in {hardware_dtype}; top-1 % is each run's reported accuracy (the INT8 "
                  f"model's where it has one and the run's hardware computes in int8; its kind says fp32 or int8), "
                  f"fp32 % and int8 % the float weights' and model_int8.onnx's (empty: none).")
    table = tables.markdown_table(
        rows, ["model", "kind", "seed", "accuracy", "accuracy_kind", "accuracy_fp32", "accuracy_int8", "latency_ms",
               "params_m", "macs_g", "search_seconds"],
        {"seed": "d", "accuracy": ".2f", "accuracy_fp32": ".2f", "accuracy_int8": ".2f", "latency_ms": ".3f",
         "params_m": ".2f", "macs_g": ".2f", "search_seconds": _search_cost},
        headers=["model", "kind", "seed", "top-1 %", "accuracy kind", "fp32 %", "int8 %", "latency ms", "params M",
                 "MACs G", "search cost (wall clock)"])
    return f"{title}\n\n{table}"


def plot_comparison(rows: list[dict], hardware: str, path: Optional[str | Path] = None, ax: Any = None) -> Any:
    """Runs on the accuracy-latency plane (one marker per kind); zoo rows on their own axis if present."""
    plt = pyplot(to_file=ax is None and path is not None)

    fig = ax.figure if ax is not None else plt.figure(figsize=(8, 5))
    ax = ax if ax is not None else fig.add_subplot(111)
    runs = [r for r in rows if r["kind"] != "zoo (published)" and r["accuracy"] is not None]
    markers = {}
    for r in runs:
        marker = markers.setdefault(r["kind"], "o^sDv*PX"[len(markers) % 8])
        ax.scatter([r["latency_ms"]], [r["accuracy"]], marker=marker, s=60,
                   color=f"C{list(markers).index(r['kind'])}", label=r["kind"])
    targets = {r["target_ms"] for r in runs if r["target_ms"]}
    for target in targets:
        ax.axvline(target, color="grey", ls="--", lw=1)
        ax.axvspan(target * 0.98, target * 1.02, color="grey", alpha=0.1)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.set_xlabel(f"simulated latency on {hardware} (ms)")
    ax.set_ylabel(f"test accuracy on {runs[0]['data'] if runs else '?'} (%)")
    zoo = [r for r in rows if r["kind"] == "zoo (published)" and r["accuracy"] is not None]
    if zoo:
        right = ax.twinx()
        right.scatter([r["latency_ms"] for r in zoo], [r["accuracy"] for r in zoo], color="tab:grey", marker="x")
        for r in zoo:
            right.annotate(r["model"], (r["latency_ms"], r["accuracy"]), fontsize=7, color="tab:grey")
        right.set_ylabel("zoo: published ImageNet top-1 (%)", color="tab:grey")
    ax.legend(list(unique.values()), list(unique), fontsize=8, loc="lower right")
    ax.set_title(f"Table 6-style comparison on {hardware} (dashed: target, band: +-2%)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def csv_text(rows: list[dict]) -> str:
    """compare.csv: the COLUMNS of every row (None and missing values empty)."""
    return tables.csv_text(rows, COLUMNS, extras="ignore")


# ----------------------------------------------------------------------------------------- entry point
def check(cfg: Any) -> dict:
    """Every user error before anything is written."""
    if not cfg.runs and not cfg.zoo:
        raise ConfigError("runs: nothing to compare; pass runs=[<run dir>,...] and/or zoo=[efficientnet_b1,...]")
    run_dirs = expand_run_dirs(cfg.runs)
    for run_dir in run_dirs:
        describe_run(run_dir)
    select_entries(cfg.zoo)
    return {"run_dirs": run_dirs, "backend": make_backend(cfg.hardware)}


def main(cfg: Any, checked: Optional[dict] = None) -> dict:
    """Hydra task: build the rows, write compare.csv / compare.md / summary.json / PNG, log to W&B."""
    started = time.time()
    checked = checked or check(cfg)
    run_dir = Path(str(cfg.paths.output_dir))
    backend = checked["backend"]
    rows, data = comparison_rows(checked["run_dirs"], cfg.zoo, backend, cfg.get("data"))
    hardware_dtype = str(getattr(backend, "data_dtype", "fp32"))
    markdown = markdown_table(rows, backend.name, data, hardware_dtype)
    atomic_write_text(run_dir / "compare.csv", csv_text(rows))
    atomic_write_text(run_dir / "compare.md", markdown)
    plot = None
    if cfg.plot:
        plot = run_dir / f"compare_{backend.name}.png"
        plot_comparison(rows, backend.name, plot)
    typed = CompareSummary(hardware=backend.name, hardware_dtype=hardware_dtype, data=data, rows=rows,
                           plot=str(plot) if plot else None, seconds=time.time() - started, run_dir=str(run_dir))
    write_summary(run_dir, typed)
    summary = typed.to_dict()
    for logger in build_loggers(cfg):
        if type(logger).__name__ == "WandbLogger":
            try:
                import wandb

                columns = list(COLUMNS)
                payload = {"compare": wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])}
                if plot:
                    payload["compare_png"] = wandb.Image(str(plot))
                logger.experiment.log(payload)
            except Exception as error:  # noqa: BLE001
                warnings.warn(f"W&B logging of the comparison failed: {error}")
    print(markdown)
    print(f"run dir: {run_dir}")
    return summary


def cli() -> None:
    """Console script ``s3nas-compare`` (also ``python -m s3nas.baselines.compare``)."""
    run(main, "compare", check=check)


if __name__ == "__main__":
    cli()
