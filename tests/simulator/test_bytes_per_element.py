"""``bytes_per_element: 2`` (an FP16/INT16 NPU on the same MAC array) is honoured end to end.

Every stored size doubles (weights, feature maps, hence DRAM traffic and requests), every on-chip memory holds
half as many elements (maps spill sooner, bands are more), compute cycles stay the same: a memory-bound network
gets slower, a compute-bound layer hardly changes.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml

import simulator
from simulator.engine import plan_graph
from simulator.graph import GraphBuilder
from simulator.models import mobilenet_v2


@pytest.fixture(scope="module")
def midap():
    return simulator.load_profile("midap")


@pytest.fixture(scope="module")
def midap16(midap):
    """The shipped midap with 2-byte data (FP16 or INT16), everything else unchanged."""
    return dataclasses.replace(midap, bytes_per_element=2)


@pytest.fixture(scope="module")
def all_on_graph():
    """The default S3NAS search space's all-on network (every block at its largest option), 224x224."""
    from s3nas.arch.graph import archspec_to_graph
    from s3nas.arch.space import SearchSpace
    from s3nas.config import compose_config

    cfg = compose_config("search", [], output_dir="/tmp")
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=1000, input_size=224)
    return archspec_to_graph(space.arch_spec(space.max_options(), name="all_on"))


def test_the_field_only_changes_the_data_width(midap16, midap):
    assert midap.bytes_per_element == 1 and midap16.bytes_per_element == 2
    assert midap16.peak_macs_per_cycle == midap.peak_macs_per_cycle  # same MAC array
    assert midap16.fmem_bytes == midap.fmem_bytes and midap16.wmem_bytes == midap.wmem_bytes


@pytest.mark.parametrize("network", ["all_on", "mobilenet_v2"])
def test_two_bytes_slow_a_memory_bound_network(network, midap, midap16, all_on_graph):
    graph = all_on_graph if network == "all_on" else mobilenet_v2(224)
    one, two = simulator.simulate(graph, midap), simulator.simulate(graph, midap16)
    assert two.total_cycles > one.total_cycles
    assert two.compute_cycles == one.compute_cycles  # the MAC array is the same
    assert two.macs == one.macs
    # every layer's weights are twice the bytes, each read once as with 1 byte
    assert two.dram_read_weight_bytes == 2 * one.dram_read_weight_bytes
    for a, b in zip(one.layers, two.layers):
        assert b.dram_read_weight_bytes == 2 * a.dram_read_weight_bytes, a.name
        assert b.compute_cycles == a.compute_cycles, a.name
    # feature maps are twice the bytes and FMEM holds half as many elements: more spills, at least double traffic
    assert two.dram_read_feature_bytes >= 2 * one.dram_read_feature_bytes
    assert two.dram_write_bytes >= 2 * one.dram_write_bytes
    assert two.stall_cycles > one.stall_cycles


