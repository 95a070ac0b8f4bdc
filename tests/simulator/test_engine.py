"""Event engine and report: API, errors, report formats, determinism, speed of small graphs."""

import json
import subprocess
import sys

import pytest

import simulator
from simulator import GraphBuilder
from simulator.graph import Layer
from simulator.models import mobilenet_v2, resnet_like


@pytest.fixture(scope="module")
def midap():
    return simulator.load_profile("midap")


def test_import_does_not_import_torch():
    code = "import sys, simulator; simulator.simulate; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_op_names_module_and_op(midap):
    b = GraphBuilder((8, 4, 4))
    x = b.conv(b.input, 8, 1, name="c1", module="blocks.0.conv")
    b.graph.layers.append(Layer("weird", "upsample", (x,), ((8, 4, 4),), (8, 8, 8), module="blocks.1.up"))
    with pytest.raises(simulator.UnsupportedOpError, match=r"blocks\.1\.up.*upsample"):
        simulator.simulate(b.graph, midap)
    b2 = GraphBuilder((8, 4, 4))
    b2.conv(b2.input, 8, 1, act="mish", module="head.conv")
    with pytest.raises(simulator.UnsupportedOpError, match=r"head\.conv.*mish"):
        simulator.simulate(b2.graph, midap)


def test_report_formats(midap, tmp_path):
    r = simulator.simulate(resnet_like(), midap, trace=True)
    d = r.to_dict()
    for key in ("total_cycles", "latency_ms", "dram_read_bytes", "macs", "layers"):
        assert key in d
    json.dumps(d)
    assert d["total_cycles"] == sum(layer["cycles"] for layer in d["layers"])
    assert d["macs"] == resnet_like().macs
    assert abs(d["latency_ms"] - r.total_cycles / 1e6) < 1e-9
    csv_text = r.to_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text() == csv_text and csv_text.count("\n") == len(r.layers) + 2
    table = r.to_table()
    assert "s0b0.conv1" in table and "total:" in table
    trace = r.chrome_trace()
    json.dumps(trace)
    names = {e["tid"] for e in trace["traceEvents"] if e.get("ph") == "X"}
    assert {"conv", "bus"} <= names
    with pytest.raises(ValueError):
        simulator.simulate(resnet_like(), midap).chrome_trace()


def test_report_breakdowns_are_consistent(midap):
    r = simulator.simulate(mobilenet_v2(), midap)
    assert r.total_cycles == r.compute_cycles + r.stall_cycles
    for layer in r.layers:
        assert layer.cycles == layer.compute_cycles + layer.stall_cycles
        assert layer.stall_cycles >= 0 and 0.0 <= layer.mac_utilisation <= 1.0
        assert 0.0 <= layer.dram_busy_fraction <= 1.0
    assert r.dram_read_bytes == r.dram_read_weight_bytes + r.dram_read_feature_bytes
    assert r.dram_read_weight_bytes >= 3_400_000  # every weight is read at least once (3.5 M params)


def test_input_in_dram_costs_time(midap):
    g = mobilenet_v2()
    in_dram = simulator.simulate(g, midap, input_in_dram=True)
    on_chip = simulator.simulate(g, midap, input_in_dram=False)
    assert in_dram.dram_read_feature_bytes > on_chip.dram_read_feature_bytes
    assert in_dram.total_cycles > on_chip.total_cycles


def test_deterministic(midap):
    g = mobilenet_v2()
    a = simulator.simulate(g, midap).to_dict()
    b = simulator.simulate(g, midap).to_dict()
    assert a == b


def test_large_layers_are_tiled_not_rejected(midap):
    b = GraphBuilder((512, 64, 64))  # 2 MiB input > FMEM, 2.4 MB of weights > WMEM
    x = b.conv(b.input, 512, 3)
    b.conv(x, 512, 3)
    r = simulator.simulate(b.graph, midap)
    assert r.total_cycles >= r.roofline_cycles > 0
    assert r.dram_read_weight_bytes >= 2 * 512 * 512 * 9
    assert r.layers[0].tiles > 1


def test_small_block_is_cheap(midap, monkeypatch):
    """Latency tables simulate thousands of blocks: one small block is a few dozen tiles, each computing
    layer's tile program is built once, and the work (tiles) does not grow from one call to the next."""
    from simulator import engine

    b = GraphBuilder((40, 28, 28))
    x = b.conv(b.input, 240, 1, act="swish")
    x = b.depthwise(x, 5, act="swish")
    x = b.se(x, 10)
    x = b.conv(x, 40, 1)
    b.add(x, b.input)
    programs = []
    tile_program = engine.tile_program

    def counting(plan, *args, **kwargs):
        tiles, loads = tile_program(plan, *args, **kwargs)
        programs.append((plan.layer.name, len(tiles)))
        return tiles, loads

    monkeypatch.setattr(engine, "tile_program", counting)
    report = simulator.simulate(b.graph, midap)
    computing = [layer for layer in report.layers if layer.module]
    assert sorted(name for name, _ in programs) == sorted(layer.name for layer in computing)
    assert sum(n for _, n in programs) == sum(layer.tiles for layer in computing) <= 64
    first = list(programs)
    for _ in range(3):
        programs.clear()
        assert simulator.simulate(b.graph, midap).total_cycles == report.total_cycles
        assert programs == first
