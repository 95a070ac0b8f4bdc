"""Structured-config schema of the `schedule` config group (search phases, optimizer, threshold training).

Every default lives here, once; ``conf/schedule/*.yaml`` list ``schedule_schema`` first and override what
differs. ``check_schedule`` checks the values (ranges, not only types) and raises ``ConfigError`` naming the
key and the accepted range. The paper's reference formulation is ``schedule=paper`` (thresholds from 0, the
same optimizer settings for weights and thresholds, the final state decoded); departures used by the digits
schedule are documented next to their keys and measured in docs/search-tuning.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from s3nas.errors import ConfigError

DECODES = ("final", "best_feasible")
THRESHOLD_INITS = ("zero", "below_norm")


@dataclass
class OptimizerConfig:
    """timm's RMSpropTF with the paper's numbers; lr scales with the global batch (lr_per_256 * batch / 256)."""

    name: str = "rmsproptf"
    lr_per_256: float = 0.016
    alpha: float = 0.9  # RMSProp decay
    momentum: float = 0.9
    eps: float = 1.0e-3
    weight_decay: float = 1.0e-5  # weights only; thresholds have none
    decay_rate: float = 0.97  # lr x decay_rate every decay_epochs (torch StepLR, counted in steps)
    decay_epochs: float = 2.4


@dataclass
class ThresholdConfig:
    """How the thresholds (one per optional ring/slice) are initialised and trained.

    The paper: thresholds start at 0 and share the weights' optimizer settings. A short search needs them
    to move faster and to stop when the latency reaches the target (see docs/search-tuning.md).
    """

    init: str = "zero"  # zero (the paper) | below_norm: start at (weight norm - init_margin)
    init_margin: float = 8.0  # only for init=below_norm
    lr_scale: float = 1.0  # threshold lr = weight lr x lr_scale
    eps: Optional[float] = None  # RMSProp eps of the thresholds' group (null: optimizer.eps)
    momentum: Optional[float] = None  # momentum of the thresholds' group (null: optimizer.momentum)
    square_avg_init: Optional[float] = None  # RMSProp square_avg start (null: RMSpropTF's 1.0)
    # Latency-proportional speed (null: off, the paper): the thresholds' lr is scaled by
    # clamp((L - T) / (approach_band * T), approach_floor, 1) while the estimated latency L is above the loss
    # target T, and by 0 at or below it, so the search slows down near the target and stops there.
    approach_band: Optional[float] = None
    # True (the paper): the latency term's gradient also shrinks the weights through their norms (the
    # indicator is step(||w|| - t)); false: it trains the thresholds only, so the speed above is the speed.
    latency_grad_to_weights: bool = True
    # Line search on the step that crosses the target (false: the paper). The indicators flip in bursts (the
    # same-shaped blocks of a stage have nearly equal weight norms, so their thresholds cross together); when
    # one optimizer step takes the hard latency from above the loss target to below it, the thresholds are
    # set to the point of that step's update (x interpolated between before and after, per indicator) with
    # the largest latency still under the target: the search lands on the target instead of past it.
    line_search: bool = False
    approach_floor: float = 0.1


@dataclass
class ScheduleConfig:
    """The `schedule` group: warm-up and search epochs, optimizer, threshold training, decoding, logging."""

    name: str = "digits"
    warmup_epochs: int = 3  # CE only, every sub-path sampled with equal probability
    search_epochs: int = 9  # CE + latency loss, thresholds learn
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    gradient_clip_val: Optional[float] = 10.0  # global norm of the weights' gradients (thresholds unclipped)
    target_margin: float = 0.0  # the loss aims at target x (1 - target_margin)
    # true: the latency the loss sees is the table's differentiable sum scaled to the end-to-end simulation of
    # the current hard state (cached per state); false (the paper): the table's sum. On an NPU where per-block
    # latencies add up (midap) both are the same; where they do not (systolic streams weights ahead), the
    # search would otherwise aim at a latency it does not deliver.
    simulate_states: bool = False
    decode: str = "best_feasible"  # final (the paper) | best_feasible (largest LUT latency <= target met)
    fit_to_target: bool = True  # last-resort greedy shrink when the decoded net is over target (reported)
    bn_recalibration_batches: int = 20  # training batches to re-estimate the delivered child's BN statistics
    channels_last: bool = False
    deterministic: bool = True  # Trainer(deterministic=True) unless trainer.deterministic is set
    validate_warmup: bool = False  # run validation at the end of warm-up epochs too
    log_every_n_steps: int = 5  # Lightning loggers (W&B/CSV)
    history_every_n_steps: int = 1  # history.json rows (CE, latency, thresholds)
    choices_every_n_steps: int = 10  # choices.csv / W&B table rows
    interrupt_after_steps: Optional[int] = None  # fault injection (tests): crash after N optimizer steps
    lut_workers: int = 2
    num_threads: Optional[int] = 1  # torch CPU threads (null: torch's default)


def register(cs: Any) -> None:
    """Store the schedule schema in Hydra's ConfigStore ``cs``."""
    cs.store(group="schedule", name="schedule_schema", node=ScheduleConfig)


