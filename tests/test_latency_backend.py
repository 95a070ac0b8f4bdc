"""The one latency interface: backends chosen by ``hardware._target_``, a user's own backend searched end to end."""

from __future__ import annotations

import json
import random
import textwrap

import pytest
from inprocess import SHORT_SEARCH
from omegaconf import OmegaConf

import simulator
from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.arch.space import SearchSpace
from s3nas.errors import ConfigError, InfeasibleTargetError
from s3nas.latency.backend import Feasibility, LatencyBackend, LatencyResult, NetworkLatency, make_backend
from s3nas.latency.device import SimulatedDevice
from s3nas.latency.device_backend import DeviceBackend
from s3nas.latency.lut import difference_table
from s3nas.latency.simulated import SimulatorBackend

#: a user's backend: an analytic model of their accelerator (ms per GMAC + ms per MB of weights + a fixed cost),
#: written as a module outside the package; it implements only ``evaluate``
USER_BACKEND = textwrap.dedent('''
    from s3nas.arch.graph import archspec_to_graph
    from s3nas.latency.backend import LatencyBackend, LatencyResult


    def roofline_ms(spec, ms_per_gmac, ms_per_mb):
        graph = archspec_to_graph(spec)
        weights_mb = sum(layer.weight_count for layer in graph) / 1e6
        return 0.05 + ms_per_gmac * graph.macs / 1e9 + ms_per_mb * weights_mb


    class RooflineBackend(LatencyBackend):
        how, method = "estimated", "estimate"

        def __init__(self, name="roofline", ms_per_gmac=4.0, ms_per_mb=0.5):
            self.name, self.ms_per_gmac, self.ms_per_mb = name, float(ms_per_gmac), float(ms_per_mb)
            self.calls = 0

        def evaluate(self, spec):
            self.calls += 1
            return LatencyResult(roofline_ms(spec, self.ms_per_gmac, self.ms_per_mb),
                                 f"roofline model ({self.name}, {self.ms_per_gmac} ms/GMAC)")
''')


@pytest.fixture
def user_backend_module(tmp_path, monkeypatch):
    (tmp_path / "my_npu.py").write_text(USER_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    return importlib.import_module("my_npu")


@pytest.fixture(scope="module")
def small_space(request):
    from s3nas.config import compose_config

    cfg = compose_config("search", ["supernet.depths=[1,1,1,1,1]"], output_dir="/tmp")
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=32)


def test_hardware_configs_choose_their_backend(compose_cfg):
    sim = make_backend(compose_cfg(["hardware=midap"]).hardware)
    assert isinstance(sim, SimulatorBackend) and sim.name == "midap" and sim.cheap_networks
    device = make_backend(compose_cfg(["hardware=sim_midap_blackbox"]).hardware)
    assert isinstance(device, DeviceBackend) and device.name == "sim_midap_blackbox" and not device.cheap_networks
    # the device gets the composed settings, not defaults restated in code
    hw = compose_cfg(["hardware=sim_midap_blackbox", "hardware.noise_repeats=7", "hardware.repeats=3"]).hardware
    device = make_backend(hw)
    assert device.noise_repeats == 7 and device.device.repeats == 3


@pytest.mark.parametrize("target, message", [
    ("no_such_module.Backend", "hardware._target_: cannot import 'no_such_module.Backend'"),
    ("s3nas.arch.spec.ArchSpec", "hardware._target_: 's3nas.arch.spec.ArchSpec' is not a LatencyBackend subclass"),
])
def test_a_bad_backend_target_is_one_config_error(target, message):
    with pytest.raises(ConfigError) as error:
        make_backend(OmegaConf.create({"_target_": target, "name": "x"}))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_simulator_backend_is_the_simulation(small_space):
    backend = SimulatorBackend("midap")
    spec = small_space.arch_spec(small_space.random_options(random.Random(0)))
    result = backend.evaluate(spec)
    truth = simulator.simulate(archspec_to_graph(spec), "midap").latency_ms
    assert result.latency_ms == pytest.approx(truth) and result.noise_pct is None
    assert result.source.startswith("simulation (midap, 32x32, 10 classes")
    feasibility = backend.feasibility(small_space)
    assert feasibility.fastest_ms < result.latency_ms < feasibility.slowest_ms


