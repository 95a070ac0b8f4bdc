"""Measured latency table: standalone blocks, the layer-adaptive correction, caching, resuming after a failure."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from s3nas.latency.device import DeviceError, Piece, SimulatedDevice
from s3nas.latency.device import summarize
from s3nas.latency.correction import block_weight_params, fit_correction, position_groups, score
from s3nas.latency.measured import (MeasurementLog, build_measured_table, measure_networks, reference_networks,
                                  remeasure_networks, sample_architectures)
from s3nas.config import compose_config
from s3nas.latency.lut import LatencyTable
from s3nas.arch.space import SearchSpace


def _space(size: int) -> SearchSpace:
    cfg = compose_config("search", ["debug=search_small"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=size)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return _space(224)


class FlakyDevice(SimulatedDevice):
    """The simulator as a black box that fails (like a board losing its connection) after ``fail_after`` calls."""

    def __init__(self, fail_after: int | None) -> None:
        super().__init__("midap", "flaky_midap", repeats=1)
        self.calls, self.fail_after = 0, fail_after

    def measure(self, network, repeats=None):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise DeviceError("device flaky_midap: connection lost")
        return super().measure(network, repeats)


def test_table_entries_are_standalone_block_measurements(space, tmp_path):
    device = SimulatedDevice("midap", "sim", repeats=1)
    measured = build_measured_table(space, device, cache_dir=tmp_path, samples=8, progress=False, printer=None)
    raw = measured.raw
    for i, option in ((0, space.options(0)[-1]), (17, space.options(17)[3]), (28, space.options(28)[1])):
        alone_ms = device.simulate_ms(Piece.at(space, i, option))
        assert raw.block_ms(i, option) == pytest.approx(alone_ms, abs=1e-6)
    assert raw.fixed_ms == pytest.approx(device.simulate_ms(Piece.stem(space)) + device.simulate_ms(Piece.head(space)),
                                         abs=2e-6)
    assert all(raw.cycles(i, ()) == 0 for i, p in enumerate(space.positions) if p.allow_skip)
    # cached: a second build measures nothing and gives the same tables
    again = build_measured_table(space, device, cache_dir=tmp_path, samples=8, progress=False, printer=None)
    assert again.measured_now == 0 and again.raw.entries == raw.entries
    assert again.corrected.entries == measured.corrected.entries
    # the corrected table is an ordinary latency table: it round-trips through its JSON form
    path = measured.corrected.save(tmp_path / "lut.json")
    assert LatencyTable.load(path, space).entries == measured.corrected.entries


def test_correction_beats_the_raw_sum_on_heldout_networks(space, tmp_path):
    """Against a known truth (noiseless simulation): the raw sum misses the stalls and overlaps of a whole
    network; the corrected sum is at least 2x closer on held-out networks and within 10% for all of them."""
    device = SimulatedDevice("midap", "sim", repeats=1)
    measured = build_measured_table(space, device, cache_dir=tmp_path, samples=30, progress=False, printer=None)
    held = sample_architectures(space, 30, seed=99)
    truth = [device.simulate_ms(space.arch_spec(o)) for o in held]
    raw = score([measured.raw.estimate_ms(o) for o in held], truth)
    corrected = score([measured.corrected.estimate_ms(o) for o in held], truth)
    assert corrected["mape_pct"] * 2 <= raw["mape_pct"]
    assert corrected["within10_pct"] == 100.0
    assert measured.correction.fit["train_mape_pct"] < measured.correction.fit["train_raw_mape_pct"]


def test_fit_recovers_a_known_affine_correction(space):
    rng = random.Random(0)
    groups = position_groups(space, "stage_affine")
    n_groups = max(groups) + 1
    entries = [{o: (0 if not o else rng.randint(5_000, 50_000)) for o in space.options(i)}
               for i in range(len(space.positions))]
    raw = LatencyTable(entries, 20_000, 1e9, space=space)  # nanoseconds
    scale = [0.6 + 0.1 * g for g in range(n_groups)]
    offset = [-0.002 + 0.0005 * g for g in range(n_groups)]

    def truth(options):
        total = 0.05
        for i, o in enumerate(options):
            if o:
                total += scale[groups[i]] * raw.block_ms(i, o) + offset[groups[i]]
        return total

    nets = sample_architectures(space, 120, seed=1)
    correction = fit_correction(raw, [(o, truth(o)) for o in nets], "stage_affine", ridge=1e-6)
    assert np.allclose(correction.scale, scale, atol=0.02)
    assert correction.fixed_ms == pytest.approx(0.05, abs=0.003)
    corrected = correction.apply(raw)
    held = sample_architectures(space, 20, seed=2)
    assert score([corrected.estimate_ms(o) for o in held], [truth(o) for o in held])["mape_pct"] < 0.5


def test_weights_correction_recovers_a_weight_streaming_cost(space):
    """A truth where a whole network also pays for streaming its weights (per parameter, plus a step for blocks
    above 128k parameters): stage_affine_weights finds the step by leave-one-out on its samples and predicts
    held-out networks far better than stage_affine; its table is still one non-negative number per entry."""
    rng = random.Random(0)
    groups = position_groups(space, "stage_affine")
    entries = [{o: (0 if not o else rng.randint(5_000, 50_000)) for o in space.options(i)}
               for i in range(len(space.positions))]
    raw = LatencyTable(entries, 20_000, 1e9, space=space)  # nanoseconds

    def truth(options):
        total = 0.05
        for i, o in enumerate(options):
            if o:
                params = block_weight_params(space, i, o)
                total += (1.0 + 0.05 * groups[i]) * raw.block_ms(i, o) + 4e-8 * params + 0.01 * (params > 128_000)
        return total

    nets = sample_architectures(space, 60, seed=1)
    held = sample_architectures(space, 30, seed=2)
    held_truth = [truth(o) for o in held]
    fitted = {m: fit_correction(raw, [(o, truth(o)) for o in nets], m, ridge=1e-4)
              for m in ("stage_affine_weights", "stage_affine")}
    weights = fitted["stage_affine_weights"]
    assert weights.weight_threshold == 128_000 and weights.weight_ms > 0 and weights.big_block_ms > 0
    assert weights.fit["loo_mape_pct"] < 1.0
    corrected = weights.apply(raw)
    assert all(c >= 0 for row in corrected.entries for c in row.values())
    mape = {m: score([c.apply(raw).estimate_ms(o) for o in held], held_truth)["mape_pct"] for m, c in fitted.items()}
    assert mape["stage_affine_weights"] < 1.0 and mape["stage_affine_weights"] * 3 < mape["stage_affine"]


def test_failing_device_keeps_its_measurements_and_the_build_resumes(tmp_path):
    space = _space(16)
    with pytest.raises(DeviceError) as info:
        build_measured_table(space, FlakyDevice(fail_after=37), cache_dir=tmp_path, samples=4, chunk=8,
                             progress=False, printer=None)
    message = str(info.value)
    # every measurement before the connection was lost is kept (not only whole chunks); the build stops after
    # ABORT_AFTER_FAILURES failures in a row
    assert "connection lost" in message and "37 measurements kept" in message and "\n" not in message
    assert "networks in a row failed" in message
    log_path = next(tmp_path.glob("measured-*.jsonl"))
    assert len(log_path.read_text().splitlines()) == 37
    with open(log_path, "a") as handle:  # a line torn by a kill
        handle.write('{"id": "block:0:3x2", "median')
    device = FlakyDevice(fail_after=None)
    resumed = build_measured_table(space, device, cache_dir=tmp_path, samples=4, chunk=8, progress=False,
                                   printer=None)
    total = 2 + sum(1 for i in range(len(space.positions)) for o in space.options(i) if o) + 4
    assert resumed.measured_now == total - 37 and device.calls == total - 37
    fresh = build_measured_table(space, FlakyDevice(fail_after=None), cache_dir=tmp_path / "fresh", samples=4,
                                 progress=False, printer=None)
    assert resumed.raw.entries == fresh.raw.entries and resumed.raw.fixed_cycles == fresh.raw.fixed_cycles
    assert len(MeasurementLog(log_path)) == total


def test_log_ignores_torn_and_foreign_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"id": "stem", "median_ms": 0.5}) + "\n" + "garbage\n" + '{"id": 3}\n' + '{"id": "he')
    log = MeasurementLog(path)
    assert len(log) == 1 and log.median_ms("stem") == 0.5


def test_logged_networks_are_keyed_by_their_options(space):
    from s3nas.latency.measured import network_id

    a, b = sample_architectures(space, 2, seed=5)
    assert network_id("net:0", 0, a) == network_id("net:0", 0, list(a))
    assert network_id("net:0", 0, a) != network_id("net:0", 0, b)  # same index, other network: not reused


class DriftingDevice(SimulatedDevice):
    """The noiseless simulator as a black box whose level drifts between chunks (a shared machine's load):
    every ``measure_many`` call multiplies all its measurements by a new factor."""

    def __init__(self, reference: bool) -> None:
        super().__init__("midap", "drifting_midap", repeats=1)
        self.reference, self.factors, self.rng = reference, [], random.Random(7)

    def measure_many(self, networks, repeats=None, rounds=None):
        factor = self.rng.choice([1.0, 1.3, 1.75, 2.3])
        self.factors.append(factor)
        return [summarize([m.median_ms * factor], self.name, self.source)
                for m in super().measure_many(networks, repeats, rounds)]


def test_reference_normalisation_removes_drift_between_chunks(tmp_path):
    """Each chunk times the reference with its networks; normalised by it, every measurement is the truth times
    one common factor (the reference's median level), while the raw values (kept in the log) carry the drift."""
    space = _space(16)
    nets = sample_architectures(space, 24, seed=3)
    truth = np.array([SimulatedDevice("midap").simulate_ms(space.arch_spec(o)) for o in nets])
    device = DriftingDevice(reference=True)
    normalised = np.array(measure_networks(device, space, nets, tag="t", cache_dir=tmp_path, chunk=4,
                                           progress=False))
    raw = np.array(measure_networks(device, space, nets, tag="t", cache_dir=tmp_path, chunk=4, progress=False,
                                    raw=True))
    assert len(device.factors) == 6 and len(set(device.factors)) > 1  # six chunks at different levels
    assert np.ptp(raw / truth) > 0.2  # the drift is in the raw measurements ...
    ratio = normalised / truth
    assert np.allclose(ratio, ratio[0], rtol=1e-9)  # ... and gone after normalisation
    assert min(device.factors) <= ratio[0] <= max(device.factors)
    log = MeasurementLog(next(tmp_path.glob("measured-*.jsonl")))
    refs = [r for r in log.records.values() if r.get("reference") == "net"]
    assert len(refs) == 6 and all(r["chunk"] for r in refs)
    # a later pass (not logged) is normalised to the same level
    again_raw, again = remeasure_networks(device, space, nets[:3], cache_dir=tmp_path)
    assert np.allclose(np.array(again) / truth[:3], ratio[0], rtol=1e-9)
    assert np.allclose(np.array(again_raw) / truth[:3], device.factors[-1], rtol=1e-9)
    # without the reference the drift stays, and the log is another one (other key)
    plain = DriftingDevice(reference=False)
    unnormalised = np.array(measure_networks(plain, space, nets, tag="t", cache_dir=tmp_path, chunk=4,
                                             progress=False))
    assert np.ptp(unnormalised / truth) > 0.2 and len(list(tmp_path.glob("measured-*.jsonl"))) == 2


def test_measured_table_with_reference_is_normalised(tmp_path):
    space = _space(16)
    device = DriftingDevice(reference=True)
    measured = build_measured_table(space, device, cache_dir=tmp_path, samples=6, chunk=64, progress=False,
                                    printer=None)
    level = measured.raw.meta["reference"]["block"] / device.simulate_ms(reference_networks(space)["block"])
    for i, option in ((0, space.options(0)[-1]), (9, space.options(9)[1])):
        alone = device.simulate_ms(Piece.at(space, i, option))
        assert measured.raw.block_ms(i, option) == pytest.approx(alone * level, rel=1e-3)


def test_samples_span_the_space_from_its_fastest_network():
    space = _space(16)
    device = SimulatedDevice("midap")
    nets = sample_architectures(space, 40, seed=0)
    assert nets[0] == list(space.min_options())
    ms = sorted(device.simulate_ms(space.arch_spec(o)) for o in nets)
    fastest = device.simulate_ms(space.arch_spec(space.min_options()))
    largest = device.simulate_ms(space.arch_spec([space.options(i)[-1] for i in range(len(space.positions))]))
    assert ms[0] == pytest.approx(fastest)
    span = largest - fastest  # stratified sizes: small, middle and large networks all present
    for lo, hi in ((0.0, 0.33), (0.33, 0.66), (0.66, 1.01)):
        assert any(fastest + lo * span < m <= fastest + hi * span for m in ms[1:]), (lo, hi)


def test_delivered_measurement_reports_the_drift_since_the_table(tmp_path):
    """The delivered network's result says how far the machine is from the table's reference level."""
    from s3nas.latency.device_backend import DeviceBackend

    space = _space(16)
    device = SimulatedDevice("midap", "sim", repeats=1)
    ref_ms = device.measure(reference_networks(space)["net"]).median_ms
    spec = space.arch_spec(list(space.min_options()))
    plain = DeviceBackend(device, noise_repeats=2).evaluate(spec)  # no table measured: no reference level
    assert "device_drift_pct" not in plain.details and "vs the table" not in plain.source
    assert plain.latency_ms == pytest.approx(device.measure(spec).median_ms)
    assert plain.source.startswith("measurement (sim") and plain.noise_pct is not None
    backend = DeviceBackend(device, noise_repeats=2)
    backend._reference = (reference_networks(space)["net"], ref_ms / 1.25)  # as a table measured 25% faster sets it
    out = backend.evaluate(spec)
    assert out.details["device_drift_pct"] == pytest.approx(25.0)
    assert out.details["reference_now_ms"] == pytest.approx(ref_ms) and "+25.0% vs the table" in out.source
