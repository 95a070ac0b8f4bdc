"""Schema of the black-box hardware configs (conf/hardware/cpu_onnxruntime.yaml, torch_cpu, command,
sim_midap_blackbox): a `hardware` node with ``device`` set is timed by a device (s3nas.latency.device) instead of
simulated. ``register(cs)`` stores it as ``hardware/device_schema`` (called by ``register_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from s3nas.config.schema import HardwareConfig


@dataclass
class DeviceHardwareConfig(HardwareConfig):
    """A measured device and how its latency table is built and corrected."""

    device: str = "onnxruntime"  # onnxruntime | torch | simulated | command
    threads: int = 1  # intra-op threads (pinned; onnxruntime/torch)
    warmup: int = 10  # untimed runs before timing
    repeats: int = 60  # timed runs per measurement (median + IQR reported)
    rounds: int = 10  # several networks measured together: runs interleaved in this many rounds
    clock: str = "wall"  # wall | thread_cpu (CPU time of the inference thread; needs threads: 1)
    cmd: Optional[str] = None  # command device: takes an ONNX path ({onnx} or appended), prints ms
    timeout_s: float = 120.0  # command device: per call
    sim_profile: Optional[str] = None  # simulated device: the simulator profile wrapped as a black box
    noise_pct: float = 0.0  # simulated device: multiplicative measurement noise (log-normal sigma, %)
    seed: int = 0
    # layer-adaptive correction: end-to-end measurements of sampled architectures
    correction: str = "stage_affine_weights"  # stage_affine_weights | stage_affine | position_affine | ratio | none
    correction_samples: int = 60  # sampled architectures measured end to end to fit the correction
    correction_ridge: float = 0.1  # ridge strength pulling scales to 1 and offsets to 0
    noise_repeats: int = 5  # separate measurements of one network for the noise estimate
    # time a reference (mid-size block / network) in every chunk of table measurements and normalise by it
    # (drift of a shared machine's load between chunks); the log keeps the raw values too
    reference: bool = False
    # torch device: keep freed memory in the process heap (glibc mallopt) so a run's activations reuse pages
    # instead of page-faulting fresh ones each run (fewer, steadier page faults; docs/blackbox.md)
    keep_heap: bool = False


def register(cs: Any) -> None:
    cs.store(group="hardware", name="device_schema", node=DeviceHardwareConfig)
