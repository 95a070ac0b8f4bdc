"""Shared pieces of the DataModules: config access, loaders, in-memory datasets, stratified splits."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from s3nas.errors import DataError


def config_dict(cfg: Any) -> dict:
    """A plain dict of a data config given as DictConfig, dataclass or mapping."""
    if cfg is None:
        return {}
    if is_dataclass(cfg) and not isinstance(cfg, type):
        return asdict(cfg)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def require_root(root: Optional[str], what: str, expected: str) -> Path:
    """The dataset root as a Path; DataError (one line) if unset, missing or empty."""
    if root in (None, "", "???"):
        raise DataError(f"data.root: not set; point it at the {what} directory ({expected})")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DataError(f"data.root: {str(path)!r} does not exist; {what} expected there ({expected})")
    if not any(path.iterdir()):
        raise DataError(f"data.root: {str(path)!r} is empty; {what} expected there ({expected})")
    return path


def stratified_split(labels: Sequence[int], holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, holdout) index arrays; stratified by label when every class can give one, else random."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    holdout = int(min(max(holdout, 1), len(labels) - 1))
    try:
        keep, held = train_test_split(indices, test_size=holdout, stratify=labels, random_state=seed)
    except ValueError:  # too few images per class to stratify (tiny datasets)
        keep, held = train_test_split(indices, test_size=holdout, random_state=seed)
    return np.sort(keep), np.sort(held)


class ArrayImageDataset(Dataset):
    """uint8 HWC images in memory + int labels; ``transform`` maps a PIL image to a tensor."""

    def __init__(self, images: np.ndarray, labels: Sequence[int], transform: Callable[[Any], torch.Tensor]):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class ImageDataModule(pl.LightningDataModule):
    """Base DataModule: subclasses set the datasets in ``setup``; shape attributes exist from __init__."""

    #: Registry name (``data.name``).
    name = "base"
    num_classes: int = 0
    in_channels: int = 3

    def __init__(self, cfg: Any = None, **overrides: Any):
        super().__init__()
        self.cfg = {**config_dict(cfg), **overrides}
        self.image_size = int(self.cfg.get("image_size", 32))
        self.batch_size = int(self.cfg.get("batch_size", 64))
        self.eval_batch_size = int(self.cfg.get("eval_batch_size") or self.batch_size)
        self.num_workers = int(self.cfg.get("num_workers", 0))
        self.pin_memory = bool(self.cfg.get("pin_memory", False))
        self.split_seed = int(self.cfg.get("split_seed", 0))
        self.train_dataset: Optional[Dataset] = None
        self.val_dataset: Optional[Dataset] = None
        self.test_dataset: Optional[Dataset] = None

    def _loader(self, dataset: Optional[Dataset], train: bool) -> DataLoader:
        assert dataset is not None, "setup() did not create the dataset"
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            self.setup("fit")
        return self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            self.setup("test")
        return self._loader(self.test_dataset, train=False)

    def describe(self) -> str:
        """One line: name, classes, shape and split sizes (after setup)."""
        sizes = ", ".join(f"{split}={len(ds)}" for split, ds in
                          (("train", self.train_dataset), ("val", self.val_dataset), ("test", self.test_dataset))
                          if ds is not None)
        return (f"{self.name}: {self.num_classes} classes, {self.in_channels}x{self.image_size}x{self.image_size}"
                + (f", {sizes}" if sizes else ""))
