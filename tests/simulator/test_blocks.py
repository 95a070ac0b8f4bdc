"""Isolated blocks: block strings, the layers a block makes, explicit input placement, no first-layer rule."""

from __future__ import annotations

import dataclasses
import math

import pytest

import simulator
from simulator import Block, BlockError, block_graph, parse_block, simulate_block
from simulator.costs import layer_compute


@pytest.mark.parametrize("text", [
    "r1_k3_s11_e6_i32_o32_c0", "r1_k3_s11_e6_i32_o32_c0_noskip", "r2_k3.5.7_s22_e6_i32_o40_c0_se0.25_sw",
    "r1_k5_s22_e4.5_i24_o48_c1", "r3_k7_s11_e1_i16_o16_c0_se0.5",
])
def test_block_strings_round_trip(text):
    block = parse_block(text)
    assert block.to_string() == text
    assert parse_block(block.to_string()) == block


def test_parse_defaults_and_fields():
    block = parse_block("k5_e6_i32_o64_s22")
    assert block == Block(in_channels=32, out_channels=64, kernels=(5,), stride=2, expansion=6)
    assert parse_block("r1_k3_s11_e6_i32_o32_c0").has_residual
    assert not parse_block("r1_k3_s11_e6_i32_o32_c0_noskip").has_residual
    assert not parse_block("r1_k3_s22_e6_i32_o32_c0").has_residual


@pytest.mark.parametrize("text, fragment", [
    ("r1_k4_s11_e6_i32_o32_c0", "odd"), ("r1_k3_s12_e6_i32_o32", "s12"), ("r1_k3_x9_e6_i32_o32", "'x9'"),
    ("r1_k3_s11_i32_o32", "missing e"), ("r1_k3_s11_enan_i32_o32", "enan"), ("r1_k3_s11_e6_i-4_o32", "in_channels"),
    ("r1_k3_s11_e6_i32_o32_c2", "c2"), ("r1_k3.5_s11_e6_i32_o32_c1", "fused"), ("r1_k3_s11_e0_i32_o32", "expansion"),
    ("r0_k3_s11_e6_i32_o32", "repeats"),
])
def test_bad_block_strings_name_the_token(text, fragment):
    with pytest.raises(BlockError, match=None) as info:
        parse_block(text)
    assert fragment in str(info.value)


def test_block_layers():
    ops = lambda g: [(layer.op, layer.kernel, layer.stride, layer.groups > 1, layer.out_shape) for layer in g]
    graph = block_graph("r1_k3_s11_e6_i32_o32_c0", 56)
    assert graph.input_shape == (32, 56, 56) and not graph.image_input
    assert ops(graph) == [("conv", (1, 1), (1, 1), False, (192, 56, 56)), ("conv", (3, 3), (1, 1), True, (192, 56, 56)),
                          ("conv", (1, 1), (1, 1), False, (32, 56, 56)), ("add", (1, 1), (1, 1), False, (32, 56, 56))]
    assert [layer.op for layer in block_graph("r1_k3_s11_e6_i32_o32_c0_noskip", 56)] == ["conv"] * 3
    assert [layer.op for layer in block_graph("r1_k3_s11_e1_i32_o32_c0", 56)] == ["conv", "conv", "add"]  # no expand
    fused = block_graph("r1_k5_s22_e4_i32_o48_c1", 56)
    assert ops(fused) == [("conv", (5, 5), (2, 2), False, (128, 28, 28)), ("conv", (1, 1), (1, 1), False, (48, 28, 28))]
    mix = block_graph("r1_k3.5.7_s11_e6_i20_o20_c0_se0.25", 28)
    dws = [layer for layer in mix if layer.op == "conv" and layer.groups > 1]
    assert [(d.kernel[0], d.out_shape[0]) for d in dws] == [(3, 40), (5, 40), (7, 40)]
    assert sum(layer.op == "split" for layer in mix) == 3 and mix.layers[-1].op == "add"
    assert any(layer.name.endswith("se.reduce") and layer.out_shape[0] == 5 for layer in mix)
    repeated = block_graph("r3_k3_s22_e6_i16_o24_c0", 56)
    assert sum(layer.op == "add" for layer in repeated) == 2 and repeated.layers[-1].out_shape == (24, 28, 28)


def test_block_input_on_chip_or_in_dram_is_explicit():
    with pytest.raises(TypeError):
        simulate_block("r1_k3_s11_e6_i32_o32_c0_noskip", 56, "midap")  # no default: the caller chooses
    dram = simulate_block("r1_k3_s11_e6_i32_o32_c0_noskip", 56, "midap", input_in_dram=True)
    onchip = simulate_block("r1_k3_s11_e6_i32_o32_c0_noskip", 56, "midap", input_in_dram=False)
    # MidapSim's padding: a map only convs read is stored at 16 channels (32 stays 32)
    assert dram.dram_read_feature_bytes - onchip.dram_read_feature_bytes == 32 * 56 * 56
    assert onchip.total_cycles < dram.total_cycles
    assert onchip.compute_cycles == dram.compute_cycles


