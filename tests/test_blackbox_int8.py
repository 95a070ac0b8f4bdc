"""INT8 on the black-box devices: ``hardware.dtype=int8`` makes cpu_onnxruntime time the INT8 QDQ model of every
network and piece; its tables never mix with fp32 ones, its sources say int8, bad values are one line."""

from __future__ import annotations

import json
from collections import Counter

import onnx
import pytest
from inprocess import SHORT_SEARCH, SMALL_SPLITS

from s3nas.arch.space import SearchSpace
from s3nas.config import compose_config
from s3nas.config.device_schema import device_config
from s3nas.errors import ConfigError
from s3nas.latency.device import OnnxRuntimeDevice, Piece, make_device, quantize_for_timing
from s3nas.latency.device_backend import DeviceBackend
from s3nas.latency.measured import log_path_of, measurement_key

# a 6-position MBConv space (18 standalone blocks): the tiny end-to-end search builds its int8 table in seconds
TINY_SPACE = ["supernet.depths=[1,1,1,1,2]", "supernet.block_type=mbconv", "candidates.mbconv.kernels=[3]"]


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    cfg = compose_config("search", ["debug=search_small"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=16)


def _ops(model: bytes) -> Counter:
    return Counter(node.op_type for node in onnx.load_model_from_string(model).graph.node)


def test_int8_tables_never_share_a_key_or_log_with_fp32(space, tmp_path):
    fp32, int8 = OnnxRuntimeDevice(), OnnxRuntimeDevice(dtype="int8")
    assert int8.identity()["dtype"] == "int8" and int8.identity()["quantization"]["format"] == "QDQ"
    # fp32 keeps the identity it had before hardware.dtype existed: its cached tables stay valid
    assert "dtype" not in fp32.identity()
    keys = {measurement_key(space, d) for d in (fp32, int8)}
    assert len(keys) == 2
    paths = [log_path_of(tmp_path, space, d, measurement_key(space, d)) for d in (fp32, int8)]
    assert paths[0] != paths[1] and "-int8-" in paths[1].name and "int8" not in paths[0].name
    configured = make_device(compose_config("search", ["hardware=cpu_onnxruntime", "hardware.dtype=int8"]).hardware)
    assert configured.dtype == "int8" and measurement_key(space, configured) != measurement_key(
        space, make_device(compose_config("search", ["hardware=cpu_onnxruntime"]).hardware))


def test_int8_device_times_the_quantized_model(space):
    """The bytes handed to onnxruntime hold QuantizeLinear/DequantizeLinear nodes around every conv (weights
    int8, no float conv left), for a block, the stem, the head and a whole network; fp32 hands the float export."""
    fp32, int8 = OnnxRuntimeDevice(repeats=3, warmup=1), OnnxRuntimeDevice(repeats=3, warmup=1, dtype="int8")
    block = Piece.at(space, 3, space.options(3)[-1])
    for network in (block, Piece.stem(space), Piece.head(space), space.arch_spec(space.min_options())):
        float_ops, int8_ops = _ops(fp32.model_bytes(network)), _ops(int8.model_bytes(network))
        assert float_ops["QuantizeLinear"] == 0 and float_ops["Conv"] >= 1
        assert int8_ops["QuantizeLinear"] >= 1 and int8_ops["DequantizeLinear"] >= int8_ops["Conv"]
        assert int8_ops["Conv"] == float_ops["Conv"]
    # an already quantized model is timed as it is (not quantized twice)
    quantized = int8.model_bytes(block)
    assert quantize_for_timing(quantized) == quantized
    m = int8.measure(block)
    assert m.n == 3 and m.median_ms > 0 and m.device == "cpu_onnxruntime"


def test_int8_backend_reports_int8(space):
    hardware = compose_config("search", ["hardware=cpu_onnxruntime", "hardware.dtype=int8"]).hardware
    backend = DeviceBackend.from_config(hardware)
    spec = space.arch_spec(space.min_options())
    assert backend.data_dtype == "int8" and backend.identity()["device"]["dtype"] == "int8"
    assert backend.source(spec).startswith("measurement (cpu_onnxruntime int8 QDQ, 16x16, 10 classes")
    plain = DeviceBackend.from_config(compose_config("search", ["hardware=cpu_onnxruntime"]).hardware)
    assert plain.data_dtype == "fp32" and plain.source(spec).startswith("measurement (cpu_onnxruntime, 16x16")


@pytest.mark.parametrize("overrides, needle", [
    (["hardware=cpu_onnxruntime", "hardware.dtype=int4"], "hardware.dtype: unknown value 'int4'; use one of fp32, int8"),
    (["hardware=torch_cpu", "hardware.dtype=int8"], "hardware.dtype: int8 is timed by the onnxruntime device only"),
    (["hardware=sim_midap_blackbox", "hardware.dtype=int8"], "hardware.device=simulated takes fp32"),
])
def test_bad_dtype_is_one_config_line(overrides, needle):
    with pytest.raises(ConfigError) as error:
        device_config(compose_config("search", overrides).hardware)
    assert needle in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="hardware.dtype"):
        OnnxRuntimeDevice(dtype="fp16")


