"""Latency table: entries per option, cache hit/miss/corruption/rebuild, key sensitivity, min<=estimate<=max."""

from __future__ import annotations

import dataclasses
import json
import random
import warnings

import pytest

simulator = pytest.importorskip("simulator")
if not hasattr(simulator, "simulate"):  # pragma: no cover - simulator core not installed
    pytest.skip("simulator.simulate missing", allow_module_level=True)

from s3nas.arch.graph import archspec_to_graph  # noqa: E402
from s3nas.arch.spec import Branch  # noqa: E402
from s3nas.latency import lut as lut_module  # noqa: E402
from s3nas.latency.lut import LatencyTable, build_latency_table, cache_path, table_key  # noqa: E402
from s3nas.arch.space import SearchSpace  # noqa: E402

TINY_SUPERNET = {"name": "tiny", "widths": [16, 24, 32], "strides": [2, 2, 2], "depths": [2, 2, 2],
                 "stem_channels": 16, "head_channels": 64}
TINY_CANDIDATES = {"mixconv": {"max_kernels": [3, 5], "expansions": [0, 2], "min_kernel": 3}}


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.from_config(TINY_SUPERNET, TINY_CANDIDATES, num_classes=10, input_size=64)


@pytest.fixture(scope="module")
def profile():
    return simulator.load_profile("midap")


@pytest.fixture(scope="module")
def table(space, profile) -> LatencyTable:
    return build_latency_table(space, profile, cache_dir=None, workers=1, progress=False, samples_per_option=4)


def test_entries_cover_every_option(space, table, profile):
    assert len(table) == len(space.positions)
    for i in range(len(space.positions)):
        assert set(table.options(i)) == set(space.options(i))
        for opt in space.options(i):
            assert table.cycles(i, opt) == 0 if not opt else table.cycles(i, opt) > 0
    assert table.num_entries == sum(space.num_options())
    assert table.clock_hz == profile.clock_hz


def test_cycles_canonicalise_and_ms(space, table):
    i = 1
    assert table.cycles(i, [Branch(3, 2), Branch(3, 2)]) == table.cycles(i, (Branch(3, 4.0),))
    assert table.block_ms(i, (Branch(3, 4.0),)) == pytest.approx(table.cycles(i, (Branch(3, 4.0),)) * 1e3 / table.clock_hz)
    bigger = table.cycles(i, (Branch(3, 2.0), Branch(5, 2.0)))
    assert bigger > table.cycles(i, (Branch(3, 2.0),))  # more channels, larger kernel: slower
    with pytest.raises(KeyError):
        table.cycles(i, (Branch(7, 2.0),))


def test_min_estimate_max_and_accuracy(space, table, profile):
    rng = random.Random(0)
    errors = []
    assert table.min_ms < table.max_ms
    assert table.min_ms == pytest.approx(table.fixed_ms + sum(min(table.block_ms(i, o) for o in space.options(i))
                                                              for i in range(len(space.positions))))
    for _ in range(20):
        options = space.random_options(rng)
        spec = space.arch_spec(options)
        est = table.estimate_ms(options)
        assert table.min_ms <= est <= table.max_ms
        assert table.estimate_ms(spec) == pytest.approx(est)
        full_ms = simulator.simulate(archspec_to_graph(spec), profile).latency_ms
        errors.append(abs(est - full_ms) / full_ms)
    assert sum(errors) / len(errors) < 0.01  # in-context entries track whole-network simulation


def test_isolated_method(space, profile):
    t = build_latency_table(space, profile, cache_dir=None, workers=1, progress=False, method="isolated")
    assert t.meta["method"] == "isolated" and t.cycles(1, ()) == 0 and t.fixed_cycles > 0
    assert all(c > 0 for i in range(len(space.positions)) for o, c in t.entries[i].items() if o)


def test_cache_miss_hit_and_corruption(space, profile, tmp_path, monkeypatch):
    kw = dict(cache_dir=tmp_path, workers=1, progress=False, samples_per_option=2)
    first = build_latency_table(space, profile, **kw)
    path = cache_path(tmp_path, space, profile, first.key)
    assert path.exists() and [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == [path.name]  # the lock stays

    calls = []
    real = lut_module.compute_latency_table

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(lut_module, "compute_latency_table", counting)
    hit = build_latency_table(space, profile, **kw)
    assert calls == [] and hit.entries == first.entries and hit.fixed_cycles == first.fixed_cycles

    good = path.read_text()
    data = json.loads(good)
    data["positions"][2]["entries"].pop()
    bad_cases = ["{not json", json.dumps({**json.loads(good), "key": "0" * 64}), json.dumps(data), "[]"]
    for text in bad_cases:
        path.write_text(text)
        with pytest.warns(UserWarning, match="rebuilding"):
            rebuilt = build_latency_table(space, profile, **kw)
        assert rebuilt.entries == first.entries
        assert json.loads(path.read_text())["key"] == first.key  # the cache was rewritten
    assert len(calls) == len(bad_cases)


def test_key_depends_on_profile_space_and_version(space, profile, monkeypatch):
    key = table_key(space, profile)
    slower = dataclasses.replace(profile, dram_bytes_per_cycle=profile.dram_bytes_per_cycle / 2)
    assert table_key(space, slower) != key
    other = SearchSpace.from_config(TINY_SUPERNET, TINY_CANDIDATES, num_classes=10, input_size=96)
    assert table_key(other, profile) != key
    assert table_key(space, profile, samples_per_option=8) != key
    monkeypatch.setattr(simulator, "COST_MODEL_VERSION", simulator.COST_MODEL_VERSION + 1)
    assert table_key(space, profile) != key  # a cost-model change alone invalidates cached tables
    cost_key = table_key(space, profile)
    monkeypatch.setattr(simulator, "SIMULATOR_VERSION", "999")
    assert table_key(space, profile) not in (key, cost_key)


def test_save_load_round_trip(space, table, tmp_path):
    path = table.save(tmp_path / "lut.json")
    loaded = LatencyTable.load(path, space)
    assert loaded.entries == table.entries and loaded.key == table.key and loaded.min_ms == table.min_ms


def test_parallel_build_matches_serial(space, profile, table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel = build_latency_table(space, profile, cache_dir=None, workers=2, progress=True,
                                       samples_per_option=4)
    assert parallel.entries == table.entries and parallel.fixed_cycles == table.fixed_cycles


def test_context_entries_beat_isolated_blocks_where_prefetch_overlaps(space):
    """On a profile with cross-layer weight prefetch, in-network entries track full simulation better."""
    eyeriss = simulator.load_profile("eyeriss")
    assert eyeriss.cross_layer_prefetch
    ctx = build_latency_table(space, eyeriss, cache_dir=None, workers=1, progress=False, samples_per_option=4)
    iso = build_latency_table(space, eyeriss, cache_dir=None, workers=1, progress=False, method="isolated")
    rng = random.Random(5)
    err_ctx = err_iso = 0.0
    for _ in range(15):
        options = space.random_options(rng)
        full = simulator.simulate(archspec_to_graph(space.arch_spec(options)), eyeriss).total_cycles
        err_ctx += abs(ctx.estimate_cycles(options) - full) / full
        err_iso += abs(iso.estimate_cycles(options) - full) / full
    assert err_ctx < err_iso
