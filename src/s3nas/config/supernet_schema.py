"""Structured-config schemas of the `supernet` and `candidates` config groups, and their value checks.

OmegaConf checks types and unknown keys at composition (the yaml files list ``supernet_schema`` /
``candidates_schema`` first in their defaults); ``check_supernet`` / ``check_candidates`` check values
(odd kernels, non-negative expansions, one list entry per stage, ...) and raise ``ConfigError`` naming the
key. ``SearchSpace.from_config`` runs them; entry points may run them right after composition.
``register(cs)`` stores the schemas in Hydra's ConfigStore (called by ``s3nas.config.register_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from s3nas.config.ranges import Range, check_choice, check_ranges, check_value
from s3nas.config.vocabulary import ACTIVATIONS, BLOCK_TYPES, SUPERNET_BLOCK_TYPES
from s3nas.errors import ConfigError

#: Largest kernel size accepted anywhere (a 9x9 depthwise ring already exceeds every paper setting).
MAX_KERNEL = 9
STEM_STRIDES = (1, 2, 4)
#: Value ranges of the supernet's scalar keys (s3nas.config.ranges); se_ratio applies to each stage's value.
RANGES = {
    "stem_channels": Range(low=1, integer=True),
    "head_channels": Range(low=1, integer=True),
    "dropout": Range(low=0, high=1, high_open=True),
}
SE_RATIO_RANGE = Range(low=0, high=1)


@dataclass
class MBConvCandidates:
    """Candidates of a searchable MBConv block: one depthwise kernel and one expansion ratio."""

    kernels: list[int] = field(default_factory=lambda: [3, 5])
    expansions: list[float] = field(default_factory=lambda: [2.0, 4.0, 6.0])


@dataclass
class MixConvCandidates:
    """Candidates of a searchable MixConv block: N superkernels, each picks a kernel and an expansion."""

    max_kernels: list[int] = field(default_factory=lambda: [5, 5, 7])  # one superkernel per entry
    expansions: list[float] = field(default_factory=lambda: [0.0, 2.0])  # per superkernel; 0 = off
    min_kernel: int = 3  # kernels run min_kernel..max_kernel in steps of 2


@dataclass
class FusedCandidates:
    """Candidates of a searchable fused block (full kxk conv, then 1x1 project)."""

    kernels: list[int] = field(default_factory=lambda: [3, 5])
    expansions: list[float] = field(default_factory=lambda: [2.0, 4.0, 6.0])


@dataclass
class CandidatesConfig:
    """The `candidates` group: per block type, what a searchable block may choose."""

    name: str = "s3nas"
    mbconv: MBConvCandidates = field(default_factory=MBConvCandidates)
    mixconv: MixConvCandidates = field(default_factory=MixConvCandidates)
    fused: FusedCandidates = field(default_factory=FusedCandidates)
    # Listed options of any block types, for `supernet.block_type: choice` (each block chooses one of them):
    # {type: mbconv|fused, kernel: k, expansion: e} or {type: mixconv, kernels: [k, ...], expansion: e}
    # (a MixConv block with one branch per kernel, each at expansion e). Written by BBSSP's profile.
    options: list[Any] = field(default_factory=list)
    allow_skip: bool = True  # skip (expansion 0) where a residual exists


@dataclass
class SupernetConfig:
    """The `supernet` group: stem, five (or any number of) stages, head. Lists have one entry per stage."""

    name: str = "s3nas_mixconv"
    block_type: Any = "mixconv"  # mixconv | mbconv | fused | choice (candidates.options), or one per stage
    stem_channels: int = 32
    stem_kernel: int = 7
    stem_stride: int = 2
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 160, 256])
    strides: list[int] = field(default_factory=lambda: [2, 2, 2, 1, 2])  # of each stage's first block
    depths: Optional[list[int]] = field(default_factory=lambda: [3, 4, 7, 4, 11])
    total_blocks: Optional[int] = None  # used when depths is null: linear depths (see linear_depths)
    head_channels: int = 1280
    act: str = "relu"  # stem, blocks and head
    se_ratio: Any = 0.0  # SE per block (0 = none), a number or a list with one entry per stage
    dropout: float = 0.2  # before the classifier


def register(cs: Any) -> None:
    """Store the supernet/candidates schemas in Hydra's ConfigStore ``cs``."""
    cs.store(group="supernet", name="supernet_schema", node=SupernetConfig)
    cs.store(group="candidates", name="candidates_schema", node=CandidatesConfig)


# ----------------------------------------------------------------------------------------------- checks


