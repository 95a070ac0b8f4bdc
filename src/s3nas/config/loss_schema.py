"""Structured-config schema of the `loss` config group (paper Eq. 9) and its value check.

``register(cs)`` stores the schema in Hydra's ConfigStore (called by ``s3nas.config.register_configs``);
``check_loss`` checks values (the ``RANGES`` table) and raises ``ConfigError`` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s3nas.config.ranges import Range, check_ranges
from s3nas.errors import ConfigError


@dataclass
class LossConfig:
    """The `loss` group: CE with label smoothing + lambda1 * log(1 + lambda2 * ReLU(L - T))."""

    name: str = "s3nas"
    lambda1: float = 15.0  # weight of the latency term (0 = accuracy only)
    lambda2: float = 100.0  # sharpness of the latency term (per ms over the target)
    label_smoothing: float = 0.1


#: Value ranges (s3nas.config.ranges); lambda1=0 switches the latency term off, lambda2 must stay > 0.
RANGES = {
    "lambda1": Range(low=0),
    "lambda2": Range(low=0, low_open=True, hint="set loss.lambda1=0 to disable the term"),
    "label_smoothing": Range(low=0, high=1, high_open=True),
}


def register(cs: Any) -> None:
    """Store the loss schema in Hydra's ConfigStore ``cs``."""
    cs.store(group="loss", name="loss_schema", node=LossConfig)


def check_loss(cfg: Any) -> dict:
    """Validate a loss config (DictConfig, dataclass or dict); return a plain dict."""
    if hasattr(cfg, "__dataclass_fields__") and not isinstance(cfg, type):
        raw = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    else:
        try:
            from omegaconf import DictConfig, OmegaConf

            raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
        except ImportError:  # pragma: no cover - omegaconf is a dependency
            raw = dict(cfg or {})
    defaults = {k: getattr(LossConfig(), k) for k in LossConfig.__dataclass_fields__}
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ConfigError(f"loss.{unknown[0]}: unknown key; accepted keys: {', '.join(defaults)}")
    c = {**defaults, **raw}
    check_ranges(c, RANGES, prefix="loss.")
    return {**c, **{key: float(c[key]) for key in RANGES}}
