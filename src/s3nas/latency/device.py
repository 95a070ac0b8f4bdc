"""Black-box devices: anything that takes a network and returns its measured latency.

A device knows nothing of the search: it receives a network and times it. How to use one::

    from s3nas.latency.device import make_device, Piece
    device = make_device(cfg.hardware)      # None for a plain simulator profile (hardware=midap)
    m = device.measure(spec)                # an ArchSpec: the whole network at spec.input_size, batch 1
    m = device.measure("model.onnx")        # an ONNX file (onnxruntime and command devices)
    m = device.measure(Piece.at(space, i, option))   # one block alone, in its shape context
    m.median_ms, m.iqr_ms, m.n, m.samples_ms           # median of N timed runs after warm-up, spread
    device.noise(spec, repeats=5).noise_pct            # repeat-measurement variation of one network

Devices (``hardware.device``): ``onnxruntime`` (this machine's CPU, ``hardware.threads`` intra-op threads,
sequential execution; ``hardware.dtype=int8`` times the INT8 QDQ model: every network or piece's float export is
quantized by ``s3nas.utils.onnxquant.quantize_onnx`` before timing, see ``OnnxRuntimeDevice.model_bytes``), ``torch`` (torch on CPU, same pinning), ``openvino`` (the ONNX export compiled by OpenVINO for its
CPU plugin: ``hardware.threads`` inference threads, one stream, latency hint, f32, no core pinning),
``executorch`` (``torch.export`` lowered to ExecuTorch's XNNPACK delegate, XNNPACK's threadpool set to
``hardware.threads``: the CPU runtime of phones), ``simulated`` (a simulator profile wrapped as a
black box: ``hardware.sim_profile``; optional ``noise_pct`` multiplicative noise, so a method can be checked
against a known truth) and ``command`` (``hardware.cmd``: receives an ONNX file path - ``{onnx}`` in the
command, else appended - and prints milliseconds on its last stdout line; for a phone or board behind adb/ssh).
Every timed device warms up (``warmup`` runs), then takes ``repeats`` timed runs and reports their median
and inter-quartile range; ``hardware.clock`` is ``wall`` (wall-clock) or ``thread_cpu`` (CPU time of the calling
thread: with one intra-op thread the inference runs on it, so time other processes held the core is left out,
which a shared machine needs; the configs of this machine's CPU use it). A device that fails (a command exits
non-zero, prints no number, times out) raises ``DeviceError``: one line naming the device and what it printed;
``measure_many`` raises ``PartialMeasurement`` (a ``DeviceError`` holding every network's result) when only some of
its networks failed, so the measured table goes on with the rest.

Unstable measurements: a run more than ``hardware.unstable_ratio`` (3) times off the bulk of its measurement's runs
is *wild*; a measurement with more than ``hardware.unstable_fraction`` (10%) wild runs is taken again, up to
``hardware.remeasure`` (2) times. The first stable attempt is the measurement (``Measurement.remeasured`` says how
many were discarded); one still unstable after that keeps the median of the bulk of all its attempts' runs
(``stable_runs``) and is flagged (``Measurement.unstable``). One run per measurement (a ``command`` device with
``repeats: 1`` printing one number) cannot be checked.
``hardware.reference`` (``Device.reference``) asks the measured table (``s3nas.latency.measured``) to time a fixed
reference network in every chunk of measurements and normalise by it (a device measuring one network at a time
is not affected).

A ``Piece`` is a part of a network timed on its own: ``block`` (input of the previous block's shape),
``stem`` (the input image) or ``head`` (1x1 conv, pool, classifier on the last block's shape). The
measured latency table (``s3nas.latency.measured``) is built from pieces, never from profiler traces.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import dataclasses
import functools
import hashlib
import io
import math
import os
import platform
import random
import shlex
import statistics
import subprocess
import tempfile
import time
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

import simulator
from s3nas.arch.graph import archspec_to_graph, block_to_graph, emit_head, emit_stem
from s3nas.arch.spec import ArchSpec, BlockSpec, Branch
from s3nas.config.device_schema import check_dtype, device_config
from s3nas.errors import ConfigError, UserError
from simulator.graph import GraphBuilder

__all__ = ["DEVICE_KINDS", "CommandDevice", "Device", "DeviceError", "ExecuTorchDevice", "Measurement", "NoiseEstimate",
           "OnnxRuntimeDevice", "OpenVinoDevice", "PartialMeasurement", "Piece", "SimulatedDevice", "TorchCpuDevice",
           "make_device", "quantize_for_timing", "stable_runs", "summarize"]

#: hardware.device values; "simulator" (or null) means a plain simulator profile (no device).
DEVICE_KINDS = ("simulator", "onnxruntime", "torch", "openvino", "executorch", "simulated", "command")
#: hardware.clock values: wall-clock time, or the CPU time of the calling thread (with one intra-op thread the
#: inference runs on it, so this is the latency minus the time other processes held the core).
CLOCKS = {"wall": time.perf_counter, "thread_cpu": time.thread_time}


class DeviceError(UserError):
    """A device failed to time a network (message: one line naming the device and what it printed)."""

    exit_code = 1


class PartialMeasurement(DeviceError):
    """Some networks of a ``measure_many`` call failed: ``results`` holds a ``Measurement`` or a ``DeviceError`` per
    network (message: the first failure's)."""

    def __init__(self, results: Sequence[Any]) -> None:
        self.results = list(results)
        self.failures = [r for r in self.results if isinstance(r, DeviceError)]
        super().__init__(str(self.failures[0]) if self.failures else "no failure")


# ----------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Measurement:
    """Timed runs of one network on one device: median and inter-quartile range of ``n`` runs (ms)."""

    median_ms: float
    iqr_ms: float
    min_ms: float
    n: int
    device: str
    source: str = "measurement"  # "measurement" (timed) or "simulation" (a simulated device)
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    remeasured: int = 0  # attempts discarded because their runs differed wildly (Device.remeasure)
    unstable: bool = False  # still unstable after re-measuring: the median of the bulk of every attempt's runs
    wild_runs: int = 0  # runs left out of that median

    @property
    def spread_pct(self) -> float:
        """IQR relative to the median, in percent."""
        return 100.0 * self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict:
        flags = {"remeasured": self.remeasured} if self.remeasured else {}
        if self.unstable:
            flags.update(unstable=True, wild_runs=self.wild_runs)
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "min_ms": self.min_ms, "n": self.n,
                "device": self.device, "source": self.source, **flags}


