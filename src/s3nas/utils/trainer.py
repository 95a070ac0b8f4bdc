"""Small helpers shared by the search and the retraining: global batch size and steps per epoch."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def world_size_of(trainer_cfg: Any) -> int:
    """Devices x nodes when given as numbers (lr scaling); 1 otherwise."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, bool):
        count = 1
    elif isinstance(devices, int):
        count = devices
    elif OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        count = len(devices)
    else:
        count = 1
    return max(1, count) * max(1, int(trainer_cfg.get("num_nodes", 1) or 1))


def limited_steps(num_batches: int, limit: Any) -> int:
    """Batches per epoch after trainer.limit_train_batches (int count or float fraction)."""
    if isinstance(limit, bool) or limit is None:
        return num_batches
    if isinstance(limit, int):
        return max(1, min(num_batches, limit))
    if isinstance(limit, float):
        return max(1, int(num_batches * limit))
    return num_batches
