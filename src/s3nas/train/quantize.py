"""INT8 delivery of a trained network: post-training quantization, optional QAT, and the accuracy of the file.

``quantize_trained(model, datamodule, options, ...)`` (train.py with ``quantize=int8``, and
``python -m s3nas.quantize run_dir=...`` for a finished run):

1. exports the float (EMA) network to ONNX (BatchNorm folded by the exporter);
2. quantizes it with onnxruntime's static quantizer to a QDQ model calibrated on ``calibration_images`` training
   images (``s3nas.utils.onnxquant``) and evaluates that file with onnxruntime on the val and test splits;
3. with ``qat_epochs > 0``, fine-tunes the network with fake quantization (``s3nas.nn.fakequant``: the same
   scheme) in a Lightning loop with the run's recipe (optimizer, EMA, augmentation) at a reduced lr, then
   exports and quantizes the fine-tuned float weights the same way: ``model_int8.onnx`` is that model unless
   its validation accuracy is below the PTQ model's (``int8.delivered`` says which; both are reported);
4. measures the agreement of the delivered INT8 file with the fake-quantized torch network calibrated on the
   same images (fraction of test images with the same prediction).

The accuracies reported are those of ``model_int8.onnx`` as onnxruntime runs it, not of a simulation.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from s3nas.config.ranges import check_ranges
from s3nas.config.train_schema import QUANTIZE_MODES, QUANTIZE_RANGES
from s3nas.errors import ConfigError
from s3nas.nn import fakequant
from s3nas.runtime.trainer import build_trainer as build_lightning_trainer
from s3nas.train.export import export_onnx
from s3nas.train.module import RecipeSettings, RetrainModule
from s3nas.utils.onnxquant import CALIBRATION_METHODS, check_quantizable, onnx_logits, quantize_onnx

INT8_ONNX = "model_int8.onnx"


def check_quantize_options(options: Any, prefix: str = "quantize.") -> None:
    """One-line ConfigError for a bad quantization setting (before anything is trained or written)."""
    mode = str(options.mode)
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"{prefix}mode: {mode!r} is not a quantization; use {', '.join(QUANTIZE_MODES)} "
                          f"(e.g. quantize=int8)")
    check_ranges(options, QUANTIZE_RANGES, prefix=prefix)
    if str(options.calibration_method) not in CALIBRATION_METHODS:
        raise ConfigError(f"{prefix}calibration_method: {options.calibration_method!r}; use "
                          f"{', '.join(CALIBRATION_METHODS)}")


def check_network_quantizable(model: nn.Module, *, input_size: int, in_channels: int, options: Any) -> None:
    """One-line ConfigError when the network (untrained weights will do) has an operator without an INT8 kernel."""
    with tempfile.TemporaryDirectory(prefix="s3nas-int8-check-") as scratch:
        path = Path(scratch) / "network.onnx"
        export_onnx(model.eval(), path, input_size=int(input_size), in_channels=int(in_channels), check=False)
        check_quantizable(path, [str(op) for op in options.allow_float_ops])


def calibration_images(datamodule: Any, count: int) -> torch.Tensor:
    """The first ``count`` training images in the loader's (seeded) order, without augmentation."""
    loader = datamodule.train_dataloader()
    images, seen = [], 0
    for batch in loader:
        images.append(batch[0])
        seen += len(batch[0])
        if seen >= count:
            break
    if not images:
        raise ConfigError("quantize.calibration_images: the training split has no images to calibrate on")
    return torch.cat(images)[:count].float().contiguous()


def _split(datamodule: Any, stage: str) -> tuple[np.ndarray, np.ndarray]:
    loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
    xs, ys = [], []
    for images, labels in loader:
        xs.append(images.float().numpy())
        ys.append(labels.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _batches(images: np.ndarray, size: int = 256) -> list[np.ndarray]:
    return [images[i:i + size] for i in range(0, len(images), size)]


def _torch_logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(b)).float().numpy() for b in _batches(images)])


def _quantize_file(model: nn.Module, out_path: Path, calibration: torch.Tensor, options: Any, *,
                   input_size: int, in_channels: int, opset: int) -> dict:
    """Export ``model`` (float) to a temporary ONNX file and write its INT8 version to ``out_path``."""
    with tempfile.TemporaryDirectory(prefix="s3nas-int8-") as scratch:
        float_path = Path(scratch) / "float.onnx"
        export_onnx(model, float_path, input_size=input_size, in_channels=in_channels, opset=opset, check=False)
        return quantize_onnx(float_path, out_path, calibration.numpy(), method=str(options.calibration_method),
                             per_channel=bool(options.per_channel),
                             allow_float_ops=[str(op) for op in options.allow_float_ops])


