"""A device search's table follows the machine's speed at the search's start (DeviceBackend.at_search_start).

The measured table is timed at one time (normalised to its reference network's level in the log); a search run
later on a shared machine may find the device slower or faster. At the start of the search the reference network is
measured again and the table scaled by the drift when it is beyond the re-measurement's noise. No real device: the
simulator as a black box whose level is a settable factor.
"""

from __future__ import annotations

import pytest

from s3nas.arch.space import SearchSpace
from s3nas.config import compose_config
from s3nas.latency.device import SimulatedDevice, summarize
from s3nas.latency.device_backend import DeviceBackend, drift_scale, scale_table
from s3nas.latency.measured import reference_networks, sample_architectures
from s3nas.outputs import SearchSummary
from s3nas.search.outputs import LATENCY_DETAIL_KEYS
from s3nas.search.runner import _at_search_start


class LevelDevice(SimulatedDevice):
    """The noiseless simulator as a black box whose whole level is ``factor`` (a shared machine's load), with the
    table's chunks normalised by a reference network (``hardware.reference``) unless told otherwise."""

    def __init__(self, reference: bool = True) -> None:
        super().__init__("midap", "level_midap", repeats=1)
        self.reference, self.factor = reference, 1.0

    def _samples(self, network, repeats):
        return [v * self.factor for v in super()._samples(network, repeats)]

    def measure_many(self, networks, repeats=None, rounds=None):
        return [summarize([self.simulate_ms(n) * self.factor], self.name, self.source) for n in networks]


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    cfg = compose_config("search", ["debug=search_small"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=16)


def _backend(tmp_path, space, *, reference: bool = True, **kwargs):
    device = LevelDevice(reference)
    backend = DeviceBackend(device, correction_samples=6, noise_repeats=2, **kwargs)
    table = backend.table(space, cache_dir=tmp_path, progress=False)
    return backend, device, table


def test_drift_scale_only_beyond_the_noise_of_its_estimate():
    assert drift_scale(10.0, 10.3, noise_pct=1.0)["scale"] == pytest.approx(1.03)  # +3% beyond +-1%
    moved = drift_scale(10.0, 10.6, noise_pct=1.0)
    assert moved["scale"] == pytest.approx(1.06) and moved["drift_pct"] == pytest.approx(6.0)
    assert drift_scale(10.0, 10.2, noise_pct=3.0)["scale"] == 1.0  # +2% inside +-3% (one measurement)
    # the median of 4 measurements spread +-3% is known to +-1.5%: +2% is beyond it
    median_of_4 = drift_scale(10.0, 10.2, noise_pct=3.0, repeats=4)
    assert median_of_4["threshold_pct"] == pytest.approx(1.5) and median_of_4["scale"] == pytest.approx(1.02)
    assert drift_scale(10.0, 10.1, noise_pct=3.0, repeats=4)["scale"] == 1.0  # +1% inside +-1.5%
    assert drift_scale(10.0, 9.5, noise_pct=1.0)["scale"] == pytest.approx(0.95)  # faster now: scaled down too
    floor = drift_scale(10.0, 10.03, noise_pct=0.0, min_pct=0.5)  # a noiseless re-measurement keeps a floor
    assert floor["scale"] == 1.0 and floor["threshold_pct"] == 0.5


def test_scale_table_scales_every_network_and_keeps_the_meta(tmp_path, space):
    _, _, table = _backend(tmp_path, space)
    scaled = scale_table(table, 1.1, meta={"drift": {"scale": 1.1}})
    for options in sample_architectures(space, 5, seed=2):
        assert scaled.estimate_ms(options) == pytest.approx(1.1 * table.estimate_ms(options), rel=1e-4)
    assert scaled.meta["method"] == table.meta["method"] and scaled.meta["drift"] == {"scale": 1.1}
    assert scaled.key != table.key and "drift" not in table.meta


def test_a_slower_machine_at_the_start_scales_the_search_table(tmp_path, space):
    backend, device, table = _backend(tmp_path, space)
    device.factor = 1.2  # the machine runs 20% slower than when the table was measured
    searched = backend.at_search_start(space, table)
    drift = searched.meta["drift"]
    assert drift["drift_pct"] == pytest.approx(20.0, abs=1e-6) and drift["scale"] == pytest.approx(1.2)
    nets = sample_architectures(space, 6, seed=4)
    for options in nets:
        assert searched.estimate_ms(options) == pytest.approx(1.2 * table.estimate_ms(options), rel=1e-4)
        # the search's table now predicts what the device measures end to end now (the noiseless truth here)
        truth_now = device.measure(space.arch_spec(list(options))).median_ms
        assert searched.estimate_ms(options) == pytest.approx(truth_now, rel=0.05)
    # the delivered network's result and prediction say what was done
    spec = space.arch_spec(list(nets[1]))
    result = backend.evaluate(spec)
    assert result.details["table_scale"] == pytest.approx(1.2)
    assert result.details["device_drift_start_pct"] == pytest.approx(20.0, abs=1e-6)
    assert result.details["reference_start_ms"] == pytest.approx(
        device.measure(reference_networks(space)["net"]).median_ms)
    assert result.details["device_drift_start_noise_pct"] == pytest.approx(0.5)  # noiseless: the floor
    assert "table scaled x1.2000" in result.source
    assert result.details["predicted_ms"] == pytest.approx(searched.estimate_ms(nets[1]), rel=1e-6)
    assert "scaled x1.2000" in backend.predict(spec).how


def test_a_faster_machine_scales_down(tmp_path, space):
    backend, device, table = _backend(tmp_path, space)
    device.factor = 0.9
    searched = backend.at_search_start(space, table)
    assert searched.meta["drift"]["scale"] == pytest.approx(0.9)
    assert searched.max_ms == pytest.approx(0.9 * table.max_ms, rel=1e-4)


def test_no_drift_leaves_the_table_as_it_is(tmp_path, space):
    backend, device, table = _backend(tmp_path, space)
    searched = backend.at_search_start(space, table)  # same level as when measured
    assert searched is table and searched.meta["drift"]["scale"] == 1.0
    result = backend.evaluate(space.arch_spec(list(space.min_options())))
    assert result.details["table_scale"] == 1.0 and "within the noise, table not scaled" in result.source


def test_without_a_reference_or_switched_off_nothing_is_measured(tmp_path, space):
    backend, device, table = _backend(tmp_path / "plain", space, reference=False)
    device.factor = 1.3
    seconds = backend.device_seconds
    assert backend.at_search_start(space, table) is table and "drift" not in table.meta
    assert backend.device_seconds == seconds  # nothing was timed
    assert "table_scale" not in backend.evaluate(space.arch_spec(list(space.min_options()))).details
    off, off_device, off_table = _backend(tmp_path / "off", space, rescale_drift=False)
    off_device.factor = 1.3
    assert off.at_search_start(space, off_table) is off_table


def test_conservative_and_drift_compose(tmp_path, space):
    backend, device, table = _backend(tmp_path, space, conservative=True)
    assert table.meta["conservative"]["factor"] > 1.0
    device.factor = 1.1
    searched = backend.at_search_start(space, table)
    assert searched.meta["conservative"] == table.meta["conservative"]
    assert searched.max_ms == pytest.approx(1.1 * table.max_ms, rel=1e-4)


def test_the_runner_adjusts_device_tables_only(tmp_path, space):
    """The search's runner asks every backend for its start-of-search table: a simulator profile has no such step
    and its table is passed through untouched."""
    backend, device, table = _backend(tmp_path, space)
    device.factor = 1.25
    assert _at_search_start(backend, space, table).meta["drift"]["scale"] == pytest.approx(1.25)

    class Simulated:  # a backend without at_search_start (the simulator profiles)
        name = "midap"

    assert _at_search_start(Simulated(), space, table) is table


def test_the_summary_schema_takes_the_start_drift_fields():
    names = set(SearchSummary.__dataclass_fields__)
    for key in ("reference_start_ms", "device_drift_start_pct", "device_drift_start_noise_pct", "table_scale"):
        assert key in LATENCY_DETAIL_KEYS and key in names
        assert SearchSummary.__dataclass_fields__[key].default is None  # a simulated search leaves them null