@pytest.mark.parametrize("overrides, needle", [
    (["hardware=cpu_onnxruntime", "hardware.dtype=int4"], "hardware.dtype: unknown value 'int4'; use one of fp32, int8"),
    (["hardware=torch_cpu", "hardware.dtype=int8"], "onnxruntime device only"),
])
def test_bad_dtype_through_the_cli_is_one_line(tmp_path, run_inproc, overrides, needle):
    proc = run_inproc(["search.py", "debug=search_tiny", *overrides, f"hydra.run.dir={tmp_path / 'run'}",
                       f"paths.cache_dir={tmp_path / 'cache'}"], check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]


def test_tiny_search_on_int8_cpu(tmp_path, run_inproc):
    """debug=search_tiny at 16 px on cpu_onnxruntime with hardware.dtype=int8 (a 6-position space, few timed
    runs): the int8 table is built in its own log, the delivered network's latency is an int8 measurement that
    meets the target. The target is feasible by construction (every network of this space runs in well under
    1 ms at 16 px on a CPU, int8 or fp32).

    Every network and piece timed is exported and quantized first (~0.5 CPU-s each, onnxruntime's QDQ quantizer),
    so the table is kept small: 2 end-to-end correction networks (the log still holds int8 networks besides the
    blocks) and no reference networks (``hardware.reference=false``: the chunks' normalisation and the drift at the
    search's start are device-independent, tested in tests/test_device_drift.py). The search itself is SHORT_SEARCH
    with 5% splits: its length is not what this test is about."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    run_inproc(["search.py", "hardware=cpu_onnxruntime", "hardware.dtype=int8", "debug=search_tiny",
                "data.image_size=16", "deploy.input_size=16", "deploy.num_classes=10", *TINY_SPACE, *SHORT_SEARCH,
                *SMALL_SPLITS, "hardware.repeats=10", "hardware.warmup=2", "hardware.correction_samples=2",
                "hardware.noise_repeats=2", "hardware.reference=false", "latency=20ms", f"paths.cache_dir={cache}",
                f"hydra.run.dir={run_dir}"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["latency_source"].startswith("measurement (cpu_onnxruntime int8 QDQ, 16x16, 10 classes"), summary
    assert 0 < summary["latency_ms"] <= summary["target_ms"] == 20.0 and summary["meets_target"], summary
    assert summary["hardware_dtype"] == "int8", summary  # the backend's data_dtype reaches the summary
    logs = list(cache.glob("measured-*-16px-cpu_onnxruntime-int8-*.jsonl"))
    assert len(logs) == 1 and logs[0].stat().st_size > 0
    assert not list(cache.glob("measured-*-16px-cpu_onnxruntime-[0-9a-f]*.jsonl"))  # no fp32 table was built
