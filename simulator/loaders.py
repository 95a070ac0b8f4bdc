"""Model loaders for the CLI: ``timm:<name>``, an ONNX file or a JSON file -> simulator ``Graph``.

``timm:<name>`` builds the timm model (``pretrained=False``, torch and timm imported only then) and converts
it with the torch frontend at timm's default input size unless one is given; the graph is cached on disk
(keyed by timm and torch versions and the frontend's source), so a repeated call imports neither.
``*.onnx`` goes through the ONNX frontend (needs only ``onnx``). A JSON path is either a serialized
``Graph`` (``Graph.to_dict``) or is offered to every loader registered under the Python entry-point group
``simulator.model_loaders`` (each returns a ``Graph`` or ``None``); s3nas registers its ArchSpec loader
there, so the simulator never imports s3nas itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import sys
import warnings
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any, Callable, Iterator

from simulator.engine import MAX_SPATIAL
from simulator.graph import GRAPH_FORMAT, Graph

ENTRY_POINT_GROUP = "simulator.model_loaders"
CACHE_ENV = "SIMULATOR_CACHE_DIR"  # directory of the timm graph cache; empty = no cache


class ModelLoadError(ValueError):
    """A model spec that cannot be loaded (unknown name, unreadable file, no loader); one-line message."""


def load_model_graph(spec: str, input_size: int | None = None, *, use_cache: bool = True) -> Graph:
    """``timm:<name>``, an ONNX or a JSON path -> Graph; ``input_size`` overrides the model's default H = W."""
    if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                   or not 1 <= input_size <= MAX_SPATIAL):
        raise ModelLoadError(f"--input-size: must be an int between 1 and {MAX_SPATIAL} (the simulator's "
                             f"limit per side), got {input_size}")
    if spec.startswith("timm:"):
        return _load_timm(spec[len("timm:"):], input_size, use_cache)
    if spec.startswith("block:"):
        from simulator.blocks import BlockError, block_graph

        if input_size is None:
            raise ModelLoadError(f"{spec}: a block needs --input-size (its input height = width)")
        try:
            return block_graph(spec[len("block:"):], input_size)
        except BlockError as exc:
            raise ModelLoadError(str(exc)) from None
    if spec.lower().endswith(".onnx"):
        return _load_onnx(Path(spec), input_size)
    return _load_json(Path(spec), input_size)


def _load_onnx(path: Path, input_size: int | None) -> Graph:
    from simulator.frontends.onnx import OnnxImportError, graph_from_onnx

    if not path.is_file():
        raise ModelLoadError(f"model '{path}': no such file")
    try:
        return graph_from_onnx(path, input_size=input_size)
    except OnnxImportError as exc:
        raise ModelLoadError(f"model '{path}': {exc}") from None


def _load_timm(name: str, input_size: int | None, use_cache: bool = True) -> Graph:
    cache = _timm_cache_path(name, input_size) if use_cache and name else None
    if cache is None:
        return _build_timm_graph(name, input_size)
    graph, _ = _read_cached_graph(cache)
    if graph is not None:
        return graph
    # build-or-load under a lock: a second process building the same graph waits, then reads the first's
    with _file_lock(cache):
        graph, problem = _read_cached_graph(cache)
        if graph is not None:
            return graph
        if problem:
            warnings.warn(f"graph cache {cache} is unusable ({problem}); rebuilding it", stacklevel=3)
        graph = _build_timm_graph(name, input_size)
        _write_cached_graph(cache, graph)
        return graph


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<path>.lock`` for the block (unlocked where none can be taken: a cache only
    saves time); the kernel releases it when the holder exits, even killed."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a+b")  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process writing {path}", file=sys.stderr, flush=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:  # no flock on this file system: unlocked
            pass
        yield
    finally:
        handle.close()


def _build_timm_graph(name: str, input_size: int | None) -> Graph:
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is a project dependency
        raise ModelLoadError(f"timm:{name}: timm is not installed ({exc})") from None
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8] if name else []
        hint = f"; similar: {', '.join(close)}" if close else "; see timm.list_models()"
        raise ModelLoadError(f"unknown timm model '{name}'{hint}")
    from simulator.frontends.torch import graph_from_module

    model = timm.create_model(name, pretrained=False)
    channels, height, width = model.pretrained_cfg.get("input_size", (3, 224, 224))
    if input_size is not None:
        height = width = int(input_size)
    return graph_from_module(model, (channels, height, width), name=name)


