"""End of a search: decode, fit to target if needed, evaluate the delivered network, write, show.

The figures written belong to the network in ``arch.json``: its latency is obtained end to end by the
hardware's LatencyBackend (simulated or measured; ``latency_source`` says which), and its accuracy (``val_acc``, ``test_acc``) is that of the plain child network built from
the decoded choice with the supernet's weights, after its BatchNorm statistics were re-estimated on training
batches. ``supernet_val_acc`` is the supernet's own accuracy at the end of the fit (for comparison).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import torchmetrics
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.arch.space import canonical, option_type
from s3nas.latency.backend import NetworkLatency
from s3nas.outputs import SearchSummary, write_summary
from s3nas.runtime.timing import Timings
from s3nas.search.history import option_expansions, option_kernels
from s3nas.search.repair import fit_to_target
from s3nas.utils.io import atomic_write_text, is_disk_full

#: figures a measurement adds about the delivered network (None in a simulated search's summary)
LATENCY_DETAIL_KEYS = ("latency_iqr_ms", "latency_runs", "latency_measurements_ms", "reference_now_ms",
                       "reference_table_ms", "device_drift_pct", "latency_remeasured", "latency_unstable",
                       "reference_start_ms", "device_drift_start_pct", "device_drift_start_noise_pct", "table_scale")
#: on a measured device, a delivered evaluation under this fraction of its target makes the decode try the states the
#: search kept just over the target (the machine is faster than when the search measured them)
RAISE_UNDER = 0.95


# ----------------------------------------------------------------------------------- delivered network
@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, loader, num_batches: int, *, channels_last: bool = False) -> int:
    """Re-estimate every BatchNorm's running statistics as a plain average over ``num_batches`` batches
    (``channels_last``: the images are passed in NHWC, for a model converted to it)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or num_batches <= 0:
        return 0
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    device = next(model.parameters()).device
    model.train()
    seen = 0
    for batch in loader:
        if seen >= num_batches:
            break
        model(_images(batch[0], device, channels_last))
        seen += 1
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    model.eval()
    return seen


@torch.no_grad()
def evaluate_accuracy(model: torch.nn.Module, loader, num_classes: int, *, channels_last: bool = False) -> float:
    """Top-1 accuracy of ``model`` (eval mode) over ``loader`` (torchmetrics; ``channels_last``: NHWC images)."""
    metric = torchmetrics.classification.MulticlassAccuracy(num_classes=num_classes, average="micro")
    device = next(model.parameters()).device
    metric = metric.to(device)
    model.eval()
    for batch in loader:
        metric.update(model(_images(batch[0], device, channels_last)), batch[1].to(device))
    return float(metric.compute())