@dataclass(frozen=True)
class NoiseEstimate:
    """Repeat-measurement variation of one network: medians of separate measurements."""

    medians_ms: tuple[float, ...]
    noise_pct: float  # (max - min) / 2 of the medians relative to their median, in percent
    measurements: tuple[Measurement, ...] = field(default=(), repr=False)

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.medians_ms))


def summarize(samples_ms: Sequence[float], device: str, source: str = "measurement") -> Measurement:
    """Median, IQR and minimum of timed runs."""
    values = sorted(float(v) for v in samples_ms)
    if not values:
        raise ValueError("no samples")
    if len(values) >= 4:
        q = statistics.quantiles(values, n=4, method="inclusive")
        iqr = q[2] - q[0]
    else:
        iqr = values[-1] - values[0]
    return Measurement(median_ms=float(statistics.median(values)), iqr_ms=float(iqr), min_ms=values[0],
                       n=len(values), device=device, source=source, samples_ms=tuple(values))


def stable_runs(samples_ms: Sequence[float], ratio: float) -> list[float]:
    """The bulk of a measurement's runs: the largest group within a factor ``ratio`` of one run (ties: the faster
    run, interference slows a device down), sorted; the other runs are wild."""
    values = sorted(float(v) for v in samples_ms)
    best: tuple[int, int] = (0, len(values))
    best_count = -1
    for center in values:
        low = bisect.bisect_left(values, center / ratio)
        high = bisect.bisect_right(values, center * ratio)
        if high - low > best_count:
            best, best_count = (low, high), high - low
    return values[best[0]:best[1]]


# ----------------------------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class Piece:
    """A part of a network timed alone: a ``block`` in its shape context, the ``stem`` or the ``head``."""

    kind: str  # "block" | "stem" | "head"
    arch: ArchSpec  # supplies stem/head settings, classes and input size
    in_channels: int
    in_hw: int
    block: BlockSpec | None = None
    name: str = ""

    @classmethod
    def of_block(cls, block: BlockSpec, in_channels: int, in_hw: int, arch: ArchSpec, name: str = "") -> "Piece":
        return cls("block", arch, int(in_channels), int(in_hw), block, name or "block")

    @classmethod
    def at(cls, space: Any, i: int, option: Sequence[Branch]) -> "Piece":
        """Position ``i`` of ``space`` with ``option``, input of the previous position's output shape."""
        pos = space.positions[i]
        arch = space.arch_spec(space.min_options())
        return cls("block", arch, pos.in_channels, pos.in_hw, space.block_spec(i, option), f"block{i}")

    @classmethod
    def stem(cls, space: Any) -> "Piece":
        arch = space.arch_spec(space.min_options())
        return cls("stem", arch, space.in_channels, space.input_size, None, "stem")

    @classmethod
    def head(cls, space: Any) -> "Piece":
        arch = space.arch_spec(space.min_options())
        return cls("head", arch, space.final_channels, space.final_hw, None, "head")

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_channels, self.in_hw, self.in_hw)

    def module(self):
        """The torch module of this piece (eval mode)."""
        builder, layers = _builder()
        nn = _torch().nn
        if self.kind == "block":
            return builder.Block(self.block, self.in_channels).eval()
        spec = self.arch
        if self.kind == "stem":
            return layers.ConvBnAct(spec.in_channels, spec.stem_channels, spec.stem_kernel, spec.stem_stride,
                                    act=spec.act).eval()
        if self.kind == "head":
            head = layers.ConvBnAct(self.in_channels, spec.head_channels, 1, act=spec.act)
            return nn.Sequential(head, nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                 nn.Linear(spec.head_channels, spec.num_classes)).eval()
        raise ValueError(f"piece kind {self.kind!r}")

    def graph(self):
        """The simulator graph of this piece."""
        if self.kind == "block":
            return block_to_graph(self.block, self.in_channels, self.in_hw, prefix="blocks.0")
        b = GraphBuilder((self.in_channels, self.in_hw, self.in_hw), name=self.kind)
        (emit_stem if self.kind == "stem" else emit_head)(b, b.input, self.arch)
        return b.graph


Network = Union[ArchSpec, Piece, str, os.PathLike]


def _torch():
    """torch, imported on first use: the simulated and command devices (and the tables measured on them) never
    build a torch module, and importing torch and timm costs seconds in a fresh process."""
    import torch

    return torch


def _builder():
    """(s3nas.nn.builder, s3nas.nn.layers): torch and timm, imported on first use as torch is."""
    from s3nas.nn import builder, layers

    return builder, layers


class _torch_threads:
    """Run torch with ``n`` intra-op threads inside the block (building and exporting networks with the
    default thread count on a loaded machine spins OpenMP threads for tens of seconds)."""

    def __init__(self, n: int = 1) -> None:
        self.n, self.previous = int(n), None

    def __enter__(self):
        torch = _torch()
        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        torch = _torch()
        torch.set_num_threads(self.previous)


