"""The README's device command works as a shell passes it: ``hardware.cmd='python bench_adb.py {onnx}'``
reaches the command line as ``hardware.cmd=python bench_adb.py {onnx}`` (quotes stripped by the shell), and
every entry point Hydra-quotes that value before Hydra parses it (s3nas.runtime.cmd_quoting).

The CLI tests pass argv lists exactly as a shell would (no shell involved): the composed config is checked
with ``--cfg job`` (no run), and one tiny train.py run measures its network with a fake device script.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from inprocess import run_inprocess
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from s3nas.runtime.cmd_quoting import (
    hydra_quote,
    is_quoted,
    parse_error_message,
    quote_command_overrides,
)

REPO = Path(__file__).resolve().parents[1]
#: the README says `python`; an interpreter without one on PATH runs the fake device itself
PYTHON = "python" if shutil.which("python") else sys.executable
#: commands a user may give, as they reach argv after the shell removed its own quoting
COMMANDS = [
    "python bench_adb.py {onnx}",
    "python bench.py --model={onnx} --sizes 1,2,3",
    "sh -c \"adb push {onnx} /data/local/tmp/m.onnx && adb shell /data/local/tmp/bench m.onnx\"",
    "sh -c 'ssh board bench {onnx} | tail -n 1'",
    "echo it's \"both\" {onnx}",
    "bench (x) [y] :z key=value",
    "C:\\tools\\bench.exe {onnx} \\",
    "'/opt/my bench/run' {onnx}",
    "echo 1",
]


def hydra_value(override: str):
    """What Hydra's override parser makes of one override."""
    return OverridesParser.create().parse_override(override).value()


# ----------------------------------------------------------------------------------------- the rewrite
@pytest.mark.parametrize("command", COMMANDS)
def test_rewritten_value_parses_back_verbatim(command):
    (arg,) = quote_command_overrides([f"hardware.cmd={command}"])
    assert arg.startswith("hardware.cmd=")
    assert hydra_value(arg) == command


def test_escaping_round_trips_every_awkward_string():
    """Quotes of both kinds, backslashes before quotes and at the end, braces, commas, equals signs."""
    rng = random.Random(0)
    alphabet = "ab '\"\\{},=()[]: "
    texts = ["", "\\", "\\\\", "'", "\"", "\\'", "a\\", "'\"'"] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(400)]
    for text in texts:
        quoted = hydra_quote(text)
        assert is_quoted(quoted), (text, quoted)
        assert hydra_value(f"k={quoted}") == text, (text, quoted)


def test_the_readme_form_becomes_one_quoted_value():
    argv = ["hardware=command", "hardware.cmd=python bench_adb.py {onnx}", "latency=5ms"]
    assert quote_command_overrides(argv) == ["hardware=command", "hardware.cmd='python bench_adb.py {onnx}'",
                                             "latency=5ms"]


@pytest.mark.parametrize("value", ["'python bench.py {onnx}'", '"python bench.py {onnx}"',
                                   "'it\\'s {onnx}'", "null", "''"])
def test_already_quoted_values_and_null_are_untouched(value):
    assert quote_command_overrides([f"hardware.cmd={value}"]) == [f"hardware.cmd={value}"]


@pytest.mark.parametrize("key", ["+hardware.cmd", "++hardware.cmd", "hardware.0.cmd", "hardware.12.cmd"])
def test_append_forms_and_list_elements_are_quoted(key):
    (arg,) = quote_command_overrides([f"{key}=python b.py {{onnx}}"])
    assert arg == f"{key}='python b.py {{onnx}}'"
    assert hydra_value(arg) == "python b.py {onnx}"


@pytest.mark.parametrize("arg", ["latency=5ms", "hardware=command", "hardware.name=my board",
                                 "hardware.cmdline=x {y}", "xhardware.cmd=a {b}", "hardware.timeout_s=5",
                                 "data.path=a,b", "-m", "--cfg", "job", "~hardware.cmd"])
def test_other_arguments_are_untouched(arg):
    assert quote_command_overrides([arg]) == [arg]
    assert quote_command_overrides(["-m", arg]) == ["-m", arg]


def test_multirun_keeps_sweeps_of_other_keys_and_the_users_own_cmd_sweeps():
    argv = ["-m", "latency=2ms,3ms", "seed=range(0,3)", "hardware.cmd=python bench_adb.py {onnx}"]
    assert quote_command_overrides(argv) == ["-m", "latency=2ms,3ms", "seed=range(0,3)",
                                             "hardware.cmd='python bench_adb.py {onnx}'"]
    sweep = "hardware.cmd='a {onnx}','b {onnx}'"
    assert quote_command_overrides(["--multirun", sweep]) == ["--multirun", sweep]
    assert quote_command_overrides(["-m", "hardware.cmd=echo 1,echo 2"]) == ["-m", "hardware.cmd=echo 1,echo 2"]
    # outside a multirun a comma is part of the command
    assert hydra_value(quote_command_overrides(["hardware.cmd=echo 1,2"])[0]) == "echo 1,2"


def test_parse_error_of_a_cmd_override_is_one_line_with_the_working_quoting():
    bad = "hardware.cmd='a {onnx}',b {onnx}"
    with pytest.raises(OverrideParseException) as caught:
        OverridesParser.create().parse_overrides([bad])
    message = parse_error_message(caught.value)
    assert message is not None and "\n" not in message
    assert message.startswith("hardware.cmd:") and "\"hardware.cmd='python bench.py {onnx}'\"" in message
    with pytest.raises(OverrideParseException) as other:
        OverridesParser.create().parse_overrides(["data.path=a {b}"])
    assert parse_error_message(other.value) is None


