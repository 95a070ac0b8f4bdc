"""Loggers (W&B offline, CSV, none), run names, the task wrapper finishing W&B, atomic writes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess

import pytest
import yaml

from s3nas.errors import ConfigError, UserError
from s3nas.runtime import loggers as loggers_mod
from s3nas.runtime.entry import finish_wandb, format_config_error, make_task
from s3nas.utils.io import atomic_write_json, atomic_write_text
from s3nas.runtime.loggers import build_loggers, run_name_from_overrides, wandb_logged_in, wandb_mode


@pytest.fixture
def no_login(monkeypatch, tmp_path):
    """A user with no W&B credentials and no WANDB_MODE preference."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))


def test_wandb_mode_auto(no_login, monkeypatch, tmp_path):
    assert not wandb_logged_in()
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_logged_in() and wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"
    assert wandb_mode("online") == "online"
    with pytest.raises(ConfigError, match="logger.mode"):
        wandb_mode("sometimes")


def test_netrc_login_counts(no_login, tmp_path):
    netrc_path = tmp_path / "home" / ".netrc"
    netrc_path.parent.mkdir(parents=True, exist_ok=True)
    netrc_path.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc_path.chmod(0o600)
    assert wandb_logged_in() and wandb_mode("auto") == "online"


def test_logger_none_and_disabled(compose_cfg, no_login):
    assert build_loggers(compose_cfg(["logger=none"])) == []
    assert build_loggers(compose_cfg(["logger.mode=disabled"])) == []


