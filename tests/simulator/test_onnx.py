"""ONNX frontend: timm models exported to ONNX get the same graph and cycles as the torch frontend; the ONNX
path needs no torch; an unknown op is one line naming the node and the op."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import simulator  # noqa: E402
from simulator.frontends.onnx import OnnxImportError, graph_from_onnx  # noqa: E402
from simulator.models import mobilenet_v2  # noqa: E402

DEFAULT_MODELS = ["mobilenetv2_100", "mixnet_s", "efficientnet_b0", "mobilenetv3_large_100", "resnet18"]
SLOW_MODELS = ["mixnet_m", "efficientnet_es", "seresnet50"]  # inception_v3: the exporter orders branches differently
SIZE = 96  # small inputs keep the export and both frontends fast (~2 s a model)

_MBV2_MIDAP_CYCLES = simulator.simulate(mobilenet_v2(224), "midap").total_cycles


def export(name: str, path) -> None:
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    torch.set_num_threads(1)
    model = timm.create_model(name, pretrained=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), str(path), dynamo=False, opset_version=17)


def structure(graph):
    return [(layer.op, layer.in_shapes, layer.out_shape, layer.kernel, layer.stride, layer.padding, layer.groups,
             layer.act, layer.split_range) for layer in graph]


def check_same_as_torch(name: str, tmp_path) -> None:
    from simulator.loaders import load_model_graph

    path = tmp_path / f"{name}.onnx"
    export(name, path)
    from_onnx = graph_from_onnx(path)
    from_torch = load_model_graph(f"timm:{name}", SIZE, use_cache=False)
    assert structure(from_onnx) == structure(from_torch)
    for profile in simulator.list_profiles():
        assert simulator.simulate(from_onnx, profile).total_cycles == simulator.simulate(from_torch, profile).total_cycles


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_onnx_matches_torch_frontend(name, tmp_path):
    check_same_as_torch(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_MODELS)
def test_onnx_matches_torch_frontend_slow(name, tmp_path):
    check_same_as_torch(name, tmp_path)


def test_onnx_cli_needs_no_torch_and_takes_input_size(tmp_path):
    path = tmp_path / "mbv2.onnx"
    export("mobilenetv2_100", path)
    code = ("import sys, json\nfrom simulator.cli import main\n"
            f"rc = main([{str(path)!r}, '--input-size', '224', '--hardware', 'midap', '--json'])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nsys.exit(rc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    import json

    assert json.loads(result.stdout)["total_cycles"] == _MBV2_MIDAP_CYCLES  # the hand-built (= torch frontend) graph at 224


def _tiny_model(op: str = "Relu", **attrs) -> onnx.ModelProto:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], [0.0] * 216)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="stem", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node(op, ["c"], ["a"], name="weird_act", **attrs),
             helper.make_node("GlobalAveragePool", ["a"], ["y"], name="pool")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    return helper.make_model(graph)


def test_hand_made_model_shapes_and_fusion():
    graph = graph_from_onnx(_tiny_model())
    assert [(layer.op, layer.out_shape, layer.act) for layer in graph] == [("conv", (8, 16, 16), "relu"),
                                                                          ("gap", (8, 1, 1), None)]
    assert graph_from_onnx(_tiny_model(), input_size=64).layers[0].out_shape == (8, 32, 32)


def test_unknown_op_names_node_and_op(tmp_path):
    with pytest.raises(OnnxImportError, match="node 'weird_act': unsupported op 'LeakyRelu'"):
        graph_from_onnx(_tiny_model("LeakyRelu", alpha=0.1))
    path = tmp_path / "leaky.onnx"
    onnx.save(_tiny_model("LeakyRelu", alpha=0.1), str(path))
    result = subprocess.run([sys.executable, "-m", "simulator", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "weird_act" in lines[0] and "LeakyRelu" in lines[0]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    result = subprocess.run([sys.executable, "-m", "simulator", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "broken.onnx" in result.stderr
