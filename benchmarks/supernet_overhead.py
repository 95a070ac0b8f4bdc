"""Supernet training-step overhead vs the same-size plain child network (single-path NAS, paper 3.1).

Compares one training step (forward + backward + optimizer step) of
  * the supernet of ``--supernet`` (search phase, every option on: thresholds at their initial 0), and
  * the plain child network of the largest architecture (``build_model`` of the all-on decode),
at the same batch size and resolution: median step time and peak memory. Also the activation memory of
one multi-path (DARTS-style: one separate block per option, outputs mixed by softmax weights) block vs
the single-path searchable block at the same position.

Memory on CPU (tracemalloc cannot see torch tensors), two methods:
  * ``saved``: bytes of the tensors autograd keeps for the backward pass (unique storages seen by
    ``torch.autograd.graph.saved_tensors_hooks``, parameters excluded) -- the activation memory that
    dominates training memory, measured exactly and deterministically;
  * ``peak``: peak RSS of a fresh subprocess over model build + a few training steps, minus its RSS
    before the model was built (glibc's mmap threshold is fixed at 64 KiB so freed tensors leave RSS).
On CUDA ``peak`` is ``torch.cuda.max_memory_allocated`` over the steps (minus the memory before the
model was built). ``mem_ratio`` uses ``peak``; ``saved_mem_ratio`` the activations alone.

Time: median over interleaved steps; on CPU the process CPU time with one intra-op thread (robust on a
shared machine; wall time is printed too), on CUDA the synchronised wall time.

Run: ``python benchmarks/supernet_overhead.py [--batch 32 --size 64 --steps 5 --threads 1 --device cpu]``.
Prints a table; the last line is one JSON object (time_ratio, mem_ratio, multipath_mem_ratio, ...).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)

REPO = Path(__file__).resolve().parents[1]


def load_space(supernet: str, candidates: str, num_classes: int):
    """SearchSpace from the repository's yaml configs (no Hydra run needed)."""
    import yaml

    from s3nas.arch.space import SearchSpace

    def load(group: str, name: str) -> dict:
        cfg = yaml.safe_load((REPO / "conf" / group / f"{name}.yaml").read_text())
        cfg.pop("defaults", None)
        return cfg

    return SearchSpace.from_config(load("supernet", supernet), load("candidates", candidates), num_classes=num_classes)


def build(kind: str, args):
    """('supernet' | 'child') model on the device, in training mode."""
    from s3nas.nn.builder import build_model
    from s3nas.nn.supernet import Supernet

    space = load_space(args.supernet, args.candidates, args.num_classes)
    torch.manual_seed(0)
    net = Supernet(space, num_classes=args.num_classes)
    net.set_phase("search")
    if kind == "child":
        net = build_model(net.decode(), num_classes=args.num_classes)  # the largest architecture
    return net.to(args.device).train()


def synthetic_table(space):
    """A LatencyTable (the real class) with made-up cycles: timing needs no simulator run."""
    from s3nas.latency.lut import LatencyTable

    entries = [{opt: 1000 * (1 + i) * int(1 + sum(b.kernel * b.expansion for b in opt)) for opt in space.options(i)}
               for i in range(len(space.positions))]
    return LatencyTable(entries, fixed_cycles=100_000, clock_hz=1e9, space=space)