def test_block_input_read_by_the_residual_add_is_padded_to_64():
    skip_dram = simulate_block("r1_k3_s11_e6_i32_o32_c0", 56, "midap", input_in_dram=True)
    skip_onchip = simulate_block("r1_k3_s11_e6_i32_o32_c0", 56, "midap", input_in_dram=False)
    assert skip_dram.dram_read_feature_bytes - skip_onchip.dram_read_feature_bytes == 64 * 56 * 56


def test_block_input_is_not_the_image():
    """A block's first conv is costed as an inner layer (no first-layer GEMM), unless asked otherwise."""
    profile = simulator.load_profile("midap")
    inner = simulate_block("r1_k5_s11_e6_i32_o32_c1", 28, profile, input_in_dram=True)
    first = block_graph("r1_k5_s11_e6_i32_o32_c1", 28).layers[0]
    # the input is also read by the residual add: stored at 64 channels (MidapSim)
    assert inner.layers[0].compute_cycles == layer_compute(first, profile, graph_input=False, in_align=64)[1] + 6
    as_image = simulate_block("r1_k5_s11_e6_i32_o32_c1", 28, profile, input_in_dram=True, image_input=True)
    # an image of 32 channels is no GEMM (MidapSim: weights with <= 3 input channels); stored at 16
    assert as_image.layers[0].compute_cycles == layer_compute(first, profile, graph_input=True, in_align=16)[1] + 6
    assert as_image.layers[0].compute_cycles < inner.layers[0].compute_cycles  # 32 channels fold: 5*32 < 5*64
    # a 3-channel input takes the GEMM path, image or not (MidapSim: a block alone reads a HEAD layer):
    # ceil(3*3*3 / 64) = 1 cycle per pixel and filter group
    stem = "r1_k3_s22_e8_i3_o32_c1_noskip"
    for image_input in (True, False):
        gemm = simulate_block(stem, 224, profile, input_in_dram=True, image_input=image_input)
        assert gemm.layers[0].compute_cycles == 112 * 112 * 2 + 6  # 24 filters = 2 groups of 16
    no_gemm = dataclasses.replace(profile, first_layer_gemm=False)
    plain = simulate_block(stem, 224, no_gemm, input_in_dram=True)
    assert plain.layers[0].compute_cycles > gemm.layers[0].compute_cycles


def test_block_cycles_grow_with_expansion_and_size():
    for profile in simulator.list_profiles():
        cycles = [simulate_block(f"r1_k3_s11_e{e}_i32_o32_c0", 28, profile, input_in_dram=True).total_cycles
                  for e in (2, 4, 6)]
        assert cycles == sorted(cycles) and len(set(cycles)) == 3, (profile, cycles)
        sizes = [simulate_block("r1_k5_s11_e6_i32_o32_c0", hw, profile, input_in_dram=True).total_cycles
                 for hw in (14, 28, 56)]
        assert sizes == sorted(sizes) and math.isfinite(sizes[-1]), (profile, sizes)


def test_graph_image_input_round_trips():
    graph = block_graph("r1_k3_s11_e6_i32_o32_c0", 14)
    data = graph.to_dict()
    assert data["image_input"] is False
    assert simulator.Graph.from_dict(data) == graph
    from simulator.models import mobilenet_v2

    assert "image_input" not in mobilenet_v2(32).to_dict()


def test_same_layers_as_the_s3nas_converter():
    """For expansion != 1 the EfficientNet convention here and s3nas' converter make the same layers."""
    pytest.importorskip("s3nas")
    from s3nas.arch.graph import block_to_graph
    from s3nas.arch.spec import BlockSpec, Branch

    def shape_ops(graph):
        return [(layer.op, layer.in_shapes, layer.out_shape, layer.kernel, layer.stride, layer.padding, layer.groups)
                for layer in graph]

    for kernel, stride, fused, cin, cout in ((3, 1, False, 32, 32), (5, 2, False, 24, 40), (3, 1, True, 16, 24)):
        ours = block_graph(Block(cin, cout, (kernel,), stride, 6, fused), 28)
        spec = BlockSpec("fused" if fused else "mbconv", (Branch(kernel, 6.0),), cout, stride)
        theirs = block_to_graph(spec, cin, 28)
        assert shape_ops(ours) == shape_ops(theirs)
        ours.image_input = theirs.image_input = True
        assert simulator.simulate(ours, "midap").total_cycles == simulator.simulate(theirs, "midap").total_cycles
