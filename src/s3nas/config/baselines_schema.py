"""Structured schemas of the baselines' entry points (conf/zoo.yaml, random_search.yaml, random_selection.yaml,
compare.yaml): unknown keys fail at composition; groups keep their own schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from s3nas.config.schema import AppConfig, DeployConfig


@dataclass
class StageRecipe:
    """Training budget of one stage of a random baseline (overrides of the recipe group)."""

    epochs: Optional[int] = None  # null: recipe.epochs
    scheduler: Optional[str] = None  # null: recipe.scheduler.name (step | cosine)


@dataclass
class RandomBaselineConfig(AppConfig):
    """Top-level keys of conf/random_search.yaml and conf/random_selection.yaml."""

    data: Any = MISSING
    supernet: Any = MISSING
    candidates: Any = MISSING
    hardware: Any = MISSING
    recipe: Any = MISSING
    trainer: Any = MISSING
    callbacks: Any = MISSING
    latency: str = "2.5ms"
    latency_ms: Optional[float] = None
    tolerance: float = 0.02  # +- fraction of the target a sampled network's simulated latency must be within
    num_samples: int = 15  # architectures sampled at the target
    short: StageRecipe = field(default_factory=StageRecipe)  # training of every sample
    full: Optional[StageRecipe] = None  # retraining of the best sample (random search); null: none
    keep_checkpoints: bool = False  # keep every sample's Lightning checkpoints (2 x ~190 MB each) once finished
    select_on: str = "val_acc"  # metric of the sample trainings that picks the best (val_acc, val_acc_raw)
    lut_workers: int = 2
    deploy: DeployConfig = field(default_factory=DeployConfig)
    optimized_metric: Optional[str] = None


@dataclass
class ZooConfig(AppConfig):
    """Top-level keys of conf/zoo.yaml."""

    models: list[str] = field(default_factory=list)  # keys of s3nas.baselines.zoo.ZOO; empty: all
    profiles: list[str] = field(default_factory=list)  # profile names or YAML paths; empty: every profile
    overlay: list[str] = field(default_factory=list)  # run dirs (search/train/random) drawn on the Pareto plot
    graph_cache: bool = True  # reuse timm graphs across runs (simulator graph cache)
    plot: bool = True


@dataclass
class CompareConfig(AppConfig):
    """Top-level keys of conf/compare.yaml."""

    runs: list[str] = field(default_factory=list)  # run dirs (search, train, random_*), or multirun dirs
    zoo: list[str] = field(default_factory=list)  # zoo models to add (keys of the zoo), simulated here
    hardware: Any = MISSING  # the hardware group (hardware=systolic, hardware.profile=<yaml>)
    data: Optional[str] = None  # only runs on this dataset (null: the data of the first run)
    plot: bool = True


def register(cs: Any) -> None:
    """Store the schemas in Hydra's ConfigStore ``cs``."""
    cs.store(name="random_baseline_schema", node=RandomBaselineConfig)
    cs.store(name="zoo_schema", node=ZooConfig)
    cs.store(name="compare_schema", node=CompareConfig)