# ----------------------------------------------------------------------------------------- the real CLI
def _cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python <args>``, argv as the shell left it, in the test process (tests/support/inprocess.py: the quoting
    is applied to sys.argv by the entry point, as in a real process)."""
    return run_inprocess(args, env={"WANDB_MODE": "disabled"}, check=False)


def _composed_cmd(entry: list[str], *overrides: str) -> str:
    proc = _cli([*entry, "hardware=command", *overrides, "--cfg", "job"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return yaml.safe_load(proc.stdout)["hardware"]["cmd"]


@pytest.mark.parametrize("entry", [["search.py"], ["train.py"], ["-m", "s3nas.postsearch.scaling"]],
                         ids=["search", "train", "scaling"])
def test_every_entry_point_takes_the_readme_form(entry):
    assert _composed_cmd(entry, "hardware.cmd=python bench_adb.py {onnx}") == "python bench_adb.py {onnx}"


def test_search_takes_the_readme_line_as_written():
    """README: python search.py hardware=command hardware.cmd='python bench_adb.py {onnx}' latency=5ms"""
    assert _composed_cmd(["search.py"], "hardware.cmd=python bench_adb.py {onnx}", "latency=5ms") \
        == "python bench_adb.py {onnx}"


@pytest.mark.parametrize("command", COMMANDS[1:-1])
def test_search_config_holds_awkward_commands_verbatim(command):
    assert _composed_cmd(["search.py"], f"hardware.cmd={command}") == command


def test_the_old_documented_quoting_still_works():
    assert _composed_cmd(["search.py"], "hardware.cmd='python bench.py {onnx}'") == "python bench.py {onnx}"


def test_malformed_cmd_sweep_is_one_line_exit_2(tmp_path):
    proc = _cli(["search.py", "-m", "hardware=command", "hardware.cmd='a {onnx}',b {onnx}", "latency=5ms",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: hardware.cmd:"), lines
    assert "\"hardware.cmd='python bench.py {onnx}'\"" in lines[0]
    assert not (tmp_path / "sweep").exists()


BENCH = """\
import json, os, sys
with open(os.environ["FAKE_BENCH_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
print("warming up")
print("1.25 ms")
"""


def test_train_measures_with_the_readme_command_form(tmp_path):
    """train.py hardware=command hardware.cmd=python bench_adb.py {onnx} (as a shell passes the README line):
    the fake device receives an ONNX path for {onnx} and its 1.25 ms is the summary's latency."""
    bench, log, run_dir = tmp_path / "bench_adb.py", tmp_path / "bench.log", tmp_path / "run"
    bench.write_text(BENCH)
    os.environ["FAKE_BENCH_LOG"] = str(log)  # inherited by the CLI and by the device command it runs
    try:
        arch = tmp_path / "arch.json"
        _write_tiny_arch(arch)
        proc = _cli(["train.py", f"arch={arch}", "hardware=command", f"hardware.cmd={PYTHON} {bench} {{onnx}}",
                     "hardware.noise_repeats=2", "deploy.input_size=16", "deploy.num_classes=10",
                     "data.image_size=16", "data.batch_size=32", "trainer.limit_train_batches=2", "recipe.epochs=1",
                     "recipe.num_threads=1", "callbacks=none", "logger=none", "trainer.enable_progress_bar=false",
                     "trainer.enable_model_summary=false", f"hydra.run.dir={run_dir}"], timeout=600)
    finally:
        os.environ.pop("FAKE_BENCH_LOG", None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["latency_ms"] == pytest.approx(1.25) and summary["latency_source"].startswith("measurement")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls and all(len(c) == 1 and c[0].endswith(".onnx") for c in calls), calls
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert resolved["hardware"]["cmd"] == f"{PYTHON} {bench} {{onnx}}"


def _write_tiny_arch(path: Path) -> None:
    from s3nas.arch import codec
    from s3nas.arch.spec import ArchSpec, BlockSpec, Branch

    spec = ArchSpec(blocks=(BlockSpec("mbconv", (Branch(3, 2.0),), 16, stride=2, stage=0),
                            BlockSpec("fused", (Branch(3, 2.0),), 24, stride=2, stage=1)),
                    stem_channels=8, stem_kernel=3, head_channels=32, name="tiny")
    codec.save_json(spec, path)


def _documented_lines() -> list[str]:
    """Every shell line of README.md and docs/guide/device.md that sets hardware.cmd (table cells included)."""
    lines = []
    for doc in (REPO / "README.md", REPO / "docs" / "guide" / "device.md"):
        for line in doc.read_text().splitlines():
            if line.startswith("python ") and "hardware.cmd=" in line:
                lines.append(line)
            elif line.startswith("|") and "`hardware.cmd=" in line:  # README's table: the override alone
                cells = [cell for cell in line.split("`") if cell.startswith("hardware.cmd=")]
                lines += [f"python search.py hardware=command {cell}" for cell in cells]
    return lines


def test_documented_command_lines_run_as_written():
    """The README / device guide lines, split as a shell splits them (shlex), compose the command verbatim."""
    lines = _documented_lines()
    assert len(lines) >= 3, lines  # README's table, the guide's list and its contract section
    for line in lines:
        words = shlex.split(line, comments=True)
        assert words[:2] == ["python", "search.py"], line
        (override,) = [w for w in words if w.startswith("hardware.cmd=")]
        assert _composed_cmd(words[1:2], *[w for w in words[2:] if w != "hardware=command"]) \
            == override.split("=", 1)[1] == "python bench.py {onnx}", line
