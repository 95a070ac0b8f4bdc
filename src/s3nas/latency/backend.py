"""One latency interface: ``LatencyBackend`` answers every latency question the tool asks.

The hardware config names its backend class with ``_target_`` (``make_backend(cfg.hardware)``): a simulator
profile (``s3nas.latency.simulated.SimulatorBackend``), a black-box device with its measured and corrected
table (``s3nas.latency.device_backend.DeviceBackend``), or a user's own subclass. A backend gives

- ``evaluate(spec)``: the latency of one network (an ArchSpec at its deployment shape) with a ``source`` string
  saying how it was obtained, and its noise where it was measured;
- ``latency_ms(spec)``: the bare number (cheaper where the backend can skip the noise estimate);
- ``table(space, ...)``: the per-option table the search differentiates (``s3nas.latency.lut.LatencyTable``);
- ``feasibility(space)`` / ``check_target(target_ms, space)``: the space's fastest and slowest network.

The runners never ask which kind of backend they hold. A backend that only implements ``evaluate`` is still
searchable: the default ``table`` is built from whole-network latencies by differences (every option of every
position swapped into the space's fastest network).
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from hydra.utils import get_class

from s3nas.arch.spec import ArchSpec
from s3nas.errors import ConfigError, InfeasibleTargetError
from s3nas.latency.lut import difference_table

__all__ = ["LatencyBackend", "LatencyResult", "LatencyPrediction", "Feasibility", "NetworkLatency",
           "NearTargetLatency", "LatencyTargetWarning", "make_backend"]


class LatencyTargetWarning(UserWarning):
    """The latency target is above the slowest architecture: the latency term will be inactive."""


@dataclass(frozen=True)
class LatencyResult:
    """The latency of one network and how it was obtained."""

    latency_ms: float
    source: str  # "simulation (...)", "measurement (...)" or a user backend's own words
    noise_pct: float | None = None  # repeat-measurement noise (+-%), None where the figure is exact
    details: dict = field(default_factory=dict)  # backend-specific figures (runs, IQR, drift ...)

    def meets(self, target_ms: float) -> bool:
        return self.latency_ms <= target_ms

    def meets_within_noise(self, target_ms: float) -> bool:
        """Meets the target, or misses it by less than the measurement noise."""
        return self.latency_ms <= target_ms * (1.0 + (self.noise_pct or 0.0) / 100.0)


@dataclass(frozen=True)
class LatencyPrediction:
    """A predicted latency with its interval: what the backend's model says before (or instead of) measuring."""

    latency_ms: float
    low_ms: float
    high_ms: float
    level: float  # two-sided confidence of [low_ms, high_ms] (1.0 for an exact simulation)
    how: str  # "simulation (...)", "few-shot model (...)", "corrected measured table (...)"

    def to_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "low_ms": self.low_ms, "high_ms": self.high_ms, "level": self.level,
                "how": self.how}


@dataclass(frozen=True)
class Feasibility:
    """The fastest and slowest network of a search space on a backend."""

    fastest_ms: float
    slowest_ms: float
    hardware: str
    how: str = "simulated"  # simulated | measured | estimated

    def check(self, target_ms: float) -> None:
        """InfeasibleTargetError below the fastest network; a LatencyTargetWarning above the slowest."""
        target = float(target_ms)
        if not math.isfinite(target) or target < self.fastest_ms:
            raise InfeasibleTargetError(
                f"latency: target {target:.4g} ms is below the fastest architecture of the search space "
                f"({self.fastest_ms:.4g} ms {self.how} on {self.hardware}; the space spans {self.fastest_ms:.4g}.."
                f"{self.slowest_ms:.4g} ms); use a latency of at least {self.fastest_ms:.4g}ms, or a smaller "
                f"supernet/candidates/deploy.input_size")
        if target > self.slowest_ms:
            warnings.warn(
                f"latency: target {target:.4g} ms is above the slowest architecture of the search space "
                f"({self.slowest_ms:.4g} ms {self.how} on {self.hardware}): the latency term will be inactive and "
                f"the search optimises accuracy only", LatencyTargetWarning, stacklevel=3)


