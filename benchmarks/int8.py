"""INT8 vs float: accuracy after PTQ and QAT, agreement, model size, onnxruntime CPU latency.

    python benchmarks/int8.py --arch <search run dir | arch.json> [--seeds 1 2 3] [--qat-epochs 2] [--jobs 2]
                              [--out DIR [--reuse]]

Retrains the network with the default recipe once per seed through the real command
(``python train.py arch=... seed=S quantize=int8 quantize.qat_epochs=N export.onnx=true``); each run's summary
gives the float test accuracy, the post-training-quantized model's and, after QAT, the delivered
model_int8.onnx's (all evaluated with onnxruntime on the test split except the float one, which is torch's),
and the agreement of model_int8.onnx with the fake-quantized torch network. Then it times model.onnx and
model_int8.onnx of the first seed on onnxruntime (1 thread, batch 1, interleaved rounds, median) at the
training resolution and, re-exported and re-quantized from the same weights, at 224x224. Prints a table; the
last line is one JSON object (test_acc_fp32, test_acc_int8_ptq, test_acc_int8_qat as means, their spreads,
agreement (the lowest over seeds), cpu_ms_fp32, cpu_ms_int8 at 224 px, sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from results import record

REPO = Path(__file__).resolve().parents[1]


def train(arch: str, seed: int, qat_epochs: int, out: Path, extra: list[str], reuse: bool = False) -> dict:
    run_dir = out / f"seed{seed}"
    if reuse and (run_dir / "summary.json").is_file():  # a finished run of an earlier call: its figures as they are
        summary = json.loads((run_dir / "summary.json").read_text())
        summary["wall_s"] = None
        return summary
    command = [sys.executable, "train.py", f"arch={arch}", f"seed={seed}", "quantize=int8",
               f"quantize.qat_epochs={qat_epochs}", "export.onnx=true", "logger=none",
               "trainer.enable_progress_bar=false", *extra, f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:])
        raise SystemExit(f"train.py seed={seed} failed (exit {proc.returncode}); nothing recorded")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["wall_s"] = time.perf_counter() - started
    return summary


def time_onnx(paths: dict, input_size: int, rounds: int = 7, runs: int = 30) -> dict:
    """Median ms per inference (batch 1, 1 thread) of each file, rounds interleaved between the files."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sessions = {k: ort.InferenceSession(str(p), sess_options=options, providers=["CPUExecutionProvider"])
                for k, p in paths.items()}
    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size)).astype(np.float32)
    samples: dict = {k: [] for k in paths}
    for name, session in sessions.items():  # warm-up
        for _ in range(5):
            session.run(None, {session.get_inputs()[0].name: x})
    for _ in range(rounds):
        for name, session in sessions.items():
            feed = {session.get_inputs()[0].name: x}
            started = time.perf_counter()
            for _ in range(runs):
                session.run(None, feed)
            samples[name].append((time.perf_counter() - started) * 1000.0 / runs)
    return {k: statistics.median(v) for k, v in samples.items()}


def at_224(run_dir: Path, scratch: Path) -> dict:
    """model.onnx / model_int8.onnx of the run's weights re-made at 224x224 (calibration: upsampled images)."""
    import torch
    from omegaconf import OmegaConf

    from s3nas.data import build_datamodule
    from s3nas.train.export import export_onnx, load_trained
    from s3nas.utils.onnxquant import quantize_onnx

    model, _ = load_trained(run_dir)
    datamodule = build_datamodule(OmegaConf.load(run_dir / "config_resolved.yaml").data)
    datamodule.setup("fit")
    images = torch.cat([b[0] for _, b in zip(range(2), datamodule.train_dataloader())])[:64]
    images = torch.nn.functional.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
    export_onnx(model, scratch / "fp32_224.onnx", input_size=224, check=False)
    quantize_onnx(scratch / "fp32_224.onnx", scratch / "int8_224.onnx", images.numpy())
    return {"fp32": scratch / "fp32_224.onnx", "int8": scratch / "int8_224.onnx"}


