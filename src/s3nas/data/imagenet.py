"""`data=imagenet`: class-folder trees ``<root>/train/<class>/*`` and ``<root>/val/<class>/*``.

Preprocessing is timm's (``timm.data.create_transform``), Inception-style as in the paper: training uses
a random-resized crop (area ``scale_min``..1), horizontal flip and color jitter (optionally
RandAugment via ``auto_augment``); evaluation resizes to ``image_size / crop_pct`` and center-crops.
Any dataset laid out this way works; ``num_classes`` is the number of class folders in ``train/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torchvision.datasets import ImageFolder

from s3nas.data.base import ImageDataModule, require_root
from s3nas.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def class_folders(split_dir: Path) -> list[str]:
    """Sorted class-folder names of ``split_dir`` (hidden folders ignored)."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageNetDataModule(ImageDataModule):
    """torchvision ImageFolder datasets with timm transforms; val/ serves as validation and test split."""

    name = "imagenet"
    in_channels = 3

    def __init__(self, cfg: Any = None, **overrides: Any):
        super().__init__(cfg, **overrides)
        expected = f"class folders under {self.cfg.get('train_dir', 'train')}/ and {self.cfg.get('val_dir', 'val')}/"
        self.root = require_root(self.cfg.get("root"), "ImageNet-style dataset", expected)
        self.train_dir = self.root / str(self.cfg.get("train_dir", "train"))
        self.val_dir = self.root / str(self.cfg.get("val_dir", "val"))
        for split_dir, key in ((self.train_dir, "train_dir"), (self.val_dir, "val_dir")):
            if not split_dir.is_dir():
                raise DataError(f"data.{key}: {str(split_dir)!r} does not exist; expected {expected} of {self.root}")
        self.classes = class_folders(self.train_dir)
        if not self.classes:
            raise DataError(f"data.root: no class folders in {str(self.train_dir)!r}; expected {expected}")
        missing = sorted(set(class_folders(self.val_dir)) - set(self.classes))
        if missing:
            raise DataError(f"data.val_dir: class folder {missing[0]!r} of {str(self.val_dir)!r} is not in "
                            f"{str(self.train_dir)!r}; train/ and val/ need the same class folders")
        self.num_classes = len(self.classes)

    def transform(self, train: bool):
        """timm's transform for training (Inception-style augmentation) or evaluation (resize + center crop)."""
        common = dict(input_size=self.image_size, interpolation=str(self.cfg.get("interpolation", "bicubic")),
                      mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
        if train:
            return create_transform(is_training=True, scale=(float(self.cfg.get("scale_min", 0.08)), 1.0),
                                    color_jitter=float(self.cfg.get("color_jitter", 0.4)),
                                    auto_augment=self.cfg.get("auto_augment"), **common)
        return create_transform(is_training=False, crop_pct=float(self.cfg.get("crop_pct", 0.875)), **common)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return

        class_to_idx = {name: i for i, name in enumerate(self.classes)}

        def folder(split_dir: Path, train: bool) -> ImageFolder:
            try:
                dataset = ImageFolder(str(split_dir), transform=self.transform(train), allow_empty=True)
            except (FileNotFoundError, OSError) as err:
                raise DataError(f"data.root: cannot read {str(split_dir)!r}: {str(err).splitlines()[0]}") from None
            if len(dataset) == 0:
                raise DataError(f"data.root: no images ({', '.join(IMAGE_SUFFIXES[:3])}, ...) in the class "
                                f"folders of {str(split_dir)!r}")
            # val/ may lack some classes: map its labels onto train/'s class indices
            dataset.samples = [(p, class_to_idx[dataset.classes[t]]) for p, t in dataset.samples]
            dataset.targets = [t for _, t in dataset.samples]
            dataset.imgs = dataset.samples
            dataset.class_to_idx, dataset.classes = class_to_idx, list(self.classes)
            return dataset

        self.train_dataset = folder(self.train_dir, True)
        self.val_dataset = folder(self.val_dir, False)
        self.test_dataset = self.val_dataset
