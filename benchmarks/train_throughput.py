"""Benchmark: training throughput (images/s) of retrained networks at 224x224, CPU and (when present) GPU.

python benchmarks/train_throughput.py [--arch <arch.json|run dir|timm:name> ...] [--batch 32] [--steps 5]
    [--gpu-batch 0] [--gpu-steps 20] [--threads N] [--no-gpu]
One training step = forward + label-smoothed CE + backward + RMSpropTF step + EMA update (train.py's
recipe, through RetrainModule's pieces), 1000 classes, random images. CPU runs in float32; the GPU runs
in bf16 autocast with channels_last (the paper_retrain switches). Default networks: timm's
mobilenetv2_100 and efficientnet_b0, plus every --arch given. ``--gpu-batch 0`` (the default): the largest
power-of-two batch that fits in the GPU's memory, per network (gpu_batch.py). Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import time

import torch

from s3nas.train.module import ModelEma
from s3nas.train.network import build_network, resolve_network
from gpu_batch import largest_batch  # noqa: E402  (benchmarks/gpu_batch.py)
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)


def throughput(source, device: str, batch: int, steps: int, warmup: int, size: int, bf16: bool,
               channels_last: bool) -> float:
    """Training images per second of ``source`` on ``device`` (after ``warmup`` untimed steps)."""
    from timm.optim import create_optimizer_v2

    model = build_network(source, 1000, 3, drop_path_rate=0.2, dropout=0.2).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, decay=0.9999)
    optimizer = create_optimizer_v2(model, opt="rmsproptf", lr=0.016 * batch / 256, weight_decay=1e-5, momentum=0.9,
                                    alpha=0.9, eps=1e-3)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step(n: int) -> None:
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                            enabled=bf16):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model, step=n)

    for n in range(warmup):
        step(n + 1)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for n in range(steps):
        step(warmup + n + 1)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", default=[], help="arch.json, search run dir or timm:<name>")
    ap.add_argument("--no-default-nets", action="store_true", help="skip timm mobilenetv2_100/efficientnet_b0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--gpu-batch", type=int, default=0, help="0: the largest that fits (a power of two)")
    ap.add_argument("--gpu-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-gpu", action="store_true")
    ap.add_argument("--no-cpu", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = ([] if args.no_default_nets else ["timm:mobilenetv2_100", "timm:efficientnet_b0"]) + args.arch
    gpu = torch.cuda.is_available() and not args.no_gpu
    rows = []
    for name in names:
        source = resolve_network(name)
        row = {"arch": name if name.startswith("timm:") else source.name, "size": args.size}
        if not args.no_cpu:
            row["cpu_images_per_s"] = throughput(source, "cpu", args.batch, args.steps, args.warmup, args.size,
                                                 bf16=False, channels_last=False)
            row["cpu_batch"] = args.batch
        if gpu:
            def run(batch: int, source=source) -> float:
                return throughput(source, "cuda", batch, args.gpu_steps, 3, args.size, bf16=True, channels_last=True)

            batch, ips = largest_batch(run) if args.gpu_batch == 0 else (args.gpu_batch, run(args.gpu_batch))
            row["gpu_images_per_s"], row["gpu_batch"] = ips, batch
        rows.append(row)
        print(f"{row['arch'][:40]:<40} cpu {row.get('cpu_images_per_s', float('nan')):9.1f} img/s"
              + (f"   gpu(bf16, channels_last) {row['gpu_images_per_s']:9.1f} img/s" if "gpu_images_per_s" in row else ""),
              flush=True)
    result = {"threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(0) if gpu else None, "rows": rows}
    record(result, "train_throughput")


if __name__ == "__main__":
    main()
