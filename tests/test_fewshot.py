"""Few-shot device latency (s3nas.latency.fewshot, hardware.budget.networks): features, fit, intervals, selection,
the device backend's few-shot table, conservative search and the summary's prediction fields."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from inprocess import SHORT_SEARCH

from s3nas.arch.graph import archspec_to_graph
from s3nas.arch.space import SearchSpace
from s3nas.config import compose_config
from s3nas.errors import ConfigError
from s3nas.latency.device import Device, summarize
from s3nas.latency.device_backend import DeviceBackend
from s3nas.latency.fewshot import FEATURES, SpaceFeatures, candidate_pool, fit_fewshot, graph_features, select_networks
from s3nas.latency.measured import sample_architectures
from s3nas.latency.simulated import SimulatorBackend


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    cfg = compose_config("search", ["debug=search_small"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=32)


@pytest.fixture(scope="module")
def features(space) -> SpaceFeatures:
    return SpaceFeatures.of(space)


#: a made-up CPU: ms per pointwise MAC, depthwise MAC, dense MAC, activation element, layer; 0.4 ms overhead
TRUE_COEF = np.array([2e-8, 1.5e-7, 3e-8, 4e-8, 2e-3, 0.4])


class LinearDevice(Device):
    """A device whose latency is TRUE_COEF . features, times seeded log-normal noise (``noise`` relative sd)."""

    kind = "linear"

    def __init__(self, noise: float = 0.02, seed: int = 0) -> None:
        super().__init__("linear_cpu", repeats=1)
        self.noise, self.rng = noise, random.Random(seed)
        self.measured = 0

    def _samples(self, network, repeats):
        self.measured += 1
        x = np.append(graph_features(archspec_to_graph(network)), 1.0)
        return [float(TRUE_COEF @ x) * float(np.exp(self.rng.gauss(0.0, self.noise)))]

    def measure_many(self, networks, repeats=None, **kwargs):
        return [summarize(self._samples(n, 1), self.name) for n in networks]


def test_network_features_are_the_sum_of_their_parts(space, features):
    """The table decomposition is exact: stem + head + every block's features = the whole network's graph."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        options = space.random_options(rng)
        whole = graph_features(archspec_to_graph(space.arch_spec(options)))
        np.testing.assert_allclose(features.network(options)[:-1], whole, rtol=1e-12)
    assert features.network(space.min_options())[-1] == 1.0 and len(FEATURES) == 5


def test_fit_recovers_a_linear_device_and_its_table_is_the_model(space, features):
    device = LinearDevice(noise=0.0)
    nets = select_networks(space, features, 10, seed=0)
    y = [device.measure(space.arch_spec(o)).median_ms for o in nets]
    model = fit_fewshot(features.matrix(nets), y, ridge=0.0)
    held = sample_architectures(space, 30, seed=7)
    x = features.matrix(held)
    truth = x @ TRUE_COEF
    assert np.max(np.abs(x @ np.asarray(model.coef) - truth) / truth) < 1e-3
    table = model.table(features)
    for options, t in zip(held[:5], truth[:5]):  # the search's table sum is the model's prediction
        assert table.estimate_ms(options) == pytest.approx(t, rel=1e-3)


def test_intervals_cover_about_ninety_percent_and_shrink_with_measurements(space, features):
    """A device with 2% relative noise: the 90% intervals' empirical coverage on held-out networks stays near 90%
    at every budget, and the typical interval shrinks as measurements are added."""
    device = LinearDevice(noise=0.02, seed=1)
    pool = candidate_pool(space, 200, seed=3)
    y_pool = np.array([device.measure(space.arch_spec(o)).median_ms for o in pool])
    held = sample_architectures(space, 200, seed=11)
    y_held = np.array([device.measure(space.arch_spec(o)).median_ms for o in held])
    x_pool, x_held = features.matrix(pool), features.matrix(held)
    widths = []
    for n in (10, 20, 60):
        covered = []
        for draw in range(8):
            pick = random.Random(draw).sample(range(len(pool)), n)
            model = fit_fewshot(x_pool[pick], y_pool[pick], prior_error_pct=2.0, prior_weight=6.0)
            predicted = x_held @ np.asarray(model.coef)
            half = np.array([model.half_width(x) for x in x_held])
            covered.append(np.mean(np.abs(y_held - predicted) <= half * predicted))
            widths.append((n, float(np.median(half))))
        assert 0.80 <= float(np.mean(covered)) <= 0.97, (n, covered)
    by_n = {n: np.mean([w for m, w in widths if m == n]) for n in (10, 20, 60)}
    assert by_n[60] < by_n[10]


