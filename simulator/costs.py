"""Closed-form compute cost of one layer on a profile's compute modules (no memory effects).

Each dataflow has its own conv model; depthwise (except on spatial arrays), pooling and element-wise ops
use the depthwise/element-wise path, global pooling the reduction unit; activations are in the pipeline
(free); concat/split/reshape are addressing only (free). The event engine splits these cycles over tiles,
so with unlimited bandwidth its result equals :func:`graph_compute_cycles` exactly.
"""

from __future__ import annotations

from functools import lru_cache

from .graph import ACTIVATIONS, Layer

FREE_OPS = ("concat", "split", "reshape")
KNOWN_OPS = ("conv", "fc", "maxpool", "avgpool", "gap", "add", "mul", "act") + FREE_OPS


class UnsupportedOpError(ValueError):
    """An operation (or activation) the simulator does not model; names the module and the op."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@lru_cache(maxsize=4096)
def valid_taps(in_size: int, out_size: int, kernel: int, stride: int, padding: int) -> int:
    """Sum over output positions of kernel taps that fall inside the (unpadded) input, one dimension."""
    total = 0
    for o in range(out_size):
        start = o * stride - padding
        lo = -start if start < 0 else 0
        hi = in_size - start
        if hi > kernel:
            hi = kernel
        if hi > lo:
            total += hi - lo
    return total


def _where(layer: Layer) -> str:
    return f"module '{layer.module or layer.name}' (layer {layer.name})"


def check_supported(layer: Layer) -> None:
    """Raise UnsupportedOpError for an op or activation the simulator does not model."""
    if layer.op not in KNOWN_OPS:
        raise UnsupportedOpError(f"{_where(layer)}: unsupported op '{layer.op}' "
                                 f"(supported: {', '.join(KNOWN_OPS)})")
    if layer.act not in ACTIVATIONS:
        raise UnsupportedOpError(f"{_where(layer)}: unsupported activation '{layer.act}' of op '{layer.op}'")


def layer_compute(layer: Layer, profile, graph_input: bool = False, fused_reduction: bool = False
                  ) -> tuple[str, int, int]:
    """(module, compute_cycles, weight_tile_count_hint) of one layer; module '' = free."""
    check_supported(layer)
    op = layer.op
    p = profile
    if op in FREE_OPS or (op == "gap" and fused_reduction):
        return "", 0, 0
    c_out, h_out, w_out = layer.out_shape
    if op == "conv":
        c_in, h_in, w_in = layer.in_shapes[0]
        kh, kw = layer.kernel
        sh, sw = layer.stride
        ph, pw = layer.padding
        g = layer.groups
        if c_in % g or c_out % g:
            raise UnsupportedOpError(f"{_where(layer)}: conv groups={g} do not divide channels {c_in}->{c_out}")
        cin_g, cout_g = c_in // g, c_out // g
        if p.dataflow == "spatial_rs":
            return "conv", _spatial_conv(p, g * cin_g * cout_g, kh, kw, h_out, w_out), _cdiv(c_out, p.conv_units)
        if layer.is_depthwise:
            taps = valid_taps(h_in, h_out, kh, sh, ph) * valid_taps(w_in, w_out, kw, sw, pw)
            return "dw", _cdiv(c_out, p.dw_lanes) * taps, _cdiv(c_out, p.dw_lanes)
        hw = h_out * w_out
        if p.dataflow == "adder_tree":
            if graph_input and g == 1 and p.first_layer_gemm and c_in < p.conv_lanes:
                cycles = _cdiv(kh * kw * c_in, p.conv_lanes) * _cdiv(c_out, p.conv_units) * h_out * w_out
            else:
                cycles = _adder_tree_conv(p, cin_g, cout_g, g, (h_in, w_in), (h_out, w_out), layer.kernel,
                                          layer.stride, layer.padding)
            return "conv", cycles, g * _cdiv(cout_g, p.conv_units)
        # systolic_ws: one pass of hw input vectors per weight tile, plus fill/drain of the array
        tiles = _cdiv(kh * kw * cin_g, p.conv_lanes) * _cdiv(cout_g, p.conv_units)
        return "conv", g * tiles * (hw + p.conv_lanes + p.conv_units), g * tiles
    if op == "fc":
        c, h, w = layer.in_shapes[0]
        c_in = c * h * w
        if p.dataflow == "spatial_rs":
            return "conv", _spatial_conv(p, c_in * c_out, 1, 1, 1, 1), _cdiv(c_out, p.conv_units)
        if p.dataflow == "adder_tree":
            return "conv", _cdiv(c_in, p.conv_lanes) * _cdiv(c_out, p.conv_units), _cdiv(c_out, p.conv_units)
        tiles = _cdiv(c_in, p.conv_lanes) * _cdiv(c_out, p.conv_units)
        return "conv", tiles * (1 + p.conv_lanes + p.conv_units), tiles
    if op in ("maxpool", "avgpool"):
        c_in, h_in, w_in = layer.in_shapes[0]
        taps = (valid_taps(h_in, h_out, layer.kernel[0], layer.stride[0], layer.padding[0])
                * valid_taps(w_in, w_out, layer.kernel[1], layer.stride[1], layer.padding[1]))
        return "dw", _cdiv(c_out, p.dw_lanes) * taps, 1
    if op == "gap":
        c, h, w = layer.in_shapes[0]
        return "reduction", _cdiv(c, p.reduction_lanes) * h * w, 1
    if op == "add":
        return "dw", max(1, len(layer.inputs) - 1) * _cdiv(c_out, p.dw_lanes) * h_out * w_out, 1
    if op in ("mul", "act"):
        return "dw", _cdiv(c_out, p.dw_lanes) * h_out * w_out, 1
    raise UnsupportedOpError(f"{_where(layer)}: unsupported op '{op}'")  # pragma: no cover


@lru_cache(maxsize=4096)
def valid_taps_per_output(in_size: int, out_size: int, kernel: int, stride: int, padding: int) -> tuple[int, ...]:
    """Kernel taps inside the input for each output position, one dimension."""
    out = []
    for o in range(out_size):
        start = o * stride - padding
        out.append(max(0, min(kernel, in_size - start) - max(0, -start)))
    return tuple(out)


def align_stall(p, kh: int, cin: int, stride: int, pad_top: int) -> float:
    """Adder-tree align-stage stall per kernel column when kh*C_in does not fill whole lane rows.

    The align/broadcast stage feeds ``conv_units``-wide slices; a partial last row costs extra cycles
    depending on how many slices it fills and on the stride phase (MIDAP's compiler model).
    """
    if not p.conv_align_stall:
        return 0.0
    u = max(1, p.conv_lanes // 4)
    if stride % 4 == 0:
        return 0.0 if pad_top % 4 == 0 else 1.0
    m = (kh * cin) % p.conv_lanes
    one_or_three = 0 < m <= u or 2 * u < m <= 3 * u
    two = u < m <= 2 * u
    if stride % 2 == 1:
        return 0.75 if one_or_three else (0.5 if two else 0.0)
    if one_or_three:
        return 0.5 if pad_top % 2 == 0 else 1.0
    if two:
        return 0.0 if pad_top % 2 == 0 else 1.0
    return 0.0


def _adder_tree_conv(p, cin_g: int, cout_g: int, groups: int, in_hw, out_hw, kernel, stride, padding) -> int:
    """Adder tree: per output pixel and filter group, each valid kernel column costs
    ceil(valid_rows * C_in / lanes) cycles (kernel rows folded into the lanes) plus the align stall."""
    # (C_in below one lane row is padded to channel_align before folding; see below)
    kh, kw = kernel
    stall = align_stall(p, kh, cin_g, stride[0], padding[0]) if kw != 1 else 0.0
    # fewer channels than one lane row: each kernel row occupies the whole padded channel slice, so
    # rows cannot fold into the lanes; from one lane row up, kernel rows fold (ceil(rows*C/lanes))
    cin_fold = -(-cin_g // p.channel_align) * p.channel_align if cin_g < p.conv_lanes else cin_g
    cols = valid_taps(in_hw[1], out_hw[1], kw, stride[1], padding[1])
    rows = sum(_cdiv(v * cin_fold, p.conv_lanes) + stall if v else 0.0
               for v in valid_taps_per_output(in_hw[0], out_hw[0], kh, stride[0], padding[0]))
    return int(groups * _cdiv(cout_g, p.conv_units) * cols * rows)


def _spatial_conv(p, pairs: int, kh: int, kw: int, h_out: int, w_out: int) -> int:
    """Row-stationary: a PE does a 1-D row convolution; filter rows stack vertically, output rows across."""
    sets = max(1, p.conv_lanes // kh)
    folds = _cdiv(kh, p.conv_lanes)
    return _cdiv(pairs, sets) * _cdiv(h_out, p.conv_units) * w_out * kw * folds


def effective_macs(layer: Layer) -> int:
    """MACs on real (non-padding) inputs: what a machine that skips padding taps must still do."""
    if layer.op != "conv":
        return layer.macs
    c_in, h_in, w_in = layer.in_shapes[0]
    c_out, h_out, w_out = layer.out_shape
    taps = (valid_taps(h_in, h_out, layer.kernel[0], layer.stride[0], layer.padding[0])
            * valid_taps(w_in, w_out, layer.kernel[1], layer.stride[1], layer.padding[1]))
    return (c_in // layer.groups) * c_out * taps


def pipeline_cycles(module: str, profile) -> int:
    """Pipeline depth paid once per layer on a module."""
    if module == "conv":
        return profile.conv_pipeline_cycles
    if module == "dw":
        return profile.dw_pipeline_cycles
    if module == "reduction":
        return profile.reduction_pipeline_cycles
    return 0


COMPUTE_PRODUCERS = ("conv", "fc", "maxpool", "avgpool", "add", "mul", "act")


def fused_gaps(graph, profile) -> set[str]:
    """Names of GAP layers that run in their producer's pipeline (free)."""
    if not profile.fuse_reduction:
        return set()
    ops = {layer.name: layer.op for layer in graph.layers}
    return {layer.name for layer in graph.layers
            if layer.op == "gap" and ops.get(layer.inputs[0]) in COMPUTE_PRODUCERS}


def graph_compute_cycles(graph, profile) -> int:
    """Closed-form compute-only cycles of a graph: sum of layer compute + pipeline depth per layer."""
    fused = fused_gaps(graph, profile)
    total = 0
    for layer in graph.layers:
        graph_input = getattr(graph, "image_input", True) and layer.inputs[0] == "input"
        module, cycles, _ = layer_compute(layer, profile, graph_input, layer.name in fused)
        if module:
            total += cycles + pipeline_cycles(module, profile)
    return total
