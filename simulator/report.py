"""Simulation reports: per-layer and total cycles, traffic, utilisation and roofline; table/CSV/JSON/trace."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field


@dataclass
class LayerReport:
    """One layer's timing and traffic (cycles at the profile clock, bytes in DRAM)."""

    name: str
    op: str
    module: str  # compute module: conv | dw | reduction | "" (free)
    out_shape: tuple[int, int, int]
    start_cycles: int
    cycles: int
    compute_cycles: int  # tile compute + pipeline depth
    stall_cycles: int  # cycles - compute_cycles (waiting for DRAM)
    macs: int
    mac_utilisation: float  # MACs on real inputs (padding taps excluded) / (cycles * peak MACs per cycle)
    dram_read_weight_bytes: int
    dram_read_feature_bytes: int
    dram_write_bytes: int
    dram_busy_fraction: float  # bus busy cycles in this layer's window / cycles
    roofline_cycles: int  # max(MACs on real inputs / peak, bus bytes / bandwidth)
    bound: str  # "compute" | "memory" | "free"
    latency_ms: float
    tiles: int

    @property
    def dram_read_bytes(self) -> int:
        return self.dram_read_weight_bytes + self.dram_read_feature_bytes


@dataclass
class Report:
    """Result of simulating one graph on one profile."""

    graph_name: str
    profile_name: str
    clock_hz: float
    total_cycles: int
    compute_cycles: int
    stall_cycles: int
    macs: int
    dram_read_weight_bytes: int
    dram_read_feature_bytes: int
    dram_write_bytes: int
    dram_busy_fraction: float
    roofline_cycles: int
    bound: str
    mac_utilisation: float
    layers: list[LayerReport] = field(default_factory=list)
    simulator_version: str = ""
    trace_events: list[dict] | None = field(default=None, repr=False)

    @property
    def latency_ms(self) -> float:
        return self.total_cycles / self.clock_hz * 1e3

    @property
    def dram_read_bytes(self) -> int:
        return self.dram_read_weight_bytes + self.dram_read_feature_bytes

    def to_dict(self, layers: bool = True) -> dict:
        """JSON-able dict: total_cycles, latency_ms, dram_read_bytes, macs, layers, ..."""
        out = {
            "graph": self.graph_name,
            "hardware": self.profile_name,
            "simulator_version": self.simulator_version,
            "clock_hz": self.clock_hz,
            "total_cycles": self.total_cycles,
            "latency_ms": self.latency_ms,
            "compute_cycles": self.compute_cycles,
            "stall_cycles": self.stall_cycles,
            "macs": self.macs,
            "mac_utilisation": self.mac_utilisation,
            "dram_read_bytes": self.dram_read_bytes,
            "dram_read_weight_bytes": self.dram_read_weight_bytes,
            "dram_read_feature_bytes": self.dram_read_feature_bytes,
            "dram_write_bytes": self.dram_write_bytes,
            "dram_busy_fraction": self.dram_busy_fraction,
            "roofline_cycles": self.roofline_cycles,
            "bound": self.bound,
        }
        if layers:
            rows = []
            for lr in self.layers:
                d = asdict(lr)
                d["out_shape"] = list(lr.out_shape)
                d["dram_read_bytes"] = lr.dram_read_bytes
                rows.append(d)
            out["layers"] = rows
        else:
            out["layers"] = []
        return out

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    _COLS = ("name", "op", "module", "out_shape", "cycles", "compute_cycles", "stall_cycles", "macs",
             "mac_utilisation", "dram_read_weight_bytes", "dram_read_feature_bytes", "dram_write_bytes",
             "dram_busy_fraction", "roofline_cycles", "bound", "latency_ms")

    def to_csv(self, path=None) -> str:
        """Per-layer CSV (plus a TOTAL row); written to ``path`` when given, always returned."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self._COLS)
        for lr in self.layers:
            writer.writerow(["x".join(map(str, v)) if k == "out_shape" else
                             (f"{v:.4f}" if isinstance(v, float) else v)
                             for k, v in ((c, getattr(lr, c)) for c in self._COLS)])
        writer.writerow(["TOTAL", "", "", "", self.total_cycles, self.compute_cycles, self.stall_cycles,
                         self.macs, f"{self.mac_utilisation:.4f}", self.dram_read_weight_bytes,
                         self.dram_read_feature_bytes, self.dram_write_bytes, f"{self.dram_busy_fraction:.4f}",
                         self.roofline_cycles, self.bound, f"{self.latency_ms:.4f}"])
        text = buf.getvalue()
        if path is not None:
            from .fileio import write_output

            write_output(path, text)
        return text

    def to_table(self, per_layer: bool = True) -> str:
        """Readable fixed-width table (per layer, then totals)."""
        head = (f"{'layer':<28} {'op':<8} {'mod':<9} {'out (C,H,W)':<16} {'cycles':>10} {'compute':>10} "
                f"{'stall':>9} {'MACs':>12} {'util':>6} {'rd W B':>10} {'rd F B':>10} {'wr B':>10} "
                f"{'bus':>5} {'bound':>7}")
        lines = [f"{self.graph_name} on {self.profile_name}", head, "-" * len(head)] if per_layer else []
        if per_layer:
            for lr in self.layers:
                shape = ",".join(map(str, lr.out_shape))
                lines.append(
                    f"{lr.name[:28]:<28} {lr.op:<8} {lr.module or '-':<9} {shape:<16} {lr.cycles:>10,} "
                    f"{lr.compute_cycles:>10,} {lr.stall_cycles:>9,} {lr.macs:>12,} {lr.mac_utilisation:>6.1%} "
                    f"{lr.dram_read_weight_bytes:>10,} {lr.dram_read_feature_bytes:>10,} {lr.dram_write_bytes:>10,} "
                    f"{lr.dram_busy_fraction:>5.0%} {lr.bound:>7}")
            lines.append("-" * len(head))
        lines.append(
            f"total: {self.graph_name} on {self.profile_name}: {self.total_cycles:,} cycles = {self.latency_ms:.4f} ms @ {self.clock_hz / 1e6:g} MHz | "
            f"compute {self.compute_cycles:,} + stall {self.stall_cycles:,} | {self.macs:,} MACs, "
            f"util {self.mac_utilisation:.1%} | DRAM read {self.dram_read_bytes:,} B (weights "
            f"{self.dram_read_weight_bytes:,}, features {self.dram_read_feature_bytes:,}), write "
            f"{self.dram_write_bytes:,} B, bus busy {self.dram_busy_fraction:.0%} | roofline "
            f"{self.roofline_cycles:,} cycles ({self.bound}-bound)")
        return "\n".join(lines)

    def chrome_trace(self) -> dict:
        """Chrome-tracing JSON (chrome://tracing, Perfetto) of the event timeline; needs trace=True."""
        if self.trace_events is None:
            raise ValueError("no trace recorded: call simulate(..., trace=True)")
        scale = 1e6 / self.clock_hz  # cycles -> microseconds
        events = [{"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "compute"}},
                  {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "DRAM"}}]
        for ev in self.trace_events:
            e = dict(ev)
            e["ts"] = ev["ts"] * scale
            e["dur"] = ev["dur"] * scale
            events.append(e)
        return {"traceEvents": events, "displayTimeUnit": "ns",
                "otherData": {"graph": self.graph_name, "hardware": self.profile_name}}