def test_stored_sizes_double_and_memories_hold_half(midap, midap16):
    graph = mobilenet_v2(224)
    one, two = plan_graph(graph, midap), plan_graph(graph, midap16)
    assert [2 * p.weight_bytes for p in one] == [p.weight_bytes for p in two]
    # a map that fitted FMEM in 1-byte elements may not fit in 2-byte ones: never more on-chip elements
    elems_one = sum(p.fmem_out_bytes for p in one)
    elems_two = sum(p.fmem_out_bytes // 2 for p in two)
    assert elems_two < elems_one
    # twice the bytes in the same band size: at least as many bands per layer
    assert all(b.n_bands >= a.n_bands for a, b in zip(one, two))
    assert sum(b.n_bands for b in two) > sum(a.n_bands for a in one)


def test_weights_that_no_longer_fit_half_of_wmem_lose_their_reuse(midap, midap16):
    # 96 -> 96 3x3 conv at 56x56, input from DRAM in bands: 90 KiB of weights stay in one WMEM half (128 KiB)
    # across the bands at 1 byte; at 2 bytes (180 KiB) they do not, so some data is read more than once
    b = GraphBuilder((96, 56, 56), name="conv96", image_input=False)
    b.conv(b.input, 96, 3)
    half = midap.wmem_bytes // 2
    plan_one, plan_two = plan_graph(b.graph, midap)[0], plan_graph(b.graph, midap16)[0]
    assert plan_one.weight_bytes <= half < plan_two.weight_bytes == 2 * plan_one.weight_bytes
    assert plan_two.feature_read_bytes == 2 * plan_one.feature_read_bytes
    assert 1 < plan_one.n_bands < plan_two.n_bands  # same band bytes, twice the data
    one, two = simulator.simulate(b.graph, midap), simulator.simulate(b.graph, midap16)
    assert one.dram_read_weight_bytes == plan_one.weight_bytes  # read once, kept across bands
    if plan_two.weights_outer:  # features re-streamed once per WMEM half of weights
        assert two.dram_read_feature_bytes > plan_two.feature_read_bytes
    else:  # weights re-read for every band
        assert two.dram_read_weight_bytes == plan_two.n_bands * plan_two.weight_bytes
    assert two.dram_read_bytes > 2 * one.dram_read_bytes
    assert two.compute_cycles == one.compute_cycles and two.total_cycles > one.total_cycles


def test_a_compute_bound_layer_changes_much_less(midap, midap16, all_on_graph):
    # a 3x3 conv, 64 -> 64 channels at 28x28, its input already in FMEM: 36 KiB of weights against ~27k cycles
    b = GraphBuilder((64, 28, 28), name="conv3x3", image_input=False)
    b.conv(b.input, 64, 3)
    one = simulator.simulate(b.graph, midap, input_in_dram=False)
    two = simulator.simulate(b.graph, midap16, input_in_dram=False)
    assert one.layers[0].bound == two.layers[0].bound == "compute"
    assert two.compute_cycles == one.compute_cycles
    layer_change = two.total_cycles / one.total_cycles - 1
    assert 0 <= layer_change < 0.05
    net_one, net_two = simulator.simulate(all_on_graph, midap), simulator.simulate(all_on_graph, midap16)
    network_change = net_two.total_cycles / net_one.total_cycles - 1
    assert network_change > 2 * layer_change


def test_backend_names_the_data_type(midap, midap16):
    from s3nas.latency.simulated import SimulatorBackend

    assert SimulatorBackend(hardware_profile=midap).data_dtype == "int8"
    assert SimulatorBackend(hardware_profile=midap16).data_dtype == "int16"
    assert SimulatorBackend("midap").data_dtype == "int8"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator", *args], capture_output=True, text=True, timeout=240,
                          check=False)


def test_a_two_byte_profile_yaml_end_to_end(tmp_path, midap, midap16):
    """A user's YAML with ``bytes_per_element: 2``: the CLI and the product's latency backend both honour it."""
    from s3nas.latency.simulated import SimulatorBackend

    data = midap.to_dict()
    data.update(name="midap_fp16", bytes_per_element=2)
    profile_yaml = tmp_path / "midap_fp16.yaml"
    profile_yaml.write_text(yaml.safe_dump(data))
    graph = mobilenet_v2(96)
    graph_json = tmp_path / "mbv2_96.json"
    graph_json.write_text(json.dumps(graph.to_dict()))

    result = _run_cli(str(graph_json), "--hardware", f"midap,{profile_yaml}", "--json")
    assert result.returncode == 0, result.stderr
    one, two = json.loads(result.stdout)
    assert (one["hardware"], two["hardware"]) == ("midap", "midap_fp16")
    assert two["total_cycles"] > one["total_cycles"] and two["latency_ms"] > one["latency_ms"]
    assert two["compute_cycles"] == one["compute_cycles"]
    assert two["dram_read_weight_bytes"] == 2 * one["dram_read_weight_bytes"]
    for a, b in zip(one["layers"], two["layers"]):
        assert b["dram_read_weight_bytes"] == 2 * a["dram_read_weight_bytes"], a["name"]
    # the CLI's figures are the library's on the same profile
    assert two["total_cycles"] == simulator.simulate(graph, midap16).total_cycles
    assert one["total_cycles"] == simulator.simulate(graph, midap).total_cycles

    # the product path: hardware.profile=<yaml> -> SimulatorBackend
    backend = SimulatorBackend("midap", profile=str(profile_yaml))
    assert backend.name == "midap_fp16" and backend.data_dtype == "int16"
    assert backend.simulate_graph(graph).total_cycles == two["total_cycles"]
