"""The discrete-event engine: a heap of timed events over compute tiles and DRAM transfers.

Planning: each layer gets a compute module and closed-form compute cycles (``costs.py``); feature maps
are placed in FMEM while they fit (else the rest is spilled to DRAM and re-read by consumers); the layer
is split into tiles (row bands of DRAM-streamed features x weight filter groups), each tile with its
compute share and the weight/feature loads it needs (``tile_program``). Simulation: weight tiles stream
through the weight memory (a ring of ``wmem_bytes``, a tile at most half, so it double-buffers and the
next tile prefetches while the current one computes) in global order; with ``cross_layer_prefetch`` they
may also load during earlier layers. Feature bands use ``feature_stream_buffers`` slots and load once
their layer has started. Each request takes a free DRAM channel for its latency
(``base + page * floor(size/page) + refresh * ceil(size/refresh_bytes)``), then the one shared bus for
its transfer (``ceil(size / bytes_per_cycle)``); channels and bus serve the earliest-needed layer first
(its weights before its features) or plain FIFO. Tiles compute in order on their module; a layer ends
after its last tile plus the module's pipeline depth, and the next layer starts then (layers run one at
a time, as on MIDAP).

Data width: every size the engine handles is a byte count, made in one place (``weight_bytes``,
``feature_bytes``: stored elements x ``bytes_per_element``). Placement (does a map fit the remaining
``fmem_bytes``), tiling (weight tiles of at most half of ``wmem_bytes``, bands of ``feature_band_bytes``,
requests of ``weight_request_bytes``), the reuse choice (weights kept on chip or re-read per band) and every
DRAM request's latency and bus transfer compare those bytes with byte capacities, so a 2-byte profile
moves twice the bytes and fits half as many elements in each memory; compute cycles (``costs.py``) count
elements and do not depend on it.
"""

from __future__ import annotations

import heapq
import math

from .costs import fused_gaps, layer_compute, pipeline_cycles, storage_channel_aligns, uses_gemm
from .graph import Graph

_W, _F, _WR = 0, 1, 2  # load kinds: weight read, feature read, feature write

#: Bounds on the work of one simulation (time and memory grow with tiles; cost loops with map sizes).
#: A graph or profile beyond them is refused with :class:`SimulationLimitError` naming the limit.
MAX_CHANNELS = 1 << 18  # channels (or FC features) of any tensor
MAX_SPATIAL = 1 << 15  # height or width of any feature map
MAX_TILES_PER_LAYER = 1 << 16  # tiles of one layer (weight tiles x feature bands)
MAX_TILES_TOTAL = 1 << 18  # tiles of the whole graph (~2 s and ~150 MB of events)
MAX_EVENT_CYCLES = 1 << 60  # duration of one DRAM request or transfer


class SimulationLimitError(ValueError):
    """A graph/profile the simulator refuses because it cannot finish it in bounded time and memory."""


