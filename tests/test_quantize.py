"""INT8 delivery: onnxruntime static quantization (QDQ), the fake-quantized torch network that mirrors it,
train.py ``quantize=int8`` (PTQ and QAT) and ``python -m s3nas.quantize`` on a finished run, one-line errors.

The train runs are tiny (the 3-block ArchSpec of test_train, 16x16 digits, a few batches) through the real CLI.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from s3nas.arch import codec
from s3nas.errors import ConfigError
from s3nas.nn import fakequant
from s3nas.outputs import TrainSummary, load_summary
from s3nas.train.export import export_onnx
from s3nas.train.runner import int8_fields
from s3nas.utils.onnxquant import onnx_logits, quantize_onnx, unquantizable_nodes

REPO = Path(__file__).resolve().parents[1]


def _test_train_module():
    """tests/test_train.py loaded by path: putting tests/ on sys.path would make worker processes (which inherit
    sys.path) import tests/simulator/ as the `simulator` package."""
    spec = importlib.util.spec_from_file_location("s3nas_tests_train", Path(__file__).with_name("test_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_train = _test_train_module()
TINY, tiny_spec = _train.TINY, _train.tiny_spec


def small_net(act: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), act or nn.ReLU6(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.Hardswish(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics (some negative gammas), so folding them matters."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def test_fake_quant_torch_matches_the_onnxruntime_int8_model(tmp_path):
    """The fake-quantized torch network and onnxruntime's QDQ model compute nearly the same logits: per-channel
    weight rounding commutes with the BN folding the exporter does, and both calibrate min/max on the same images."""
    model = randomize_bn(small_net())
    calibration = torch.randn(64, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    export_onnx(model, tmp_path / "f.onnx", input_size=12, check=False)
    report = quantize_onnx(tmp_path / "f.onnx", tmp_path / "q.onnx", calibration.numpy())
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "BatchNormalization" not in ops
    assert report["bn_folded"] and report["calibration_images"] == 64 and report["float_ops"] == []

    test = torch.randn(32, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    float_logits = model(test).detach().numpy()
    int8_logits = onnx_logits(tmp_path / "q.onnx", [test.numpy()])
    simulated = fakequant.attach(copy.deepcopy(model))
    assert len(fakequant.wrappers(simulated)) == 3
    fakequant.calibrate(simulated, calibration.split(16))
    with torch.no_grad():
        fake_logits = simulated(test).numpy()
    quant_error = np.abs(int8_logits - float_logits).max()
    assert quant_error > 1e-4  # the INT8 model really is quantized
    # onnxruntime also quantizes the activations' outputs (Add, HardSwish inputs ...): close, not identical
    assert np.abs(int8_logits - fake_logits).max() < 0.5 * quant_error + 1e-3


def test_fake_quant_weights_are_per_channel_int8_and_strip_restores_the_float_network():
    model = small_net()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    simulated = fakequant.attach(copy.deepcopy(model))
    conv = fakequant.wrappers(simulated)[0]
    weight = conv._weight().detach()
    scale = conv.inner.weight.detach().abs().flatten(1).amax(1) / 127
    levels = weight / scale.view(-1, 1, 1, 1)
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # on the INT8 grid of its own channel
    assert levels.abs().max() <= 127 + 1e-4
    restored = fakequant.strip(simulated)
    assert not fakequant.wrappers(restored)
    assert all(torch.equal(reference[k], v) for k, v in restored.state_dict().items())


def test_an_operator_without_int8_kernel_is_named_in_one_line(tmp_path):
    model = small_net(act=nn.GELU())
    export_onnx(model, tmp_path / "f.onnx", input_size=8, check=False)
    assert {op for op, _ in unquantizable_nodes(tmp_path / "f.onnx")} == {"Div", "Erf"}  # GELU: x/sqrt(2), erf
    with pytest.raises(ConfigError) as error:
        quantize_onnx(tmp_path / "f.onnx", tmp_path / "q.onnx", np.zeros((4, 3, 8, 8), np.float32))
    message = str(error.value)
    assert "Div" in message and "Erf" in message and "quantize.allow_float_ops" in message and "\n" not in message
    assert not (tmp_path / "q.onnx").exists()
    report = quantize_onnx(tmp_path / "f.onnx", tmp_path / "q.onnx", np.random.rand(4, 3, 8, 8).astype(np.float32),
                           allow_float_ops=["Div", "Erf"])
    assert report["float_ops"] == ["Div", "Erf"] and (tmp_path / "q.onnx").is_file()
    with pytest.raises(ConfigError, match="calibration_images"):
        quantize_onnx(tmp_path / "f.onnx", tmp_path / "q2.onnx", np.zeros((0, 3, 8, 8), np.float32))


def test_the_reported_accuracy_is_the_one_of_the_network_the_hardware_runs():
    summary = {"test_acc": 0.95, "val_acc": 0.94}
    int8 = {"test_acc": 0.93, "val_acc": 0.92}
    on_npu = int8_fields(summary, int8, "int8")
    assert (on_npu["test_acc"], on_npu["accuracy_dtype"], on_npu["test_acc_fp32"]) == (0.93, "int8", 0.95)
    on_cpu = int8_fields(summary, int8, "fp32")  # a float device: the float network is the one it runs
    assert (on_cpu["test_acc"], on_cpu["accuracy_dtype"], on_cpu["test_acc_int8"]) == (0.95, "fp32", 0.93)
    assert int8_fields(summary, None, "int8")["accuracy_dtype"] == "fp32"


# ----------------------------------------------------------------------------------------- the CLI
def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python <args>`` in the test process (tests/support/inprocess.py; W&B offline)."""
    from inprocess import run_inprocess

    return run_inprocess(args, check=check)


