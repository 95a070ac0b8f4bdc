"""torch ``nn.Module`` -> simulator ``Graph``, by running the model once and recording its operations.

The model runs once (batch 1, eval mode, no grad) under a ``TorchFunctionMode`` that sees every torch
function call: on the meta device (shapes only, no arithmetic, weights untouched), or, when the model cannot
run there (data-dependent control flow, tensors made in forward), on a real zero tensor; module hooks keep the current module path so each op is named after the module
that issued it (``blocks.2.0.conv_pw``). Every tensor produced from the input is mapped to the raw node that
produced it, so control flow, timm's MixedConv2d split/cat, Inception branches and tf-"same" padding need no
symbolic tracing. A post-pass folds BatchNorm into its conv, fuses activations into their producer when
nothing else reads the pre-activation tensor, folds explicit padding into the consuming conv/pool and drops
dead code; the result is emitted through ``GraphBuilder`` and every shape is checked against the real
tensors. An op with no mapping raises ``UnsupportedOpError`` naming the module path and the op.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from simulator.frontends import UnsupportedOpError
from simulator.frontends._ir import _emit, _fit_padding, _fold, _Node
from simulator.graph import Graph, Shape

__all__ = ["graph_from_module", "UnsupportedOpError"]

#: Functions that only make a view/copy of their input (free in the IR).
_ALIAS_OPS = {
    "flatten", "view", "reshape", "contiguous", "dropout", "dropout_", "dropout1d", "dropout2d",
    "dropout3d", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "squeeze", "unsqueeze",
    "clone", "detach", "to", "float", "type_as", "view_as", "reshape_as", "expand", "expand_as",
    "identity", "cpu", "cuda", "requires_grad_", "squeeze_", "unsqueeze_", "ravel",
}
#: Element-wise activation functions -> ``graph.ACTIVATIONS`` name.
_ACT_FUNCS = {
    "relu": "relu", "relu_": "relu", "relu6": "relu6", "silu": "swish", "silu_": "swish",
    "hardswish": "hswish", "hardswish_": "hswish", "hardsigmoid": "hsigmoid", "hardsigmoid_": "hsigmoid",
    "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "gelu": "gelu", "tanh": "tanh", "tanh_": "tanh",
}
#: Activation module classes (by lower-case name without "_"; also with a "me"/"jit" suffix, timm's
#: memory-efficient variants) recorded as one activation even when written as several elementary ops.
_ACT_MODULES = {
    "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "silu": "swish", "swish": "swish",
    "hardswish": "hswish", "hswish": "hswish", "hardsigmoid": "hsigmoid", "hsigmoid": "hsigmoid",
    "gelu": "gelu", "gelutanh": "gelu", "quickgelu": "gelu", "tanh": "tanh",
}
_ADD_OPS = {"add", "add_", "__add__", "__iadd__", "__radd__"}
_MUL_OPS = {"mul", "mul_", "__mul__", "__imul__", "__rmul__", "multiply"}
_CAT_OPS = {"cat", "concat", "concatenate"}
_SPLIT_OPS = {"split", "chunk", "tensor_split", "split_with_sizes"}


@dataclass
class _Meta:
    """What a live tensor holds: the node that produced it and whether it is a pending explicit pad."""

    node: int
    padded: bool = False


def _act_module_name(module: nn.Module) -> str | None:
    """Activation name for a childless activation module (torch's, timm's or a look-alike), else None."""
    if next(iter(module.children()), None) is not None:
        return None
    key = type(module).__name__.lower().replace("_", "")
    if key in _ACT_MODULES:
        return _ACT_MODULES[key]
    for suffix in ("me", "jit"):
        if key.endswith(suffix) and key[: -len(suffix)] in _ACT_MODULES:
            return _ACT_MODULES[key[: -len(suffix)]]
    if type(module) is nn.Hardtanh and (module.min_val, module.max_val) == (0.0, 6.0):
        return "relu6"
    return None


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[-1])) if len(value) else (0, 0)
    return int(value), int(value)


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _chw(shape: torch.Size | tuple[int, ...]) -> Shape | None:
    """(C, H, W) of a batch-1 tensor shape; None when it has no such reading."""
    if len(shape) < 2 or shape[0] != 1 or len(shape) > 4:
        return None
    dims = tuple(int(d) for d in shape[1:]) + (1,) * (4 - len(shape))
    return dims  # type: ignore[return-value]


class _Recorder(TorchFunctionMode):
    """Records every torch op on tensors derived from the model input into ``_Node``s."""

    def __init__(self, input_shape: Shape) -> None:
        super().__init__()
        self.nodes: list[_Node] = [_Node("input", [], tuple(input_shape), "")]
        self._live: dict[int, tuple[weakref.ref, _Meta]] = {}
        self.stack: list[tuple[str, nn.Module]] = []
        self.suppress = 0  # > 0 inside an activation module recorded as one op
        self.act_inputs: list[Any] = []  # input of each activation module being run
        self.handlers: dict[str, Callable[[str, tuple, dict, Any], None]] = {}
        for names, handler in (
            (("conv2d",), self._conv), (("linear",), self._linear), (("batch_norm",), self._batch_norm),
            (tuple(_ACT_FUNCS), self._act), (("hardtanh", "hardtanh_"), self._hardtanh),
            (("clamp", "clamp_", "clip", "clip_"), self._clamp),
            (("max_pool2d", "avg_pool2d"), self._pool), (("adaptive_avg_pool2d",), self._adaptive_avg_pool),
            (("mean",), self._mean), (tuple(_ADD_OPS), self._add), (tuple(_MUL_OPS), self._mul),
            (tuple(_CAT_OPS), self._cat), (tuple(_SPLIT_OPS), self._split), (("__getitem__",), self._getitem),
            (("narrow",), self._narrow), (tuple(_ALIAS_OPS), self._alias), (("pad",), self._pad),
            (("__get__",), self._getattr),
        ):
            for name in names:
                self.handlers[name] = handler

    # --- tensor bookkeeping -------------------------------------------------------------------------
    def meta(self, tensor: Any) -> _Meta | None:
        if not isinstance(tensor, torch.Tensor):
            return None
        entry = self._live.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1]

    def bind(self, tensor: torch.Tensor, node: int, padded: bool = False) -> None:
        self._live[id(tensor)] = (weakref.ref(tensor), _Meta(node, padded))

    @property
    def leaf(self) -> bool:
        """Whether the current module has no children (its path alone then names the op)."""
        return bool(self.stack) and next(iter(self.stack[-1][1].children()), None) is None

    @property
    def path(self) -> str:
        return self.stack[-1][0] if self.stack else ""

    def error(self, op: str, detail: str = "") -> UnsupportedOpError:
        where = self.path or "<top level>"
        cls = type(self.stack[-1][1]).__name__ if self.stack else "model"
        text = f"unsupported op '{op}' in module '{where}' ({cls})"
        return UnsupportedOpError(text + (f": {detail}" if detail else ""))

    def new(self, kind: str, inputs: list[int], out: torch.Tensor, op: str, **attrs: Any) -> int:
        shape = _chw(out.shape)
        if shape is None:
            raise self.error(op, f"output shape {tuple(out.shape)} is not (1, C, H, W)")
        self.nodes.append(_Node(kind, inputs, shape, self.path, attrs, leaf=self.leaf))
        node = len(self.nodes) - 1
        self.bind(out, node)
        return node

    def source(self, tensor: torch.Tensor, op: str, allow_pad: bool = False) -> int:
        """Node feeding ``op``; inserts a reshape when the tensor was viewed to another (C, H, W)."""
        meta = self.meta(tensor)
        assert meta is not None
        if meta.padded:
            if not allow_pad:
                raise self.error(op, "explicit padding (F.pad) is only supported before conv/pool")
            return meta.node
        shape = _chw(tensor.shape)
        if shape is None:
            raise self.error(op, f"input shape {tuple(tensor.shape)} is not (1, C, H, W)")
        if shape != self.nodes[meta.node].out_shape:
            self.nodes.append(_Node("reshape", [meta.node], shape, self.path))
            meta.node = len(self.nodes) - 1
        return meta.node

    # --- the mode -----------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.suppress:
            return out
        if not any(self.meta(t) is not None for t in _tensors((args, kwargs))):
            return out
        name = getattr(func, "__name__", repr(func))
        if name == "__setitem__":  # an in-place write: the target tensor now holds something unmodelled
            self.poison(self.error(name, "in-place writes into feature maps"), (args, kwargs), args[0])
            return out
        if not any(True for _ in _tensors(out)):
            return out  # size(), dim(), shape, asserts: metadata only
        handler = self.handlers.get(name)
        try:
            if handler is None:
                raise self.error(name)
            handler(name, args, kwargs, out)
        except UnsupportedOpError as exc:
            self.poison(exc, (args, kwargs), out)
        return out

    def poison(self, exc: UnsupportedOpError, inputs: Any, out: Any) -> None:
        """Bind ``out`` to a node that raises ``exc`` if it feeds the model output (control flow may not)."""
        sources = [m.node for m in (self.meta(t) for t in _tensors(inputs)) if m is not None]
        for tensor in _tensors(out):
            self.nodes.append(_Node("unsupported", sources, (0, 0, 0), self.path, {"error": exc}))
            self.bind(tensor, len(self.nodes) - 1)

    # --- op handlers --------------------------------------------------------------------------------
    def _conv(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        x, weight = args[0], _arg(args, kwargs, 1, "weight")
        if self.meta(weight) is not None or self.meta(x) is None:
            raise self.error(op, "weights computed from the input")
        bias = _arg(args, kwargs, 2, "bias")
        stride = _pair(_arg(args, kwargs, 3, "stride", 1))
        padding = _arg(args, kwargs, 4, "padding", 0)
        dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
        groups = int(_arg(args, kwargs, 6, "groups", 1))
        if dilation != (1, 1):
            raise self.error(op, f"dilation {dilation} (only dilation 1 is modelled)")
        if weight.dim() != 4:
            raise self.error(op, "only 2-d convolution is modelled")
        src = self.source(x, op, allow_pad=True)
        c_out, _, kh, kw = (int(d) for d in weight.shape)
        node = self.new("conv", [src], out, op, kernel=(kh, kw), stride=stride, groups=groups,
                        bias=bias is not None, declared=None if isinstance(padding, str) else _pair(padding))
        self._check_padding(node, op)

    def _check_padding(self, node: int, op: str) -> None:
        n = self.nodes[node]
        in_shape = self.nodes[n.inputs[0]].out_shape
        pad = _fit_padding(in_shape[1:], n.attrs["kernel"], n.attrs["stride"], n.out_shape[1:],
                           n.attrs.pop("declared"))
        if pad is None:
            raise self.error(op, f"cannot express padding for {in_shape} -> {n.out_shape}")
        n.attrs["padding"] = pad

    def _linear(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        x, weight = args[0], _arg(args, kwargs, 1, "weight")
        bias = _arg(args, kwargs, 2, "bias")
        meta = self.meta(x)
        if meta is None or meta.padded or self.meta(weight) is not None:
            raise self.error(op, "linear on a computed weight or padded input")
        if x.dim() != 2 or x.shape[0] != 1:
            raise self.error(op, f"linear on a {tuple(x.shape)} tensor (only flattened (1, N) inputs)")
        src = meta.node
        c, h, w = self.nodes[src].out_shape
        if c * h * w != x.shape[1]:
            src = self.source(x, op)
        self.new("fc", [src], out, op, bias=bias is not None)

    def _batch_norm(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        self.new("bn", [self.source(args[0], op)], out, op)

    def _act(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        self.record_act(args[0], out, _ACT_FUNCS[op], op)

    def record_act(self, x: torch.Tensor, out: torch.Tensor, act: str, op: str) -> None:
        node = self.new("act", [self.source(x, op)], out, op)
        self.nodes[node].act = act

    def _hardtanh(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        bounds = (float(_arg(args, kwargs, 1, "min_val", -1.0)), float(_arg(args, kwargs, 2, "max_val", 1.0)))
        if bounds != (0.0, 6.0):
            raise self.error(op, f"hardtanh{bounds} (only relu6 = hardtanh(0, 6))")
        self.record_act(args[0], out, "relu6", op)

    def _clamp(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        low, high = _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max")
        bounds = tuple(None if b is None else float(b) for b in (low, high))
        acts = {(0.0, 6.0): "relu6", (0.0, None): "relu"}
        if bounds not in acts:
            raise self.error(op, f"clamp{bounds} (only clamp(0, 6) = relu6 and clamp(min=0) = relu)")
        self.record_act(args[0], out, acts[bounds], op)

    def _pool(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            raise self.error(op, "return_indices")
        x = args[0]
        kernel = _pair(_arg(args, kwargs, 1, "kernel_size"))
        stride = _arg(args, kwargs, 2, "stride")
        stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) else _pair(stride)
        padding = _pair(_arg(args, kwargs, 3, "padding", 0))
        if op == "max_pool2d" and _pair(_arg(args, kwargs, 4, "dilation", 1)) != (1, 1):
            raise self.error(op, "dilated pooling")
        src = self.source(x, op, allow_pad=True)
        in_shape = self.nodes[src].out_shape
        if op == "avg_pool2d" and tuple(out.shape[2:]) == (1, 1) and kernel == in_shape[1:] and not any(padding):
            self.new("gap", [src], out, op)
            return
        kind = "maxpool" if op == "max_pool2d" else "avgpool"
        node = self.new(kind, [src], out, op, kernel=kernel, stride=stride, declared=padding)
        self._check_padding(node, op)

    def _adaptive_avg_pool(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        src = self.source(args[0], op)
        in_hw = self.nodes[src].out_shape[1:]
        out_hw = tuple(int(d) for d in out.shape[2:])
        if out_hw == (1, 1):
            self.new("gap", [src], out, op)
        elif out_hw == in_hw:
            self.bind(out, src)
        elif in_hw[0] % out_hw[0] == 0 and in_hw[1] % out_hw[1] == 0:
            kernel = (in_hw[0] // out_hw[0], in_hw[1] // out_hw[1])
            self.new("avgpool", [src], out, op, kernel=kernel, stride=kernel, padding=(0, 0))
        else:
            raise self.error(op, f"adaptive pooling {in_hw} -> {out_hw}")

    def _mean(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        x = args[0]
        dims = _arg(args, kwargs, 1, "dim")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if x.dim() != 4 or {d % 4 for d in dims} != {2, 3}:
            raise self.error(op, f"mean over dims {dims} (only spatial mean = global average pooling)")
        self.new("gap", [self.source(x, op)], out, op)

    def _operands(self, op: str, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        other = _arg(args, kwargs, 1, "other")
        operands = [args[0], other]
        if any(self.meta(t) is None for t in operands):
            raise self.error(op, "element-wise op with a constant or parameter operand")
        alpha = kwargs.get("alpha", 1)
        if alpha != 1:
            raise self.error(op, f"alpha={alpha}")
        return operands

    def _add(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        a, b = (self.source(t, op) for t in self._operands(op, args, kwargs))
        if self.nodes[a].out_shape != self.nodes[b].out_shape:
            raise self.error(op, f"broadcasting add {self.nodes[a].out_shape} + {self.nodes[b].out_shape}")
        self.new("add", [a, b], out, op)

    def _mul(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        a, b = (self.meta(t).node for t in self._operands(op, args, kwargs))  # type: ignore[union-attr]
        if any(self.meta(t).padded for t in (args[0], _arg(args, kwargs, 1, "other"))):  # type: ignore[union-attr]
            raise self.error(op, "explicit padding before a multiply")
        shape_a, shape_b = self.nodes[a].out_shape, self.nodes[b].out_shape
        if shape_a[1:] == (1, 1) and shape_b[1:] != (1, 1):
            a, b, shape_a, shape_b = b, a, shape_b, shape_a
        if shape_a != shape_b and not (shape_b == (shape_a[0], 1, 1)):
            raise self.error(op, f"broadcasting multiply {shape_a} * {shape_b}")
        self.new("mul", [a, b], out, op)

    def _cat(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        tensors = list(_arg(args, kwargs, 0, "tensors"))
        dim = _arg(args, kwargs, 1, "dim", 0)
        if any(self.meta(t) is None for t in tensors) or out.dim() != 4 or dim % 4 != 1:
            raise self.error(op, f"concatenation along dim {dim} (only channels of feature maps)")
        sources = [self.source(t, op) for t in tensors]
        if len(sources) == 1:
            self.bind(out, sources[0])
        else:
            self.new("concat", sources, out, op)

    def _channel_slices(self, op: str, x: torch.Tensor, pieces: list[torch.Tensor], ranges: list[tuple[int, int]]) -> None:
        src = self.source(x, op)
        channels = self.nodes[src].out_shape[0]
        for piece, (start, end) in zip(pieces, ranges):
            if (start, end) == (0, channels):
                self.bind(piece, src)
            else:
                self.new("split", [src], piece, op, split_range=(start, end))

    def _split(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        x = args[0]
        dim = _arg(args, kwargs, 2, "dim", 0)
        if x.dim() != 4 or dim % 4 != 1:
            raise self.error(op, f"split along dim {dim} (only channels)")
        pieces = list(out)
        ranges, start = [], 0
        for piece in pieces:
            ranges.append((start, start + int(piece.shape[1])))
            start += int(piece.shape[1])
        self._channel_slices(op, x, pieces, ranges)

    def _narrow(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        x, dim, start, length = args[0], args[1], int(args[2]), int(args[3])
        if x.dim() != 4 or dim % 4 != 1:
            raise self.error(op, f"narrow along dim {dim} (only channels)")
        self._channel_slices(op, x, [out], [(start, start + length)])

    def _getitem(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        x, key = args[0], args[1]
        key = key if isinstance(key, tuple) else (key,)
        if x.dim() != 4 or any(k is Ellipsis or k is None or not isinstance(k, slice) for k in key):
            raise self.error(op, f"indexing with {key!r} (only channel slices x[:, a:b])")
        full = [k == slice(None) for k in key]
        if len(key) > 4 or not full[0] or not all(full[2:]):
            raise self.error(op, f"indexing with {key!r} (only channel slices x[:, a:b])")
        if len(key) == 1 or full[1]:
            self._alias(op, args, kwargs, out)
            return
        start, end, step = key[1].indices(int(x.shape[1]))
        if step != 1:
            raise self.error(op, f"strided channel slice {key[1]}")
        self._channel_slices(op, x, [out], [(start, end)])

    def _alias(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        meta = self.meta(args[0])
        if meta is None or not isinstance(out, torch.Tensor):
            raise self.error(op)
        self.bind(out, meta.node, meta.padded)

    def _getattr(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        if not isinstance(out, torch.Tensor) or out.shape != args[0].shape:
            raise self.error(op, "tensor attribute access")
        self._alias(op, args, kwargs, out)

    def _pad(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        pads = tuple(int(p) for p in _arg(args, kwargs, 1, "pad"))
        mode = _arg(args, kwargs, 2, "mode", "constant")
        if mode != "constant" or len(pads) not in (2, 4) or min(pads) < 0:
            raise self.error(op, f"pad {pads} mode {mode!r} (only constant spatial padding)")
        meta = self.meta(args[0])
        src = self.source(args[0], op, allow_pad=True)
        self.bind(out, src, padded=meta.padded or any(pads))  # type: ignore[union-attr]


def _model_name(module: nn.Module) -> str:
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
    return str(cfg.get("architecture") or type(module).__name__) if isinstance(cfg, dict) else type(module).__name__


def graph_from_module(module: nn.Module, input_shape: tuple[int, int, int] = (3, 224, 224),
                      name: str | None = None) -> Graph:
    """Run ``module`` once on zeros of ``input_shape`` (C, H, W) and return its layer graph."""
    input_shape = tuple(int(d) for d in input_shape)  # type: ignore[assignment]
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape: expected (C, H, W) with positive sizes, got {input_shape}")
    try:  # shapes only: weights and activations on the meta device, no arithmetic at all
        recorder, outputs = _record(module, input_shape, meta=True)  # type: ignore[arg-type]
    except UnsupportedOpError:
        raise
    except Exception:  # e.g. data-dependent control flow or tensors made in forward: run it for real
        recorder, outputs = _record(module, input_shape, meta=False)  # type: ignore[arg-type]
    nodes = recorder.nodes
    _fold(nodes, outputs)
    return _emit(nodes, outputs, input_shape, name or _model_name(module))  # type: ignore[arg-type]


def _record(module: nn.Module, input_shape: Shape, meta: bool) -> tuple[_Recorder, list[int]]:
    """One batch-1 forward in eval mode under the recorder; restores training flags, removes hooks."""
    recorder = _Recorder(input_shape)
    handles = []
    for path, child in module.named_modules():
        act = _act_module_name(child)
        handles.append(child.register_forward_pre_hook(_pre_hook(recorder, path, child, act)))
        handles.append(child.register_forward_hook(_post_hook(recorder, act)))
    modes = {m: m.training for m in module.modules()}
    param = next(iter(module.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = "meta" if meta else (param.device if param is not None else "cpu")
    x = torch.zeros((1, *input_shape), dtype=dtype, device=device)
    recorder.bind(x, 0)
    try:
        module.eval()
        with torch.no_grad():
            if meta:
                state = {key: torch.empty_like(value, device="meta") for key, value in
                         [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]}
                with recorder:
                    result = functional_call(module, state, (x,), strict=False)
            else:
                with recorder:
                    result = module(x)
    finally:
        for handle in handles:
            handle.remove()
        for child, training in modes.items():
            child.training = training
    outputs = [m.node for m in (recorder.meta(t) for t in _tensors(result)) if m is not None]
    if not outputs:
        raise UnsupportedOpError(f"module '{_model_name(module)}': its output does not depend on its input")
    return recorder, outputs


def _pre_hook(recorder: _Recorder, path: str, module: nn.Module, act: str | None) -> Callable:
    def hook(mod: nn.Module, inputs: tuple) -> None:
        recorder.stack.append((path, module))
        if act is not None:
            recorder.act_inputs.append(inputs[0] if inputs else None)
            recorder.suppress += 1
    return hook


def _post_hook(recorder: _Recorder, act: str | None) -> Callable:
    def hook(mod: nn.Module, inputs: tuple, output: Any) -> None:
        if act is not None:
            recorder.suppress -= 1
            x = recorder.act_inputs.pop()
            if not recorder.suppress and recorder.meta(x) is not None and isinstance(output, torch.Tensor):
                with torch._C.DisableTorchFunction():
                    try:
                        recorder.record_act(x, output, act, type(mod).__name__)
                    except UnsupportedOpError as exc:
                        recorder.poison(exc, x, output)
        recorder.stack.pop()
    return hook
