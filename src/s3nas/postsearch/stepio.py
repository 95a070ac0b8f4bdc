"""Inputs and figures shared by the third S3NAS step's commands (scaling, post-processing, SE removal).

``load_arch(text)`` reads ``arch=`` (an arch.json or any run dir holding one: search, train, scaling,
post-processing); ``measure(spec, backend)`` the figures every step reports for a network (latency on the
hardware's LatencyBackend with its source, MACs at its deployment input size, and
parameters counted exactly as ``train.py`` counts them, without building the torch model). Nothing here
imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.arch.params import count_params
from s3nas.arch.spec import ArchSpec
from s3nas.errors import ConfigError

ARCH_FILE = "arch.json"
SUMMARY_FILE = "summary.json"


def load_arch(text: Any, key: str = "arch") -> tuple[ArchSpec, Path]:
    """(ArchSpec, the file it came from) for ``arch=<arch.json | run dir>``; ConfigError naming ``key``."""
    if text is None or str(text).strip() == "":
        raise ConfigError(f"{key}: not set; pass {key}=<arch.json> or {key}=<run dir holding arch.json> "
                          f"(search, train, scaling or post-processing run)")
    path = Path(str(text).strip()).expanduser()
    if path.is_dir():
        if not (path / ARCH_FILE).is_file():
            raise ConfigError(f"{key}: directory '{path}' holds no {ARCH_FILE} (is it a finished run dir?)")
        path = path / ARCH_FILE
    elif not path.is_file():
        raise ConfigError(f"{key}: no file or directory '{path}'; pass {key}=<arch.json> or {key}=<run dir>")
    return codec.load_json(path), path.resolve()  # ArchSpecError (a ConfigError) names the file and field


@dataclass(frozen=True)
class Figures:
    """What each step reports for a network: latency on the hardware's backend (and how), MACs, parameters."""

    latency_ms: float
    macs: int
    params: int
    input_size: int
    latency_source: str = ""
    latency_noise_pct: Optional[float] = None

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}latency_ms": self.latency_ms, f"{prefix}macs": self.macs, f"{prefix}params": self.params,
                f"{prefix}input_size": self.input_size}


def change_fields(before: Figures, after: Figures) -> dict:
    """A step's summary fields for the network it delivers (``after``) and the one it started from (``before``)."""
    return {"latency_ms": after.latency_ms, "latency_source": after.latency_source,
            "latency_noise_pct": after.latency_noise_pct, "latency_before_ms": before.latency_ms,
            "latency_change_ms": after.latency_ms - before.latency_ms, "params": after.params,
            "params_before": before.params, "macs": after.macs, "macs_before": before.macs}


def measure(spec: ArchSpec, backend: Any) -> Figures:
    """Latency on ``backend`` (a LatencyBackend), MACs (deployment input size) and parameter count of ``spec``."""
    result = backend.evaluate(spec)
    return Figures(latency_ms=float(result.latency_ms), macs=int(archspec_to_graph(spec).macs),
                   params=count_params(spec), input_size=int(spec.input_size), latency_source=result.source,
                   latency_noise_pct=result.noise_pct)


def parse_block_list(value: Any, n_blocks: int, key: str) -> list[int]:
    """Block indices from a list/tuple of ints or a string like '0,3,5' / '2-6'; ConfigError naming ``key``."""
    items: list[Any]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        items = [t for t in str(value).replace(" ", "").split(",") if t]
    indices: list[int] = []
    for item in items:
        text = str(item)
        try:
            if "-" in text.lstrip("-"):
                lo, hi = (int(t) for t in text.split("-", 1))
                indices.extend(range(lo, hi + 1))
            else:
                indices.append(int(text))
        except ValueError:
            raise ConfigError(f"{key}: {item!r} is not a block index; use all, none or a list of block indices "
                              f"like [0,3,5] or '2-6' (0..{n_blocks - 1})") from None
    bad = [i for i in indices if not 0 <= i < n_blocks]
    if bad or not indices:
        raise ConfigError(f"{key}: block indices {bad or '[]'} out of range; the network has blocks 0..{n_blocks - 1}")
    return sorted(set(indices))
