"""The quantize command's check and task (``python -m s3nas.quantize``: s3nas/quantize/__main__.py names them).

Writes ``model_int8.onnx`` and its latency contract ``latency_int8.json`` into the run dir and updates its
summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from s3nas.data import build_datamodule
from s3nas.errors import ConfigError
from s3nas.latency.backend import make_backend
from s3nas.outputs import TrainSummary, load_summary, write_summary
from s3nas.runtime.trainer import limited_steps, world_size_of
from s3nas.train.contract import write_run_contract
from s3nas.train.export import load_trained
from s3nas.train.quantize import INT8_ONNX, check_quantize_options, quantize_trained
from s3nas.train.runner import int8_fields, print_summary, recipe_settings


def check(cfg: Any) -> dict:
    """ConfigError for a missing or unfinished run dir and bad options (before anything is written)."""
    if not cfg.run_dir:
        raise ConfigError("run_dir: not set; usage: python -m s3nas.quantize run_dir=<train.py run dir> "
                          "[calibration_images=512] [qat_epochs=0]")
    run_dir = Path(str(cfg.run_dir))
    if not run_dir.is_dir():
        raise ConfigError(f"run_dir: no directory '{run_dir}'; give a finished train.py run dir")
    check_quantize_options(cfg, prefix="")
    if str(cfg.mode) != "int8":
        raise ConfigError(f"mode: {cfg.mode!r}; this command makes INT8 models (mode=int8)")
    summary_path, config_path = run_dir / "summary.json", run_dir / "config_resolved.yaml"
    if not summary_path.is_file() or not config_path.is_file():
        raise ConfigError(f"run_dir: '{run_dir}' has no summary.json / config_resolved.yaml (is it a finished "
                          f"train.py run dir?)")
    summary = load_summary(summary_path)
    if not isinstance(summary, TrainSummary):
        raise ConfigError(f"run_dir: '{run_dir}' is a {summary.kind} run, not a train.py run")
    return {"run_dir": run_dir, "summary": summary, "config": OmegaConf.load(config_path)}


def main(cfg: Any, checked: Any = None) -> dict:
    """Quantize, evaluate, update the run's summary.json; returns the updated summary."""
    checked = checked or check(cfg)
    run_dir, summary, run_cfg = checked["run_dir"], checked["summary"].to_dict(), checked["config"]
    if run_cfg.recipe.get("num_threads"):  # the run's CPU threads (digits: 1)
        torch.set_num_threads(int(run_cfg.recipe.num_threads))
    model, meta = load_trained(run_dir)
    datamodule = build_datamodule(run_cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    recipe = None
    if int(cfg.qat_epochs) > 0:
        loader = datamodule.train_dataloader()
        steps = limited_steps(len(loader), run_cfg.trainer.get("limit_train_batches"))
        recipe = recipe_settings(run_cfg, global_batch=int(loader.batch_size) * world_size_of(run_cfg.trainer),
                                 steps_per_epoch=steps, epochs=int(run_cfg.recipe.epochs))
    export = run_cfg.get("export") or {}
    int8 = quantize_trained(model, datamodule, cfg, run_dir,
                            input_size=export.get("input_size") or int(meta.get("image_size") or datamodule.image_size),
                            in_channels=int(meta.get("in_channels", 3)), opset=int(export.get("opset", 18)),
                            recipe=recipe, trainer_cfg=run_cfg.trainer, meta=meta)
    dtype = summary.get("hardware_dtype")
    if dtype is None or summary.get("test_acc_fp32") is None:  # a run from before INT8 support
        dtype = make_backend(run_cfg.hardware).data_dtype
    summary.update(int8_fields(summary, int8, dtype))
    typed = TrainSummary.from_dict(summary)
    write_summary(run_dir, typed)
    write_run_contract(run_dir / INT8_ONNX, run_dir, model_dtype="int8", written_by="python -m s3nas.quantize")
    write_summary(Path(str(cfg.paths.output_dir)), typed)
    print_summary(typed.to_dict())
    return typed.to_dict()
