"""`pip install .` (not editable): the wheel ships the config tree and every console script, and the installed
copy runs from any directory without the checkout.

The wheel is built from a copy of the sources (no stale build/ of the checkout), installed with ``pip install
--target`` into a temporary directory and run with ``PYTHONPATH`` pointing there from another directory, so the
installed copy (not the editable checkout) is the one imported; its dependencies come from this environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
#: The commands of the project (design: every command is a Hydra app with a console script).
COMMANDS = ["s3nas-search", "s3nas-train", "s3nas-export", "s3nas-quantize", "s3nas-check", "s3nas-scale", "s3nas-postprocess",
            "s3nas-se-removal", "s3nas-flow", "s3nas-zoo", "s3nas-compare", "s3nas-random-search",
            "s3nas-random-selection", "s3nas-profile-space"]


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a clean copy of the sources (``pip wheel --no-deps --no-build-isolation``)."""
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("src", "conf", "simulator"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source), cwd=out)
    (found,) = out.glob("s3nas-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into a plain directory (``pip install --target``): the package and bin/ scripts."""
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel), cwd=target)
    return target


def _run_installed(installed: Path, argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "S3NAS_CONFIG_DIR", "S3NAS_ROOT")}
    env.update(PYTHONPATH=str(installed), WANDB_MODE="offline", WANDB_SILENT="true")
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_pyproject_lists_every_package_and_command():
    from setuptools import find_packages

    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {f"s3nas.{p}" if p else "s3nas" for p in [""] + find_packages(str(REPO / "src" / "s3nas"))}
    found |= {"simulator"} | {f"simulator.{p}" for p in find_packages(str(REPO / "simulator"))}
    assert packages == found | {"s3nas.conf"}  # a new subpackage must be listed (the wheel would lack it)
    assert sorted(SCRIPTS) == sorted(COMMANDS)


def test_optional_tools_are_extras_and_dev_installs_them():
    import ast

    required = " ".join(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra, packages in {"sweeps": ["hydra-optuna-sweeper", "hydra-joblib-launcher"],
                            "slurm": ["hydra-submitit-launcher"], "onnx": ["onnxscript"]}.items():
        assert all(any(spec.startswith(p) for spec in extras[extra]) for p in packages)
        assert not any(p in required for p in packages)  # not a required dependency any more
        assert any(spec.startswith("s3nas[") and extra in spec for spec in extras["dev"])  # CI installs .[dev]
    # the package itself never imports an extra's module: only Hydra loads the plugins, by name
    optional = {"optuna", "submitit", "onnxscript", "hydra_plugins"}
    for path in list((REPO / "src").rglob("*.py")) + list((REPO / "simulator").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & optional, path


def test_wheel_ships_the_config_tree_and_the_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")
            if not re.match(r"candidates/bbssp_", p.relative_to(REPO / "conf").as_posix())}
    shipped = {n[len("s3nas/conf/"):] for n in names if n.startswith("s3nas/conf/") and n.endswith(".yaml")}
    assert conf <= shipped and {"search.yaml", "train.yaml", "export.yaml", "base.yaml", "data/digits.yaml"} <= shipped
    assert {"simulator/profiles/midap.yaml", "s3nas/config/__init__.py"} <= names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for command in COMMANDS:
        assert re.search(rf"^{re.escape(command)} = ", entry_points, re.M), command


def test_installed_copy_finds_its_config_from_another_directory(installed, tmp_path):
    code = ("import s3nas, s3nas.config as c; print(s3nas.__file__); print(c.CONF_DIR); print(c.REPO_ROOT)")
    proc = _run_installed(installed, [sys.executable, "-c", code], tmp_path)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    module_file, conf_dir, repo_root = stdout.split()
    assert Path(module_file).is_relative_to(installed)  # the installed copy, not the checkout
    assert Path(conf_dir) == (installed / "s3nas" / "conf").resolve() and (Path(conf_dir) / "search.yaml").is_file()
    assert repo_root == "None"


#: Runs every installed console script given in argv[1] (JSON {script path: args}) one after the other in this
#: one process (tests/support/inprocess.py: runpy of the script, sys.argv, captured output, SystemExit's code) and
#: writes {script path: [code, stdout, stderr]} to argv[2]: one interpreter start-up for all the commands.
RUN_SCRIPTS = """
import json, sys
sys.path.append(sys.argv[3])
from inprocess import run_inprocess
results = {}
for script, args in json.loads(sys.argv[1]).items():
    proc = run_inprocess([script, *args], cwd='.', check=False)
    results[script] = [proc.returncode, proc.stdout, proc.stderr]
open(sys.argv[2], 'w').write(json.dumps(results))
"""


def test_every_installed_command_prints_its_resolved_job_config(installed, tmp_path):
    """`<command> --cfg job --resolve` from another directory, for every console script of the wheel: the
    installed bin/ scripts run one after the other in one process started from another directory (imports from
    the installed copy; the installed s3nas-check as a process of its own: the next test)."""
    import json

    commands = {str(installed / "bin" / command): ["--cfg", "job", "--resolve",
                                                   "latency=2.5ms" if command == "s3nas-search" else "seed=42"]
                for command in COMMANDS}
    results_file = tmp_path.parent / f"{tmp_path.name}-results.json"
    proc = _run_installed(installed, [sys.executable, "-c", RUN_SCRIPTS, json.dumps(commands), str(results_file),
                                      str(Path(__file__).resolve().parent / "support")], tmp_path)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    results = json.loads(results_file.read_text())
    results_file.unlink()
    assert sorted(results) == sorted(commands)
    outputs = {}
    for command in COMMANDS:
        returncode, stdout, stderr = results[str(installed / "bin" / command)]
        outputs[command] = stdout
        assert returncode == 0, f"{command}: {stderr[-2000:]}"
        assert "\nseed: 42\n" in stdout and "output_dir: null" in stdout, command
        # paths.root of an installed copy is the working directory (no checkout to point at)
        assert f"root: {tmp_path}" in stdout, command
        assert "${" not in stdout, command  # resolved
    assert "\nlatency: 2.5ms\n" in outputs["s3nas-search"]
    assert not (tmp_path / "outputs").exists()  # --cfg job writes nothing


def test_installed_check_command_runs_the_search_checks(installed, tmp_path):
    proc = _run_installed(installed, [str(installed / "bin" / "s3nas-check"), "latency=2500000cycles", "logger=none",
                                      f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    assert "latency_ms=2.5" in stdout and "checks passed" in stdout
    bad = _run_installed(installed, [str(installed / "bin" / "s3nas-check"), "latency=0.01ms", "logger=none",
                                     f"hydra.run.dir={tmp_path / 'bad'}"], tmp_path)
    stdout, stderr = bad.communicate(timeout=600)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: latency")
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_installed_search_runs_a_tiny_search(installed, tmp_path):
    proc = _run_installed(installed, [str(installed / "bin" / "s3nas-search"), "latency=2.5ms", "debug=search_tiny",
                                      f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    stdout, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stderr[-3000:]
    assert (tmp_path / "run" / "arch.json").is_file() and (tmp_path / "run" / "summary.json").is_file()
