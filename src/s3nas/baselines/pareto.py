"""Pareto plot: published ImageNet top-1 vs simulated latency per hardware profile, with s3nas networks overlaid.

The zoo networks are placed at their published top-1 (left axis) and our simulated latency; the Pareto front
(no network both faster and more accurate) is drawn as a step line. Searched / retrained / random-baseline
networks (run dirs holding ``arch.json`` + ``summary.json``) are simulated on the same profile at their deployment
shape and placed at *their own* test accuracy on *their own* data (right axis, labelled with the dataset): those
accuracies are not ImageNet figures and the plot says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.errors import ConfigError
from s3nas.outputs import RandomBaselineSummary, SearchSummary, Summary, TrainSummary, load_summary
from s3nas.utils.plots import pyplot


def _method_of(summary: Summary) -> str:
    """What made the network: the random baseline's method, s3nas search / retrained, or the command."""
    if isinstance(summary, RandomBaselineSummary):
        return summary.method
    if isinstance(summary, SearchSummary):
        return "s3nas search"
    if isinstance(summary, TrainSummary):
        return "s3nas retrained" if summary.arch_origin.endswith("arch.json") else "trained"
    return summary.kind


def load_overlays(run_dirs: Iterable[str], key: str = "overlay") -> list[dict]:
    """Run dirs -> [{label, method, data, accuracy, spec, run_dir, summary}]; ConfigError for a dir without
    arch.json + summary.json or with an unreadable one."""
    overlays = []
    for text in run_dirs:
        run_dir = Path(str(text)).expanduser()
        arch, summary_path = run_dir / "arch.json", run_dir / "summary.json"
        if not arch.is_file() or not summary_path.is_file():
            raise ConfigError(f"{key}: '{run_dir}' holds no arch.json + summary.json (a finished search.py, train.py "
                              f"or random baseline run dir)")
        try:
            summary = load_summary(summary_path)
        except ConfigError as error:
            raise ConfigError(f"{key}: {error}") from None
        spec = codec.load_json(arch)
        method = _method_of(summary)
        data = getattr(summary, "data", None) or "?"
        overlays.append({"label": f"{method} ({data})", "method": method, "data": data,
                         "accuracy": getattr(summary, "test_acc", None),
                         "accuracy_source": getattr(summary, "accuracy_source", None) or f"test_acc of {summary_path}",
                         "spec": spec, "run_dir": str(run_dir), "summary": summary})
    return overlays


def overlay_points(overlays: list[dict], profiles: Iterable[Any]) -> list[dict]:
    """Each overlay network simulated on each profile (a SimulatorBackend) at its deployment shape (JSON-able
    points)."""
    points = []
    for overlay in overlays:
        graph = archspec_to_graph(overlay["spec"])
        for profile in profiles:
            report = profile.simulate_graph(graph)
            acc = overlay["accuracy"]
            points.append({"label": overlay["label"], "method": overlay["method"], "data": overlay["data"],
                           "hardware": profile.name, "latency_ms": float(report.latency_ms),
                           "own_data_top1": None if acc is None else 100.0 * float(acc),
                           "accuracy_source": overlay["accuracy_source"], "params_m": None,
                           "macs_g": report.macs / 1e9, "input_size": overlay["spec"].input_size,
                           "run_dir": overlay["run_dir"]})
    return points


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(latency, accuracy) points no other point beats on both (lower latency and higher accuracy), by latency."""
    front: list[tuple[float, float]] = []
    for latency, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((latency, accuracy))
    return front


def plot_pareto(rows: list[dict], points: list[dict], hardware: str, path: Optional[str | Path] = None,
                ax: Any = None) -> Any:
    """Draw one hardware profile's plot (saved to ``path`` as PNG when given); returns the figure."""
    plt = pyplot(to_file=ax is None and path is not None)

    zoo = [r for r in rows if r["hardware"] == hardware and r.get("published_top1") is not None]
    fig = ax.figure if ax is not None else plt.figure(figsize=(9, 5.5))
    ax = ax if ax is not None else fig.add_subplot(111)
    ax.scatter([r["latency_ms"] for r in zoo], [r["published_top1"] for r in zoo], color="tab:blue", zorder=3,
               label="zoo: published ImageNet top-1 (left axis)")
    for r in zoo:
        ax.annotate(r["model"].replace("EfficientNet-", "EffNet-"), (r["latency_ms"], r["published_top1"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front([(r["latency_ms"], r["published_top1"]) for r in zoo])
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:blue", alpha=0.4,
                label="zoo Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(f"simulated latency on {hardware} (ms, batch 1, log scale)")
    ax.set_ylabel("published ImageNet top-1 (%)")
    ax.grid(True, which="both", alpha=0.3)
    mine = [p for p in points if p["hardware"] == hardware and p.get("own_data_top1") is not None]
    handles, labels = ax.get_legend_handles_labels()
    if mine:
        right = ax.twinx()
        markers = {}
        for p in mine:
            marker = markers.setdefault(p["method"], "*^sPDvX"[len(markers) % 7])
            right.scatter([p["latency_ms"]], [p["own_data_top1"]], marker=marker, s=90, color="tab:red", zorder=4,
                          label=f"{p['label']}: own-data test acc (right axis, not ImageNet)")
        right.set_ylabel("s3nas networks: test accuracy on their own data (%)", color="tab:red")
        right.tick_params(axis="y", colors="tab:red")
        h2, l2 = right.get_legend_handles_labels()
        seen = dict(zip(l2, h2))
        handles, labels = handles + list(seen.values()), labels + list(seen)
    ax.legend(handles, labels, fontsize=7, loc="lower right")
    ax.set_title(f"Accuracy vs simulated latency on {hardware}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def log_wandb_plots(loggers: list, rows: list[dict], points: list[dict], plots: dict, summary: dict) -> None:
    """W&B: the zoo table, the overlay points, one scatter plot and one image per profile, the summary."""
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        try:
            import wandb

            run = logger.experiment
            columns = list(rows[0])
            table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
            payload: dict = {"zoo": table}
            for hardware, png in plots.items():
                sub = wandb.Table(columns=["model", "latency_ms", "published_top1"],
                                  data=[[r["model"], r["latency_ms"], r["published_top1"]] for r in rows
                                        if r["hardware"] == hardware and r["published_top1"] is not None])
                payload[f"pareto/{hardware}"] = wandb.plot.scatter(sub, "latency_ms", "published_top1",
                                                                   title=f"published top-1 vs simulated latency ({hardware})")
                payload[f"pareto_png/{hardware}"] = wandb.Image(png)
            if points:
                pcols = [c for c in points[0] if c != "spec"]
                payload["overlay"] = wandb.Table(columns=pcols, data=[[p[c] for c in pcols] for p in points])
            run.log(payload)
            run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
        except Exception as error:  # noqa: BLE001 - W&B never fails the table
            warnings.warn(f"W&B logging of the zoo failed: {error}")
