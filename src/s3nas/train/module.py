"""Lightning module of the retraining: the paper's (EfficientNet's) recipe through timm.

RMSpropTF with the lr scaled by the global batch, timm's StepLRScheduler (linear warm-up, then x0.97 every
2.4 epochs, both counted in optimizer steps) or a cosine schedule, label-smoothed cross entropy, and a
model EMA (timm ModelEmaV3) that is what validation, test, checkpoints and export use. The EMA is a
submodule, so its weights travel in every checkpoint; the optimizer only sees the network's parameters.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torchmetrics
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, StepLRScheduler
from timm.utils import ModelEmaV3
from torch import nn

EMA_WARMUPS = ("tf", "timm", "none")
SCHEDULERS = ("step", "cosine")


class ModelEma(ModelEmaV3):
    """timm ModelEmaV3 with the TensorFlow warm-up of the paper's code: min(decay, (1+n)/(10+n))."""

    def __init__(self, model: nn.Module, decay: float, warmup: str = "tf", warmup_power: float = 0.75) -> None:
        super().__init__(model, decay=decay, use_warmup=warmup == "timm", warmup_power=warmup_power)
        self.warmup_mode = warmup

    def get_decay(self, step: Optional[int] = None) -> float:
        if self.warmup_mode == "tf" and step is not None:
            return min(self.decay, (1.0 + step) / (10.0 + step))
        return super().get_decay(step)


@dataclass(frozen=True)
class RecipeSettings:
    """The numbers the module needs, already scaled (lr) and converted to steps."""

    lr: float
    optimizer: str = "rmsproptf"
    alpha: float = 0.9
    momentum: float = 0.9
    eps: float = 1e-3
    weight_decay: float = 1e-5
    filter_bias_and_bn: bool = True
    scheduler: str = "step"
    warmup_steps: int = 0
    warmup_lr_init: float = 1e-6
    decay_rate: float = 0.97
    decay_steps: int = 1
    total_steps: int = 1
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    ema: bool = True
    ema_decay: float = 0.9999
    ema_warmup: str = "tf"
    ema_warmup_power: float = 0.75
    channels_last: bool = False
    validate_raw: bool = True
    augment_shift: int = 0  # random translation of each training image by up to this many pixels (0: off)
    seed: int = 42


