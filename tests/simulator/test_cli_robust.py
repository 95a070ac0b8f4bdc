"""CLI round two: several models x profiles, the timm graph cache (fast repeat calls), bounded work on
absurd inputs (one-line refusals naming the limit), bad architecture JSON, special files and umask."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

import simulator
from simulator import cli
from simulator.fileio import write_output
from simulator.graph import Graph, GraphBuilder
from simulator.models import mobilenet_v2, resnet_like

PROFILE_DIR = Path(simulator.__file__).parent / "profiles"

_MBV2_MIDAP_CYCLES = simulator.simulate(mobilenet_v2(224), "midap").total_cycles


def run_cli(*args: str, env: dict | None = None, code: str | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "simulator", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("simulator: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def graphs(tmp_path) -> dict[str, Path]:
    out = {}
    for name, graph in (("mbv2", mobilenet_v2(64)), ("resnet", resnet_like(48))):
        out[name] = tmp_path / f"{name}.json"
        out[name].write_text(json.dumps(graph.to_dict()))
    return out


def profile_file(tmp_path: Path, name: str, **fields) -> Path:
    data = yaml.safe_load((PROFILE_DIR / "midap.yaml").read_text())
    data.update(name=name, **fields)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_several_models_and_profiles_in_one_call(graphs, capsys):
    assert cli.main([str(graphs["mbv2"]), str(graphs["resnet"]), "--hardware", "midap,systolic", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["graph"], r["hardware"]) for r in rows] == [
        ("mobilenetv2", "midap"), ("mobilenetv2", "systolic"), ("resnet_like", "midap"), ("resnet_like", "systolic")]
    expected = [simulator.simulate(g, p).total_cycles for g in (mobilenet_v2(64), resnet_like(48))
                for p in ("midap", "systolic")]
    assert [r["total_cycles"] for r in rows] == expected
    assert cli.main([str(graphs["mbv2"]), str(graphs["resnet"]), "-H", "midap,eyeriss"]) == 0
    totals = capsys.readouterr().out.strip().splitlines()
    assert len(totals) == 4
    for line, (model, hw) in zip(totals, [("mobilenetv2", "midap"), ("mobilenetv2", "eyeriss"),
                                           ("resnet_like", "midap"), ("resnet_like", "eyeriss")]):
        assert line.startswith(f"total: {model} on {hw}: ")


def test_one_file_for_several_runs_needs_a_placeholder(graphs, tmp_path, capsys):
    assert cli.main([str(graphs["mbv2"]), "-H", "midap,systolic", "--csv", str(tmp_path / "x.csv")]) == 2
    assert "{hardware}" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
    template = str(tmp_path / "{model}-{hardware}.csv")
    assert cli.main([str(graphs["mbv2"]), str(graphs["resnet"]), "-H", "midap,systolic", "--csv", template]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == [
        "mbv2.json-midap.csv", "mbv2.json-systolic.csv", "resnet.json-midap.csv", "resnet.json-systolic.csv"]


def test_repeated_timm_call_is_fast_and_imports_no_torch(tmp_path):
    pytest.importorskip("timm")
    env = {"SIMULATOR_CACHE_DIR": str(tmp_path / "cache")}
    # builds the graph with torch, fills the cache; PYTHONPROFILEIMPORTTIME logs every import to stderr
    first = run_cli("timm:mobilenetv2_100", "--json", env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert first.returncode == 0, first.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in first.stderr.splitlines() if line.startswith("import time:")}
    assert "timm" in imported and "torch" in imported
    # the CLI process hides timm's optional wandb / huggingface_hub imports (over a second of a cold call):
    # the attempt is logged, but none of their submodules loads
    assert not [name for name in imported if name.startswith(("wandb.", "huggingface_hub."))]
    assert list((tmp_path / "cache" / "graphs").glob("mobilenetv2_100-default-*.json"))
    cached = {path: path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*") if path.is_file()}
    # the work of a repeat call, counted: no torch/timm import and no graph built (the cache is only read)
    code = ("import sys\nfrom simulator.cli import main\n"
            "rc = main(['timm:mobilenetv2_100', '--json'])\n"
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'torch imported'\n"
            "sys.exit(rc)\n")
    second = run_cli(code=code, env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["total_cycles"] == json.loads(first.stdout)["total_cycles"] == _MBV2_MIDAP_CYCLES
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*") if path.is_file()} == cached


def test_corrupt_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    from simulator import loaders

    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path))
    graph = loaders.load_model_graph("timm:mobilenetv2_100", 64, use_cache=False)
    path = loaders._timm_cache_path("mobilenetv2_100", 64)
    assert not path.exists()
    path.parent.mkdir(parents=True)
    path.write_text("{truncated")
    assert loaders.load_model_graph("timm:mobilenetv2_100", 64) == graph
    assert Graph.from_dict(json.loads(path.read_text())) == graph
    assert loaders.load_model_graph("timm:mobilenetv2_100", 64) == graph  # now from the cache


class _WorkCounter:
    """Counts the simulator's tiling of layers and its event runs (the work a refusal must not start)."""

    def __init__(self, monkeypatch):
        from simulator import api, engine

        self.tiled_layers = self.event_runs = 0
        tile_layer, run_events = engine._tile_layer, api.run_events

        def counting_tile_layer(*args, **kwargs):
            self.tiled_layers += 1
            return tile_layer(*args, **kwargs)

        def counting_run_events(*args, **kwargs):
            self.event_runs += 1
            return run_events(*args, **kwargs)

        monkeypatch.setattr(engine, "_tile_layer", counting_tile_layer)
        monkeypatch.setattr(api, "run_events", counting_run_events)