def make_step(model: nn.Module, args):
    """A closure running one training step (RMSProp as in the paper's search).

    For the supernet with ``--latency-loss`` (default) the step is the search step:
    CE + latency_loss(estimator(supernet), target) with the target below every architecture (term active).
    """
    from s3nas.latency.estimator import LatencyEstimator
    from s3nas.latency.loss import latency_loss
    from s3nas.nn.supernet import Supernet

    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, momentum=0.9, eps=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(args.device)
    y = torch.randint(0, args.num_classes, (args.batch,), generator=gen).to(args.device)
    estimator = None
    if isinstance(model, Supernet) and args.latency_loss:
        estimator = LatencyEstimator(synthetic_table(model.space))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        if estimator is not None:
            loss = loss + latency_loss(estimator(model), 0.0)
        loss.backward()
        optimizer.step()

    return step, x


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def saved_bytes(fn, params) -> int:
    """Bytes of unique non-parameter storages autograd saves for backward while running ``fn``."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_high_water_bytes() -> int:
    """VmHWM of this process (per address space: unlike ru_maxrss it is not inherited across fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_rss_high_water() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); silently keep it where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_child(kind: str, args) -> int:
    """Peak memory of build + ``args.mem_steps`` training steps, in this process (run in a subprocess)."""
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model = build(kind, args)
        step, _ = make_step(model, args)
        for _ in range(args.mem_steps):
            step()
        sync(args.device)
        return torch.cuda.max_memory_allocated() - base
    import timm  # noqa: F401  -- imports first: their RSS is not the model's
    import yaml  # noqa: F401

    import s3nas.nn.builder  # noqa: F401
    import s3nas.nn.supernet  # noqa: F401
    import s3nas.arch.space  # noqa: F401

    reset_rss_high_water()
    base = rss_bytes()
    model = build(kind, args)
    step, _ = make_step(model, args)
    for _ in range(args.mem_steps):
        step()
    return rss_high_water_bytes() - base


