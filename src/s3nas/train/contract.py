"""The latency contract beside every exported model: ``latency.json`` next to ``model.onnx`` and
``latency_int8.json`` next to ``model_int8.onnx`` (``s3nas.outputs.LatencyContract``).

A contract says what latency to expect from the file and on what: the backend's prediction with its interval
(``LatencyBackend.predict``; a simulation predicts itself exactly), the latency the run measured or simulated for
the delivered network (the train summary's ``latency_ms``, its source and noise), the device's fingerprint
(``Device.fingerprint()`` where the backend has a device with one, else the backend's identity), the input shape
the figures hold for, and the model file's name and sha256. ``write_contract`` builds it from a train summary
(the dict ``run_train`` writes, or a finished run's summary.json) and writes it atomically. An INT8 file on
hardware that computes in another format gets null figures with the reason: the run timed no INT8 network.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx
from omegaconf import OmegaConf

from s3nas.arch import codec
from s3nas.arch.spec import ArchSpec
from s3nas.latency.backend import make_backend
from s3nas.outputs import (
    ContractDevice,
    ContractMeasurement,
    ContractPrediction,
    LatencyContract,
    OutputSchemaError,
    TrainSummary,
    load_latency_contract,
    load_summary,
    write_latency_contract,
)

#: contract file of each model file the project writes (any other ``X.onnx`` gets ``X.latency.json``)
CONTRACT_FILES = {"model.onnx": "latency.json", "model_int8.onnx": "latency_int8.json"}


def contract_path_for(model_path: str | os.PathLike[str]) -> Path:
    """``latency.json`` beside ``model.onnx``, ``latency_int8.json`` beside ``model_int8.onnx``."""
    model_path = Path(model_path)
    name = CONTRACT_FILES.get(model_path.name, f"{model_path.stem}.latency.json")
    return model_path.with_name(name)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_contract(model_path: str | os.PathLike[str], *, summary: Mapping[str, Any], backend: Any,
                   spec: ArchSpec | None, in_channels: int, model_dtype: str = "fp32",
                   written_by: str = "train.py") -> Path:
    """Build the contract of ``model_path`` from a train summary and the run's backend; write it atomically."""
    contract = build_contract(model_path, summary=summary, backend=backend, spec=spec, in_channels=in_channels,
                              model_dtype=model_dtype, written_by=written_by)
    return write_latency_contract(contract_path_for(model_path), contract)


def write_run_contract(model_path: str | os.PathLike[str], run_dir: str | os.PathLike[str], *,
                       model_dtype: str = "fp32", written_by: str) -> Path | None:
    """The contract of a model made later from a finished train.py run dir (s3nas-export, python -m
    s3nas.quantize): the figures from its summary.json, the backend rebuilt from its config_resolved.yaml, the
    device fingerprint of the run's own latency.json when it has one. None (nothing written) without a train
    summary: an unfinished run has no latency figures."""
    run_dir = Path(run_dir)
    try:
        summary = load_summary(run_dir)
    except OutputSchemaError:
        return None
    if not isinstance(summary, TrainSummary):
        return None
    config = run_dir / "config_resolved.yaml"
    run_cfg = OmegaConf.load(config) if config.is_file() else OmegaConf.create({})
    try:
        backend: Any = make_backend(run_cfg.hardware) if "hardware" in run_cfg else None
    except Exception:  # noqa: BLE001 - a device that cannot be set up here: figures without a prediction
        backend = None
    data = summary.to_dict()
    spec = None if str(data["arch"]).startswith("timm:") else codec.decode(str(data["arch"]))
    in_channels = int(OmegaConf.select(run_cfg, "deploy.in_channels", default=3))
    contract = build_contract(model_path, summary=data, backend=backend, spec=spec, in_channels=in_channels,
                              model_dtype=model_dtype, written_by=written_by)
    recorded = run_dir / CONTRACT_FILES["model.onnx"]
    if recorded.is_file():
        try:  # the device as train.py described it where it measured, not this machine
            contract.device.fingerprint = load_latency_contract(recorded).device.fingerprint
        except OutputSchemaError:
            pass
    return write_latency_contract(contract_path_for(model_path), contract)


def build_contract(model_path: str | os.PathLike[str], *, summary: Mapping[str, Any], backend: Any,
                   spec: ArchSpec | None, in_channels: int, model_dtype: str = "fp32",
                   written_by: str = "train.py") -> LatencyContract:
    """The LatencyContract of ``model_path`` (see the module docstring)."""
    model_path = Path(model_path)
    size, classes = int(summary["deploy_input_size"]), int(summary["deploy_num_classes"])
    input_shape = [1, int(in_channels), size, size]
    model_shape = onnx_input_shape(model_path)
    hardware_dtype = str(summary.get("hardware_dtype") or getattr(backend, "data_dtype", "fp32"))
    other_format = None
    if model_dtype == "int8" and hardware_dtype != "int8":
        other_format = (f"{summary['hardware']} runs networks in {hardware_dtype}: this run timed no INT8 network "
                        f"(its {hardware_dtype} latency is in latency.json / summary.json)")
    measured, measured_reason = (None, other_format) if other_format else (measurement_of(summary, backend), None)
    predicted, predicted_reason = (None, other_format) if other_format else \
        prediction_of(backend, spec, size=size, classes=classes, in_channels=in_channels)
    device = ContractDevice(
        fingerprint=fingerprint_of(backend), input_shape=input_shape, num_classes=classes, batch=1,
        dtype=hardware_dtype, model_file=model_path.name, model_sha256=sha256_of(model_path),
        model_bytes=model_path.stat().st_size, model_dtype=str(model_dtype), model_input_shape=model_shape,
        same_shape=model_shape == input_shape)
    return LatencyContract(
        arch=str(summary.get("network") or (spec.name if spec is not None else "")),
        arch_encoded=str(summary.get("arch", "")), hardware=str(summary["hardware"]),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), written_by=written_by,
        predicted=predicted, predicted_reason=predicted_reason, measured=measured, measured_reason=measured_reason,
        device=device)