def test_tiny_weight_memory_is_refused_quickly(graphs, tmp_path, monkeypatch):
    result = run_cli(str(graphs["mbv2"]), "-H", str(profile_file(tmp_path, "tiny", wmem_bytes=2)), timeout=60)
    assert_one_line_error(result, "wmem_bytes", "limit", "tiles")
    # bounded work: refused while planning (each layer tiled at most once, up to the refused one), before any
    # event is simulated
    from simulator.engine import SimulationLimitError

    work = _WorkCounter(monkeypatch)
    tiny = simulator.load_profile(str(profile_file(tmp_path, "tiny2", wmem_bytes=2)))
    graph = mobilenet_v2(224)
    with pytest.raises(SimulationLimitError, match="tiles") as info:
        simulator.simulate(graph, tiny)
    refused = next(i for i, layer in enumerate(graph.layers) if f"'{layer.name}'" in str(info.value))
    assert 1 <= work.tiled_layers <= refused + 1 and work.event_runs == 0


def test_a_million_channels_is_refused_quickly(tmp_path, monkeypatch):
    b = GraphBuilder((3, 32, 32), name="wide")
    x = b.conv(b.input, 10**6, 3)
    b.conv(x, 10**6, 1)
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(b.graph.to_dict()))
    result = run_cli(str(path), timeout=60)
    assert_one_line_error(result, "1,000,000 channels", "limit")
    # bounded work: refused from the graph's shapes, before any layer is tiled
    from simulator.engine import SimulationLimitError

    work = _WorkCounter(monkeypatch)
    with pytest.raises(SimulationLimitError, match="channels"):
        simulator.simulate(b.graph, "midap")
    assert work.tiled_layers == 0 and work.event_runs == 0


def test_absurd_profiles_fail_with_the_limit(graphs, tmp_path):
    slow = profile_file(tmp_path, "slowbus", dram_bytes_per_cycle=1e-300)
    assert_one_line_error(run_cli(str(graphs["mbv2"]), "-H", str(slow)), "dram_bytes_per_cycle", "limit")
    fast = profile_file(tmp_path, "fastclock", clock_hz=1e30)
    assert_one_line_error(run_cli(str(graphs["mbv2"]), "-H", str(fast)), "clock_hz")
    assert_one_line_error(run_cli(str(graphs["mbv2"]), "--input-size", "100000"), "--input-size", "32768")


