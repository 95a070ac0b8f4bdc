"""`python -m s3nas.baselines.zoo`: the networks a user would otherwise pick, timed on every simulated NPU.

EfficientNet-B0..B4, EfficientNet-lite0..4, EfficientNet-EdgeTPU-S/M/L, MobileNetV2, MobileNetV3-Large,
MixNet-S/M/L, ResNet-50 and Inception V3 (timm definitions, no weights), each at its official resolution. Each
network's graph is built once (timm model -> torch frontend; the simulator's graph cache keeps it for the next
run) and simulated on every profile in the same process. Per (model, hardware): simulated latency and cycles,
weights (BN folded, as the NPU stores them), MACs, DRAM traffic and bound type from the simulator report, and
the network's published ImageNet top-1 with its source (empty where none is stated). S3NAS's own MIDAP
latencies (paper Table 6) sit next to ours for comparison. Writes ``zoo.csv``, ``zoo.md``, ``summary.json``,
``pareto_<hardware>.png`` (``s3nas.baselines.pareto``) and a W&B table + plot.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Optional

import simulator
from s3nas.baselines.pareto import load_overlays, log_wandb_plots, overlay_points, plot_pareto
from s3nas.errors import ConfigError
from s3nas.latency.simulated import SimulatorBackend
from s3nas.outputs import ZooSummary, write_summary
from s3nas.runtime.entry import run
from s3nas.runtime.loggers import build_loggers
from s3nas.utils import tables
from s3nas.utils.io import atomic_write_text
from simulator.loaders import load_model_graph

from s3nas.arch.zoo_catalog import (EDGETPU, EFFNET, EFFNET_B0, INCEPTION, LITE, LITE_S3NAS,  # noqa: E402,F401
                                     MBV2, MBV3, MIXNET, RESNET, ZOO, ZOO_BY_KEY, ZooEntry)

#: zoo.csv columns, in order
COLUMNS = ("model", "timm_name", "hardware", "input_size", "latency_ms", "cycles", "params_m", "macs_g",
           "dram_read_mb", "dram_write_mb", "dram_traffic_mb", "bound", "mac_utilisation", "published_top1",
           "top1_source", "paper_midap_ms", "latency_source")


def select_entries(keys: Iterable[str]) -> list[ZooEntry]:
    """Zoo entries by key (all when empty); ConfigError naming the unknown ones and the accepted keys."""
    keys = [str(k) for k in keys]
    unknown = [k for k in keys if k not in ZOO_BY_KEY]
    if unknown:
        raise ConfigError(f"models: unknown zoo model(s) {', '.join(unknown)}; use any of {', '.join(ZOO_BY_KEY)}")
    return [ZOO_BY_KEY[k] for k in keys] if keys else list(ZOO)


def load_profiles(names: Iterable[str], key: str = "profiles") -> list[Any]:
    """Simulator backends (s3nas.latency.simulated) of profiles by name or YAML path (every known profile when
    empty); ConfigError otherwise. The zoo reports simulator figures (DRAM traffic, utilisation) per profile."""
    names = [str(n) for n in names] or list(simulator.list_profiles())
    profiles = []
    for name in names:
        try:
            profiles.append(SimulatorBackend(hardware_profile=simulator.load_profile(name)))
        except Exception as error:  # noqa: BLE001 - unknown name, bad file
            raise ConfigError(f"{key}: unknown hardware '{name}' ({' '.join(str(error).split()) or type(error).__name__}); "
                              f"use any of {', '.join(simulator.list_profiles())} or a profile YAML path") from None
    return profiles


def build_graph(entry: ZooEntry, input_size: Optional[int] = None, use_cache: bool = True) -> Any:
    """The simulator graph of a zoo network at its official resolution (or ``input_size``), 1000 classes."""
    return load_model_graph(f"timm:{entry.timm_name}", int(input_size or entry.input_size), use_cache=use_cache)


def row_of(entry: ZooEntry, graph: Any, report: Any) -> dict:
    """One zoo.csv row from a simulator report."""
    mb = 1e6
    return {
        "model": entry.display, "timm_name": entry.timm_name, "hardware": report.profile_name,
        "input_size": entry.input_size,
        "latency_ms": float(report.latency_ms), "cycles": int(report.total_cycles),
        "params_m": sum(layer.weight_count for layer in graph) / 1e6, "macs_g": report.macs / 1e9,
        "dram_read_mb": (report.dram_read_weight_bytes + report.dram_read_feature_bytes) / mb,
        "dram_write_mb": report.dram_write_bytes / mb,
        "dram_traffic_mb": (report.dram_read_weight_bytes + report.dram_read_feature_bytes
                            + report.dram_write_bytes) / mb,
        "bound": report.bound, "mac_utilisation": float(report.mac_utilisation),
        "published_top1": entry.published_top1, "top1_source": entry.top1_source if entry.published_top1 else
        "not stated (no source found)",
        "paper_midap_ms": entry.paper_midap_ms if report.profile_name == "midap" else None,
        "latency_source": f"simulation ({report.profile_name}, {entry.input_size}x{entry.input_size}, batch 1, "
                          f"simulator {report.simulator_version})",
    }


def zoo_table(entries: Iterable[ZooEntry], profiles: Iterable[Any], *, use_cache: bool = True,
              progress: bool = False) -> tuple[list[dict], dict]:
    """Rows (one per model and profile) and timings: each graph built once, simulated on every profile."""
    profiles = list(profiles)
    rows: list[dict] = []
    timings = {"build_seconds": 0.0, "simulate_seconds": 0.0, "per_model": {}}
    for entry in entries:
        started = time.perf_counter()
        graph = build_graph(entry, use_cache=use_cache)
        built = time.perf_counter()
        for profile in profiles:
            rows.append(row_of(entry, graph, profile.simulate_graph(graph)))
        done = time.perf_counter()
        timings["build_seconds"] += built - started
        timings["simulate_seconds"] += done - built
        timings["per_model"][entry.key] = {"build_s": built - started, "simulate_s": done - built}
        if progress:
            print(f"  {entry.display:<24} {entry.input_size}px  graph {built - started:5.2f} s  "
                  f"{len(profiles)} simulations {done - built:5.2f} s")
    return rows, timings


def check_order(rows: list[dict], hardware: str = "midap") -> dict:
    """The paper's latency order on ``hardware``: B1<B2<B3<B4 and lite2<lite3<lite4 (True/False/None if absent)."""
    latency = {r["timm_name"]: r["latency_ms"] for r in rows if r["hardware"] == hardware}

    def increasing(names: list[str]) -> Optional[bool]:
        if not all(n in latency for n in names):
            return None
        return all(latency[a] < latency[b] for a, b in zip(names, names[1:]))

    return {"efficientnet_b1_to_b4": increasing([f"efficientnet_b{i}" for i in range(1, 5)]),
            "efficientnet_lite2_to_lite4": increasing([f"efficientnet_lite{i}" for i in range(2, 5)])}