def test_feasibility_refuses_targets_below_the_fastest_network():
    feasibility = Feasibility(fastest_ms=1.0, slowest_ms=3.0, hardware="npu", how="measured")
    with pytest.raises(InfeasibleTargetError, match=r"below the fastest architecture .*\(1 ms measured on npu"):
        feasibility.check(0.9)
    feasibility.check(1.0)
    with pytest.warns(UserWarning, match="above the slowest"):
        feasibility.check(3.5)


def test_device_backend_measures_and_caches(small_space):
    device = SimulatedDevice("midap", "sim", repeats=1)
    backend = DeviceBackend(device, noise_repeats=3)
    spec = small_space.arch_spec(small_space.min_options())
    latency = NetworkLatency(backend, small_space)
    first = latency(small_space.min_options())
    assert latency(small_space.min_options()) == first and latency.calls == 1  # cached per network
    result = backend.evaluate(spec)
    assert result.latency_ms == pytest.approx(simulator.simulate(archspec_to_graph(spec), "midap").latency_ms)
    assert len(result.details["latency_measurements_ms"]) == 3 and result.meets_within_noise(result.latency_ms)


def test_difference_table_is_exact_for_an_additive_latency(small_space, user_backend_module):
    """The default table of a backend that only times whole networks: exact when latency adds up per block."""
    per_block = {}

    def additive_ms(spec):
        graph = archspec_to_graph(spec)
        per_block.setdefault("n", 0)
        per_block["n"] += 1
        return 0.1 + 2e-9 * graph.macs

    table = difference_table(small_space, additive_ms, key="additive")
    options_total = sum(len(small_space.options(i)) for i in range(len(small_space.positions)))
    assert per_block["n"] == 1 + options_total - len(small_space.positions)  # one network per non-base option
    rng = random.Random(3)
    for _ in range(5):
        options = small_space.random_options(rng)
        assert table.estimate_ms(options) == pytest.approx(additive_ms(small_space.arch_spec(options)), abs=1e-5)
    assert table.min_ms == pytest.approx(additive_ms(small_space.arch_spec(small_space.min_options())), abs=1e-6)


def test_a_users_backend_is_searched_without_touching_the_runners(tmp_path, run_inproc, user_backend_module):
    """A third backend, named by hardware._target_ in the user's own hardware YAML: search.py (in the test process,
    the module importable as on PYTHONPATH) meets the target on it and reports its latency and source for the
    network in arch.json."""
    module_dir = tmp_path
    conf = tmp_path / "my_conf" / "hardware"
    conf.mkdir(parents=True)
    (conf / "my_npu.yaml").write_text("_target_: my_npu.RooflineBackend\nname: my_npu\nms_per_gmac: 40.0\n")
    run_dir = tmp_path / "run"
    run_inproc(["search.py", "hardware=my_npu", f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]",
                "debug=search_tiny", "data.image_size=16", "deploy.input_size=32", "deploy.num_classes=10",
                "supernet.depths=[1,1,1,1,1]", "latency=0.7ms", *SHORT_SEARCH, f"paths.cache_dir={tmp_path / 'cache'}",
                f"hydra.run.dir={run_dir}"], env={"PYTHONPATH": str(module_dir)})
    summary = json.loads((run_dir / "summary.json").read_text())
    spec = codec.load_json(run_dir / "arch.json")
    own_ms = user_backend_module.roofline_ms(spec, 40.0, 0.5)
    assert summary["hardware"] == "my_npu"
    assert summary["latency_source"] == "roofline model (my_npu, 40.0 ms/GMAC)"
    assert summary["latency_ms"] == pytest.approx(own_ms)  # the network in arch.json, on the user's backend
    assert summary["meets_target"] and summary["latency_ms"] <= 0.7


def test_latency_result_meets_within_noise():
    result = LatencyResult(1.02, "measurement (x)", noise_pct=3.0)
    assert not result.meets(1.0) and result.meets_within_noise(1.0)
    assert not LatencyResult(1.02, "simulation (x)").meets_within_noise(1.0)


def test_backend_without_evaluate_cannot_be_made():
    with pytest.raises(TypeError):
        LatencyBackend()  # abstract: evaluate is required
