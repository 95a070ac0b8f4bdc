"""`data=cifar10` / `data=cifar100`: the standard python-pickle batches under ``data.root``, read by torchvision.

CIFAR-10: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``; CIFAR-100:
``<root>/cifar-100-python/{train,test,meta}`` (``root`` may also be that folder itself). The files are
read with ``torchvision.datasets.CIFAR10/CIFAR100`` (``download=False``) through a subclass whose integrity
check only asks that the files exist (files of another origin have other md5s); ``data.download=true``
fetches and extracts the archive with torchvision's stock class, md5-checked, when the network allows.
Validation images are held out of the training batches (stratified, ``val_size``); the test batch is
the test split.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torchvision
from torchvision import transforms as T
from torchvision.datasets import CIFAR10, CIFAR100

from s3nas.data.base import ArrayImageDataset, ImageDataModule, stratified_split
from s3nas.errors import DataError

CIFAR_SPECS = {
    "cifar10": {
        "title": "CIFAR-10",
        "folder": "cifar-10-batches-py",
        "train_files": [f"data_batch_{i}" for i in range(1, 6)],
        "test_files": ["test_batch"],
        "meta_file": "batches.meta",
        "num_classes": 10,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
    },
    "cifar100": {
        "title": "CIFAR-100",
        "folder": "cifar-100-python",
        "train_files": ["train"],
        "test_files": ["test"],
        "meta_file": "meta",
        "num_classes": 100,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "mean": (0.5071, 0.4865, 0.4409),
        "std": (0.2673, 0.2564, 0.2762),
    },
}


#: Errors of reading a file that is not a CIFAR python pickle (torchvision reads it unchecked).
_READ_ERRORS = (OSError, pickle.UnpicklingError, EOFError, KeyError, IndexError, ValueError, TypeError,
                AttributeError, RuntimeError)


class _FilesOnDisk:
    """Mixin for torchvision's CIFAR readers: read ``files`` of the folder ``root`` itself.

    Integrity = the files exist (the stock check compares md5s, which rejects files of any other origin);
    the meta file (class names) is required to exist but not checksummed either. Downloads use the stock
    classes, so their md5 checks stay.
    """

    base_folder = ""  # ``root`` is the batch folder itself (it may have any name)

    def __init__(self, root: str, files: list[str]):
        # one file per instance, so that an error names its file
        self.train_list = [[name, None] for name in files]
        self.test_list = []
        self.meta = {**type(self).meta, "md5": None}  # check_integrity(path, None) = the file exists
        super().__init__(root, train=True, download=False)  # type: ignore[call-arg]

    def _check_integrity(self) -> bool:
        return all(os.path.isfile(os.path.join(self.root, name)) for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        try:
            super()._load_meta()  # type: ignore[misc]
        except _READ_ERRORS as err:
            path = os.path.join(self.root, self.meta["filename"])
            raise DataError(f"data.root: {path!r} is not a CIFAR meta file ({_describe(err)})") from None


class CifarFiles10(_FilesOnDisk, CIFAR10):
    """torchvision's CIFAR10 reader for batch files already on disk (no md5 check)."""


class CifarFiles100(_FilesOnDisk, CIFAR100):
    """torchvision's CIFAR100 reader for batch files already on disk (no md5 check)."""


READERS = {"cifar10": CifarFiles10, "cifar100": CifarFiles100}


def read_cifar_file(batch_dir: Path, file_name: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 32, 32, 3), labels int64) of one batch file, read by torchvision; DataError if not."""
    reader_cls = READERS[name]
    try:
        reader = reader_cls(str(batch_dir), [file_name])
    except _READ_ERRORS as err:
        raise DataError(f"data.root: {str(batch_dir / file_name)!r} is not a CIFAR python batch "
                        f"({_describe(err)})") from None
    images = np.ascontiguousarray(np.asarray(reader.data, dtype=np.uint8))
    labels = np.asarray(reader.targets, dtype=np.int64)
    if len(labels) != len(images):
        raise DataError(f"data.root: {str(batch_dir / file_name)!r} has {len(images)} images but {len(labels)} labels")
    return images, labels


def _describe(err: BaseException) -> str:
    """'KeyError: data' on one line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


