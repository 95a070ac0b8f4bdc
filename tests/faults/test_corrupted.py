"""Corrupted state: a truncated or garbage cache (latency table, measurement-log line, graph cache entry, BBSSP
cache entry) is rebuilt with one warning naming the file, and gives the same result as a fresh build; a bad
user file (arch.json, ckpt_path=, a search checkpoint of another search space) is one error line naming the
file and what to do."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from s3nas.arch.space import SearchSpace
from s3nas.config import compose_config
from s3nas.errors import ConfigError

TINY_SUPERNET = {"name": "tiny", "widths": [16, 24, 32], "strides": [2, 2, 2], "depths": [2, 2, 2],
                 "stem_channels": 16, "head_channels": 64}
TINY_CANDIDATES = {"mixconv": {"max_kernels": [3, 5], "expansions": [0, 2], "min_kernel": 3}}


def _space(input_size: int = 64, candidates: dict | None = None) -> SearchSpace:
    return SearchSpace.from_config(TINY_SUPERNET, candidates or TINY_CANDIDATES, num_classes=10,
                                   input_size=input_size)


def _one_warning(record, path: Path) -> str:
    messages = [str(w.message) for w in record if str(path) in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in record]
    assert "\n" not in messages[0] and ("rebuilding it" in messages[0] or "taken again" in messages[0])
    return messages[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_key"])
def test_bad_latency_table_cache_is_rebuilt(tmp_path, damage):
    from s3nas.latency.lut import build_latency_table

    space = _space()
    good = build_latency_table(space, "midap", cache_dir=tmp_path, workers=1, progress=False, samples_per_option=2)
    path = next(tmp_path.glob("lut-*.json"))
    text = path.read_text()
    path.write_text({"truncated": text[:len(text) // 2], "garbage": "\x00\x01 not json",
                     "other_key": text.replace(good.key, "0" * 64)}[damage])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        rebuilt = build_latency_table(space, "midap", cache_dir=tmp_path, workers=1, progress=False,
                                      samples_per_option=2)
    _one_warning(record, path)
    assert rebuilt.to_dict() == good.to_dict()
    assert json.loads(path.read_text()) == good.to_dict()  # the cache holds the good table again


def test_garbage_measurement_log_line_is_dropped_and_measured_again(tmp_path):
    from s3nas.latency.device import SimulatedDevice
    from s3nas.latency.measured import build_measured_table

    space = _space(16)
    good = build_measured_table(space, SimulatedDevice("midap", repeats=1), cache_dir=tmp_path, samples=4,
                                progress=False, printer=None)
    log = next(tmp_path.glob("measured-*.jsonl"))
    lines = log.read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]  # a torn record in the middle
    lines.insert(7, "\x00garbage")
    log.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = build_measured_table(space, SimulatedDevice("midap", repeats=1), cache_dir=tmp_path, samples=4,
                                     progress=False, printer=None)
    message = _one_warning(record, log)
    assert "2 unreadable line(s) (4, 8" in message
    assert again.measured_now == 1  # only the torn record is measured again
    assert again.corrected.to_dict() == good.corrected.to_dict()
    assert all(json.loads(line)["id"] for line in log.read_text().splitlines())  # the file is clean again


def test_bad_graph_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    from simulator import loaders

    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path))
    graph = loaders.load_model_graph("timm:mobilenetv3_small_050", 64)
    path = loaders._timm_cache_path("mobilenetv3_small_050", 64)
    path.write_text(path.read_text()[:100])
    with pytest.warns(UserWarning, match=rf"graph cache {path} is unusable .*; rebuilding it"):
        assert loaders.load_model_graph("timm:mobilenetv3_small_050", 64) == graph
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # now a clean cache hit
        assert loaders.load_model_graph("timm:mobilenetv3_small_050", 64) == graph


@pytest.mark.parametrize("damage", ["truncated", "no_latency"])
def test_bad_bbssp_cache_entry_is_rebuilt(tmp_path, damage):
    from s3nas.latency.backend import make_backend
    from s3nas.profiling import profile_space as ps

    cfg = compose_config("search", ["debug=search_small"])
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=64)
    specs = {"min": space.arch_spec(space.min_options())}
    backend = make_backend(cfg.hardware)
    good = ps.profile_latency(specs, backend, tmp_path)["min"]
    path = next(tmp_path.glob("latency/*/*.json"))
    entry = json.loads(path.read_text())
    path.write_text(path.read_text()[:20] if damage == "truncated" else json.dumps({**entry, "latency_ms": None}))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = ps.profile_latency(specs, backend, tmp_path)["min"]
    _one_warning(record, path)
    assert not again["cached"] and again["latency_ms"] == good["latency_ms"]
    assert json.loads(path.read_text()) == entry  # rebuilt


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong_field"])
def test_bad_arch_json_is_one_line_naming_the_file(tmp_path, damage):
    from s3nas.arch import codec
    from s3nas.train.runner import check_train

    spec = _space(32).arch_spec(_space(32).min_options())
    path = codec.save_json(spec, tmp_path / "arch.json")
    text = path.read_text()
    path.write_text({"truncated": text[: len(text) // 2], "garbage": "\x89PNG\x00\x01",
                     "wrong_field": text.replace('"blocks"', '"blocs"')}[damage])
    cfg = compose_config("train", [f"arch={path}", "logger=none"], output_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as error:
        check_train(cfg)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "pass the arch.json a search wrote" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_bad_search_ckpt_path_is_one_line(tmp_path, damage):
    from s3nas.search.checks import resume_checkpoint

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64)}, "s3nas": {"phase": "search"}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"garbage" * 100)
    cfg = compose_config("search", [f"ckpt_path={path}", "logger=none"], output_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as error:
        resume_checkpoint(cfg, None)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "pass another one" in message


def test_search_checkpoint_of_another_space_is_one_line(tmp_path):
    from s3nas.nn.supernet import Supernet
    from s3nas.search.checks import check_checkpoint_fits

    def module(candidates: dict) -> torch.nn.Module:
        holder = torch.nn.Module()  # keys like the search module's: supernet.<...>
        holder.supernet = Supernet(_space(32, candidates), num_classes=10)
        return holder

    saved = module(TINY_CANDIDATES)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": saved.state_dict(), "s3nas": {"phase": "search"}}, path)
    check_checkpoint_fits(path, module(TINY_CANDIDATES), from_ckpt_path=True)  # the same space: fine
    other = module({"mixconv": {"max_kernels": [3, 7], "expansions": [0, 3], "min_kernel": 3}})
    with pytest.raises(ConfigError) as error:
        check_checkpoint_fits(path, other, from_ckpt_path=True)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "another search space" in message
    assert "leave ckpt_path out" in message
    with pytest.raises(ConfigError, match="use another hydra.run.dir"):
        check_checkpoint_fits(path, other, from_ckpt_path=False)
