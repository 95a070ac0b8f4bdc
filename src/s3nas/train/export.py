"""ONNX export of a trained network, checked against onnxruntime.

``export_onnx(model, path, ...)`` writes the file atomically (temp file + rename, so a failed check or
export leaves no model.onnx behind) and, with ``check=True``, runs onnxruntime and torch on random input
and on real images and requires the logits to agree within ``atol`` (max abs difference).
``export_run_dir(run_dir)`` rebuilds the network of a train.py run from ``weights.pt`` (or a checkpoint)
and exports it; ``python -m s3nas.train.export_app run_dir=...`` is its command line.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from s3nas.errors import ConfigError, UserError
from s3nas.outputs import ExportSummary, write_summary
from s3nas.train.contract import write_run_contract
from s3nas.train.network import NetworkSource, build_network
from s3nas.utils.io import atomic_output_path


class ExportCheckError(UserError):
    """onnxruntime's outputs differ from torch's by more than the tolerance."""

    exit_code = 1


def export_onnx(model: nn.Module, path: str | os.PathLike, *, input_size: int, in_channels: int = 3,
                opset: int = 18, dynamic_batch: bool = True, check: bool = True, atol: float = 1e-4,
                real_images: Optional[torch.Tensor] = None, seed: int = 0) -> dict:
    """Write ``model`` (eval mode, float32, CPU) as ONNX to ``path``; returns what was checked."""
    path = Path(path)
    model = _export_copy(model)
    example = torch.randn(2, in_channels, input_size, input_size, generator=torch.Generator().manual_seed(seed))
    # external-data file of a failed export: <temp name>.data
    with atomic_output_path(path, side_suffixes=(".data",)) as tmp:
        _torch_export(model, example, tmp, opset=opset, dynamic_batch=dynamic_batch)
        result: dict = {"path": str(path), "input_size": int(input_size), "opset": int(opset),
                        "dynamic_batch": bool(dynamic_batch), "checked": False}
        if check:
            inputs = {"random": example}
            if real_images is not None:
                images = real_images.float().cpu()
                if images.shape[-1] != input_size or images.shape[-2] != input_size:
                    images = torch.nn.functional.interpolate(images, size=(input_size, input_size), mode="bilinear",
                                                             align_corners=False)
                inputs["real"] = images[:16] if dynamic_batch else images[:2]
            diffs = compare_with_onnxruntime(model, tmp, inputs)
            worst = max(diffs.values())
            result.update(checked=True, max_abs_diff=worst, max_abs_diff_by_input=diffs, atol=float(atol))
            if not worst <= atol:
                raise ExportCheckError(f"export: onnxruntime differs from torch by {worst:.3g} (> export.atol={atol}) "
                                       f"for {path.name}; nothing written")
    return result


def compare_with_onnxruntime(model: nn.Module, onnx_path: str | os.PathLike, inputs: dict) -> dict:
    """Max abs difference of the logits, onnxruntime vs torch, for each named input batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    diffs = {}
    with torch.no_grad():
        for name, batch in inputs.items():
            expected = model(batch).float().numpy()
            got = session.run(None, {input_name: batch.numpy().astype(np.float32)})[0]
            if got.shape != expected.shape:
                raise ExportCheckError(f"export: onnxruntime output shape {got.shape} != torch {expected.shape}")
            diffs[name] = float(np.max(np.abs(got - expected)))
    return diffs


def _export_copy(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model).float().cpu().eval()
    return model.to(memory_format=torch.contiguous_format)


def _torch_export(model: nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamic_batch: bool) -> None:
    """torch.onnx.export through the TorchScript exporter (one self-contained file, any opset >= 11)."""
    kwargs: dict = dict(input_names=["images"], output_names=["logits"], opset_version=int(opset),
                        do_constant_folding=True)
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"images": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=False, **kwargs)
        except TypeError:  # torch without the dynamo switch: the TorchScript exporter is the only one
            torch.onnx.export(model, (example,), str(path), **kwargs)


