"""Hardware profiles: a dataclass describing one NPU, loaded from YAML and validated field by field.

A profile fixes the compute modules (their throughput, pipeline depth and the mapping style that selects
the conv cost model), the on-chip memories (feature memory, double-buffered weight memory) and the DRAM
(channels, bus bandwidth, request-latency model, bus arbitration). ``bytes_per_element`` is the data
width (1 = INT8, 2 = FP16/INT16 on the same MAC array): it scales every stored size, never the compute.
Bundled profiles live in ``simulator/profiles/*.yaml``; a user describes a new NPU by writing a YAML with
the same fields.
Invalid values raise :class:`ProfileError` naming the field. Fields can be overridden programmatically
with ``dataclasses.replace(profile, field=value)`` (validation runs again).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

PROFILE_DIR = Path(__file__).parent / "profiles"

DATAFLOWS = ("adder_tree", "systolic_ws", "spatial_rs")
ARBITRATIONS = ("weights_first", "fifo")
MAX_CLOCK_HZ = 1e15  # a PHz clock: beyond it latencies in ms underflow to meaningless figures


class ProfileError(ValueError):
    """An invalid hardware profile; the message names the field."""


def _doc(text: str, **kw):
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class HardwareProfile:
    """One NPU: compute modules, on-chip memories and DRAM. Units are in the field docs."""

    # --- identity and clock
    name: str = _doc("profile name (str)")
    clock_hz: float = _doc("core clock (Hz); all cycle counts are at this clock")
    description: str = _doc("free text (str)", default="")
    # --- conv array
    dataflow: str = _doc(
        "mapping style selecting the conv cost model: adder_tree (MIDAP: lanes = input channels per cycle "
        "per unit, units = output channels in parallel), systolic_ws (weight-stationary array: lanes = rows "
        "= reduction dim, units = columns = output channels), spatial_rs (Eyeriss row-stationary: lanes = PE "
        "rows, units = PE columns)", default="adder_tree")
    conv_lanes: int = _doc("conv array width: input values per cycle per unit (count)", default=64)
    conv_units: int = _doc("conv array units: output channels computed in parallel (count)", default=16)
    conv_pipeline_cycles: int = _doc("conv array pipeline depth, paid once per layer (cycles)", default=6)
    conv_align_stall: bool = _doc(
        "adder_tree only: a kernel column (k_w > 1) whose feature data start later in their lane row than "
        "its weights costs one extra align-stage row read (MidapSim's conv_yz dataflow; bool)", default=False)
    first_layer_gemm: bool = _doc(
        "adder_tree only: run a conv reading the graph input as a GEMM over im2col rows (bool)", default=True)
    gemm_max_input_channels: int = _doc(
        "adder_tree only: the first-layer GEMM applies when the conv's weight has at most this many input "
        "channels (count; MidapSim: 3)", default=3)
    # --- depthwise / element-wise path
    dw_lanes: int = _doc(
        "depthwise / pooling / element-wise path: channels per cycle, one kernel tap each (count)", default=64)
    dw_pipeline_cycles: int = _doc("depthwise / element-wise pipeline depth per layer (cycles)", default=6)
    # --- reduction unit
    reduction_lanes: int = _doc("reduction unit (global pooling): channels per cycle (count)", default=64)
    reduction_pipeline_cycles: int = _doc("reduction unit pipeline depth per layer (cycles)", default=6)
    fuse_reduction: bool = _doc(
        "global pooling runs in the producer's pipeline (free) when its input comes from a compute layer "
        "(bool)", default=True)
    # --- on-chip memory
    fmem_bytes: int = _doc("feature-map memory (bytes)", default=1 << 20)
    wmem_bytes: int = _doc(
        "weight memory incl. both halves of the double buffer (bytes); weight tiles stream through it as a "
        "ring, a tile is at most half of it", default=256 << 10)
    weight_request_bytes: int = _doc(
        "largest weight DMA request (bytes): whole filter groups are merged up to this size (at most half "
        "of WMEM); 0 = one request per filter group", default=0)
    feature_stream_buffers: int = _doc(
        "feature bands from DRAM in flight or resident at once (count, 2 = double buffered)", default=2)
    feature_band_bytes: int = _doc("target size of one feature band streamed from DRAM (bytes)", default=16384)
    input_band_bytes: int = _doc(
        "target size of one band of the network input read from DRAM (bytes; MidapSim loads it in FMEM-bank "
        "fragments with nothing to overlap the first); 0 = feature_band_bytes", default=0)
    max_tiles_per_layer: int = _doc("cap on tiles per layer (count); bounds simulation cost", default=256)
    # --- data layout
    bytes_per_element: int = _doc(
        "bytes per activation / weight element, in DRAM and on chip (bytes): 1 = INT8 data; 2 = FP16 or INT16 "
        "data on the same MAC array (conv_lanes x conv_units MACs per cycle and every compute cycle unchanged); "
        "every weight and feature-map byte count (DRAM traffic, request sizes) scales with it, while the "
        "*_bytes memories and bands keep their size in bytes, so they hold 1/bytes_per_element as many "
        "elements", default=1)
    channel_align: int = _doc("channels are stored padded to a multiple of this (count)", default=64)
    input_channel_align: int = _doc("channel padding of the graph input in DRAM (count)", default=16)
    conv_only_channel_align: int = _doc(
        "channel padding of a feature map that only convs / FCs / concats read (count; MidapSim: 16, the "
        "WMEM count); maps read by anything else or produced by depthwise/pooling/element-wise ops use "
        "channel_align; 0 = every map uses channel_align", default=0)
    # --- DRAM and bus
    dram_channels: int = _doc("DRAM channels; requests in flight at once (count)", default=2)
    dram_bytes_per_cycle: float = _doc(
        "shared bus bandwidth (bytes per core cycle); inf = unlimited", default=25.0)
    dram_latency_base_cycles: float = _doc("request latency, constant part (cycles)", default=41.25)
    dram_latency_page_cycles: float = _doc("request latency added per full DRAM page crossed (cycles)",
                                           default=14.625)
    dram_page_bytes: int = _doc("DRAM page size for the latency model (bytes)", default=8192)
    dram_latency_refresh_cycles: float = _doc("request latency added per refresh window touched (cycles)",
                                              default=235.0)
    dram_refresh_bytes: float = _doc("bytes transferable per refresh window (bytes)", default=1.6 * 56160)
    bus_arbitration: str = _doc(
        "DRAM channel and bus arbitration: weights_first (earliest-needed layer first, its weight requests "
        "before its feature requests; writes last) | fifo (issue order)",
                                default="weights_first")
    dram_writes_use_bus: bool = _doc("DRAM writes occupy the bus (bool; MIDAP does not count them)",
                                     default=False)
    # --- compiler policy
    cross_layer_prefetch: bool = _doc(
        "weight tiles of later layers prefetch while earlier layers compute (bool; HIDE_DRAM_LATENCY)",
        default=True)
    eltwise_operand_columns: int = _doc(
        "with eltwise_operand_from_dram: a full-size operand is requested in groups of this many feature-map "
        "columns, one request at a time, each paying the request latency (count; 0 = streamed in feature "
        "bands like any DRAM input)", default=0)
    eltwise_operand_from_dram: bool = _doc(
        "element-wise ops stream their secondary operand (residual, SE scale) from DRAM through the weight "
        "path, so its producer writes it to DRAM (bool; MIDAP)", default=False)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def peak_macs_per_cycle(self) -> int:
        """Peak MACs per cycle of the conv array."""
        return self.conv_lanes * self.conv_units

    @property
    def peak_tops(self) -> float:
        """Peak tera-operations per second (2 ops per MAC)."""
        return 2 * self.peak_macs_per_cycle * self.clock_hz / 1e12

    @property
    def dram_gbps(self) -> float:
        """DRAM bandwidth in GB/s."""
        return self.dram_bytes_per_cycle * self.clock_hz / 1e9

    def to_dict(self) -> dict:
        """Plain dict of every field (JSON/YAML-able)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def cache_key(self) -> str:
        """Stable text of every field, for cache keys."""
        return repr(sorted(self.to_dict().items()))