def test_csv_logger_writes_metrics_and_resolved_config(compose_cfg, tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    from s3nas.runtime.entry import prepare_config

    cfg = prepare_config(compose_cfg(["logger=csv", "latency=800us"]))  # the entry points' preparation
    (logger,) = build_loggers(cfg)
    assert isinstance(logger, CSVLogger)
    logger.log_metrics({"val/acc": 0.25}, step=0)
    logger.save()
    run_dir = tmp_path / "csv" / "version_0"
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert float(rows[0]["val/acc"]) == 0.25
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    # the logged config is the resolved one: "800us" parsed into ms, interpolations filled in
    assert hparams["latency"] == "800us" and hparams["latency_ms"] == pytest.approx(0.8)
    assert hparams["paths"]["output_dir"] == str(tmp_path)
    assert not any("${" in str(v) for v in _leaves(hparams)), "unresolved interpolation logged"
    assert "hydra" not in hparams


def test_wandb_offline_run_is_announced_once_and_readable(compose_cfg, tmp_path, no_login, capsys, monkeypatch):
    monkeypatch.setattr(loggers_mod, "_offline_announced", False)
    cfg = compose_cfg(["logger.name=unit", "logger.group=tests", "latency=2ms"])
    cfg.latency_ms = 2.0
    try:
        (logger,) = build_loggers(cfg)
        run = logger.experiment
        assert run.name == "unit" and run.group == "tests"
        assert run.config["latency_ms"] == 2.0 and run.config["data"]["name"] == "digits"
        logger.log_metrics({"val/acc": 0.5}, step=1)
        build_loggers(compose_cfg(["logger=csv"]))  # a second build: no second announcement
    finally:
        finish_wandb()
    out = capsys.readouterr().out
    assert out.count("W&B: offline run in") == 1 and "wandb sync" in out
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    if shutil.which("wandb") is None:
        return
    proc = subprocess.run(["wandb", "leet", "inspect", "--summary", "--json", str(runs[0])], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.skip(f"wandb leet inspect unavailable: {proc.stderr.strip()[:200]}")
    summary = json.loads(proc.stdout)
    assert "0.5" in json.dumps(summary) and "val/acc" in json.dumps(summary)


def _leaves(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


def test_logger_target_is_instantiated(compose_cfg, tmp_path, monkeypatch, no_login):
    (tmp_path / "my_loggers.py").write_text(
        "from pytorch_lightning.loggers import CSVLogger, WandbLogger\n"
        "class MyCSV(CSVLogger):\n    pass\n"
        "class MyWandb(WandbLogger):\n"
        "    def __init__(self, **kwargs):\n"
        "        self.received = kwargs\n"
        "        super().__init__(**kwargs)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (csv_logger,) = build_loggers(compose_cfg(["logger=csv", "logger._target_=my_loggers.MyCSV"]))
    assert type(csv_logger).__name__ == "MyCSV" and csv_logger.log_dir == str(tmp_path / "csv" / "version_0")
    monkeypatch.setattr(loggers_mod, "_offline_announced", True)
    try:
        (wandb_logger,) = build_loggers(compose_cfg(["logger._target_=my_loggers.MyWandb", "logger.tags=[a,b]"]))
    finally:
        finish_wandb()
    received = wandb_logger.received
    assert type(wandb_logger).__name__ == "MyWandb" and "kind" not in received and "_target_" not in received
    assert received["mode"] == "offline" and received["save_dir"] == str(tmp_path) and received["tags"] == ["a", "b"]
    assert received["project"] == "s3nas" and received["job_type"] == "search"
    # a config without _target_ (e.g. built in code) gets the kind's Lightning logger
    from pytorch_lightning.loggers import CSVLogger

    (plain,) = build_loggers({"logger": {"kind": "csv", "save_dir": str(tmp_path / "plain")}})
    assert type(plain) is CSVLogger and plain.log_dir == str(tmp_path / "plain" / "csv" / "version_0")


@pytest.mark.parametrize("overrides,match", [
    (["logger.kind=tensorboard"], r"^logger\.kind: 'tensorboard' is not a logger; use wandb, csv, none$"),
    (["logger=csv", "logger._target_=nowhere.Logger"], r"^logger\._target_: cannot instantiate 'nowhere\.Logger' \("),
    (["logger.mode=sometimes"], r"^logger\.mode: 'sometimes' is not a W&B mode"),
])
def test_bad_logger_config_is_one_line(compose_cfg, no_login, overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_loggers(compose_cfg(overrides))
    assert "\n" not in str(info.value)


def test_run_name_from_overrides():
    overrides = ["latency=2ms", "hydra/launcher=joblib", "debug=fast", "hydra.run.dir=/x", "paths.data_dir=/d", "loss.lambda1=5", "logger=csv",
                 "logger.group=g", "+seed=3"]
    assert run_name_from_overrides(overrides) == "latency=2ms,loss.lambda1=5,+seed=3"
    assert run_name_from_overrides([]) is None
    assert run_name_from_overrides() is None  # outside a Hydra run


@pytest.mark.parametrize("error,exit_code", [(UserError("data.root: nope"), 2), (RuntimeError("bug"), None)])
def test_task_wrapper_finishes_wandb_when_the_task_fails(compose_cfg, tmp_path, no_login, error, exit_code,
                                                         capsys):
    import wandb

    cfg = compose_cfg(["logger=none"])
    seen = {}

    def failing_main(task_cfg):
        seen["latency_ms"] = task_cfg.latency_ms
        wandb.init(mode="offline", dir=str(tmp_path), project="s3nas-test")
        raise error

    task = make_task(failing_main)
    if exit_code is None:
        with pytest.raises(RuntimeError):
            task(cfg)
    else:
        with pytest.raises(SystemExit) as info:
            task(cfg)
        assert info.value.code == exit_code
        assert capsys.readouterr().err.strip() == "error: data.root: nope"
    assert wandb.run is None  # finished by the wrapper
    assert seen["latency_ms"] == 2.5
    assert (tmp_path / "config_resolved.yaml").is_file()


def test_format_config_error_is_one_line():
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ValidationError

    try:
        try:
            raise ValidationError("Value 'x' could not be converted to Integer\n    full_key: seed")
        except ValidationError as cause:
            raise ConfigCompositionException("Error merging override seed=x") from cause
    except ConfigCompositionException as err:
        text = format_config_error(err)
    assert "\n" not in text and text.startswith("Error merging override seed=x")


def test_atomic_write_text_and_json(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "summary.json"
    atomic_write_json(target, {"latency_ms": 2.5, "path": tmp_path})
    assert json.loads(target.read_text()) == {"latency_ms": 2.5, "path": str(tmp_path)}

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "half")
    assert json.loads(target.read_text())["latency_ms"] == 2.5  # old content intact
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]  # no temp file left


def test_build_callbacks_from_config(compose_cfg, tmp_path):
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

    from s3nas.runtime.callbacks import build_callbacks

    cfg = compose_cfg([])
    with_logger = build_callbacks(cfg, loggers=[object()])
    assert [type(c) for c in with_logger] == [ModelCheckpoint, LearningRateMonitor, RichProgressBar]
    assert with_logger[0].dirpath == str(tmp_path / "checkpoints")
    assert [type(c) for c in build_callbacks(cfg, loggers=[])] == [ModelCheckpoint, RichProgressBar]
    assert build_callbacks(compose_cfg(["callbacks=none"])) == []
    assert len(build_callbacks(compose_cfg(["callbacks.rich_progress_bar=null"]), loggers=[])) == 1


def test_check_known_keys_catches_plus_overrides(compose_cfg):
    from s3nas.runtime.entry import check_known_keys

    check_known_keys(compose_cfg([]))  # the shipped configs declare every key
    for override, key in (("+foo=1", "foo"), ("+trainer.nope=1", "trainer.nope"), ("+deploy.x=1", "deploy.x")):
        with pytest.raises(ConfigError, match=f"^{key}: unknown key; accepted keys: "):
            check_known_keys(compose_cfg([override]))