def _module_and_shape(network: Network):
    """(torch module in eval mode, input shape) of an ArchSpec or a Piece."""
    with _torch_threads(1):
        if isinstance(network, Piece):
            return network.module(), network.input_shape
        if isinstance(network, ArchSpec):
            return _builder()[0].build_model(network).eval(), (1, network.in_channels, network.input_size, network.input_size)
    raise TypeError(f"cannot build a torch module from {type(network).__name__}")


def onnx_bytes(network: Network, opset: int = 18) -> bytes:
    """The ONNX model of ``network`` (batch 1, BatchNorm folded by the exporter); an .onnx path is read."""
    if isinstance(network, (str, os.PathLike)):
        return Path(network).read_bytes()
    torch = _torch()
    module, shape = _module_and_shape(network)
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), _torch_threads(1):
        warnings.simplefilter("ignore")
        kwargs = dict(input_names=["images"], output_names=["out"], opset_version=int(opset),
                      do_constant_folding=True)
        try:
            torch.onnx.export(module, (example,), buffer, dynamo=False, **kwargs)
        except TypeError:  # torch without the dynamo switch
            torch.onnx.export(module, (example,), buffer, **kwargs)
    return buffer.getvalue()


def describe(network: Network) -> str:
    """Short name of a network for messages."""
    if isinstance(network, Piece):
        return network.name or network.kind
    if isinstance(network, ArchSpec):
        return f"{network.name} ({len(network.blocks)} blocks, {network.input_size}x{network.input_size})"
    return str(network)