def test_active_selection_is_nested_and_beats_random_on_worst_case_uncertainty(space, features):
    active = select_networks(space, features, 12, selection="active", seed=0)
    assert select_networks(space, features, 6, selection="active", seed=0) == active[:6]  # greedy: nested
    assert len({tuple(map(tuple, o)) for o in active}) == 12
    randomly = select_networks(space, features, 12, selection="random", seed=0)
    held = features.matrix(sample_architectures(space, 100, seed=5))

    def worst_leverage(nets):
        model = fit_fewshot(features.matrix(nets), features.matrix(nets) @ TRUE_COEF, prior_weight=6.0)
        return max(model.half_width(x) for x in held)

    assert worst_leverage(active) < worst_leverage(randomly)
    with pytest.raises(ValueError, match="selection"):
        select_networks(space, features, 3, selection="greedy")


def test_device_backend_fewshot_table_predict_and_conservative(space, tmp_path):
    backend = DeviceBackend(LinearDevice(noise=0.01, seed=2), budget={"networks": 8, "selection": "active"})
    table = backend.table(space, cache_dir=tmp_path, progress=False)
    assert table.meta["method"] == "fewshot" and table.meta["networks"] == 8
    assert backend.device.measured == 8 and backend.device_seconds > 0
    assert table.meta["device_seconds"] > 0 and table.meta["measured_now"] == 8
    spec = space.arch_spec(space.max_options())
    prediction = backend.predict(spec)
    assert prediction.low_ms < prediction.latency_ms < prediction.high_ms and prediction.level == 0.9
    assert "few-shot model (8 networks measured" in prediction.how
    truth = float(TRUE_COEF @ np.append(graph_features(archspec_to_graph(spec)), 1.0))
    assert prediction.low_ms <= truth <= prediction.high_ms
    assert table.estimate_ms(space.max_options()) == pytest.approx(prediction.latency_ms, rel=1e-3)
    # a second build reads the 8 networks from the log: nothing measured again
    again = DeviceBackend(LinearDevice(noise=0.01, seed=2), budget={"networks": 8})
    again.table(space, cache_dir=tmp_path, progress=False)
    assert again.device.measured == 0
    conservative = DeviceBackend(LinearDevice(noise=0.01, seed=2), budget={"networks": 8}, conservative=True)
    upper = conservative.table(space, cache_dir=tmp_path, progress=False)
    factor = upper.meta["conservative"]["factor"]
    assert factor > 1.0
    assert upper.estimate_ms(space.max_options()) == pytest.approx(table.estimate_ms(space.max_options()) * factor,
                                                                   rel=1e-3)


def test_simulator_predicts_itself_exactly(space):
    backend = SimulatorBackend("midap")
    spec = space.arch_spec(space.min_options())
    prediction = backend.predict(spec)
    assert prediction.low_ms == prediction.latency_ms == prediction.high_ms == backend.evaluate(spec).latency_ms
    assert prediction.level == 1.0 and prediction.how.startswith("simulation")


@pytest.mark.parametrize("override,message", [
    ("hardware.budget.networks=1", "hardware.budget.networks: must be"),
    ("hardware.budget.selection=greedy", "hardware.budget.selection: 'greedy' is not accepted; use one of active, random"),
    ("hardware.interval_level=1.5", "hardware.interval_level: must be"),
])
def test_budget_config_errors_name_the_key(override, message):
    from s3nas.latency.backend import make_backend

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make_backend(compose_config("search", ["hardware=sim_midap_blackbox", override]).hardware)


