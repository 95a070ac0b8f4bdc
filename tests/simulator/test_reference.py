"""The event engine against the cycle-stepped reference on single small layers, for every profile."""

import pytest

import simulator
from simulator import GraphBuilder, unlimited_bandwidth
from midap_reference import reference_simulate


def _one(name, shape, build):
    b = GraphBuilder(shape, name)
    build(b)
    return b.graph


SMALL = [
    _one("stem", (3, 32, 32), lambda b: b.conv(b.input, 32, 3, stride=2, act="relu")),
    _one("conv3", (48, 20, 20), lambda b: b.conv(b.input, 40, 3)),
    _one("conv3s2", (24, 17, 17), lambda b: b.conv(b.input, 64, 3, stride=2)),
    _one("conv1x7", (64, 12, 12), lambda b: b.conv(b.input, 48, (1, 7), padding=(0, 3))),
    _one("dw5", (96, 14, 14), lambda b: b.depthwise(b.input, 5)),
    _one("dw3s2", (96, 15, 15), lambda b: b.depthwise(b.input, 3, stride=2)),
    _one("pw", (320, 7, 7), lambda b: b.conv(b.input, 1280, 1)),
    _one("fc", (640, 1, 1), lambda b: b.fc(b.input, 1000)),
    _one("maxpool", (64, 16, 16), lambda b: b.pool(b.input, "max", 3, 2, 1)),
    _one("grouped", (64, 12, 12), lambda b: b.conv(b.input, 64, 3, groups=4)),
    _one("gap", (32, 10, 10), lambda b: b.gap(b.input)),
    _one("block", (64, 16, 16), lambda b: b.add(b.conv(b.depthwise(b.conv(b.input, 128, 1), 3), 64, 1), b.input)),
]


@pytest.mark.parametrize("profile_name", simulator.list_profiles())
@pytest.mark.parametrize("graph", SMALL, ids=[g.name for g in SMALL])
def test_engine_matches_reference(profile_name, graph):
    p = simulator.load_profile(profile_name)
    fast = unlimited_bandwidth(p)
    for input_in_dram in (True, False):
        compute_only = simulator.simulate(graph, fast, input_in_dram=input_in_dram).total_cycles
        assert compute_only == reference_simulate(graph, fast, input_in_dram=input_in_dram)
        assert compute_only == simulator.graph_compute_cycles(graph, p)
        engine = simulator.simulate(graph, p, input_in_dram=input_in_dram).total_cycles
        ref = reference_simulate(graph, p, input_in_dram=input_in_dram)
        assert abs(engine - ref) <= 0.02 * ref, (engine, ref)


@pytest.mark.parametrize("graph", [g for g in SMALL if g.name in ("pw", "fc", "conv3")], ids=lambda g: g.name)
def test_engine_matches_reference_with_merged_weight_requests(graph):
    import dataclasses

    p = dataclasses.replace(simulator.load_profile("midap"), weight_request_bytes=65536, cross_layer_prefetch=True)
    engine = simulator.simulate(graph, p).total_cycles
    ref = reference_simulate(graph, p)
    assert abs(engine - ref) <= 0.02 * ref
    assert simulator.simulate(graph, unlimited_bandwidth(p)).total_cycles == simulator.graph_compute_cycles(graph, p)


@pytest.mark.parametrize("graph", [g for g in SMALL if g.name in ("pw", "block", "stem")], ids=lambda g: g.name)
def test_engine_matches_reference_with_fifo_bus(graph):
    import dataclasses

    p = dataclasses.replace(simulator.load_profile("systolic"), bus_arbitration="fifo")
    engine = simulator.simulate(graph, p).total_cycles
    assert abs(engine - reference_simulate(graph, p)) <= 0.02 * engine
