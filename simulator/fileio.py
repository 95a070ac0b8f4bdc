"""Writing the simulator's output files: atomic for regular files, in place for special ones.

A regular file (or a new path) is written to a temporary file next to it and renamed over it, so a reader
never sees half a file and a failed write leaves the old one. A symlink is followed (its target is
replaced, the link stays); a special file (``/dev/null``, a FIFO, a terminal) is written in place, never
replaced by a rename. New files get the user's umask (``0666 & ~umask``), an existing file keeps its mode.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_output(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (atomically when it is or will be a regular file); raises OSError."""
    target = Path(os.path.realpath(path))  # follow symlinks: replace the target, keep the link
    try:
        st = target.stat()
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        with open(target, "w") as fh:  # device, FIFO, socket: write in place
            fh.write(text)
        return
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
