"""ArchSpec -> simulator graph: shapes, MACs equal to the built model's, same ops as the torch frontend."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph, block_to_graph, load_graph_from_json
from s3nas.arch.spec import BlockSpec, Branch
from s3nas.config.supernet_schema import CandidatesConfig, SupernetConfig
from s3nas.nn.builder import build_model
from s3nas.arch.space import SearchSpace


def _space(block_type="mixconv") -> SearchSpace:
    return SearchSpace.from_config({**vars(SupernetConfig()), "block_type": block_type}, CandidatesConfig())


def _decorated_spec(seed: int, block_type=("fused", "mixconv", "mixconv", "mbconv", "mixconv")):
    sp = _space(list(block_type))
    spec = sp.arch_spec(sp.random_options(random.Random(seed)))
    blocks = tuple(replace(b, se_ratio=0.25 if i % 2 else 0.0, act="hswish" if i % 3 == 0 else "relu")
                   for i, b in enumerate(spec.blocks))
    return replace(spec, blocks=blocks)


def torch_macs(model: torch.nn.Module, size: int) -> int:
    """Conv/Linear MACs counted from the real tensors of a forward pass."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            total += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("seed", range(3))
def test_graph_macs_equal_model_macs(seed):
    spec = _decorated_spec(seed)
    g = archspec_to_graph(spec)
    assert g.layers[-1].out_shape == (1000, 1, 1)
    assert g.macs == torch_macs(build_model(spec), 224)


def test_graph_at_other_input_size():
    spec = _decorated_spec(0)
    g = archspec_to_graph(spec, input_size=32)
    assert g.input_shape == (3, 32, 32)
    assert g.layer("head.conv").out_shape == (1280, 1, 1)
    assert g.macs == torch_macs(build_model(spec), 32)


def test_block_graph_ops():
    mix = BlockSpec("mixconv", (Branch(3, 4.0), Branch(7, 2.0)), out_channels=32, stride=1, se_ratio=0.25)
    g = block_to_graph(mix, 32, 56)
    ops = [l.op for l in g]
    assert ops == ["conv", "split", "split", "conv", "conv", "concat", "gap", "conv", "conv", "mul", "conv", "add"]
    assert [l.kernel for l in g if l.op == "conv"][:3] == [(1, 1), (3, 3), (7, 7)]
    assert g.layer("block.dw.0.conv").is_depthwise and g.layer("block.dw.0.conv").out_shape == (128, 56, 56)
    assert g.layer("block.se.conv_reduce").out_shape == (8, 1, 1)  # 32 * 0.25, relative to block input
    fused = BlockSpec("fused", (Branch(5, 4.0),), out_channels=48, stride=2)
    g = block_to_graph(fused, 32, 56)
    assert [l.op for l in g] == ["conv", "conv"] and g.layers[0].kernel == (5, 5) and g.layers[0].stride == (2, 2)
    assert g.layers[-1].out_shape == (48, 28, 28)
    mb = BlockSpec("mbconv", (Branch(5, 6.0),), out_channels=32, stride=1)
    assert [l.op for l in block_to_graph(mb, 32, 28)] == ["conv", "conv", "conv", "add"]


def _normalised(graph):
    index = {l.name: i for i, l in enumerate(graph.layers)}
    index["input"] = -1
    return [(l.op, tuple(index[x] for x in l.inputs), l.in_shapes, l.out_shape, l.kernel, l.stride, l.padding,
             l.groups, l.act, l.bias, l.split_range, l.module) for l in graph.layers]


@pytest.mark.parametrize("seed", range(2))
def test_same_ops_as_torch_frontend(seed):
    frontend = pytest.importorskip("simulator.frontends.torch")
    spec = _decorated_spec(seed)
    expected = _normalised(frontend.graph_from_module(build_model(spec), (3, 224, 224)))
    assert _normalised(archspec_to_graph(spec)) == expected


def test_load_graph_from_json(tmp_path):
    spec = _decorated_spec(1)
    path = codec.save_json(spec, tmp_path / "arch.json")
    g = load_graph_from_json(path)
    assert g is not None and g.macs == archspec_to_graph(spec).macs
    (tmp_path / "other.json").write_text(json.dumps({"model": "resnet50"}))
    assert load_graph_from_json(tmp_path / "other.json") is None
    (tmp_path / "bad.json").write_text("{")
    assert load_graph_from_json(tmp_path / "bad.json") is None
    (tmp_path / "broken.json").write_text(json.dumps({"format": codec.FORMAT, "blocks": [{"type": "mbconv"}]}))
    with pytest.raises(codec.ArchSpecError, match="blocks\\[0\\].branches: missing field"):
        load_graph_from_json(tmp_path / "broken.json")


def test_load_graph_from_json_at_input_size(tmp_path, monkeypatch):
    spec = _decorated_spec(2)
    path = codec.save_json(spec, tmp_path / "arch.json")
    at_64 = load_graph_from_json(path, input_size=64)
    assert at_64 == archspec_to_graph(spec, input_size=64) and at_64.input_shape == (3, 64, 64)
    assert at_64.macs == torch_macs(build_model(spec), 64) < archspec_to_graph(spec).macs
    assert load_graph_from_json(path, input_size=None) == archspec_to_graph(spec)  # the spec's own 224
    # the simulator passes --input-size to the loader itself (no resized copy of the JSON)
    from simulator import loaders

    seen = []

    def spy(path_arg, input_size=None):
        seen.append((str(path_arg), input_size))
        return load_graph_from_json(path_arg, input_size=input_size)

    class EntryPoint:
        name, value = "s3nas", "s3nas.arch.graph:load_graph_from_json"

        def load(self):
            return spy

    monkeypatch.setattr(loaders, "_registered_loaders", lambda: [EntryPoint()])
    assert loaders.load_model_graph(str(path), 96) == archspec_to_graph(spec, input_size=96)
    assert seen == [(str(path), 96)]
