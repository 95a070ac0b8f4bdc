"""`data=digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), no download.

Images are scaled to [0, 1], upsampled (bilinear) to ``image_size``, replicated to 3 channels and
normalised with the training split's mean/std. The stratified train/val/test split depends only on
``split_seed``, so every run (and every search) sees the same split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from s3nas.data.base import ImageDataModule, stratified_split


class DigitsDataModule(ImageDataModule):
    """sklearn digits as 3x``image_size``x``image_size`` tensors, held in memory."""

    name = "digits"
    num_classes = 10
    in_channels = 3
    #: Images in the dataset (sklearn.datasets.load_digits).
    num_images = 1797

    def __init__(self, cfg: Any = None, **overrides: Any):
        super().__init__(cfg, **overrides)
        self.val_fraction = float(self.cfg.get("val_fraction", 0.15))
        self.test_fraction = float(self.cfg.get("test_fraction", 0.15))
        self.mean = self.std = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8)
        labels = torch.tensor(digits.target, dtype=torch.long)
        n_test = round(len(labels) * self.test_fraction)
        n_val = round(len(labels) * self.val_fraction)
        rest, test_idx = stratified_split(labels.numpy(), n_test, self.split_seed)
        train_pos, val_pos = stratified_split(labels.numpy()[rest], n_val, self.split_seed)
        train_idx, val_idx = rest[train_pos], rest[val_pos]

        images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                               align_corners=False).repeat(1, self.in_channels, 1, 1)
        self.mean = float(images[train_idx].mean())
        self.std = float(images[train_idx].std())
        images = (images - self.mean) / self.std
        self.train_dataset = TensorDataset(images[train_idx], labels[train_idx])
        self.val_dataset = TensorDataset(images[val_idx], labels[val_idx])
        self.test_dataset = TensorDataset(images[test_idx], labels[test_idx])
        self.split_indices = {"train": np.asarray(train_idx), "val": np.asarray(val_idx), "test": np.asarray(test_idx)}
