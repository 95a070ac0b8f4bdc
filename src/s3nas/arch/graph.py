"""ArchSpec -> simulator Graph (no torch): the ops the torch frontend emits for ``s3nas.nn.builder``'s network.

Per block (module path ``blocks.<i>``, as in the nn.Module):
MBConv: 1x1 expand (act) -> depthwise kxk (act, stride) [-> SE] -> 1x1 project [-> add residual];
MixConv: 1x1 expand (act) -> split per branch -> depthwise k_j per branch (act) -> concat [-> SE] -> 1x1
project [-> add] (a one-branch MixConv is an MBConv: no split/concat); fused: kxk conv (act, stride)
[-> SE] -> 1x1 project [-> add]. BatchNorm is folded and activations fused into their producer.
Stem: kxk conv (act). Head: 1x1 conv (act) -> GAP -> FC. SE: GAP -> 1x1 reduce (relu) -> 1x1 expand
(sigmoid) -> multiply. ``load_graph_from_json`` is the ``simulator.model_loaders`` entry point.
"""

from __future__ import annotations

import json
import os
from typing import Any

from s3nas.arch.codec import from_dict, looks_like_archspec, validate
from s3nas.arch.shapes import block_mid_channels, has_residual, se_channels
from s3nas.arch.spec import ArchSpec, BlockSpec
from simulator.graph import Graph, GraphBuilder

SE_ACT = "relu"
SE_GATE = "sigmoid"


def emit_stem(b: GraphBuilder, x: str, spec: ArchSpec) -> str:
    """Stem conv (BN folded into a bias, act fused)."""
    return b.conv(x, spec.stem_channels, spec.stem_kernel, stride=spec.stem_stride, act=spec.act, bias=True,
                  name="stem.conv", module="stem.conv")


def emit_block(b: GraphBuilder, x: str, block: BlockSpec, in_channels: int, prefix: str = "block") -> str:
    """Append one block's ops to ``b`` (input ``x`` with ``in_channels``); returns the output layer name."""
    mids = block_mid_channels(block, in_channels)
    act = block.act
    if block.type == "fused":
        y = b.conv(x, mids[0], block.branches[0].kernel, stride=block.stride, act=act, bias=True,
                   name=f"{prefix}.expand.conv", module=f"{prefix}.expand.conv")
    else:
        y = b.conv(x, sum(mids), 1, act=act, bias=True, name=f"{prefix}.expand.conv", module=f"{prefix}.expand.conv")
        if len(block.branches) == 1:
            parts = [y]
        else:  # torch.split emits every slice before the branch convs run
            starts = [sum(mids[:j]) for j in range(len(mids))]
            parts = [b.split(y, s, s + c, name=f"{prefix}.split.{j}", module=prefix)
                     for j, (s, c) in enumerate(zip(starts, mids))]
        outs = [b.conv(part, c, branch.kernel, stride=block.stride, groups=c, act=act, bias=True,
                       name=f"{prefix}.dw.{j}.conv", module=f"{prefix}.dw.{j}.conv")
                for j, (branch, part, c) in enumerate(zip(block.branches, parts, mids))]
        y = outs[0] if len(outs) == 1 else b.concat(*outs, name=f"{prefix}.concat", module=prefix)
    if block.se_ratio:
        se = f"{prefix}.se"
        s = b.gap(y, name=f"{se}.gap", module=se)
        s = b.conv(s, se_channels(in_channels, block.se_ratio), 1, act=SE_ACT, bias=True, name=f"{se}.conv_reduce",
                   module=f"{se}.conv_reduce")
        s = b.conv(s, sum(mids), 1, act=SE_GATE, bias=True, name=f"{se}.conv_expand", module=f"{se}.conv_expand")
        y = b.mul(y, s, name=f"{se}.mul", module=se)
    y = b.conv(y, block.out_channels, 1, act=None, bias=True, name=f"{prefix}.project.conv",
               module=f"{prefix}.project.conv")
    if has_residual(block, in_channels):
        y = b.add(y, x, name=f"{prefix}.add", module=prefix)
    return y


def emit_head(b: GraphBuilder, x: str, spec: ArchSpec) -> str:
    """Head 1x1 conv (act) -> global average pool -> FC."""
    y = b.conv(x, spec.head_channels, 1, act=spec.act, bias=True, name="head.conv", module="head.conv")
    y = b.gap(y, name="global_pool", module="global_pool")
    return b.fc(y, spec.num_classes, name="classifier", module="classifier")


def archspec_to_graph(spec: ArchSpec, input_size: int | None = None) -> Graph:
    """The whole network at ``input_size`` (default: the spec's deployment input_size)."""
    validate(spec)
    size = input_size or spec.input_size
    b = GraphBuilder((spec.in_channels, size, size), name=spec.name)
    x = emit_stem(b, b.input, spec)
    channels = spec.stem_channels
    for i, block in enumerate(spec.blocks):
        x = emit_block(b, x, block, channels, prefix=f"blocks.{i}")
        channels = block.out_channels
    emit_head(b, x, spec)
    return b.graph


def block_to_graph(block: BlockSpec, in_channels: int, in_hw: int, *, name: str = "block",
                   prefix: str = "block") -> Graph:
    """One block alone on an (in_channels, in_hw, in_hw) input."""
    b = GraphBuilder((in_channels, in_hw, in_hw), name=name)
    emit_block(b, b.input, block, in_channels, prefix=prefix)
    return b.graph


def load_graph_from_json(path: str | os.PathLike, input_size: int | None = None) -> Graph | None:
    """Entry point for ``python -m simulator arch.json [--input-size N]``: the Graph at ``input_size`` (default:
    the spec's deployment input_size), or None when the JSON is not an ArchSpec."""
    try:
        with open(path) as f:
            data: Any = json.load(f)
    except (OSError, ValueError):
        return None
    if not looks_like_archspec(data):
        return None
    return archspec_to_graph(from_dict(data), input_size)
