"""End of a many-target search (``latency=[1.5ms,2ms,2.5ms,3ms]``): one delivered network per target, and the front.

Each target's bank of thresholds (``s3nas.search.objectives``) is decoded, repaired only if it must and evaluated
like a one-target search's network (``s3nas.search.outputs.finish_search``), into its own directory
``target_<T>ms/`` (arch.json, summary.json). The run dir then gets ``front.csv`` (one row per network),
``front.png`` (delivered accuracy against latency; the zoo networks of the same simulated hardware on their own axis,
with their published ImageNet top-1), ``summary.json`` (a ``FrontSummary``) and, with W&B, the table and the plot.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from s3nas.arch.zoo_catalog import ZOO
from s3nas.outputs import FrontSummary, write_summary
from s3nas.search.outputs import finish_search
from s3nas.utils import tables
from s3nas.utils.io import atomic_output_path, is_disk_full
from s3nas.utils.plots import pyplot
from simulator.loaders import load_model_graph

FRONT_COLUMNS = ("target_ms", "latency_ms", "target_ratio", "meets_target", "repaired", "val_acc", "test_acc",
                 "macs", "decode_step", "latency_source", "arch", "dir")


def target_dir(target_ms: float) -> str:
    """The directory of one target's network under the run dir: ``target_2.5ms``."""
    return f"target_{target_ms:g}ms"


def finish_front(cfg: DictConfig, *, run_dir: Path, module, datamodule, deploy_space, table, backend,
                 supernet_val_acc: float, started: float, loggers: list, trainer, timings,
                 warmup_source: str | None) -> dict:
    """Deliver every target's network, then write the front; returns the FrontSummary's dict."""
    targets = [bank.target_ms for bank in module.banks]
    summaries = []
    for index, bank in enumerate(module.banks):
        module.use_bank(index)
        summaries.append(finish_search(
            cfg, run_dir=run_dir / target_dir(bank.target_ms), module=module, datamodule=datamodule,
            deploy_space=deploy_space, table=table, backend=backend, target_ms=bank.target_ms,
            supernet_val_acc=supernet_val_acc, started=started, loggers=[], trainer=trainer, timings=timings,
            warmup_source=warmup_source, search_targets_ms=targets, show=False))
    points = [{**{k: s[k] for k in FRONT_COLUMNS if k != "dir"}, "dir": target_dir(s["target_ms"])} for s in summaries]
    zoo_started = time.perf_counter()
    zoo_rows = [r for r in zoo_on(backend) if r["latency_ms"] <= 2 * max(targets)]  # the front's neighbourhood
    timings.add("front_zoo", time.perf_counter() - zoo_started)
    summary = FrontSummary(
        hardware=backend.name, targets_ms=targets, points=points,
        all_meet_target=all(p["meets_target"] for p in points), repaired=sum(bool(p["repaired"]) for p in points),
        accuracy_source=summaries[0]["accuracy_source"], supernet_val_acc=supernet_val_acc,
        total_steps=int(module.total_step), search_seconds=time.time() - started, warmup_source=warmup_source,
        timings_s=timings.as_dict(), zoo_overlay=[r["model"] for r in zoo_rows], seed=int(cfg.seed),
        data=str(cfg.data.get("name", "")), run_dir=str(run_dir))
    if trainer.is_global_zero:
        tables.write_csv(run_dir / "front.csv", points, FRONT_COLUMNS)
        plot_front(points, zoo_rows, backend.name, str(cfg.data.get("name", "")), run_dir / "front.png")
        write_summary(run_dir, summary)
        _log_front_to_wandb(loggers, summary, points, run_dir)
        print_front(summary)
    return summary.to_dict()


