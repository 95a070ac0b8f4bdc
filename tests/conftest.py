"""Shared test setup: schemas registered before any composition, W&B never online, small helpers."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

# Tests never talk to the W&B servers, even on a machine that is logged in.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# No warm-up cache (~150 MB per search configuration) in the user's cache dir; tests/test_warmup_cache.py turns it on
os.environ["S3NAS_WARMUP_CACHE"] = "0"

# Ctrl-C as at a terminal. A suite started in the background by a non-interactive shell (`cmd &`, `nohup`, some CI
# runners) inherits SIGINT *ignored*: Python then installs no KeyboardInterrupt handler, a handler restored after a
# run (tests/support/inprocess.py, s3nas.runtime.signals) puts "ignored" back, and the commands the tests start
# inherit it. The tests of Ctrl-C (test_search_faults, faults/test_signals) failed so, depending on which tests ran
# before them in the same worker. Here every worker handles SIGINT as an interactive Python does; a child process
# starts with the default action, so its interpreter installs its own handler.
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.default_int_handler)

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # pytest-xdist: one worker per core; torch's intra-op threads (one per core by default) in every worker would
    # oversubscribe the cores (measured on 2 cores, 2 workers: +27% CPU time on the torch unit tests, spinning
    # OpenMP threads). Commands run in the test process and devices set their own threads (inprocess.py, device.py).
    import torch  # noqa: E402

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

from s3nas.config import CONF_DIR, compose_config, register_configs  # noqa: E402

register_configs()

REPO_ROOT = Path(__file__).resolve().parents[1]
# test oracles (e.g. the simulator's straightforward reference implementation) live under tests/oracles
sys.path.insert(0, str(Path(__file__).resolve().parent / "oracles"))
# test helpers (tests/support/inprocess.py: a command line run in the test process) import as top-level modules
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

import forkserver  # noqa: E402
import run_mode  # noqa: E402
import yaml_memo  # noqa: E402
from inprocess import run_inprocess  # noqa: E402
from tables import seed_tables as _seed_tables  # noqa: E402
from tables import shared_table_dir  # noqa: E402

yaml_memo.install()  # a config text parsed once per process (tests/support/yaml_memo.py)
run_mode.install()  # no composition only to learn the run mode of a plain command line (tests/support/run_mode.py)


#: The longest test files (wall seconds measured on 2 cores, docs/notes/test-suite.md), longest first. xdist's loadfile
#: hands out whole files in collection order (pyproject: --no-loadscope-reorder; its default order, most tests first,
#: sends these few-test files last, so one worker ran a long search sweep alone at the end); started first, the
#: short files fill the gaps and the two workers end close together. A file not listed keeps its collection place.
LONGEST_FIRST = (
    "faults/test_signals.py", "faults/test_sweeps.py", "test_config.py", "test_blackbox_devices.py", "test_train.py",
    "faults/test_readonly.py", "test_front.py", "test_packaging.py", "test_search_ddp.py", "test_device_runtimes.py",
    "faults/test_full_disk.py", "test_search_faults.py", "test_blackbox_int8.py", "test_profile_space.py",
    "test_search_cli.py", "test_measured_states.py", "test_warmup_cache.py", "test_search_sweep.py",
    "faults/test_devices.py", "test_baselines_random.py", "faults/test_concurrency.py", "test_quantize.py",
    "test_search_constraint.py", "simulator/test_cli_robust.py", "test_blackbox_table.py",
)
_TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """The files of LONGEST_FIRST first, in that order; everything else after them as collected (a stable sort)."""
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}

    def place(item) -> int:
        try:
            return rank.get(Path(str(item.path)).resolve().relative_to(_TESTS_DIR).as_posix(), len(rank))
        except ValueError:  # not under tests/
            return len(rank)

    items.sort(key=place)


@pytest.fixture(scope="session", autouse=True)
def session_cache_dir(tmp_path_factory) -> Path:
    """Commands a test runs without its own ``paths.cache_dir`` cache their latency tables in this session's shared
    directory ($S3NAS_CACHE_DIR; the one ``seed_tables`` builds into, shared by the xdist workers), not in the user's
    ~/.cache/s3nas: the suite leaves the user's cache alone, starts as cold as on a fresh machine (CI), and builds
    each table once for all its tests. Tests of the default location (faults/test_readonly.py) remove the variable."""
    path = shared_table_dir(tmp_path_factory.getbasetemp())
    os.environ["S3NAS_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def compose_cfg(tmp_path):
    """compose_cfg(overrides, config_name="search") -> DictConfig with paths.output_dir = tmp_path."""

    def _compose(overrides=(), config_name: str = "search"):
        return compose_config(config_name, list(overrides), output_dir=tmp_path)

    return _compose


@pytest.fixture(scope="session")
def cli_env() -> dict:
    """Environment for CLI subprocess tests: offline W&B, no inherited HYDRA_FULL_ERROR."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"})
    return env


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def run_cmd(cli_env):
    """run_cmd(args, cwd=REPO_ROOT, env=None, timeout=900, check=True) -> CompletedProcess (text, captured).

    ``args`` is the command line after ``python`` (``["search.py", "latency=2ms"]`` or ``["-m", "s3nas..."]``),
    run with this interpreter, offline W&B, no inherited HYDRA_FULL_ERROR and one OpenMP thread (2 shared
    cores); ``env`` adds variables. ``check=True`` fails the test with the output's tail on a non-zero exit.
    A real process forked from a server that has imported torch, Lightning, ... once (tests/support/forkserver.py;
    a plain subprocess where ``env`` changes what is read at import, e.g. S3NAS_CONFIG_DIR or HOME).
    """

    def _run(args, cwd=REPO_ROOT, env=None, timeout: float = 900, check: bool = True):
        full_env = {**cli_env, "OMP_NUM_THREADS": "1", **(env or {})}
        proc = forkserver.run(args, cwd, full_env, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"exit {proc.returncode}: python {' '.join(map(str, args))}\n"
                        f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
        return proc

    return _run


@pytest.fixture(scope="session")
def run_inproc():
    """run_inproc(args, cwd=REPO_ROOT, env=None, check=True) -> CompletedProcess, like ``run_cmd`` but in this
    process (tests/support/inprocess.py): no interpreter start-up and imports (~6 s a command). For tests about a
    command's outputs; tests about the process itself (signals, exit status, concurrency) use ``run_cmd``."""
    return run_inprocess


@pytest.fixture(scope="session")
def seed_tables(tmp_path_factory):
    """seed_tables(cache_dir, hardware=("midap",), overrides=("debug=search_tiny",)) -> copied files: the latency
    table(s) of the debug search space, built once for the session (tests/support/tables.py), copied into a test's
    own ``paths.cache_dir`` so its search does not build them again. Not for tests of the table cache itself."""
    shared = shared_table_dir(tmp_path_factory.getbasetemp())

    def _seed(cache_dir, hardware=("midap",), overrides=("debug=search_tiny",)):
        return _seed_tables(shared, cache_dir, hardware, overrides)

    return _seed


__all__ = ["CONF_DIR", "REPO_ROOT"]
