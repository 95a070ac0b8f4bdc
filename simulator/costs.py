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


def layer_compute(layer: Layer, profile, graph_input: bool = False, fused_reduction: bool = False,
                  in_align: int | None = None) -> tuple[str, int, int]:
    """(module, compute_cycles, weight_tile_count_hint) of one layer; module '' = free.

    ``in_align``: channel padding of the stored input map (``storage_channel_aligns``); default
    ``channel_align``.
    """
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
            if uses_gemm(layer, p, graph_input):
                cycles = _cdiv(kh * kw * c_in, p.conv_lanes) * _cdiv(c_out, p.conv_units) * h_out * w_out
            else:
                # the stored (padded) channels fold with the kernel rows; a grouped conv reads its slice
                c_fold = _align(c_in, in_align or p.channel_align) if g == 1 else cin_g
                per_group = adder_tree_conv_cycles(c_fold, h_in, w_in, h_out, w_out, kh, kw, sh, sw, ph, pw,
                                                   p.conv_lanes, p.conv_align_stall)
                cycles = g * _cdiv(cout_g, p.conv_units) * per_group
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


def uses_gemm(layer: Layer, profile, graph_input: bool) -> bool:
    """MidapSim's first-layer rule: a conv reading the graph input (an image or an isolated block's input:
    MidapSim's HEAD layers either way) whose weight has at most ``gemm_max_input_channels`` input channels
    runs as a GEMM over im2col rows."""
    return (graph_input and layer.op == "conv" and layer.groups == 1 and profile.dataflow == "adder_tree"
            and profile.first_layer_gemm and layer.in_shapes[0][0] <= profile.gemm_max_input_channels)


def _align(c: int, a: int) -> int:
    return -(-c // a) * a


@lru_cache(maxsize=4096)
def adder_tree_conv_cycles(c: int, h_in: int, w_in: int, h_out: int, w_out: int, kh: int, kw: int, sh: int,
                           sw: int, ph: int, pw: int, lanes: int, align_stall: bool = True) -> int:
    """Cycles of one filter group of a conv on the adder tree (MidapSim's conv_yz dataflow).

    The input is stored (W, H, C) with ``c`` (padded) channels, so a kernel column's valid rows are
    ``start..end`` of the kernel height and occupy ``ceil(end*c/lanes) - floor(start*c/lanes)`` lane rows
    (kernel rows fold into the lanes). When the column's data starts inside a lane row at a larger offset
    than its weights (``wmem_offset - fmem_offset < 0``) the align stage needs one extra (junk) row read;
    with a 1-wide kernel that row is the one the previous pixel just read, so it is free.
    """
    # valid input columns, grouped by the lane offset their start address contributes (x * h_in * c)
    col_offsets: dict[int, int] = {}
    n_cols = 0
    for ox in range(w_out):
        x0 = ox * sw - pw
        for kx in range(kw):
            x = x0 + kx
            if 0 <= x < w_in:
                off = (x * h_in * c) % lanes
                col_offsets[off] = col_offsets.get(off, 0) + 1
                n_cols += 1
    stall = align_stall and kw > 1
    total = 0
    for oy in range(h_out):
        in_y = oy * sh - ph
        start = -in_y if in_y < 0 else 0
        end = min(kh, h_in - in_y)
        if end <= start:
            continue
        rows = -(-end * c // lanes) - (start * c) // lanes
        total += rows * n_cols
        if stall:
            w_off = (start * c) % lanes
            base = ((in_y + start) * c) % lanes
            for off, count in col_offsets.items():
                if w_off < (off + base) % lanes:
                    total += count
    return total


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
    aligns = storage_channel_aligns(graph, profile)
    total = 0
    for layer in graph.layers:
        graph_input = layer.inputs[0] == "input"
        module, cycles, _ = layer_compute(layer, profile, graph_input, layer.name in fused,
                                          aligns.get(layer.inputs[0]))
        if module:
            total += cycles + pipeline_cycles(module, profile)
    return total


#: ops whose output MidapSim stores padded to the full system width (its "parallel" layers)
_WIDE_PRODUCERS = ("maxpool", "avgpool", "gap", "add", "mul", "act")


def storage_channel_aligns(graph, profile) -> dict[str, int]:
    """Channel padding of every stored tensor (by name, "input" included), MidapSim's rule.

    With ``conv_only_channel_align`` set, a map that only (non-depthwise) convs, FCs and concats read is
    padded to it (16 on MIDAP: kernel rows fold into the lanes); a map that anything else reads (a residual
    add, a depthwise conv, pooling) or that a depthwise/pooling/element-wise op produced is padded to
    ``channel_align`` (64). Maps read through a split/reshape view keep ``channel_align``. The image input
    keeps ``input_channel_align``. Without the field every map is padded to ``channel_align``.
    """
    p = profile
    wide = p.channel_align
    narrow = p.conv_only_channel_align
    image = getattr(graph, "image_input", True)
    aligns: dict[str, int] = {}
    if not narrow:
        aligns = {layer.name: wide for layer in graph.layers}
        aligns["input"] = p.input_channel_align if image else wide
        return aligns
    producer_wide = {"input": False}
    for layer in graph.layers:
        producer_wide[layer.name] = layer.op in _WIDE_PRODUCERS or layer.is_depthwise
    narrow_ok = {name: not is_wide for name, is_wide in producer_wide.items()}
    for layer in graph.layers:
        conv_reader = layer.op in ("fc", "concat") or (layer.op == "conv" and not layer.is_depthwise)
        if not conv_reader:
            for x in layer.inputs:
                narrow_ok[x] = False
    for name, ok in narrow_ok.items():
        aligns[name] = narrow if ok else wide
    if image:
        aligns["input"] = p.input_channel_align
    for layer in graph.layers:  # a view is stored as its base tensor
        if layer.op in ("split", "reshape"):
            aligns[layer.name] = aligns[layer.inputs[0]]
    return aligns
