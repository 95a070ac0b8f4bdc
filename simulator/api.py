"""``simulate(graph, profile)``: plan, run the event engine, build the report."""

from __future__ import annotations

from .costs import effective_macs
from .engine import plan_graph, run_events
from .graph import Graph
from .hardware import HardwareProfile, load_profile
from .report import LayerReport, Report

SIMULATOR_VERSION = "1.2.0"
#: Bumped whenever a cost rule changes the cycles or bytes of some graph on some profile (not for pure
#: refactors); caches of simulated figures (s3nas' latency tables) key on it. 2: MidapSim's channel padding
#: (16 for maps only convs read), GEMM only for <= 3 input channels, exact align-stage bubbles, residual
#: operand requested column group by column group. 3: the network input read in FMEM-bank fragments.
#: 4: the GEMM rule also for an isolated block's input (MidapSim's HEAD layers).
COST_MODEL_VERSION = 4


def simulate(graph: Graph, profile: HardwareProfile | str, *, input_in_dram: bool = True,
             trace: bool = False) -> Report:
    """Simulate one inference (batch 1) of ``graph`` on ``profile``; returns a Report."""
    if not isinstance(profile, HardwareProfile):
        profile = load_profile(profile)
    p = profile
    plans = plan_graph(graph, p, input_in_dram=input_in_dram)
    tl = run_events(plans, p, trace=trace)
    peak = p.peak_macs_per_cycle
    bpc = p.dram_bytes_per_cycle
    ms_per_cycle = 1e3 / p.clock_hz
    layers: list[LayerReport] = []
    tot_compute = tot_w = tot_f = tot_wr = tot_macs = tot_eff = 0
    for li, plan in enumerate(plans):
        layer = plan.layer
        cycles = tl.layer_end[li] - tl.layer_start[li]
        compute = (plan.compute_cycles + plan.pipeline_cycles) if plan.module else 0
        w_bytes = tl.weight_read_bytes[li]
        f_bytes = tl.feature_read_bytes[li]
        bus_bytes = w_bytes + f_bytes + (plan.write_bytes if p.dram_writes_use_bus else 0)
        macs = layer.macs
        eff_macs = effective_macs(layer)  # padding taps excluded: keeps the roofline a true lower bound
        compute_bound = -(-eff_macs // peak)
        memory_bound = 0 if bpc == float("inf") else -(-bus_bytes // 1) / bpc
        memory_bound = int(-(-memory_bound // 1))
        roof = max(compute_bound, memory_bound)
        bound = "free" if not plan.module else ("memory" if memory_bound > compute_bound else "compute")
        layers.append(LayerReport(
            name=layer.name, op=layer.op, module=plan.module, out_shape=tuple(layer.out_shape),
            start_cycles=tl.layer_start[li], cycles=cycles, compute_cycles=compute,
            stall_cycles=cycles - compute, macs=macs,
            mac_utilisation=eff_macs / (cycles * peak) if cycles else 0.0,
            dram_read_weight_bytes=w_bytes, dram_read_feature_bytes=f_bytes, dram_write_bytes=plan.write_bytes,
            dram_busy_fraction=tl.layer_bus_busy[li] / cycles if cycles else 0.0,
            roofline_cycles=roof, bound=bound, latency_ms=cycles * ms_per_cycle, tiles=plan.n_tiles))
        tot_compute += compute
        tot_w += w_bytes
        tot_f += f_bytes
        tot_wr += plan.write_bytes
        tot_macs += macs
        tot_eff += eff_macs
    total = tl.end_cycles
    bus_bytes = tot_w + tot_f + (tot_wr if p.dram_writes_use_bus else 0)
    compute_bound = -(-tot_eff // peak)
    memory_bound = 0 if bpc == float("inf") else int(-(-(bus_bytes / bpc) // 1))
    return Report(
        graph_name=graph.name, profile_name=p.name, clock_hz=p.clock_hz, total_cycles=total,
        compute_cycles=tot_compute, stall_cycles=total - tot_compute, macs=tot_macs,
        dram_read_weight_bytes=tot_w, dram_read_feature_bytes=tot_f, dram_write_bytes=tot_wr,
        dram_busy_fraction=tl.bus_busy_cycles / total if total else 0.0,
        roofline_cycles=max(compute_bound, memory_bound),
        bound="memory" if memory_bound > compute_bound else "compute",
        mac_utilisation=tot_eff / (total * peak) if total else 0.0,
        layers=layers, simulator_version=SIMULATOR_VERSION, trace_events=tl.trace_events)