class LatencyBackend(abc.ABC):
    """Latency of networks and search spaces on one piece of hardware (simulated, measured or modelled)."""

    #: hardware name for summaries and messages
    name: str = "backend"
    #: how figures are obtained, for messages ("simulated", "measured", "estimated")
    how: str = "estimated"
    #: the same as a noun, for tables and summaries ("simulation", "measurement", "estimate")
    method: str = "estimate"
    #: one network's latency is cheap (a simulation), so a search may evaluate every state it visits
    cheap_networks: bool = False
    #: the number format the hardware computes in ("int8", "int16", "fp16", "fp32"): the accuracy that belongs
    #: with this backend's latency is that of a network in this format (``accuracy_dtype`` of summaries)
    data_dtype: str = "fp32"

    @classmethod
    def from_config(cls, hardware_cfg: Any) -> "LatencyBackend":
        """Build from a ``hardware`` config node: its fields (less ``_target_``) as keyword arguments."""
        fields = _plain(hardware_cfg)
        fields.pop("_target_", None)
        try:
            return cls(**fields)
        except TypeError as error:
            raise ConfigError(f"hardware: {cls.__name__} does not take these fields ({error})") from None

    # ------------------------------------------------------------------------------ networks
    @abc.abstractmethod
    def evaluate(self, spec: ArchSpec) -> LatencyResult:
        """The latency of ``spec`` at its deployment shape, with its source (and noise where measured)."""

    def latency_ms(self, spec: ArchSpec) -> float:
        """The bare latency of ``spec`` (ms)."""
        return float(self.evaluate(spec).latency_ms)

    def latencies_ms(self, specs: Sequence[ArchSpec]) -> list[float]:
        """Latencies of several networks (a device may interleave their measurements)."""
        return [self.latency_ms(s) for s in specs]

    def predict(self, spec: ArchSpec) -> LatencyPrediction | None:
        """The model's prediction for ``spec`` with its interval, or None where the backend has no model apart from
        ``evaluate`` (default)."""
        return None

    def evaluate_graph(self, graph: Any, label: str, input_size: int, num_classes: int) -> LatencyResult:
        """The latency of a simulator graph of a network that is not an s3nas architecture (zoo networks)."""
        raise ConfigError(f"hardware: {self.name} times s3nas architectures only, not '{label}'; use a simulator "
                          f"profile (hardware=midap) for other networks")

    def evaluate_model(self, model: Any, input_shape: tuple[int, int, int], name: str) -> LatencyResult:
        """The latency of a torch module that is not an s3nas architecture (timm networks)."""
        raise ConfigError(f"hardware: {self.name} times s3nas architectures only, not '{name}'; use a simulator "
                          f"profile (hardware=midap) for other networks")

    # ------------------------------------------------------------------------------ spaces
    def table(self, space: Any, *, cache_dir: Any = None, workers: int = 1, progress: bool = True) -> Any:
        """The per-option latency table of ``space`` (default: differences of whole-network latencies)."""
        return difference_table(space, self.latency_ms, key=f"{type(self).__name__}:{self.name}",
                                meta={"method": "differences", "hardware": self.name})

    def feasibility(self, space: Any) -> Feasibility:
        """The space's fastest (every position at its cheapest option) and slowest network."""
        fastest, slowest = self.latencies_ms([space.arch_spec(space.min_options()), space.arch_spec(space.max_options())])
        return Feasibility(float(fastest), float(slowest), self.name, self.how)

    def check_target(self, target_ms: float, space: Any) -> Feasibility:
        """Raise InfeasibleTargetError when no network of ``space`` meets ``target_ms``."""
        if not math.isfinite(float(target_ms)):
            raise InfeasibleTargetError(f"latency: target {target_ms} is not a finite latency")
        feasibility = self.feasibility(space)
        feasibility.check(target_ms)
        return feasibility

    # ------------------------------------------------------------------------------ bookkeeping
    def identity(self) -> dict:
        """What makes this backend's numbers comparable (cache keys)."""
        return {"backend": type(self).__name__, "name": self.name}

    def source(self, spec: ArchSpec) -> str:
        """How a latency of ``spec`` is obtained (without obtaining it)."""
        return f"{self.how} ({self.name}, {spec.input_size}x{spec.input_size}, {spec.num_classes} classes)"

    def close(self) -> None:
        """Release what the backend holds (a device session ...)."""

    def __enter__(self) -> "LatencyBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NetworkLatency:
    """options (one per position of ``space``) -> latency (ms) on ``backend``, cached per network."""

    def __init__(self, backend: LatencyBackend, space: Any) -> None:
        self.backend, self.space, self.cache = backend, space, {}
        self.calls = 0  # networks actually evaluated (not served from the cache)

    def __call__(self, options: Iterable) -> float:
        key = tuple(tuple(o) for o in options)
        if key not in self.cache:
            self.calls += 1
            self.cache[key] = float(self.backend.latency_ms(self.space.arch_spec(list(key))))
        return self.cache[key]


