"""Black-box devices: measurement statistics, the simulator as a black box, onnxruntime, user commands, failures."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import simulator
from s3nas.arch.graph import archspec_to_graph
from s3nas.latency.device import (CommandDevice, DeviceError, OnnxRuntimeDevice, Piece, SimulatedDevice, TorchCpuDevice,
                            make_device)
from s3nas.latency.device import onnx_bytes, parse_ms, summarize
from s3nas.config import compose_config
from s3nas.arch.space import SearchSpace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    cfg = compose_config("search", ["debug=search_small"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=16)


def test_summary_statistics():
    m = summarize([3.0, 1.0, 100.0, 2.0, 4.0], "d")
    assert (m.median_ms, m.min_ms, m.n) == (3.0, 1.0, 5)
    assert m.iqr_ms == pytest.approx(2.0)  # quartiles 2 and 4: the outlier does not move the median
    assert m.spread_pct == pytest.approx(100 * 2 / 3)


@pytest.mark.parametrize("line,expected", [("1.5", [1.5]), ("1.5 ms", [1.5]), ("1.5ms 2.5ms", [1.5, 2.5]),
                                           ("latency: 3", None), ("", None), ("nan", None), ("-1", None)])
def test_parse_ms(line, expected):
    assert parse_ms(line) == expected


def test_simulated_device_is_the_simulator(space):
    spec = space.arch_spec(space.random_options(random.Random(0)))
    device = SimulatedDevice("midap")
    truth = simulator.simulate(archspec_to_graph(spec), "midap").latency_ms
    m = device.measure(spec)
    assert m.median_ms == pytest.approx(truth) and m.iqr_ms == 0 and m.source == "simulation"
    # a standalone block: its own graph, input read from memory
    piece = Piece.at(space, 3, space.options(3)[-1])
    alone = simulator.simulate(piece.graph(), "midap", input_in_dram=True).latency_ms
    assert device.measure(piece).median_ms == pytest.approx(alone)
    noisy = SimulatedDevice("midap", noise_pct=5.0, seed=1, repeats=41).measure(spec)
    assert noisy.iqr_ms > 0 and abs(noisy.median_ms - truth) / truth < 0.05
    assert device.noise(spec).noise_pct == 0.0


def test_onnxruntime_device_measures_archspecs_pieces_and_files(space, tmp_path):
    device = OnnxRuntimeDevice(threads=1, warmup=2, repeats=7, rounds=2)
    head = Piece.head(space)
    m = device.measure(head)
    assert m.n == 7 and 0 < m.min_ms <= m.median_ms and len(m.samples_ms) == 7
    path = tmp_path / "head.onnx"
    path.write_bytes(onnx_bytes(head))
    assert device.measure(str(path)).n == 7
    many = device.measure_many([Piece.stem(space), head], repeats=4)
    assert [x.n for x in many] == [4, 4]
    spec = space.arch_spec(space.min_options())
    assert device.measure(spec, repeats=3).median_ms > 0
    assert device.identity()["threads"] == 1 and "host" in device.identity()


def test_torch_device_measures_a_block(space):
    m = TorchCpuDevice(warmup=1, repeats=3).measure(Piece.at(space, 0, space.options(0)[0]))
    assert m.n == 3 and m.median_ms > 0


def test_bad_onnx_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    with pytest.raises(DeviceError) as info:
        OnnxRuntimeDevice("cpu_onnxruntime", repeats=1).measure(str(bad))
    assert "cpu_onnxruntime" in str(info.value) and "\n" not in str(info.value)


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bench.py"
    path.write_text(textwrap.dedent(body))
    return f"{sys.executable} {path}"


def test_command_device_gets_an_onnx_path_and_reads_ms(space, tmp_path):
    cmd = _script(tmp_path, """
        import sys, onnx
        model = onnx.load(sys.argv[1])  # a real ONNX file
        print("warming up")
        print(f"{len(model.graph.node) / 1000:.3f} ms")
    """)
    device = CommandDevice(cmd + " {onnx}", "phone", repeats=2)
    before = set(Path(tempfile.gettempdir()).glob("s3nas-*.onnx"))
    m = device.measure(Piece.head(space))
    assert m.n == 2 and m.median_ms == pytest.approx(0.005)  # head: conv, relu, pool, flatten, FC (BN folded)
    assert set(Path(tempfile.gettempdir()).glob("s3nas-*.onnx")) == before  # the temp model is removed


@pytest.mark.parametrize("body,timeout_s,needle", [
    ("import sys; print('adb: device offline', file=sys.stderr); sys.exit(3)", 60,
     "exited with status 3: adb: device offline"),
    ("print('hello world')", 60, "printed 'hello world'"),
    ("import time; time.sleep(30)", 0.5, "timed out after 0.5 s"),
])
def test_failing_command_is_one_clear_line(space, tmp_path, body, timeout_s, needle):
    device = CommandDevice(_script(tmp_path, body), "phone", timeout_s=timeout_s)
    with pytest.raises(DeviceError) as info:
        device.measure(Piece.stem(space))
    message = str(info.value)
    assert needle in message and "device phone" in message and "\n" not in message


def test_thread_cpu_clock_needs_one_thread():
    from s3nas.errors import ConfigError

    with pytest.raises(ConfigError, match="hardware.clock"):
        OnnxRuntimeDevice(threads=2, clock="thread_cpu")
    with pytest.raises(ConfigError, match="hardware.clock: unknown clock 'sundial'"):
        OnnxRuntimeDevice(clock="sundial")


def test_make_device_from_hardware_configs():
    assert make_device(compose_config("search", ["hardware=midap"]).hardware) is None
    hardware = compose_config("search", ["hardware=cpu_onnxruntime"]).hardware
    device = make_device(hardware)
    assert isinstance(device, OnnxRuntimeDevice)
    # every timing value is the composed one (conf/hardware/cpu_onnxruntime.yaml over the schema)
    assert (device.threads, device.warmup, device.repeats, device.rounds, device.clock) == \
        (hardware.threads, hardware.warmup, hardware.repeats, hardware.rounds, hardware.clock)
    assert device.clock == "thread_cpu" and device.identity()["clock"] == "thread_cpu"
    torch_device = make_device(compose_config("search", ["hardware=torch_cpu"]).hardware)
    assert isinstance(torch_device, TorchCpuDevice) and torch_device.keep_heap
    # a different allocation regime is a different measurement: it is part of the log's key
    assert torch_device.identity()["keep_heap"] is True and "keep_heap" not in TorchCpuDevice().identity()
    sim = make_device(compose_config("search", ["hardware=sim_midap_blackbox"]).hardware)
    assert isinstance(sim, SimulatedDevice) and sim.profile.name == "midap"
    cmd = make_device(compose_config("search", ["hardware=command", "hardware.cmd=echo 1"]).hardware)
    assert isinstance(cmd, CommandDevice) and cmd._argv("m.onnx") == ["echo", "1", "m.onnx"]


def test_device_values_missing_from_a_config_are_the_schemas():
    """A key a hardware file leaves out gets the schema's default (not a default written in the device class),
    an override reaches the device, and an out-of-range value is refused naming the key."""
    from omegaconf import OmegaConf

    from s3nas.config.device_schema import DeviceHardwareConfig
    from s3nas.errors import ConfigError

    schema = DeviceHardwareConfig()
    node = OmegaConf.to_container(compose_config("search", ["hardware=cpu_onnxruntime"]).hardware)
    for key in ("repeats", "warmup", "rounds", "clock"):
        node.pop(key)
    device = make_device(node)
    assert (device.repeats, device.warmup, device.rounds, device.clock) == \
        (schema.repeats, schema.warmup, schema.rounds, schema.clock)
    for option in ("cpu_onnxruntime", "torch_cpu", "openvino_cpu", "executorch_cpu", "sim_midap_blackbox"):
        tuned = make_device(compose_config("search", [f"hardware={option}", "hardware.repeats=7"]).hardware)
        assert tuned.repeats == 7
        with pytest.raises(ConfigError, match=r"hardware\.repeats"):
            make_device(compose_config("search", [f"hardware={option}", "hardware.repeats=0"]).hardware)
    # the simulated device's timed runs: repeats samples per measurement
    sim = make_device(compose_config("search", ["hardware=sim_midap_blackbox", "hardware.repeats=3"]).hardware)
    assert sim.measure(Piece.head(_small_space())).n == 3


def _small_space() -> SearchSpace:
    cfg = compose_config("search", ["debug=search_small"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=16)


def test_keep_heap_cuts_torch_page_faults():
    """Measured in a fresh process each (the glibc setting is process-wide): the reference network at 160 px,
    8 timed runs after a first measurement (here: ~17k page faults without, ~12 with; ~36k / ~13 at 20 runs)."""
    code = ("import resource, sys; from s3nas.latency.device import TorchCpuDevice; "
            "from s3nas.latency.measured import reference_options; from s3nas.config import compose_config; "
            "from s3nas.arch.space import SearchSpace; cfg = compose_config('search', ['debug=search_small']); "
            "space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=160); "
            "device = TorchCpuDevice(warmup=3, repeats=8, keep_heap=sys.argv[1] == '1'); "
            "net = space.arch_spec(reference_options(space)); device.measure(net); "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; device.measure(net); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    faults = [int(subprocess.run([sys.executable, "-c", code, flag], cwd=REPO, env=env, capture_output=True,
                                 text=True, check=True, timeout=300).stdout.split()[-1]) for flag in ("0", "1")]
    assert faults[1] < faults[0] / 10, faults


def _search(*overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """search.py in the test process (tests/support/inprocess.py)."""
    from inprocess import run_inprocess

    return run_inprocess(["search.py", "debug=search_small", "deploy.input_size=16", "deploy.num_classes=10",
                          *overrides], env={"WANDB_MODE": "disabled"}, check=False)


def test_search_with_failing_command_device_is_one_line(tmp_path):
    proc = _search("hardware=command", "hardware.cmd=/bin/false", f"hydra.run.dir={tmp_path / 'run'}",
                   f"paths.cache_dir={tmp_path / 'cache'}")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and "device command" in lines[0] and "exited with status 1" in lines[0]


def test_search_with_command_device_without_cmd_names_the_key(tmp_path):
    proc = _search("hardware=command", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "hardware.cmd" in proc.stderr


def test_train_measures_latency_on_a_device(space):
    """train.py's latency on a device: the network's architecture measured at the deployment shape."""
    from dataclasses import replace

    from s3nas.errors import ConfigError
    from s3nas.latency.device_backend import DeviceBackend
    from s3nas.train.network import NetworkSource, deploy_latency

    spec = replace(space.arch_spec(space.random_options(random.Random(1))), num_classes=100, input_size=64)
    backend = DeviceBackend(SimulatedDevice("midap", "sim_midap_blackbox"), noise_repeats=3)
    result, macs = deploy_latency(NetworkSource(spec=spec), backend, input_size=16, num_classes=10)
    truth = simulator.simulate(archspec_to_graph(replace(spec, num_classes=10), input_size=16), "midap")
    assert result.latency_ms == pytest.approx(truth.latency_ms) and macs == truth.macs
    assert result.source.startswith("measurement (sim_midap_blackbox, 16x16, 10 classes")
    assert result.noise_pct == 0.0 and len(result.details["latency_measurements_ms"]) == 3
    with pytest.raises(ConfigError, match="times s3nas architectures only"):
        deploy_latency(NetworkSource(timm_name="mobilenetv2_050"), backend, input_size=16, num_classes=10)


def test_train_cli_reports_device_measurement(tmp_path, run_inproc):
    """train.py hardware=sim_midap_blackbox on a tiny recipe (default suite): summary.json's latency_ms is a
    measurement on that device of the trained architecture (noiseless simulated device: equal to the
    simulator's latency at the deploy shape)."""
    import json
    from dataclasses import replace

    from s3nas.arch import codec

    spec = compose_config("search", ["debug=search_small"])
    space16 = SearchSpace.from_config(spec.supernet, spec.candidates, num_classes=10, input_size=16)
    arch = space16.arch_spec(space16.min_options())
    codec.save_json(arch, tmp_path / "arch.json")
    run_dir = tmp_path / "run"
    run_inproc(["train.py", f"arch={tmp_path / 'arch.json'}", "hardware=sim_midap_blackbox", "deploy.input_size=16",
                "deploy.num_classes=10", "data.image_size=16", "data.batch_size=32", "trainer.limit_train_batches=2",
                "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "recipe.epochs=1",
                "recipe.num_threads=1", "callbacks=none", "trainer.enable_progress_bar=false", "logger=none",
                f"hydra.run.dir={run_dir}"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["hardware"] == "sim_midap_blackbox"
    assert summary["latency_source"].startswith("measurement (sim_midap_blackbox, 16x16, 10 classes"), summary
    truth = simulator.simulate(archspec_to_graph(replace(arch, num_classes=10), input_size=16), "midap").latency_ms
    assert summary["latency_ms"] == pytest.approx(truth)
    assert 0.0 <= summary["test_acc"] <= 1.0
    assert codec.load_json(run_dir / "arch.json").blocks == arch.blocks  # the trained network is the given one