# ----------------------------------------------------------------------------------------- run dirs
def load_trained(run_dir: str | os.PathLike, weights: Optional[str] = None) -> tuple[nn.Module, dict]:
    """(network with the trained EMA weights, its s3nas_train meta) from a train.py run dir or file."""
    run_dir = Path(run_dir)
    candidates = [Path(weights)] if weights else [run_dir / "weights.pt", run_dir / "checkpoints" / "last.ckpt"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ConfigError(f"run_dir: '{run_dir}' holds no weights.pt or checkpoints/last.ckpt "
                          f"(is it a train.py run dir?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"run_dir: '{path}' is not readable ({type(error).__name__})") from None
    meta = payload.get("s3nas_train") if isinstance(payload, dict) else None
    if not isinstance(meta, dict) or "network" not in meta:
        raise ConfigError(f"run_dir: '{path}' is not a train.py output (no s3nas_train block)")
    model = build_network(NetworkSource.from_meta(meta["network"]), int(meta["num_classes"]),
                          int(meta.get("in_channels", 3)), drop_path_rate=float(meta.get("drop_path", 0.0)),
                          dropout=meta.get("dropout"))
    state = payload["state_dict"]
    if path.suffix == ".ckpt":  # Lightning checkpoint: the EMA copy when there is one, else the model
        prefix = "ema.module." if meta.get("ema") else "model."
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    model.load_state_dict(state)
    return model.eval(), meta


def real_images_of(run_dir: Path, count: int = 16) -> Optional[torch.Tensor]:
    """A test batch of the run's dataset (from its config_resolved.yaml), or None when unavailable."""
    config = run_dir / "config_resolved.yaml"
    if not config.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        from s3nas.data import build_datamodule

        data_cfg = OmegaConf.load(config).data
        datamodule = build_datamodule(data_cfg, batch_size=count, eval_batch_size=count, num_workers=0)
        datamodule.setup("test")
        return next(iter(datamodule.test_dataloader()))[0]
    except Exception as error:  # noqa: BLE001 - the data may live on another machine: random input only
        warnings.warn(f"export: no real images for the check ({type(error).__name__}: {error}); random input only")
        return None


def export_run_dir(run_dir: str | os.PathLike, *, output: Optional[str] = None, input_size: Optional[int] = None,
                   opset: int = 18, dynamic_batch: bool = True, check: bool = True, atol: float = 1e-4,
                   weights: Optional[str] = None) -> dict:
    """Export a train.py run's network to ``<run_dir>/model.onnx`` (or ``output``) and check it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run_dir: no directory '{run_dir}'")
    model, meta = load_trained(run_dir, weights)
    size = int(input_size or meta.get("image_size") or 224)
    return export_onnx(model, Path(output) if output else run_dir / "model.onnx", input_size=size,
                       in_channels=int(meta.get("in_channels", 3)), opset=opset, dynamic_batch=dynamic_batch,
                       check=check, atol=atol, real_images=real_images_of(run_dir) if check else None)


def export_task(cfg: Any, checked: Any = None) -> dict:
    """s3nas-export's Hydra task (s3nas.train.export_app): export and check; print the result as one JSON line and
    return it."""
    result = export_run_dir(cfg.run_dir, output=cfg.output, input_size=cfg.input_size, opset=cfg.opset,
                            dynamic_batch=cfg.dynamic_batch, check=cfg.check, atol=cfg.atol,
                            weights=cfg.weights)
    # latency.json beside the model: the train run's latency figures for it (none for an unfinished run)
    write_run_contract(result["path"], cfg.run_dir, written_by="s3nas-export")
    run_dir = Path(str(cfg.paths.output_dir))
    write_summary(run_dir, ExportSummary(onnx=result, source_run_dir=str(cfg.run_dir), run_dir=str(run_dir)))
    print(json.dumps(result), flush=True)
    return result
