"""Helpers shared by the search and the retraining: the Lightning trainer, global batch size, steps per epoch."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from s3nas.errors import ConfigError


def build_trainer(trainer_cfg: Any, *, max_epochs: int, callbacks: list, loggers: list, enable_checkpointing: bool,
                  deterministic: bool, log_every_n_steps: int | None = None, drop_keys: Iterable[str] = (),
                  ddp_find_unused_parameters: bool = False, plugins: Sequence[Any] = ()) -> Any:
    """``pl.Trainer`` from the ``trainer`` config node (``_target_`` defaults to ``pytorch_lightning.Trainer``)
    with what the calling command owns.

    ``drop_keys``: trainer keys the command sets itself (dropped from the node); ``max_epochs``, ``callbacks``,
    ``loggers`` (none: ``logger=False``) and ``enable_checkpointing`` are the command's; ``deterministic``:
    switch deterministic algorithms on unless the node already does (``"warn"`` off the CPU);
    ``log_every_n_steps``: overrides the node's when given; ``ddp_find_unused_parameters``: plain ``ddp``
    becomes ``ddp_find_unused_parameters_true``; ``plugins`` are appended to the node's. A missing
    ``num_sanity_val_steps`` is 0.
    """
    config = OmegaConf.to_container(trainer_cfg, resolve=True) if OmegaConf.is_config(trainer_cfg) \
        else dict(trainer_cfg)
    for key in drop_keys:
        config.pop(key, None)
    config.setdefault("_target_", "pytorch_lightning.Trainer")
    config["max_epochs"] = int(max_epochs)
    if config.get("deterministic") in (None, False) and deterministic:
        config["deterministic"] = True if config.get("accelerator", "cpu") == "cpu" else "warn"
    if ddp_find_unused_parameters and config.get("strategy") == "ddp":
        config["strategy"] = "ddp_find_unused_parameters_true"
    if config.get("num_sanity_val_steps") is None:
        config["num_sanity_val_steps"] = 0
    if log_every_n_steps is not None:
        config["log_every_n_steps"] = int(log_every_n_steps)
    extra: dict = {}
    if plugins:  # passed beside the node: plugin objects are no config values
        extra["plugins"] = list(config.pop("plugins", None) or []) + list(plugins)
    return instantiate(config, callbacks=callbacks, logger=loggers or False, enable_checkpointing=enable_checkpointing,
                       _convert_="all", **extra)


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


def check_loader_values(data_cfg: Any) -> None:
    """ConfigError for a batch size < 1 or a negative worker count (before any DataLoader sees them)."""
    batch_size = data_cfg.get("batch_size")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"data.batch_size: must be an integer >= 1, got {batch_size!r}")
    workers = data_cfg.get("num_workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"data.num_workers: must be an integer >= 0, got {workers!r}")


def check_finite(node: Any, prefix: str) -> None:
    """ConfigError naming the first NaN/inf number under a config node (they pass every < / > check)."""
    if isinstance(node, (DictConfig, dict)):
        for key in node.keys():
            check_finite(node[key], f"{prefix}.{key}")
    elif isinstance(node, (ListConfig, list, tuple)):
        for i, value in enumerate(node):
            check_finite(value, f"{prefix}[{i}]")
    elif isinstance(node, float) and (node != node or node in (float("inf"), float("-inf"))):
        raise ConfigError(f"{prefix}: must be a finite number, got {node}")