def _number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, integer: bool = False, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        rng = f" {' and '.join(bounds)}" if bounds else ""
        raise ConfigError(f"schedule.{key}: must be {kind}{rng}{' or null' if nullable else ''}, got {value!r}")


def check_schedule(schedule: Any) -> None:
    """ConfigError naming the key for any out-of-range schedule value."""
    s = schedule
    _number("warmup_epochs", s.warmup_epochs, low=0, integer=True)
    _number("search_epochs", s.search_epochs, low=1, integer=True)
    o = s.optimizer
    if o.name != "rmsproptf":
        raise ConfigError(f"schedule.optimizer.name: {o.name!r} is not supported; use rmsproptf")
    _number("optimizer.lr_per_256", o.lr_per_256, low=0, low_open=True)
    _number("optimizer.alpha", o.alpha, low=0, high=1)
    _number("optimizer.momentum", o.momentum, low=0, high=1)
    _number("optimizer.eps", o.eps, low=0, low_open=True)
    _number("optimizer.weight_decay", o.weight_decay, low=0)
    _number("optimizer.decay_rate", o.decay_rate, low=0, high=1, low_open=True)
    _number("optimizer.decay_epochs", o.decay_epochs, low=0, low_open=True)
    t = s.thresholds
    if t.init not in THRESHOLD_INITS:
        raise ConfigError(f"schedule.thresholds.init: {t.init!r}; use one of {', '.join(THRESHOLD_INITS)}")
    _number("thresholds.init_margin", t.init_margin, low=0)
    _number("thresholds.lr_scale", t.lr_scale, low=0, low_open=True)
    _number("thresholds.eps", t.eps, low=0, low_open=True, nullable=True)
    _number("thresholds.momentum", t.momentum, low=0, high=1, nullable=True)
    _number("thresholds.square_avg_init", t.square_avg_init, low=0, nullable=True)
    _number("thresholds.approach_band", t.approach_band, low=0, low_open=True, nullable=True)
    _number("thresholds.approach_floor", t.approach_floor, low=0, high=1, low_open=True)
    _number("gradient_clip_val", s.gradient_clip_val, low=0, low_open=True, nullable=True)
    _number("target_margin", s.target_margin, low=0, high=0.5)
    if s.decode not in DECODES:
        raise ConfigError(f"schedule.decode: {s.decode!r}; use one of {', '.join(DECODES)}")
    _number("bn_recalibration_batches", s.bn_recalibration_batches, low=0, integer=True)
    for key in ("log_every_n_steps", "history_every_n_steps", "choices_every_n_steps", "lut_workers"):
        _number(key, getattr(s, key), low=1, integer=True)
    _number("interrupt_after_steps", s.interrupt_after_steps, low=1, integer=True, nullable=True)
    _number("num_threads", s.num_threads, low=1, integer=True, nullable=True)