class RetrainModule(pl.LightningModule):
    """Trains ``model``; evaluates (and exposes as ``eval_model``) its EMA when enabled.

    Accuracies are torchmetrics' top-1 ``MulticlassAccuracy`` (micro: correct / seen over the epoch, summed
    over DDP ranks), one metric object per logged curve; ``num_classes`` defaults to ``meta["num_classes"]``
    or the model's ``num_classes``.
    """

    def __init__(self, model: nn.Module, settings: RecipeSettings, meta: Optional[dict] = None,
                 num_classes: Optional[int] = None) -> None:
        super().__init__()
        self.settings = settings
        self.meta = dict(meta or {})  # recorded in checkpoints (network, classes, image size)
        num_classes = num_classes or self.meta.get("num_classes") or getattr(model, "num_classes", None)
        if not num_classes:
            raise ValueError("RetrainModule: pass num_classes (or meta['num_classes']) for the accuracy metrics")
        curves = ["train/acc", "val/acc", "test/acc"]
        if settings.ema and settings.validate_raw:
            curves += ["val/acc_raw", "test/acc_raw"]
        # keys without '/' (a ModuleDict key may not hold one); not persistent: checkpoints are unchanged
        self.accuracy = nn.ModuleDict({curve.replace("/", "_"): torchmetrics.classification.MulticlassAccuracy(
            num_classes=int(num_classes), average="micro") for curve in curves})
        if settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = ModelEma(model, settings.ema_decay, settings.ema_warmup, settings.ema_warmup_power) \
            if settings.ema else None
        if self.ema is not None:
            self.ema.requires_grad_(False)  # never trained, ignored by DDP's gradient sync
        self.criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
        self.eval_criterion = nn.CrossEntropyLoss()
        self._seconds_before = 0.0  # training time of the run(s) this one resumes
        self._fit_started: Optional[float] = None

    # ------------------------------------------------------------------------------ networks
    @property
    def eval_model(self) -> nn.Module:
        """The network that is evaluated, saved and exported: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_model(self._format(x))

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.settings.channels_last else x

    # ------------------------------------------------------------------------------ steps
    def on_train_epoch_start(self) -> None:
        # Dropout/drop-path draws depend on (seed, epoch) only, so a run resumed at an epoch boundary
        # continues exactly like an uninterrupted one (Lightning does not restore the global RNG).
        epoch_seed = (self.settings.seed * 1_000_003 + self.current_epoch * 7919 + self.global_rank) % (2**31)
        torch.manual_seed(epoch_seed)
        random.seed(epoch_seed)
        np.random.seed(epoch_seed)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        if self.settings.augment_shift > 0:
            images = random_shift(images, self.settings.augment_shift)
        logits = self.model(self._format(images))  # (B, classes)
        loss = self.criterion(logits, labels)
        accuracy = self.accuracy["train_acc"]
        accuracy(logits.detach(), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        self.log("train/acc", accuracy, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def _evaluate(self, batch: Any, stage: str) -> None:
        images, labels = batch
        images = self._format(images)
        logits = self.eval_model(images)
        self.log(f"{stage}/loss", self.eval_criterion(logits, labels), batch_size=len(labels), sync_dist=True)
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(logits, labels)
        self.log(f"{stage}/acc", accuracy, prog_bar=stage == "val", batch_size=len(labels))
        if self.ema is not None and self.settings.validate_raw:
            accuracy_raw = self.accuracy[f"{stage}_acc_raw"]
            accuracy_raw(self.model(images), labels)
            self.log(f"{stage}/acc_raw", accuracy_raw, batch_size=len(labels))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # ------------------------------------------------------------------------------ optimizer
    def configure_optimizers(self) -> Any:
        s = self.settings
        extra = {"alpha": s.alpha, "eps": s.eps} if s.optimizer.lower() in ("rmsproptf", "rmsprop") else {}
        optimizer = create_optimizer_v2(self.model, opt=s.optimizer, lr=s.lr, weight_decay=s.weight_decay,
                                        momentum=s.momentum, filter_bias_and_bn=s.filter_bias_and_bn, **extra)
        if s.scheduler == "cosine":
            scheduler = CosineLRScheduler(optimizer, t_initial=max(1, s.total_steps - s.warmup_steps),
                                          lr_min=s.min_lr, warmup_t=s.warmup_steps, warmup_lr_init=s.warmup_lr_init,
                                          warmup_prefix=True, t_in_epochs=False)
        else:
            scheduler = StepLRScheduler(optimizer, decay_t=s.decay_steps, decay_rate=s.decay_rate,
                                        warmup_t=s.warmup_steps, warmup_lr_init=s.warmup_lr_init,
                                        warmup_prefix=True, t_in_epochs=False)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def lr_scheduler_step(self, scheduler: Any, metric: Any = None) -> None:
        # timm schedulers are stepped with the number of optimizer updates done so far
        scheduler.step_update(num_updates=self.global_step)

    # ------------------------------------------------------------------------------ checkpoints
    def on_fit_start(self) -> None:
        self._fit_started = time.time()

    def train_seconds(self) -> float:
        """Wall time spent in fit so far, including the runs this one resumed (up to their checkpoint)."""
        running = time.time() - self._fit_started if self._fit_started is not None else 0.0
        return self._seconds_before + running

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["s3nas_train"] = dict(self.meta, ema=self.ema is not None, train_seconds=self.train_seconds())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("s3nas_train") or {}
        self._seconds_before = float(meta.get("train_seconds", 0.0))
        self._fit_started = time.time()


def random_shift(images: torch.Tensor, shift: int) -> torch.Tensor:
    """Translate each image of a (B, C, H, W) batch by its own random (dy, dx) in [-shift, shift].

    The border is padded by replicating the edge pixels (the digits' background). Draws come from torch's
    global RNG, which ``on_train_epoch_start`` seeds per epoch, so resumed runs draw the same shifts.
    """
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (shift, shift, shift, shift), mode="replicate")
    offsets = torch.randint(0, 2 * shift + 1, (batch, 2))
    return torch.stack([padded[i, :, dy:dy + height, dx:dx + width]
                        for i, (dy, dx) in enumerate(offsets.tolist())])


def scaled_lr(lr_per_256: float, global_batch: int) -> float:
    """lr = lr_per_256 * global batch / 256 (the paper's linear scaling)."""
    return float(lr_per_256) * int(global_batch) / 256.0


def steps_of(epochs: float, steps_per_epoch: int) -> int:
    """Epochs (fractional allowed) -> optimizer steps, at least 1 when epochs > 0."""
    return int(max(1 if epochs > 0 else 0, math.floor(float(epochs) * steps_per_epoch + 0.5)))
