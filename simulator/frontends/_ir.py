"""The frontends' shared intermediate form: raw nodes recorded from a model, folded and emitted as a Graph.

Torch-free (the ONNX frontend uses it without torch). A frontend records one ``_Node`` per operation in
execution order (kinds: input, conv, fc, bn, act, maxpool, avgpool, gap, add, mul, concat, split, reshape,
unsupported); ``_fold`` folds BatchNorm into its conv/fc (else a depthwise 1x1 conv) and activations into
their producer when nothing else reads the pre-activation tensor; ``_emit`` drops dead nodes and builds
the ``Graph`` through ``GraphBuilder``, checking every shape. Both frontends share this code, so the same
network gives the same graph (and the same cycles) from torch and from ONNX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from simulator.costs import UnsupportedOpError
from simulator.graph import Graph, GraphBuilder, Layer, Shape, conv_out_size

_FUSABLE = ("conv", "fc", "add")


@dataclass
class _Node:
    """A recorded operation before folding; ``alias`` points at the node it was folded into."""

    kind: str
    inputs: list[int]
    out_shape: Shape
    module: str
    attrs: dict[str, Any] = field(default_factory=dict)
    act: str | None = None
    alias: int | None = None
    leaf: bool = False  # issued by a childless module (a Conv2d, an activation module, ...)


def _fit_padding(in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                 out_hw: tuple[int, int], declared: tuple[int, int] | None) -> tuple[int, int] | None:
    """Symmetric padding giving ``out_hw`` (declared first, else the split of the padding actually used)."""
    result = []
    for axis in range(2):
        size, k, s, out = in_hw[axis], kernel[axis], stride[axis], out_hw[axis]
        candidates = [] if declared is None else [declared[axis]]
        total = max((out - 1) * s + k - size, 0)
        candidates += [math.ceil(total / 2), total // 2, total]
        for pad in candidates:
            if pad >= 0 and conv_out_size(size, k, s, pad) == out:
                result.append(pad)
                break
        else:
            return None
    return result[0], result[1]


# --- post-processing ------------------------------------------------------------------------------------
def _resolve(nodes: list[_Node], index: int) -> int:
    while nodes[index].alias is not None:
        index = nodes[index].alias  # type: ignore[assignment]
    return index


def _consumers(nodes: list[_Node], outputs: list[int]) -> list[int]:
    counts = [0] * len(nodes)
    for node in nodes:
        if node.alias is None:
            for source in node.inputs:
                counts[_resolve(nodes, source)] += 1
    for out in outputs:
        counts[_resolve(nodes, out)] += 1
    return counts


def _fold(nodes: list[_Node], outputs: list[int]) -> None:
    """BatchNorm into its conv/fc (else a depthwise 1x1 conv); activations into their producer."""
    counts = _consumers(nodes, outputs)
    for node in nodes:
        if node.kind != "bn":
            continue
        producer = _resolve(nodes, node.inputs[0])
        targets = _branch_targets(nodes, counts, producer, ("conv", "fc"))
        if targets and all(not nodes[t].attrs.get("bn_folded") for t in targets):
            for target in targets:
                nodes[target].attrs["bias"] = True
                nodes[target].attrs["bn_folded"] = True
            node.alias = producer
        else:  # per-channel affine on its own: exactly a depthwise 1x1 conv with bias
            node.kind = "conv"
            node.attrs = dict(kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=node.out_shape[0], bias=True)
    counts = _consumers(nodes, outputs)
    for index, node in enumerate(nodes):
        if node.kind != "act" or node.alias is not None:
            continue
        producer = _resolve(nodes, node.inputs[0])
        targets = _branch_targets(nodes, counts, producer, _FUSABLE)
        if targets:
            for target in targets:
                nodes[target].act = node.act
            node.alias = producer
            counts[producer] = counts[index]


def _branch_targets(nodes: list[_Node], counts: list[int], producer: int, kinds: tuple[str, ...]) -> list[int]:
    """Nodes a per-channel op on ``producer`` folds into: itself, or every branch of a concat (MixConv)."""
    node = nodes[producer]
    if counts[producer] != 1:
        return []
    if node.kind in kinds and node.act is None:
        return [producer]
    if node.kind == "concat":
        branches = [_resolve(nodes, source) for source in node.inputs]
        if len(set(branches)) == len(branches) and all(
                nodes[b].kind in kinds and nodes[b].act is None and counts[b] == 1 for b in branches):
            return branches
    return []


def _live(nodes: list[_Node], outputs: list[int]) -> list[bool]:
    live = [False] * len(nodes)
    todo = [_resolve(nodes, out) for out in outputs]
    while todo:
        index = todo.pop()
        if live[index]:
            continue
        live[index] = True
        todo.extend(_resolve(nodes, source) for source in nodes[index].inputs)
    return live


def _layer_name(node: _Node) -> str:
    if node.leaf and node.module:
        return node.module
    return f"{node.module}.{node.kind}" if node.module else node.kind


def _emit(nodes: list[_Node], outputs: list[int], input_shape: Shape, name: str) -> Graph:
    builder = GraphBuilder(input_shape, name=name)
    names = {0: builder.input}
    live = _live(nodes, outputs)
    for index, node in enumerate(nodes):
        if live[index] and node.kind == "unsupported":
            raise node.attrs["error"]
    for index, node in enumerate(nodes):
        if index == 0 or node.alias is not None or not live[index]:
            continue
        xs = [names[_resolve(nodes, source)] for source in node.inputs]
        label, module, a = _layer_name(node), node.module, node.attrs
        if node.kind == "conv":
            out = builder.conv(xs[0], node.out_shape[0], a["kernel"], a["stride"], a["padding"], a["groups"],
                               act=node.act, bias=a["bias"], name=label, module=module)
        elif node.kind == "fc":
            out = builder.fc(xs[0], node.out_shape[0], act=node.act, bias=a["bias"], name=label, module=module)
        elif node.kind in ("maxpool", "avgpool"):
            kernel, stride, padding = a["kernel"], a["stride"], a["padding"]
            if kernel[0] == kernel[1] and stride[0] == stride[1] and padding[0] == padding[1]:
                out = builder.pool(xs[0], node.kind[:3], kernel[0], stride[0], padding[0], name=label, module=module)
            else:  # rectangular pooling: the builder only takes square ones
                shape = builder.shape(xs[0])
                out = builder._append(Layer(builder._name(node.kind, label), node.kind, (xs[0],), (shape,),
                                            node.out_shape, kernel, stride, padding, module=module))
        elif node.kind == "gap":
            out = builder.gap(xs[0], name=label, module=module)
        elif node.kind == "add":
            out = builder.add(*xs, act=node.act, name=label, module=module)
        elif node.kind == "mul":
            out = builder.mul(xs[0], xs[1], name=label, module=module)
        elif node.kind == "concat":
            out = builder.concat(*xs, name=label, module=module)
        elif node.kind == "split":
            out = builder.split(xs[0], *a["split_range"], name=label, module=module)
        elif node.kind == "act":
            out = builder.act(xs[0], node.act, name=label, module=module)
        elif node.kind == "reshape":
            out = builder.reshape(xs[0], node.out_shape, name=label, module=module)
        else:  # pragma: no cover - every recorded kind is handled above
            raise UnsupportedOpError(f"unsupported op '{node.kind}' in module '{module}'")
        if builder.shape(out) != node.out_shape:
            raise UnsupportedOpError(f"op '{node.kind}' in module '{module or '<top level>'}': IR shape "
                                     f"{builder.shape(out)} differs from torch's {node.out_shape}")
        names[index] = out
    return builder.graph


