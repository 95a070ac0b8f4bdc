"""Structured-config schema of the `loss` config group (paper Eq. 9) and its value check.

``register(cs)`` stores the schema in Hydra's ConfigStore (called by ``s3nas.config.register_configs``);
``check_loss`` checks values and raises ``ConfigError`` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s3nas.errors import ConfigError


@dataclass
class LossConfig:
    """The `loss` group: CE with label smoothing + lambda1 * log(1 + lambda2 * ReLU(L - T))."""

    name: str = "s3nas"
    lambda1: float = 15.0  # weight of the latency term (0 = accuracy only)
    lambda2: float = 100.0  # sharpness of the latency term (per ms over the target)
    label_smoothing: float = 0.1


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
    for key, low, high, closed_high in (("lambda1", 0.0, None, False), ("lambda2", 0.0, None, False),
                                        ("label_smoothing", 0.0, 1.0, False)):
        value = c[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low \
                or (high is not None and value >= high) or value != value:
            accepted = f">= {low}" + (f" and < {high}" if high is not None else "")
            raise ConfigError(f"loss.{key}: must be a number {accepted}, got {value!r}")
        c[key] = float(value)
    if c["lambda2"] == 0:
        raise ConfigError("loss.lambda2: must be a number > 0, got 0 (set loss.lambda1=0 to disable the term)")
    return c
