"""Warm-up reuse (s3nas.search.warmup_cache): the supernet after its warm-up is cached by content, and a later
search of the same space, data, warm-up schedule and seed starts from it, whatever its hardware or target; the
result is the one training the warm-up again gives, and the summary says the warm-up was reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS
from omegaconf import OmegaConf

from s3nas.arch.space import SearchSpace
from s3nas.nn.supernet import Supernet
from s3nas.search.warmup_cache import ENV_SWITCH, warmup_cache_path, warmup_key

TINY = ["debug=search_tiny", "data.image_size=16", "seed=11", "logger=none"]


# Supernets built by _key, by what they are built from (the space's config, the input size, the dropout): most
# overrides below leave the supernet as it is, and a build of the debug space costs ~0.25 CPU-s. The key is still
# computed from the composed config and a supernet built from that config, as the search computes it.
_SUPERNETS: dict = {}


def _key(compose_cfg, *overrides: str) -> str:
    cfg = compose_cfg([*TINY, *overrides])
    built_from = json.dumps([OmegaConf.to_container(cfg.supernet), OmegaConf.to_container(cfg.candidates),
                             int(cfg.data.image_size)], sort_keys=True)
    if built_from not in _SUPERNETS:
        space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10,
                                        input_size=int(cfg.data.image_size), in_channels=3)
        _SUPERNETS[built_from] = Supernet(space, num_classes=10, dropout=float(cfg.supernet.dropout))
    return warmup_key(cfg, _SUPERNETS[built_from], world_size=1)


def test_the_key_is_the_warmups_content_and_nothing_else(compose_cfg):
    base = _key(compose_cfg)
    # what the warm-up does not see: the hardware, the target, the latency loss, the search phase, logging, loaders
    for same in (["latency=3ms"], ["hardware=systolic"], ["loss.lambda1=30"], ["schedule.search_epochs=5"],
                 ["schedule.thresholds.lr_scale=10"], ["data.num_workers=1"], ["schedule.history_every_n_steps=3"]):
        assert _key(compose_cfg, *same) == base, same
    # what it does see: seed, data, the space, its own epochs and optimizer, the batches per epoch
    for other in (["seed=12"], ["data.image_size=24"], ["data.batch_size=8"], ["candidates=mbconv"],
                  ["schedule.warmup_epochs=2"], ["schedule.optimizer.lr_per_256=0.02"],
                  ["trainer.limit_train_batches=5"], ["loss.label_smoothing=0.0"]):
        assert _key(compose_cfg, *other) != base, other


def test_switches(compose_cfg, tmp_path, monkeypatch):
    cfg = compose_cfg([*TINY, f"paths.cache_dir={tmp_path}"])
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=16, in_channels=3)
    module = Supernet(space, num_classes=10)
    monkeypatch.setenv(ENV_SWITCH, "1")
    path = warmup_cache_path(cfg, module, 1)
    assert path is not None and path.parent == tmp_path / "warmup" and path.suffix == ".ckpt"
    assert warmup_cache_path(compose_cfg([*TINY, f"paths.cache_dir={tmp_path}", "schedule.warmup_cache=false"]),
                             module, 1) is None
    assert warmup_cache_path(compose_cfg([*TINY, f"paths.cache_dir={tmp_path}", "schedule.warmup_epochs=0"]),
                             module, 1) is None
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert warmup_cache_path(cfg, module, 1) is None




def _search(run_inproc, run_dir: Path, cache: Path, *overrides: str):
    """The command line in the test process (tests/support/inprocess.py), warm-up cache switched on."""
    proc = run_inproc(["search.py", *TINY, *SHORT_SEARCH, *SMALL_SPLITS, *SMALL_SPACE, *overrides,
                       f"paths.cache_dir={cache}",
                       f"hydra.run.dir={run_dir}"], env={ENV_SWITCH: "1"})
    return proc, json.loads((run_dir / "summary.json").read_text())


def test_a_second_search_starts_from_the_cached_warmup_and_ends_where_a_fresh_one_does(run_inproc, tmp_path):
    cache = tmp_path / "cache"
    _, first = _search(run_inproc, tmp_path / "a", cache, "latency=0.5ms")
    assert first["warmup_source"] == "trained" and "train_step/warmup" in first["timings_s"]
    cached = list((cache / "warmup").glob("*.ckpt"))
    assert len(cached) == 1 and not list((cache / "warmup").glob(".*"))  # one complete file, no temp left

    proc, again = _search(run_inproc, tmp_path / "b", cache, "latency=0.5ms")
    assert again["warmup_source"] == f"cache ({cached[0]})" and "warm-up reused" in proc.stdout
    assert "train_step/warmup" not in again["timings_s"]  # no warm-up step ran
    # the same search as with its own warm-up: same network, same latency, same search-phase history
    assert again["arch"] == first["arch"] and again["latency_ms"] == first["latency_ms"]
    assert again["total_steps"] == first["total_steps"]
    history = {r["step"]: r for r in json.loads((tmp_path / "a" / "history.json").read_text())}
    resumed = json.loads((tmp_path / "b" / "history.json").read_text())
    assert resumed and min(r["step"] for r in resumed) > min(history)  # only the search phase was trained here
    for row in resumed:
        for key in ("ce", "latency_ms"):
            assert row[key] == pytest.approx(history[row["step"]][key], rel=1e-5), (row["step"], key)

    # another hardware and target reuse the same warm-up (the key is hardware-free)
    _, other = _search(run_inproc, tmp_path / "c", cache, "hardware=systolic", "latency=0.8ms")
    assert other["warmup_source"].startswith("cache (") and other["hardware"] == "systolic"
    assert len(list((cache / "warmup").glob("*.ckpt"))) == 1