def _images(images: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    images = images.to(device)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def delivered_child(supernet, raw) -> torch.nn.Module:
    """The plain child network of the raw per-superkernel choice ``raw``, carrying the supernet's weights."""
    supernet.set_choice(raw)
    _, child = supernet.extract_child()
    return child


# ----------------------------------------------------------------------------------- outputs
def finish_search(cfg: DictConfig, *, run_dir: Path, module, datamodule, deploy_space, table, backend,
                  target_ms: float, supernet_val_acc: float, started: float, loggers: list, trainer,
                  timings=None, warmup_source: str | None = None, backends: list | None = None,
                  search_targets_ms: list[float] | None = None, show: bool = True) -> dict:
    """Decode, repair if needed, evaluate the delivered network (accuracy; latency on the backend), write
    arch.json/summary.json. ``backends``: every hardware of ``hardware=[a,b]`` (``backend`` first), whose targets are
    the module's objectives; the network is repaired and evaluated on each. ``search_targets_ms``: the targets of a
    many-target search this network is one of."""
    schedule = cfg.schedule
    timings = timings if timings is not None else Timings()
    decode_started = time.perf_counter()
    supernet = module.supernet
    total_steps = int(module.total_step)
    rank_diff = _rank_threshold_diff(trainer, supernet)
    final_raw = list(supernet.indicator_state())
    final_state_ms = float(table.estimate_ms([canonical(b) for b in final_raw]))
    raw, decode_step, decode = final_raw, total_steps, "final"
    if schedule.decode == "best_feasible" and module.best_feasible is not None:
        # the largest-latency state under the target met during the search
        raw, decode_step, decode = list(module.best_feasible[2]), int(module.best_feasible[1]), "best_feasible"
    options = [canonical(b) for b in raw]

    network_latency = NetworkLatency(backend, deploy_space)  # simulated or measured once, cached per network
    # every hardware the network must meet: (backend, table, target, its network latency). On a measured device the
    # decode, the repair and the delivered figure use one statistic, the delivered network's (backend.evaluate: the
    # median of hardware.noise_repeats measurements), so a network is chosen by the figure that is reported for it
    evaluations: dict = {}
    others = list(zip(backends[1:], module.objectives[1:])) if backends and len(backends) > 1 else []
    constraints = [(backend, table, target_ms, _delivered_latency(backend, network_latency, deploy_space, evaluations))]
    constraints += [(b, o.table, o.target_ms, _delivered_latency(b, NetworkLatency(b, deploy_space), deploy_space,
                                                                  evaluations)) for b, o in others]
    measured_candidates = None
    if decode == "best_feasible" and not all(getattr(b, "cheap_networks", True) for b, *_ in constraints):
        # the search tracked feasibility on the table (and one measurement of each state near the target): when the
        # best state's evaluation (the delivered statistic) is over a target, the next best states it kept are
        # evaluated in turn
        raw, decode_step, measured_candidates = _measured_feasible(module, constraints, raw, decode_step)
        options = [canonical(b) for b in raw]
    decoded_estimated_ms = float(table.estimate_ms(options))
    decoded_latency_ms = constraints[0][3](options)
    final_state_latency_ms = network_latency([canonical(b) for b in final_raw])
    decoded_each_ms = [measure(options) for _, _, _, measure in constraints]
    repair_steps: list[dict] = []
    if schedule.fit_to_target:
        for _ in range(len(constraints)):  # shrinking for one hardware makes the network faster on the others too
            missed = [(t, tgt, m) for _, t, tgt, m in constraints if m(options) > tgt]
            if not missed:
                break
            for missed_table, missed_target, measure in missed:
                result = fit_to_target(raw, supernet.raw_levels(), deploy_space, missed_table, missed_target,
                                       network_ms=measure)
                raw, options = result.raw, result.options
                repair_steps += result.steps
    estimated_ms = float(table.estimate_ms(options))
    spec = deploy_space.arch_spec(list(options))
    # the network in arch.json: its own latency and how it was obtained (on a device, the evaluation that decided)
    delivered = _evaluated(backend, options, spec, evaluations)
    latency_ms, macs = float(delivered.latency_ms), int(archspec_to_graph(spec).macs)
    hardware_targets = None
    if others:  # the same network on every hardware, each obtained by its own backend
        hardware_targets = []
        for (b, t, tgt, _), decoded_ms in zip(constraints, decoded_each_ms):
            on_b = delivered if b is backend else _evaluated(b, options, spec, evaluations)
            hardware_targets.append({"hardware": b.name, "target_ms": float(tgt), "latency_ms": float(on_b.latency_ms),
                                     "latency_source": on_b.source, "meets_target": bool(on_b.meets(tgt)),
                                     "estimated_ms": float(t.estimate_ms(options)), "decoded_latency_ms": decoded_ms})
    timings.add("decode_repair_latency", time.perf_counter() - decode_started)

    # The delivered network's own accuracy: child with the supernet's weights, BN re-estimated.
    datamodule.setup("test")
    nhwc = bool(schedule.channels_last)
    with timings.part("bn_reestimation"):
        child = delivered_child(supernet, raw)
        if nhwc:
            child = child.to(memory_format=torch.channels_last)
        recal_batches = recalibrate_batchnorm(child, datamodule.train_dataloader(),
                                              int(schedule.bn_recalibration_batches), channels_last=nhwc)
    with timings.part("evaluation"):
        val_acc = evaluate_accuracy(child, datamodule.val_dataloader(), datamodule.num_classes, channels_last=nhwc)
        test_loader = datamodule.test_dataloader() if hasattr(datamodule, "test_dataloader") else None
        test_acc = evaluate_accuracy(child, test_loader, datamodule.num_classes, channels_last=nhwc) \
            if test_loader is not None else None
    search_seconds = time.time() - started

    summary = {
        "target_ms": target_ms,
        "latency_ms": latency_ms,  # the network in arch.json, on the backend (simulated or measured)
        "latency_source": delivered.source,
        "latency_noise_pct": delivered.noise_pct,  # repeat-measurement noise; None for an exact simulation
        "estimated_ms": estimated_ms,  # table sum of the same network
        "target_ratio": latency_ms / target_ms,
        "latency_gap_ms": abs(latency_ms - target_ms),
        # every hardware's target (hardware=[a,b]: hardware_targets has each)
        "meets_target": delivered.meets(target_ms) and all(h["meets_target"] for h in hardware_targets or []),
        "meets_target_within_noise": delivered.meets_within_noise(target_ms),
        "val_acc": val_acc,  # the delivered child (supernet weights, BN re-estimated), val split
        "test_acc": test_acc,  # same network, test split
        "supernet_val_acc": supernet_val_acc,  # the supernet at the end of the fit
        "accuracy_source": f"weight sharing: child of the supernet, BN re-estimated on {recal_batches} training "
                           "batches, no retraining",
        "accuracy_dtype": "fp32",  # the supernet's child is evaluated in float (train.py quantize=int8 for INT8)
        "hardware_dtype": str(backend.data_dtype),
        "search_seconds": search_seconds,
        "world_size": int(trainer.world_size),
        "rank_threshold_max_diff": rank_diff,  # 0.0: every process ended with rank 0's thresholds
        "hardware": backend.name,
        "lambda1": float(cfg.loss.lambda1),
        "lambda2": float(cfg.loss.lambda2),
        "seed": int(cfg.seed),
        "data": str(cfg.data.get("name", "")),
        "schedule": str(schedule.name),
        "total_steps": total_steps,
        "decode": decode,
        "line_searches": list(getattr(module, "line_searches", [])),  # target crossings landed on (step, ms)
        "decode_step": decode_step,
        "final_state_estimated_ms": final_state_ms,  # where the search itself ended (table sum)
        "final_state_latency_ms": final_state_latency_ms,  # the same state on the backend
        "decoded_estimated_ms": decoded_estimated_ms,
        "decoded_latency_ms": decoded_latency_ms,  # the search's own result on the backend, before any repair
        "repaired": bool(repair_steps),
        "repair_steps": repair_steps,
        "lut_min_ms": float(table.min_ms),
        "lut_max_ms": float(table.max_ms),
        "num_blocks": len(spec.blocks),
        "macs": macs,
        "arch": codec.encode(spec),
        "run_dir": str(run_dir),
        "num_threads": int(torch.get_num_threads()),
        "warmup_source": warmup_source,
        "timings_s": timings.as_dict(),  # wall time per part (s3nas.runtime.timing); outputs written after
        "hardware_targets": hardware_targets,
        "search_targets_ms": list(search_targets_ms) if search_targets_ms else None,
        "measured_candidates": measured_candidates,
        **_measured_states(module.objectives),
    }
    for key in LATENCY_DETAIL_KEYS:  # a measurement's figures (None for a simulation)
        summary[key] = delivered.details.get(key)
    summary.update(prediction_fields(backend, spec, target_ms, table))
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    typed = SearchSummary.from_dict(summary)  # the schema (s3nas.outputs): a missing or stray key fails here
    summary = typed.to_dict()
    if trainer.is_global_zero:
        spec = _with_meta(spec, summary)
        # summary.json first: an arch.json (which carries the search's figures) exists only once its summary
        # does, so a write that fails (a full disk) never leaves an arch.json claiming a finished search
        write_summary(run_dir, typed)
        codec.save_json(spec, run_dir / "arch.json")
        _log_to_wandb(loggers, summary, run_dir, table)
        if show:
            print_summary(summary, spec, options, table, deploy_space)
    return summary


def _measured_states(objectives) -> dict:
    """Networks the search measured near its target(s), on every measured device it searched for (hardware=[a,b]
    may list one), and the largest noise guard they were raised by; None for both where none was measured."""
    measured = [o.state_latency for o in objectives if hasattr(o.state_latency, "guard")]
    if not measured:
        return {"measured_states": None, "measured_states_guard_pct": None}
    networks = {id(m.network): m.measured for m in measured}  # one cache per backend
    return {"measured_states": sum(networks.values()),
            "measured_states_guard_pct": 100.0 * max(float(m.guard) for m in measured)}


def _delivered_latency(backend, network_latency, space, evaluations: dict):
    """options -> ms on ``backend`` as the delivered network's latency is obtained: ``network_latency`` (a
    simulation) where one network is cheap, else ``backend.evaluate`` (kept in ``evaluations``)."""
    if getattr(backend, "cheap_networks", True):
        return network_latency

    def evaluated_ms(options) -> float:
        return float(_evaluated(backend, options, space.arch_spec(list(options)), evaluations).latency_ms)

    return evaluated_ms


def _evaluated(backend, options, spec, evaluations: dict):
    """``backend.evaluate(spec)``, once per (backend, network) of this decode."""
    key = (id(backend), tuple(tuple(o) for o in options))
    if key not in evaluations:
        evaluations[key] = backend.evaluate(spec)
    return evaluations[key]


def _measured_feasible(module, constraints: list, raw: list, step: int) -> tuple[list, int, list[dict] | None]:
    """The best feasible state the search visited that also meets every target end to end (evaluated as the
    delivered network is), trying the bank's ladder of candidates best first when it does not; when it meets under
    RAISE_UNDER of a target (the machine faster than when the search measured), the states the search kept just over
    the target are evaluated nearest first, and the largest that meets is delivered. (raw, step, what was tried), or
    the best state unchanged when none meets."""
    def measure(state_raw):
        state = [canonical(b) for b in state_raw]
        return [m(state) for _, _, _, m in constraints]

    def meets(latencies) -> bool:
        return all(ms <= tgt for ms, (_, _, tgt, _) in zip(latencies, constraints))

    first = measure(raw)
    networks = {_network_key(raw)}
    tried = [{"step": int(step), "latency_ms": first, "meets_target": meets(first)}]
    if meets(first):
        if not any(ms < RAISE_UNDER * tgt for ms, (_, _, tgt, _) in zip(first, constraints)):
            return raw, step, None
        chosen = (sum(ms / tgt for ms, (_, _, tgt, _) in zip(first, constraints)), raw, step)
        for _, above_step, above_raw in module.bank.above:  # nearest over the target first
            if _network_key(above_raw) in networks:
                continue
            networks.add(_network_key(above_raw))
            latencies = measure(above_raw)
            tried.append({"step": int(above_step), "latency_ms": latencies, "meets_target": meets(latencies)})
            if not meets(latencies):
                break
            closeness = sum(ms / tgt for ms, (_, _, tgt, _) in zip(latencies, constraints))
            if closeness > chosen[0]:  # the largest that meets, by its evaluation (not the order of the walk)
                chosen = (closeness, list(above_raw), int(above_step))
        return chosen[1], chosen[2], tried
    for _, candidate_step, candidate_raw in module.bank.candidates:
        if _network_key(candidate_raw) in networks:  # another state of a network already tried
            continue
        networks.add(_network_key(candidate_raw))
        latencies = measure(candidate_raw)
        tried.append({"step": int(candidate_step), "latency_ms": latencies, "meets_target": meets(latencies)})
        if meets(latencies):
            return list(candidate_raw), int(candidate_step), tried
    return raw, step, tried


def _network_key(state_raw) -> tuple:
    return tuple(tuple(canonical(b)) for b in state_raw)


def prediction_fields(backend, spec, target_ms: float, table) -> dict:
    """The backend model's prediction of the delivered network with its interval, next to the measurement (None
    where the backend has no model), whether the interval's upper end meets the target, the latency model the
    search used and the device time the run spent."""
    prediction = backend.predict(spec)
    spent = getattr(backend, "device_seconds", None)
    fields = {"latency_model": str(table.meta.get("method", "")) or None,
              "device_seconds": float(spent) if spent is not None else None,
              "conservative": bool(table.meta.get("conservative")),
              "latency_predicted_ms": None, "latency_interval_ms": None, "latency_interval_level": None,
              "latency_prediction": None, "meets_target_upper_bound": None}
    if prediction is not None:
        fields.update(latency_predicted_ms=float(prediction.latency_ms),
                      latency_interval_ms=[float(prediction.low_ms), float(prediction.high_ms)],
                      latency_interval_level=float(prediction.level), latency_prediction=prediction.how,
                      meets_target_upper_bound=bool(prediction.high_ms <= target_ms))
    return fields


def _rank_threshold_diff(trainer, supernet) -> float:
    """Largest |threshold - rank 0's threshold| over all processes (0.0 on one process)."""
    with torch.no_grad():
        flat = torch.cat([p.detach().flatten() for p in supernet.threshold_parameters()])
    if trainer.world_size <= 1:
        return 0.0
    reference = trainer.strategy.broadcast(flat.clone(), src=0)
    diff = (flat - reference).abs().max()
    return float(trainer.strategy.reduce(diff, reduce_op="max"))


def _with_meta(spec, summary: dict):
    keys = ("target_ms", "estimated_ms", "latency_ms", "val_acc", "test_acc", "supernet_val_acc",
            "accuracy_source", "latency_source", "hardware", "lambda1", "lambda2", "repaired", "data",
            "latency_predicted_ms", "latency_interval_ms", "latency_interval_level", "latency_prediction")
    return replace(spec, meta={**dict(spec.meta or {}), "search": {k: summary[k] for k in keys}})


def _log_to_wandb(loggers: list, summary: dict, run_dir: Path, table) -> None:
    """Summary metrics + arch.json and the latency table as artifacts (W&B loggers only)."""
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        try:
            import wandb

            run = logger.experiment
            run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
            arch = wandb.Artifact(f"arch-{run.id}", type="architecture", metadata={
                k: summary[k] for k in ("target_ms", "estimated_ms", "latency_ms", "val_acc", "hardware")})
            arch.add_file(str(run_dir / "arch.json"))
            run.log_artifact(arch)
            lut_path = run_dir / "latency_table.json"
            atomic_write_text(lut_path, json.dumps(table.to_dict()))
            lut = wandb.Artifact(f"latency-table-{summary['hardware']}-{str(table.key)[:12]}", type="latency-table")
            lut.add_file(str(lut_path))
            run.log_artifact(lut)
        except Exception as error:  # W&B problems never fail a finished search; a full disk is reported
            if is_disk_full(error):
                raise
            warnings.warn(f"W&B logging of the results failed: {error}")


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_summary(summary: dict, spec, options, table, space=None) -> None:
    """Rich table block by block, then estimated vs simulated vs target and the run dir."""
    console = Console(width=120)
    blocks = Table(title="Searched architecture (deployment shape)", show_lines=False)
    for column in ("block", "stage", "type", "stride", "out", "kernels", "expansions", "LUT ms"):
        blocks.add_column(column, justify="right" if column in ("block", "stride", "out", "LUT ms") else "left")
    for i, option in enumerate(options):
        position = space.positions[i] if space is not None else None
        btype = str(getattr(position, "type", ""))
        if btype == "choice":  # the type it chose
            btype = option_type(option, "skip") if option else "skip"
        blocks.add_row(str(i), str(getattr(position, "stage", "")), btype,
                       str(getattr(position, "stride", "")), str(getattr(position, "out_channels", "")),
                       option_kernels(option), option_expansions(option),
                       f"{table.block_ms(i, option):.4f}" if option else "0")
    console.print(blocks)
    latency = Table(title="Delivered network on " + summary["hardware"])
    kind = "measured" if summary["latency_source"].startswith("measurement") else "latency"
    for column in ("target ms", "estimated ms (LUT)", f"{kind} ms", f"{kind}/target", "val acc", "test acc",
                   "repaired"):
        latency.add_column(column, justify="right")
    latency.add_row(f"{summary['target_ms']:.4f}", f"{summary['estimated_ms']:.4f}", f"{summary['latency_ms']:.4f}",
                    f"{summary['target_ratio']:.3f}", _fmt(summary["val_acc"], ".4f"), _fmt(summary["test_acc"], ".4f"),
                    str(summary["repaired"]))
    console.print(latency)
    for entry in summary.get("hardware_targets") or []:
        console.print(f"on {entry['hardware']}: {entry['latency_ms']:.4f} ms for a target of {entry['target_ms']:.4f} ms "
                      f"({'meets' if entry['meets_target'] else 'misses'} it; {entry['latency_source']})")
    if not summary["meets_target"]:
        console.print(f"[bold yellow]warning:[/] the delivered network misses the target ({summary['latency_ms']:.4f} "
                      f"> {summary['target_ms']:.4f} ms); schedule.fit_to_target=true would shrink it")
    if summary.get("latency_interval_ms") and summary.get("latency_interval_level", 1.0) < 1.0:
        low, high = summary["latency_interval_ms"]
        console.print(f"predicted {summary['latency_predicted_ms']:.4f} ms, {summary['latency_interval_level']:.0%} "
                      f"interval [{low:.4f}, {high:.4f}] ms ({summary['latency_prediction']}); upper end "
                      f"{'meets' if summary['meets_target_upper_bound'] else 'misses'} the target"
                      + ("; the search used the upper end (hardware.conservative)" if summary.get("conservative")
                         else ""))
    if summary.get("device_seconds") is not None:
        console.print(f"device time: {summary['device_seconds']:.1f} s on {summary['hardware']} "
                      f"(latency model: {summary['latency_model']})")
    if str(summary.get("warmup_source") or "").startswith("cache"):
        console.print(f"warm-up: {summary['warmup_source']}")
    console.print(f"search took {summary['search_seconds']:.1f} s; arch: {summary['arch']}")
    console.print(f"run dir: {summary['run_dir']}")
