"""Hydra config tree: every group option composes, schemas reject bad keys/types, CLI errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from inprocess import run_inprocess
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import OmegaConf, open_dict

from s3nas.config import CONF_DIR, REPO_ROOT, register_configs
from s3nas.config import schema

register_configs()


def _group_options() -> list[tuple[str, str]]:
    """(group, option) for every yaml under conf/ below the top level (new groups are covered automatically)."""
    found = []
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        rel = path.relative_to(CONF_DIR)
        if len(rel.parts) > 1:
            found.append((rel.parent.as_posix(), rel.stem))
    return found


GROUP_OPTIONS = _group_options()


def test_group_listing_sees_base_groups():
    groups = {group for group, _ in GROUP_OPTIONS}
    assert {"data", "trainer", "logger", "callbacks", "paths", "hydra", "debug", "hardware"} <= groups
    assert ("data", "digits") in GROUP_OPTIONS and ("data", "imagenet") in GROUP_OPTIONS


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_and_resolves(tmp_path, group, option):
    from hydra.errors import ConfigCompositionException

    overrides = [f"{group}={option}", f"paths.output_dir={tmp_path.as_posix()}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose(config_name="search", return_hydra_config=True, overrides=overrides)
        except ConfigCompositionException:  # an option of train.py's groups (recipe, export, retraining presets)
            cfg = compose(config_name="train", return_hydra_config=True, overrides=overrides)
    assert cfg.hydra.runtime.choices[group] == option
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    finally:
        HydraConfig.instance().cfg = None
    assert resolved["paths"]["output_dir"] == tmp_path.as_posix()
    assert isinstance(resolved["seed"], int)


@pytest.mark.parametrize("config_name", ["search", "train"])
def test_entry_configs_compose_with_schema(compose_cfg, config_name):
    cfg = compose_cfg([], config_name=config_name)
    expected = {"search": schema.SearchConfig, "train": schema.TrainConfig}[config_name]
    assert OmegaConf.get_type(cfg) is expected
    assert cfg.task_name == config_name
    assert OmegaConf.get_type(cfg.data) is schema.DigitsDataConfig
    assert OmegaConf.get_type(cfg.trainer) is schema.TrainerConfig
    assert OmegaConf.get_type(cfg.logger) is schema.WandbLoggerConfig
    assert OmegaConf.get_type(cfg.paths) is schema.PathsConfig
    assert OmegaConf.get_type(cfg.hardware) is schema.HardwareConfig
    # search simulates the space at 224; train.py at the arch.json's own input size unless deploy.input_size is set
    assert cfg.deploy.input_size == {"search": 224, "train": None}[config_name] and cfg.deploy.num_classes == 1000


def test_search_defaults_follow_contract(compose_cfg):
    cfg = compose_cfg([])
    assert cfg.latency == "2.5ms" and cfg.seed == 42 and cfg.ckpt_path is None
    assert cfg.data.name == "digits" and cfg.hardware.name == "midap" and cfg.hardware.profile is None
    assert cfg.logger.kind == "wandb" and cfg.trainer.accelerator == "cpu"
    assert set(cfg.callbacks) == {"model_checkpoint", "lr_monitor", "rich_progress_bar"}
    assert cfg.paths.root == str(REPO_ROOT) and cfg.paths.data_dir == f"{REPO_ROOT}/data"


@pytest.mark.parametrize("group,schema_type,key", [
    ("data", {"digits": schema.DigitsDataConfig, "cifar10": schema.CifarDataConfig,
              "cifar100": schema.CifarDataConfig, "imagenet": schema.ImageNetDataConfig}, "name"),
    ("logger", {"wandb": schema.WandbLoggerConfig, "csv": schema.CSVLoggerConfig,
                "none": schema.NoLoggerConfig}, "kind"),
    ("hardware", {"midap": schema.HardwareConfig, "systolic": schema.HardwareConfig,
                  "eyeriss": schema.HardwareConfig}, "name"),
])
def test_option_files_are_typed_and_named(compose_cfg, group, schema_type, key):
    for option, expected_type in schema_type.items():
        node = compose_cfg([f"{group}={option}"])[group]
        assert OmegaConf.get_type(node) is expected_type
        assert node[key] == option


def test_hydra_group_sets_run_dirs_and_no_chdir(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="search", return_hydra_config=True, overrides=["task_name=demo"])
    assert cfg.hydra.job.chdir is False
    raw = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert raw["run"]["dir"].startswith("outputs/${task_name}/")
    assert raw["sweep"]["dir"].startswith("multirun/${task_name}/")


def test_debug_fast_shrinks_the_run(compose_cfg):
    """The search's trainer built from debug=fast runs two training and two validation batches per epoch (of a
    10-batch loader) and no sanity validation: counted in the steps a module actually receives."""
    import pytorch_lightning as pl
    import torch

    from s3nas.search.runner import build_trainer
    from s3nas.runtime.entry import prepare_config

    class Counting(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer, self.calls = torch.nn.Linear(2, 2), []

        def training_step(self, batch, batch_idx):
            self.calls.append(("train", self.current_epoch))
            return self.layer(batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            self.calls.append(("val", self.current_epoch))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(40, 2)), batch_size=4)
    cfg = prepare_config(compose_cfg(["debug=fast", "logger=none", "callbacks=none"]))
    module = Counting()
    trainer = build_trainer(cfg, max_epochs=3, callbacks=[], loggers=[])
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert module.calls[0] == ("train", 0)  # no sanity validation first
    for epoch in range(3):
        assert module.calls.count(("train", epoch)) == 2 and module.calls.count(("val", epoch)) == 2
    assert trainer.global_step == 6 and len(module.calls) == 12


@pytest.mark.parametrize("override,key", [
    ("seed=abc", "seed"),
    ("foo=1", "foo"),
    ("data.nope=1", "nope"),
    ("data.batch_size=big", "batch_size"),
    ("trainer.max_epochs=ten", "max_epochs"),
    ("trainer.nope=1", "nope"),
    ("logger.nope=1", "nope"),
    ("hardware.clock=1", "clock"),
    ("deploy.input_size=x", "input_size"),
])
def test_schema_rejects_wrong_type_or_unknown_key(compose_cfg, override, key):
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg([override])
    assert key in str(info.value) + str(info.value.__cause__)


def test_unknown_group_option_lists_choices(compose_cfg):
    with pytest.raises(HydraException, match="data/nope"):
        compose_cfg(["data=nope"])


# ------------------------------------------------------------------------------ CLI (subprocess)
CHECK = [sys.executable, "-m", "s3nas.search.check"]

BAD_CLI = [
    ("latency=fast", ["latency", "2.5ms", "cycles"]),
    ("latency=-1ms", ["latency", "2.5ms"]),
    ("latency=0ms", ["latency", "2.5ms"]),
    ("latency=2.5parsecs", ["latency", "2.5ms"]),
    ("foo=1", ["foo", "accepted keys", "latency"]),
    ("data.nope=1", ["data.nope", "batch_size"]),
    ("seed=abc", ["seed", "Integer"]),
    ("data=nope", ["data/nope", "digits", "cifar10"]),
    ("+data.nope=1", ["data.nope", "unknown key", "batch_size"]),  # '+' bypasses struct; the runner does not
]


def test_bad_inputs_fail_with_one_line(tmp_path):
    """Bad command lines, in the test process (tests/support/inprocess.py; a real process's exit status and stderr:
    tests/test_search_cli.py): exit 2, one 'error:' line on stderr, no traceback."""
    for i, (override, words) in enumerate(BAD_CLI):
        proc = run_inprocess([*CHECK[1:], override, "logger=none", f"hydra.run.dir={tmp_path / str(i)}"],
                             cwd=tmp_path, check=False)
        err = proc.stderr
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2, (override, err)
        assert "Traceback" not in err, (override, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (override, err)
        for word in words:
            assert word in lines[0], (override, word, lines[0])


def test_good_run_resolves_cycles_and_saves_config(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_inprocess([*CHECK[1:], "latency=2500000cycles", "hardware=systolic", "logger=none",
                          f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    saved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert saved["paths"]["output_dir"] == str(run_dir)
    assert "${" not in (run_dir / "config_resolved.yaml").read_text()
    profile = REPO_ROOT / "simulator" / "profiles" / "systolic.yaml"
    clock_hz = float(yaml.safe_load(profile.read_text())["clock_hz"]) if profile.is_file() else None
    if clock_hz:
        assert saved["latency_ms"] == pytest.approx(2.5e6 / clock_hz * 1e3)
    assert f"latency_ms={saved['latency_ms']:.6g}" in proc.stdout
    assert "CONFIG" in proc.stdout  # the rich tree was printed


def test_multirun_goes_on_after_a_failed_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_inprocess([*CHECK[1:], "-m", "latency=fast,3ms", "logger=none", f"hydra.sweep.dir={sweep_dir}"],
                         cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "job 0" in proc.stderr and "'fast' is not a latency" in proc.stderr
    second = yaml.safe_load((sweep_dir / "1" / "config_resolved.yaml").read_text())
    assert second["latency_ms"] == pytest.approx(3.0)


def test_import_simulator_does_not_import_torch(cli_env):
    code = "import sys, s3nas, simulator; assert 'torch' not in sys.modules, 'simulator imported torch'"
    subprocess.run([sys.executable, "-c", "import simulator, sys; assert 'torch' not in sys.modules"],
                   check=True, env=cli_env, timeout=60)
    subprocess.run([sys.executable, "-c", code], check=True, env=cli_env, timeout=60)


def test_command_modules_import_no_torch(cli_env):
    """Every command names its check and task by import path (s3nas.runtime.entry.Target), so its module imports no
    torch, Lightning or timm: ``--help``, ``--cfg`` and config errors take ~0.4 CPU-s instead of ~6.5, and the
    processes a latency table build spawns (they import the command's module as their main) none of it either."""
    import tomllib

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    modules = sorted({target.split(":")[0] for target in scripts.values()})
    assert len(modules) >= 12
    assert {"s3nas.train.app", "s3nas.baselines.random_search", "s3nas.postsearch.se_removal"} <= set(modules)
    code = (f"import sys, runpy; import {', '.join(modules)}; runpy.run_path('train.py', run_name='not_main'); "
            "heavy = sorted({'torch', 'pytorch_lightning', 'timm'} & set(sys.modules)); assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=cli_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_named_check_and_task_resolves_to_a_function():
    """A command's named targets are imported only when it runs: a misspelt one would show only then."""
    import re

    from s3nas.runtime.entry import resolve_target

    named = set()
    for path in sorted((REPO_ROOT / "src" / "s3nas").rglob("*.py")):
        named |= set(re.findall(r'"(s3nas(?:\.\w+)+:\w+)"', path.read_text()))
    assert {"s3nas.train.runner:train_task", "s3nas.postsearch.selective_se:check",
            "s3nas.baselines.random_baselines:random_task"} <= named, sorted(named)
    for target in sorted(named):
        assert callable(resolve_target(target)), target


def test_a_composition_shares_the_schema_store_instead_of_copying_it(compose_cfg):
    """Hydra deep-copies its config repository for every composition, and with it the ConfigStore of every schema
    (~15% of a composition, s3nas.config._share_the_config_store): the store's copy is the store."""
    import copy

    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    assert copy.deepcopy(store) is store and copy.deepcopy({"store": store})["store"] is store
    cfg = compose_cfg(["latency=2ms"])  # a composition still loads the schemas: typed, validated
    assert OmegaConf.get_type(cfg.schedule).__name__ == "ScheduleConfig"


def test_conf_dir_is_the_repo_conf():
    assert CONF_DIR == (REPO_ROOT / "conf").resolve()
    assert (Path(CONF_DIR) / "search.yaml").is_file() and (Path(CONF_DIR) / "train.yaml").is_file()


# ------------------------------------------------------------------------ every default once
#: Every command's config (conf/<name>.yaml at the top level, base.yaml aside).
APP_CONFIGS = sorted(p.stem for p in CONF_DIR.glob("*.yaml") if p.stem != "base")


@pytest.mark.parametrize("config_name", APP_CONFIGS)
@pytest.mark.parametrize("logger", ["none", "csv"])
def test_every_command_takes_the_base_config(tmp_path, config_name, logger):
    from s3nas.config import compose_config

    cfg = compose_config(config_name, [f"logger={logger}"], output_dir=tmp_path)
    assert cfg.logger.kind == logger  # logger=none is accepted by every command (postprocess included)
    assert cfg.paths.output_dir == tmp_path.as_posix() and cfg.paths.root == str(REPO_ROOT)
    assert isinstance(cfg.seed, int) and cfg.task_name == config_name


def test_base_config_holds_the_shared_defaults():
    base = yaml.safe_load((CONF_DIR / "base.yaml").read_text())
    assert {"paths": "default"} in base["defaults"] and {"logger": "wandb"} in base["defaults"]
    for config_name in APP_CONFIGS:
        own = yaml.safe_load((CONF_DIR / f"{config_name}.yaml").read_text())
        assert "base" in own["defaults"], config_name
        # the shared groups are chosen once, in base.yaml (an app may override the logger)
        assert not any(isinstance(d, dict) and set(d) & {"paths", "hydra", "logger"} for d in own["defaults"])


def test_range_validator_names_key_range_and_value():
    from s3nas.config.ranges import Range, check_ranges
    from s3nas.errors import ConfigError

    node = OmegaConf.create({"a": {"steps": 0, "rate": 1.0, "eps": None, "flag": True}})
    check_ranges(node, {"a.eps": Range(low=0, nullable=True), "a.missing": Range(low=5)})  # absent keys pass
    cases = [("a.steps", Range(low=1, integer=True), "x.a.steps: must be an integer >= 1, got 0"),
             ("a.rate", Range(low=0, high=1, high_open=True), "x.a.rate: must be a number in [0, 1), got 1.0"),
             ("a.eps", Range(low=0, low_open=True), "x.a.eps: must be a number > 0, got None"),
             ("a.flag", Range(low=0), "x.a.flag: must be a number >= 0, got True")]
    for key, rule, message in cases:
        with pytest.raises(ConfigError) as err:
            check_ranges(node, {key: rule}, prefix="x.")
        assert str(err.value) == message
    assert Range(low=1, integer=True).accepts(3) and not Range(low=1, integer=True).accepts(2.5)
    assert not Range(low=0).accepts(float("nan"))


@pytest.mark.parametrize("override,message", [
    ("schedule.search_epochs=0", "schedule.search_epochs: must be an integer >= 1, got 0"),
    ("schedule.optimizer.alpha=1.5", "schedule.optimizer.alpha: must be a number in [0, 1], got 1.5"),
    ("schedule.thresholds.eps=0", "schedule.thresholds.eps: must be a number > 0 or null, got 0.0"),
    ("schedule.target_margin=0.6", "schedule.target_margin: must be a number in [0, 0.5], got 0.6"),
    ("schedule.decode=last", "schedule.decode: 'last' is not accepted; use one of final, best_feasible"),
    ("loss.lambda2=0", "loss.lambda2: must be a number > 0, got 0.0 (set loss.lambda1=0 to disable the term)"),
])
def test_search_value_checks_name_the_key(compose_cfg, override, message):
    from s3nas.config.loss_schema import check_loss
    from s3nas.config.schedule_schema import check_schedule
    from s3nas.errors import ConfigError

    cfg = compose_cfg([override])
    with pytest.raises(ConfigError) as err:
        check_loss(cfg.loss)
        check_schedule(cfg.schedule)
    assert str(err.value) == message


def test_every_numeric_schedule_key_declares_its_range():
    import dataclasses
    import typing

    from s3nas.config.schedule_schema import RANGES, ScheduleConfig

    def numeric_keys(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if dataclasses.is_dataclass(kind):
                yield from numeric_keys(kind, f"{prefix}{f.name}.")
            elif kind in (int, float, typing.Optional[int], typing.Optional[float]):
                yield f"{prefix}{f.name}"

    assert set(numeric_keys(ScheduleConfig)) == set(RANGES)


def test_test_only_knobs_are_not_config_keys(compose_cfg, monkeypatch):
    from s3nas.errors import ConfigError
    from s3nas.runtime.entry import FAULT_INTERRUPT_ENV, fault_interrupt_after_steps

    for override, config_name in (("schedule.interrupt_after_steps=3", "search"),
                                  ("recipe.interrupt_after_steps=3", "train")):
        with pytest.raises(ConfigCompositionException):
            compose_cfg([override], config_name=config_name)
    monkeypatch.delenv(FAULT_INTERRUPT_ENV, raising=False)
    assert fault_interrupt_after_steps() is None
    monkeypatch.setenv(FAULT_INTERRUPT_ENV, "6")
    assert fault_interrupt_after_steps() == 6
    monkeypatch.setenv(FAULT_INTERRUPT_ENV, "0")
    with pytest.raises(ConfigError, match=FAULT_INTERRUPT_ENV):
        fault_interrupt_after_steps()


def test_device_defaults_are_the_schema_and_repeats_below_one_is_refused(compose_cfg):
    from s3nas.config.device_schema import DeviceHardwareConfig
    from s3nas.errors import ConfigError
    from s3nas.latency.device import make_device

    schema_repeats = DeviceHardwareConfig().repeats
    # a hardware node that does not set repeats gets the schema's value (the code has no fallback of its own)
    assert make_device({"device": "torch", "name": "t"}).repeats == schema_repeats
    assert make_device({"device": "simulated", "sim_profile": "midap"}).repeats == schema_repeats
    assert make_device(compose_cfg(["hardware=sim_midap_blackbox", "hardware.repeats=7"]).hardware).repeats == 7
    for key, value in (("repeats", 0), ("warmup", -1), ("threads", 0), ("timeout_s", 0)):
        cfg = compose_cfg(["hardware=sim_midap_blackbox", f"hardware.{key}={value}"])
        with pytest.raises(ConfigError) as err:
            make_device(cfg.hardware)
        assert str(err.value).startswith(f"hardware.{key}: must be") and f"got {value}" in str(err.value)
    with pytest.raises(ConfigError, match="hardware.bogus"):
        make_device({"device": "torch", "bogus": 1})


def test_missing_plugin_names_its_extra():
    from hydra.errors import MissingConfigException

    from s3nas.runtime.entry import format_config_error

    for option, extra in (("hydra/sweeper/optuna", "sweeps"), ("hydra/launcher/joblib", "sweeps"),
                          ("hydra/launcher/submitit_slurm", "slurm")):
        err = MissingConfigException(f"In 'hparams_search/optuna': Could not find '{option}'", missing_cfg_file=option)
        message = format_config_error(err)
        assert message == f"{option} needs the optional extra '{extra}': pip install \"s3nas[{extra}]\""
    plain = format_config_error(MissingConfigException("Could not find 'data/nope'", missing_cfg_file="data/nope"))
    assert "s3nas[" not in plain and "data/nope" in plain


def test_export_command_checks_its_keys(tmp_path):
    from s3nas.config import compose_config
    from s3nas.errors import ConfigError
    from s3nas.train.export_app import check

    with pytest.raises(ConfigError, match="^run_dir: not set"):
        check(compose_config("export", [], output_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"^input_size: must be an integer >= 1 or null, got 0$"):
        check(compose_config("export", [f"run_dir={tmp_path}", "input_size=0"], output_dir=tmp_path))
    cfg = compose_config("export", [f"run_dir={tmp_path}"], output_dir=tmp_path)
    check(cfg)
    from s3nas.config.train_schema import ExportConfig

    # one default for the export options: the app and train.py's export group read the same schema
    assert cfg.opset == ExportConfig().opset and cfg.atol == ExportConfig().atol


@pytest.mark.parametrize("script", ["search.py", "train.py"])
def test_top_level_scripts_print_the_resolved_job_config(script, tmp_path):
    """`python search.py --cfg job --resolve` (paths.output_dir is null where Hydra has no run dir), in the test
    process (the installed commands as real processes: tests/test_packaging.py)."""
    proc = run_inprocess([REPO_ROOT / script, "--cfg", "job", "--resolve", "logger=csv"], cwd=tmp_path)
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["paths"]["output_dir"] is None and resolved["logger"]["save_dir"] is None
    assert resolved["task_name"] == script[:-3] and resolved["seed"] == 42
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("override,message", [
    ("recipe.epochs=0", "recipe.epochs: must be an integer >= 1, got 0"),
    ("recipe.ema.decay=1.0", "recipe.ema.decay: must be a number in [0, 1), got 1.0"),
    ("recipe.dropout=1.5", "recipe.dropout: must be a number in [0, 1) or null, got 1.5"),
    ("recipe.optimizer.lr_per_256=0", "recipe.optimizer.lr_per_256: must be a number > 0, got 0.0"),
    ("export.input_size=0", "export.input_size: must be an integer >= 1 or null, got 0"),
])
def test_train_value_checks_name_the_key(compose_cfg, override, message):
    from s3nas.errors import ConfigError
    from s3nas.train.runner import _check_recipe

    _check_recipe(compose_cfg(["logger=none"], config_name="train"))  # the defaults pass
    with pytest.raises(ConfigError) as err:
        _check_recipe(compose_cfg(["logger=none", override], config_name="train"))
    assert str(err.value) == message
