"""Structured-config schemas of train.py's groups: `recipe` (the retraining recipe) and `export` (ONNX).

Every number of the paper's retraining recipe (EfficientNet's, through timm) is a field here, with the
paper's value as default; conf/recipe/digits.yaml shortens the schedule for the embedded data.
``register(cs)`` stores the schemas in Hydra's ConfigStore (``s3nas.config.register_configs`` calls it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from s3nas.config.ranges import Range
from s3nas.config.schema import AppConfig


@dataclass
class RetrainOptimizerConfig:
    """timm's RMSpropTF (TensorFlow-style RMSProp); lr = lr_per_256 * global batch / 256."""

    name: str = "rmsproptf"  # rmsproptf | any name timm.optim.create_optimizer_v2 accepts
    lr_per_256: float = 0.016
    alpha: float = 0.9  # RMSProp decay
    momentum: float = 0.9
    eps: float = 1.0e-3
    weight_decay: float = 1.0e-5
    filter_bias_and_bn: bool = True  # no weight decay on biases and BatchNorm (timm's default)


@dataclass
class RetrainSchedulerConfig:
    """Linear warm-up, then lr x decay_rate every decay_epochs (staircase, updated every step)."""

    name: str = "step"  # step (the paper) | cosine
    warmup_epochs: float = 5.0
    warmup_lr_init: float = 1.0e-6  # lr at step 0 of the warm-up
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    min_lr: float = 0.0  # cosine only


@dataclass
class EmaConfig:
    """Model EMA (timm ModelEmaV3); the EMA weights are evaluated, checkpointed and exported."""

    enabled: bool = True
    decay: float = 0.9999
    # tf: decay = min(decay, (1 + step) / (10 + step)), TensorFlow's ExponentialMovingAverage with
    # num_updates as the paper's code uses it; timm: ModelEmaV3's use_warmup curve; none: constant decay.
    warmup: str = "tf"
    warmup_power: float = 0.75  # timm warm-up only


@dataclass
class AugmentConfig:
    """Batch-level augmentation of in-memory tensor data (digits); ImageNet folders use timm's transforms."""

    shift: int = 0  # translate each training image by up to this many pixels (replicate-padded); 0: off


@dataclass
class RecipeConfig:
    """The `recipe` group: epochs, optimizer, schedule, regularisation, EMA, CPU threads."""

    name: str = "imagenet"
    epochs: int = 350
    optimizer: RetrainOptimizerConfig = field(default_factory=RetrainOptimizerConfig)
    scheduler: RetrainSchedulerConfig = field(default_factory=RetrainSchedulerConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    label_smoothing: float = 0.1
    drop_path: float = 0.2  # stochastic depth of the last block (linear in depth)
    dropout: Optional[float] = 0.2  # before the classifier; null: the arch's own value (0.4 in scaled arch.json)
    channels_last: bool = True  # NHWC: oneDNN's convolutions on CPU (3x faster training steps here), GPUs' fast layout
    validate_raw: bool = True  # also evaluate the raw (non-EMA) weights: val/acc_raw
    deterministic: bool = True  # Trainer(deterministic=True) on CPU unless trainer.deterministic is set
    num_threads: Optional[int] = None  # torch CPU threads (null: torch's default)
    log_every_n_steps: int = 10


@dataclass
class ExportOptions:
    """How a trained (EMA) network is written to ONNX and checked against onnxruntime."""

    input_size: Optional[int] = None  # null: the training resolution
    opset: int = 18
    dynamic_batch: bool = True
    check: bool = True  # compare onnxruntime with torch on random and real images
    atol: float = 1.0e-4  # max abs difference of the logits accepted by the check


@dataclass
class ExportConfig(ExportOptions):
    """The `export` group of train.py: the options above, and whether train.py exports at its end."""

    onnx: bool = False  # write model.onnx at the end of train.py


@dataclass
class ExportAppConfig(AppConfig, ExportOptions):
    """Top-level keys of conf/export.yaml (``s3nas-export run_dir=<train.py run dir>``)."""

    run_dir: Optional[str] = None  # a train.py run dir (weights.pt, or checkpoints/last.ckpt); required
    output: Optional[str] = None  # null: <run_dir>/model.onnx
    weights: Optional[str] = None  # null: the run's weights.pt, else its last checkpoint


QUANTIZE_MODES = ("none", "int8")


@dataclass
class QuantizeOptions:
    """INT8 post-training quantization (and optional quantization-aware fine-tuning) of a trained network.

    onnxruntime's static quantizer writes a QDQ ONNX model: weights INT8 symmetric per output channel,
    activations UINT8 per tensor from ``calibration_images`` training images, BatchNorm folded
    (``s3nas.utils.onnxquant``).
    """

    mode: str = "none"  # none | int8
    calibration_images: int = 512  # training images (no augmentation) the activation ranges come from
    calibration_method: str = "minmax"  # minmax (onnxruntime's default) | entropy | percentile
    per_channel: bool = True  # per-output-channel weight scales (false: one scale per tensor)
    # Quantization-aware fine-tuning after PTQ: epochs of the recipe (same optimizer, EMA, augmentation) with
    # fake-quantized weights and inputs, at the recipe's peak lr x qat_lr_scale; 0: PTQ only.
    qat_epochs: int = 0
    qat_lr_scale: float = 0.01
    allow_float_ops: list[str] = field(default_factory=list)  # ONNX operators allowed to stay float (e.g. [Erf])


@dataclass
class QuantizeAppConfig(AppConfig, QuantizeOptions):
    """Top-level keys of conf/quantize.yaml (``python -m s3nas.quantize run_dir=<train.py run dir>``)."""

    run_dir: Optional[str] = None  # a finished train.py run dir (weights.pt); required
    mode: str = "int8"


#: Value ranges of the quantization keys (train.py's `quantize` group and python -m s3nas.quantize alike).
QUANTIZE_RANGES = {
    "calibration_images": Range(low=1, integer=True),
    "qat_epochs": Range(low=0, integer=True),
    "qat_lr_scale": Range(low=0, low_open=True),
}

#: Value ranges of the recipe keys (s3nas.config.ranges); types are checked by the schema at composition.
RECIPE_RANGES = {
    "epochs": Range(low=1, integer=True),
    "optimizer.lr_per_256": Range(low=0, low_open=True),
    "ema.decay": Range(low=0, high=1, high_open=True),
    "label_smoothing": Range(low=0, high=1, high_open=True),
    "drop_path": Range(low=0, high=1, high_open=True),
    "dropout": Range(low=0, high=1, high_open=True, nullable=True),
    "num_threads": Range(low=1, integer=True, nullable=True),
    "log_every_n_steps": Range(low=1, integer=True),
}
#: Value ranges of the export options (train.py's `export` group and s3nas-export alike).
EXPORT_RANGES = {
    "input_size": Range(low=1, integer=True, nullable=True),
    "opset": Range(low=11, integer=True),
    "atol": Range(low=0, low_open=True),
}


def register(cs: Any) -> None:
    """Store the recipe and export schemas in Hydra's ConfigStore ``cs``."""
    cs.store(group="recipe", name="recipe_schema", node=RecipeConfig)
    cs.store(group="export", name="export_schema", node=ExportConfig)
    cs.store(name="export_app_schema", node=ExportAppConfig)
    cs.store(group="quantize", name="quantize_schema", node=QuantizeOptions)
    cs.store(name="quantize_app_schema", node=QuantizeAppConfig)