# ----------------------------------------------------------------------------------------- devices
class Device:
    """Base class: ``measure(network) -> Measurement``; subclasses implement ``_runner`` (a network held in
    memory, run on demand: timing can be interleaved) or ``_samples`` (timed runs of one network)."""

    kind = "device"
    source = "measurement"
    #: the number format networks are timed in (``hardware.dtype``; only the onnxruntime device times int8)
    dtype = "fp32"
    #: whether measured tables normalise every chunk of measurements by a reference network timed in it
    #: (``hardware.reference``; read by ``s3nas.latency.measured``, not by ``measure``)
    reference = False

    def __init__(self, name: str, *, warmup: int = 10, repeats: int = 30, rounds: int = 10,
                 clock: str = "wall") -> None:
        if clock not in CLOCKS:
            raise ConfigError(f"hardware.clock: unknown clock '{clock}'; use one of {', '.join(CLOCKS)}")
        self.clock = clock
        if int(repeats) < 1:
            raise ConfigError(f"hardware.repeats: must be >= 1, got {repeats}")
        if int(warmup) < 0:
            raise ConfigError(f"hardware.warmup: must be >= 0, got {warmup}")
        self.name, self.warmup, self.repeats, self.rounds = str(name), int(warmup), int(repeats), max(1, int(rounds))

    def identity(self) -> dict:
        """What makes this device's numbers comparable (for cache keys)."""
        return {"kind": self.kind, "name": self.name, "clock": self.clock}

    def fingerprint(self) -> dict:
        """What a reader of a latency figure needs to know about where it was measured (written next to exported
        models, e.g. ``latency.json``; the caller adds the input shape and batch): this machine's CPU model and logical
        CPUs, the threads the device runs on, the runtime and its version, the clock, the number format and the host.
        Not a cache key (``identity`` is one)."""
        return {"device": self.name, "kind": self.kind, "cpu": _cpu_model(), "logical_cpus": os.cpu_count(),
                "threads": getattr(self, "threads", None), "runtime": self.kind, "runtime_version": None,
                "clock": self.clock, "dtype": self.dtype, "host": platform.node()}

    @property
    def label(self) -> str:
        """The device as latency sources name it (its name, plus the number format when it is not fp32)."""
        return self.name

    #: re-measuring of unstable measurements (``hardware.remeasure``, ``unstable_ratio``, ``unstable_fraction``; set
    #: by ``make_device``): a run more than ``unstable_ratio`` times off the bulk of its measurement's runs is wild,
    #: a measurement with more than ``unstable_fraction`` wild runs is taken again up to ``remeasure`` times
    remeasure = 2
    unstable_ratio = 3.0
    unstable_fraction = 0.1

    def unstable(self, samples_ms: Sequence[float]) -> bool:
        """Whether more than ``unstable_fraction`` of the runs are wild (see ``stable_runs``)."""
        wild = len(samples_ms) - len(stable_runs(samples_ms, self.unstable_ratio))
        return wild > self.unstable_fraction * len(samples_ms)

    def settle(self, attempts: Sequence[Sequence[float]]) -> Measurement:
        """The measurement of a network timed ``len(attempts)`` times (every attempt but the last unstable): the
        last attempt when it is stable, else the median of the bulk of all attempts' runs, flagged."""
        last = attempts[-1]
        if not self.unstable(last):
            return dataclasses.replace(summarize(last, self.name, self.source), remeasured=len(attempts) - 1)
        pooled = [float(v) for attempt in attempts for v in attempt]
        bulk = stable_runs(pooled, self.unstable_ratio)
        return dataclasses.replace(summarize(bulk, self.name, self.source), remeasured=len(attempts) - 1,
                                   unstable=True, wild_runs=len(pooled) - len(bulk))

    def _checked(self, network: Network, samples: Sequence[Any]) -> list[float]:
        bad = [s for s in samples if not (isinstance(s, float) and math.isfinite(s) and s >= 0)]
        if bad or not samples:
            raise DeviceError(f"device {self.name}: no valid latency for {describe(network)} (got {bad[:3]!r})")
        return list(samples)

    def measure(self, network: Network, repeats: int | None = None) -> Measurement:
        """Warm up, then time ``repeats`` runs of ``network``; median, IQR, minimum (taken again while unstable)."""
        repeats = int(repeats or self.repeats)
        attempts = [self._checked(network, self._samples(network, repeats))]
        while self.unstable(attempts[-1]) and len(attempts) <= self.remeasure:
            attempts.append(self._checked(network, self._samples(network, repeats)))
        return self.settle(attempts)

    def noise(self, network: Network, repeats: int = 5) -> NoiseEstimate:
        """Repeat-measurement variation: ``repeats`` separate measurements of the same network."""
        measurements = tuple(self.measure(network) for _ in range(max(2, int(repeats))))
        medians = tuple(m.median_ms for m in measurements)
        mid = statistics.median(medians)
        noise = 100.0 * (max(medians) - min(medians)) / 2.0 / mid if mid > 0 else 0.0
        return NoiseEstimate(medians, noise, measurements)

    def measure_many(self, networks: Sequence[Network], repeats: int | None = None,
                     rounds: int | None = None) -> list[Measurement]:
        """Measure several networks; devices that can hold them all interleave ``rounds`` rounds of
        ``repeats / rounds`` runs each, so a change of the machine's load hits every network alike (unstable ones
        are taken again together). ``PartialMeasurement`` (every network's result) when some of them failed."""
        repeats = int(repeats or self.repeats)
        runners: list[Any] = []
        for network in networks:
            try:
                runners.append(self._runner(network))
            except DeviceError as error:
                runners.append(error)
        if any(r is None for r in runners):  # a device timing one network at a time
            results: list[Any] = []
            for network in networks:
                try:
                    results.append(self.measure(network, repeats))
                except DeviceError as error:
                    results.append(error)
        else:
            rounds = max(1, min(int(rounds or self.rounds), repeats))
            results = list(runners)
            alive = [k for k, r in enumerate(runners) if not isinstance(r, DeviceError)]
            attempts: dict[int, list[list[float]]] = {k: [] for k in alive}
            todo = alive
            while todo:
                for k, samples in zip(todo, self._interleaved([runners[k] for k in todo], repeats, rounds)):
                    attempts[k].append(samples)
                todo = [k for k in todo if self.unstable(attempts[k][-1]) and len(attempts[k]) <= self.remeasure]
            for k in alive:
                results[k] = self.settle(attempts[k])
        if any(isinstance(r, DeviceError) for r in results):
            raise PartialMeasurement(results)
        return results

    def _interleaved(self, runners: Sequence[Any], repeats: int, rounds: int) -> list[list[float]]:
        per_round = [repeats // rounds + (1 if k < repeats % rounds else 0) for k in range(rounds)]
        samples: list[list[float]] = [[] for _ in runners]
        for run in runners:
            _timed(run, self.warmup, 0)
        for count in per_round:
            for k, run in enumerate(runners):
                samples[k].extend(_timed(run, 0, count, self.clock))
        return samples

    def _runner(self, network: Network):
        """A zero-argument callable that runs ``network`` once, or None when the device cannot hold it."""
        return None

    def _samples(self, network: Network, repeats: int) -> list[float]:
        run = self._runner(network)
        if run is None:  # pragma: no cover - subclasses implement one of the two
            raise NotImplementedError
        return _timed(run, self.warmup, repeats, self.clock)

    def close(self) -> None:
        """Release what the device holds (nothing by default)."""


def _check_threads(threads: int, clock: str) -> None:
    if int(threads) < 1:
        raise ConfigError(f"hardware.threads: must be >= 1, got {threads}")
    if clock == "thread_cpu" and int(threads) != 1:
        raise ConfigError(f"hardware.clock: thread_cpu times the calling thread only; it needs hardware.threads=1 "
                          f"(got {threads}), or use hardware.clock=wall")


def _host() -> str:
    """This machine (a table measured on one machine is not valid on another)."""
    return f"{platform.node()}/{platform.machine()}/{os.cpu_count()}"


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo "model name"; platform.processor() where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _condensed(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut at ``limit`` characters (runtimes raise pages of C++ context)."""
    return " ".join(str(error).split())[:limit] or type(error).__name__


def _timed(run, warmup: int, repeats: int, clock: str = "wall") -> list[float]:
    now = CLOCKS[clock]
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        start = now()
        run()
        samples.append((now() - start) * 1e3)
    return samples


#: How ``dtype=int8`` quantizes a network for timing (part of the device identity, so the cache key of its tables).
INT8_TIMING = {"format": "QDQ", "weights": "int8 symmetric per-channel", "activations": "uint8 asymmetric per-tensor",
               "calibration": "minmax", "calibration_images": 4}
#: Operators of an ONNX model that is already quantized (timed as it is with ``dtype=int8``).
QUANTIZED_NODE_TYPES = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                        "MatMulInteger")


def quantize_for_timing(model: bytes) -> bytes:
    """The INT8 QDQ version of a float ONNX model (``s3nas.utils.onnxquant.quantize_onnx``: weights int8
    per-channel, activations uint8 per-tensor, min/max calibration), for timing; a model that already holds
    quantization nodes is returned as it is. Calibration: ``INT8_TIMING["calibration_images"]`` seeded
    random-normal images of the model's input shape - the latency of the quantized model does not depend on the
    calibrated scales (the same operators run on the same shapes whatever their values), so no dataset is needed."""
    import onnx

    from s3nas.utils.onnxquant import quantize_onnx

    graph = onnx.load_model_from_string(model).graph
    if any(node.op_type in QUANTIZED_NODE_TYPES for node in graph.node):
        return model
    dims = graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in dims][1:]  # batch 1, a dynamic size taken as 1
    images = np.random.default_rng(0).standard_normal((INT8_TIMING["calibration_images"], *shape)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="s3nas-int8-timing-") as scratch:
        src, dst = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        src.write_bytes(model)
        quantize_onnx(src, dst, images, method=INT8_TIMING["calibration"], per_channel=True, batch=1)
        return dst.read_bytes()


# ------------------------------------------------------------------------ optional runtimes, imported on first use
def _onnxruntime():
    """onnxruntime (heavy: imported when an onnxruntime device is used)."""
    import onnxruntime

    return onnxruntime


def _openvino():
    """openvino (optional, the ``devices`` extra: imported when an OpenVINO device is used)."""
    import openvino

    return openvino


def _executorch() -> tuple:
    """(xnnpack_partitioner module, to_edge_transform_and_lower, portable_lib bindings, Runtime) of executorch
    (optional, the ``devices`` extra: imported when an ExecuTorch device is used)."""
    from executorch.backends.xnnpack.partition import xnnpack_partitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    return xnnpack_partitioner, to_edge_transform_and_lower, portable_lib, Runtime


class OnnxRuntimeDevice(Device):
    """onnxruntime on this machine's CPU: ``threads`` intra-op threads, one inter-op thread, sequential;
    ``dtype="int8"`` times the INT8 QDQ model of every network (``model_bytes``)."""

    kind = "onnxruntime"
    #: quantized models kept in memory (the reference network of every chunk, a network measured repeatedly)
    quantized_cache_size = 8

    def __init__(self, name: str = "cpu_onnxruntime", *, threads: int = 1, warmup: int = 10, repeats: int = 30,
                 rounds: int = 10, opset: int = 18, clock: str = "wall", dtype: str = "fp32") -> None:
        super().__init__(name, warmup=warmup, repeats=repeats, rounds=rounds, clock=clock)
        _check_threads(threads, clock)
        check_dtype(dtype, self.kind)
        self.threads, self.opset, self.dtype = int(threads), int(opset), str(dtype)
        self._quantized: OrderedDict[bytes, bytes] = OrderedDict()

    def identity(self) -> dict:
        onnxruntime = _onnxruntime()
        # fp32 keeps the identity it had before hardware.dtype existed (its cached tables stay valid)
        int8 = {"dtype": self.dtype, "quantization": INT8_TIMING} if self.dtype == "int8" else {}
        return {**super().identity(), "threads": self.threads, "opset": self.opset,
                "onnxruntime": onnxruntime.__version__, "host": _host(), **int8}

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "runtime_version": _onnxruntime().__version__, "opset": self.opset}

    @property
    def label(self) -> str:
        return f"{self.name} int8 QDQ" if self.dtype == "int8" else self.name

    def model_bytes(self, network: Network) -> bytes:
        """The ONNX model this device hands to onnxruntime for ``network``: its float export, quantized to INT8
        QDQ when ``dtype`` is int8 (kept in memory for the last few networks)."""
        model = onnx_bytes(network, self.opset)
        if self.dtype != "int8":
            return model
        digest = hashlib.sha256(model).digest()
        if digest in self._quantized:
            self._quantized.move_to_end(digest)
            return self._quantized[digest]
        try:
            quantized = quantize_for_timing(model)
        except Exception as error:  # noqa: BLE001 - ConfigError (an operator without INT8 kernel), onnx errors
            raise DeviceError(f"device {self.name}: cannot quantize {describe(network)} to int8: "
                              f"{' '.join(str(error).split())[:300]}") from None
        self._quantized[digest] = quantized
        while len(self._quantized) > self.quantized_cache_size:
            self._quantized.popitem(last=False)
        return quantized

    def session(self, model: bytes):
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

    def _runner(self, network: Network):
        try:
            model = self.model_bytes(network)
        except OSError as error:
            raise DeviceError(f"device {self.name}: cannot load {describe(network)}: "
                              f"{' '.join(str(error).split())[:200]}") from None
        try:
            session = self.session(model)
        except (OSError, ValueError) as error:
            raise DeviceError(f"device {self.name}: cannot load {describe(network)}: "
                              f"{' '.join(str(error).split())[:200]}") from None
        except Exception as error:  # onnxruntime raises its own types for a bad file
            raise DeviceError(f"device {self.name}: onnxruntime refused {describe(network)}: "
                              f"{' '.join(str(error).split())[:200]}") from None
        inp = session.get_inputs()[0]
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        feed = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        return lambda: session.run(None, feed)


class TorchCpuDevice(Device):
    """torch on CPU (eval, inference mode, ``threads`` intra-op threads)."""

    kind = "torch"

    def __init__(self, name: str = "torch_cpu", *, threads: int = 1, warmup: int = 10, repeats: int = 30,
                 rounds: int = 10, clock: str = "wall", keep_heap: bool = False) -> None:
        super().__init__(name, warmup=warmup, repeats=repeats, rounds=rounds, clock=clock)
        _check_threads(threads, clock)
        self.threads = int(threads)
        self.keep_heap = bool(keep_heap) and keep_freed_memory()

    def identity(self) -> dict:
        torch = _torch()
        return {**super().identity(), "threads": self.threads, "torch": torch.__version__, "host": _host(),
                **({"keep_heap": True} if self.keep_heap else {})}

    def fingerprint(self) -> dict:
        torch = _torch()
        return {**super().fingerprint(), "runtime_version": torch.__version__, "keep_heap": self.keep_heap}

    def _runner(self, network: Network):
        if isinstance(network, (str, os.PathLike)):
            raise DeviceError(f"device {self.name}: times ArchSpecs and pieces, not ONNX files ({network})")
        torch = _torch()
        module, shape = _module_and_shape(network)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        threads = self.threads

        def run():
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.inference_mode():
                    module(x)
            finally:
                torch.set_num_threads(previous)

        return run


class OpenVinoDevice(Device):
    """OpenVINO's CPU plugin on this machine: the ONNX export (``onnx_bytes``) read and compiled with ``threads``
    inference threads, one stream, the latency hint, f32 inference precision (no bf16 where the CPU has it) and no
    core pinning or reservation (a shared machine moves threads between cores); one synchronous infer request on a
    fixed random input. With one thread the inference runs on the calling thread (measured: its CPU time equals the
    wall time of an undisturbed run), so ``clock: thread_cpu`` is valid."""

    kind = "openvino"

    def __init__(self, name: str = "openvino_cpu", *, threads: int = 1, warmup: int = 10, repeats: int = 30,
                 rounds: int = 10, opset: int = 18, clock: str = "wall") -> None:
        super().__init__(name, warmup=warmup, repeats=repeats, rounds=rounds, clock=clock)
        _check_threads(threads, clock)
        self.threads, self.opset = int(threads), int(opset)
        self._core = None

    def identity(self) -> dict:
        return {**super().identity(), "threads": self.threads, "opset": self.opset, "openvino": _openvino().__version__,
                "host": _host()}

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "runtime_version": _openvino().__version__, "opset": self.opset,
                "properties": {k: str(v) for k, v in self.properties().items()}}

    def properties(self) -> dict:
        """The CPU plugin's compile properties (OpenVINO property names)."""
        return {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False, "ENABLE_CPU_RESERVATION": False,
                "ENABLE_HYPER_THREADING": False}

    def core(self):
        if self._core is None:
            self._core = _openvino().Core()
        return self._core

    def _runner(self, network: Network):
        openvino = _openvino()
        try:
            model = onnx_bytes(network, self.opset)
        except OSError as error:
            raise DeviceError(f"device {self.name}: cannot load {describe(network)}: {_condensed(error)}") from None
        except Exception as error:  # noqa: BLE001 - the ONNX exporter raises many types for an unsupported op
            raise DeviceError(f"device {self.name}: cannot export {describe(network)} to ONNX: "
                              f"{_condensed(error)}") from None
        try:
            compiled = self.core().compile_model(self.core().read_model(model), "CPU", self.properties())
        except Exception as error:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types
            raise DeviceError(f"device {self.name}: openvino refused {describe(network)}: "
                              f"{_condensed(error)}") from None
        port = compiled.input(0)
        shape = [d if d > 0 else 1 for d in (dim.get_length() if dim.is_static else 1 for dim in port.partial_shape)]
        request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        request.set_input_tensor(openvino.Tensor(x))

        def run():
            request.infer()

        run.compiled, run.input = compiled, x  # kept alive with the request
        return run


def _split_as_slices(x, split_sizes, dim=0):
    """``aten.split_with_sizes`` as ``aten.slice`` ops: XNNPACK's partitioner takes slices but not splits (a
    split - the channel groups of a mixed-kernel depthwise conv - would run in the portable kernels and cut the
    delegated graph in pieces)."""
    torch = _torch()
    parts, start = [], 0
    for size in split_sizes:
        parts.append(torch.ops.aten.slice.Tensor(x, dim, start, start + size))
        start += size
    return parts


#: Edge ops that are no computation (a delegate call's outputs are unpacked with getitem).
_GLUE_OPS = ("executorch_call_delegate", "getitem")


class ExecuTorchDevice(Device):
    """ExecuTorch with the XNNPACK delegate (the CPU runtime of phones): the network's eval module exported with
    ``torch.export`` (splits decomposed into slices, ``_split_as_slices``), lowered with ``XnnpackPartitioner``,
    ``to_executorch()``, loaded by ``executorch.runtime.Runtime`` and timed with ``method.execute([x])``. XNNPACK's
    threadpool (process-wide) is set to ``threads``; with one thread XNNPACK works on the calling thread, so
    ``clock: thread_cpu`` is valid (the binding's input/output copies run with one torch thread, see ``_runner``). Ops the partitioner leaves to the portable kernels (slow, unlike a phone's
    delegate) are counted in ``portable_ops`` (and the fingerprint) and warned about once per op. Lowered programs
    of the last ``program_cache_size`` networks are kept in memory (lowering takes ~1 s a block, ~40 s a whole
    network at 224x224; a reference network is timed in every chunk of a measured table)."""

    kind = "executorch"
    program_cache_size = 24
    #: how a network becomes a program (part of the identity: another recipe times other kernels)
    lowering = "torch.export, split_with_sizes as slices, XnnpackPartitioner fp32"

    def __init__(self, name: str = "executorch_cpu", *, threads: int = 1, warmup: int = 10, repeats: int = 30,
                 rounds: int = 10, clock: str = "wall") -> None:
        super().__init__(name, warmup=warmup, repeats=repeats, rounds=rounds, clock=clock)
        _check_threads(threads, clock)
        self.threads = int(threads)
        self._programs: OrderedDict[str, tuple[bytes, tuple[int, ...]]] = OrderedDict()
        self.portable_ops: Counter = Counter()

    @staticmethod
    def version() -> str:
        try:
            return importlib_metadata.version("executorch")
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover - a source build
            return "unknown"

    def identity(self) -> dict:
        return {**super().identity(), "threads": self.threads, "executorch": self.version(), "backend": "xnnpack",
                "lowering": self.lowering, "host": _host()}

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "runtime": "executorch+xnnpack", "runtime_version": self.version(),
                "lowering": self.lowering, "portable_ops": dict(self.portable_ops)}

    def program(self, network: Network) -> tuple[bytes, tuple[int, ...]]:
        """The ExecuTorch program (.pte bytes) of ``network`` and its input shape (kept for the last few)."""
        key = hashlib.sha256(repr(network).encode()).hexdigest()
        if key in self._programs:
            self._programs.move_to_end(key)
            return self._programs[key]
        torch = _torch()
        module, shape = _module_and_shape(network)
        example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        with warnings.catch_warnings(), torch.no_grad(), _torch_threads(1):
            warnings.simplefilter("ignore")
            try:
                exported = torch.export.export(module, (example,))
            except Exception as error:  # noqa: BLE001 - torch.export raises many types for untraceable code
                raise DeviceError(f"device {self.name}: torch.export failed for {describe(network)}: "
                                  f"{_condensed(error)}") from None
            try:
                xnnpack_partitioner, to_edge_transform_and_lower, _, _ = _executorch()
                table = torch.export.default_decompositions()
                table[torch.ops.aten.split_with_sizes.default] = _split_as_slices
                edge = to_edge_transform_and_lower(exported.run_decompositions(table),
                                                   partitioner=[xnnpack_partitioner.XnnpackPartitioner()])
                left = Counter(str(getattr(node.target, "__name__", node.target)).split(".")[0]
                               for node in edge.exported_program().graph_module.graph.nodes
                               if node.op == "call_function")
                buffer = edge.to_executorch().buffer
            except Exception as error:  # noqa: BLE001 - exir/XNNPACK raise many types
                raise DeviceError(f"device {self.name}: XNNPACK lowering failed for {describe(network)}: "
                                  f"{_condensed(error)}") from None
        portable = {op: n for op, n in left.items() if op not in _GLUE_OPS}
        for op, n in portable.items():
            if op not in self.portable_ops:
                warnings.warn(f"device {self.name}: {describe(network)}: {op} not delegated to XNNPACK (runs in the "
                              f"portable kernels)", RuntimeWarning, stacklevel=2)
            self.portable_ops[op] += n
        self._programs[key] = (bytes(buffer), tuple(shape))
        while len(self._programs) > self.program_cache_size:
            self._programs.popitem(last=False)
        return self._programs[key]

    def pin_threads(self) -> None:
        """Set XNNPACK's (process-wide) threadpool to ``threads`` threads (between runs only: resetting it during
        an inference is unsafe, hence the binding's name)."""
        portable_lib = _executorch()[2]
        if portable_lib._threadpool_get_thread_count() != self.threads:
            portable_lib._unsafe_reset_threadpool(self.threads)

    def _runner(self, network: Network):
        if isinstance(network, (str, os.PathLike)):
            raise DeviceError(f"device {self.name}: times ArchSpecs and pieces, not ONNX files ({network})")
        torch = _torch()
        buffer, shape = self.program(network)
        self.pin_threads()
        try:
            program = _executorch()[3].get().load_program(buffer)
            method = program.load_method("forward")
        except Exception as error:  # noqa: BLE001 - the runtime raises RuntimeError and its own types
            raise DeviceError(f"device {self.name}: executorch refused {describe(network)}: "
                              f"{_condensed(error)}") from None
        inputs = [torch.randn(*shape, generator=torch.Generator().manual_seed(0))]

        def run():
            # the binding copies inputs and outputs with torch ops: with torch's default intra-op threads, OpenMP
            # workers spin beside the caller (measured: a 0.41 ms stem took 3.9 ms of the caller's CPU, 20 ms wall)
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                method.execute(inputs)
            finally:
                torch.set_num_threads(previous)

        run.program = (program, buffer)  # the method reads them while it lives
        return run


class SimulatedDevice(Device):
    """A simulator profile seen as a black box: networks simulated end to end, pieces simulated alone
    (input read from DRAM, as a standalone model would). ``noise_pct`` adds seeded multiplicative noise."""

    kind = "simulated"

    def __init__(self, profile: Any, name: str | None = None, *, noise_pct: float = 0.0, seed: int = 0,
                 repeats: int = 5) -> None:
        self.profile = simulator.load_profile(str(profile)) if isinstance(profile, (str, os.PathLike)) else profile
        super().__init__(name or f"simulated_{self.profile.name}", warmup=0, repeats=repeats)
        if not (float(noise_pct) >= 0):
            raise ConfigError(f"hardware.noise_pct: must be >= 0, got {noise_pct}")
        self.noise_pct, self.rng = float(noise_pct), random.Random(seed)
        self.source = "simulation" if self.noise_pct == 0 else "simulation with noise"

    def identity(self) -> dict:
        prof = dataclasses.asdict(self.profile) if dataclasses.is_dataclass(self.profile) else vars(self.profile)
        return {**super().identity(), "profile": prof, "noise_pct": self.noise_pct,
                "simulator_version": simulator.SIMULATOR_VERSION}

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "runtime": "simulator", "runtime_version": simulator.SIMULATOR_VERSION,
                "profile": self.profile.name, "noise_pct": self.noise_pct, "cpu": None, "logical_cpus": None}

    def simulate_ms(self, network: Network) -> float:
        """The noiseless simulated latency (the known truth)."""
        if isinstance(network, Piece):
            return float(simulator.simulate(network.graph(), self.profile, input_in_dram=True).latency_ms)
        if isinstance(network, ArchSpec):
            return float(simulator.simulate(archspec_to_graph(network), self.profile).latency_ms)
        raise DeviceError(f"device {self.name}: a simulated device times ArchSpecs and pieces, not {network}")

    def _samples(self, network: Network, repeats: int) -> list[float]:
        true_ms = self.simulate_ms(network)
        sigma = self.noise_pct / 100.0
        return [true_ms * (math.exp(self.rng.gauss(0.0, sigma)) if sigma else 1.0) for _ in range(repeats)]


