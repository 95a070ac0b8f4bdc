"""Atomic file writes: a temp file in the destination directory, then ``os.replace``.

Readers never see a half-written file, and an interrupted run leaves the old file (or none) behind.
``atomic_write`` hands the temp file's handle to a writer; ``atomic_output_path`` hands its path to a library
that writes by file name (``torch.onnx.export``) and only renames it when the ``with`` block succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temp file next to ``path``, fsync, rename over ``path``; on any error the
    temp file is removed and the old ``path`` stays. New files get the user's umask (mkstemp makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        for suffix in side_suffixes:
            Path(f"{tmp_name}{suffix}").unlink(missing_ok=True)


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