def spread(values: list[float]) -> float:
    return max(values) - min(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True, help="search run dir or arch.json (the 2.5 ms search's network)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="train.py runs at once (1 per free core)")
    parser.add_argument("--out", type=Path, default=None, help="where the run dirs go (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs in --out (re-time only)")
    parser.add_argument("overrides", nargs="*", default=[], help="extra train.py overrides")
    args = parser.parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="s3nas-int8-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(lambda s: train(args.arch, s, args.qat_epochs, out, args.overrides, args.reuse),
                             args.seeds))

    rows = []
    for seed, s in zip(args.seeds, runs):
        q = s["int8"]
        rows.append({"seed": seed, "fp32": s["test_acc_fp32"], "ptq": q["ptq_test_acc"], "qat": q["qat_test_acc"],
                     "agreement": q["agreement"], "train_s": s["train_seconds"], "qat_s": q["qat_seconds"],
                     "mb_fp32": q["size_bytes_fp32"] / 1e6, "mb_int8": q["size_bytes_int8"] / 1e6})
    print(f"{'seed':>4} {'fp32 test':>10} {'INT8 PTQ':>9} {'INT8 QAT':>9} {'agreement':>10} {'train s':>8} "
          f"{'QAT s':>6} {'MB fp32':>8} {'MB int8':>8}")
    for r in rows:
        qat = "-" if r["qat"] is None else f"{r['qat']:.4f}"
        print(f"{r['seed']:>4} {r['fp32']:>10.4f} {r['ptq']:>9.4f} {qat:>9} {r['agreement']:>10.4f} "
              f"{r['train_s']:>8.0f} {(r['qat_s'] or 0):>6.0f} {r['mb_fp32']:>8.2f} {r['mb_int8']:>8.2f}")

    first = out / f"seed{args.seeds[0]}"
    image_size = int(runs[0]["image_size"])
    timing = time_onnx({"fp32": first / "model.onnx", "int8": first / "model_int8.onnx"}, image_size)
    with tempfile.TemporaryDirectory() as scratch:
        timing_224 = time_onnx(at_224(first, Path(scratch)), 224, rounds=5, runs=5)
    print(f"onnxruntime CPU, 1 thread, batch 1: {image_size}px fp32 {timing['fp32']:.3f} ms, int8 "
          f"{timing['int8']:.3f} ms; 224px fp32 {timing_224['fp32']:.2f} ms, int8 {timing_224['int8']:.2f} ms")

    fp32 = [r["fp32"] for r in rows]
    ptq = [r["ptq"] for r in rows]
    qat = [r["qat"] for r in rows if r["qat"] is not None]
    figures = {
        "arch": str(args.arch), "seeds": args.seeds, "qat_epochs": args.qat_epochs,
        "test_acc_fp32": statistics.mean(fp32), "test_acc_int8_ptq": statistics.mean(ptq),
        "test_acc_int8_qat": statistics.mean(qat) if qat else None,
        "ptq_loss_points": 100 * (statistics.mean(fp32) - statistics.mean(ptq)),
        "qat_gap_points": 100 * (statistics.mean(fp32) - statistics.mean(qat)) if qat else None,
        "spread_fp32": spread(fp32), "spread_ptq": spread(ptq), "spread_qat": spread(qat),
        "per_seed": rows, "agreement": min(r["agreement"] for r in rows),
        "cpu_ms_fp32": timing_224["fp32"], "cpu_ms_int8": timing_224["int8"],
        f"cpu_ms_fp32_{image_size}px": timing["fp32"], f"cpu_ms_int8_{image_size}px": timing["int8"],
        "size_mb_fp32": rows[0]["mb_fp32"], "size_mb_int8": rows[0]["mb_int8"],
        "hardware_dtype": runs[0]["hardware_dtype"], "accuracy_dtype": runs[0]["accuracy_dtype"],
        "run_dirs": str(out), "reused_runs": bool(args.reuse),
        "delivered": [s["int8"].get("delivered") for s in runs],
    }
    print(f"PTQ loses {figures['ptq_loss_points']:.2f} points (bar <= 1.0); QAT is "
          f"{figures['qat_gap_points'] if qat else float('nan'):.2f} points from float (bar <= 0.3); agreement "
          f">= {figures['agreement']:.4f} (bar >= 0.99)")
    record(figures, "int8")


if __name__ == "__main__":
    main()
