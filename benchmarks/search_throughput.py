"""Supernet training throughput (images/s) at 224x224 for the warm-up and the search step.

Synthetic tensors, the default supernet (s3nas_mixconv), RMSpropTF, CE (+ latency loss in the search
step, with the real midap latency table). Runs on CPU (small batch, few steps) and, when CUDA is
available, on the GPU (bf16 autocast + channels_last by default there).

    python benchmarks/search_throughput.py [--cpu-batch 8 --cpu-steps 3 --gpu-batch 0 --gpu-steps 20]

``--gpu-batch 0`` (the default) takes the largest power-of-two batch that fits in the GPU's memory (gpu_batch.py),
per phase. With a GPU, the projected wall time of the paper's ImageNet search: 8 warm-up epochs and 2 search
epochs of 1,281,167 images at the measured rates (training steps only: no data loading, validation or table build).
Prints a table; the last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from gpu_batch import largest_batch  # noqa: E402  (benchmarks/gpu_batch.py)
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)


def build(num_classes: int = 1000):
    """Supernet, deployment-shape space and latency table from the default config."""
    from hydra import compose, initialize_config_dir

    import simulator
    from s3nas.config import CONF_DIR, register_configs
    from s3nas.latency.lut import build_latency_table
    from s3nas.arch.space import SearchSpace

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("search", overrides=["logger=none"])
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=num_classes, input_size=224,
                                    in_channels=3)
    from omegaconf import OmegaConf

    cache_dir = OmegaConf.select(cfg, "paths.cache_dir", throw_on_resolution_failure=False)
    table = build_latency_table(space, simulator.load_profile("midap"), cache_dir=cache_dir, progress=False)
    return space, table


def measure(space, table, *, device: str, batch: int, steps: int, phase: str, bf16: bool,
            channels_last: bool, warmup_steps: int = 1) -> float:
    """Images/s of full training steps (forward, loss, backward, optimizer step)."""
    from timm.optim import RMSpropTF

    from s3nas.latency.estimator import LatencyEstimator
    from s3nas.latency.loss import latency_loss
    from s3nas.nn.supernet import Supernet

    torch.manual_seed(0)
    net = Supernet(space, num_classes=1000).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.set_phase(phase)
    net.train()
    optimizer = RMSpropTF(net.parameters(), lr=0.016, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)
    estimator = LatencyEstimator(table)
    images = torch.randn(batch, 3, 224, 224, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                            enabled=bf16):
            logits = net(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=0.1)
        if phase == "search":
            loss = loss + latency_loss(estimator(net), 2.5, 15.0, 100.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        optimizer.step()

    for _ in range(warmup_steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - started)


IMAGENET_TRAIN_IMAGES = 1_281_167
PAPER_WARMUP_EPOCHS, PAPER_SEARCH_EPOCHS = 8, 2


def imagenet_search_minutes(warmup_images_per_s: float, search_images_per_s: float) -> float:
    """The paper's ImageNet search (8 warm-up epochs, then 2 search epochs) at these training rates, in minutes."""
    seconds = IMAGENET_TRAIN_IMAGES * (PAPER_WARMUP_EPOCHS / warmup_images_per_s
                                       + PAPER_SEARCH_EPOCHS / search_images_per_s)
    return round(seconds / 60.0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-batch", type=int, default=4)
    parser.add_argument("--cpu-steps", type=int, default=2)
    parser.add_argument("--cpu-threads", type=int, default=0, help="0: torch default")
    parser.add_argument("--gpu-batch", type=int, default=0, help="0: the largest that fits (a power of two)")
    parser.add_argument("--gpu-steps", type=int, default=20)
    parser.add_argument("--no-bf16", action="store_true", help="GPU: fp32 instead of bf16 autocast")
    parser.add_argument("--no-channels-last", action="store_true")
    args = parser.parse_args()
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)

    space, table = build()
    rows = []
    for phase in ("warmup", "search"):
        ips = measure(space, table, device="cpu", batch=args.cpu_batch, steps=args.cpu_steps, phase=phase,
                      bf16=False, channels_last=False)
        rows.append({"device": "cpu", "phase": phase, "batch": args.cpu_batch, "precision": "fp32",
                     "channels_last": False, "images_per_s": ips})
    gpu = torch.cuda.is_available()
    if gpu:
        name = torch.cuda.get_device_name(0)
        for phase in ("warmup", "search"):
            def run(batch: int, phase: str = phase) -> float:
                return measure(space, table, device="cuda", batch=batch, steps=args.gpu_steps, phase=phase,
                               bf16=not args.no_bf16, channels_last=not args.no_channels_last, warmup_steps=3)

            batch, ips = largest_batch(run) if args.gpu_batch == 0 else (args.gpu_batch, run(args.gpu_batch))
            rows.append({"device": f"cuda ({name})", "phase": phase, "batch": batch,
                         "precision": "fp32" if args.no_bf16 else "bf16-mixed",
                         "channels_last": not args.no_channels_last, "images_per_s": ips})

    print(f"{'device':<28} {'phase':<7} {'batch':>5} {'precision':<10} {'ch_last':<7} {'img/s':>9}")
    for r in rows:
        print(f"{r['device']:<28} {r['phase']:<7} {r['batch']:>5} {r['precision']:<10} "
              f"{str(r['channels_last']):<7} {r['images_per_s']:>9.2f}")
    if not gpu:
        print("GPU: not available (CUDA not found); CPU figures only")
    figures = {f"{'gpu' if r['device'].startswith('cuda') else 'cpu'}_{r['phase']}_images_per_s": round(r["images_per_s"], 3)
               for r in rows}
    figures.update(gpu_available=gpu, cpu_batch=args.cpu_batch,
                   gpu_batch={r["phase"]: r["batch"] for r in rows if r["device"].startswith("cuda")} or None,
                   gpu_name=torch.cuda.get_device_name(0) if gpu else None)
    if gpu:
        figures["imagenet_search_minutes"] = imagenet_search_minutes(figures["gpu_warmup_images_per_s"],
                                                                     figures["gpu_search_images_per_s"])
        print(f"projected ImageNet search (8 warm-up + 2 search epochs, training steps only): "
              f"{figures['imagenet_search_minutes']:.0f} min on {figures['gpu_name']}")
    record(figures, "search_throughput")


if __name__ == "__main__":
    main()
