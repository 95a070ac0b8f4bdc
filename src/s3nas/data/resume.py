"""Resume-safe training loader: shuffling and augmentation are functions of (seed, epoch, index) only.

Lightning restores model, optimizer and loop state from a checkpoint but not the global RNG, so a
resumed run would shuffle and augment differently from an uninterrupted one. The search and train.py
therefore re-wrap the DataModule's training loader: an epoch-seeded sampler (Lightning calls ``set_epoch``) and
a dataset wrapper that seeds torch/random/numpy before each item (augmentations are reproducible with
or without workers).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSeededSampler(Sampler[int]):
    """Random permutation drawn from ``seed + epoch``; yields ``epoch * n + index`` (decoded later)."""

    def __init__(self, num_items: int, seed: int, shuffle: bool = True) -> None:
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, items already trained) of a mid-epoch resume

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, num_items: int) -> None:
        """The next pass over ``epoch`` starts after its first ``num_items`` indices (a mid-epoch checkpoint)."""
        self.epoch = int(epoch)  # a worker iterator may be created before Lightning calls set_epoch
        self._resume = (int(epoch), max(0, int(num_items)))

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        if self._resume is not None and self._resume[0] == self.epoch:
            order = order[self._resume[1]:]  # the len() stays the epoch's: Lightning counts the skipped batches
        self._resume = None
        base = self.epoch * self.num_items
        return iter([base + i for i in order])


class ItemSeededDataset(Dataset):
    """Wraps a dataset; item ``epoch * n + i`` seeds the RNGs from (seed, epoch, i), then returns item i."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.num_items = len(dataset)

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, key: int):
        index = key % self.num_items
        item_seed = (self.seed * 1_000_003 + key) % (2**31)
        torch.default_generator.manual_seed(item_seed)  # the CPU generator (the data pipeline runs on CPU):
        # torch.manual_seed also queues a seed for every lazy accelerator backend, ~1 ms of Python per item
        random.seed(item_seed)
        np.random.seed(item_seed)
        return self.dataset[index]


def resume_safe_loader(loader: DataLoader, seed: int) -> DataLoader:
    """Same dataset/batching as ``loader`` but reproducible across interruptions."""
    dataset = ItemSeededDataset(loader.dataset, seed)
    sampler = EpochSeededSampler(len(dataset), seed, shuffle=True)
    return DataLoader(
        dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )
