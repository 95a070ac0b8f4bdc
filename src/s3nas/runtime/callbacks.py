"""Lightning callbacks from ``cfg.callbacks`` (each entry a ``_target_`` config or null = off)."""

from __future__ import annotations

from typing import Any, Sequence

from hydra.utils import instantiate
from omegaconf import OmegaConf

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
