"""Run an s3nas command line in the test process: ``run_inprocess(["search.py", "debug=search_tiny", ...])``.

What a subprocess costs and this does not: the interpreter's start-up and ~6 s of imports (torch, Lightning,
torchmetrics, torchvision, scipy) per command. Use it for tests about a command's outputs (files, summaries,
resume, printed lines); tests about the process itself (real signals, a process's exit status, concurrency,
start-up imports, a changed HOME) keep the subprocess (``run_cmd`` in conftest.py).

The command runs as ``python <args>`` would run it: ``search.py`` / ``train.py`` through ``runpy.run_path``,
``-m <module>`` through ``runpy.run_module`` as ``__main__`` (so Hydra sees the same task and the resume line
the same command), ``sys.argv`` as the command line, in ``cwd``, with the environment of ``run_cmd`` (offline W&B,
no inherited HYDRA_FULL_ERROR) plus ``env``; stdout and stderr are captured (also the lines of log handlers
that write to the console), ``SystemExit`` becomes the return code and an uncaught exception prints its
traceback on stderr with return code 1, as the interpreter does. One thread (as OMP_NUM_THREADS=1 in a
subprocess).

Everything a command changes in the process is put back afterwards: the environment (PL_GLOBAL_SEED,
HYDRA_FULL_ERROR, ...), the working directory, sys.argv, logging (Hydra's job log handlers are closed),
warning filters, torch's threads and deterministic-algorithms switch, the torch / numpy / random RNG states,
signal handlers and Hydra's singletons.
"""

from __future__ import annotations

import io
import logging
import os
import random
import runpy
import signal
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Overrides that make a ``debug=search_tiny`` search about twice as cheap (2 training batches an epoch instead of
#: 4, so 6 steps instead of 12; 1 validation batch; 2 batches for the delivered child's BN statistics), for tests
#: that check what a search writes, not how far 12 steps take it.
SHORT_SEARCH = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "schedule.bn_recalibration_batches=2"]
#: Val and test splits of 5% of the digits instead of 15%: the delivered network is evaluated on both in full at the
#: end of a search (with SHORT_SEARCH at 16 px: 4.6 -> 3.5 CPU-s a search), for tests that check a search's
#: bookkeeping (files, resume, sweeps, faults), not its accuracy.
SMALL_SPLITS = ["data.val_fraction=0.05", "data.test_fraction=0.05"]
#: A 6-position MBConv space (one 3x3 kernel, the expansion candidates), its latency table built in the command's
#: process in a fraction of a second: a tiny search costs ~1.2 CPU-s in it against ~3.5 in the debug space (mixed
#: kernels, ~300 small convolutions a forward, a table of ~4 CPU-s). For tests whose subject is not the space; its
#: all-on network is 0.69 ms on midap and 1.01 ms on systolic at 16 px, so a target below those trains the thresholds.
SMALL_SPACE = ["supernet.depths=[1,1,1,1,2]", "supernet.block_type=mbconv", "candidates.mbconv.kernels=[3]",
               "schedule.lut_workers=1"]


