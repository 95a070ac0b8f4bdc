"""Lightning callbacks from ``cfg.callbacks`` (each entry a ``_target_`` config or null = off), and the
callbacks every training adds itself: ``StopOnSignal`` (SIGTERM / SIGUSR1 -> resumable checkpoint, then stop;
see ``s3nas.runtime.signals``) and ``SignalAtStep`` (its fault injection for tests)."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from s3nas.runtime import signals

#: Callbacks that need a logger (Lightning raises without one): dropped when no logger is configured.
NEEDS_LOGGER = ("pytorch_lightning.callbacks.LearningRateMonitor", "lightning.pytorch.callbacks.LearningRateMonitor")
#: Progress bars: dropped when trainer.enable_progress_bar is false (Lightning refuses a bar it cannot show).
PROGRESS_BARS = tuple(f"{package}.callbacks.{name}" for package in ("pytorch_lightning", "lightning.pytorch")
                      for name in ("RichProgressBar", "TQDMProgressBar"))


def build_callbacks(cfg: Any, loggers: Sequence[Any] = ()) -> list:
    """Instantiate every non-null entry of ``cfg.callbacks``; LR monitors only when ``loggers`` is non-empty,
    progress bars only when ``trainer.enable_progress_bar`` is not false."""
    callbacks_cfg = cfg.get("callbacks") if hasattr(cfg, "get") else None
    if not callbacks_cfg:
        return []
    callbacks = []
    for name, entry in callbacks_cfg.items():
        if entry is None:
            continue
        params = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else dict(entry)
        if params.get("_target_") in NEEDS_LOGGER and not loggers:
            continue
        if params.get("_target_") in PROGRESS_BARS and _progress_bar_off(cfg):
            continue
        callbacks.append(instantiate(params, _convert_="all"))
    return callbacks


def _progress_bar_off(cfg: Any) -> bool:
    """trainer.enable_progress_bar set to false (debug=search_small/search_tiny, profile_space)."""
    trainer_cfg = cfg.get("trainer") if hasattr(cfg, "get") else None
    return trainer_cfg is not None and trainer_cfg.get("enable_progress_bar") is False


# ----------------------------------------------------------------------------------- signals
#: Lightning's warning for a mid-epoch resume with a plain loader: StopOnSignal repositions ours itself.
_MID_EPOCH_WARNING = r".*resuming from a checkpoint that ended before the epoch ended.*"


class StopOnSignal(pl.Callback):
    """Stop a single-process fit on SIGTERM / SIGUSR1 at the start of the next training batch, after writing a
    checkpoint a resumed run continues from exactly.

    The checkpoint is ``last.ckpt`` in the ModelCheckpoint's directory (none without checkpointing). It is taken
    before the batch, where every hook of the previous step (module, EMA, line search, LR schedulers) has run;
    it records the position in the epoch and the global RNG states. Resuming from it, ``train_loader``'s
    ``EpochSeededSampler`` skips the batches already trained and the RNGs are restored before the first batch,
    so the resumed run draws the same batches, dropout masks and augmentations as an uninterrupted one.
    A signal that arrives after the last batch of an epoch is taken at the next epoch's first batch (the epoch
    ends normally, its checkpoints included) or, after the last epoch, when fit returns (the runner raises it).
    """

    def __init__(self, train_loader: Any = None) -> None:
        self.train_loader = train_loader
        self.active = False
        self._saving: Optional[dict] = None
        self._resume: Optional[dict] = None

    # ---- the stop ----------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.world_size == 1 and not self.active:
            self.active = True  # with several processes Lightning's own SIGTERM handling stays in charge
            signals.enter_deferred()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.active:
            self.active = False
            signals.leave_deferred()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active:
            signals.reinstall()  # over Lightning's SIGTERM notifier, which would stop mid-validation
        if self._resume is not None:
            _set_rng_state(self._resume["rng"])
            self._resume = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        signum = signals.pending() if self.active else None
        if signum is None:
            return
        directory = _checkpoint_dir(trainer)
        if directory is not None:
            progress = trainer.fit_loop.epoch_loop.batch_progress.current
            self._saving = {"epoch": int(trainer.current_epoch), "position": int(progress.completed),
                            "batch_size": int(getattr(self.train_loader, "batch_size", 0) or 0),
                            "rng": _rng_state()}
            path = directory / f"{pl.callbacks.ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
            for callback in trainer.checkpoint_callbacks:
                if getattr(callback, "save_last", False) and Path(str(callback.dirpath)) == directory:
                    # its own last.ckpt from now on: the resumed run overwrites it instead of writing last-v1.ckpt
                    callback.last_model_path = str(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with signals.held():  # a second signal (or Ctrl-C) waits for the complete file
                    trainer.save_checkpoint(path)
            finally:
                self._saving = None
            signals.record_checkpoint(str(path), int(trainer.global_step))
        signals.raise_pending()

    # ---- the checkpoint ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return dict(self._saving) if self._saving is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict or state_dict.get("position") is None:
            return
        self._resume = dict(state_dict)
        sampler = getattr(self.train_loader, "sampler", None)
        batch_size = int(state_dict.get("batch_size") or getattr(self.train_loader, "batch_size", 0) or 0)
        if hasattr(sampler, "resume_at") and batch_size:
            sampler.resume_at(int(state_dict["epoch"]), int(state_dict["position"]) * batch_size)
            warnings.filterwarnings("ignore", message=_MID_EPOCH_WARNING)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._saving is None:
            return
        # Saved before the batch: Lightning's restart adds the step's logging counter once more; take it back
        # so the resumed run logs at the same steps.
        epoch_loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict")
        if isinstance(epoch_loop, dict) and epoch_loop.get("_batches_that_stepped"):
            epoch_loop["_batches_that_stepped"] -= 1


class SignalAtStep(pl.Callback):
    """Fault injection ($S3NAS_FAULT_SIGNAL_AT_STEP=N:TERM): send this process the signal after step N."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum, self.sent = int(step), int(signum), False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)


def signal_callbacks(train_loader: Any) -> list:
    """``StopOnSignal(train_loader)`` plus ``SignalAtStep`` when $S3NAS_FAULT_SIGNAL_AT_STEP is set."""
    fault = signals.fault_signal_at_step()
    return [StopOnSignal(train_loader), *([SignalAtStep(*fault)] if fault else [])]


def _checkpoint_dir(trainer: pl.Trainer) -> Optional[Path]:
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None) if callback is not None else None
    return Path(str(dirpath)) if dirpath else None


def _rng_state() -> dict:
    """torch (CPU and CUDA), random and numpy global RNG states as plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "random": random.getstate(),
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
