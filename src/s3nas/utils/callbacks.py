"""Lightning callbacks from ``cfg.callbacks`` (each entry a ``_target_`` config or null = off)."""

from __future__ import annotations

from typing import Any, Sequence

#: Callbacks that need a logger (Lightning raises without one): dropped when no logger is configured.
NEEDS_LOGGER = ("pytorch_lightning.callbacks.LearningRateMonitor", "lightning.pytorch.callbacks.LearningRateMonitor")


def build_callbacks(cfg: Any, loggers: Sequence[Any] = ()) -> list:
    """Instantiate every non-null entry of ``cfg.callbacks``; LR monitors only when ``loggers`` is non-empty."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

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
        callbacks.append(instantiate(params, _convert_="all"))
    return callbacks