def _cache_root() -> Path | None:
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return Path(env) if env else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "s3nas-simulator"


def _timm_cache_path(name: str, input_size: int | None) -> Path | None:
    """Cache file of a timm graph: keyed by timm/torch versions and the frontend and IR sources."""
    root = _cache_root()
    if root is None:
        return None
    try:
        versions = [version("timm"), version("torch")]
    except PackageNotFoundError:
        return None
    here = Path(__file__).parent
    digest = hashlib.sha256(repr((versions, name, input_size)).encode())
    for source in (here / "frontends" / "torch.py", here / "frontends" / "_ir.py", here / "graph.py"):
        try:
            digest.update(source.read_bytes())
        except OSError:
            return None
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    return root / "graphs" / f"{safe}-{input_size or 'default'}-{digest.hexdigest()[:16]}.json"


def _read_cached_graph(path: Path) -> tuple[Graph | None, str]:
    """(the cached graph, "") or (None, what is wrong: "" when there is no file); a bad one is rebuilt."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeDecodeError) as exc:
        return None, _one_line(exc)
    try:
        return Graph.from_dict(json.loads(text)), ""
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # truncated, garbage, another format
        return None, f"{type(exc).__name__}: {_one_line(exc)}"[:200]


def _write_cached_graph(path: Path, graph: Graph) -> None:
    from simulator.fileio import write_output

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_output(path, json.dumps(graph.to_dict()))
    except OSError:
        pass  # the cache only saves time: an unwritable one is skipped


def _load_json(path: Path, input_size: int | None) -> Graph:
    if not path.is_file():
        raise ModelLoadError(f"model '{path}': no such file (expected timm:<name> or a JSON file)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"model '{path}': not readable JSON ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and data.get("format") == GRAPH_FORMAT:
        try:
            graph = Graph.from_dict(data)
        except ValueError as exc:
            raise ModelLoadError(f"model '{path}': invalid simulator graph: {exc}") from None
        _check_input_size(graph, input_size, f"model '{path}' (a serialized graph)")
        return graph
    for entry_point in _registered_loaders():
        try:
            loader = entry_point.load()
        except Exception as exc:  # a broken plug-in must not hide the others
            raise ModelLoadError(f"model loader '{entry_point.value}' failed to import: {exc}") from None
        try:
            graph = _call_loader(loader, path, input_size)
        except ModelLoadError:
            raise
        except Exception as exc:  # a loader's own error about the file: one line, no traceback
            kind = "" if isinstance(exc, ValueError) else f"{type(exc).__name__}: "
            raise ModelLoadError(f"model '{path}' (loader {entry_point.name}): {kind}{_one_line(exc)}") from None
        if graph is not None:
            if not isinstance(graph, Graph):
                raise ModelLoadError(f"model loader '{entry_point.value}' returned {type(graph).__name__}, "
                                     "not a simulator Graph")
            _check_input_size(graph, input_size, f"model '{path}' (loader {entry_point.value})")
            return graph
    names = ", ".join(ep.name for ep in _registered_loaders()) or "none installed"
    raise ModelLoadError(f"model '{path}': no loader recognises this JSON (a serialized simulator graph, or "
                         f"a format of a registered '{ENTRY_POINT_GROUP}' loader: {names})")


def _registered_loaders() -> list[EntryPoint]:
    """Entry points of ``simulator.model_loaders`` (tests patch this)."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _call_loader(loader: Callable[..., Any], path: Path, input_size: int | None) -> Any:
    """Pass ``input_size`` when the loader takes it as a keyword; a loader that does not is called with the
    path alone, and a graph it returns at another size is refused by ``_check_input_size``."""
    if input_size is None:
        return loader(path)
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        params = {}
    if "input_size" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return loader(path, input_size=input_size)
    return loader(path)


def _check_input_size(graph: Graph, input_size: int | None, what: str) -> None:
    if input_size is not None and tuple(graph.input_shape[1:]) != (input_size, input_size):
        raise ModelLoadError(f"--input-size {input_size}: {what} has a fixed input shape "
                             f"{tuple(graph.input_shape)}")