def peak_memory(kind: str, args) -> int:
    """Run ``peak_memory_child`` in a fresh interpreter (so earlier allocations do not count)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    cmd = [sys.executable, __file__, "--_peak", kind, "--batch", str(args.batch), "--size", str(args.size),
           "--device", args.device, "--supernet", args.supernet, "--candidates", args.candidates,
           "--num-classes", str(args.num_classes), "--mem-steps", str(args.mem_steps),
           "--threads", str(args.threads), "--latency-loss" if args.latency_loss else "--no-latency-loss"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def time_steps(models: dict, args, ce_only: set = frozenset()) -> tuple[dict, dict]:
    """Median wall and process-CPU step times, steps interleaved so load changes hit all models alike."""
    no_latency = argparse.Namespace(**{**vars(args), "latency_loss": False})
    steps = {k: make_step(m, no_latency if k in ce_only else args)[0] for k, m in models.items()}
    for step in steps.values():  # warm-up (allocator, kernels, first-call overheads)
        for _ in range(2):
            step()
    wall: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.steps):
        for k, step in steps.items():
            sync(args.device)
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            sync(args.device)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


class MultiPathBlock(nn.Module):
    """DARTS-style block: one separate plain block per option, outputs mixed by softmax(alpha)."""

    def __init__(self, space, i: int) -> None:
        super().__init__()
        from s3nas.nn.builder import Block

        pos = space.positions[i]
        self.options = space.options(i)
        self.paths = nn.ModuleList(Block(space.block_spec(i, o), pos.in_channels) if o else nn.Identity()
                                   for o in self.options)
        self.alpha = nn.Parameter(torch.zeros(len(self.options)))

    def forward(self, x):
        w = torch.softmax(self.alpha, 0)
        return sum(w[j] * path(x) for j, path in enumerate(self.paths))


def multipath_comparison(args) -> dict:
    """Saved-activation bytes of a multi-path block vs the single-path searchable block (same position)."""
    from s3nas.nn.blocks import build_searchable_block

    space = load_space(args.supernet, args.candidates, args.num_classes)
    # the widest position with a residual (most options): stage 3 in the paper's supernet
    i = max(range(len(space.positions)), key=lambda j: (len(space.options(j)), space.positions[j].has_residual,
                                                        space.positions[j].in_channels))
    pos = space.positions[i]
    hw = max(1, args.size // 16)  # its spatial size at the training resolution (stride 16 before stage 3)
    x = torch.randn(args.batch, pos.in_channels, hw, hw, device=args.device, requires_grad=True)
    single = build_searchable_block(pos, space.options(i)).to(args.device).train()
    multi = MultiPathBlock(space, i).to(args.device).train()
    single_b = saved_bytes(lambda: single(x), list(single.parameters()))
    multi_b = saved_bytes(lambda: multi(x), list(multi.parameters()))
    return {"position": i, "options": len(space.options(i)), "hw": hw, "single_bytes": single_b,
            "multi_bytes": multi_b}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64, help="training resolution (square)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per model")
    p.add_argument("--mem-steps", type=int, default=2, help="training steps in the peak-memory run")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--supernet", default="s3nas_mixconv")
    p.add_argument("--candidates", default="s3nas")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--latency-loss", action=argparse.BooleanOptionalAction, default=True,
                   help="supernet step includes the latency estimator + Eq. 9 term (the search step)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch default)")
    p.add_argument("--_peak", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._peak:
        print(peak_memory_child(args._peak, args))
        return

    models = {"supernet": build("supernet", args), "child": build("child", args)}
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    saved = {}
    for k, m in models.items():
        step_x = make_step(m, args)[1]
        saved[k] = saved_bytes(lambda: m(step_x), list(m.parameters()))
    warmup = build("supernet", args)
    warmup.set_phase("warmup")  # phase 1: random sub-paths, CE only
    wall, cpu = time_steps({**models, "warmup": warmup}, args, ce_only={"warmup"})
    # on a shared CPU, process CPU time (one intra-op thread) is robust to other jobs; wall time on CUDA
    times = wall if args.device.startswith("cuda") else cpu
    peaks = {k: peak_memory(k, args) for k in models}
    mp = multipath_comparison(args)

    mib = 2.0 ** 20
    rows = [("model", "params", "step_wall_ms", "step_cpu_ms", "peak_MiB", "saved_act_MiB")]
    for k in models:
        rows.append((k, f"{n_params[k] / 1e6:.2f}M", f"{wall[k] * 1e3:.1f}", f"{cpu[k] * 1e3:.1f}",
                     f"{peaks[k] / mib:.1f}", f"{saved[k] / mib:.1f}"))
    rows.append(("ratio", f"{n_params['supernet'] / n_params['child']:.3f}",
                 f"{wall['supernet'] / wall['child']:.3f}", f"{cpu['supernet'] / cpu['child']:.3f}",
                 f"{peaks['supernet'] / peaks['child']:.3f}", f"{saved['supernet'] / saved['child']:.3f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu x{torch.get_num_threads()}"
    print(f"supernet {args.supernet}, batch {args.batch} at {args.size}x{args.size}, {device}, "
          f"median of {args.steps} steps (fwd+bwd+RMSProp step), search phase, all options on, "
          f"{'CE + latency loss' if args.latency_loss else 'CE only'}; "
          f"time_ratio from {'wall' if times is wall else 'process CPU'} time")
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    print(f"warm-up step (random sub-paths, CE only) vs child: {cpu['warmup'] / cpu['child']:.3f} (CPU time), "
          f"{wall['warmup'] / wall['child']:.3f} (wall)")
    print(f"multi-path (DARTS-style, {mp['options']} paths) vs single-path block at position {mp['position']} "
          f"({mp['hw']}x{mp['hw']}): saved activations {mp['multi_bytes'] / mib:.1f} MiB vs "
          f"{mp['single_bytes'] / mib:.1f} MiB = {mp['multi_bytes'] / mp['single_bytes']:.2f}x")
    result = {
        "time_ratio": round(times["supernet"] / times["child"], 4),
        "wall_time_ratio": round(wall["supernet"] / wall["child"], 4),
        "warmup_time_ratio": round(times["warmup"] / times["child"], 4),
        "mem_ratio": round(peaks["supernet"] / peaks["child"], 4),
        "saved_mem_ratio": round(saved["supernet"] / saved["child"], 4),
        "multipath_mem_ratio": round(mp["multi_bytes"] / mp["single_bytes"], 3),
        "supernet_step_ms": round(times["supernet"] * 1e3, 2), "child_step_ms": round(times["child"] * 1e3, 2),
        "supernet_peak_mib": round(peaks["supernet"] / mib, 1), "child_peak_mib": round(peaks["child"] / mib, 1),
        "latency_loss": args.latency_loss, "batch": args.batch, "size": args.size, "device": device, "supernet": args.supernet,
    }
    record(result, "supernet_overhead")


if __name__ == "__main__":
    main()
