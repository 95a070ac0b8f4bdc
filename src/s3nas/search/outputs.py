"""End of a search: decode, fit to target if needed, simulate end to end, write and show the results."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

from omegaconf import DictConfig

from s3nas.search.history import option_expansions, option_kernels


def finish_search(cfg: DictConfig, *, run_dir: Path, supernet, deploy_space, table, profile, target_ms: float,
                  val_acc: float, started: float, loggers: list, trainer, total_steps: int,
                  best_feasible: tuple | None = None) -> dict:
    """Decode the supernet, check it on the simulator, write arch.json/summary.json, log, print."""
    import simulator
    from s3nas.arch import codec
    from s3nas.arch.graph import archspec_to_graph
    from s3nas.search.repair import fit_to_target
    from s3nas.utils.io import atomic_write_json

    options = [tuple(o) for o in supernet.chosen_options()]
    final_state_ms = float(table.estimate_ms(options))
    decode_step = int(total_steps)
    if best_feasible is not None:
        # schedule.decode=best_feasible: the largest-latency state under the target met during the search
        options, decode_step = [tuple(o) for o in best_feasible[2]], int(best_feasible[1])
    decoded_estimated_ms = float(table.estimate_ms(options))

    def simulate_ms(opts) -> float:
        return float(simulator.simulate(archspec_to_graph(deploy_space.arch_spec(list(opts))), profile).latency_ms)

    decoded_simulated_ms = simulate_ms(options)
    repair_steps: list[dict] = []
    if decoded_simulated_ms > target_ms and cfg.schedule.get("fit_to_target", True):
        result = fit_to_target(options, deploy_space, table, target_ms, simulate_ms=simulate_ms)
        options, repair_steps = result.options, result.steps
    estimated_ms = float(table.estimate_ms(options))
    spec = deploy_space.arch_spec(list(options))
    report = simulator.simulate(archspec_to_graph(spec), profile)
    simulated_ms = float(report.latency_ms)
    search_seconds = time.time() - started

    summary = {
        "target_ms": target_ms,
        "estimated_ms": estimated_ms,
        "simulated_ms": simulated_ms,
        "latency_gap_ms": abs(simulated_ms - target_ms),
        "target_ratio": simulated_ms / target_ms,
        "meets_target": simulated_ms <= target_ms,
        "val_acc": val_acc,  # supernet with its final hard indicators (weight sharing, no retraining)
        "search_seconds": search_seconds,
        "hardware": profile.name,
        "lambda1": float(cfg.loss.lambda1),
        "lambda2": float(cfg.loss.lambda2),
        "seed": int(cfg.seed),
        "data": str(cfg.data.get("name", "")),
        "schedule": str(cfg.schedule.get("name", "")),
        "total_steps": int(total_steps),
        "decode": "best_feasible" if best_feasible is not None else "final",
        "decode_step": decode_step,
        "final_state_estimated_ms": final_state_ms,
        "decoded_estimated_ms": decoded_estimated_ms,
        "decoded_simulated_ms": decoded_simulated_ms,
        "repaired": bool(repair_steps),
        "repair_steps": repair_steps,
        "lut_min_ms": float(table.min_ms),
        "lut_max_ms": float(table.max_ms),
        "num_blocks": len(spec.blocks),
        "macs": int(report.macs),
        "arch": codec.encode(spec),
        "run_dir": str(run_dir),
    }
    spec = _with_meta(spec, summary)
    codec.save_json(spec, run_dir / "arch.json")
    atomic_write_json(run_dir / "summary.json", summary)
    _log_to_wandb(loggers, summary, run_dir, table)
    print_summary(summary, spec, options, table, deploy_space)
    return summary


def _with_meta(spec, summary: dict):
    from dataclasses import replace

    keys = ("target_ms", "estimated_ms", "simulated_ms", "val_acc", "hardware", "lambda1", "lambda2",
            "repaired", "data")
    return replace(spec, meta={**dict(spec.meta or {}), "search": {k: summary[k] for k in keys}})


def _log_to_wandb(loggers: list, summary: dict, run_dir: Path, table) -> None:
    """Summary metrics + arch.json and the latency table as artifacts (W&B loggers only)."""
    from s3nas.utils.io import atomic_write_text

    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        try:
            import wandb

            run = logger.experiment
            run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
            arch = wandb.Artifact(f"arch-{run.id}", type="architecture", metadata={
                k: summary[k] for k in ("target_ms", "estimated_ms", "simulated_ms", "val_acc", "hardware")})
            arch.add_file(str(run_dir / "arch.json"))
            run.log_artifact(arch)
            lut_path = run_dir / "latency_table.json"
            atomic_write_text(lut_path, json.dumps(table.to_dict()))
            lut = wandb.Artifact(f"latency-table-{summary['hardware']}-{str(table.key)[:12]}", type="latency-table")
            lut.add_file(str(lut_path))
            run.log_artifact(lut)
        except Exception as error:  # W&B problems never fail a finished search
            warnings.warn(f"W&B logging of the results failed: {error}")


def print_summary(summary: dict, spec, options, table, space=None) -> None:
    """Rich table block by block, then estimated vs simulated vs target and the run dir."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    blocks = Table(title="Searched architecture (deployment shape)", show_lines=False)
    for column in ("block", "stage", "type", "stride", "out", "kernels", "expansions", "LUT ms"):
        blocks.add_column(column, justify="right" if column in ("block", "stride", "out", "LUT ms") else "left")
    for i, option in enumerate(options):
        position = space.positions[i] if space is not None else None
        blocks.add_row(str(i), str(getattr(position, "stage", "")), str(getattr(position, "type", "")),
                       str(getattr(position, "stride", "")), str(getattr(position, "out_channels", "")),
                       option_kernels(option), option_expansions(option), f"{table.block_ms(i, option):.4f}")
    console.print(blocks)
    latency = Table(title="Latency on " + summary["hardware"])
    for column in ("target ms", "estimated ms (LUT)", "simulated ms", "simulated/target", "val acc", "repaired"):
        latency.add_column(column, justify="right")
    latency.add_row(f"{summary['target_ms']:.4f}", f"{summary['estimated_ms']:.4f}", f"{summary['simulated_ms']:.4f}",
                    f"{summary['target_ratio']:.3f}", f"{summary['val_acc']:.4f}", str(summary["repaired"]))
    console.print(latency)
    console.print(f"search took {summary['search_seconds']:.1f} s; arch: {summary['arch']}")
    console.print(f"run dir: {summary['run_dir']}")