def _to_plain(cfg: Any) -> dict:
    """DictConfig / dataclass / dict -> plain dict."""
    if cfg is None:
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
        if hasattr(cfg, "__dataclass_fields__"):
            return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if hasattr(cfg, "__dict__"):
        return dict(vars(cfg))
    raise ConfigError(f"expected a mapping, got {type(cfg).__name__}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_kernel(key: str, value: Any) -> int:
    """A kernel size: odd integer in 1..MAX_KERNEL."""
    if not _is_int(value) or value < 1 or value % 2 == 0 or value > MAX_KERNEL:
        raise ConfigError(f"{key}: kernel sizes must be odd integers between 1 and {MAX_KERNEL}, got {value!r}")
    return int(value)


def _int_list(key: str, value: Any, *, n: int | None = None, minimum: int = 1) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key}: expected a non-empty list of integers, got {value!r}")
    if n is not None and len(value) != n:
        raise ConfigError(f"{key}: expected {n} values (one per stage), got {len(value)}")
    for v in value:
        if not _is_int(v) or v < minimum:
            raise ConfigError(f"{key}: every value must be an integer >= {minimum}, got {v!r}")
    return [int(v) for v in value]


def _per_stage(key: str, value: Any, n: int) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(f"{key}: expected {n} values (one per stage), got {len(value)}")
        return list(value)
    return [value] * n


def _expansions(key: str, value: Any, *, allow_zero: bool) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key}: expected a non-empty list of expansion ratios, got {value!r}")
    out = []
    for v in value:
        if not _is_number(v) or v < 0 or (v == 0 and not allow_zero):
            accepted = ">= 0 (0 = branch off)" if allow_zero else "> 0 (skip is `allow_skip`)"
            raise ConfigError(f"{key}: expansion ratios must be numbers {accepted}, got {v!r}")
        out.append(float(v))
    if len(set(out)) != len(out):
        raise ConfigError(f"{key}: duplicate expansion ratios in {value!r}")
    if not any(v > 0 for v in out):
        raise ConfigError(f"{key}: at least one expansion ratio must be > 0, got {value!r}")
    return sorted(out)


def _kernels(key: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key}: expected a non-empty list of odd kernel sizes, got {value!r}")
    kernels = [check_kernel(key, v) for v in value]
    if len(set(kernels)) != len(kernels):
        raise ConfigError(f"{key}: duplicate kernel sizes in {value!r}")
    return sorted(kernels)


def linear_depths(widths: list[int], total_blocks: int) -> list[int]:
    """Depths whose cumulative sum is proportional to stage width (paper 4.1): 32..256, 29 -> 3/4/7/4/11."""
    if total_blocks < len(widths):
        raise ConfigError(f"supernet.total_blocks: need at least one block per stage ({len(widths)}), "
                          f"got {total_blocks}")
    cumulative, previous = [], 0
    for s, width in enumerate(widths):
        remaining_stages = len(widths) - 1 - s
        target = int(total_blocks * width / widths[-1]) if s < len(widths) - 1 else total_blocks
        target = max(previous + 1, min(target, total_blocks - remaining_stages))
        cumulative.append(target)
        previous = target
    return [c - p for c, p in zip(cumulative, [0] + cumulative[:-1])]


def check_supernet(cfg: Any) -> dict:
    """Validate a supernet config; return a plain dict with per-stage lists filled in (``depths`` resolved)."""
    raw = _to_plain(cfg)
    defaults = _to_plain(SupernetConfig())
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ConfigError(f"supernet.{unknown[0]}: unknown key; accepted keys: {', '.join(defaults)}")
    c = {**defaults, **raw}
    widths = _int_list("supernet.widths", c["widths"])
    n = len(widths)
    strides = _int_list("supernet.strides", c["strides"], n=n)
    for s in strides:
        if s not in (1, 2):
            raise ConfigError(f"supernet.strides: each stride must be 1 or 2, got {s!r}")
    if c["depths"] is None:
        total = c["total_blocks"]
        if not _is_int(total) or total < 1:
            raise ConfigError("supernet.total_blocks: with depths null, give a positive total block count "
                              f"(linear depths), got {total!r}")
        depths = linear_depths(widths, int(total))
    else:
        depths = _int_list("supernet.depths", c["depths"], n=n, minimum=1)
        if c["total_blocks"] is not None and c["total_blocks"] != sum(depths):
            raise ConfigError(f"supernet.total_blocks: {c['total_blocks']!r} does not match sum(depths) "
                              f"= {sum(depths)}; set one of them to null")
    block_types = _per_stage("supernet.block_type", c["block_type"], n)
    for t in block_types:
        if t not in SUPERNET_BLOCK_TYPES:
            raise ConfigError(f"supernet.block_type: {t!r} is not a block type; use one of "
                              f"{', '.join(SUPERNET_BLOCK_TYPES)}")
    se_ratios = _per_stage("supernet.se_ratio", c["se_ratio"], n)
    for r in se_ratios:
        check_value("supernet.se_ratio", r, SE_RATIO_RANGE)
    check_ranges(c, RANGES, prefix="supernet.")
    check_kernel("supernet.stem_kernel", c["stem_kernel"])
    check_choice("supernet.stem_stride", c["stem_stride"], STEM_STRIDES)
    check_choice("supernet.act", c["act"], tuple(ACTIVATIONS))
    return {**c, "widths": widths, "strides": strides, "depths": depths, "block_type": block_types,
            "se_ratio": [float(r) for r in se_ratios], "total_blocks": sum(depths)}


