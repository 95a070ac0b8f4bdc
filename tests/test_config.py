"""Hydra config tree: every group option composes, schemas reject bad keys/types, CLI errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
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
    cfg = compose_cfg(["debug=fast"])
    # every epoch of the schedule, two batches each (the search's epochs come from schedule.*)
    assert cfg.trainer.max_epochs is None and cfg.trainer.limit_train_batches == 2
    assert cfg.trainer.num_sanity_val_steps == 0


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


def test_bad_inputs_fail_with_one_line(tmp_path, cli_env):
    """All bad command lines at once (in parallel): exit 2, one 'error:' line on stderr, no traceback."""
    procs = []
    for i, (override, _) in enumerate(BAD_CLI):
        cmd = CHECK + [override, "logger=none", f"hydra.run.dir={tmp_path / str(i)}"]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True))
    for proc, (override, words) in zip(procs, BAD_CLI):
        _, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2, (override, err)
        assert "Traceback" not in err, (override, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (override, err)
        for word in words:
            assert word in lines[0], (override, word, lines[0])


def test_good_run_resolves_cycles_and_saves_config(tmp_path, cli_env):
    run_dir = tmp_path / "run"
    proc = subprocess.run(CHECK + ["latency=2500000cycles", "hardware=systolic", "logger=none",
                                   f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=cli_env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert saved["paths"]["output_dir"] == str(run_dir)
    assert "${" not in (run_dir / "config_resolved.yaml").read_text()
    profile = REPO_ROOT / "simulator" / "profiles" / "systolic.yaml"
    clock_hz = float(yaml.safe_load(profile.read_text())["clock_hz"]) if profile.is_file() else None
    if clock_hz:
        assert saved["latency_ms"] == pytest.approx(2.5e6 / clock_hz * 1e3)
    assert f"latency_ms={saved['latency_ms']:.6g}" in proc.stdout
    assert "CONFIG" in proc.stdout  # the rich tree was printed


def test_multirun_goes_on_after_a_failed_job(tmp_path, cli_env):
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(CHECK + ["-m", "latency=fast,3ms", "logger=none", f"hydra.sweep.dir={sweep_dir}"],
                          cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
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


def test_conf_dir_is_the_repo_conf():
    assert CONF_DIR == (REPO_ROOT / "conf").resolve()
    assert (Path(CONF_DIR) / "search.yaml").is_file() and (Path(CONF_DIR) / "train.yaml").is_file()
