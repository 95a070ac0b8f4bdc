"""The latency contract beside every exported model: latency.json next to model.onnx, latency_int8.json next to
model_int8.onnx (s3nas.train.contract, s3nas.outputs.LatencyContract).

One tiny train.py run (the 3-block ArchSpec of test_train, 16x16 digits, 2 batches x 1 epoch, export.onnx=true,
quantize=int8 on 50 calibration images) through the real command line (in the test process:
tests/support/inprocess.py), then the export command on its run dir; the other cases use a fake backend.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from s3nas.arch import codec
from s3nas.latency.simulated import SimulatorBackend
from s3nas.outputs import (
    LATENCY_CONTRACT_VERSION,
    LatencyContract,
    OutputSchemaError,
    load_latency_contract,
)
from s3nas.train.contract import build_contract, contract_path_for, write_contract
from s3nas.train.export import export_onnx

REPO = Path(__file__).resolve().parents[1]


def _test_train_module():
    """tests/test_train.py loaded by path (tests/ on sys.path would shadow the simulator package in workers)."""
    spec = importlib.util.spec_from_file_location("s3nas_tests_train_contract", Path(__file__).with_name("test_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_train = _test_train_module()
TINY = [arg for arg in _train.TINY if not arg.startswith(("trainer.limit_train_batches=", "recipe.epochs="))] + [
    "trainer.limit_train_batches=2", "recipe.epochs=1"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python <args>`` in the test process (tests/support/inprocess.py); it must succeed."""
    from inprocess import run_inprocess

    return run_inprocess(args, env={"WANDB_MODE": "disabled"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    arch = tmp_path_factory.mktemp("arch") / "arch.json"
    codec.save_json(_train.tiny_spec(), arch)
    run_dir = tmp_path_factory.mktemp("contract_run")
    run_cli("train.py", *TINY, "logger=none", f"arch={arch}", "export.onnx=true", "quantize=int8",
            "quantize.calibration_images=50", f"hydra.run.dir={run_dir}")
    return run_dir


# ----------------------------------------------------------------------------------------- train.py
def test_train_writes_latency_json_beside_model_onnx(trained):
    summary = json.loads((trained / "summary.json").read_text())
    contract = load_latency_contract(trained / "latency.json")
    raw = json.loads((trained / "latency.json").read_text())
    assert raw["schema_version"] == LATENCY_CONTRACT_VERSION and raw["kind"] == "latency_contract"
    assert contract.arch == "tiny" and contract.arch_encoded == summary["arch"]
    assert contract.hardware == summary["hardware"] == "midap" and contract.written_by == "train.py"
    # the file it sits beside
    device = contract.device
    assert device.model_file == "model.onnx" and device.model_dtype == "fp32"
    assert device.model_sha256 == sha256(trained / "model.onnx")
    assert device.model_bytes == (trained / "model.onnx").stat().st_size
    # the figures hold for the deployment shape (224, 1000 classes, batch 1), not the 16x16 training shape
    assert device.input_shape == [1, 3, 224, 224] and device.batch == 1 and device.num_classes == 1000
    assert device.model_input_shape[2:] == [16, 16] and device.same_shape is False
    assert device.dtype == "int8" == summary["hardware_dtype"]
    # measured: the summary's simulated latency, exact
    measured = contract.measured
    assert measured.latency_ms == summary["latency_ms"] and measured.method == "simulation"
    assert measured.noise_pct is None and measured.source == summary["latency_source"]
    # the simulator's fingerprint: its profile and version
    fingerprint = device.fingerprint
    assert fingerprint["name"] == "midap" and fingerprint["identity"]["simulator_version"]
    assert fingerprint["identity"]["profile"]["name"] == "midap"
    # predicted: a simulation predicts itself exactly (null with a reason before LatencyBackend.predict existed)
    if callable(getattr(SimulatorBackend, "predict", None)):
        predicted = contract.predicted
        assert predicted.latency_ms == pytest.approx(measured.latency_ms)
        assert predicted.low_ms == predicted.high_ms == predicted.latency_ms and predicted.level == 1.0
        assert contract.predicted_reason is None
    else:
        assert contract.predicted is None and contract.predicted_reason


def test_train_writes_latency_int8_json_beside_model_int8(trained):
    contract = load_latency_contract(trained / "latency_int8.json")
    assert contract.device.model_file == "model_int8.onnx" and contract.device.model_dtype == "int8"
    assert contract.device.model_sha256 == sha256(trained / "model_int8.onnx")
    # midap computes in int8: the run's latency is the INT8 network's
    assert contract.measured.latency_ms == json.loads((trained / "summary.json").read_text())["latency_ms"]


def test_export_command_writes_the_contract_beside_its_output(trained, tmp_path):
    recorded = load_latency_contract(trained / "latency.json")
    out = tmp_path / "deploy" / "tiny.onnx"
    run_cli("-m", "s3nas.train.export_app", f"run_dir={trained}", f"output={out}", "input_size=24",
            f"hydra.run.dir={tmp_path / 'export_run'}")
    contract = load_latency_contract(tmp_path / "deploy" / "tiny.latency.json")
    assert contract.written_by == "s3nas-export" and contract.device.model_file == "tiny.onnx"
    assert contract.device.model_sha256 == sha256(out) and contract.device.model_input_shape[2:] == [24, 24]
    assert contract.measured == recorded.measured and contract.device.fingerprint == recorded.device.fingerprint
    assert contract.device.input_shape == recorded.device.input_shape


def test_quantize_command_writes_latency_int8_json(trained, tmp_path):
    """python -m s3nas.quantize on a finished run (a copy): latency_int8.json describes the new model_int8.onnx."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "latency_int8.json").unlink()
    run_cli("-m", "s3nas.quantize", f"run_dir={run_dir}", "calibration_images=40",
            f"hydra.run.dir={tmp_path / 'quantize_run'}")
    contract = load_latency_contract(run_dir / "latency_int8.json")
    assert contract.written_by == "python -m s3nas.quantize" and contract.device.model_dtype == "int8"
    assert contract.device.model_sha256 == sha256(run_dir / "model_int8.onnx")
    recorded = load_latency_contract(run_dir / "latency.json")
    assert contract.measured == recorded.measured and contract.device.fingerprint == recorded.device.fingerprint


# ----------------------------------------------------------------------------------------- fake backends
@dataclass(frozen=True)
class FakePrediction:
    latency_ms: float
    low_ms: float
    high_ms: float
    level: float
    how: str

    def to_dict(self) -> dict:
        return dict(vars(self))


class FakeDevice:
    def fingerprint(self) -> dict:
        return {"cpu": "Fake CPU 9000", "logical_cpus": 8, "threads": 1, "runtime": "fakeruntime 1.2",
                "clock": "thread_cpu", "dtype": "fp32", "host": "bench-host"}


class FakeDeviceBackend:
    """What the contract asks of a device backend: name, method, data_dtype, device.fingerprint, predict."""

    name, method, data_dtype = "fakeboard", "measurement", "fp32"

    def __init__(self, prediction=None):
        self.device = FakeDevice()
        self.prediction = prediction
        self.asked = []

    def predict(self, spec):
        self.asked.append(spec)
        return self.prediction


class NoPredictBackend:
    name, method, data_dtype = "oldboard", "measurement", "fp32"


SUMMARY = {"network": "tiny", "arch": "ir_k3_e2_c16_s2", "hardware": "fakeboard", "hardware_dtype": "fp32",
           "latency_ms": 3.5, "latency_source": "measurement (fakeboard, 224x224, 1000 classes; median of 3)",
           "latency_noise_pct": 2.5, "latency_measurements_ms": [3.4, 3.5, 3.6], "deploy_input_size": 224,
           "deploy_num_classes": 1000}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fake") / "model.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    export_onnx(net.eval(), path, input_size=32, check=False)
    return path


def test_device_backend_prediction_interval_and_fingerprint(onnx_file):
    backend = FakeDeviceBackend(FakePrediction(3.2, 2.9, 3.6, 0.9, "corrected measured table (fakeboard; 90%)"))
    written = write_contract(onnx_file, summary=SUMMARY, backend=backend, spec=_train.tiny_spec(), in_channels=3)
    assert written == onnx_file.with_name("latency.json") == contract_path_for(onnx_file)
    contract = load_latency_contract(written)
    assert contract.predicted.to_dict() == {"latency_ms": 3.2, "low_ms": 2.9, "high_ms": 3.6, "level": 0.9,
                                            "how": "corrected measured table (fakeboard; 90%)"}
    assert contract.measured.method == "measurement" and contract.measured.noise_pct == 2.5
    assert contract.measured.measurements_ms == [3.4, 3.5, 3.6]
    assert contract.device.fingerprint == FakeDevice().fingerprint()
    assert contract.device.model_input_shape == [1, 3, 32, 32] and contract.device.dtype == "fp32"
    # the prediction is asked for at the deployment shape
    (asked,) = backend.asked
    assert (asked.input_size, asked.num_classes, asked.in_channels) == (224, 1000, 3)


@pytest.mark.parametrize("backend,spec,needle", [
    (FakeDeviceBackend(None), "tiny", "no latency model"),
    (NoPredictBackend(), "tiny", "no predict method"),
    (FakeDeviceBackend(None), None, "timm"),
])
def test_no_prediction_is_null_with_a_reason(onnx_file, backend, spec, needle):
    contract = build_contract(onnx_file, summary=SUMMARY, backend=backend,
                              spec=_train.tiny_spec() if spec else None, in_channels=3)
    assert contract.predicted is None and needle in contract.predicted_reason
    assert contract.measured.latency_ms == 3.5
    if not hasattr(backend, "device"):  # no fingerprint method: what this process can say
        assert contract.device.fingerprint["name"] == "oldboard" and contract.device.fingerprint["host"]


def test_int8_model_on_fp32_hardware_has_null_figures_with_the_reason(onnx_file, tmp_path):
    int8 = tmp_path / "model_int8.onnx"
    int8.write_bytes(onnx_file.read_bytes())
    backend = FakeDeviceBackend(FakePrediction(3.2, 2.9, 3.6, 0.9, "table"))
    path = write_contract(int8, summary=SUMMARY, backend=backend, spec=_train.tiny_spec(), in_channels=3,
                          model_dtype="int8")
    assert path.name == "latency_int8.json"
    contract = load_latency_contract(path)
    assert contract.measured is None and contract.predicted is None
    assert "fp32" in contract.measured_reason and "no INT8 network" in contract.measured_reason


def test_schema_refuses_null_figures_without_a_reason_and_foreign_files(onnx_file, tmp_path):
    data = build_contract(onnx_file, summary=SUMMARY, backend=NoPredictBackend(), spec=None,
                          in_channels=3).to_dict()
    with pytest.raises(OutputSchemaError, match="predicted_reason"):
        LatencyContract.from_dict(dict(data, predicted_reason=None))
    with pytest.raises(OutputSchemaError, match="schema_version"):
        LatencyContract.from_dict(dict(data, schema_version=LATENCY_CONTRACT_VERSION + 1))
    (tmp_path / "latency.json").write_text("{\"kind\": \"train\"")
    with pytest.raises(OutputSchemaError, match="latency.json"):
        load_latency_contract(tmp_path / "latency.json")


def test_a_failed_write_leaves_no_contract_and_keeps_the_old_one(onnx_file, tmp_path, monkeypatch):
    model = tmp_path / "model.onnx"
    model.write_bytes(onnx_file.read_bytes())
    first = write_contract(model, summary=SUMMARY, backend=NoPredictBackend(), spec=None, in_channels=3)
    before = first.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_contract(model, summary=dict(SUMMARY, latency_ms=9.0), backend=NoPredictBackend(), spec=None,
                       in_channels=3)
    monkeypatch.undo()
    assert first.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latency.json", "model.onnx"]