class CifarDataModule(ImageDataModule):
    """CIFAR-10/100 from the python-pickle batches; random-crop + flip augmentation."""

    name = "cifar10"
    in_channels = 3

    def __init__(self, cfg: Any = None, **overrides: Any):
        super().__init__(cfg, **overrides)
        self.name = str(self.cfg.get("name", self.name))
        if self.name not in CIFAR_SPECS:
            raise DataError(f"data.name: {self.name!r} is not a CIFAR dataset; use cifar10 or cifar100")
        self.spec = CIFAR_SPECS[self.name]
        self.num_classes = int(self.spec["num_classes"])
        self.download = bool(self.cfg.get("download", False))
        self.val_size = int(self.cfg.get("val_size", 5000))
        self.augment = bool(self.cfg.get("augment", True))
        self.root = self.cfg.get("root")
        if not self.download:
            self.batch_dir = self._find_batches()

    # -- files ---------------------------------------------------------------------------------
    def _files(self) -> list[str]:
        """Every file the folder needs: the batches and the meta file (class names), as in the archive."""
        return self.spec["train_files"] + self.spec["test_files"] + [self.spec["meta_file"]]

    def _expected(self) -> str:
        return f"{self.spec['folder']}/{{{', '.join(self._files())}}}"

    def _find_batches(self) -> Path:
        """The folder holding the batch files; DataError saying where to put them if absent."""
        title, folder = self.spec["title"], self.spec["folder"]
        if self.root in (None, "", "???"):
            raise DataError(f"data.root: not set; point it at the directory holding {self._expected()} "
                            "(or add data.download=true)")
        root = Path(str(self.root)).expanduser()
        for candidate in (root / folder, root):
            if all((candidate / f).is_file() for f in self._files()):
                return candidate
        raise DataError(f"data.root: {title} batches not found under {str(root)!r}: extract {self.spec['url']} "
                        f"there so that {root / folder}/ holds "
                        f"{', '.join(self._files())}, or add data.download=true")

    def prepare_data(self) -> None:
        if not self.download:
            return
        try:
            self.batch_dir = self._find_batches()
            return
        except DataError:
            pass

        dataset_cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[self.name]
        if self.root in (None, "", "???"):
            raise DataError(f"data.root: not set; where should {self.spec['title']} be downloaded to?")
        Path(str(self.root)).expanduser().mkdir(parents=True, exist_ok=True)
        try:
            dataset_cls(str(Path(str(self.root)).expanduser()), train=True, download=True)
        except Exception as err:  # noqa: BLE001 - network errors come in many types
            raise DataError(f"data.download: could not download {self.spec['title']} ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}); put the batches under "
                            f"{Path(str(self.root)) / self.spec['folder']} and set data.download=false") from None

    # -- datasets ------------------------------------------------------------------------------
    def _transforms(self, train: bool):
        steps = []
        if self.image_size != 32:
            steps.append(T.Resize(self.image_size))
        if train and self.augment:
            steps += [T.RandomCrop(self.image_size, padding=4 * self.image_size // 32), T.RandomHorizontalFlip()]
        steps += [T.ToTensor(), T.Normalize(self.spec["mean"], self.spec["std"])]
        return T.Compose(steps)

    def _read(self, files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_cifar_file(self.batch_dir, f, self.name) for f in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        if not hasattr(self, "batch_dir"):
            self.prepare_data() if self.download else None
            self.batch_dir = self._find_batches()
        images, labels = self._read(self.spec["train_files"])
        test_images, test_labels = self._read(self.spec["test_files"])
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if len(bad):
            raise DataError(f"data.root: label {int(bad[0])} out of range for {self.spec['title']} "
                            f"({self.num_classes} classes)")
        train_idx, val_idx = stratified_split(labels, min(self.val_size, len(labels) // 5), self.split_seed)
        self.train_dataset = ArrayImageDataset(images[train_idx], labels[train_idx], self._transforms(True))
        self.val_dataset = ArrayImageDataset(images[val_idx], labels[val_idx], self._transforms(False))
        self.test_dataset = ArrayImageDataset(test_images, test_labels, self._transforms(False))
