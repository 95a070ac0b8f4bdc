"""The midap profile follows MidapSim's layout and mapping rules (cap-lab/MidapSim, midap_model.py,
control_logic.py): channel padding by reader, the first-layer GEMM, align-stage bubbles, weight layout,
the residual operand's request pattern."""

import dataclasses
import random

import pytest

import simulator
from simulator import GraphBuilder, unlimited_bandwidth
from simulator.costs import adder_tree_conv_cycles, layer_compute, storage_channel_aligns
from simulator.engine import plan_graph
from midap_reference import reference_compute_cycles, reference_simulate

MIDAP = simulator.load_profile("midap")


def _block(image_input: bool = True):
    b = GraphBuilder((3, 32, 32), "rules", image_input=image_input)
    stem = b.conv(b.input, 24, 3, stride=2, name="stem")  # read by a conv only
    body = b.conv(stem, 40, 3, name="body")  # read by a conv and by the add
    proj = b.conv(body, 40, 1, name="proj")
    dw = b.depthwise(proj, 3, name="dw")  # depthwise output: always wide
    out = b.conv(dw, 40, 1, name="out")
    b.add(out, body, name="sum")
    return b.graph


def test_channel_padding_follows_the_readers():
    aligns = storage_channel_aligns(_block(), MIDAP)
    assert aligns["input"] == 16  # the image (input_channel_align)
    assert aligns["stem"] == 16  # only a conv reads it: 24 -> 32 channels
    assert aligns["body"] == 64  # the residual add reads it too
    assert aligns["proj"] == 64  # a depthwise conv reads it
    assert aligns["dw"] == 64  # produced by a depthwise conv
    assert aligns["sum"] == 64  # produced by an element-wise op
    # profiles without the rule pad everything to channel_align
    systolic = simulator.load_profile("systolic")
    assert set(storage_channel_aligns(_block(), systolic).values()) <= {systolic.channel_align,
                                                                        systolic.input_channel_align}


def test_padding_sets_feature_bytes_and_folding():
    plans = {plan.layer.name: plan for plan in plan_graph(_block(), MIDAP)}
    # 'body' reads 'stem' stored at 32 channels: k3 folds 3*32 = 96 values into ceil(96/64) = 2 lane rows
    body = _block().layer("body")
    narrow = layer_compute(body, MIDAP, in_align=16)[1]
    wide = layer_compute(body, MIDAP, in_align=64)[1]
    assert narrow < wide  # 3 rows of 64 when padded to 64
    assert plans["body"].compute_cycles == narrow
    # weights as MidapSim stores them: filters to 16, each kernel column's k_h x C to whole lane rows
    assert plans["body"].weight_bytes == 48 * 3 * 128  # 40 -> 48 filters, 3 columns, 3*32 = 96 -> 128
    assert plans["proj"].weight_bytes == 48 * 1 * 64


def test_gemm_only_for_three_input_channels():
    three = GraphBuilder((3, 64, 64), "rgb")
    three.conv(three.input, 32, 3, stride=2)
    four = GraphBuilder((4, 64, 64), "rgba")
    four.conv(four.input, 32, 3, stride=2)
    gemm = simulator.graph_compute_cycles(three.graph, MIDAP)
    assert gemm == 32 * 32 * 2 + MIDAP.conv_pipeline_cycles  # ceil(27/64) = 1 cycle per pixel and group
    # 4 channels: no GEMM (MidapSim's _setup_gemm takes weights with <= 3 input channels); stored at 16
    plain = simulator.graph_compute_cycles(four.graph, MIDAP)
    layer = four.graph.layers[0]
    assert plain == layer_compute(layer, MIDAP, graph_input=True, in_align=16)[1] + MIDAP.conv_pipeline_cycles
    assert plain > gemm


def test_align_bubbles_match_enumeration_and_depend_on_padded_channels():
    rng = random.Random(3)
    p = unlimited_bandwidth(MIDAP)
    for _ in range(25):
        c = rng.choice([8, 16, 24, 32, 40, 48, 64, 80, 96])
        k = rng.choice([1, 3, 5, 7])
        s = rng.choice([1, 2])
        h, w = rng.randint(5, 15), rng.randint(5, 15)
        b = GraphBuilder((c, h, w), "one", image_input=False)
        b.conv(b.input, 16, k, stride=s)
        layer = b.graph.layers[0]
        for align in (16, 64):
            assert layer_compute(layer, p, in_align=align)[1] == reference_compute_cycles(layer, p, in_align=align)
    # a multiple of 64 channels never stalls; 32 channels on an even map stall on every other row
    no_stall = adder_tree_conv_cycles(64, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 64, True)
    assert no_stall == adder_tree_conv_cycles(64, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 64, False)
    stalled = adder_tree_conv_cycles(32, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 64, True)
    assert stalled > adder_tree_conv_cycles(32, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 64, False)
    # 1-wide kernels: the junk row is the one the previous pixel read, so no stall
    assert adder_tree_conv_cycles(16, 8, 8, 8, 8, 1, 1, 1, 1, 0, 0, 64, True) == 64


@pytest.mark.parametrize("size", [14, 28])
def test_residual_operand_is_requested_in_serial_column_groups(size):
    b = GraphBuilder((64, size, size), "res", image_input=False)
    y = b.conv(b.input, 64, 1)
    b.add(y, b.input)
    graph = b.graph
    plan = plan_graph(graph, MIDAP)[-1]
    assert plan.serial_features and plan.n_bands == -(-size // MIDAP.eltwise_operand_columns)
    serial = simulator.simulate(graph, MIDAP, input_in_dram=False)
    banded = simulator.simulate(graph, dataclasses.replace(MIDAP, eltwise_operand_columns=0), input_in_dram=False)
    # each column group pays the request latency on its own: slower than two overlapped bands
    assert serial.layers[-1].cycles > banded.layers[-1].cycles
    assert serial.dram_read_bytes == banded.dram_read_bytes
    assert serial.total_cycles >= serial.roofline_cycles
    ref = reference_simulate(graph, MIDAP, input_in_dram=False)
    assert abs(serial.total_cycles - ref) <= 0.02 * ref


def test_network_input_arrives_in_fmem_bank_fragments():
    b = GraphBuilder((3, 224, 224), "stem")
    b.conv(b.input, 32, 3, stride=2)
    graph = b.graph
    plan = plan_graph(graph, MIDAP)[0]
    assert plan.feature_read_bytes == 224 * 224 * 16  # the image, stored at 16 channels
    assert plan.n_bands == -(-plan.feature_read_bytes // MIDAP.input_band_bytes) == 4
    small_bands = dataclasses.replace(MIDAP, input_band_bytes=0)
    assert plan_graph(graph, small_bands)[0].n_bands == 16
    # coarse fragments expose more of the load: the first one arrives before anything computes
    coarse, fine = simulator.simulate(graph, MIDAP), simulator.simulate(graph, small_bands)
    assert coarse.total_cycles > fine.total_cycles >= fine.roofline_cycles
    assert coarse.dram_read_bytes == fine.dram_read_bytes
    assert plan_graph(graph, MIDAP, input_in_dram=False)[0].n_bands == 1  # on chip: nothing to stream
