"""Structured-config schemas (dataclasses) of the entry points and of BASE's config groups.

Each group yaml lists its schema first in its defaults list (``- digits_schema``, ``- trainer_schema``,
...), the Hydra "structured config schema" pattern, so a wrong type or an unknown key fails at
composition naming the key. The top-level schemas (``search_schema``, ``train_schema``) type the
top-level keys; groups are ``Any`` there because their own schema validates them. Every command's schema
extends ``AppConfig`` (paths, logger, seed, task_name, tags), whose values come from conf/base.yaml.
Value ranges are declared as ``RANGES`` tables next to the schemas (s3nas.config.ranges).
``register(cs)`` stores everything in Hydra's ConfigStore (``s3nas.config.register_configs`` calls it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


# ----------------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    """Fields common to every dataset of the `data` group; ``_target_`` is the DataModule class."""

    _target_: str = MISSING  # e.g. s3nas.data.DigitsDataModule (instantiated with the other keys)
    name: str = MISSING  # digits | cifar10 | cifar100 | imagenet
    root: Optional[str] = None  # dataset directory (unused by digits)
    download: bool = False  # fetch with torchvision when the files are missing (CIFAR only)
    image_size: int = 32  # training/eval resolution (square)
    batch_size: int = 64
    eval_batch_size: Optional[int] = None  # null: same as batch_size
    num_workers: int = 0
    pin_memory: bool = False
    split_seed: int = 0  # fixed train/val split, independent of the global seed


@dataclass
class DigitsDataConfig(DataConfig):
    """scikit-learn's bundled 8x8 digits, upsampled; stratified train/val/test split."""

    _target_: str = "s3nas.data.DigitsDataModule"
    name: str = "digits"
    val_fraction: float = 0.15
    test_fraction: float = 0.15


@dataclass
class CifarDataConfig(DataConfig):
    """CIFAR-10/100 python-pickle batches; val held out from the training batches."""

    _target_: str = "s3nas.data.CifarDataModule"
    name: str = "cifar10"
    val_size: int = 5000  # images held out of the 50000 training images (stratified)
    augment: bool = True  # random crop (padding 4) + horizontal flip


@dataclass
class ImageNetDataConfig(DataConfig):
    """Class-folder train/ and val/ trees; timm (Inception-style) transforms."""

    _target_: str = "s3nas.data.ImageNetDataModule"
    name: str = "imagenet"
    image_size: int = 224
    batch_size: int = 256
    num_workers: int = 8
    train_dir: str = "train"
    val_dir: str = "val"
    crop_pct: float = 0.875  # eval: resize to image_size / crop_pct, center crop
    interpolation: str = "bicubic"
    color_jitter: float = 0.4
    auto_augment: Optional[str] = None  # e.g. "rand-m9-mstd0.5" (timm syntax)
    scale_min: float = 0.08  # RandomResizedCrop lower area bound (Inception)


# -------------------------------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    """Keyword arguments of ``pytorch_lightning.Trainer`` (instantiated with ``_target_``)."""

    _target_: str = "pytorch_lightning.Trainer"
    accelerator: str = "cpu"
    devices: Any = 1  # int, list of ids, or "auto"
    strategy: Any = "auto"
    num_nodes: int = 1
    precision: Any = "32-true"
    max_epochs: Optional[int] = None
    min_epochs: Optional[int] = None
    max_steps: int = -1
    limit_train_batches: Optional[Any] = None  # float fraction or int count
    limit_val_batches: Optional[Any] = None
    limit_test_batches: Optional[Any] = None
    val_check_interval: Optional[Any] = None
    check_val_every_n_epoch: Optional[int] = 1
    num_sanity_val_steps: Optional[int] = None
    log_every_n_steps: Optional[int] = None
    fast_dev_run: Any = False  # bool or number of batches
    gradient_clip_val: Optional[float] = None
    accumulate_grad_batches: int = 1
    deterministic: Any = None
    benchmark: Optional[bool] = None
    sync_batchnorm: bool = False
    enable_checkpointing: Optional[bool] = None
    enable_progress_bar: Optional[bool] = None
    enable_model_summary: Optional[bool] = None
    default_root_dir: Optional[str] = None
    profiler: Optional[str] = None
    detect_anomaly: bool = False


# --------------------------------------------------------------------------------------- logger
@dataclass
class LoggerConfig:
    """Fields common to the `logger` group: ``_target_`` is the Lightning logger class, ``kind`` the setup."""

    _target_: Optional[str] = None  # null for logger=none
    kind: str = MISSING  # wandb | csv | none
    name: Optional[str] = None  # run name (null: from the command-line overrides, else W&B's)
    group: Optional[str] = None  # groups runs, e.g. the jobs of one multirun
    save_dir: Optional[str] = None


@dataclass
class WandbLoggerConfig(LoggerConfig):
    """Weights & Biases; offline (under save_dir) unless the user has logged in."""

    _target_: str = "pytorch_lightning.loggers.WandbLogger"
    kind: str = "wandb"
    project: str = "s3nas"
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    job_type: Optional[str] = None
    mode: str = "auto"  # auto (online when logged in, else offline) | online | offline | disabled
    log_model: bool = False  # upload checkpoints as artifacts


@dataclass
class CSVLoggerConfig(LoggerConfig):
    """Lightning's CSVLogger (metrics.csv + hparams.yaml)."""

    _target_: str = "pytorch_lightning.loggers.CSVLogger"
    kind: str = "csv"


@dataclass
class NoLoggerConfig(LoggerConfig):
    """No logger."""

    kind: str = "none"