FIELD_DOCS = {f.name: f.metadata.get("doc", "") for f in fields(HardwareProfile)}

_POSITIVE_INT = ("conv_lanes", "conv_units", "dw_lanes", "reduction_lanes", "fmem_bytes", "wmem_bytes",
                 "feature_stream_buffers", "feature_band_bytes", "max_tiles_per_layer", "bytes_per_element",
                 "channel_align", "input_channel_align", "dram_channels", "dram_page_bytes")
_NONNEG_INT = ("weight_request_bytes", "gemm_max_input_channels", "conv_only_channel_align", "eltwise_operand_columns",
               "input_band_bytes", "conv_pipeline_cycles", "dw_pipeline_cycles", "reduction_pipeline_cycles")
_NONNEG_FLOAT = ("dram_latency_base_cycles", "dram_latency_page_cycles", "dram_latency_refresh_cycles")
_BOOL = ("conv_align_stall", "first_layer_gemm", "fuse_reduction", "dram_writes_use_bus", "cross_layer_prefetch",
         "eltwise_operand_from_dram")


def _validate(p: HardwareProfile) -> None:
    def bad(name: str, why: str) -> ProfileError:
        return ProfileError(f"hardware profile {p.name!r}: field '{name}' {why} (got {getattr(p, name)!r})")

    if not isinstance(p.name, str) or not p.name:
        raise ProfileError("hardware profile: field 'name' must be a non-empty string")
    for name in _POSITIVE_INT:
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise bad(name, "must be a positive integer")
    for name in _NONNEG_INT:
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise bad(name, "must be an integer >= 0")
    for name in _NONNEG_FLOAT:
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or math.isinf(v):
            raise bad(name, "must be a finite number >= 0")
    for name in _BOOL:
        if not isinstance(getattr(p, name), bool):
            raise bad(name, "must be true or false")
    for name in ("clock_hz", "dram_bytes_per_cycle", "dram_refresh_bytes"):
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise bad(name, "must be a positive number")
    if not 1.0 <= p.clock_hz <= MAX_CLOCK_HZ:
        raise bad("clock_hz", f"must be between 1 Hz and {MAX_CLOCK_HZ:g} Hz")
    if p.dataflow not in DATAFLOWS:
        raise bad("dataflow", f"must be one of {', '.join(DATAFLOWS)}")
    if p.bus_arbitration not in ARBITRATIONS:
        raise bad("bus_arbitration", f"must be one of {', '.join(ARBITRATIONS)}")
    if p.wmem_bytes < 2:
        raise bad("wmem_bytes", "must hold two buffer halves (>= 2)")
    if p.dw_lanes > p.peak_macs_per_cycle:
        raise bad("dw_lanes", "must not exceed conv_lanes * conv_units (the roofline peak)")
    if p.reduction_lanes > p.peak_macs_per_cycle:
        raise bad("reduction_lanes", "must not exceed conv_lanes * conv_units")


