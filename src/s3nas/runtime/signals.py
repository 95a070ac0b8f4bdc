"""Cluster signals: SIGTERM and SIGUSR1 stop a command at a clean point and say how to resume it.

Every entry point installs these handlers for the duration of its task (``s3nas.runtime.entry``). Outside a
training loop a signal is raised at once as a ``SignalInterrupt`` (a KeyboardInterrupt, so every Ctrl-C path —
cleanup, the one-line message — applies). While a single-process Lightning fit runs, the
``StopOnSignal`` callback (``s3nas.runtime.callbacks``) holds it instead: before the next training batch it
writes a resumable checkpoint (``last.ckpt``, atomically, a second signal during the write is held) and
then raises. The entry point prints ``interrupted by SIGTERM; ...; resume with: <command>`` and exits with
128 + the signal number (SIGTERM 143, SIGUSR1 138; Ctrl-C stays 130).

Under SLURM with Lightning's auto-requeue (``SLURMEnvironment`` detected, e.g. ``hydra/launcher=submitit_slurm``)
SIGUSR1 is left to Lightning, which saves its HPC checkpoint and runs ``scontrol requeue``.

``$S3NAS_FAULT_SIGNAL_AT_STEP=N:TERM`` (tests only, not a config key) makes the training send itself the
signal after optimizer step N, so tests hit a known step through the real handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

#: Signals this module handles (SIGUSR1 is SLURM's time-limit warning and Lightning's requeue signal).
HANDLED = (signal.SIGTERM, signal.SIGUSR1)
#: Exit status after Ctrl-C (no signal of ours received).
INTERRUPT_EXIT = 130
#: Fault injection for the signal tests (not a config key): "N:TERM" or "N:USR1".
FAULT_SIGNAL_ENV = "S3NAS_FAULT_SIGNAL_AT_STEP"


class SignalInterrupt(KeyboardInterrupt):
    """A SIGTERM / SIGUSR1 turned into an interrupt (handled like Ctrl-C, with its own exit status)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = int(signum)


@dataclass
class _State:
    received: int | None = None  # the first signal received
    raised: bool = False  # a SignalInterrupt has been raised (later signals only get recorded)
    deferred: int = 0  # > 0 while a training loop polls ``pending()`` and stops by itself
    checkpoint: str | None = None  # the checkpoint written at the stop, if any
    step: int | None = None  # its optimizer step
    installed_pid: int | None = None


_state = _State()


def signal_name(signum: int) -> str:
    """'SIGTERM' for 15."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def slurm_requeue_active() -> bool:
    """True when Lightning would auto-requeue this job on SIGUSR1 (a batch job under SLURM)."""
    if "SLURM_NTASKS" not in os.environ and "SLURM_JOB_ID" not in os.environ:
        return False
    try:
        from lightning_fabric.plugins.environments import SLURMEnvironment
    except ImportError:  # pragma: no cover - Lightning is a dependency
        return False
    return bool(SLURMEnvironment.detect())


def handled_signals() -> tuple:
    """The signals this process handles: SIGUSR1 is Lightning's under SLURM auto-requeue."""
    return tuple(s for s in HANDLED if not (s == signal.SIGUSR1 and slurm_requeue_active()))


def install() -> Callable[[], None]:
    """Install the handlers (main thread only) with a fresh state; returns a function restoring the previous ones."""
    global _state
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    _state = _State(installed_pid=os.getpid())
    previous = {signum: signal.getsignal(signum) for signum in handled_signals()}
    for signum in previous:
        signal.signal(signum, _handler)

    def restore() -> None:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is _handler:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    return restore


def _handler(signum: int, frame) -> None:
    if _state.received is None:
        _state.received = int(signum)
    if _state.deferred > 0 or _state.raised:
        return  # a training loop stops at its next batch / an interrupt is already on its way
    _state.raised = True
    raise SignalInterrupt(signum)


def _reset_in_child() -> None:
    # forked workers (latency table, data loading) keep the default action: our handler belongs to the parent
    if _state.installed_pid is not None and os.getpid() != _state.installed_pid:
        for signum in HANDLED:
            if signal.getsignal(signum) is _handler:
                signal.signal(signum, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


def reinstall() -> None:
    """Put our handlers back over others (Lightning's SIGTERM notifier) while a single-process fit runs."""
    if _state.installed_pid == os.getpid() and threading.current_thread() is threading.main_thread():
        for signum in handled_signals():
            signal.signal(signum, _handler)


def enter_deferred() -> None:
    """From now on a signal is only recorded: the training loop polls ``pending()`` and stops by itself."""
    _state.deferred += 1


def leave_deferred() -> None:
    """Undo one ``enter_deferred``."""
    _state.deferred = max(0, _state.deferred - 1)


#: Signals held while a checkpoint is written: Ctrl-C and the cluster's SIGTERM / SIGUSR1.
HELD_DURING_WRITES = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGUSR1 until the block is done (an interrupt inside torch.save corrupts its zip
    writer), then deliver the first one received as the previous handler would have; later ones are dropped
    (the first already stops the run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in HELD_DURING_WRITES}
    for signum in HELD_DURING_WRITES:
        signal.signal(signum, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    if received:
        signum = received[0]
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, None)  # Python's SIGINT handler raises KeyboardInterrupt here, ours SignalInterrupt
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)  # the default action (terminate), now that the file is complete


def pending() -> int | None:
    """The signal received and not yet raised, or None."""
    return _state.received if _state.received is not None and not _state.raised else None


def received() -> int | None:
    """The first SIGTERM / SIGUSR1 this task received, or None."""
    return _state.received


def raise_pending() -> None:
    """Raise the pending signal as a SignalInterrupt (no-op without one)."""
    signum = pending()
    if signum is not None:
        _state.raised = True
        raise SignalInterrupt(signum)


def record_checkpoint(path: str, step: int) -> None:
    """Remember the checkpoint written at the stop (named in the message)."""
    _state.checkpoint, _state.step = str(path), int(step)


def stop_checkpoint() -> tuple[str | None, int | None]:
    """(path, step) of the checkpoint written at the stop, or (None, None)."""
    return _state.checkpoint, _state.step


def exit_code() -> int:
    """128 + the signal received (143 SIGTERM, 138 SIGUSR1); 130 after Ctrl-C."""
    return 128 + _state.received if _state.received is not None else INTERRUPT_EXIT


def fault_signal_at_step() -> tuple[int, int] | None:
    """(step, signum) from $S3NAS_FAULT_SIGNAL_AT_STEP ("6:TERM"), or None."""
    from s3nas.errors import ConfigError

    text = os.environ.get(FAULT_SIGNAL_ENV, "").strip()
    if not text:
        return None
    step_text, _, name = text.partition(":")
    name = (name or "TERM").upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    if not step_text.isdigit() or int(step_text) < 1 or name not in ("SIGTERM", "SIGUSR1", "SIGINT"):
        raise ConfigError(f"{FAULT_SIGNAL_ENV}: must be <step >= 1>:<TERM|USR1|INT>, got {text!r}")
    return int(step_text), int(getattr(signal, name))
