"""Atomic file writes: a temp file in the destination directory, then ``os.replace``.

Readers never see a half-written file, and an interrupted run leaves the old file (or none) behind.
``atomic_write`` hands the temp file's handle to a writer; ``atomic_output_path`` hands its path to a library
that writes by file name (``torch.onnx.export``) and only renames it when the ``with`` block succeeds.
``append_lines`` appends whole lines to a log with one ``write`` and truncates a failed append back, so a
log never ends in a partial record it wrote.

A full disk (ENOSPC, or EDQUOT over a quota) always surfaces as an ``OSError`` whose ``filename`` is the
destination path (also when the writing library raised something else while the file system had no space
left), so the entry point can print one line naming it (``disk_full_message``). ``$S3NAS_FAULT_ENOSPC``
(a comma-separated list of ``fnmatch`` patterns of destination file names; tests only, not a config key)
makes these writers fail with ENOSPC after writing part of the temp file (or of the appended line).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from s3nas.errors import UserError

#: Fault injection for the full-disk tests (not a config key): fnmatch patterns of file names that fail.
FAULT_ENOSPC_ENV = "S3NAS_FAULT_ENOSPC"
#: errno values meaning 'no space left' (the device, or the user's quota)
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temp file next to ``path``, fsync, rename over ``path``; on any error the
    temp file is removed and the old ``path`` stays. New files get the user's umask (mkstemp makes 0600).
    A full disk raises ``OSError(ENOSPC)`` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        _raise_disk_full(error, path)
        raise
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            _inject_enospc(path, handle.fileno())
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        try:
            _raise_disk_full(error, path)  # checked while the temp file still holds its space
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_output_path(path: str | os.PathLike[str], side_suffixes: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a temp path next to ``path`` (same suffix) for a writer that takes a file name; when the block
    ends without an error the temp file is fsynced and renamed over ``path`` with the user's umask, otherwise
    it is removed and the old ``path`` stays. ``side_suffixes``: files the writer may leave beside the temp
    file (``<temp name><suffix>``, e.g. ONNX external data ``.data``), removed in every case."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    except OSError as error:
        _raise_disk_full(error, path)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as handle:
                _inject_enospc(path, handle.fileno())
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
            os.replace(tmp, path)
        except BaseException as error:
            _raise_disk_full(error, path)  # checked while the temp file still holds its space
            raise
    finally:
        tmp.unlink(missing_ok=True)
        for suffix in side_suffixes:
            Path(f"{tmp_name}{suffix}").unlink(missing_ok=True)


def append_lines(path: str | os.PathLike[str], lines: Sequence[str]) -> Path:
    """Append ``lines`` (each without its newline) to ``path`` with one ``write()`` (O_APPEND: concurrent
    writers never interleave inside a line) and fsync. A line torn earlier (by a kill) is ended first so it
    stays a line of its own. When the write fails or is short (a full disk), the file is truncated back to
    its size before the append (unless another writer appended meanwhile) and ``OSError`` naming ``path``
    is raised: a failed append leaves no partial line."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as error:
        _raise_disk_full(error, path)
        raise
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        data = (("\n" if torn else "") + "\n".join(lines) + "\n").encode()
        written = 0
        try:
            if _fault_matches(path):
                written = os.write(fd, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            written = os.write(fd, data)
            if written != len(data):  # a short write to a regular file: the device is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            os.fsync(fd)
        except OSError as error:
            if written and os.fstat(fd).st_size == size + written:
                os.ftruncate(fd, size)
            _raise_disk_full(error, path)
            if error.filename is None:
                error.filename = str(path)
            raise
    finally:
        os.close(fd)
    return path


def is_disk_full(error: BaseException) -> bool:
    """True for an OSError that means no space is left (ENOSPC, or EDQUOT: the user's quota)."""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


def disk_full_message(path: Any) -> str:
    """The one line a full disk is reported with (``path``: the file that could not be written)."""
    where = f" writing '{os.fspath(path)}'" if path else ""
    return (f"no space left on device{where}; free space (or set hydra.run.dir / paths.cache_dir elsewhere) "
            "and rerun the same command to resume")


def _raise_disk_full(error: BaseException, path: Path) -> None:
    """Re-raise a full disk met while writing ``path`` as ``OSError(ENOSPC/EDQUOT)`` naming ``path``; return
    for any other error. Libraries writing through a handle or by name (torch's zip writer, the ONNX
    exporter) may turn ENOSPC into a RuntimeError: when the file system has no space left, that is the cause."""
    if is_disk_full(error):
        error.filename = str(path)  # the destination, not the temp file's name
        raise error
    other_os_error = isinstance(error, OSError) and error.errno is not None
    if isinstance(error, Exception) and not isinstance(error, UserError) and not other_os_error \
            and _no_space_left(path.parent):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error


def _no_space_left(directory: Path) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False


def _fault_matches(path: Path) -> bool:
    """True when $S3NAS_FAULT_ENOSPC names ``path``'s file name (fnmatch patterns, comma-separated)."""
    patterns = [p.strip() for p in os.environ.get(FAULT_ENOSPC_ENV, "").split(",") if p.strip()]
    return any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns)


def _inject_enospc(path: Path, fd: int) -> None:
    """Fault injection ($S3NAS_FAULT_ENOSPC): keep half of what was written to the temp file, then fail as a
    full disk would."""
    if _fault_matches(path):
        os.ftruncate(fd, os.fstat(fd).st_size // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent dirs are created); returns the path."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (parent dirs are created); returns the path."""
    return atomic_write(path, lambda handle: handle.write(text.encode(encoding)))


def current_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically (NaN/inf become null, trailing newline)."""
    text = json.dumps(finite_json(obj), indent=indent, default=_json_default, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def _json_default(obj: Any) -> Any:
    """Serialise paths, numpy scalars/arrays and OmegaConf containers."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
