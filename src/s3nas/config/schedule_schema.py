"""Structured-config schema of the `schedule` config group (search phases, optimizer, threshold training).

Every default lives here, once; ``conf/schedule/*.yaml`` list ``schedule_schema`` first and override what
differs. ``check_schedule`` checks the values (the ``RANGES`` table, s3nas.config.ranges) and raises ``ConfigError``
naming the key and the accepted range. The paper's reference formulation is ``schedule=paper`` (thresholds from 0, the
same optimizer settings for weights and thresholds, the final state decoded); departures used by the digits
schedule are documented next to their keys and measured in docs/search-tuning.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from s3nas.config.ranges import Range, check_choice, check_ranges

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
    # Choice blocks (supernet.block_type: choice): their logits take a plain gradient step normalised over all
    # of them (root-mean-square step = choice_lr logits, x the approach speed), not RMSProp's per-parameter
    # one: the blocks whose options differ most in latency move first, instead of every block at once.
    choice_lr: float = 0.05


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
    # On a measured device (hardware=cpu_onnxruntime ...), whose corrected table can be off by several percent for
    # some networks: the states the search visits whose latency by the table is within measure_states_band x target
    # of the target are measured end to end (cached per state) and the loss, the feasibility the search tracks and
    # its line search use the measurement (elsewhere the table x the last measured state's ratio); null (the
    # paper): the table alone. Off on a few-shot device (its budget) and under several processes.
    measure_states_band: Optional[float] = None
    decode: str = "best_feasible"  # final (the paper) | best_feasible (largest LUT latency <= target met)
    fit_to_target: bool = True  # last-resort greedy shrink when the decoded net is over target (reported)
    bn_recalibration_batches: int = 20  # training batches to re-estimate the delivered child's BN statistics
    # NHWC tensors and weights: oneDNN's convolutions on CPU, 2.7-3x faster search steps than NCHW here
    # (benchmarks/search_profile.py); also the fast layout on GPUs with bf16
    channels_last: bool = True
    deterministic: bool = True  # Trainer(deterministic=True) unless trainer.deterministic is set
    validate_warmup: bool = False  # run validation at the end of warm-up epochs too
    # keep the supernet after its warm-up in <paths.cache_dir>/warmup/<content key>.ckpt (~150 MB for the default
    # space) and start a later search of the same space, data, warm-up schedule and seed from it (any hardware,
    # target or latency loss): s3nas.search.warmup_cache
    warmup_cache: bool = True
    log_every_n_steps: int = 5  # Lightning loggers (W&B/CSV)
    history_every_n_steps: int = 1  # history.json rows (CE, latency, thresholds)
    choices_every_n_steps: int = 10  # choices.csv / W&B table rows
    lut_workers: int = 2
    num_threads: Optional[int] = 1  # torch CPU threads (null: torch's default)


def register(cs: Any) -> None:
    """Store the schedule schema in Hydra's ConfigStore ``cs``."""
    cs.store(group="schedule", name="schedule_schema", node=ScheduleConfig)


#: Value ranges of the schedule keys (s3nas.config.ranges); types are checked by the schema.
RANGES: dict[str, Range] = {
    "warmup_epochs": Range(low=0, integer=True),
    "search_epochs": Range(low=1, integer=True),
    "optimizer.lr_per_256": Range(low=0, low_open=True),
    "optimizer.alpha": Range(low=0, high=1),
    "optimizer.momentum": Range(low=0, high=1),
    "optimizer.eps": Range(low=0, low_open=True),
    "optimizer.weight_decay": Range(low=0),
    "optimizer.decay_rate": Range(low=0, high=1, low_open=True),
    "optimizer.decay_epochs": Range(low=0, low_open=True),
    "thresholds.init_margin": Range(low=0),
    "thresholds.lr_scale": Range(low=0, low_open=True),
    "thresholds.choice_lr": Range(low=0, low_open=True),
    "thresholds.eps": Range(low=0, low_open=True, nullable=True),
    "thresholds.momentum": Range(low=0, high=1, nullable=True),
    "thresholds.square_avg_init": Range(low=0, nullable=True),
    "thresholds.approach_band": Range(low=0, low_open=True, nullable=True),
    "thresholds.approach_floor": Range(low=0, high=1, low_open=True),
    "gradient_clip_val": Range(low=0, low_open=True, nullable=True),
    "target_margin": Range(low=0, high=0.5),
    "measure_states_band": Range(low=0, high=1, low_open=True, nullable=True),
    "bn_recalibration_batches": Range(low=0, integer=True),
    "log_every_n_steps": Range(low=1, integer=True),
    "history_every_n_steps": Range(low=1, integer=True),
    "choices_every_n_steps": Range(low=1, integer=True),
    "lut_workers": Range(low=1, integer=True),
    "num_threads": Range(low=1, integer=True, nullable=True),
}


def check_schedule(schedule: Any) -> None:
    """ConfigError naming the key for any out-of-range schedule value."""
    check_choice("schedule.optimizer.name", schedule.optimizer.name, ("rmsproptf",))
    check_choice("schedule.thresholds.init", schedule.thresholds.init, THRESHOLD_INITS)
    check_choice("schedule.decode", schedule.decode, DECODES)
    check_ranges(schedule, RANGES, prefix="schedule.")