class CommandDevice(Device):
    """A user command: receives an ONNX file path, prints milliseconds (last stdout line; several numbers
    there are taken as repeated runs). ``{onnx}`` in ``cmd`` is replaced by the path, else it is appended."""

    kind = "command"

    def __init__(self, cmd: str, name: str = "command", *, timeout_s: float = 120.0, repeats: int = 1,
                 opset: int = 18) -> None:
        super().__init__(name, warmup=0, repeats=repeats)
        if not cmd or not str(cmd).strip():
            raise ConfigError("hardware.cmd: empty; give a command that takes an ONNX path and prints milliseconds, "
                              "e.g. hardware.cmd='python bench.py {onnx}'")
        if not float(timeout_s) > 0:
            raise ConfigError(f"hardware.timeout_s: must be > 0, got {timeout_s}")
        self.cmd, self.timeout_s, self.opset = str(cmd), float(timeout_s), int(opset)

    def identity(self) -> dict:
        return {**super().identity(), "cmd": self.cmd, "opset": self.opset}

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "runtime": "command", "runtime_version": None, "command": self.cmd,
                "cpu": None, "logical_cpus": None}  # the command runs elsewhere (a phone, a board): not this CPU

    def _argv(self, path: str) -> list[str]:
        parts = shlex.split(self.cmd)
        if any("{onnx}" in p for p in parts):
            return [p.replace("{onnx}", path) for p in parts]
        return parts + [path]

    def _samples(self, network: Network, repeats: int) -> list[float]:
        if isinstance(network, (str, os.PathLike)):
            paths, tmp = [str(network)], None
        else:
            fd, tmp = tempfile.mkstemp(prefix="s3nas-", suffix=".onnx")
            with os.fdopen(fd, "wb") as handle:
                handle.write(onnx_bytes(network, self.opset))
            paths = [tmp]
        try:
            samples: list[float] = []
            for _ in range(repeats):
                samples.extend(self._run_once(paths[0], network))
            return samples
        finally:
            if tmp:
                Path(tmp).unlink(missing_ok=True)

    def _run_once(self, path: str, network: Network) -> list[float]:
        what = f"device {self.name} ({self.cmd!r}) on {describe(network)}"
        try:
            proc = subprocess.run(self._argv(path), capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{what}: timed out after {self.timeout_s:g} s (hardware.timeout_s)") from None
        except OSError as error:
            raise DeviceError(f"{what}: cannot run: {error.strerror or error}") from None
        if proc.returncode != 0:
            said = _last_line(proc.stderr) or _last_line(proc.stdout) or "(nothing)"
            raise DeviceError(f"{what}: exited with status {proc.returncode}: {said}")
        line = _last_line(proc.stdout)
        values = parse_ms(line)
        if values is None:
            raise DeviceError(f"{what}: printed {line[:120]!r}, expected milliseconds on the last line "
                              f"(e.g. '1.234' or '1.234 ms')")
        return values


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_ms(line: str) -> list[float] | None:
    """'1.5', '1.5 ms', '1.5ms 1.6ms' -> milliseconds; None when the line is not that."""
    tokens = line.replace(",", " ").split()
    values = []
    for token in tokens:
        if token.lower() == "ms":
            continue
        if token.lower().endswith("ms"):
            token = token[:-2]
        try:
            value = float(token)
        except ValueError:
            return None
        if not (math.isfinite(value) and value >= 0):
            return None
        values.append(value)
    return values or None


# ----------------------------------------------------------------------------------------- factory
def make_device(hardware_cfg: Any) -> Device | None:
    """The device of a `hardware` config node (dict/DictConfig); None for a plain simulator profile."""
    if "device" not in hardware_cfg or hardware_cfg["device"] in (None, "simulator"):
        return None
    hw = device_config(hardware_cfg)  # the schema's defaults, ranges checked (repeats >= 1, ...)
    device = _make_device(hw.device, str(hw.name or hw.device), hw)
    device.reference = bool(hw.reference)
    device.remeasure, device.unstable_ratio = int(hw.remeasure), float(hw.unstable_ratio)
    device.unstable_fraction = float(hw.unstable_fraction)
    return device


def keep_freed_memory() -> bool:
    """Ask glibc to serve large allocations from the heap and not to give freed memory back to the system
    (``mallopt(M_MMAP_THRESHOLD, 1 GiB)``, ``mallopt(M_TRIM_THRESHOLD, 2 GiB)``), so torch eager's activation
    tensors reuse pages run after run instead of page-faulting fresh zeroed ones (measured here at 224x224: 1.0 M
    -> 0.17 M page faults for 4 x 70 runs of one network, 37.7 -> 32.5 ms). Process-wide; False where there is no
    glibc (the setting is then simply not applied)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def _make_device(kind: str, name: str, hw: Any) -> Device:
    """The device of a schema-complete `hardware` node (``device_config``): values read as they are."""
    timing = {"warmup": hw.warmup, "repeats": hw.repeats, "rounds": hw.rounds, "clock": hw.clock}
    if kind == "onnxruntime":
        return OnnxRuntimeDevice(name, threads=hw.threads, dtype=hw.dtype, **timing)
    if kind == "torch":
        return TorchCpuDevice(name, threads=hw.threads, keep_heap=hw.keep_heap, **timing)
    if kind == "openvino":
        return OpenVinoDevice(name, threads=hw.threads, **timing)
    if kind == "executorch":
        return ExecuTorchDevice(name, threads=hw.threads, **timing)
    if kind == "simulated":
        profile = hw.sim_profile
        if not profile:
            raise ConfigError("hardware.sim_profile: not set; a simulated device wraps a simulator profile "
                              "(midap, systolic, eyeriss or a profile YAML path)")
        try:
            loaded = simulator.load_profile(str(profile))
        except (ValueError, FileNotFoundError, KeyError, OSError) as error:
            raise ConfigError(f"hardware.sim_profile: unknown profile '{profile}' ({' '.join(str(error).split())})"
                              ) from None
        return SimulatedDevice(loaded, name, noise_pct=hw.noise_pct, seed=hw.seed, repeats=hw.repeats)
    if kind == "command":
        return CommandDevice(str(hw.cmd or ""), name, timeout_s=hw.timeout_s, repeats=hw.repeats)
    raise ConfigError(f"hardware.device: unknown device '{kind}'; use one of {', '.join(DEVICE_KINDS)}")