def zoo_on(backend) -> list[dict]:
    """The zoo networks with a published ImageNet top-1, simulated on ``backend``'s NPU at their official resolution
    (graphs cached by the simulator); none for a device (each would be a measurement) or when they cannot be built."""
    if not getattr(backend, "cheap_networks", False) or not hasattr(backend, "simulate_graph"):
        return []
    rows = []
    try:
        for entry in (e for e in ZOO if e.published_top1 is not None):
            graph = load_model_graph(f"timm:{entry.timm_name}", int(entry.input_size))
            rows.append({"model": entry.display, "latency_ms": float(backend.simulate_graph(graph).latency_ms),
                         "published_top1": float(entry.published_top1)})
    except Exception as error:  # noqa: BLE001 - the overlay is an extra: the networks are delivered already
        if is_disk_full(error):
            raise
        warnings.warn(f"front.png: the zoo overlay could not be simulated ({error})")
        return []
    return rows


def plot_front(points: list[dict], zoo_rows: list[dict], hardware: str, data: str, path: Path) -> None:
    """front.png: the delivered networks' accuracy against latency (targets dashed); the zoo on a right axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    shown = sorted((p for p in points if p["val_acc"] is not None), key=lambda p: p["latency_ms"])
    ax.plot([p["latency_ms"] for p in shown], [100 * p["val_acc"] for p in shown], "o-", color="C0",
            label=f"s3nas front (val acc on {data})")
    for p in points:
        ax.axvline(p["target_ms"], color="grey", ls="--", lw=0.8)
        if p["val_acc"] is not None:
            ax.annotate(f"{p['target_ms']:g} ms" + (" (repaired)" if p["repaired"] else ""),
                        (p["latency_ms"], 100 * p["val_acc"]), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"latency on {hardware} (ms)")
    ax.set_ylabel(f"validation accuracy on {data} (%)", color="C0")
    if zoo_rows:
        right = ax.twinx()
        right.scatter([r["latency_ms"] for r in zoo_rows], [r["published_top1"] for r in zoo_rows], color="tab:grey",
                      marker="x", label="zoo (published ImageNet top-1)")
        for r in zoo_rows:
            right.annotate(r["model"], (r["latency_ms"], r["published_top1"]), fontsize=6, color="tab:grey")
        right.set_ylabel("zoo: published ImageNet top-1 (%)", color="tab:grey")
    ax.set_title(f"Accuracy-latency front from one search on {hardware} (dashed: targets)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _log_front_to_wandb(loggers: list, summary: FrontSummary, points: list[dict], run_dir: Path) -> None:
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        try:
            import wandb

            run = logger.experiment
            run.log({"front/table": wandb.Table(columns=list(FRONT_COLUMNS),
                                                data=[[p[c] for c in FRONT_COLUMNS] for p in points]),
                     "front/plot": wandb.Image(str(run_dir / "front.png"))})
            run.summary.update({"front/all_meet_target": summary.all_meet_target, "front/repaired": summary.repaired,
                                "search_seconds": summary.search_seconds})
            for p in points:
                arch = wandb.Artifact(f"arch-{run.id}-{p['dir'].replace('.', 'p')}", type="architecture",
                                      metadata={k: p[k] for k in ("target_ms", "latency_ms", "val_acc", "repaired")})
                arch.add_file(str(run_dir / p["dir"] / "arch.json"))
                run.log_artifact(arch)
        except Exception as error:  # W&B problems never fail a finished search; a full disk is reported
            if is_disk_full(error):
                raise
            warnings.warn(f"W&B logging of the front failed: {error}")


def print_front(summary: FrontSummary) -> None:
    console = Console(width=120)
    front = Table(title=f"Front on {summary.hardware}: one network per target, one search")
    for column in ("target ms", "latency ms", "latency/target", "val acc", "test acc", "repaired", "dir"):
        front.add_column(column, justify="left" if column == "dir" else "right")
    for p in summary.points:
        front.add_row(f"{p.target_ms:.4f}", f"{p.latency_ms:.4f}", f"{p.target_ratio:.3f}",
                      "n/a" if p.val_acc is None else f"{p.val_acc:.4f}",
                      "n/a" if p.test_acc is None else f"{p.test_acc:.4f}", str(p.repaired), p.dir)
    console.print(front)
    console.print(f"search took {summary.search_seconds:.1f} s ({summary.total_steps} steps, warm-up: "
                  f"{summary.warmup_source}); front.csv, front.png and summary.json in {summary.run_dir}")
