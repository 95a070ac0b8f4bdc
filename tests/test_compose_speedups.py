"""The test processes' two shortcuts through Hydra are invisible to the commands: tests/support/yaml_memo.py (a
config text parsed once) and tests/support/run_mode.py (the run mode of a command line that cannot set it)."""

from __future__ import annotations

import pytest
import run_mode
import yaml
import yaml_memo
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from s3nas.config import CONF_DIR


_ORIGINAL = yaml_memo._original_load  # OmegaConf's own load


def _fresh(path):
    return _ORIGINAL(path)


def test_installed_in_the_test_process():
    assert yaml_memo._original_load is not None and OmegaConf.load is not yaml_memo._original_load


def test_a_text_loads_as_omegaconf_loads_it_and_each_result_is_its_own(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("a: 1\nb:\n  - 1\n  - c: ${a}\nd: ???\n")
    first = OmegaConf.load(path)
    with open(path, encoding="utf-8") as f:
        f.read(7)
        f.seek(0)  # as Hydra's FileConfigSource reads its header, then loads
        second = OmegaConf.load(f)
    assert OmegaConf.to_yaml(first) == OmegaConf.to_yaml(second) == OmegaConf.to_yaml(_fresh(path))
    assert second.b[1].c == 1 and OmegaConf.is_missing(second, "d")
    first.a = second.a = 5  # a result is nobody else's: the next load does not see the change
    assert OmegaConf.load(path).a == 1


def test_a_text_seen_before_is_not_parsed_again(tmp_path, monkeypatch):
    parsed = []

    def counting(file_):
        parsed.append(file_)
        return _fresh(file_)

    monkeypatch.setattr(yaml_memo, "_original_load", counting)
    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "b.yaml").write_text("x: 1\n")  # the same text in another file
    assert OmegaConf.load(tmp_path / "a.yaml").x == OmegaConf.load(tmp_path / "b.yaml").x == 1
    assert len(parsed) == 1


def test_a_rewritten_file_is_parsed_again(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("a: 1\n")
    assert OmegaConf.load(path).a == 1
    path.write_text("a: 2\n")  # same size, same second
    assert OmegaConf.load(path).a == 2


def test_a_text_that_does_not_load_fails_as_omegaconf_fails_every_time(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(Exception) as fresh:
        _fresh(path)
    for _ in range(2):
        with pytest.raises(type(fresh.value)) as err:
            OmegaConf.load(path)
        assert str(err.value) == str(fresh.value) and "bad.yaml" in str(err.value)
    with pytest.raises(FileNotFoundError):
        OmegaConf.load(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------------------------ run_mode
def test_the_mode_setting_groups_are_found_and_no_command_selects_one_by_default():
    """run_mode answers None (Hydra's answer for an unset hydra.mode) unless the command line selects from a group
    whose files may set the mode: conf/ has one (hparams_search=optuna: MULTIRUN), and no command's config selects an
    option of it by default."""
    groups, top = run_mode.mode_setting(str(CONF_DIR))
    assert groups == {"hparams_search"} and not top
    for path in sorted(CONF_DIR.glob("*.yaml")):
        for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults") or []:
            if isinstance(entry, dict):
                for key, value in entry.items():
                    assert key not in groups or value is None, f"{path.name}: {key}: {value}"


def test_the_groups_that_may_set_the_mode_follow_the_defaults_lists(tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "many.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    (tmp_path / "sweeps" / "one.yaml").write_text("x: 1\n")
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "big.yaml").write_text("defaults:\n  - override /sweeps: many\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "digits.yaml").write_text("root: x\n")
    (tmp_path / "hydra").mkdir()
    (tmp_path / "hydra" / "default.yaml").write_text("run:\n  dir: x\n")
    (tmp_path / "search.yaml").write_text("defaults:\n  - sweeps: null\n  - data: digits\n")
    (tmp_path / "sweep.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    assert run_mode.mode_setting(str(tmp_path)) == ({"sweeps", "experiment"}, {"sweep"})
    (tmp_path / "hydra" / "default.yaml").write_text("mode: MULTIRUN\n")
    assert run_mode.mode_setting.__wrapped__(str(tmp_path))[0] == {"sweeps", "experiment", "hydra"}


@pytest.mark.parametrize("overrides", [[], ["latency=2ms", "loss.lambda1=5,15"], ["+experiment=paper_imagenet"]])
def test_the_shortcut_answers_as_hydra_does(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert run_mode._original_get_mode(hydra, config_name="search", overrides=list(overrides)) is None
        assert hydra.get_mode(config_name="search", overrides=list(overrides)) is None


@pytest.mark.parametrize("override, mode", [("hydra.mode=MULTIRUN", RunMode.MULTIRUN), ("hydra.mode=RUN", RunMode.RUN),
                                            ("hparams_search=optuna", RunMode.MULTIRUN),
                                            ("+hparams_search=optuna", None)])  # Hydra: already in the defaults
def test_a_command_line_that_sets_the_mode_asks_hydra(override, mode, monkeypatch):
    asked = []

    def original(self, config_name, overrides):
        asked.append(overrides)
        return _ORIGINAL_GET_MODE(self, config_name=config_name, overrides=overrides)

    monkeypatch.setattr(run_mode, "_original_get_mode", original)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra.get_mode(config_name="search", overrides=["latency=2ms", override]) == mode
        assert hydra.get_mode(config_name="search", overrides=["latency=2ms"]) is None
    assert asked == [["latency=2ms", override]]


_ORIGINAL_GET_MODE = run_mode._original_get_mode