def markdown_table(rows: list[dict]) -> str:
    """The table as markdown, one block per hardware profile."""
    lines: list[str] = []
    for hardware in dict.fromkeys(r["hardware"] for r in rows):
        table = tables.markdown_table(
            sorted((r for r in rows if r["hardware"] == hardware), key=lambda r: r["latency_ms"]),
            ["model", "input_size", "latency_ms", "paper_midap_ms", "params_m", "macs_g", "dram_traffic_mb", "bound",
             "published_top1"],
            {"latency_ms": ".3f", "paper_midap_ms": ".2f", "params_m": ".2f", "macs_g": ".2f",
             "dram_traffic_mb": ".1f", "published_top1": "g"},
            headers=["model", "input", "latency ms", "paper ms (MIDAP)", "params M", "MACs G", "DRAM MB", "bound",
                     "published top-1"])
        lines += [f"### {hardware}", "", table]  # the table ends in a newline: an empty line after it
    sources = dict.fromkeys((r["model"], r["top1_source"]) for r in rows)
    lines += ["Published top-1 sources:", ""] + [f"- {model}: {source}" for model, source in sources]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    """zoo.csv: the COLUMNS of every row (None empty)."""
    return tables.csv_text(rows, COLUMNS, extras="ignore")


# ----------------------------------------------------------------------------------------- entry point
def check(cfg: Any) -> dict:
    """Every user error before anything is written."""
    entries = select_entries(cfg.models)
    profiles = load_profiles(cfg.profiles)
    overlays = load_overlays(cfg.overlay)
    return {"entries": entries, "profiles": profiles, "overlays": overlays}


def main(cfg: Any, checked: Optional[dict] = None) -> dict:
    """Hydra task: build, simulate, write zoo.csv / zoo.md / summary.json / Pareto PNGs, log to W&B."""
    started = time.perf_counter()
    checked = checked or check(cfg)
    run_dir = Path(str(cfg.paths.output_dir))
    entries, profiles = checked["entries"], checked["profiles"]
    print(f"zoo: {len(entries)} networks x {len(profiles)} hardware profiles "
          f"({', '.join(p.name for p in profiles)})")
    rows, timings = zoo_table(entries, profiles, use_cache=bool(cfg.graph_cache), progress=True)
    table_seconds = time.perf_counter() - started
    points = overlay_points(checked["overlays"], profiles)
    atomic_write_text(run_dir / "zoo.csv", csv_text(rows))
    markdown = markdown_table(rows)
    atomic_write_text(run_dir / "zoo.md", markdown)
    plots = {}
    if cfg.plot:
        for profile in profiles:
            path = run_dir / f"pareto_{profile.name}.png"
            plot_pareto(rows, points, profile.name, path)
            plots[profile.name] = str(path)
    typed = ZooSummary(rows=len(rows), models=[e.key for e in entries], hardware=[p.name for p in profiles],
                       table_seconds=table_seconds, build_seconds=timings["build_seconds"],
                       simulate_seconds=timings["simulate_seconds"], per_model_seconds=timings["per_model"],
                       order_midap=check_order(rows, "midap"), graph_cache=bool(cfg.graph_cache), plots=plots,
                       overlay=points, run_dir=str(run_dir))
    write_summary(run_dir, typed)
    summary = typed.to_dict()
    loggers = build_loggers(cfg)
    log_wandb_plots(loggers, rows, points, plots, summary)
    print(markdown)
    print(f"zoo: {len(rows)} rows in {table_seconds:.1f} s (graphs {timings['build_seconds']:.1f} s, simulations "
          f"{timings['simulate_seconds']:.1f} s); run dir: {run_dir}")
    return summary


def cli() -> None:
    """Console script ``s3nas-zoo`` (also ``python -m s3nas.baselines.zoo``)."""
    run(main, "zoo", check=check)


if __name__ == "__main__":
    cli()
