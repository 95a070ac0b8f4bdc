"""Lightning DataModules: embedded digits (default), CIFAR-10/100 python batches, ImageNet class folders.

``build_datamodule(cfg.data)`` picks the module by ``data.name``. Every module exposes ``num_classes``,
``in_channels`` and ``image_size`` right after construction (before ``setup``), and raises a one-line
``DataError`` when its files are missing.
"""

from __future__ import annotations

from typing import Any

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


def build_datamodule(data_cfg: Any, **overrides: Any) -> ImageDataModule:
    """The DataModule of ``data_cfg`` (``cfg.data``); ``overrides`` replace config values (e.g. batch_size)."""
    cfg = {**config_dict(data_cfg), **overrides}
    name = cfg.get("name")
    if name not in DATAMODULES:
        raise ConfigError(f"data.name: {name!r} is not a dataset; use {', '.join(DATAMODULES)}")
    return DATAMODULES[name](cfg)


__all__ = ["DATAMODULES", "CifarDataModule", "DigitsDataModule", "ImageDataModule", "ImageNetDataModule",
           "build_datamodule"]
