"""The shared helpers of s3nas.utils: the table writer, the atomic output path, the Lightning trainer builder."""

from __future__ import annotations

import csv
import os
import stat

import pytest
from omegaconf import OmegaConf

from s3nas.utils import tables
from s3nas.utils.io import atomic_output_path, current_umask

ROWS = [{"model": "a", "latency_ms": 1.23456, "seed": 3, "note": None},
        {"model": "b|c", "latency_ms": 20.0, "seed": None, "note": "x,y"}]


def test_markdown_table_formats_cells_by_spec_or_row_function():
    text = tables.markdown_table(ROWS, ["model", "latency_ms", "seed", "note"],
                                 {"latency_ms": ".2f", "seed": "d", "note": lambda r: (r["note"] or "-").upper()},
                                 headers=["model", "latency ms", "seed", "note"])
    assert text == ("| model | latency ms | seed | note |\n|---|---|---|---|\n"
                    "| a | 1.23 | 3 | - |\n| b|c | 20.00 |  | X,Y |\n")
    # no format: ``default`` (str) for every value, None included
    assert tables.markdown_table(ROWS[:1], ["seed", "note"]).splitlines()[-1] == "| 3 | None |"
    with pytest.raises(ValueError, match="2 headers for 1 columns"):
        tables.markdown_table(ROWS, ["model"], headers=["a", "b"])


def test_csv_round_trips_and_extras_are_refused_unless_ignored(tmp_path):
    with pytest.raises(ValueError):
        tables.csv_text(ROWS, ["model", "latency_ms"])  # 'seed' and 'note' are not columns
    path = tables.write_csv(tmp_path / "deep" / "t.csv", ROWS, ["model", "latency_ms", "missing"], extras="ignore")
    with path.open(newline="") as handle:
        read = list(csv.DictReader(handle))
    assert read == [{"model": "a", "latency_ms": "1.23456", "missing": ""},
                    {"model": "b|c", "latency_ms": "20.0", "missing": ""}]
    assert tables.csv_text(ROWS).splitlines()[0] == "model,latency_ms,seed,note"  # the first row's keys
    assert tables.csv_text(ROWS).splitlines()[2] == 'b|c,20.0,,"x,y"'  # None empty, commas quoted


def test_atomic_output_path_renames_on_success_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out" / "model.onnx"
    with atomic_output_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".onnx" and tmp != target
        tmp.write_bytes(b"first")  # a library writing by file name
        assert not target.exists()
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~current_umask()  # not mkstemp's 0600
    with pytest.raises(RuntimeError, match="check failed"):
        with atomic_output_path(target, side_suffixes=(".data",)) as tmp:
            tmp.write_bytes(b"second")
            (tmp.parent / f"{tmp.name}.data").write_bytes(b"external weights")
            raise RuntimeError("check failed")
    assert target.read_bytes() == b"first"  # the old file stays
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]  # no temp or side file left


def test_build_trainer_applies_what_the_command_owns(tmp_path, monkeypatch):
    import s3nas.runtime.trainer as trainer_utils

    node = OmegaConf.create({"accelerator": "cpu", "devices": 1, "max_epochs": 99, "gradient_clip_val": 5.0,
                             "num_sanity_val_steps": None, "log_every_n_steps": 7, "strategy": "ddp",
                             "plugins": [{"_target_": "x.Y"}], "enable_progress_bar": False,
                             "enable_model_summary": False, "default_root_dir": str(tmp_path)})
    calls = []
    monkeypatch.setattr(trainer_utils, "instantiate", lambda config, **kwargs: calls.append((config, kwargs)))
    plugin, callback = object(), object()
    trainer_utils.build_trainer(node, max_epochs=3, callbacks=[callback], loggers=[], enable_checkpointing=False,
                                deterministic=True, drop_keys=("gradient_clip_val",), ddp_find_unused_parameters=True,
                                plugins=[plugin])
    trainer_utils.build_trainer(node, max_epochs=1, callbacks=[], loggers=["logger"], enable_checkpointing=True,
                                deterministic=False, log_every_n_steps=2)
    (owned, owned_kwargs), (plain, plain_kwargs) = calls
    assert owned["_target_"] == "pytorch_lightning.Trainer" and owned["max_epochs"] == 3
    assert "gradient_clip_val" not in owned and owned["deterministic"] is True and owned["num_sanity_val_steps"] == 0
    assert owned["strategy"] == "ddp_find_unused_parameters_true" and owned["log_every_n_steps"] == 7
    assert "plugins" not in owned and owned_kwargs["plugins"] == [{"_target_": "x.Y"}, plugin]
    assert owned_kwargs["callbacks"] == [callback] and owned_kwargs["logger"] is False
    assert owned_kwargs["enable_checkpointing"] is False
    assert plain["max_epochs"] == 1 and plain["gradient_clip_val"] == 5.0 and "deterministic" not in plain
    assert plain["strategy"] == "ddp" and plain["log_every_n_steps"] == 2 and plain["plugins"] == [{"_target_": "x.Y"}]
    assert "plugins" not in plain_kwargs and plain_kwargs["logger"] == ["logger"]
    assert node.max_epochs == 99 and node.strategy == "ddp"  # the config node is not changed


def test_build_trainer_builds_a_lightning_trainer(tmp_path):
    from s3nas.runtime.trainer import build_trainer

    node = OmegaConf.create({"accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                             "enable_model_summary": False, "default_root_dir": str(tmp_path)})
    trainer = build_trainer(node, max_epochs=2, callbacks=[], loggers=[], enable_checkpointing=False,
                            deterministic=False, log_every_n_steps=3)
    assert type(trainer).__name__ == "Trainer" and trainer.max_epochs == 2 and trainer.log_every_n_steps == 3
    assert trainer.num_sanity_val_steps == 0 and trainer.logger is None and trainer.checkpoint_callback is None
