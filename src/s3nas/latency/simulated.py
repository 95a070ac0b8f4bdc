"""The simulator backend: latency by the event-driven NPU simulator on a hardware profile.

``hardware=midap`` (systolic, eyeriss, or ``hardware.profile=<profile.yaml>``) selects it. Networks are
simulated end to end at their deployment shape; the search's table is built by simulating networks in context
(``s3nas.latency.lut``) and cached on disk by content.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf

import simulator
from s3nas.arch.graph import archspec_to_graph
from s3nas.arch.spec import ArchSpec
from s3nas.config import load_hardware
from s3nas.errors import ConfigError
from s3nas.latency.backend import Feasibility, LatencyBackend, LatencyPrediction, LatencyResult
from s3nas.latency.lut import build_latency_table

__all__ = ["SimulatorBackend", "data_dtype_of"]


def data_dtype_of(bytes_per_element: int) -> str:
    """The number format of a profile's data: 1 byte -> "int8", 2 -> "int16" (FP16 alike), 4 -> "fp32"."""
    return {1: "int8", 2: "int16", 4: "fp32"}.get(int(bytes_per_element), f"{8 * int(bytes_per_element)}-bit")


class SimulatorBackend(LatencyBackend):
    """Simulated latency on one simulator profile (a ``simulator.HardwareProfile``)."""

    how = "simulated"
    method = "simulation"
    cheap_networks = True

    def __init__(self, name: str = "midap", profile: Optional[str] = None, *, hardware_profile: Any = None) -> None:
        """``name``: a built-in profile; ``profile``: a profile YAML path (overrides ``name``);
        ``hardware_profile``: an already loaded profile object."""
        if hardware_profile is None:
            hardware_profile = load_hardware(OmegaConf.create({"name": name, "profile": profile}))
        self.profile = hardware_profile
        self.name = str(getattr(hardware_profile, "name", name))
        self.data_dtype = data_dtype_of(int(getattr(hardware_profile, "bytes_per_element", 4)))

    # ------------------------------------------------------------------------------ networks
    def report(self, spec: ArchSpec) -> Any:
        """The simulator's report of ``spec`` (cycles, per-layer timing, MACs)."""
        return simulator.simulate(archspec_to_graph(spec), self.profile)

    def simulate_graph(self, graph: Any) -> Any:
        """The simulator's report of any simulator graph."""
        return simulator.simulate(graph, self.profile)

    def evaluate(self, spec: ArchSpec) -> LatencyResult:
        return LatencyResult(float(self.report(spec).latency_ms), self.source(spec))

    def predict(self, spec: ArchSpec) -> LatencyPrediction:
        """The simulation is the prediction: deterministic, an interval of zero width."""
        ms = float(self.report(spec).latency_ms)
        return LatencyPrediction(ms, ms, ms, 1.0, self.source(spec))

    def evaluate_graph(self, graph: Any, label: str, input_size: int, num_classes: int) -> LatencyResult:
        """Latency of a simulator graph (any model the frontends load)."""
        report = self.simulate_graph(graph)
        return LatencyResult(float(report.latency_ms), self._source(label, input_size, num_classes),
                             details={"cycles": int(report.total_cycles), "macs": int(report.macs)})

    def evaluate_model(self, model: Any, input_shape: tuple[int, int, int], name: str) -> LatencyResult:
        from simulator.frontends.torch import graph_from_module  # torch: only for a torch module

        in_channels, size, _ = input_shape
        graph = graph_from_module(model, tuple(input_shape), name=name)
        num_classes = int(getattr(model, "num_classes", 0) or 0)
        return self.evaluate_graph(graph, name, size, num_classes)

    def source(self, spec: ArchSpec) -> str:
        return self._source(spec.name, spec.input_size, spec.num_classes)

    def _source(self, label: str, input_size: int, num_classes: int) -> str:
        return (f"simulation ({self.name}, {input_size}x{input_size}, {num_classes} classes, batch 1; "
                f"simulator {simulator.SIMULATOR_VERSION})")

    # ------------------------------------------------------------------------------ spaces
    def table(self, space: Any, *, cache_dir: Any = None, workers: int = 1, progress: bool = True) -> Any:
        return build_latency_table(space, self.profile, cache_dir=cache_dir, workers=workers, progress=progress)

    def feasibility(self, space: Any) -> Feasibility:
        specs = [space.arch_spec(space.min_options()), space.arch_spec(space.max_options())]
        try:
            fastest, slowest = (float(self.report(s).latency_ms) for s in specs)
        except ValueError as error:  # SimulationLimitError: the profile cannot run this space in bounded time
            raise ConfigError(f"hardware: {self.name} cannot simulate this search space: {error}") from None
        return Feasibility(fastest, slowest, self.name, self.how)

    def latencies_ms(self, specs: Sequence[ArchSpec]) -> list[float]:
        return [float(self.report(s).latency_ms) for s in specs]

    def identity(self) -> dict:
        fields = dataclasses.asdict(self.profile) if dataclasses.is_dataclass(self.profile) else vars(self.profile)
        return {"backend": "simulator", "profile": fields, "simulator_version": simulator.SIMULATOR_VERSION}
