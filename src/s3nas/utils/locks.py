"""Advisory file locks for the on-disk caches shared by concurrent commands (stdlib ``fcntl.flock``).

Two commands building the same cache entry at once (a joblib multirun, a benchmark beside a search) take an
exclusive lock on ``<file>.lock`` beside it around build-or-load: the second one waits, then loads what the
first wrote instead of building it again. The lock is released by the kernel when its holder exits, even on
SIGKILL, so a crashed build never blocks the next one. Where the lock file cannot be made (a read-only or
missing cache directory, a file system without ``flock``) the block runs unlocked: a cache only saves time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, caches are still written atomically
    fcntl = None  # type: ignore[assignment]

__all__ = ["file_lock", "lock_path_of"]


def lock_path_of(path: str | os.PathLike[str]) -> Path:
    """The lock file guarding ``path``: ``<path>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], what: str = "") -> Iterator[bool]:
    """Hold an exclusive lock on ``<path>.lock`` for the block; yields True when locked, False when no lock
    could be taken (the block then runs unlocked). When another process holds it, one line on stderr says
    whom we wait for (``what``: e.g. "latency table"), then the call blocks until it is released."""
    lock = lock_path_of(path)
    handle = None
    if fcntl is not None:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock, "a+b")
        except OSError:
            handle = None
    if handle is None:
        yield False
        return
    try:
        yield _acquire(handle.fileno(), path, what)
    finally:
        handle.close()  # closing releases the lock


def _acquire(fd: int, path: str | os.PathLike[str], what: str) -> bool:
    """Take the exclusive lock (waiting, with one line on stderr, when another process holds it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for another process writing {what + ' ' if what else ''}{path}", file=sys.stderr,
              flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # no flock on this file system (some network mounts): unlocked
        return False
    return True
