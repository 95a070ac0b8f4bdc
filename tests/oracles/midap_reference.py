"""A small cycle-stepped reference simulator for single small layers (for tests of the event engine).

Compute cycles are counted by explicit loops over output pixels, kernel taps and channel chunks (not by
the closed forms of ``costs.py``); timing advances one cycle at a time: DRAM channels count down request
latency, the bus counts down transfers, the compute unit counts down tiles. Tiling decisions (bands x
filter groups, weights kept or re-read) come from the engine's plan so both time the same work.
Slow by design: use it only for layers of a few thousand cycles to a few hundred thousand.
"""

from __future__ import annotations

import math

from simulator.costs import fused_gaps, storage_channel_aligns, uses_gemm
from simulator.engine import plan_graph, tile_program
from simulator.graph import Graph, Layer


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _inside(o: int, k: int, stride: int, pad: int, size: int) -> bool:
    pos = o * stride - pad + k
    return 0 <= pos < size


def reference_compute_cycles(layer: Layer, profile, graph_input: bool = False, in_align: int | None = None) -> int:
    """Compute cycles of one layer by explicit enumeration (no pipeline depth); ``in_align``: channel
    padding of the stored input map."""
    p = profile
    op = layer.op
    c_out, h_out, w_out = layer.out_shape
    if op in ("concat", "split", "reshape"):
        return 0
    if op == "conv":
        c_in, h_in, w_in = layer.in_shapes[0]
        kh, kw = layer.kernel
        sh, sw = layer.stride
        ph, pw = layer.padding
        g = layer.groups
        cin_g, cout_g = c_in // g, c_out // g
        if p.dataflow == "spatial_rs":
            pairs = g * cin_g * cout_g
            sets = max(1, p.conv_lanes // kh)
            total = 0
            for _pass in range(_cdiv(pairs, sets)):
                for _band in range(_cdiv(h_out, p.conv_units)):
                    for _fold in range(_cdiv(kh, p.conv_lanes)):
                        total += w_out * kw  # each PE slides a kw-tap filter row over w_out outputs
            return total
        if layer.is_depthwise:
            total = 0
            for _chunk in range(_cdiv(c_out, p.dw_lanes)):
                for oy in range(h_out):
                    for ox in range(w_out):
                        for ky in range(kh):
                            for kx in range(kw):
                                if _inside(oy, ky, sh, ph, h_in) and _inside(ox, kx, sw, pw, w_in):
                                    total += 1
            return total
        if p.dataflow == "systolic_ws":
            total = 0
            for _grp in range(g):
                for _row_tile in range(_cdiv(kh * kw * cin_g, p.conv_lanes)):
                    for _col_tile in range(_cdiv(cout_g, p.conv_units)):
                        total += h_out * w_out + p.conv_lanes + p.conv_units
            return total
        # adder tree
        if uses_gemm(layer, p, graph_input):
            total = 0
            for _fg in range(_cdiv(c_out, p.conv_units)):
                for _pix in range(h_out * w_out):
                    total += _cdiv(kh * kw * c_in, p.conv_lanes)
            return total
        c = cin_g
        if g == 1:  # stored channels: padded to the map's alignment
            c = c_in
            while c % (in_align or p.channel_align):
                c += 1
        lanes = p.conv_lanes
        total = 0
        for _grp in range(g):
            for _fg in range(_cdiv(cout_g, p.conv_units)):
                for ox in range(w_out):
                    for oy in range(h_out):
                        in_y = oy * sh - ph
                        valid_ky = [ky for ky in range(kh) if _inside(oy, ky, sh, ph, h_in)]
                        if not valid_ky:
                            continue
                        start, end = valid_ky[0], valid_ky[-1] + 1
                        for kx in range(kw):
                            if not _inside(ox, kx, sw, pw, w_in):
                                continue
                            x = ox * sw - pw + kx
                            # lane rows of the weights' kernel column (rows start..end, MidapSim's count)
                            total += _cdiv(end * c, lanes) - (start * c) // lanes
                            # the feature column is stored (W, H, C): when its data start later in a lane
                            # row than the weights do, the align stage needs one more row read (free for
                            # 1-wide kernels: the previous pixel just read that row)
                            address = x * h_in * c + (in_y + start) * c
                            if p.conv_align_stall and kw > 1 and (start * c) % lanes < address % lanes:
                                total += 1
        return total
    if op == "fc":
        c, h, w = layer.in_shapes[0]
        c_in = c * h * w
        if p.dataflow == "spatial_rs":
            return _cdiv(c_in * c_out, max(1, p.conv_lanes))
        total = 0
        for _row in range(_cdiv(c_in, p.conv_lanes)):
            for _col in range(_cdiv(c_out, p.conv_units)):
                total += 1 if p.dataflow == "adder_tree" else 1 + p.conv_lanes + p.conv_units
        return total
    if op in ("maxpool", "avgpool"):
        c_in, h_in, w_in = layer.in_shapes[0]
        kh, kw = layer.kernel
        total = 0
        for _chunk in range(_cdiv(c_out, p.dw_lanes)):
            for oy in range(h_out):
                for ox in range(w_out):
                    for ky in range(kh):
                        for kx in range(kw):
                            if _inside(oy, ky, layer.stride[0], layer.padding[0], h_in) and \
                                    _inside(ox, kx, layer.stride[1], layer.padding[1], w_in):
                                total += 1
        return total
    if op == "gap":
        c, h, w = layer.in_shapes[0]
        return sum(h * w for _ in range(_cdiv(c, p.reduction_lanes)))
    if op in ("add", "mul", "act"):
        operands = max(1, len(layer.inputs) - 1) if op == "add" else 1
        return sum(h_out * w_out for _ in range(_cdiv(c_out, p.dw_lanes)) for _ in range(operands))
    raise ValueError(f"reference: op {op!r} not modelled")


def reference_simulate(graph: Graph, profile, *, input_in_dram: bool = True) -> int:
    """Total cycles of a small graph, stepping one cycle at a time (layers run one after another)."""
    p = profile
    plans = plan_graph(graph, p, input_in_dram=input_in_dram)
    fused = fused_gaps(graph, p)
    aligns = storage_channel_aligns(graph, p)
    bpc = p.dram_bytes_per_cycle
    unlimited = math.isinf(bpc)
    # tiles: [cycles, [load ids needed], [load ids released], layer idx, is last of layer, write bytes]
    tiles: list[list] = []
    loads: list[list] = []  # [kind, bytes, layer idx]
    for li, plan in enumerate(plans):
        if not plan.module or plan.layer.name in fused:
            continue
        total = reference_compute_cycles(plan.layer, p, plan.layer.inputs[0] == "input",
                                         aligns.get(plan.layer.inputs[0]))
        layer_tiles, layer_loads = tile_program(plan, p, compute_cycles=total)
        base = len(loads)
        loads.extend(["w" if kind == 0 else "f", nbytes, li] for kind, nbytes in layer_loads)
        for cycles, write, need, release in layer_tiles:
            tiles.append([cycles, [base + i for i in need], [base + i for i in release], li, False,
                          write if p.dram_writes_use_bus else 0])
        tiles[-1][4] = True
    # ---- cycle-stepped state
    n_tiles = len(tiles)
    done = [False] * len(loads)
    w_order = [i for i in range(len(loads)) if loads[i][0] == "w"]
    f_order = [i for i in range(len(loads)) if loads[i][0] == "f"]
    wi = fi = 0
    ring_used = f_used = 0
    pending: list[int] = []
    chan: list[list] = []  # [load, latency cycles left, moved to bus queue]
    bus_ready: list[int] = []
    bus_load, bus_left = None, 0
    cur, busy, running = 0, 0, False
    draining, drain_left = False, 0
    started = {tiles[0][3]} if tiles else set()
    serial_busy: set[int] = set()
    cycle = 0

    def latency(n: int) -> int:
        if unlimited:
            return 0
        return math.ceil(p.dram_latency_base_cycles + p.dram_latency_page_cycles * (n // p.dram_page_bytes)
                         + p.dram_latency_refresh_cycles * _cdiv(n, p.dram_refresh_bytes))

    order_seq: dict[int, int] = {}  # when a request entered the queue it waits in (FIFO order)
    counter = [0]

    def enqueue(queue: list[int], i: int) -> None:
        counter[0] += 1
        order_seq[i] = counter[0]
        queue.append(i)

    def key(i: int):
        if loads[i][0] == "x":
            return (len(plans) + 1, 2, order_seq[i])
        if p.bus_arbitration == "weights_first":
            return (loads[i][2], 0 if loads[i][0] == "w" else 1, order_seq[i])
        return (0, 0, order_seq[i])

    last_write_done = 0
    compute_end = 0
    while cur < n_tiles or draining or chan or pending:
        changed = True
        while changed:
            changed = False
            if bus_load is not None and bus_left == 0:  # transfer finished
                done[bus_load] = True
                if loads[bus_load][0] == "f":
                    serial_busy.discard(loads[bus_load][2])
                if loads[bus_load][0] == "x":
                    last_write_done = cycle
                chan = [c for c in chan if c[0] != bus_load]
                bus_load = None
                changed = True
            if running and busy == 0:  # tile finished
                running = False
                t = tiles[cur]
                for i in t[2]:
                    if loads[i][0] == "w":
                        ring_used -= loads[i][1]
                    else:
                        f_used -= 1
                if t[5]:  # the tile's output spill goes to DRAM
                    loads.append(["x", t[5], t[3]])
                    done.append(False)
                    enqueue(pending, len(loads) - 1)
                if t[4]:
                    draining, drain_left = True, plans[t[3]].pipeline_cycles
                cur += 1
                changed = True
            if draining and drain_left == 0:  # layer finished: the next one starts
                draining = False
                if cur < n_tiles:
                    started.add(tiles[cur][3])
                changed = True
            while wi < len(w_order):
                i = w_order[wi]
                if (ring_used + loads[i][1] > p.wmem_bytes and ring_used > 0) or \
                        (not p.cross_layer_prefetch and loads[i][2] not in started):
                    break
                ring_used += loads[i][1]
                enqueue(pending, i)
                wi += 1
                changed = True
            while fi < len(f_order):
                i = f_order[fi]
                if f_used >= p.feature_stream_buffers or loads[i][2] not in started or loads[i][2] in serial_busy:
                    break
                if plans[loads[i][2]].serial_features:  # one request of this layer on its way at a time
                    serial_busy.add(loads[i][2])
                f_used += 1
                enqueue(pending, i)
                fi += 1
                changed = True
            while len(chan) < p.dram_channels and pending:
                pending.sort(key=key)
                i = pending.pop(0)
                chan.append([i, latency(loads[i][1]), False])
                changed = True
            for c in chan:
                if c[1] == 0 and not c[2]:
                    c[2] = True
                    enqueue(bus_ready, c[0])
                    changed = True
            if bus_load is None and bus_ready:
                bus_ready.sort(key=key)
                bus_load = bus_ready.pop(0)
                bus_left = 0 if unlimited else math.ceil(loads[bus_load][1] / bpc)
                changed = True
            if not running and not draining and cur < n_tiles:
                t = tiles[cur]
                if t[3] in started and all(done[i] for i in t[1]):
                    running, busy = True, t[0]
                    changed = True
        if cur >= n_tiles and not draining and not chan and not pending:
            break
        cycle += 1  # one clock
        for c in chan:
            if c[1] > 0:
                c[1] -= 1
        if bus_load is not None and bus_left > 0:
            bus_left -= 1
        if running and busy > 0:
            busy -= 1
        if draining and drain_left > 0:
            drain_left -= 1
            if drain_left == 0 and cur >= n_tiles:
                compute_end = cycle
    return max(compute_end, last_write_done)