def check_candidates(cfg: Any) -> dict:
    """Validate a candidates config; return a plain dict with sorted, deduplicated choices."""
    raw = _to_plain(cfg)
    defaults = _to_plain(CandidatesConfig())
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ConfigError(f"candidates.{unknown[0]}: unknown key; accepted keys: {', '.join(defaults)}")
    c = {**defaults, **raw}
    out: dict = {"name": c["name"], "allow_skip": bool(c["allow_skip"])}
    for block in ("mbconv", "fused"):
        sub = {**defaults[block], **(c[block] or {})}
        out[block] = {"kernels": _kernels(f"candidates.{block}.kernels", sub["kernels"]),
                      "expansions": _expansions(f"candidates.{block}.expansions", sub["expansions"],
                                                allow_zero=False)}
    mix = {**defaults["mixconv"], **(c["mixconv"] or {})}
    min_kernel = check_kernel("candidates.mixconv.min_kernel", mix["min_kernel"])
    max_kernels = mix["max_kernels"]
    if not isinstance(max_kernels, (list, tuple)) or not max_kernels:
        raise ConfigError(f"candidates.mixconv.max_kernels: expected a non-empty list of odd kernel sizes "
                          f"(one per superkernel), got {max_kernels!r}")
    max_kernels = [check_kernel("candidates.mixconv.max_kernels", k) for k in max_kernels]
    for k in max_kernels:
        if k < min_kernel:
            raise ConfigError(f"candidates.mixconv.max_kernels: {k} is smaller than "
                              f"candidates.mixconv.min_kernel = {min_kernel}")
    out["mixconv"] = {"max_kernels": max_kernels, "min_kernel": min_kernel,
                      "expansions": _expansions("candidates.mixconv.expansions", mix["expansions"],
                                                allow_zero=True)}
    options = check_listed_options(c.get("options"))
    if options:  # (absent when empty: the dict is hashed into cache keys, which stay those of older spaces)
        out["options"] = options
    return out


def check_listed_options(value: Any) -> list[dict]:
    """``candidates.options``: a list of {type, kernel | kernels, expansion}; returns {type, kernels, expansion}."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"candidates.options: expected a list of {{type, kernel(s), expansion}}, got {value!r}")
    out, seen = [], set()
    for n, entry in enumerate(value):
        key = f"candidates.options[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: expected {{type, kernel(s), expansion}}, got {entry!r}")
        unknown = sorted(set(entry) - {"type", "kernel", "kernels", "expansion"})
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}: unknown key; accepted keys: type, kernel, kernels, expansion")
        btype = entry.get("type")
        if btype not in BLOCK_TYPES:
            raise ConfigError(f"{key}.type: {btype!r} is not a block type; use one of {', '.join(BLOCK_TYPES)}")
        if ("kernel" in entry) == ("kernels" in entry):
            raise ConfigError(f"{key}: give exactly one of kernel (mbconv, fused) or kernels (mixconv)")
        if "kernel" in entry:
            kernels = [check_kernel(f"{key}.kernel", entry["kernel"])]
        else:
            raw = entry["kernels"]
            if not isinstance(raw, (list, tuple)) or not raw:
                raise ConfigError(f"{key}.kernels: expected a non-empty list of odd kernel sizes, got {raw!r}")
            kernels = sorted(check_kernel(f"{key}.kernels", k) for k in raw)
        if btype != "mixconv" and len(kernels) != 1:
            raise ConfigError(f"{key}.kernels: a {btype} block has one kernel, got {kernels}")
        expansion = entry.get("expansion")
        if not _is_number(expansion) or expansion <= 0:
            raise ConfigError(f"{key}.expansion: must be a number > 0, got {expansion!r}")
        item = {"type": btype, "kernels": kernels, "expansion": float(expansion)}
        ident = (btype, tuple(kernels), float(expansion))
        if ident in seen:
            raise ConfigError(f"{key}: {btype} kernels {kernels} expansion {expansion:g} is listed twice")
        seen.add(ident)
        out.append(item)
    return out