class NearTargetLatency:
    """options -> latency (ms) for a search on a measured device: a state whose latency by the table (scaled by the
    last measured state's ratio) lies within ``band`` x target of the target is measured end to end (cached per
    network, like ``NetworkLatency``); elsewhere the table's estimate x that ratio.

    A device's corrected table can be off by several percent for some networks (near the all-on network on a CPU)
    while the search only needs to be right near its target: there, the states it visits are measured, so the
    loss (the table's gradient scaled to the measurement), the feasibility it tracks and its line search see the
    device, and the table stands for the rest. A measured state counts as its measurement x (1 + ``guard``), the
    device's repeat noise. ``measured`` counts the networks measured (on this backend)."""

    def __init__(self, network: NetworkLatency, table: Any, target_ms: float, band: float, guard: float = 0.0) -> None:
        self.network = network  # shared by every target searched on the same backend
        self.table, self.target_ms, self.band = table, float(target_ms), float(band)
        # a measured state counts as measured x (1 + guard): one measurement is within the device's repeat noise of
        # the delivered network's median, so the search keeps that far under the target
        self.guard = float(guard)
        self.ratio = 1.0  # measured x (1 + guard) / table of the last measured state the search was in

    @property
    def measured(self) -> int:
        return self.network.calls

    def __call__(self, options: Iterable) -> float:
        options = list(options)
        estimate_ms = float(self.table.estimate_ms(options))
        key = tuple(tuple(o) for o in options)
        near = abs(estimate_ms * self.ratio - self.target_ms) <= self.band * self.target_ms
        if not near and key not in self.network.cache:
            return estimate_ms * self.ratio
        measured_ms = self.network(options) * (1.0 + self.guard)
        if estimate_ms > 0:
            self.ratio = measured_ms / estimate_ms
        return measured_ms


def make_backend(hardware_cfg: Any) -> LatencyBackend:
    """The backend named by ``hardware._target_`` (a LatencyBackend subclass), built from the config node."""
    target = hardware_cfg.get("_target_") if hasattr(hardware_cfg, "get") else None
    if not target:
        raise ConfigError("hardware._target_: not set; name a LatencyBackend class, e.g. "
                          "s3nas.latency.simulated.SimulatorBackend")

    try:
        cls = get_class(str(target))
    except Exception as error:  # noqa: BLE001 - ImportError, AttributeError, ValueError from hydra
        raise ConfigError(f"hardware._target_: cannot import '{target}' ({' '.join(str(error).split())[:200]})") \
            from None
    if not (isinstance(cls, type) and issubclass(cls, LatencyBackend)):
        raise ConfigError(f"hardware._target_: '{target}' is not a LatencyBackend subclass")
    return cls.from_config(hardware_cfg)


def _plain(node: Any) -> dict:
    """A config node (DictConfig or mapping) as a plain dict."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            return dict(OmegaConf.to_container(node, resolve=True))
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    return dict(node)
