"""Lightning DataModules: embedded digits (default), CIFAR-10/100 python batches, ImageNet class folders.

``build_datamodule(cfg.data)`` instantiates ``data._target_`` (each ``conf/data/*.yaml`` names its module;
a config without one gets the built-in module of ``data.name``) with the other keys as keyword arguments.
Every module exposes ``num_classes``, ``in_channels`` and ``image_size`` right after construction (before
``setup``), and raises a one-line ``DataError`` when its files are missing.
"""

from __future__ import annotations

import importlib
from typing import Any

from s3nas.config import instantiate_config
from s3nas.data.base import ImageDataModule, config_dict
from s3nas.data.cifar import CifarDataModule
from s3nas.data.digits import DigitsDataModule
from s3nas.data.imagenet import ImageNetDataModule
from s3nas.errors import ConfigError

#: data.name -> DataModule class
DATAMODULES: dict[str, type[ImageDataModule]] = {
    "digits": DigitsDataModule,
    "cifar10": CifarDataModule,
    "cifar100": CifarDataModule,
    "imagenet": ImageNetDataModule,
}


def target_of(module_cls: type) -> str:
    """The ``_target_`` spelling of a built-in DataModule class (``s3nas.data.DigitsDataModule``)."""
    return f"{__name__}.{module_cls.__name__}"


def build_datamodule(data_cfg: Any, **overrides: Any) -> ImageDataModule:
    """The DataModule of ``data_cfg`` (``cfg.data``) from its ``_target_``; ``overrides`` replace config values
    (e.g. batch_size). A built-in module must be the one of ``data.name``; a module of your own (a
    ``_target_`` outside s3nas.data) may use any name."""
    cfg = {**config_dict(data_cfg), **overrides}
    name = cfg.get("name")
    target = cfg.pop("_target_", None) or (target_of(DATAMODULES[name]) if name in DATAMODULES else None)
    builtin = _builtin_class(target)
    if target is None or (builtin is not None and name not in DATAMODULES):
        raise ConfigError(f"data.name: {name!r} is not a dataset; use {', '.join(DATAMODULES)}")
    if builtin is not None and builtin is not DATAMODULES[name]:
        raise ConfigError(f"data._target_: {target} does not read data.name={name}; use "
                          f"{target_of(DATAMODULES[name])} (or drop data._target_)")
    return instantiate_config({"_target_": target, **cfg}, "data")


def _builtin_class(target: Any) -> type | None:
    """The built-in DataModule class ``target`` names, else None (a module of the user's, or not importable)."""
    if not isinstance(target, str):
        return None
    module_name, _, attr = target.rpartition(".")
    try:  # (hydra.utils.get_class would log an error of its own for a path that does not import)
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError, TypeError):
        return None  # instantiate reports an unusable target in one line
    return found if found in DATAMODULES.values() else None