# ------------------------------------------------------------------------------------ callbacks
@dataclass
class ModelCheckpointConfig:
    """``pytorch_lightning.callbacks.ModelCheckpoint``."""

    _target_: str = "pytorch_lightning.callbacks.ModelCheckpoint"
    dirpath: Optional[str] = None
    filename: Optional[str] = None
    monitor: Optional[str] = None
    mode: str = "min"
    save_last: Optional[bool] = None
    save_top_k: int = 1
    every_n_epochs: Optional[int] = None
    save_weights_only: bool = False
    auto_insert_metric_name: bool = True
    enable_version_counter: bool = True  # false: overwrite a file of the same name instead of writing name-v1


@dataclass
class LearningRateMonitorConfig:
    """``pytorch_lightning.callbacks.LearningRateMonitor`` (dropped when no logger is configured)."""

    _target_: str = "pytorch_lightning.callbacks.LearningRateMonitor"
    logging_interval: Optional[str] = None  # step | epoch | null (per scheduler)


@dataclass
class RichProgressBarConfig:
    """``pytorch_lightning.callbacks.RichProgressBar``."""

    _target_: str = "pytorch_lightning.callbacks.RichProgressBar"
    refresh_rate: int = 1
    leave: bool = False


@dataclass
class CallbacksConfig:
    """The `callbacks` group: each entry is a callback or null (off)."""

    model_checkpoint: Optional[ModelCheckpointConfig] = None
    lr_monitor: Optional[LearningRateMonitorConfig] = None
    rich_progress_bar: Optional[RichProgressBarConfig] = None


# ---------------------------------------------------------------------------- paths, hardware
@dataclass
class PathsConfig:
    """Where things live: project root, datasets, this run's outputs, LUT caches."""

    root: str = MISSING
    data_dir: str = MISSING
    # the Hydra run dir (${hydra:runtime.output_dir}); null only where Hydra has none (`--cfg job --resolve`)
    output_dir: Optional[str] = MISSING
    cache_dir: str = MISSING  # latency-table caches


@dataclass
class HardwareConfig:
    """The `hardware` group: the LatencyBackend class (``_target_``) and its fields; for the simulator a profile
    name, ``profile`` (a YAML path) overriding it."""

    _target_: str = "s3nas.latency.simulated.SimulatorBackend"  # a s3nas.latency.backend.LatencyBackend subclass
    name: str = "midap"
    profile: Optional[str] = None


# ------------------------------------------------------------------------------------ top level
@dataclass
class DeployConfig:
    """Deployment shape the latency is simulated at (the paper's ImageNet setting)."""

    input_size: Optional[int] = 224  # train.py: null = the ArchSpec's own input_size
    num_classes: int = 1000
    in_channels: int = 3


@dataclass
class AppConfig:
    """Keys every command shares; conf/base.yaml (in every command's defaults) gives their values."""

    paths: Any = MISSING  # the paths group
    logger: Any = MISSING  # the logger group (wandb | csv | none)
    seed: int = MISSING  # conf/base.yaml: 42
    task_name: str = MISSING  # names the run dir (outputs/<task_name>/...) and the W&B job type
    tags: list[str] = field(default_factory=list)


@dataclass
class SearchConfig(AppConfig):
    """Top-level keys of conf/search.yaml (groups are validated by their own schemas)."""

    data: Any = MISSING
    supernet: Any = MISSING
    candidates: Any = MISSING
    hardware: Any = MISSING
    loss: Any = MISSING
    schedule: Any = MISSING
    trainer: Any = MISSING
    callbacks: Any = MISSING
    # target with a unit (s3nas.config.units), or a list of them: one network per target (one hardware), or one
    # target per hardware (hardware=[midap,systolic] 'latency=[2.5ms,3.5ms]')
    latency: Any = "2.5ms"
    latency_ms: Optional[float] = None  # resolved from `latency` at startup (what code reads/logs); null for a list
    latency_targets_ms: Optional[list[float]] = None  # every target of `latency` in ms, resolved at startup
    # the other hardware of hardware=[a,b,...] (the command line's list is rewritten to hardware=a plus these)
    extra_hardware: dict[str, Any] = field(default_factory=dict)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    ckpt_path: Optional[str] = None
    optimized_metric: Optional[str] = None  # returned to sweepers (hparams_search)


@dataclass
class TrainConfig(AppConfig):
    """Top-level keys of conf/train.yaml (retraining an ArchSpec)."""

    data: Any = MISSING
    hardware: Any = MISSING
    recipe: Any = MISSING  # s3nas/config/train_schema.py: RecipeConfig
    export: Any = MISSING  # s3nas/config/train_schema.py: ExportConfig
    quantize: Any = MISSING  # s3nas/config/train_schema.py: QuantizeOptions
    trainer: Any = MISSING
    callbacks: Any = MISSING
    # arch.json, a search run dir (its arch.json) or timm:<name>; null: the run dir's checkpoint's arch
    arch: Optional[str] = None
    deploy: DeployConfig = field(default_factory=DeployConfig)
    ckpt_path: Optional[str] = None
    optimized_metric: Optional[str] = None


def register(cs: Any) -> None:
    """Store BASE's schemas in Hydra's ConfigStore ``cs``."""
    cs.store(name="search_schema", node=SearchConfig)
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="data", name="digits_schema", node=DigitsDataConfig)
    cs.store(group="data", name="cifar_schema", node=CifarDataConfig)
    cs.store(group="data", name="imagenet_schema", node=ImageNetDataConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="logger", name="wandb_schema", node=WandbLoggerConfig)
    cs.store(group="logger", name="csv_schema", node=CSVLoggerConfig)
    cs.store(group="logger", name="none_schema", node=NoLoggerConfig)
    cs.store(group="callbacks", name="callbacks_schema", node=CallbacksConfig)
    cs.store(group="paths", name="paths_schema", node=PathsConfig)
    cs.store(group="hardware", name="hardware_schema", node=HardwareConfig)
