"""Structured-config schema of ``python -m s3nas.profiling.profile_space`` (black-box search-space profiling).

conf/profile_space.yaml lists ``profile_space_schema`` first in its defaults; OmegaConf then checks types and
unknown keys at composition. Values are checked by ``s3nas.profiling.profile_space.check`` (one line naming the
key). ``register(cs)`` stores the schema (``s3nas.config.register_configs`` calls it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from s3nas.config.schema import AppConfig, DeployConfig


@dataclass
class KernelGrid:
    """Generated MBConv/fused candidates: every kernel x every expansion."""

    kernels: list[int] = field(default_factory=list)
    expansions: list[float] = field(default_factory=list)


@dataclass
class MixConvGrid:
    """Generated MixConv candidates: every superkernel set x every per-superkernel expansion."""

    max_kernels: list[list[int]] = field(default_factory=list)
    expansions: list[float] = field(default_factory=list)


@dataclass
class GridConfig:
    mbconv: KernelGrid = field(default_factory=KernelGrid)
    fused: KernelGrid = field(default_factory=KernelGrid)
    mixconv: MixConvGrid = field(default_factory=MixConvGrid)


@dataclass
class AccuracyConfig:
    """Short training of every SSBN (train.py's runner and the `recipe` group, shortened here)."""

    epochs: int = 2
    limit_train_batches: Optional[float] = None  # int = batches per epoch, float = fraction, null = all
    depth_scale: float = 1.0  # SSBN depth per stage for training = max(1, round(depth * scale)); 1 = the SSBN
    repeats: int = 1  # trainings per SSBN (seeds seed, seed+1, ...); val acc is their mean
    keep_checkpoints: bool = False


@dataclass
class ProfileConfig:
    candidates: list[str] = field(default_factory=lambda: ["s3nas", "mbconv"])  # conf/candidates entries
    reference: Optional[str] = "s3nas"  # candidates entry of the default space reported next to the chosen one
    block_types: list[str] = field(default_factory=lambda: ["mbconv", "mixconv", "fused"])
    grid: GridConfig = field(default_factory=GridConfig)
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)


@dataclass
class CostConfig:
    """cost = (1 - w) * normalised accuracy loss + w * normalised latency (both min-max over the SSBNs)."""

    latency_weight: float = 0.5


@dataclass
class SelectConfig:
    top_k: int = 3  # candidates kept (lowest cost); the written space is built from them
    allow_skip: bool = True  # the written entry's candidates.allow_skip


@dataclass
class OutputConfig:
    name: str = "bbssp_${hardware.name}"  # the written entry: search.py candidates=<name>
    config_dir: Optional[str] = None  # Hydra config dir it goes to (<dir>/candidates/<name>.yaml); null = conf/


@dataclass
class ProfileSpaceConfig(AppConfig):
    """Top-level keys of conf/profile_space.yaml."""

    data: Any = MISSING
    supernet: Any = MISSING
    hardware: Any = MISSING
    recipe: Any = MISSING
    trainer: Any = MISSING
    callbacks: Any = MISSING
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)


def register(cs: Any) -> None:
    """Store the schema in Hydra's ConfigStore ``cs``."""
    cs.store(name="profile_space_schema", node=ProfileSpaceConfig)
