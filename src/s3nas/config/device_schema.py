"""Schema of the black-box hardware configs (conf/hardware/cpu_onnxruntime.yaml, torch_cpu, openvino_cpu,
executorch_cpu, command, sim_midap_blackbox): a `hardware` node with ``device`` set is timed by a device (s3nas.latency.device) instead of
simulated. ``register(cs)`` stores it as ``hardware/device_schema`` (called by ``register_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from s3nas.config.ranges import Range, check_choice, check_ranges
from s3nas.config.schema import HardwareConfig
from s3nas.errors import ConfigError


@dataclass
class DeviceBudget:
    """Few-shot device (``hardware.budget.networks=N``): no per-block table; N end-to-end measurements of networks
    chosen by ``selection`` fit an analytic latency model (s3nas.latency.fewshot; docs/guide/device.md)."""

    networks: Optional[int] = None  # null: the full measured table (every block timed + correction_samples networks)
    selection: str = "active"  # active (greedy D-optimal: the most uncertain network next) | random
    pool: int = 400  # sampled candidate networks the selection chooses from
    prior_error_pct: float = 2.0  # prior relative residual sd of the model (%), weight prior_weight measurements
    prior_weight: float = 6.0
    ridge: float = 1e-3
    # base: MACs per operator class, activation traffic, layers | depthwise_by_kernel: 5x5 and >= 7x7 depthwise MACs
    # in columns of their own (executorch_cpu: XNNPACK's depthwise cost per MAC depends on the kernel size)
    features: str = "base"


@dataclass
class DeviceHardwareConfig(HardwareConfig):
    """A measured device and how its latency table is built and corrected."""

    _target_: str = "s3nas.latency.device_backend.DeviceBackend"
    device: str = "onnxruntime"  # onnxruntime | torch | openvino | executorch | simulated | command
    threads: int = 1  # intra-op threads (pinned; onnxruntime/torch/openvino/executorch)
    warmup: int = 10  # untimed runs before timing
    repeats: int = 60  # timed runs per measurement (median + IQR reported)
    rounds: int = 10  # several networks measured together: runs interleaved in this many rounds
    clock: str = "wall"  # wall | thread_cpu (CPU time of the inference thread; needs threads: 1)
    # number format the networks are timed in: fp32 (the float export) | int8 (onnxruntime device only: the export
    # quantized to INT8 QDQ by s3nas.utils.onnxquant before timing; docs/guide/device.md)
    dtype: str = "fp32"
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
    # unstable measurements: a run more than unstable_ratio times off the bulk of its measurement's runs is wild; a
    # measurement with more than unstable_fraction wild runs is taken again up to remeasure times, then kept as the
    # median of the bulk of all its runs and flagged (log, table meta, summary); docs/guide/device.md
    remeasure: int = 2
    unstable_ratio: float = 3.0
    unstable_fraction: float = 0.1
    # time a reference (mid-size block / network) in every chunk of table measurements and normalise by it
    # (drift of a shared machine's load between chunks); the log keeps the raw values too
    reference: bool = False
    # torch device: keep freed memory in the process heap (glibc mallopt) so a run's activations reuse pages
    # instead of page-faulting fresh ones each run (fewer, steadier page faults; docs/blackbox.md)
    keep_heap: bool = False
    # few-shot latency model from budget.networks end-to-end measurements (null: the full measured table)
    budget: DeviceBudget = field(default_factory=DeviceBudget)
    # every device estimate carries an interval at this level (two-sided); conservative: the search's table is the
    # upper bound of a typical network's interval, so "meets the target" holds with that confidence
    interval_level: float = 0.9
    conservative: bool = False


#: hardware.budget.selection values (s3nas.latency.fewshot.SELECTIONS)
SELECTIONS = ("active", "random")
#: hardware.budget.features values (s3nas.latency.fewshot.FEATURE_SETS)
FEATURE_SETS = ("base", "depthwise_by_kernel")

#: hardware.dtype values, and the devices that time each format other than fp32
DTYPES = ("fp32", "int8")
DTYPE_DEVICES = {"int8": ("onnxruntime",)}

#: Value ranges of a device's keys (s3nas.config.ranges); types and unknown keys are the schema's.
RANGES = {
    "threads": Range(low=1, integer=True),
    "warmup": Range(low=0, integer=True),
    "repeats": Range(low=1, integer=True),
    "rounds": Range(low=1, integer=True),
    "timeout_s": Range(low=0, low_open=True),
    "noise_pct": Range(low=0),
    "correction_samples": Range(low=0, integer=True),
    "correction_ridge": Range(low=0),
    "noise_repeats": Range(low=1, integer=True),
    "remeasure": Range(low=0, integer=True),
    "unstable_ratio": Range(low=1, low_open=True),
    "unstable_fraction": Range(low=0, high=1, high_open=True),
    "budget.networks": Range(low=2, integer=True, nullable=True),
    "budget.pool": Range(low=2, integer=True),
    "budget.prior_error_pct": Range(low=0, low_open=True),
    "budget.prior_weight": Range(low=0),
    "budget.ridge": Range(low=0),
    "interval_level": Range(low=0, high=1, low_open=True, high_open=True),
}


def device_config(hardware_cfg: Any) -> Any:
    """A device's `hardware` node (DictConfig or dict) over this schema, its ranges checked: the schema holds
    every default, so the code reads the values without fallbacks. ConfigError naming the key otherwise."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(DeviceHardwareConfig), hardware_cfg)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "hardware"
        message = (str(getattr(error, "msg", None) or error).strip().splitlines() or ["invalid value"])[0]
        raise ConfigError(f"hardware.{key}: {message}") from None
    check_ranges(merged, RANGES, prefix="hardware.")
    check_dtype(merged.dtype, merged.device)
    check_choice("hardware.budget.selection", merged.budget.selection, SELECTIONS)
    check_choice("hardware.budget.features", merged.budget.features, FEATURE_SETS)
    return merged


def check_dtype(dtype: Any, device: Any) -> None:
    """ConfigError (one line naming ``hardware.dtype``) for an unknown format or one ``device`` cannot time."""
    if dtype not in DTYPES:
        raise ConfigError(f"hardware.dtype: unknown value '{dtype}'; use one of {', '.join(DTYPES)}")
    takers = DTYPE_DEVICES.get(dtype)
    if takers is not None and device not in takers:
        raise ConfigError(f"hardware.dtype: {dtype} is timed by the {' and '.join(takers)} device only "
                          f"(hardware=cpu_onnxruntime); hardware.device={device} takes fp32")


def register(cs: Any) -> None:
    cs.store(group="hardware", name="device_schema", node=DeviceHardwareConfig)