class _Tee(io.StringIO):
    """A text stream for sys.stdout / sys.stderr that is not a terminal (as a subprocess pipe)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def isatty(self) -> bool:
        return False


def _is_out(stream) -> bool:
    return isinstance(stream, _Tee) and stream.name == "out"


def _console_handlers(streams) -> list[tuple[logging.StreamHandler, object]]:
    """(handler, its stream) of every logging StreamHandler that writes to one of ``streams`` (not files)."""
    found = []
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler or (isinstance(handler, logging.StreamHandler)
                                                          and not isinstance(handler, logging.FileHandler)):
                if isinstance(handler.stream, _Tee) or any(handler.stream is s for s in streams):
                    found.append((handler, handler.stream))
    return found


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


def _fresh_interpreter_warnings() -> None:
    """The warning filters of a fresh ``python`` (not pytest's), warnings printed on (the captured) stderr."""
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.simplefilter("ignore", category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    # runpy's note that `-m <module>` is already imported (by the test): a fresh interpreter has not imported it
    warnings.filterwarnings("ignore", message=".*found in sys.modules after import of package.*",
                            category=RuntimeWarning)
    warnings.showwarning = _print_warning


def _logging_state() -> dict:
    loggers = {name: lg for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    root = logging.getLogger()
    return {
        "root": (root.level, list(root.handlers), list(root.filters), root.disabled),
        "loggers": {name: (lg.level, list(lg.handlers), lg.propagate, lg.disabled, list(lg.filters))
                    for name, lg in loggers.items()},
        "raise": logging.raiseExceptions,
        "disable": logging.root.manager.disable,
    }


def _restore_logging(state: dict) -> None:
    before = {id(h) for h in state["root"][1]}
    for _, (_, handlers, *_rest) in state["loggers"].items():
        before.update(id(h) for h in handlers)
    root = logging.getLogger()
    current = [root] + [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in current:  # close what the command added (Hydra's console and job-log file handlers)
        for handler in list(logger.handlers):
            if id(handler) not in before:
                logger.removeHandler(handler)
                try:
                    handler.close()
                except Exception:  # noqa: BLE001
                    pass
    level, handlers, filters, disabled = state["root"]
    root.setLevel(level)
    root.handlers[:] = handlers
    root.filters[:] = filters
    root.disabled = disabled
    for name, (level, handlers, propagate, disabled, filters) in state["loggers"].items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.disabled = disabled
        logger.filters[:] = filters
    logging.raiseExceptions = state["raise"]
    logging.disable(state["disable"])


def _torch_state() -> Optional[dict]:
    if "torch" not in sys.modules:
        return None
    import torch

    return {"threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(), "rng": torch.get_rng_state(),
            "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)}


def _restore_torch(state: Optional[dict]) -> None:
    if "torch" not in sys.modules:
        return
    import torch

    if state is None:  # the command imported torch: leave it as a fresh import has it
        torch.use_deterministic_algorithms(False)
        return
    torch.set_num_threads(state["threads"])
    torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["warn_only"])
    torch.set_rng_state(state["rng"])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state["cudnn"]


def run_inprocess(args: Iterable, cwd=REPO_ROOT, env: Optional[Mapping[str, str]] = None,
                  check: bool = True, threads: int = 1, timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """``python <args>`` in this process -> CompletedProcess(args, returncode, stdout, stderr).

    ``check=True`` fails the test with the output's tail on a non-zero return code (as ``run_cmd``); ``timeout``
    is accepted for ``run_cmd``'s signature and not enforced (a command cannot be stopped from outside here).
    """
    import numpy as np
    import pytest

    args = [str(a) for a in args]
    cwd = Path(cwd)
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_argv = list(sys.argv)
    saved_out, saved_err = sys.stdout, sys.stderr
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    saved_logging = _logging_state()
    saved_np, saved_random = np.random.get_state(), random.getstate()
    saved_torch = _torch_state()
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    saved_hydra_cfg = HydraConfig.instance().cfg
    out, err = _Tee("out"), _Tee("err")
    consoles = _console_handlers({id(saved_out): saved_out, id(saved_err): saved_err,
                                  id(sys.__stdout__): sys.__stdout__, id(sys.__stderr__): sys.__stderr__}.values())
    returncode = 0
    try:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"})
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        os.chdir(cwd)
        if "torch" in sys.modules and threads:
            sys.modules["torch"].set_num_threads(threads)
        sys.stdout, sys.stderr = out, err
        for handler, stream in consoles:  # Lightning's console lines go where a subprocess would print them
            handler.setStream(out if stream is saved_out or stream is sys.__stdout__ or _is_out(stream) else err)
        with warnings.catch_warnings():
            _fresh_interpreter_warnings()
            if args[0] == "-m":
                sys.argv = [args[1], *args[2:]]
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            else:
                script = Path(args[0]) if Path(args[0]).is_absolute() else cwd / args[0]
                sys.argv = [args[0], *args[1:]]
                runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            returncode = 0
        elif isinstance(code, int):
            returncode = code
        else:
            err.write(f"{code}\n")
            returncode = 1
    except KeyboardInterrupt:
        traceback.print_exc(file=err)
        returncode = 130
    except BaseException:  # noqa: BLE001 - what the interpreter would print before exiting with 1
        traceback.print_exc(file=err)
        returncode = 1
    finally:
        sys.stdout, sys.stderr = saved_out, saved_err
        for handler, stream in consoles:
            handler.setStream(stream if not isinstance(stream, _Tee) else saved_out if _is_out(stream) else saved_err)
        for handler, _ in _console_handlers(()):  # made during the run (a first import of Lightning)
            handler.setStream(saved_out if _is_out(handler.stream) else saved_err)
        _restore_logging(saved_logging)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for signum, handler in saved_signals.items():
            if handler is not None:
                signal.signal(signum, handler)
        np.random.set_state(saved_np)
        random.setstate(saved_random)
        _restore_torch(saved_torch)
        if GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = saved_hydra_cfg
    proc = subprocess.CompletedProcess(["python", *args], returncode, out.getvalue(), err.getvalue())
    if check and returncode != 0:
        pytest.fail(f"exit {returncode}: python {' '.join(args)} (in-process)\n"
                    f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc
