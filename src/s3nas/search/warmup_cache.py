"""Warm-up reuse: the supernet after its warm-up epochs, cached by content and shared by later searches.

The warm-up (``schedule.warmup_epochs`` of cross-entropy only) knows nothing of the hardware, the target or the
latency loss. Its result depends on the search space, the data, the warm-up's own schedule, the seed and the
trainer's batches, so those (and the supernet's parameter names and shapes) are hashed into a key; at the end of
the last warm-up epoch the search writes a full Lightning checkpoint to ``<paths.cache_dir>/warmup/<key>.ckpt``
(atomically), and a later search with the same key and nothing of its own to resume starts from it, exactly as a
run resumed from its own checkpoint at that epoch (on CPU: the same network as training the warm-up again).
``schedule.warmup_cache=false`` (or ``S3NAS_WARMUP_CACHE=0`` in the environment, which the test suite sets so that
its hundreds of tiny searches leave nothing in the user's cache) neither reads nor writes it. The summary's
``warmup_source`` says which happened.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from s3nas import __version__

WARMUP_DIR = "warmup"
ENV_SWITCH = "S3NAS_WARMUP_CACHE"  # "0": off for every run of this environment
#: bump when the warm-up's training changes in a way the key's fields do not show
KEY_VERSION = 1
#: data keys that do not change what the warm-up computes
DATA_KEYS_IGNORED = ("num_workers", "persistent_workers", "pin_memory")
#: schedule keys the warm-up depends on (the rest: thresholds, decoding, logging, the search epochs)
SCHEDULE_KEYS = ("warmup_epochs", "optimizer", "gradient_clip_val", "channels_last", "deterministic")
TRAINER_KEYS = ("accelerator", "devices", "num_nodes", "precision", "limit_train_batches", "accumulate_grad_batches",
                "strategy")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def warmup_key(cfg: DictConfig, module: pl.LightningModule, world_size: int) -> str:
    """Content key of this search's warm-up: space, data, warm-up schedule, loss smoothing, seed, trainer, world
    size and the supernet's parameter names and shapes (never the hardware, the target or the latency loss)."""
    data = {k: v for k, v in (_plain(cfg.data) or {}).items() if k not in DATA_KEYS_IGNORED}
    trainer = _plain(cfg.trainer) or {}
    fields = {
        "key_version": KEY_VERSION, "s3nas": __version__,
        "supernet": _plain(cfg.supernet), "candidates": _plain(cfg.candidates), "data": data,
        "schedule": {k: _plain(cfg.schedule.get(k)) for k in SCHEDULE_KEYS},
        "label_smoothing": float(cfg.loss.label_smoothing), "seed": int(cfg.seed),
        "trainer": {k: trainer.get(k) for k in TRAINER_KEYS}, "world_size": int(world_size),
        "parameters": [[name, list(tensor.shape)] for name, tensor in module.state_dict().items()],
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def warmup_cache_path(cfg: DictConfig, module: pl.LightningModule, world_size: int) -> Optional[Path]:
    """``<paths.cache_dir>/warmup/<key>.ckpt``, or None when the cache is off, there is no warm-up or no cache dir."""
    schedule = cfg.schedule
    cache_dir = cfg.paths.get("cache_dir") if cfg.get("paths") is not None else None
    if not schedule.get("warmup_cache", True) or int(schedule.warmup_epochs) <= 0 or not cache_dir \
            or os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    return Path(str(cache_dir)) / WARMUP_DIR / f"{warmup_key(cfg, module, world_size)}.ckpt"


class WarmupCacheWriter(pl.Callback):
    """Writes the trainer's checkpoint to ``path`` at the end of the last warm-up epoch (when it is not there yet).

    Every process calls ``trainer.save_checkpoint`` (rank 0 writes, through the trainer's atomic checkpoint IO);
    a write that fails (a full or read-only cache disk) is a warning: the search itself does not need the cache.
    """

    def __init__(self, path: Path, warmup_epochs: int) -> None:
        self.path, self.warmup_epochs = Path(path), int(warmup_epochs)
        self.written = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.warmup_epochs - 1 or self.path.is_file():
            return
        try:
            if trainer.is_global_zero:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(str(self.path))
            self.written = True
        except OSError as error:
            warnings.warn(f"warm-up cache: could not write {self.path} ({error}); the search goes on without it")
