"""DataModules on real formats: sklearn digits, tiny CIFAR pickle batches, a tiny class-folder tree."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from s3nas.data import CifarDataModule, DigitsDataModule, ImageNetDataModule, build_datamodule
from s3nas.data import cifar as cifar_module
from s3nas.data.cifar import CIFAR_SPECS
from s3nas.errors import ConfigError, DataError


# ------------------------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits():
    dm = DigitsDataModule({"name": "digits", "batch_size": 32})
    dm.setup("fit")
    return dm


def test_digits_shapes_known_before_setup():
    dm = DigitsDataModule({"name": "digits", "image_size": 24})
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 3, 24)
    assert dm.train_dataset is None


def test_digits_split_is_complete_disjoint_and_stratified(digits):
    idx = digits.split_indices
    assert sum(len(v) for v in idx.values()) == 1797
    assert len(set(idx["train"]) | set(idx["val"]) | set(idx["test"])) == 1797
    assert len(idx["val"]) == len(idx["test"]) == round(1797 * 0.15)
    for split in (digits.train_dataset, digits.val_dataset, digits.test_dataset):
        counts = torch.bincount(split.tensors[1], minlength=10).float()
        share = counts / counts.sum()
        assert counts.min() > 0 and share.max() - share.min() < 0.03  # about 10% of each class


def test_digits_batch_is_normalised_3x32x32(digits):
    x, y = next(iter(digits.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # gray replicated
    train_x = digits.train_dataset.tensors[0]
    assert abs(float(train_x.mean())) < 1e-4 and abs(float(train_x.std()) - 1) < 1e-3


def test_digits_split_depends_only_on_split_seed(digits):
    same = DigitsDataModule({"name": "digits", "image_size": 16})
    same.setup()
    other = DigitsDataModule({"name": "digits", "split_seed": 1})
    other.setup()
    assert np.array_equal(same.split_indices["val"], digits.split_indices["val"])
    assert not np.array_equal(other.split_indices["val"], digits.split_indices["val"])
    assert same.train_dataset.tensors[0].shape[-1] == 16


def test_build_from_composed_config(compose_cfg):
    dm = build_datamodule(compose_cfg(["data.image_size=16"]).data)
    assert isinstance(dm, DigitsDataModule) and dm.image_size == 16
    with pytest.raises(ConfigError, match="data.name"):
        build_datamodule({"name": "mnist"})


# ------------------------------------------------------------------------------- _target_
def test_data_target_is_instantiated_with_the_config(compose_cfg, tmp_path, monkeypatch):
    (tmp_path / "my_data.py").write_text(
        "from s3nas.data import DigitsDataModule\n"
        "class SmallDigits(DigitsDataModule):\n"
        "    def __init__(self, **kwargs):\n"
        "        super().__init__(**kwargs)\n"
        "        self.received = kwargs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    dm = build_datamodule(compose_cfg(["data._target_=my_data.SmallDigits", "data.image_size=12"]).data, batch_size=5)
    assert type(dm).__name__ == "SmallDigits" and (dm.image_size, dm.batch_size) == (12, 5)
    assert dm.received["name"] == "digits" and "_target_" not in dm.received  # keys arrive as keyword arguments
    custom = build_datamodule({"_target_": "my_data.SmallDigits", "name": "my-digits"})  # a name of its own
    assert custom.received["name"] == "my-digits"
    # another spelling of a built-in module is that module
    assert type(build_datamodule({"_target_": "s3nas.data.digits.DigitsDataModule", "name": "digits"})) is DigitsDataModule


@pytest.mark.parametrize("overrides,match", [
    (["data.name=mnist"], r"^data\.name: 'mnist' is not a dataset; use digits, cifar10, cifar100, imagenet$"),
    (["data.name=cifar10"], r"^data\._target_: s3nas\.data\.DigitsDataModule does not read data\.name=cifar10; "
                            r"use s3nas\.data\.CifarDataModule"),
    (["data._target_=nowhere.Module"], r"^data\._target_: cannot instantiate 'nowhere\.Module' \("),
    (["data._target_=s3nas.data.NoSuchModule"], r"^data\._target_: cannot instantiate 's3nas\.data\.NoSuchModule'"),
])
def test_bad_data_target_or_name_is_one_line(compose_cfg, overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_datamodule(compose_cfg(overrides).data)
    assert "\n" not in str(info.value)


def test_data_errors_come_through_instantiate_unwrapped(compose_cfg, tmp_path):
    cfg = compose_cfg(["data=imagenet", f"data.root={tmp_path / 'none'}"]).data
    with pytest.raises(DataError, match=r"^data\.root: .* does not exist"):
        build_datamodule(cfg)


# -------------------------------------------------------------------------------------- CIFAR
def _write_cifar(root, name, per_file=10, seed=0):
    """Tiny CIFAR files in the real python-pickle layout (batches + meta file, keys as torchvision reads the
    archive's files); returns (test images NHWC, test labels)."""
    spec = CIFAR_SPECS[name]
    folder = root / spec["folder"]
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    test = None
    for fname in spec["train_files"] + spec["test_files"]:
        images = rng.integers(0, 256, size=(per_file, 32, 32, 3), dtype=np.uint8)
        labels = [int(i % spec["num_classes"]) for i in range(per_file)]
        entry = {"data": images.transpose(0, 3, 1, 2).reshape(per_file, -1), "batch_label": "tiny"}
        if name == "cifar10":
            entry["labels"] = labels
        else:
            entry["fine_labels"], entry["coarse_labels"] = labels, [lab // 5 for lab in labels]
        with open(folder / fname, "wb") as handle:
            pickle.dump(entry, handle)
        if fname in spec["test_files"]:
            test = (images, labels)
    class_names = [f"class_{i}" for i in range(spec["num_classes"])]
    meta = {"label_names": class_names} if name == "cifar10" else {"fine_label_names": class_names,
                                                                    "coarse_label_names": class_names[:20]}
    with open(folder / spec["meta_file"], "wb") as handle:
        pickle.dump(meta, handle)
    return test


@pytest.mark.parametrize("name,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_batches_load(tmp_path, compose_cfg, name, num_classes):
    test_images, test_labels = _write_cifar(tmp_path, name)
    cfg = compose_cfg([f"data={name}", f"data.root={tmp_path}", "data.batch_size=4", "data.num_workers=0"]).data
    dm = build_datamodule(cfg)
    assert isinstance(dm, CifarDataModule) and (dm.num_classes, dm.in_channels, dm.image_size) == (num_classes, 3, 32)
    dm.prepare_data()
    dm.setup("fit")
    n_train_files = len(CIFAR_SPECS[name]["train_files"])
    assert len(dm.train_dataset) + len(dm.val_dataset) == 10 * n_train_files
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.long and int(y.max()) < num_classes
    # the test split is the test batch, pixels normalised with the dataset's mean/std, unaugmented
    x_test, y_test = next(iter(dm.test_dataloader()))
    mean = torch.tensor(CIFAR_SPECS[name]["mean"]).view(3, 1, 1)
    std = torch.tensor(CIFAR_SPECS[name]["std"]).view(3, 1, 1)
    expected = (torch.from_numpy(test_images[0]).permute(2, 0, 1).float() / 255 - mean) / std
    assert torch.allclose(x_test[0], expected, atol=1e-5)
    assert y_test.tolist() == test_labels[:4]


def test_cifar_root_may_be_the_batch_folder(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    dm = CifarDataModule({"name": "cifar10", "root": str(tmp_path / "cifar-10-batches-py"), "batch_size": 2})
    dm.setup()
    assert len(dm.test_dataset) == 10


@pytest.mark.parametrize("root", [None, "missing", "empty"])
def test_cifar_missing_files_say_where_to_put_them(tmp_path, root):
    (tmp_path / "empty").mkdir()
    path = None if root is None else str(tmp_path / root)
    with pytest.raises(DataError) as info:
        CifarDataModule({"name": "cifar10", "root": path, "download": False})
    message = str(info.value)
    assert message.startswith("data.root") and "\n" not in message
    assert "cifar-10-batches-py" in message and "data.download=true" in message


def test_cifar_corrupt_batch_is_a_data_error(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    dm = CifarDataModule({"name": "cifar10", "root": str(tmp_path)})
    with pytest.raises(DataError, match="data_batch_3") as info:
        dm.setup()
    assert str(info.value).startswith("data.root") and "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["no_labels", "label_count", "meta_corrupt", "meta_missing", "label_range"])
def test_cifar_bad_files_are_one_line_data_errors(tmp_path, case):
    _write_cifar(tmp_path, "cifar100")
    folder = tmp_path / "cifar-100-python"
    batch = pickle.loads((folder / "train").read_bytes())
    if case == "no_labels":
        del batch["fine_labels"]
    elif case == "label_count":
        batch["fine_labels"] = batch["fine_labels"][:-1]
    elif case == "label_range":
        batch["fine_labels"][3] = 100
    elif case == "meta_corrupt":
        (folder / "meta").write_bytes(b"\x80\x04 broken")
    else:
        (folder / "meta").unlink()
    (folder / "train").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError) as info:
        CifarDataModule({"name": "cifar100", "root": str(tmp_path)}).setup()
    message = str(info.value)
    assert message.startswith("data.root") and "\n" not in message
    expected = {"no_labels": "'fine_labels'", "label_count": "10 images but 9 labels", "label_range": "label 100 out of range",
                "meta_corrupt": "is not a CIFAR meta file", "meta_missing": "holds train, test, meta"}[case]
    assert expected in message
    if case in ("no_labels", "label_count", "meta_corrupt"):
        assert str(folder / ("meta" if case == "meta_corrupt" else "train")) in message


def test_cifar_reader_is_torchvisions_without_md5(tmp_path):
    """The files are read by torchvision's CIFAR class (a subclass), with class names from the meta file."""
    import torchvision

    from s3nas.data.cifar import read_cifar_file

    test_images, test_labels = _write_cifar(tmp_path, "cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    reader = cifar_module.READERS["cifar10"](str(folder), ["test_batch"])
    assert isinstance(reader, torchvision.datasets.CIFAR10) and reader.classes[:2] == ["class_0", "class_1"]
    images, labels = read_cifar_file(folder, "test_batch", "cifar10")
    assert np.array_equal(images, test_images) and labels.tolist() == test_labels
    # the stock class still checks md5s, so it rejects these files (downloads keep their check)
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        torchvision.datasets.CIFAR10(str(tmp_path), train=False, download=False)


# ----------------------------------------------------------------------------------- ImageNet
def _write_image_tree(root, classes=("n01", "n02", "n03"), per_class=2, val_classes=None):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, names in (("train", classes), ("val", val_classes or classes)):
        for name in names:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(40 + 4 * i, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"img_{i}.png")


def test_imagenet_folders_with_timm_transforms(tmp_path, compose_cfg):
    _write_image_tree(tmp_path)
    cfg = compose_cfg(["data=imagenet", f"data.root={tmp_path}", "data.image_size=32", "data.batch_size=4",
                       "data.num_workers=0", "data.pin_memory=false"]).data
    dm = build_datamodule(cfg)
    assert isinstance(dm, ImageNetDataModule) and (dm.num_classes, dm.in_channels, dm.image_size) == (3, 3, 32)
    dm.setup("fit")
    assert len(dm.train_dataset) == 6 and len(dm.val_dataset) == 6
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and set(y.tolist()) <= {0, 1, 2}
    x_val, y_val = next(iter(dm.val_dataloader()))
    assert x_val.shape == (4, 3, 32, 32) and y_val.tolist() == [0, 0, 1, 1]
    train_tf, eval_tf = repr(dm.transform(True)), repr(dm.transform(False))
    assert "RandomResizedCrop" in train_tf and "ColorJitter" in train_tf and "CenterCrop" in eval_tf


def test_imagenet_val_subset_keeps_train_class_indices(tmp_path):
    _write_image_tree(tmp_path, val_classes=("n02",))
    dm = ImageNetDataModule({"name": "imagenet", "root": str(tmp_path), "image_size": 32, "batch_size": 2})
    dm.setup()
    assert dm.num_classes == 3 and set(dm.val_dataset.targets) == {1}


@pytest.mark.parametrize("case", ["unset", "missing", "empty", "no_val", "extra_val_class", "no_images"])
def test_imagenet_bad_roots_are_one_line(tmp_path, case):
    root = tmp_path / "imnet"
    if case == "empty":
        root.mkdir()
    elif case == "no_val":
        (root / "train" / "a").mkdir(parents=True)
    elif case == "extra_val_class":
        _write_image_tree(root, classes=("a",), val_classes=("a", "zz"))
    elif case == "no_images":
        (root / "train" / "a").mkdir(parents=True)
        (root / "val" / "a").mkdir(parents=True)
    cfg = {"name": "imagenet", "root": None if case == "unset" else str(root), "image_size": 32}
    with pytest.raises(DataError) as info:
        ImageNetDataModule(cfg).setup()
    assert str(info.value).startswith("data.") and "\n" not in str(info.value)


def test_cli_missing_data_root_is_one_line(tmp_path, run_inproc):
    """A command that builds the data through the entry point (a script, run in the test process:
    tests/support/inprocess.py)."""
    script = tmp_path / "data_cli.py"
    script.write_text("from s3nas.runtime.entry import run\nfrom s3nas.data import build_datamodule\n"
                      "run(lambda cfg: build_datamodule(cfg.data), 'search')\n")
    proc = run_inproc([script, "data=cifar10", f"data.root={tmp_path / 'nothing'}", "logger=none",
                       f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: data.root") and "cifar-10-batches-py" in lines[0]


def test_cifar_download_failure_says_where_to_put_files(tmp_path, monkeypatch):
    import torchvision

    calls = []

    def offline_cifar(root, train=True, download=False):
        calls.append((root, download))
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline_cifar)
    dm = CifarDataModule({"name": "cifar10", "root": str(tmp_path / "dl"), "download": True})
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    assert calls == [(str(tmp_path / "dl"), True)]
    message = str(info.value)
    assert message.startswith("data.download") and "\n" not in message
    assert str(tmp_path / "dl" / "cifar-10-batches-py") in message


def test_cifar_download_skipped_when_files_exist(tmp_path, monkeypatch):
    import torchvision

    _write_cifar(tmp_path, "cifar10")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda *a, **k: pytest.fail("downloaded again"))
    dm = CifarDataModule({"name": "cifar10", "root": str(tmp_path), "download": True, "batch_size": 2})
    dm.prepare_data()
    dm.setup()
    assert len(dm.test_dataset) == 10
