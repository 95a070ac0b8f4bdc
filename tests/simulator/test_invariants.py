"""Invariants over every profile and a set of graphs: roofline, closed form, monotonicity, determinism."""

import dataclasses

import pytest

import simulator
from simulator.costs import effective_macs
from simulator.models import TEST_GRAPHS

GRAPHS = {name: build() for name, build in TEST_GRAPHS.items()}
PROFILES = simulator.list_profiles()


def _faster_variants(p):
    """Profiles with more bandwidth, more MACs or more SRAM than p."""
    r = dataclasses.replace
    return {
        "bandwidth x1.5": r(p, dram_bytes_per_cycle=p.dram_bytes_per_cycle * 1.5),
        "bandwidth x4": r(p, dram_bytes_per_cycle=p.dram_bytes_per_cycle * 4),
        "conv units x2": r(p, conv_units=p.conv_units * 2),
        "conv lanes x2": r(p, conv_lanes=p.conv_lanes * 2),
        "dw lanes x2": r(p, dw_lanes=p.dw_lanes * 2, reduction_lanes=p.reduction_lanes * 2),
        "fmem x2": r(p, fmem_bytes=p.fmem_bytes * 2),
        "wmem x2": r(p, wmem_bytes=p.wmem_bytes * 2),
        "sram x4": r(p, fmem_bytes=p.fmem_bytes * 4, wmem_bytes=p.wmem_bytes * 4),
    }


@pytest.mark.parametrize("profile_name", PROFILES)
@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
def test_invariants(profile_name, graph_name):
    p = simulator.load_profile(profile_name)
    g = GRAPHS[graph_name]
    report = simulator.simulate(g, p)
    # roofline: the whole graph never beats max(MACs / peak, bus bytes / bandwidth)
    assert report.total_cycles >= report.roofline_cycles > 0
    for layer, lr in zip(g.layers, report.layers):
        assert lr.cycles >= -(-effective_macs(layer) // p.peak_macs_per_cycle)
    # unlimited bandwidth: exactly the closed-form compute cycles
    unlimited = simulator.simulate(g, simulator.unlimited_bandwidth(p))
    assert unlimited.total_cycles == simulator.graph_compute_cycles(g, p) == report.compute_cycles
    assert unlimited.stall_cycles == 0 and report.total_cycles >= unlimited.total_cycles
    # more bandwidth / MACs / SRAM never slower
    for what, better in _faster_variants(p).items():
        faster = simulator.simulate(g, better).total_cycles
        assert faster <= report.total_cycles, f"{what}: {faster} > {report.total_cycles}"
    # deterministic
    assert simulator.simulate(g, p).to_dict() == report.to_dict()


ZOO = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
       "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "tf_efficientnet_lite3",
       "tf_efficientnet_lite4", "efficientnet_es", "efficientnet_em", "efficientnet_el", "mobilenetv2_100",
       "mobilenetv3_large_100", "mixnet_s", "mixnet_m", "mixnet_l", "resnet50", "seresnet50", "inception_v3")


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ZOO)
def test_invariants_model_zoo(model_name):
    """The same invariants on every timm model the frontend supports (at 224, inception_v3 at 299)."""
    timm = pytest.importorskip("timm")
    frontend = pytest.importorskip("simulator.frontends.torch")
    size = 299 if model_name == "inception_v3" else 224
    g = frontend.graph_from_module(timm.create_model(model_name, pretrained=False).eval(), (3, size, size))
    for profile_name in PROFILES:
        p = simulator.load_profile(profile_name)
        report = simulator.simulate(g, p)
        assert report.total_cycles >= report.roofline_cycles > 0
        unlimited = simulator.simulate(g, simulator.unlimited_bandwidth(p))
        assert unlimited.total_cycles == simulator.graph_compute_cycles(g, p) == report.compute_cycles
        for what, better in _faster_variants(p).items():
            faster = simulator.simulate(g, better).total_cycles
            assert faster <= report.total_cycles, f"{profile_name} {what}: {faster} > {report.total_cycles}"
        assert simulator.simulate(g, p).to_dict() == report.to_dict()
