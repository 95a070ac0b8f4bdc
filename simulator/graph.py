"""The simulator's layer IR: a DAG of layers with shapes, built by frontends or by hand.

Shapes are (C, H, W) for a single image (batch 1, what an NPU runs). Every layer names its producer
layers in ``inputs`` ("input" is the graph input). The IR knows nothing about torch or S3NAS: the torch
frontend (``simulator.frontends.torch``) and other tools (s3nas' ArchSpec converter) build it with
``GraphBuilder``, which infers output shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

Shape = tuple[int, int, int]  # (channels, height, width)

#: Operation types the engine understands. "reshape" (flatten/view) is free.
OPS = (
    "conv",  # any kernel/stride/padding/groups; depthwise when groups == C_in == C_out
    "fc",  # fully connected on a flattened input (C*H*W -> out_features)
    "maxpool",
    "avgpool",
    "gap",  # global average pooling -> (C, 1, 1)
    "add",  # element-wise add of 2+ inputs of equal shape
    "mul",  # element-wise multiply; second input may be (C, 1, 1) (SE channel scaling)
    "concat",  # along channels
    "split",  # channel slice [start, end) of one input
    "act",  # standalone activation (when it cannot be fused into the producer)
    "reshape",  # flatten / view: free
)

#: Activations: applied in the compute pipeline.
ACTIVATIONS = (None, "relu", "relu6", "sigmoid", "swish", "hswish", "hsigmoid", "tanh", "gelu")


@dataclass
class Layer:
    """One operation of the graph; ``in_shapes`` follow ``inputs`` order."""

    name: str
    op: str
    inputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    act: str | None = None
    bias: bool = False
    split_range: tuple[int, int] | None = None  # channel range for "split"
    module: str = ""  # where it came from (torch module path, block id), for reports and errors

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]

    @property
    def is_depthwise(self) -> bool:
        c_in = self.in_shapes[0][0]
        return self.op == "conv" and self.groups > 1 and self.groups == c_in == self.out_shape[0]

    @property
    def macs(self) -> int:
        """Multiply-accumulates of this layer (0 for data movement ops)."""
        c_out, h_out, w_out = self.out_shape
        if self.op == "conv":
            c_in = self.in_shapes[0][0]
            return (c_in // self.groups) * self.kernel[0] * self.kernel[1] * c_out * h_out * w_out
        if self.op == "fc":
            c, h, w = self.in_shapes[0]
            return c * h * w * c_out
        return 0

    @property
    def weight_count(self) -> int:
        """Number of weight elements (incl. bias), bytes at 8 bit."""
        if self.op == "conv":
            c_in = self.in_shapes[0][0]
            w = (c_in // self.groups) * self.kernel[0] * self.kernel[1] * self.out_shape[0]
            return w + (self.out_shape[0] if self.bias else 0)
        if self.op == "fc":
            c, h, w_ = self.in_shapes[0]
            return c * h * w_ * self.out_shape[0] + (self.out_shape[0] if self.bias else 0)
        return 0


@dataclass
class Graph:
    """A layer DAG in topological order with one input."""

    input_shape: Shape
    layers: list[Layer] = field(default_factory=list)
    name: str = "graph"
    #: the input is the network's image (stored with ``input_channel_align``). False for a block or
    #: sub-network whose input is an inner feature map (padded by its readers like any map).
    image_input: bool = True

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def output(self) -> str:
        return self.layers[-1].name if self.layers else "input"

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def to_dict(self) -> dict:
        """JSON-able form (``{"format": "simulator.graph", ...}``); ``Graph.from_dict`` reads it back."""
        data = {
            "format": GRAPH_FORMAT, "version": 1, "name": self.name, "input_shape": list(self.input_shape),
            "layers": [_layer_to_dict(layer) for layer in self.layers],
        }
        if not self.image_input:  # written only when set: older readers and files stay as they were
            data["image_input"] = False
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Graph":
        """Inverse of ``to_dict``; raises ValueError naming the bad field (ops, shapes, topological order)."""
        if not isinstance(data, dict) or data.get("format") != GRAPH_FORMAT:
            raise ValueError(f"format: expected {GRAPH_FORMAT!r}")
        try:
            input_shape = _shape(data["input_shape"])
            layers_data = list(data["layers"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"input_shape/layers: missing or malformed ({exc})") from None
        image_input = data.get("image_input", True)
        if not isinstance(image_input, bool):
            raise ValueError(f"image_input: expected true or false, got {image_input!r}")
        graph = cls(input_shape=input_shape, name=str(data.get("name", "graph")), image_input=image_input)
        known = {"input"}
        for index, item in enumerate(layers_data):
            layer = _layer_from_dict(item, f"layers[{index}]")
            missing = [x for x in layer.inputs if x not in known]
            if missing:
                raise ValueError(f"layers[{index}].inputs: {missing} not defined earlier (topological order)")
            if layer.name in known:
                raise ValueError(f"layers[{index}].name: duplicate {layer.name!r}")
            known.add(layer.name)
            graph.layers.append(layer)
        return graph


GRAPH_FORMAT = "simulator.graph"


def _shape(value) -> Shape:
    shape = tuple(int(v) for v in value)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected (C, H, W) of positive ints, got {value!r}")
    return shape  # type: ignore[return-value]


def _layer_to_dict(layer: Layer) -> dict:
    return {
        "name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
        "in_shapes": [list(s) for s in layer.in_shapes], "out_shape": list(layer.out_shape),
        "kernel": list(layer.kernel), "stride": list(layer.stride), "padding": list(layer.padding),
        "groups": layer.groups, "act": layer.act, "bias": layer.bias,
        "split_range": list(layer.split_range) if layer.split_range else None, "module": layer.module,
    }


def _layer_from_dict(item: dict, where: str) -> Layer:
    def pair(key: str, default: tuple[int, int]) -> tuple[int, int]:
        value = item.get(key, default)
        try:
            a, b = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}.{key}: expected two ints, got {value!r}") from None
        return a, b

    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    if item.get("op") not in OPS:
        raise ValueError(f"{where}.op: {item.get('op')!r} not one of {', '.join(OPS)}")
    if item.get("act") not in ACTIVATIONS:
        raise ValueError(f"{where}.act: {item.get('act')!r} not one of {ACTIVATIONS}")
    try:
        in_shapes = tuple(_shape(s) for s in item["in_shapes"])
        out_shape = _shape(item["out_shape"])
        name, inputs = str(item["name"]), tuple(str(x) for x in item["inputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: name/inputs/in_shapes/out_shape missing or malformed ({exc})") from None
    if len(in_shapes) != len(inputs):
        raise ValueError(f"{where}.in_shapes: {len(in_shapes)} shapes for {len(inputs)} inputs")
    split = item.get("split_range")
    kernel, stride, padding = pair("kernel", (1, 1)), pair("stride", (1, 1)), pair("padding", (0, 0))
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{where}: kernel and stride must be >= 1 and padding >= 0, got kernel {kernel}, "
                         f"stride {stride}, padding {padding}")
    groups = item.get("groups", 1)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{where}.groups: expected an int >= 1, got {groups!r}")
    return Layer(
        name=name, op=item["op"], inputs=inputs, in_shapes=in_shapes, out_shape=out_shape,
        kernel=kernel, stride=stride, padding=padding, groups=groups, act=item.get("act"), bias=bool(item.get("bias", False)),
        split_range=pair("split_range", (0, 0)) if split is not None else None, module=str(item.get("module", "")),
    )


def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Standard convolution output size."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class GraphBuilder:
    """Builds a Graph with shape inference; each method returns the new layer's name.

    >>> b = GraphBuilder((3, 224, 224))
    >>> x = b.conv(b.input, 32, 3, stride=2, act="relu")
    >>> b.graph.layer(x).out_shape
    (32, 112, 112)
    """

    def __init__(self, input_shape: Shape, name: str = "graph", image_input: bool = True) -> None:
        self.graph = Graph(input_shape=tuple(input_shape), name=name, image_input=image_input)
        self._shapes: dict[str, Shape] = {"input": tuple(input_shape)}
        self._counter = 0
        self.input = "input"

    def shape(self, name: str) -> Shape:
        return self._shapes[name]

    def _name(self, op: str, name: str | None) -> str:
        self._counter += 1
        candidate = name or f"{op}{self._counter}"
        if candidate in self._shapes:
            candidate = f"{candidate}_{self._counter}"
        return candidate

    def _append(self, layer: Layer) -> str:
        self.graph.layers.append(layer)
        self._shapes[layer.name] = layer.out_shape
        return layer.name

    def conv(
        self,
        x: str,
        out_channels: int,
        kernel: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        act: str | None = None,
        bias: bool = False,
        name: str | None = None,
        module: str = "",
    ) -> str:
        """Convolution; padding defaults to 'same'-style k//2."""
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
        if padding is None:
            padding = (kh // 2, kw // 2)
        ph, pw = (padding, padding) if isinstance(padding, int) else tuple(padding)
        c, h, w = self._shapes[x]
        out = (out_channels, conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw))
        return self._append(
            Layer(self._name("conv", name), "conv", (x,), (self._shapes[x],), out, (kh, kw), (sh, sw),
                  (ph, pw), groups, act, bias, module=module)
        )

    def depthwise(self, x: str, kernel: int, stride: int = 1, act: str | None = None,
                  name: str | None = None, module: str = "") -> str:
        c = self._shapes[x][0]
        return self.conv(x, c, kernel, stride, groups=c, act=act, name=name, module=module)

    def fc(self, x: str, out_features: int, act: str | None = None, bias: bool = True,
           name: str | None = None, module: str = "") -> str:
        return self._append(
            Layer(self._name("fc", name), "fc", (x,), (self._shapes[x],), (out_features, 1, 1), act=act,
                  bias=bias, module=module)
        )

    def pool(self, x: str, kind: str, kernel: int, stride: int | None = None, padding: int = 0,
             name: str | None = None, module: str = "") -> str:
        """kind: 'max' or 'avg'."""
        stride = stride or kernel
        c, h, w = self._shapes[x]
        out = (c, conv_out_size(h, kernel, stride, padding), conv_out_size(w, kernel, stride, padding))
        op = {"max": "maxpool", "avg": "avgpool"}[kind]
        return self._append(
            Layer(self._name(op, name), op, (x,), (self._shapes[x],), out, (kernel, kernel), (stride, stride),
                  (padding, padding), module=module)
        )

    def gap(self, x: str, name: str | None = None, module: str = "") -> str:
        c, h, w = self._shapes[x]
        return self._append(
            Layer(self._name("gap", name), "gap", (x,), (self._shapes[x],), (c, 1, 1), kernel=(h, w),
                  module=module)
        )

    def _eltwise(self, op: str, xs: tuple[str, ...], name: str | None, module: str, act: str | None) -> str:
        shapes = tuple(self._shapes[x] for x in xs)
        return self._append(Layer(self._name(op, name), op, tuple(xs), shapes, shapes[0], act=act, module=module))

    def add(self, *xs: str, act: str | None = None, name: str | None = None, module: str = "") -> str:
        return self._eltwise("add", xs, name, module, act)

    def mul(self, x: str, scale: str, name: str | None = None, module: str = "") -> str:
        """x * scale; scale may be (C, 1, 1) (channel attention)."""
        return self._eltwise("mul", (x, scale), name, module, None)

    def concat(self, *xs: str, name: str | None = None, module: str = "") -> str:
        shapes = tuple(self._shapes[x] for x in xs)
        out = (sum(s[0] for s in shapes), shapes[0][1], shapes[0][2])
        return self._append(Layer(self._name("concat", name), "concat", tuple(xs), shapes, out, module=module))

    def split(self, x: str, start: int, end: int, name: str | None = None, module: str = "") -> str:
        c, h, w = self._shapes[x]
        return self._append(
            Layer(self._name("split", name), "split", (x,), (self._shapes[x],), (end - start, h, w),
                  split_range=(start, end), module=module)
        )

    def act(self, x: str, act: str, name: str | None = None, module: str = "") -> str:
        return self._append(
            Layer(self._name("act", name), "act", (x,), (self._shapes[x],), self._shapes[x], act=act, module=module)
        )

    def reshape(self, x: str, out_shape: Shape, name: str | None = None, module: str = "") -> str:
        return self._append(
            Layer(self._name("reshape", name), "reshape", (x,), (self._shapes[x],), tuple(out_shape), module=module)
        )

    def se(self, x: str, reduced_channels: int, act: str = "relu", gate: str = "sigmoid",
           name: str = "se", module: str = "") -> str:
        """Squeeze-and-excitation as its component ops: GAP -> 1x1 reduce -> 1x1 expand -> multiply."""
        c = self._shapes[x][0]
        s = self.gap(x, name=f"{name}.gap", module=module)
        s = self.conv(s, reduced_channels, 1, act=act, bias=True, name=f"{name}.reduce", module=module)
        s = self.conv(s, c, 1, act=gate, bias=True, name=f"{name}.expand", module=module)
        return self.mul(x, s, name=f"{name}.mul", module=module)
