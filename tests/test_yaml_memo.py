"""tests/support/yaml_memo.py (the test processes' remembered ``OmegaConf.load``) is invisible to what it loads."""

from __future__ import annotations

import pytest
import yaml_memo
from omegaconf import OmegaConf


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
