"""ONNX model -> simulator ``Graph`` (needs only the ``onnx`` package; no torch, no onnxruntime).

Walks the ONNX graph in its (topological) node order and records the same raw nodes as the torch frontend
(``frontends._ir``), so BatchNorm folding, activation fusion and dead-code removal are shared and a model
exported from torch gets the same graph and cycles. Shapes are computed here from the ops (not read from
the file), so ``input_size`` can rebuild a model at another resolution. Supported: Conv (grouped,
depthwise, padded, auto_pad; dilation 1), Gemm, MatMul with a constant weight, MaxPool, AveragePool,
GlobalAveragePool, ReduceMean over H and W, BatchNormalization, Relu, Clip(0, 6) / Clip(0), Sigmoid, Tanh,
Gelu, HardSwish, HardSigmoid (torch's alpha 1/6), x * Sigmoid(x) (swish), Add, Mul (element-wise or by a
(C, 1, 1) scale), Concat and Split over channels, Reshape / Flatten / Squeeze / Unsqueeze, constant Pad
before a conv or pool, Identity, Dropout, Constant. Anything else raises :class:`OnnxImportError` naming
the node and the op.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from simulator.costs import UnsupportedOpError
from simulator.frontends._ir import _emit, _fit_padding, _fold, _Node
from simulator.graph import Graph, Shape

__all__ = ["graph_from_onnx", "OnnxImportError", "SUPPORTED_OPS"]

ACT_OPS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Gelu": "gelu", "HardSwish": "hswish"}
ALIAS_OPS = ("Identity", "Dropout")
SHAPE_OPS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze")
SUPPORTED_OPS = tuple(sorted(
    {"Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "BatchNormalization",
     "Clip", "HardSigmoid", "Add", "Mul", "Concat", "Split", "Pad", "Constant", *ACT_OPS, *ALIAS_OPS, *SHAPE_OPS}))


class OnnxImportError(UnsupportedOpError):
    """An ONNX model the simulator cannot read; the one-line message names the node and the op."""


@dataclass
class _Value:
    """A tensor of the ONNX graph: the raw node holding it, its ONNX shape, a pending explicit pad."""

    node: int
    shape: tuple[int, ...]
    pads: tuple[int, int, int, int] | None = None  # (top, left, bottom, right) from a Pad node


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Importer:
    def __init__(self, model, input_size: int | None) -> None:
        from onnx import numpy_helper

        self.numpy_helper = numpy_helper
        self.graph = model.graph
        self.consts: dict[str, Any] = {t.name: t for t in self.graph.initializer}
        self.values: dict[str, _Value] = {}
        self.nodes: list[_Node] = []
        self.input_shape = self._input_shape(input_size)
        self.nodes.append(_Node("input", [], self.input_shape, ""))
        self.swish: dict[int, str] = {}  # index of a Mul node that is x * sigmoid(x) -> x
        self.skip: set[int] = set()  # Sigmoid nodes folded into such a Mul
        self._find_swish()

    # --- inputs and constants -----------------------------------------------------------------------
    def _input_shape(self, input_size: int | None) -> Shape:
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise OnnxImportError(f"the model has {len(inputs)} graph inputs ({', '.join(i.name for i in inputs)}); "
                                  "the simulator takes one image input")
        value = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[0] not in (None, 1) or not dims[1]:
            raise OnnxImportError(f"graph input '{value.name}': shape {dims} is not (1, C, H, W) with a known C")
        c, h, w = dims[1], dims[2], dims[3]
        if input_size is not None:
            h = w = int(input_size)
        if not h or not w:
            raise OnnxImportError(f"graph input '{value.name}': H and W are symbolic; give --input-size")
        self.values[value.name] = _Value(0, (1, c, h, w))
        return (c, h, w)

    def const(self, name: str, node) -> Any:
        """Numpy value of a constant input (initializer or Constant node)."""
        if name not in self.consts:
            raise self.error(node, f"input '{name}' must be a constant")
        value = self.consts[name]
        return value if not hasattr(value, "dims") else self.numpy_helper.to_array(value)

    def const_dims(self, name: str, node) -> tuple[int, ...]:
        if name not in self.consts:
            raise self.error(node, f"input '{name}' must be a constant (a weight)")
        value = self.consts[name]
        return tuple(int(d) for d in (value.dims if hasattr(value, "dims") else value.shape))

    def error(self, node, detail: str = "") -> OnnxImportError:
        text = f"node '{node.name or '<unnamed>'}': unsupported op '{node.op_type}'"
        return OnnxImportError(text + (f" ({detail})" if detail else "") if detail else
                               text + f" (supported: {', '.join(SUPPORTED_OPS)})")

    def value(self, name: str, node, allow_pad: bool = False) -> _Value:
        if name not in self.values:
            if name in self.consts:
                raise self.error(node, "element-wise op with a constant operand")
            raise self.error(node, f"input '{name}' is not produced by an earlier node")
        value = self.values[name]
        if value.pads is not None and not allow_pad:
            raise self.error(node, "explicit padding (Pad) is only supported before Conv/MaxPool/AveragePool")
        return value

    def _find_swish(self) -> None:
        consumers: dict[str, list[int]] = {}
        for index, node in enumerate(self.graph.node):
            for name in node.input:
                consumers.setdefault(name, []).append(index)
        graph_outputs = {o.name for o in self.graph.output}
        for index, node in enumerate(self.graph.node):
            if node.op_type != "Sigmoid" or node.output[0] in graph_outputs:
                continue
            users = consumers.get(node.output[0], [])
            if len(users) == 1:
                mul = self.graph.node[users[0]]
                if mul.op_type == "Mul" and sorted(mul.input) == sorted([node.input[0], node.output[0]]):
                    self.swish[users[0]] = node.input[0]
                    self.skip.add(index)

    # --- recording ----------------------------------------------------------------------------------
    def new(self, node, kind: str, inputs: list[int], out_shape: Shape, onnx_shape: tuple[int, ...],
            act: str | None = None, **attrs: Any) -> int:
        label = node.name or f"{node.op_type}_{len(self.nodes)}"
        self.nodes.append(_Node(kind, inputs, tuple(out_shape), label, attrs, act=act, leaf=True))
        index = len(self.nodes) - 1
        self.values[node.output[0]] = _Value(index, tuple(onnx_shape))
        return index

    def chw(self, value: _Value) -> Shape:
        return self.nodes[value.node].out_shape

    def run(self, name: str) -> Graph:
        for index, node in enumerate(self.graph.node):
            if index in self.skip:
                continue
            op = node.op_type
            if op == "Constant":
                a = _attrs(node)
                if "value" not in a:
                    raise self.error(node, "only Constant(value=tensor)")
                self.consts[node.output[0]] = self.numpy_helper.to_array(a["value"])
            elif index in self.swish:
                x = self.value(self.swish[index], node)
                self.new(node, "act", [x.node], self.chw(x), x.shape, act="swish")
            elif op in ALIAS_OPS and node.input[0] in self.consts:  # exporters alias shared weights
                self.consts[node.output[0]] = self.consts[node.input[0]]
            elif op in ALIAS_OPS:
                x = self.value(node.input[0], node, allow_pad=True)
                self.values[node.output[0]] = x
            else:
                handler = getattr(self, f"_{op}", None)
                if handler is None:
                    raise self.error(node)
                handler(node, _attrs(node))
        outputs = []
        for out in self.graph.output:
            if out.name not in self.values:
                raise OnnxImportError(f"graph output '{out.name}' does not depend on the input")
            outputs.append(self.values[out.name].node)
        _fold(self.nodes, outputs)
        return _emit(self.nodes, outputs, self.input_shape, name)

    # --- op handlers (named after the ONNX op) -----------------------------------------------------
    def _spatial(self, node, a: dict, x: _Value, kernel: tuple[int, int], ceil_mode: bool = False
                 ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int] | None]:
        """(stride, out_hw, declared symmetric padding or None) of a conv/pool on ``x``."""
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.error(node, f"dilations {list(a['dilations'])} (only dilation 1 is modelled)")
        stride = tuple(int(s) for s in a.get("strides", [1, 1]))
        h, w = x.shape[2], x.shape[3]
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = (-(-h // stride[0]), -(-w // stride[1]))
            totals = [max((o - 1) * s + k - size, 0) for o, s, k, size in zip(out, stride, kernel, (h, w))]
            small = [t // 2 for t in totals]
            big = [t - t // 2 for t in totals]
            top, left = (small if auto == "SAME_UPPER" else big)
            bottom, right = (big if auto == "SAME_UPPER" else small)
        elif auto == "VALID":
            top = left = bottom = right = 0
        else:
            top, left, bottom, right = (int(p) for p in a.get("pads", [0, 0, 0, 0]))
        if x.pads is not None:
            top, left, bottom, right = top + x.pads[0], left + x.pads[1], bottom + x.pads[2], right + x.pads[3]
        rounding = math.ceil if ceil_mode else math.floor
        out_hw = tuple(int(rounding((size + lo + hi - k) / s)) + 1
                       for size, lo, hi, k, s in ((h, top, bottom, kernel[0], stride[0]),
                                                  (w, left, right, kernel[1], stride[1])))
        if ceil_mode:  # the last window must start inside the (top/left-padded) input
            out_hw = tuple(o - 1 if (o - 1) * s >= size + lo else o
                           for o, s, size, lo in zip(out_hw, stride, (h, w), (top, left)))
        if min(out_hw) < 1:
            raise self.error(node, f"output size {out_hw} < 1 for input {(h, w)}")
        declared = (top, left) if (top, left) == (bottom, right) else None
        return stride, out_hw, declared  # type: ignore[return-value]

    def _padding(self, node, x: _Value, kernel, stride, out_hw, declared) -> tuple[int, int]:
        pad = _fit_padding(x.shape[2:4], kernel, stride, out_hw, declared)
        if pad is None:
            raise self.error(node, f"cannot express padding for {x.shape} -> {out_hw}")
        return pad

    def _Conv(self, node, a: dict) -> None:
        x = self.value(node.input[0], node, allow_pad=True)
        if len(x.shape) != 4:
            raise self.error(node, f"input shape {x.shape} is not 4-D")
        dims = self.const_dims(node.input[1], node)
        if len(dims) != 4:
            raise self.error(node, f"weight shape {dims} (only 2-d convolution)")
        c_out, c_in_g, kh, kw = dims
        groups = int(a.get("group", 1))
        if c_in_g * groups != x.shape[1]:
            raise self.error(node, f"weight {dims} with group {groups} does not fit {x.shape[1]} input channels")
        stride, out_hw, declared = self._spatial(node, a, x, (kh, kw))
        padding = self._padding(node, x, (kh, kw), stride, out_hw, declared)
        self.new(node, "conv", [x.node], (c_out, *out_hw), (1, c_out, *out_hw), kernel=(kh, kw), stride=stride,
                 padding=padding, groups=groups, bias=len(node.input) > 2 and bool(node.input[2]))

    def _pool(self, node, a: dict, kind: str) -> None:
        x = self.value(node.input[0], node, allow_pad=True)
        kernel = tuple(int(k) for k in a["kernel_shape"])
        if len(kernel) != 2 or len(x.shape) != 4:
            raise self.error(node, "only 2-d pooling")
        stride, out_hw, declared = self._spatial(node, a, x, kernel, bool(a.get("ceil_mode", 0)))
        c = x.shape[1]
        if kind == "avgpool" and out_hw == (1, 1) and kernel == tuple(x.shape[2:4]) and x.pads is None \
                and not any(a.get("pads", [])):
            self.new(node, "gap", [x.node], (c, 1, 1), (1, c, 1, 1))
            return
        padding = self._padding(node, x, kernel, stride, out_hw, declared)
        self.new(node, kind, [x.node], (c, *out_hw), (1, c, *out_hw), kernel=kernel, stride=stride, padding=padding)

    def _MaxPool(self, node, a: dict) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise self.error(node, "MaxPool with indices")
        self._pool(node, a, "maxpool")

    def _AveragePool(self, node, a: dict) -> None:
        self._pool(node, a, "avgpool")

    def _GlobalAveragePool(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        c = x.shape[1]
        self.new(node, "gap", [x.node], (c, 1, 1), (1, c, 1, 1))

    def _ReduceMean(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self.const(node.input[1], node).reshape(-1)]
        if len(x.shape) != 4 or axes is None or {int(d) % 4 for d in axes} != {2, 3}:
            raise self.error(node, f"ReduceMean over axes {axes} (only H and W = global average pooling)")
        c = x.shape[1]
        keep = bool(a.get("keepdims", 1))
        self.new(node, "gap", [x.node], (c, 1, 1), (1, c, 1, 1) if keep else (1, c))

    def _fc(self, node, x: _Value, out_features: int, bias: bool) -> None:
        n = math.prod(x.shape[1:])
        if x.shape[0] != 1 or len(x.shape) < 2:
            raise self.error(node, f"input shape {x.shape} (only batch-1 inputs)")
        source = x.node
        c, h, w = self.chw(x)
        if c * h * w != n:
            raise self.error(node, f"input of {n} features from a ({c}, {h}, {w}) map")
        lead = x.shape[:-1]
        self.new(node, "fc", [source], (out_features, 1, 1), (*lead, out_features), bias=bias)

    def _Gemm(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        if a.get("transA", 0) or len(x.shape) != 2:
            raise self.error(node, f"Gemm on a {x.shape} input with transA={a.get('transA', 0)} (only (1, N) @ W)")
        dims = self.const_dims(node.input[1], node)
        out_features = dims[0] if a.get("transB", 0) else dims[1]
        self._fc(node, x, out_features, len(node.input) > 2 and bool(node.input[2]))

    def _MatMul(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        dims = self.const_dims(node.input[1], node)
        if len(dims) != 2 or x.shape[-1] != dims[0] or math.prod(x.shape[:-1]) != 1:
            raise self.error(node, f"MatMul {x.shape} @ {dims} (only (1, N) @ constant (N, M))")
        self._fc(node, x, dims[1], False)

    def _BatchNormalization(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        self.new(node, "bn", [x.node], self.chw(x), x.shape)

    def _act(self, node, act: str) -> None:
        x = self.value(node.input[0], node)
        self.new(node, "act", [x.node], self.chw(x), x.shape, act=act)

    def _Relu(self, node, a: dict) -> None:
        self._act(node, "relu")

    def _Sigmoid(self, node, a: dict) -> None:
        self._act(node, "sigmoid")

    def _Tanh(self, node, a: dict) -> None:
        self._act(node, "tanh")

    def _Gelu(self, node, a: dict) -> None:
        self._act(node, "gelu")

    def _HardSwish(self, node, a: dict) -> None:
        self._act(node, "hswish")

    def _HardSigmoid(self, node, a: dict) -> None:
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        if not (math.isclose(alpha, 1 / 6, rel_tol=1e-4) and math.isclose(beta, 0.5, rel_tol=1e-4)):
            raise self.error(node, f"HardSigmoid(alpha={alpha:g}, beta={beta:g}) (only torch's alpha=1/6, beta=0.5)")
        self._act(node, "hsigmoid")

    def _Clip(self, node, a: dict) -> None:
        low, high = a.get("min"), a.get("max")
        if len(node.input) > 1 and node.input[1]:
            low = float(self.const(node.input[1], node))
        if len(node.input) > 2 and node.input[2]:
            high = float(self.const(node.input[2], node))
        bounds = (None if low is None else float(low), None if high is None or high >= 3.4e38 else float(high))
        acts = {(0.0, 6.0): "relu6", (0.0, None): "relu"}
        if bounds not in acts:
            raise self.error(node, f"Clip{bounds} (only Clip(0, 6) = relu6 and Clip(0) = relu)")
        self._act(node, acts[bounds])

    def _Add(self, node, a: dict) -> None:
        constant = [name for name in node.input if name in self.consts]
        if len(constant) == 1 and len(node.input) == 2:  # a bias after MatMul / a bias-free conv
            x = self.value(next(n for n in node.input if n not in self.consts), node)
            producer = self.nodes[x.node]
            if producer.kind in ("fc", "conv") and producer.act is None and len(self.const_dims(constant[0], node)) \
                    and math.prod(self.const_dims(constant[0], node)) == producer.out_shape[0]:
                producer.attrs["bias"] = True
                self.values[node.output[0]] = x
                return
            raise self.error(node, "adding a constant (only a bias right after Conv/Gemm/MatMul)")
        xs = [self.value(name, node) for name in node.input]
        if len({self.chw(x) for x in xs}) != 1:
            raise self.error(node, f"broadcasting add {[self.chw(x) for x in xs]}")
        self.new(node, "add", [x.node for x in xs], self.chw(xs[0]), xs[0].shape)

    def _Mul(self, node, a: dict) -> None:
        x, s = (self.value(name, node) for name in node.input)
        shape_x, shape_s = self.chw(x), self.chw(s)
        if shape_x[1:] == (1, 1) and shape_s[1:] != (1, 1):
            x, s, shape_x, shape_s = s, x, shape_s, shape_x
        if shape_x != shape_s and shape_s != (shape_x[0], 1, 1):
            raise self.error(node, f"broadcasting multiply {shape_x} * {shape_s}")
        self.new(node, "mul", [x.node, s.node], shape_x, x.shape)

    def _Concat(self, node, a: dict) -> None:
        xs = [self.value(name, node) for name in node.input if name]
        axis = int(a.get("axis", 1))
        if any(len(x.shape) != 4 for x in xs) or axis % 4 != 1:
            raise self.error(node, f"concatenation along axis {axis} (only channels of feature maps)")
        if len(xs) == 1:
            self.values[node.output[0]] = xs[0]
            return
        c = sum(self.chw(x)[0] for x in xs)
        h, w = xs[0].shape[2:4]
        self.new(node, "concat", [x.node for x in xs], (c, h, w), (1, c, h, w))

    def _Split(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        axis = int(a.get("axis", 0))
        if len(x.shape) != 4 or axis % 4 != 1:
            raise self.error(node, f"split along axis {axis} (only channels)")
        channels = x.shape[1]
        sizes = a.get("split")
        if sizes is None and len(node.input) > 1 and node.input[1]:
            sizes = [int(v) for v in self.const(node.input[1], node).reshape(-1)]
        if sizes is None:
            n = len(node.output)
            sizes = [-(-channels // n)] * (n - 1) + [channels - -(-channels // n) * (n - 1)]
        if sum(sizes) != channels or len(sizes) != len(node.output):
            raise self.error(node, f"split sizes {list(sizes)} of {channels} channels")
        start = 0
        for out, size in zip(node.output, sizes):
            if (start, start + size) == (0, channels):
                self.values[out] = x
            else:
                label = f"{node.name or 'Split'}.{len(self.nodes)}"
                self.nodes.append(_Node("split", [x.node], (size, x.shape[2], x.shape[3]), label,
                                        {"split_range": (start, start + size)}, leaf=True))
                self.values[out] = _Value(len(self.nodes) - 1, (1, size, x.shape[2], x.shape[3]))
            start += size

    def _Pad(self, node, a: dict) -> None:
        x = self.value(node.input[0], node, allow_pad=True)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        pads = a.get("pads")
        if pads is None and len(node.input) > 1:
            pads = [int(v) for v in self.const(node.input[1], node).reshape(-1)]
        if len(node.input) > 2 and node.input[2]:
            fill = self.const(node.input[2], node).reshape(-1)
            if fill.size and float(fill[0]) != 0.0:
                raise self.error(node, f"Pad with value {float(fill[0])} (only zero padding)")
        if len(node.input) > 3 and node.input[3]:
            raise self.error(node, "Pad with axes")
        if mode != "constant" or pads is None or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            raise self.error(node, f"Pad {pads} mode {mode!r} (only constant zero padding of H and W)")
        top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
        old = x.pads or (0, 0, 0, 0)
        shape = (x.shape[0], x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right)
        if not any(pads):
            self.values[node.output[0]] = x
            return
        # the pending pad travels with the unpadded shape; the consuming conv/pool adds it
        self.values[node.output[0]] = _Value(x.node, x.shape, (old[0] + top, old[1] + left, old[2] + bottom,
                                                               old[3] + right))
        del shape

    def _reshape_to(self, node, x: _Value, shape: tuple[int, ...]) -> None:
        if math.prod(shape) != math.prod(x.shape):
            raise self.error(node, f"reshape {x.shape} -> {shape} changes the element count")
        if len(shape) == 4 and shape[0] == 1 and tuple(shape[1:]) != self.chw(x):
            self.new(node, "reshape", [x.node], tuple(shape[1:]), shape)  # type: ignore[arg-type]
        elif len(shape) in (2, 4) and shape[0] == 1:
            self.values[node.output[0]] = _Value(x.node, tuple(shape))
        else:
            raise self.error(node, f"reshape {x.shape} -> {shape} (only to (1, N) or (1, C, H, W))")

    def _Flatten(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        axis = int(a.get("axis", 1)) % max(1, len(x.shape))
        self._reshape_to(node, x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))

    def _Reshape(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        target = [int(v) for v in self.const(node.input[1], node).reshape(-1)]
        shape = [x.shape[i] if v == 0 and i < len(x.shape) else v for i, v in enumerate(target)]
        if shape.count(-1) == 1:
            known = math.prod(v for v in shape if v != -1)
            shape[shape.index(-1)] = math.prod(x.shape) // known if known else 0
        self._reshape_to(node, x, tuple(shape))

    def _axes(self, node, a: dict) -> list[int] | None:
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self.const(node.input[1], node).reshape(-1)]
        return None if axes is None else [int(v) for v in axes]

    def _Squeeze(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        axes = self._axes(node, a)
        rank = len(x.shape)
        drop = {d % rank for d in axes} if axes is not None else {i for i, d in enumerate(x.shape) if d == 1}
        kept = tuple(d for i, d in enumerate(x.shape) if i not in drop or i == 0)
        self._reshape_to(node, x, kept)

    def _Unsqueeze(self, node, a: dict) -> None:
        x = self.value(node.input[0], node)
        shape = list(x.shape)
        for axis in sorted(d % (len(shape) + 1 + len(self._axes(node, a) or [])) for d in self._axes(node, a) or []):
            shape.insert(axis, 1)
        self._reshape_to(node, x, tuple(shape))


def graph_from_onnx(model: Any, input_size: int | None = None, name: str | None = None) -> Graph:
    """An ONNX model (path or ``onnx.ModelProto``) -> Graph; ``input_size`` overrides the input H = W."""
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is a project dependency
        raise OnnxImportError(f"the ONNX frontend needs the 'onnx' package ({exc})") from None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        try:
            model = onnx.load(path, load_external_data=False)
        except Exception as exc:  # protobuf decode errors have no common base class
            raise OnnxImportError(f"not a readable ONNX model ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:200]})") from None
        name = name or os.path.splitext(os.path.basename(path))[0]
    return _Importer(model, input_size).run(name or model.graph.name or "onnx")