def check_graph_limits(graph: Graph) -> None:
    """Raise SimulationLimitError for a tensor beyond MAX_CHANNELS or MAX_SPATIAL."""
    shapes = [("input", "graph input", graph.input_shape)]
    shapes += [(layer.name, layer.op, layer.out_shape) for layer in graph.layers]
    for name, what, (c, h, w) in shapes:
        if c > MAX_CHANNELS:
            raise SimulationLimitError(f"layer '{name}' ({what}) has {c:,} channels; the simulator's limit is "
                                       f"{MAX_CHANNELS:,} channels per tensor")
        if max(h, w) > MAX_SPATIAL:
            raise SimulationLimitError(f"layer '{name}' ({what}) has a {h:,}x{w:,} feature map; the simulator's "
                                       f"limit is {MAX_SPATIAL:,} pixels per side")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _align(c: int, a: int) -> int:
    return -(-c // a) * a


class LayerPlan:
    """Planned work of one layer (before timing)."""

    __slots__ = ("layer", "module", "compute_cycles", "pipeline_cycles", "weight_bytes", "feature_read_bytes",
                 "write_bytes", "n_tiles", "n_bands", "n_groups", "fmem_out_bytes", "weights_outer",
                 "serial_features", "band_bytes")

    def __init__(self, layer):
        self.layer = layer
        self.module = ""
        self.compute_cycles = 0
        self.pipeline_cycles = 0
        self.weight_bytes = 0
        self.feature_read_bytes = 0
        self.write_bytes = 0
        self.n_tiles = 0
        self.n_bands = 0
        self.n_groups = 0
        self.fmem_out_bytes = 0
        self.weights_outer = False  # loop order when weights exceed half of WMEM and features stream
        #: feature bands of this layer are requested one at a time (the next once the previous arrived):
        #: an element-wise operand streamed through MIDAP's weight path in column groups
        self.serial_features = False
        self.band_bytes = 0  # size of one DRAM feature band (0 = profile.feature_band_bytes)


def weight_bytes(layer, profile, graph_input: bool, in_align: int | None = None) -> int:
    """DRAM bytes of a layer's weights as stored (stored elements x ``bytes_per_element``).

    Adder tree (MidapSim's layout): filters padded to a multiple of ``conv_units``, each kernel column's
    ``k_h x C_stored`` values padded to whole lane rows (the first-layer GEMM: ``k_h*k_w*C_in`` padded).
    Other dataflows: input channels padded to ``channel_align``.
    """
    p = profile
    if layer.op == "conv":
        c_in = layer.in_shapes[0][0]
        kh, kw = layer.kernel
        c_out = layer.out_shape[0]
        if layer.is_depthwise:
            n = _align(c_out, p.channel_align) * kh * kw
        elif layer.groups == 1:
            if p.dataflow == "adder_tree" and uses_gemm(layer, p, graph_input):
                n = _align(kh * kw * c_in, p.conv_lanes) * _align(c_out, p.conv_units)
            elif p.dataflow == "adder_tree" and p.conv_only_channel_align:
                c_stored = _align(c_in, in_align or p.channel_align)
                n = _align(c_out, p.conv_units) * kw * _align(kh * c_stored, p.conv_lanes)
            else:
                n = _align(c_in, p.channel_align) * kh * kw * c_out
        else:
            n = (c_in // layer.groups) * kh * kw * c_out
        return n * p.bytes_per_element
    if layer.op == "fc":
        c, h, w = layer.in_shapes[0]
        c_out = layer.out_shape[0]
        if p.dataflow == "adder_tree" and p.conv_only_channel_align:
            c_out = _align(c_out, p.conv_units)
        return _align(c * h * w, p.channel_align) * c_out * p.bytes_per_element
    return 0


def feature_bytes(shape, profile, align: int | None = None) -> int:
    """Bytes of a (C, H, W) feature map as stored (channels padded, ``bytes_per_element`` each)."""
    c, h, w = shape
    return _align(c, align or profile.channel_align) * h * w * profile.bytes_per_element


def plan_graph(graph: Graph, profile, input_in_dram: bool = True) -> list[LayerPlan]:
    """Place feature maps, count DRAM traffic and compute per layer (no timing)."""
    p = profile
    check_graph_limits(graph)
    layers = graph.layers
    fused = fused_gaps(graph, p)
    index = {layer.name: i for i, layer in enumerate(layers)}
    # --- aliases (split/reshape are views of a base tensor) and tensor sizes
    base_of: dict[str, tuple[str, float]] = {"input": ("input", 1.0)}
    aligns = storage_channel_aligns(graph, p)
    size: dict[str, int] = {"input": feature_bytes(graph.input_shape, p, aligns["input"])}
    for layer in layers:
        if layer.op in ("split", "reshape"):
            b, frac = base_of[layer.inputs[0]]
            if layer.op == "split":
                lo, hi = layer.split_range or (0, layer.out_shape[0])
                frac *= (hi - lo) / max(1, layer.in_shapes[0][0])
            base_of[layer.name] = (b, frac)
        else:
            base_of[layer.name] = (layer.name, 1.0)
            size[layer.name] = feature_bytes(layer.out_shape, p, aligns[layer.name])
    # --- which inputs are streamed from DRAM as element-wise operands; last on-chip use of each tensor
    dram_operand: dict[tuple[int, int], bool] = {}
    last_use: dict[str, int] = {}
    needs_dram_copy: set[str] = set()
    for i, layer in enumerate(layers):
        if layer.op in ("split", "reshape"):
            continue
        primary = 0
        if p.eltwise_operand_from_dram and layer.op in ("add", "mul") and len(layer.inputs) > 1:
            key = [(size.get(base_of[x][0], 0) * base_of[x][1], index.get(base_of[x][0], -1))
                   for x in layer.inputs]
            primary = max(range(len(key)), key=lambda j: key[j])
        for j, x in enumerate(layer.inputs):
            b = base_of[x][0]
            streamed = p.eltwise_operand_from_dram and layer.op in ("add", "mul") and len(layer.inputs) > 1 \
                and j != primary
            dram_operand[(i, j)] = streamed
            if streamed:
                needs_dram_copy.add(b)
            else:
                last_use[b] = i
    # --- placement and traffic
    plans: list[LayerPlan] = []
    total_tiles = 0
    input_on = 0 if input_in_dram else min(size["input"], p.fmem_bytes)
    onchip: dict[str, int] = {"input": input_on}
    live: dict[str, int] = {"input": input_on} if "input" in last_use else {}
    live_sum = sum(live.values())
    for i, layer in enumerate(layers):
        plan = LayerPlan(layer)
        plans.append(plan)
        if layer.op in ("split", "reshape"):
            continue
        graph_input = layer.inputs[0] == "input"
        in_align = aligns.get(base_of[layer.inputs[0]][0])
        module, cycles, groups_hint = layer_compute(layer, p, graph_input, layer.name in fused, in_align)
        plan.module = module
        plan.compute_cycles = cycles
        plan.pipeline_cycles = pipeline_cycles(module, p) if module else 0
        out = size[layer.name]
        stream = 0.0
        if module:
            for j, x in enumerate(layer.inputs):
                b, frac = base_of[x]
                if dram_operand[(i, j)]:
                    stream += frac * size[b]
                else:
                    stream += frac * (size[b] - onchip.get(b, 0))
        if layer.op == "concat":
            out_on = min(out, int(sum(base_of[x][1] * onchip.get(base_of[x][0], 0) for x in layer.inputs)))
            writes = 0
        else:
            out_on = max(0, min(out, p.fmem_bytes - live_sum)) if layer.name in last_use else 0
            writes = out - out_on
            if layer.name in needs_dram_copy:
                writes += out_on
        onchip[layer.name] = out_on
        if out_on:
            live[layer.name] = out_on
            live_sum += out_on
        for b in [b for b in live if last_use.get(b, -1) <= i]:
            live_sum -= live.pop(b)
        plan.fmem_out_bytes = out_on
        plan.feature_read_bytes = int(round(stream))
        if p.input_band_bytes and input_on < size["input"] and any(base_of[x][0] == "input" for x in layer.inputs):
            plan.band_bytes = p.input_band_bytes  # the network input arrives in FMEM-bank fragments
        if p.eltwise_operand_columns and any(
                dram_operand[(i, j)] and tuple(layer.in_shapes[j]) == tuple(layer.out_shape)
                for j in range(len(layer.inputs))):
            plan.serial_features = True
        plan.write_bytes = writes
        if module:
            plan.weight_bytes = weight_bytes(layer, p, graph_input, in_align)
            _tile_layer(plan, groups_hint, p)
            total_tiles += plan.n_tiles
            if plan.n_tiles > MAX_TILES_PER_LAYER or total_tiles > MAX_TILES_TOTAL:
                raise _tile_limit_error(plan, p, total_tiles)
    return plans


def _tile_limit_error(plan: LayerPlan, p, total_tiles: int) -> SimulationLimitError:
    half = p.wmem_bytes // 2
    what = (f"layer '{plan.layer.name}' needs {plan.n_tiles:,} tiles ({plan.weight_bytes:,} weight bytes "
            f"through half of wmem_bytes = {half:,} B at a time, {plan.n_bands} feature bands)")
    if plan.n_tiles > MAX_TILES_PER_LAYER:
        limit = f"the simulator's limit is {MAX_TILES_PER_LAYER:,} tiles per layer"
    else:
        limit = f"the graph needs {total_tiles:,}+ tiles; the simulator's limit is {MAX_TILES_TOTAL:,} tiles in all"
    return SimulationLimitError(f"{what}: {limit} (use a larger wmem_bytes or smaller layers)")


def _tile_layer(plan: LayerPlan, groups_hint: int, p) -> None:
    """Choose bands (DRAM-streamed feature rows) x weight granules (filter groups) for one layer."""
    half = p.wmem_bytes // 2
    w = plan.weight_bytes
    f = plan.feature_read_bytes
    n_g = max(1, groups_hint) if w else 1
    if w and p.weight_request_bytes:
        # one DMA request carries as many whole filter groups as fit in weight_request_bytes
        group_bytes = _cdiv(w, n_g)
        per_request = max(1, p.weight_request_bytes // group_bytes)
        n_g = _cdiv(n_g, per_request)
    if w:
        n_g = max(n_g, _cdiv(w, half))
    n_b = 1
    if f and plan.serial_features:  # column groups of eltwise_operand_columns, one request each
        n_b = max(1, min(p.max_tiles_per_layer, _cdiv(plan.layer.out_shape[2], p.eltwise_operand_columns)))
    elif f:
        n_b = max(1, min(16, plan.layer.out_shape[1], _cdiv(f, plan.band_bytes or p.feature_band_bytes)))
    if w > half and n_b > 1:
        # weights do not stay on chip: either re-read them per band, or keep one WMEM half of them
        # and re-stream the features once per half; take the order with less DRAM traffic
        n_halves = _cdiv(w, half)
        if w + f * n_halves < f + w * n_b:
            plan.weights_outer = True
            n_g = n_halves
    cap = max(1, p.max_tiles_per_layer // n_b)
    if n_g > cap:
        n_g = max(cap, _cdiv(w, half) if w else 1)
    plan.n_groups = n_g
    plan.n_bands = n_b
    plan.n_tiles = n_g * n_b


def tile_program(plan: LayerPlan, p, compute_cycles: int | None = None
                 ) -> tuple[list[tuple[int, int, list[int], list[int]]], list[tuple[int, int]]]:
    """The ordered tiles of one layer and the DRAM loads they need.

    Returns (tiles, loads): tiles are (compute cycles, write bytes, loads needed, loads released when
    done), loads are (kind, bytes) with kind 0 = weights, 1 = features; indices are local to the layer.
    """
    n_b, n_g = plan.n_bands, plan.n_groups
    total = plan.compute_cycles if compute_cycles is None else compute_cycles
    cycles = _split(total, n_b * n_g)
    writes = _split(plan.write_bytes, n_b * n_g)
    w_parts = _split(plan.weight_bytes, n_g) if plan.weight_bytes else [0] * n_g
    f_parts = _split(plan.feature_read_bytes, n_b) if plan.feature_read_bytes else [0] * n_b
    tiles: list[tuple[int, int, list[int], list[int]]] = []
    loads: list[tuple[int, int]] = []
    if plan.weights_outer:  # one WMEM half of weights at a time, features re-streamed for each
        for g in range(n_g):
            w_load = len(loads)
            loads.append((_W, w_parts[g]))
            for b in range(n_b):
                need, release = [], []
                if b == 0:
                    need.append(w_load)
                if f_parts[b]:
                    need.append(len(loads))
                    release.append(len(loads))
                    loads.append((_F, f_parts[b]))
                if b == n_b - 1:
                    release.append(w_load)
                k = g * n_b + b
                tiles.append((cycles[k], writes[k], need, release))
        return tiles, loads
    keep = plan.weight_bytes <= p.wmem_bytes // 2  # weights stay on chip across bands
    kept: list[int] = []
    for b in range(n_b):
        f_load = -1
        if f_parts[b]:
            f_load = len(loads)
            loads.append((_F, f_parts[b]))
        for g in range(n_g):
            need, release = [], []
            if f_load >= 0 and g == 0:
                need.append(f_load)
            if w_parts[g] and (b == 0 or not keep):
                need.append(len(loads))
                (kept if keep else release).append(len(loads))
                loads.append((_W, w_parts[g]))
            k = b * n_g + g
            tiles.append((cycles[k], writes[k], need, release))
        if f_load >= 0:
            tiles[-1][3].append(f_load)
    tiles[-1][3].extend(kept)
    return tiles, loads


def _split(total: int, n: int) -> list[int]:
    q, r = divmod(total, n)
    return [q + 1] * r + [q] * (n - r)


def _latency(p, nbytes: int) -> int:
    lat = (p.dram_latency_base_cycles + p.dram_latency_page_cycles * (nbytes // p.dram_page_bytes)
           + p.dram_latency_refresh_cycles * _cdiv(nbytes, p.dram_refresh_bytes))
    if not lat <= MAX_EVENT_CYCLES:
        raise SimulationLimitError(
            f"a {nbytes:,} B DRAM request has a latency of {lat:.3g} cycles (dram_latency_* fields); the "
            f"simulator's limit is {MAX_EVENT_CYCLES:.3g} cycles per request")
    return math.ceil(lat)


def _transfer(p, nbytes: int) -> int:
    bpc = p.dram_bytes_per_cycle
    if math.isinf(bpc):
        return 0
    cycles = nbytes / bpc
    if not cycles <= MAX_EVENT_CYCLES:
        raise SimulationLimitError(
            f"a {nbytes:,} B DRAM transfer takes {cycles:.3g} cycles at dram_bytes_per_cycle = {bpc:g}; the "
            f"simulator's limit is {MAX_EVENT_CYCLES:.3g} cycles per transfer")
    return math.ceil(cycles)


class Timeline:
    """Result of the event simulation, per layer and in total."""

    def __init__(self, n_layers: int):
        self.layer_start = [0] * n_layers
        self.layer_end = [0] * n_layers
        self.layer_compute = [0] * n_layers
        self.layer_bus_busy = [0] * n_layers
        self.weight_read_bytes = [0] * n_layers
        self.feature_read_bytes = [0] * n_layers
        self.end_cycles = 0
        self.bus_busy_cycles = 0
        self.trace_events: list[dict] | None = None


def run_events(plans: list[LayerPlan], p, trace: bool = False) -> Timeline:
    """Simulate the planned tiles and transfers with an event heap; returns the timeline."""
    n_layers = len(plans)
    tl = Timeline(n_layers)
    # ---- build tiles and loads (flat lists for speed)
    t_cycles: list[int] = []
    t_layer: list[int] = []
    t_wait: list[int] = []
    t_release: list[list[int]] = []
    t_write: list[int] = []
    ld_kind: list[int] = []
    ld_bytes: list[int] = []
    ld_layer: list[int] = []
    ld_tile: list[int] = []
    wq: list[int] = []
    fq: list[int] = []
    active: list[int] = []  # indices of layers with tiles, in order
    layer_first_tile: dict[int, int] = {}
    layer_last_tile: dict[int, int] = {}
    for li, plan in enumerate(plans):
        if not plan.module:
            continue
        active.append(li)
        tiles, loads = tile_program(plan, p)
        base = len(ld_kind)
        read_w = read_f = 0
        for kind, nbytes in loads:
            ld_kind.append(kind); ld_bytes.append(nbytes); ld_layer.append(li); ld_tile.append(-1)
            (wq if kind == _W else fq).append(len(ld_kind) - 1)
            if kind == _W:
                read_w += nbytes
            else:
                read_f += nbytes
        layer_first_tile[li] = len(t_cycles)
        for cycles, write, need, release in tiles:
            t = len(t_cycles)
            t_cycles.append(cycles)
            t_layer.append(li)
            t_write.append(write)
            t_wait.append(len(need))
            for i in need:
                ld_tile[base + i] = t
            t_release.append([base + i for i in release])
        tl.feature_read_bytes[li] = read_f
        layer_last_tile[li] = len(t_cycles) - 1
        tl.weight_read_bytes[li] = read_w
    n_tiles = len(t_cycles)
    tile_is_first = [False] * n_tiles
    for li in active:
        tile_is_first[layer_first_tile[li]] = True
    next_active = {active[k]: active[k + 1] for k in range(len(active) - 1)}
    serial = [plan.serial_features for plan in plans]
    serial_busy = [False] * n_layers  # a serial layer has a feature request on its way

    # ---- state
    weights_first = p.bus_arbitration == "weights_first"
    started = [False] * n_layers
    if active:
        started[active[0]] = True
    ring_used = 0
    f_used = 0
    wq_i = 0
    fq_i = 0
    pending: list[tuple] = []  # heap of (priority, seq, load)
    bus_pending: list[tuple] = []
    free_channels = p.dram_channels
    bus_busy = False
    compute_busy = False
    ct = 0  # next tile to compute
    seq = 0
    events: list[tuple] = []  # (time, seq, type, arg)
    bus_intervals: list[tuple[int, int]] = []
    trace_ev: list[dict] | None = [] if trace else None
    tile_start = [0] * n_tiles if trace else None
    ld_lat_start: dict[int, int] = {}
    now = 0
    last_write_end = 0
    layer_prev_end = 0
    EV_LAT, EV_XFER, EV_TILE, EV_LAYER = 0, 1, 2, 3

    big = n_layers + 1

    def prio(load: int) -> tuple[int, int]:
        # earliest need first (a far prefetch never overtakes the running layer's data); within a
        # layer weights before features when weights_first; writes gate nothing and go last
        kind = ld_kind[load]
        if kind == _WR:
            return (big, 2)
        if weights_first:
            return (ld_layer[load], kind)
        return (0, 0)

    def push(time: int, typ: int, arg: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (time, seq, typ, arg))

    def issue(load: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(pending, (prio(load), seq, load))

    def kick() -> None:
        nonlocal wq_i, fq_i, ring_used, f_used, free_channels, bus_busy, compute_busy, ct, seq
        # DMA issue, in order per queue
        while wq_i < len(wq):
            ld = wq[wq_i]
            if ring_used + ld_bytes[ld] > p.wmem_bytes and ring_used > 0:
                break
            if not p.cross_layer_prefetch and not started[ld_layer[ld]]:
                break
            ring_used += ld_bytes[ld]
            issue(ld)
            wq_i += 1
        while fq_i < len(fq):
            ld = fq[fq_i]
            if f_used >= p.feature_stream_buffers or not started[ld_layer[ld]] or serial_busy[ld_layer[ld]]:
                break
            if serial[ld_layer[ld]]:
                serial_busy[ld_layer[ld]] = True
            f_used += 1
            issue(ld)
            fq_i += 1
        # channels take pending requests (latency phase)
        while free_channels and pending:
            _, _, ld = heapq.heappop(pending)
            free_channels -= 1
            if trace_ev is not None:
                ld_lat_start[ld] = now
            push(now + _latency(p, ld_bytes[ld]), EV_LAT, ld)
        # the bus transfers one request at a time
        if not bus_busy and bus_pending:
            _, _, ld = heapq.heappop(bus_pending)
            bus_busy = True
            dur = _transfer(p, ld_bytes[ld])
            bus_intervals.append((now, now + dur))
            if trace_ev is not None:
                trace_ev.append({"name": ("weights", "features", "write")[ld_kind[ld]] + f" {ld_bytes[ld]} B",
                                 "ph": "X", "ts": now, "dur": dur, "pid": 1, "tid": "bus",
                                 "args": {"layer": plans[ld_layer[ld]].layer.name}})
            push(now + dur, EV_XFER, ld)
        # compute: tiles in order
        if not compute_busy and ct < n_tiles and t_wait[ct] == 0:
            li = t_layer[ct]
            if not tile_is_first[ct] or started[li]:
                compute_busy = True
                if tile_start is not None:
                    tile_start[ct] = now
                if tile_is_first[ct]:
                    tl.layer_start[li] = layer_prev_end
                push(now + t_cycles[ct], EV_TILE, ct)

    kick()
    while events:
        now, _, typ, arg = heapq.heappop(events)
        if typ == EV_LAT:
            seq += 1
            heapq.heappush(bus_pending, (prio(arg), seq, arg))
            if trace_ev is not None:
                trace_ev.append({"name": f"latency {ld_bytes[arg]} B", "ph": "X", "ts": ld_lat_start[arg],
                                 "dur": now - ld_lat_start[arg], "pid": 1, "tid": "dram request",
                                 "args": {"layer": plans[ld_layer[arg]].layer.name}})
        elif typ == EV_XFER:
            bus_busy = False
            free_channels += 1
            if ld_kind[arg] == _WR:
                if now > last_write_end:
                    last_write_end = now
            else:
                t_wait[ld_tile[arg]] -= 1
                if ld_kind[arg] == _F:
                    serial_busy[ld_layer[arg]] = False
        elif typ == EV_TILE:
            compute_busy = False
            t = arg
            li = t_layer[t]
            tl.layer_compute[li] += t_cycles[t]
            if trace_ev is not None:
                trace_ev.append({"name": plans[li].layer.name, "ph": "X", "ts": tile_start[t],
                                 "dur": t_cycles[t], "pid": 0, "tid": plans[li].module,
                                 "args": {"tile": t - layer_first_tile[li]}})
            for ld in t_release[t]:
                if ld_kind[ld] == _W:
                    ring_used -= ld_bytes[ld]
                else:
                    f_used -= 1
            if t_write[t] and p.dram_writes_use_bus:
                wl = len(ld_kind)
                ld_kind.append(_WR); ld_bytes.append(t_write[t]); ld_layer.append(li); ld_tile.append(-1)
                issue(wl)
            ct += 1
            if t == layer_last_tile[li]:
                push(now + plans[li].pipeline_cycles, EV_LAYER, li)
                compute_busy = True  # pipeline drain: the next layer waits for it
        else:  # EV_LAYER
            compute_busy = False
            tl.layer_end[arg] = now
            layer_prev_end = now
            nxt = next_active.get(arg)
            if nxt is not None:
                started[nxt] = True
        kick()
    if ct != n_tiles:  # pragma: no cover - would be an engine bug (deadlock)
        raise RuntimeError(f"simulation stalled at tile {ct} of {n_tiles}")
    # free layers: zero time at the end of the previous layer
    prev_end = 0
    for li in range(n_layers):
        if plans[li].module:
            prev_end = tl.layer_end[li]
        else:
            tl.layer_start[li] = tl.layer_end[li] = prev_end
    tl.end_cycles = max(prev_end, last_write_end)
    # bus busy cycles per layer window (intervals are disjoint and sorted)
    tl.bus_busy_cycles = sum(e - s for s, e in bus_intervals)
    k = 0
    for li in active:
        s0, e0 = tl.layer_start[li], tl.layer_end[li]
        while k < len(bus_intervals) and bus_intervals[k][1] <= s0:
            k += 1
        busy = 0
        j = k
        while j < len(bus_intervals) and bus_intervals[j][0] < e0:
            s, e = bus_intervals[j]
            busy += min(e, e0) - max(s, s0) if min(e, e0) > max(s, s0) else 0
            j += 1
        tl.layer_bus_busy[li] = busy
    tl.trace_events = trace_ev
    return tl
