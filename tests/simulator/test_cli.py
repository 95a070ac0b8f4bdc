"""``python -m simulator`` and its model loaders: JSON/CSV/trace output, one-line errors (exit 2), plug-ins."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import simulator
from simulator import cli
from simulator.graph import Graph
from simulator.loaders import ENTRY_POINT_GROUP, ModelLoadError, load_model_graph
from simulator.models import mobilenet_v2

REQUIRED_KEYS = {"total_cycles", "latency_ms", "dram_read_bytes", "macs", "layers"}


def run_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """``python -m simulator ARGS`` (or ``python -c CODE``) in a fresh interpreter."""
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "simulator", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("simulator: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory) -> Path:
    """A serialized simulator graph (built without torch)."""
    path = tmp_path_factory.mktemp("graphs") / "mbv2_96.json"
    path.write_text(json.dumps(mobilenet_v2(96).to_dict()))
    return path


def test_timm_model_json_output():
    pytest.importorskip("timm")
    result = run_cli("timm:mobilenetv2_100", "--hardware", "midap", "--input-size", "96", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert REQUIRED_KEYS <= report.keys()
    graph = load_model_graph("timm:mobilenetv2_100", 96)
    assert report["macs"] == graph.macs and len(report["layers"]) == len(graph)
    assert [row["name"] for row in report["layers"]] == [layer.name for layer in graph]
    assert report["total_cycles"] > 0 and report["dram_read_bytes"] > 0
    assert report["latency_ms"] == pytest.approx(report["total_cycles"] / 1e6)  # midap: 1 GHz


def test_serialized_graph_runs_without_torch(graph_file, tmp_path):
    csv_path, trace_path, saved = tmp_path / "layers.csv", tmp_path / "trace.json", tmp_path / "again.json"
    code = (
        "import sys, json\n"
        "from simulator.cli import main\n"
        f"rc = main([{str(graph_file)!r}, '--hardware', 'systolic', '--json', '--csv', {str(csv_path)!r},"
        f" '--trace', {str(trace_path)!r}, '--save-graph', {str(saved)!r}])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "sys.exit(rc)\n"
    )
    result = run_cli(code=code)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    graph = mobilenet_v2(96)
    assert report["hardware"] == "systolic" and report["macs"] == graph.macs
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["name"] for r in rows[:-1]] == [layer.name for layer in graph] and rows[-1]["name"] == "TOTAL"
    assert int(rows[-1]["cycles"]) == report["total_cycles"]
    trace = json.loads(trace_path.read_text())
    assert any(event.get("ph") == "X" for event in trace["traceEvents"])
    assert Graph.from_dict(json.loads(saved.read_text())) == graph


def test_bad_hardware_lists_names_and_exits_2():
    result = run_cli("timm:resnet50", "--hardware", "tpu9000")
    assert_one_line_error(result, "tpu9000", *simulator.list_profiles())


def test_bad_model_files_exit_2(tmp_path):
    assert_one_line_error(run_cli(str(tmp_path / "missing.json")), "missing.json", "timm:<name>")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert_one_line_error(run_cli(str(broken), "-H", "eyeriss"), "broken.json")


def test_unknown_timm_name_exits_2(capsys):
    pytest.importorskip("timm")  # in-process: the subprocess form costs a torch import (see above)
    assert cli.main(["timm:resnet_does_not_exist", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("simulator: error: unknown timm model 'resnet_does_not_exist'")


def test_table_per_layer_and_yaml_profile(graph_file, tmp_path, capsys):
    data = yaml.safe_load((Path(simulator.__file__).parent / "profiles" / "midap.yaml").read_text())
    data.update(name="midap_half_clock", clock_hz=float(data["clock_hz"]) / 2)
    profile_path = tmp_path / "half.yaml"
    profile_path.write_text(yaml.safe_dump(data))
    assert cli.main([str(graph_file), "--json"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert cli.main([str(graph_file), "--hardware", str(profile_path), "--json"]) == 0
    half = json.loads(capsys.readouterr().out)
    assert half["hardware"] == "midap_half_clock"
    assert half["latency_ms"] == pytest.approx(half["total_cycles"] / float(data["clock_hz"]) * 1e3)
    assert base["latency_ms"] == pytest.approx(base["total_cycles"] / (2 * data["clock_hz"]) * 1e3)
    assert cli.main([str(graph_file), "--per-layer"]) == 0
    table = capsys.readouterr().out
    assert "features.1.dw" in table and "total:" in table.splitlines()[-1]
    assert cli.main([str(graph_file)]) == 0
    assert "features.1.dw" not in capsys.readouterr().out


def test_invalid_yaml_profile_names_the_field(graph_file, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclock_hz: 1e9\nwarp_drive: 3\n")
    assert cli.main([str(graph_file), "--hardware", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warp_drive" in err


def test_graph_round_trip_and_validation(tmp_path):
    graph = mobilenet_v2(64)
    assert Graph.from_dict(json.loads(json.dumps(graph.to_dict()))) == graph
    data = graph.to_dict()
    data["layers"][3]["op"] = "lstm"
    with pytest.raises(ValueError, match=r"layers\[3\]\.op"):
        Graph.from_dict(data)
    data = graph.to_dict()
    data["layers"][0], data["layers"][1] = data["layers"][1], data["layers"][0]
    with pytest.raises(ValueError, match=r"layers\[0\]\.inputs.*topological"):
        Graph.from_dict(data)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph.to_dict()))
    with pytest.raises(ModelLoadError, match="fixed input shape"):
        load_model_graph(str(path), 128)


class _FakeEntryPoint:
    def __init__(self, name, loader):
        self.name, self.value, self.group, self._loader = name, f"fake:{name}", ENTRY_POINT_GROUP, loader

    def load(self):
        return self._loader


def test_entry_point_loaders_are_tried_in_turn(tmp_path, monkeypatch):
    calls = []

    def never(path):
        calls.append(("never", Path(path).name))
        return None

    def sized(path, input_size=None):
        calls.append(("sized", input_size))
        data = json.loads(Path(path).read_text())
        return mobilenet_v2(input_size or data["size"]) if data.get("kind") == "mine" else None

    monkeypatch.setattr("simulator.loaders._registered_loaders",
                        lambda: [_FakeEntryPoint("a", never), _FakeEntryPoint("b", sized)])
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"kind": "mine", "size": 64}))
    assert load_model_graph(str(mine)).input_shape == (3, 64, 64)
    assert load_model_graph(str(mine), 96).input_shape == (3, 96, 96)
    assert calls == [("never", "mine.json"), ("sized", None), ("never", "mine.json"), ("sized", 96)]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"kind": "theirs"}))
    with pytest.raises(ModelLoadError, match="no loader recognises.*a, b"):
        load_model_graph(str(other))
    monkeypatch.setattr("simulator.loaders._registered_loaders", lambda: [_FakeEntryPoint("c", lambda p: 42)])
    with pytest.raises(ModelLoadError, match="returned int"):
        load_model_graph(str(other))


def test_s3nas_arch_json_through_the_registered_entry_point(tmp_path):
    codec = pytest.importorskip("s3nas.arch.codec")
    arch_graph = pytest.importorskip("s3nas.arch.graph")
    from importlib.metadata import entry_points

    from s3nas.arch.spec import ArchSpec, BlockSpec, Branch

    assert "s3nas" in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    spec = ArchSpec(blocks=(BlockSpec("mixconv", (Branch(3, 2), Branch(5, 4)), 32, 2),
                            BlockSpec("mbconv", (Branch(5, 6),), 32, 1, se_ratio=0.25)), input_size=128)
    path = codec.save_json(spec, tmp_path / "arch.json")
    graph = load_model_graph(str(path))
    assert graph == arch_graph.archspec_to_graph(spec)
    assert cli.main([str(path), "--json"]) == 0