def quantize_trained(model: nn.Module, datamodule: Any, options: Any, run_dir: Path, *, input_size: int,
                     in_channels: int, opset: int = 18, recipe: Optional[RecipeSettings] = None,
                     trainer_cfg: Any = None, meta: Optional[dict] = None) -> dict:
    """Write ``<run_dir>/model_int8.onnx`` for the trained float ``model`` and return its figures (the
    summary's ``int8`` block and the INT8 accuracies). ``recipe``/``trainer_cfg`` are needed for QAT."""
    started = time.time()
    check_quantize_options(options)
    model = copy.deepcopy(model).float().cpu().eval()
    calibration = calibration_images(datamodule, int(options.calibration_images))
    val_x, val_y = _split(datamodule, "val")
    test_x, test_y = _split(datamodule, "test")
    out_path = Path(run_dir) / INT8_ONNX
    shape = dict(input_size=int(input_size), in_channels=int(in_channels), opset=int(opset))

    def onnx_accuracy(path: Path) -> tuple[float, float, np.ndarray]:
        val_pred = onnx_logits(path, _batches(val_x), threads=torch.get_num_threads()).argmax(1)
        test_pred = onnx_logits(path, _batches(test_x), threads=torch.get_num_threads()).argmax(1)
        return float((val_pred == val_y).mean()), float((test_pred == test_y).mean()), test_pred

    # 1-2. post-training quantization of the trained weights (files made in a scratch dir beside the output, the
    # delivered one moved into place at the end: nothing half-written at model_int8.onnx)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=run_dir) as scratch:
        ptq_path, qat_path = Path(scratch) / "ptq.onnx", Path(scratch) / "qat.onnx"
        report = _quantize_file(model, ptq_path, calibration, options, **shape)
        ptq_val, ptq_test, ptq_pred = onnx_accuracy(ptq_path)
        result: dict = {"ptq_val_acc": ptq_val, "ptq_test_acc": ptq_test, "qat_val_acc": None, "qat_test_acc": None,
                        "qat_epochs": int(options.qat_epochs), "qat_seconds": None, "qat_lr": None,
                        "delivered": "ptq"}
        delivered, delivered_path, int8_pred = model, ptq_path, ptq_pred
        # 3. quantization-aware fine-tuning, then the same export; delivered unless it is worse on validation
        if int(options.qat_epochs) > 0:
            if recipe is None or trainer_cfg is None:
                raise ConfigError("quantize.qat_epochs: quantization-aware training needs the run's recipe; run "
                                  "it from train.py (quantize=int8 quantize.qat_epochs=N)")
            qat_started = time.time()
            tuned, qat_lr = fine_tune(model, datamodule, calibration, options, recipe, trainer_cfg, meta or {})
            qat_report = _quantize_file(tuned, qat_path, calibration, options, **shape)
            qat_val, qat_test, qat_pred = onnx_accuracy(qat_path)
            result.update(qat_val_acc=qat_val, qat_test_acc=qat_test, qat_seconds=time.time() - qat_started,
                          qat_lr=qat_lr)
            if qat_val >= ptq_val:
                delivered, delivered_path, int8_pred, report = tuned, qat_path, qat_pred, qat_report
                result["delivered"] = "qat"
        os.replace(delivered_path, out_path)
    report["path"] = str(out_path)
    # 4. the delivered file against the fake-quantized torch network (same calibration images)
    simulated = fakequant.attach(copy.deepcopy(delivered))
    fakequant.calibrate(simulated, calibration.split(64))
    fake_pred = _torch_logits(simulated, test_x).argmax(1)
    final_val, final_test = (result["qat_val_acc"], result["qat_test_acc"]) if result["delivered"] == "qat" \
        else (ptq_val, ptq_test)
    result.update(report, val_acc=final_val, test_acc=final_test,
                  fakequant_test_acc=float((fake_pred == test_y).mean()),
                  agreement=float((fake_pred == int8_pred).mean()), agreement_images=int(len(test_y)),
                  evaluated_by="onnxruntime (CPUExecutionProvider) on model_int8.onnx",
                  seconds=time.time() - started)
    return result


def fine_tune(model: nn.Module, datamodule: Any, calibration: torch.Tensor, options: Any, recipe: RecipeSettings,
              trainer_cfg: Any, meta: dict) -> tuple[nn.Module, float]:
    """Quantization-aware fine-tuning: the recipe (optimizer, EMA, augmentation, label smoothing) for
    ``qat_epochs`` at lr x ``qat_lr_scale``, no warm-up, constant lr. Returns (the float network with the
    fine-tuned EMA weights, the lr used)."""
    network = fakequant.attach(copy.deepcopy(model)).requires_grad_(True)  # an EMA copy comes frozen
    fakequant.calibrate(network, calibration.split(64))
    # Train mode (dropout, drop-path as in training) with the BatchNorm statistics frozen (the INT8 convolutions
    # fold the running statistics, so the fine-tuning sees the folded network's scales); the activation ranges
    # stay at their calibration (s3nas.nn.fakequant).
    network.train()
    for layer in network.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()
    train_loader = datamodule.train_dataloader()
    steps = max(1, int(options.qat_epochs) * len(train_loader))
    lr = float(recipe.lr) * float(options.qat_lr_scale)
    settings = replace(recipe, lr=lr, warmup_steps=0, scheduler="step", decay_rate=1.0, decay_steps=steps,
                       total_steps=steps, validate_raw=False)
    module = RetrainModule(network, settings, meta=dict(meta, qat=True))
    pl.seed_everything(int(recipe.seed) + 1, workers=True, verbose=False)
    trainer = build_lightning_trainer(trainer_cfg, max_epochs=int(options.qat_epochs), callbacks=[], loggers=[],
                                      enable_checkpointing=False, deterministic=True, log_every_n_steps=10)
    trainer.fit(module, train_dataloaders=train_loader)
    if trainer.interrupted:
        raise KeyboardInterrupt
    return fakequant.strip(copy.deepcopy(module.eval_model)).eval(), lr
