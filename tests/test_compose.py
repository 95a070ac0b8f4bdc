"""Documented options compose and start: every `debug` option with every `callbacks` and `logger` option.

"Start" is what the runner does before fitting: the loggers, the configured callbacks and the Lightning
Trainer (whose constructor is where incompatible options fail, e.g. a RichProgressBar with
``enable_progress_bar=false``). One combination runs for real through the console script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS, run_inprocess

DEBUG = ["fast", "search_small", "search_tiny"]
CALLBACKS = ["default", "none"]
LOGGERS = ["wandb", "csv", "none"]


@pytest.fixture(scope="module")
def loggers_by_kind(tmp_path_factory):
    """The loggers of each `logger` option, built once (a W&B run starts offline) and reused by every case."""
    from s3nas.config import compose_config
    from s3nas.runtime.entry import finish_wandb
    from s3nas.runtime.loggers import build_loggers

    built = {}
    for kind in LOGGERS:
        out = tmp_path_factory.mktemp(f"logger_{kind}")
        offline = ["logger.mode=offline"] if kind == "wandb" else []
        cfg = compose_config("search", ["debug=search_tiny", f"logger={kind}", *offline], output_dir=out)
        built[kind] = build_loggers(cfg)
    yield built
    finish_wandb()


def _types(objects) -> set[str]:
    return {type(o).__name__ for o in objects}


@pytest.mark.parametrize("logger", LOGGERS)
@pytest.mark.parametrize("callbacks", CALLBACKS)
@pytest.mark.parametrize("debug", DEBUG)
def test_search_options_compose_and_start(debug, callbacks, logger, compose_cfg, loggers_by_kind):
    from s3nas.search.runner import build_trainer

    cfg = compose_cfg([f"debug={debug}", f"callbacks={callbacks}", f"logger={logger}"])
    assert cfg.callbacks.model_checkpoint is None if callbacks == "none" else cfg.callbacks.model_checkpoint.dirpath
    assert cfg.logger.kind == logger
    loggers = loggers_by_kind[logger]
    assert (len(loggers) == 0) == (logger == "none")
    trainer = build_trainer(cfg, max_epochs=1, callbacks=[], loggers=loggers)
    names = _types(trainer.callbacks)
    # checkpoints exactly when callbacks=default; a progress bar only where the debug option shows one
    assert ("ModelCheckpoint" in names) == (callbacks == "default")
    shows_bar = cfg.trainer.enable_progress_bar is not False
    assert trainer.progress_bar_callback is None or shows_bar
    if callbacks == "default" and shows_bar:
        assert "RichProgressBar" in names
    # the learning-rate monitor needs a logger: present with one, dropped without
    assert ("LearningRateMonitor" in names) == (callbacks == "default" and logger != "none")
    assert _types(trainer.loggers) == _types(loggers)
    assert "ModelSummary" not in names  # no "Total FLOPs: 0" table
    assert trainer.limit_train_batches == cfg.trainer.limit_train_batches


@pytest.mark.parametrize("logger", LOGGERS)
@pytest.mark.parametrize("callbacks", CALLBACKS)
def test_train_options_compose_and_start(callbacks, logger, compose_cfg, loggers_by_kind, tmp_path):
    from s3nas.train.runner import build_trainer

    cfg = compose_cfg(["debug=fast", f"callbacks={callbacks}", f"logger={logger}", "arch=timm:efficientnet_b0"],
                      config_name="train")
    trainer = build_trainer(cfg, ckpt_dir=tmp_path / "checkpoints", loggers=loggers_by_kind[logger],
                            extra_callbacks=[])
    names = _types(trainer.callbacks)
    assert "ModelCheckpoint" in names  # train.py always keeps best/last
    assert ("LearningRateMonitor" in names) == (callbacks == "default" and logger != "none")
    assert "ModelSummary" not in names  # train.py printed Lightning's table ending in "Total FLOPs: 0"


def test_search_tiny_with_checkpoints_and_csv_runs(tmp_path):
    """debug=search_tiny + callbacks=default + logger=csv for real, through the console script (run in the test
    process: tests/support/inprocess.py; installed console scripts as processes: tests/test_packaging.py). In the
    6-position space (SMALL_SPACE, its table built in the command's process in the test's own cache dir; target under
    its all-on 0.69 ms) with small val/test splits: what is tested is that these options run together and write their
    files, not the space or the accuracy."""
    script = Path(sys.executable).with_name("s3nas-search")
    command = [str(script)] if script.exists() else ["-m", "s3nas.search.app"]
    run_dir = tmp_path / "run"
    proc = run_inprocess([*command, "debug=search_tiny", "data.image_size=16", "latency=0.5ms", "callbacks=default",
                          "logger=csv", *SHORT_SEARCH, *SMALL_SPLITS, *SMALL_SPACE,
                          f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    metrics = (run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert len(metrics) > 1 and "lr" in metrics[0]  # the LR monitor logged through the CSV logger
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] == 3 * 2  # 1 warm-up + 2 search epochs of limit_train_batches=2
    assert "Total FLOPs" not in proc.stdout + proc.stderr