def test_large_input_finishes(tmp_path):
    """Thousands of pixels per side: bounded work (tiles are capped per layer), finite figures."""
    midap = simulator.load_profile("midap")
    report = simulator.simulate(mobilenet_v2(2048), midap)
    tiles = [layer.tiles for layer in report.layers]
    assert max(tiles) <= midap.max_tiles_per_layer and sum(tiles) <= midap.max_tiles_per_layer * len(tiles)
    assert max(tiles) == midap.max_tiles_per_layer  # the cap is what bounds it at this size
    assert 0 < report.total_cycles and math.isfinite(report.latency_ms)
    assert report.total_cycles > simulator.simulate(mobilenet_v2(1024), "midap").total_cycles


@pytest.mark.parametrize("change, fragment", [
    ({"stride": 0}, "stride"), ({"kernel": [0, 3]}, "kernel"), ({"groups": 0}, "groups"),
    ({"out_shape": [-8, 4, 4]}, "out_shape"),
])
def test_bad_serialized_graph_is_one_line(tmp_path, change, fragment):
    data = mobilenet_v2(32).to_dict()
    data["layers"][0].update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert_one_line_error(run_cli(str(path)), "layers[0]", fragment)


BAD_ARCH = {
    "unknown_block_type": (lambda b: b.update(type="lstm"), "type"),
    "negative_channels": (lambda b: b.update(out_channels=-5), "out_channels"),
    "stride_zero": (lambda b: b.update(stride=0), "stride"),
    "missing_field": (lambda b: b.pop("out_channels"), "out_channels"),
    "mistyped_field": (lambda b: b.update(out_channels="24"), "out_channels"),
    "nan_expansion": (lambda b: b["branches"][0].update(expansion=float("nan")), ""),
}


@pytest.fixture(scope="module")
def arch_dict() -> dict:
    pytest.importorskip("s3nas")
    from s3nas.arch.codec import to_dict
    from s3nas.arch.spec import ArchSpec, BlockSpec, Branch

    spec = ArchSpec(blocks=(BlockSpec("mbconv", (Branch(3, 6.0),), 24, 2),
                            BlockSpec("mbconv", (Branch(5, 3.0),), 24, 1)), input_size=64, num_classes=10)
    return to_dict(spec)


@pytest.mark.parametrize("case", sorted(BAD_ARCH))
def test_bad_architecture_json_is_one_line(arch_dict, tmp_path, case):
    change, fragment = BAD_ARCH[case]
    data = json.loads(json.dumps(arch_dict))
    change(data["blocks"][0])
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(data))
    assert_one_line_error(run_cli(str(path)), f"{case}.json", fragment)


def test_arch_json_is_rebuilt_at_input_size(arch_dict, tmp_path, capsys):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch_dict))
    assert cli.main([str(path), "--json", "--input-size", "96"]) == 0
    at_96 = json.loads(capsys.readouterr().out)
    assert cli.main([str(path), "--json"]) == 0
    at_64 = json.loads(capsys.readouterr().out)
    assert at_96["macs"] > at_64["macs"] and at_96["total_cycles"] > at_64["total_cycles"]
    assert at_96["layers"][0]["out_shape"][1:] == [48, 48]  # stem stride 2 at 96 x 96


def test_outputs_follow_symlinks_and_fifos(graphs, tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    try:
        assert cli.main([str(graphs["mbv2"]), "--csv", str(link), "--trace", str(fifo)]) == 0
    finally:
        reader.join(timeout=30)
    assert link.is_symlink() and target.read_text().startswith("name,op,")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and json.loads(received[0])["traceEvents"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "mbv2.json", "pipe", "real.csv", "resnet.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_outputs_get_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_output(tmp_path / "out.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == mode
    (tmp_path / "out.json").chmod(0o640)
    write_output(tmp_path / "out.json", "[]")  # an existing file keeps its mode
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o640
    assert (tmp_path / "out.json").read_text() == "[]"


def test_unwritable_output_is_one_line(graphs, tmp_path):
    result = run_cli(str(graphs["mbv2"]), "--csv", str(tmp_path / "no" / "such" / "dir.csv"))
    assert_one_line_error(result, "cannot write", "dir.csv")