def test_fewshot_search_reports_the_interval_and_device_time(tmp_path, run_inproc):
    """search.py on a simulated black box with hardware.budget.networks=8 (tiny budget): no block table is measured,
    the summary names the few-shot model, the delivered network's interval and the device time spent."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    proc = run_inproc(["search.py", "debug=search_tiny", "data.image_size=16", "deploy.input_size=16",
                       "deploy.num_classes=10", "hardware=sim_midap_blackbox", "hardware.budget.networks=8",
                       "latency=0.3ms", *SHORT_SEARCH, f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}"])
    assert "few-shot" in proc.stdout and "device time" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["latency_model"] == "fewshot" and summary["device_seconds"] > 0
    low, high = summary["latency_interval_ms"]
    assert low < summary["latency_predicted_ms"] < high and summary["latency_interval_level"] == 0.9
    assert summary["meets_target_upper_bound"] == (high <= summary["target_ms"])
    log = next(cache.glob("measured-*sim_midap_blackbox*.jsonl"))
    ids = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    assert not any(i.startswith("block:") for i in ids)  # no per-block table
    assert sum(i.startswith("fewshot:") for i in ids) == 8
    arch = json.loads((run_dir / "arch.json").read_text())  # the search's prediction travels with the network
    assert arch["meta"]["search"]["latency_interval_ms"] == summary["latency_interval_ms"]


def test_latency_contract_takes_the_search_prediction_for_the_same_network(space):
    """train.py builds no table on a device: the contract then carries the search run's own prediction of the very
    network (arch.json meta.search), for the same hardware and shape only."""
    from dataclasses import replace

    from s3nas.train.contract import search_prediction

    search = {"hardware": "openvino_cpu", "latency_predicted_ms": 4.0, "latency_interval_ms": [3.8, 4.2],
              "latency_interval_level": 0.9, "latency_prediction": "few-shot model (20 networks measured on x)"}
    spec = replace(space.arch_spec(space.min_options()), meta={"search": search})
    found = search_prediction(spec, "openvino_cpu", size=spec.input_size, classes=spec.num_classes)
    assert (found.latency_ms, found.low_ms, found.high_ms, found.level) == (4.0, 3.8, 4.2, 0.9)
    assert "made by the search run" in found.how
    assert search_prediction(spec, "torch_cpu", size=spec.input_size, classes=spec.num_classes) is None
    assert search_prediction(spec, "openvino_cpu", size=224, classes=spec.num_classes) is None


def test_depthwise_by_kernel_fits_a_runtime_whose_depthwise_cost_depends_on_the_kernel(space):
    """A device whose 7x7 depthwise MACs cost 4x its 3x3 ones (XNNPACK here): the base features cannot express it,
    budget.features=depthwise_by_kernel fits it exactly."""
    from s3nas.latency.fewshot import FEATURE_SETS

    def latency(options):
        graph = archspec_to_graph(space.arch_spec(options))
        ms = 0.4
        for layer in graph:
            if layer.op == "conv" and layer.is_depthwise:
                ms += layer.macs * 1.5e-7 * (4.0 if max(layer.kernel) >= 7 else 1.0)
            elif layer.op in ("conv", "fc"):
                ms += layer.macs * 2e-8
        return ms

    nets = candidate_pool(space, 60, seed=2)
    fit, held = nets[:30], nets[30:]
    y_fit, y_held = np.array([latency(o) for o in fit]), np.array([latency(o) for o in held])
    errors = {}
    for feature_set in ("base", "depthwise_by_kernel"):
        features = SpaceFeatures.of(space, feature_set)
        assert features.matrix(fit).shape[1] == len(FEATURE_SETS[feature_set]) + 1
        model = fit_fewshot(features.matrix(fit), y_fit, ridge=0.0, feature_set=feature_set)
        predicted = features.matrix(held) @ np.asarray(model.coef)
        errors[feature_set] = float(np.max(np.abs(predicted - y_held) / y_held))
        spec = space.arch_spec(held[0])  # a network's own graph gives the same features as the table's sum
        assert model.predict_ms(model.network_features(archspec_to_graph(spec))) == pytest.approx(predicted[0])
    assert errors["depthwise_by_kernel"] < 1e-3 < 0.02 < errors["base"], errors
    with pytest.raises(ValueError, match="features"):
        SpaceFeatures.of(space, "per_op")


def test_budget_features_config_error_names_the_key():
    from s3nas.latency.backend import make_backend

    with pytest.raises(ConfigError, match="hardware.budget.features: 'per_op' is not accepted; use one of base, "
                                          "depthwise_by_kernel"):
        make_backend(compose_config("search", ["hardware=sim_midap_blackbox", "hardware.budget.features=per_op"]).hardware)
