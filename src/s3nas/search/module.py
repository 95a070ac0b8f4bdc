"""Lightning modules of the two search phases: warm-up (CE only) and latency-aware search.

Both share ``SupernetModule``: one supernet, timm's RMSpropTF with two parameter groups (weights with
weight decay, thresholds without, optionally a larger learning rate), a per-step exponential decay
(x0.97 every 2.4 epochs, counted over both phases so the search continues the warm-up's schedule),
gradient clipping of the weights, label-smoothed CE and per-step reseeding so that a resumed run draws
the same random sub-paths and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from timm.optim import RMSpropTF

PHASES = ("warmup", "search")


@dataclass
class OptimSettings:
    """Optimizer and schedule numbers (paper defaults); ``lr`` is already scaled by batch size."""

    lr: float = 0.016
    alpha: float = 0.9
    momentum: float = 0.9
    eps: float = 1e-3
    weight_decay: float = 1e-5
    threshold_lr_scale: float = 1.0
    threshold_eps: float | None = None
    decay_rate: float = 0.97
    decay_steps: int = 1  # optimizer steps between two x decay_rate
    gradient_clip_val: float | None = 10.0
    threshold_square_avg_init: float | None = None  # RMSpropTF starts square_avg at 1; None keeps that
    threshold_init_margin: float | None = None  # None: thresholds start at 0; else at (norm - margin)
    threshold_momentum: float | None = None  # None: the optimizer's momentum


def lr_factor(step: int, decay_rate: float, decay_steps: int) -> float:
    """Staircase decay: decay_rate ** floor(step / decay_steps)."""
    return decay_rate ** (step // max(1, decay_steps))


class SupernetModule(pl.LightningModule):
    """Shared base: supernet forward, CE, optimizer, schedule, logging and reseeding."""

    phase: str = "warmup"

    def __init__(
        self,
        supernet: torch.nn.Module,
        optim: OptimSettings,
        *,
        label_smoothing: float = 0.1,
        seed: int = 42,
        step_offset: int = 0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.supernet = supernet
        self.optim = optim
        self.label_smoothing = label_smoothing
        self.seed = seed
        self.step_offset = step_offset  # optimizer steps done by earlier phases (schedule + seeds)
        self.channels_last = channels_last
        if channels_last:
            self.supernet.to(memory_format=torch.channels_last)

    # ---- helpers -------------------------------------------------------------------------------
    @property
    def total_step(self) -> int:
        """Optimizer steps over both phases."""
        return self.step_offset + int(self.global_step)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def extra_loss(self) -> dict[str, torch.Tensor]:
        """Phase-specific terms added to CE (none in warm-up)."""
        return {}

    # ---- Lightning hooks -----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self.supernet.set_phase(self.phase)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Seed by step: sub-path sampling and dropout do not depend on how the run got here (resume).
        torch.manual_seed((self.seed * 1_000_003 + self.total_step) % (2**62))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.supernet(self._prepare(images))

    def training_step(self, batch, batch_idx: int):
        images, labels = batch[0], batch[1]
        logits = self(images)
        ce = self._ce(logits, labels)
        extra = self.extra_loss()
        loss = ce + sum(extra.get("loss_terms", [])) if extra else ce
        acc = (logits.argmax(dim=1) == labels).float().mean()
        batch_size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/ce", ce, prog_bar=True, batch_size=batch_size)
        self.log("train/acc", acc, batch_size=batch_size)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=batch_size)
        self.log("train/total_step", float(self.total_step), batch_size=batch_size)
        out = {"loss": loss, "ce": ce.detach(), "acc": acc.detach()}
        for key, value in extra.items():
            if key == "loss_terms":
                continue
            out[key] = value.detach() if torch.is_tensor(value) else value
            self.log(f"train/{key}", value, prog_bar=key == "latency_ms", batch_size=batch_size)
        return out

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch[0], batch[1]
        logits = self(images)
        self.log("val/ce", self._ce(logits, labels), batch_size=images.shape[0], sync_dist=True)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        self.log("val/acc", acc, prog_bar=True, batch_size=images.shape[0], sync_dist=True)

    def configure_optimizers(self):
        o = self.optim
        thresholds = list(self.supernet.threshold_parameters())
        threshold_ids = {id(p) for p in thresholds}
        weights = [p for p in self.supernet.parameters() if id(p) not in threshold_ids]
        groups = [
            {"params": weights, "lr": o.lr, "weight_decay": o.weight_decay, "name": "weights"},
            {
                "params": thresholds,
                "lr": o.lr * o.threshold_lr_scale,
                "weight_decay": 0.0,
                "name": "thresholds",
                "eps": o.threshold_eps if o.threshold_eps is not None else o.eps,
                "momentum": o.threshold_momentum if o.threshold_momentum is not None else o.momentum,
            },
        ]
        optimizer = RMSpropTF(groups, lr=o.lr, alpha=o.alpha, eps=o.eps, momentum=o.momentum,
                              weight_decay=o.weight_decay)
        offset, rate, every = self.step_offset, o.decay_rate, o.decay_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step + offset, rate, every))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Clip the weights only (paper: clipping 10 in warm-up); thresholds' latency gradients are not
        # clipped away, RMSProp normalises their scale anyway.
        clip = self.optim.gradient_clip_val
        if clip:
            params = [p for p in optimizer.param_groups[0]["params"] if p.grad is not None]
            if params:
                torch.nn.utils.clip_grad_norm_(params, clip)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["s3nas"] = {"phase": self.phase, "step_offset": self.step_offset,
                               "total_step": self.total_step}


@torch.no_grad()
def init_thresholds_below_norms(supernet: torch.nn.Module, margin: float) -> int:
    """Set every threshold to (its ring/slice weight norm - margin): all options stay on, but within reach.

    The paper starts thresholds at 0 while the norms are ~10: with its thousands of ImageNet steps the
    thresholds get there; a short search would spend its budget travelling. Returns thresholds set.
    """
    count = 0
    for sk in supernet.superkernels():
        if getattr(sk, "kernel_thresholds", None) is not None:
            sq = sk.weight.pow(2).sum(dim=(0, 1))
            ring_norm = (sk.ring_masks[1:] * sq).sum(dim=(1, 2)).clamp_min(1e-24).sqrt()
            sk.kernel_thresholds.copy_(ring_norm - margin)
            count += ring_norm.numel()
        if getattr(sk, "channel_thresholds", None) is not None:
            kernel_u = sk.kernel_indicators()
            weight = sk.weight * sk.kernel_mask(kernel_u) if kernel_u.numel() else sk.weight
            per_channel = weight.pow(2).sum(dim=(1, 2, 3))
            slice_norm = (sk.slice_masks @ per_channel).clamp_min(1e-24).sqrt()
            if not sk.first_optional:
                slice_norm = slice_norm[1:]
            sk.channel_thresholds.copy_(slice_norm - margin)
            count += slice_norm.numel()
    return count


class _FeasibleTracking:
    """Mixin: remember the largest-latency architecture under the target met during the search."""

    def _track_feasible(self, latency_ms: float) -> None:
        if latency_ms <= self.target_ms and (self.best_feasible is None or latency_ms >= self.best_feasible[0]):
            options = [tuple(o) for o in self.supernet.chosen_options()]
            self.best_feasible = (latency_ms, self.total_step, options)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.best_feasible is not None:
            latency_ms, step, options = self.best_feasible
            checkpoint["s3nas"]["best_feasible"] = {
                "latency_ms": latency_ms, "step": step,
                "options": [[[b.kernel, b.expansion] for b in o] for o in options]}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        from s3nas.arch.spec import Branch

        best = (checkpoint.get("s3nas") or {}).get("best_feasible")
        if best:
            options = [tuple(Branch(int(k), float(e)) for k, e in o) for o in best["options"]]
            self.best_feasible = (float(best["latency_ms"]), int(best["step"]), options)


class SearchInterrupted(RuntimeError):
    """Raised by ``InterruptAfter`` (fault injection: simulates a crash for resume tests)."""


class InterruptAfter(pl.Callback):
    """Raise ``SearchInterrupted`` once ``total_step`` reaches ``steps`` (``schedule.interrupt_after_steps``)."""

    def __init__(self, steps: int) -> None:
        self.steps = int(steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.total_step >= self.steps:
            raise SearchInterrupted(f"interrupted after {pl_module.total_step} steps (schedule.interrupt_after_steps)")


class WarmupModule(SupernetModule):
    """Phase 1: supergraph training, CE only, every sub-path sampled with equal probability."""

    phase = "warmup"


class SearchModule(_FeasibleTracking, SupernetModule):
    """Phase 2: CE + lambda1 * log(1 + lambda2 * relu(latency - target)); thresholds learn."""

    phase = "search"

    def __init__(
        self,
        supernet: torch.nn.Module,
        optim: OptimSettings,
        *,
        estimator,
        target_ms: float,
        loss_target_ms: float | None = None,
        lambda1: float = 15.0,
        lambda2: float = 100.0,
        **kwargs,
    ) -> None:
        super().__init__(supernet, optim, **kwargs)
        self.estimator = estimator
        self.target_ms = float(target_ms)
        self.loss_target_ms = float(loss_target_ms if loss_target_ms is not None else target_ms)
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.initial_optimizer_state: dict | None = None  # warm-up's final optimizer state
        # Largest hard-state LUT latency <= target seen during the search: (latency_ms, step, options).
        self.best_feasible: tuple[float, int, list] | None = None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        # Continue the warm-up's optimizer (RMSProp averages, momentum) unless Lightning restores one.
        if self.initial_optimizer_state is not None and self.trainer.ckpt_path is None:
            optimizer = self.trainer.optimizers[0]
            keep = [(g["lr"], g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
            optimizer.load_state_dict(self.initial_optimizer_state)
            for group, (lr, initial_lr) in zip(optimizer.param_groups, keep):
                group["lr"], group["initial_lr"] = lr, initial_lr
        if self.trainer.ckpt_path is None and self.optim.threshold_init_margin is not None:
            init_thresholds_below_norms(self.supernet, float(self.optim.threshold_init_margin))
        if self.trainer.ckpt_path is None and self.optim.threshold_square_avg_init is not None:
            # Thresholds had no gradient in warm-up: start their RMSProp statistics explicitly, so that
            # the first latency gradients are normalised instead of divided by sqrt(1).
            optimizer = self.trainer.optimizers[0]
            for p in optimizer.param_groups[1]["params"]:
                optimizer.state[p] = {
                    "step": torch.tensor(0.0),
                    "square_avg": torch.full_like(p, float(self.optim.threshold_square_avg_init)),
                    "momentum_buffer": torch.zeros_like(p),
                }

    def extra_loss(self) -> dict:
        from s3nas.latency.loss import latency_loss

        latency_ms = self.estimator(self.supernet)
        self._track_feasible(float(latency_ms.detach()))
        term = latency_loss(latency_ms, self.loss_target_ms, lambda1=self.lambda1, lambda2=self.lambda2)
        return {
            "loss_terms": [term],
            "latency_loss": term,
            "latency_ms": latency_ms,
            "target_ms": torch.tensor(self.target_ms),
        }