@pytest.fixture(scope="module")
def quantized_run(tmp_path_factory) -> Path:
    """A tiny train.py run with PTQ then one epoch of QAT, float ONNX exported too."""
    root = tmp_path_factory.mktemp("int8")
    arch = root / "arch.json"
    codec.save_json(tiny_spec(), arch)
    run_dir = root / "run"
    run_cli("train.py", *TINY, "logger=none", f"arch={arch}", "quantize=int8", "quantize.qat_epochs=1",
            "quantize.calibration_images=100", "export.onnx=true", f"hydra.run.dir={run_dir}")
    return run_dir


def test_train_writes_the_int8_model_and_reports_its_accuracy(quantized_run):
    summary = json.loads((quantized_run / "summary.json").read_text())
    assert (quantized_run / "model.onnx").is_file() and (quantized_run / "model_int8.onnx").is_file()
    int8 = summary["int8"]
    assert summary["hardware_dtype"] == "int8" and summary["accuracy_dtype"] == "int8"  # midap: 1-byte data
    # the QAT model is delivered unless it scores lower on validation than the PTQ one
    assert int8["delivered"] == ("qat" if int8["qat_val_acc"] >= int8["ptq_val_acc"] else "ptq")
    assert summary["test_acc"] == summary["test_acc_int8"] == int8["test_acc"] == int8[f"{int8['delivered']}_test_acc"]
    assert summary["test_acc_fp32"] is not None and int8["ptq_test_acc"] is not None
    assert int8["qat_epochs"] == 1 and int8["qat_seconds"] > 0 and int8["calibration_images"] == 100
    assert 0.0 <= int8["agreement"] <= 1.0 and int8["agreement_images"] > 0
    ops = {n.op_type for n in onnx.load(str(quantized_run / "model_int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "BatchNormalization" not in ops

    # the figure is that of the file: evaluate model_int8.onnx here on the run's test split
    from omegaconf import OmegaConf

    from s3nas.data import build_datamodule

    datamodule = build_datamodule(OmegaConf.load(quantized_run / "config_resolved.yaml").data)
    datamodule.setup("test")
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in datamodule.test_dataloader()])
    predictions = onnx_logits(quantized_run / "model_int8.onnx", images).argmax(1)
    assert float((predictions == np.concatenate(labels)).mean()) == pytest.approx(summary["test_acc_int8"])
    assert isinstance(load_summary(quantized_run / "summary.json"), TrainSummary)


def test_quantize_command_adds_int8_to_a_finished_run(quantized_run, tmp_path):
    run_dir = tmp_path / "copy"
    import shutil

    shutil.copytree(quantized_run, run_dir)
    (run_dir / "model_int8.onnx").unlink()
    before = json.loads((run_dir / "summary.json").read_text())
    result = run_cli("-m", "s3nas.quantize", f"run_dir={run_dir}", "calibration_images=50",
                     "calibration_method=percentile", f"hydra.run.dir={tmp_path / 'cmd'}")
    after = json.loads((run_dir / "summary.json").read_text())
    assert (run_dir / "model_int8.onnx").is_file() and "INT8:" in result.stdout
    assert after["int8"]["calibration_images"] == 50 and after["int8"]["calibration_method"] == "percentile"
    assert after["int8"]["qat_epochs"] == 0 and after["int8"]["delivered"] == "ptq"
    assert after["test_acc_fp32"] == before["test_acc_fp32"]
    assert after["test_acc"] == after["test_acc_int8"] == after["int8"]["ptq_test_acc"]
    assert json.loads((tmp_path / "cmd" / "summary.json").read_text())["int8"] == after["int8"]


@pytest.mark.parametrize("args, needle", [
    (["train.py", "quantize=int8", "quantize.calibration_images=0"], "quantize.calibration_images"),
    (["train.py", "quantize=int8", "quantize.calibration_method=kl"], "quantize.calibration_method"),
    (["-m", "s3nas.quantize", "run_dir=/nonexistent/run"], "run_dir"),
])
def test_bad_quantization_settings_stop_with_one_line(args, needle, tmp_path):
    run_dir = tmp_path / "run"
    arch = tmp_path / "arch.json"
    codec.save_json(tiny_spec(), arch)
    extra = [f"arch={arch}", "logger=none"] if args[0] == "train.py" else []
    result = run_cli(*args, *extra, f"hydra.run.dir={run_dir}", check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_int8_benchmark_prints_its_figures(tmp_path, monkeypatch):
    """benchmarks/int8.py end to end on a tiny run: table, timings, and the JSON keys the issue names. The
    benchmark runs in the test process (tests/support/inprocess.py: its figures are tested, not a process), and so
    does the ``python train.py ...`` command it starts: its ``subprocess.run`` of that command line is answered by
    ``run_inprocess`` of the same arguments and environment (stderr into stdout, as the benchmark asks), which saves
    the child's ~7 CPU-s of imports; every other command line (none expected) goes to the real ``subprocess.run``.
    The benchmark's thread pool (``--jobs``, 1 here) runs its one job on the calling thread: a command run in the
    process installs its signal handlers, which only the main thread may do. The same train.py command line's
    outputs (the INT8 model, its accuracy) are tested by test_train_writes_the_int8_model_and_reports_its_accuracy."""
    import concurrent.futures
    import sys

    from inprocess import run_inprocess

    arch = tmp_path / "arch.json"
    codec.save_json(tiny_spec(), arch)
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # its `from results import record`, as `python <script>`
    real_run, trainings = subprocess.run, []

    def run(command, *args, cwd=None, env=None, stdout=None, stderr=None, text=None, **kwargs):
        if not (isinstance(command, list) and command[:2] == [sys.executable, "train.py"]):
            return real_run(command, *args, cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=text, **kwargs)
        assert stdout == subprocess.PIPE and stderr == subprocess.STDOUT and text and not args and not kwargs
        trainings.append(command)
        proc = run_inprocess(command[1:], cwd=cwd, env=env, check=False)
        return subprocess.CompletedProcess(command, proc.returncode, proc.stdout + proc.stderr)

    monkeypatch.setattr(subprocess, "run", run)

    class OnTheCallingThread(concurrent.futures.Executor):
        def __init__(self, max_workers=None):
            assert max_workers == 1  # --jobs 1: the benchmark's runs one after the other anyway

        def submit(self, fn, *args, **kwargs):
            future = concurrent.futures.Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - as a pool's worker: the caller's result() raises it
                future.set_exception(error)
            return future

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", OnTheCallingThread)
    result = run_inprocess(["benchmarks/int8.py", "--arch", str(arch), "--seeds", "1", "--qat-epochs", "1",
                            "--out", str(tmp_path / "runs"), "--", *TINY],
                           env={"WANDB_MODE": "offline", "S3NAS_BENCH_RECORD": "0"}, check=False)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    assert len(trainings) == 1  # the one seed's training, run by the benchmark
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("test_acc_fp32", "test_acc_int8_ptq", "test_acc_int8_qat", "agreement", "cpu_ms_fp32", "cpu_ms_int8"):
        assert isinstance(figures[key], float), key
    summary = json.loads((tmp_path / "runs" / "seed1" / "summary.json").read_text())
    assert figures["test_acc_int8_qat"] == summary["int8"]["qat_test_acc"]
    assert figures["cpu_ms_fp32"] > 0 and figures["cpu_ms_int8"] > 0
