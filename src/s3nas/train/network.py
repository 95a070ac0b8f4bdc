"""What train.py trains: an ArchSpec (arch.json, a search run dir) or a timm zoo network (``timm:<name>``).

``resolve_network(text)`` turns the ``arch=`` value into a :class:`NetworkSource` (one-line ``ConfigError``
for a missing/invalid file or an unknown timm model); ``build_network`` makes the plain, untrained
nn.Module; ``deploy_latency`` times it on the hardware's LatencyBackend at the deployment shape. A source
round-trips through ``to_meta``/``from_meta`` (what checkpoints and weights.pt record).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import timm
from torch import nn

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.arch.spec import ArchSpec
from s3nas.errors import ConfigError
from s3nas.nn.builder import build_model

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class NetworkSource:
    """An ArchSpec (``spec``) or a timm model name (``timm_name``); ``origin`` says where it came from."""

    spec: Optional[ArchSpec] = None
    timm_name: Optional[str] = None
    origin: str = ""

    @property
    def is_timm(self) -> bool:
        return self.timm_name is not None

    @property
    def label(self) -> str:
        """``timm:<name>`` or the ArchSpec's compact string (summary.json's ``arch``)."""
        if self.is_timm:
            return f"{TIMM_PREFIX}{self.timm_name}"

        return codec.encode(self.spec)

    @property
    def name(self) -> str:
        return self.timm_name if self.is_timm else (self.spec.name if self.spec else "")

    def to_meta(self) -> dict:
        """JSON-able description (stored in checkpoints and weights.pt)."""
        if self.is_timm:
            return {"timm": self.timm_name, "origin": self.origin}

        return {"archspec": codec.to_dict(self.spec), "origin": self.origin}

    @staticmethod
    def from_meta(meta: dict) -> "NetworkSource":
        """Inverse of ``to_meta``."""
        if meta.get("timm"):
            return NetworkSource(timm_name=str(meta["timm"]), origin=str(meta.get("origin", "")))

        return NetworkSource(spec=codec.from_dict(meta["archspec"]), origin=str(meta.get("origin", "")))


def resolve_network(text: Any) -> NetworkSource:
    """``arch=`` value -> NetworkSource; ConfigError naming ``arch`` and what is accepted."""
    if text is None or str(text).strip() == "":
        raise ConfigError("arch: not set; pass arch=<arch.json>, arch=<search run dir> or arch=timm:<name> "
                          "(e.g. timm:efficientnet_b0)")
    text = str(text).strip()
    if text.startswith(TIMM_PREFIX):
        return NetworkSource(timm_name=check_timm_name(text[len(TIMM_PREFIX):]), origin=text)

    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "arch.json").is_file():
            raise ConfigError(f"arch: directory '{path}' holds no arch.json (is it a finished search run dir?)")
        path = path / "arch.json"
    elif not path.exists():
        raise ConfigError(f"arch: no file or directory '{path}'; pass arch=<arch.json>, arch=<search run dir> "
                          f"or arch=timm:<name>")
    spec = codec.load_json(path)  # ArchSpecError (a ConfigError) naming the file and field
    return NetworkSource(spec=spec, origin=str(path.resolve()))


def check_timm_name(name: str) -> str:
    """``name`` if timm knows it; ConfigError with the closest names otherwise."""
    name = name.strip()
    if name and timm.is_model(name):
        return name
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6) if name else []
    hint = f"; closest: {', '.join(close)}" if close else "; list them with `python -c \"import timm; print(timm.list_models())\"`"
    raise ConfigError(f"arch: 'timm:{name}' is not a timm model{hint}")


def build_network(source: NetworkSource, num_classes: int, in_channels: int = 3, *, drop_path_rate: float = 0.0,
                  dropout: Optional[float] = None) -> nn.Module:
    """Untrained plain network; ``dropout=None`` keeps the ArchSpec's (timm: its default)."""
    if source.is_timm:
        import timm

        kwargs: dict = {"num_classes": num_classes, "in_chans": in_channels, "drop_path_rate": drop_path_rate}
        if dropout is not None:
            kwargs["drop_rate"] = dropout
        model = timm.create_model(source.timm_name, pretrained=False, **kwargs)
        _init_classifier_like_s3nas(model)
        return model

    spec = source.spec if source.spec.in_channels == in_channels else replace(source.spec, in_channels=in_channels)
    return build_model(spec, num_classes=num_classes, drop_path_rate=drop_path_rate, dropout=dropout)


def _init_classifier_like_s3nas(model: nn.Module) -> None:
    """Give a timm model's classifier the init of s3nas networks (``init_weights_goog``: r = 1/sqrt(in)).

    timm's EfficientNet-family init draws the classifier from U(-r, r) with r = 1/sqrt(classes), tuned for
    1000 classes; with digits' 10 it starts with logits of std ~5 (CE ~7.5 over the first steps) and, under
    the digits recipe, diverged on most seeds. Same head init for every network keeps the comparison fair.
    """
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(classifier, nn.Linear):
        bound = 1.0 / math.sqrt(classifier.weight.shape[1])
        nn.init.uniform_(classifier.weight, -bound, bound)
        if classifier.bias is not None:
            nn.init.zeros_(classifier.bias)


def deploy_latency(source: NetworkSource, backend: Any, *, input_size: int, num_classes: int,
                   in_channels: int = 3) -> tuple[Any, int]:
    """(LatencyResult, MACs) of the network at the deployment shape on the hardware's LatencyBackend
    (timing does not depend on the trained weights); ConfigError if the backend cannot run it."""
    try:
        if source.is_timm:
            import timm

            model = timm.create_model(source.timm_name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
            result = backend.evaluate_model(model, (in_channels, input_size, input_size), source.timm_name)
            return result, int(result.details.get("macs", 0))
        spec = replace(source.spec, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        return backend.evaluate(spec), int(archspec_to_graph(spec).macs)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - an op the backend does not map is the user's model choice
        raise ConfigError(f"arch: {backend.name} cannot run '{source.label[:80]}' at {input_size}x{input_size} "
                          f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
