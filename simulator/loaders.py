"""Model loaders for the CLI: ``timm:<name>`` or a JSON file -> simulator ``Graph``.

``timm:<name>`` builds the timm model (``pretrained=False``, torch and timm imported only then) and converts
it with the torch frontend at timm's default input size unless one is given. A JSON path is either a
serialized ``Graph`` (``Graph.to_dict``) or is offered to every loader registered under the Python
entry-point group ``simulator.model_loaders`` (each returns a ``Graph`` or ``None``); s3nas registers its
ArchSpec loader there, so the simulator never imports s3nas itself.
"""

from __future__ import annotations

import inspect
import json
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable

from simulator.graph import GRAPH_FORMAT, Graph

ENTRY_POINT_GROUP = "simulator.model_loaders"


class ModelLoadError(ValueError):
    """A model spec that cannot be loaded (unknown name, unreadable file, no loader); one-line message."""


def load_model_graph(spec: str, input_size: int | None = None) -> Graph:
    """``timm:<name>`` or a JSON path -> Graph; ``input_size`` overrides the model's default H = W."""
    if input_size is not None and int(input_size) < 1:
        raise ModelLoadError(f"--input-size: must be a positive int, got {input_size}")
    if spec.startswith("timm:"):
        return _load_timm(spec[len("timm:"):], input_size)
    return _load_json(Path(spec), input_size)


def _load_timm(name: str, input_size: int | None) -> Graph:
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
        graph = _call_loader(loader, path, input_size)
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


def _call_loader(loader: Callable[..., Any], path: Path, input_size: int | None) -> Any:
    """Pass ``input_size`` when the loader takes it (as a keyword or a second positional argument)."""
    if input_size is None:
        return loader(path)
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return loader(path)
    if "input_size" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return loader(path, input_size=input_size)
    return loader(path)


def _check_input_size(graph: Graph, input_size: int | None, what: str) -> None:
    if input_size is not None and tuple(graph.input_shape[1:]) != (input_size, input_size):
        raise ModelLoadError(f"--input-size {input_size}: {what} has a fixed input shape "
                             f"{tuple(graph.input_shape)}")
