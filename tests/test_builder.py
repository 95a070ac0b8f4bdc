"""Plain network from an ArchSpec: forward shapes, documented parameter names/shapes, SE and h-swish."""

from __future__ import annotations

import random
from dataclasses import replace

import torch
from torch import nn

from s3nas.arch.spec import ArchSpec, BlockSpec, Branch
from s3nas.config.supernet_schema import CandidatesConfig, SupernetConfig
from s3nas.nn.builder import build_model
from s3nas.arch.space import SearchSpace


def test_forward_shapes_32_and_224():
    sp = SearchSpace.from_config(SupernetConfig(), CandidatesConfig(), num_classes=10)
    spec = sp.arch_spec(sp.random_options(random.Random(0)))
    model = build_model(spec)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    assert build_model(spec, num_classes=7)(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_parameter_names_and_shapes():
    spec = ArchSpec(blocks=(
        BlockSpec("mixconv", (Branch(3, 4.0), Branch(7, 2.0)), 16, 2, se_ratio=0.25, act="hswish"),
        BlockSpec("mbconv", (Branch(5, 6.0),), 16, 1),
        BlockSpec("fused", (Branch(3, 2.0),), 24, 2, act="swish"),
    ), stem_channels=8, head_channels=64, num_classes=5)
    shapes = {k: tuple(v.shape) for k, v in build_model(spec).state_dict().items()}
    assert shapes["stem.conv.weight"] == (8, 3, 7, 7)
    assert shapes["blocks.0.expand.conv.weight"] == (48, 8, 1, 1)  # (4 + 2) * 8
    assert shapes["blocks.0.dw.0.conv.weight"] == (32, 1, 3, 3)
    assert shapes["blocks.0.dw.1.conv.weight"] == (16, 1, 7, 7)
    assert shapes["blocks.0.se.conv_reduce.weight"] == (2, 48, 1, 1)  # 8 * 0.25
    assert shapes["blocks.0.project.conv.weight"] == (16, 48, 1, 1)
    assert shapes["blocks.1.dw.0.conv.weight"] == (96, 1, 5, 5)
    assert shapes["blocks.2.expand.conv.weight"] == (32, 16, 3, 3)
    assert not any(k.startswith("blocks.2.dw") for k in shapes)
    assert shapes["head.conv.weight"] == (64, 24, 1, 1) and shapes["classifier.weight"] == (5, 64)
    model = build_model(spec)
    assert isinstance(model.blocks[0].dw[0].act, nn.Hardswish)
    assert isinstance(model.blocks[2].expand.act, nn.SiLU)
    assert [b.has_residual for b in model.blocks] == [False, True, False]


def test_mixconv_branches_see_their_channel_slices():
    """Zeroing branch 1's input channels changes only branch 1's depthwise output."""
    block_spec = BlockSpec("mixconv", (Branch(3, 1.0), Branch(5, 1.0)), 4, 1)
    model = build_model(ArchSpec(blocks=(block_spec,), stem_channels=4, head_channels=8, num_classes=2)).eval()
    block = model.blocks[0]
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        y = block.expand(x)
        full = torch.cat([block.dw[0](y[:, :4]), block.dw[1](y[:, 4:])], 1)
        ref = block.project(full) + x
        assert torch.allclose(block(x), ref, atol=1e-6)


def test_dropout_and_drop_path():
    sp = SearchSpace.from_config(SupernetConfig(), CandidatesConfig())
    spec = replace(sp.arch_spec(sp.random_options(random.Random(1))), dropout=0.3)
    model = build_model(spec, drop_path_rate=0.2)
    assert model.dropout.p == 0.3
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in model.blocks]
    residual = [r for b, r in zip(model.blocks, rates) if b.has_residual]
    assert residual == sorted(residual) and 0 < max(residual) < 0.2  # grows with depth, residual blocks only
    assert all(r == 0.0 for b, r in zip(model.blocks, rates) if not b.has_residual)