def onnx_input_shape(path: str | os.PathLike[str]) -> list[int]:
    """[1, C, H, W] of an ONNX model's first input (a dynamic batch axis counts as 1, other dynamic axes as -1)."""
    model = onnx.load(str(path), load_external_data=False)
    dims = [int(d.dim_value) if d.HasField("dim_value") else -1
            for d in model.graph.input[0].type.tensor_type.shape.dim]
    return [1, *dims[1:]] if dims else []


def measurement_of(summary: Mapping[str, Any], backend: Any) -> ContractMeasurement:
    """The run's latency figure as the summary records it."""
    source = str(summary.get("latency_source") or "")
    method = next((word for word in ("measurement", "simulation") if source.startswith(word)),
                  str(getattr(backend, "method", "estimate")))
    return ContractMeasurement(latency_ms=float(summary["latency_ms"]), noise_pct=summary.get("latency_noise_pct"),
                               method=method, source=source,
                               measurements_ms=summary.get("latency_measurements_ms"))


def prediction_of(backend: Any, spec: ArchSpec | None, *, size: int, classes: int,
                  in_channels: int) -> tuple[ContractPrediction | None, str | None]:
    """(the backend's prediction at the deployment shape, None) or (None, why there is none)."""
    predict = getattr(backend, "predict", None)
    name = getattr(backend, "name", "the hardware")
    if not callable(predict):
        return None, f"the latency backend of {name} makes no predictions (no predict method)"
    if spec is None:
        return None, "not an s3nas architecture (timm network): the latency backend predicts ArchSpecs only"
    deploy = replace(spec, input_size=size, num_classes=classes, in_channels=in_channels)
    try:
        prediction = predict(deploy)
    except Exception as error:  # noqa: BLE001 - a prediction is optional; the reason says what went wrong
        return None, f"the prediction failed ({type(error).__name__}: {str(error)[:200]})"
    if prediction is None:
        searched = search_prediction(spec, name, size=size, classes=classes)
        if searched is not None:
            return searched, None
        return None, (f"{name} has no latency model for this network in this run (a device's model is its search "
                      f"table or few-shot fit; train.py builds neither)")
    fields = prediction.to_dict() if hasattr(prediction, "to_dict") else vars(prediction)
    return ContractPrediction(**{key: fields[key] for key in ("latency_ms", "low_ms", "high_ms", "level", "how")}), \
        None


def search_prediction(spec: ArchSpec, hardware: str, *, size: int, classes: int) -> ContractPrediction | None:
    """The prediction the search made for this very network on the same hardware at the same shape (search.py
    writes it into arch.json's ``meta.search``), or None."""
    found = dict((spec.meta or {}).get("search") or {})
    interval = found.get("latency_interval_ms")
    if (found.get("hardware") != hardware or found.get("latency_predicted_ms") is None or not interval
            or (spec.input_size, spec.num_classes) != (size, classes)):
        return None
    return ContractPrediction(latency_ms=float(found["latency_predicted_ms"]), low_ms=float(interval[0]),
                              high_ms=float(interval[1]), level=float(found.get("latency_interval_level") or 0.9),
                              how=f"{found.get('latency_prediction') or 'prediction'} - made by the search run "
                                  f"(arch.json meta.search)")


def fingerprint_of(backend: Any) -> dict:
    """``backend.device.fingerprint()`` when the backend has such a device, else what this process can say."""
    fingerprint = getattr(getattr(backend, "device", None), "fingerprint", None)
    if callable(fingerprint):
        try:
            return dict(fingerprint())
        except Exception as error:  # noqa: BLE001 - fall back to the identity below, saying why
            extra = {"fingerprint_error": f"{type(error).__name__}: {str(error)[:200]}"}
        else:
            extra = {}
    else:
        extra = {}
    identity = getattr(backend, "identity", None)
    return {"name": str(getattr(backend, "name", "")), "method": str(getattr(backend, "method", "")),
            "dtype": str(getattr(backend, "data_dtype", "fp32")), "s3nas_version": _s3nas_version(),
            "host": f"{platform.node()}/{platform.machine()}/{os.cpu_count()}",
            "identity": identity() if callable(identity) else None, **extra}


def _s3nas_version() -> str:
    try:
        return metadata.version("s3nas")
    except metadata.PackageNotFoundError:
        return "unknown"