def list_profiles() -> list[str]:
    """Names of the bundled profiles."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


def profile_from_dict(data: dict, source: str = "<dict>") -> HardwareProfile:
    """Build and validate a profile from a mapping (unknown fields fail naming the field)."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a hardware profile must be a mapping of field: value")
    known = {f.name for f in fields(HardwareProfile)}
    for key in data:
        if key not in known:
            raise ProfileError(f"{source}: unknown field '{key}' (known fields: {', '.join(sorted(known))})")
    for required in ("name", "clock_hz"):
        if required not in data:
            raise ProfileError(f"{source}: field '{required}' is required")
    values = dict(data)
    for name in ("clock_hz", "dram_bytes_per_cycle", "dram_refresh_bytes") + _NONNEG_FLOAT:
        v = values.get(name)
        if isinstance(v, str):
            try:
                values[name] = float(v)
            except ValueError:
                raise ProfileError(f"{source}: field '{name}' must be a number (got {v!r})") from None
        elif isinstance(v, int) and not isinstance(v, bool):
            values[name] = float(v)
    try:
        return HardwareProfile(**values)
    except ProfileError as err:
        raise ProfileError(f"{source}: {err}") from None


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load a bundled profile by name ("midap", "systolic", "eyeriss") or a YAML file by path."""
    import yaml

    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.exists()):
        path = PROFILE_DIR / f"{text}.yaml"
        if not path.exists():
            raise ProfileError(
                f"unknown hardware profile {text!r}: accepted names are {', '.join(list_profiles())} "
                "or a path to a .yaml file")
    if not path.exists():
        raise ProfileError(f"hardware profile file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML ({err})") from None
    return profile_from_dict(data, source=str(path))


def unlimited_bandwidth(profile: HardwareProfile) -> HardwareProfile:
    """The same profile with an infinitely fast, zero-latency DRAM (compute-only timing)."""
    return dataclasses.replace(profile, dram_bytes_per_cycle=math.inf, dram_latency_base_cycles=0.0,
                               dram_latency_page_cycles=0.0, dram_latency_refresh_cycles=0.0)
