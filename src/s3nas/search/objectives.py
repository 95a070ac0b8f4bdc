"""What the search's latency term constrains, and how one fit searches several networks.

A ``LatencyObjective`` is one (hardware, target) pair: that hardware's differentiable table estimate (scaled to the
simulated latency of the current hard state where simulating a network is cheap) and its target. A ``Bank`` is one
network being searched: its objectives (one per hardware: ``hardware=[midap,systolic]`` searches one network
against every chip's target, the latency loss summing one term per hardware) and, while another bank's thresholds
are in the supernet, its own thresholds and their optimizer state. A many-target search
(``latency=[1.5ms,2ms,2.5ms,3ms]``) has one bank per target: after one shared warm-up, the search steps cycle
through the banks, so every target trains its own thresholds on the one set of shared weights (the weights see
every target's sub-network in turn, as sandwich-style one-shot training does for widths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from s3nas.arch.space import branch_from_json, branch_to_json

__all__ = ["Bank", "LatencyObjective", "clone_state"]

#: feasible states a bank keeps for the decode to measure, best first, at most one per CANDIDATE_BAND of closeness:
#: a ladder under the target, so that when the machine is slower at the decode than when the search measured its
#: states (a shared CPU drifts by several percent in minutes), a state the search visited further under the
#: target is there to meet it
CANDIDATES = 16
CANDIDATE_BAND = 0.005
#: states over the target a bank keeps on a measured device (``Bank.above``): how far over (closeness), how many
ABOVE_REACH = 0.08
ABOVE_KEEP = 8


@dataclass
class LatencyObjective:
    """One hardware's latency signal and target."""

    hardware: str
    estimator: Any  # s3nas.latency.estimator.LatencyEstimator of this hardware's table
    target_ms: float  # what the delivered network must meet
    loss_target_ms: float  # where the latency loss starts (target_ms less schedule.target_margin)
    # options -> ms of the whole network: simulated (NetworkLatency) or measured near the target
    # (NearTargetLatency); None: the table's sum
    state_latency: Any = None

    def differentiable_ms(self, supernet) -> Tensor:
        """The table's differentiable estimate (paper Eq. 7-8), scaled to the simulated (or measured) latency of the
        current hard state when ``state_latency`` is set (the table is not additive on every NPU; the gradient keeps the
        table's proportions)."""
        latency_ms = self.estimator(supernet)
        if self.state_latency is not None:
            lut_ms = float(latency_ms.detach())
            latency_ms = latency_ms * (self.state_latency(tuple(supernet.chosen_options())) / lut_ms)
        return latency_ms

    def of_options(self, options) -> float:
        """Latency of a hard state: ``state_latency``'s when set, else the table's sum."""
        if self.state_latency is not None:
            return float(self.state_latency(tuple(options)))
        return float(self.estimator.table.estimate_ms(options))

    @property
    def table(self):
        return self.estimator.table


def meets(objectives: list[LatencyObjective], latencies_ms: list[float], *, loss_target: bool) -> bool:
    """Every objective's latency at or under its (loss) target."""
    return all(ms <= (o.loss_target_ms if loss_target else o.target_ms) for o, ms in zip(objectives, latencies_ms))


def closeness(objectives: list[LatencyObjective], latencies_ms: list[float]) -> float:
    """How much of the targets a feasible state uses (mean latency/target): the search keeps the largest."""
    return sum(ms / o.target_ms for o, ms in zip(objectives, latencies_ms)) / max(1, len(objectives))


@dataclass
class Bank:
    """One network of the search: its objectives, best feasible state, line searches and (while not loaded) its
    thresholds and their optimizer state."""

    objectives: list[LatencyObjective]
    best_feasible: tuple | None = None  # (closeness, step, raw choice) of the best state meeting every target
    # distinct feasible states, best first, one per band of closeness (CANDIDATE_BAND): on a measured device the
    # decode evaluates them in turn when the best one's evaluation is over a target
    candidates: list[tuple] = field(default_factory=list)
    # on a measured device, distinct states the search visited over a target by at most ABOVE_REACH (closeness), one
    # per band, nearest the target first: when the machine is faster at the decode than when the search measured its
    # states, the decode evaluates them in turn for a larger network that now meets the target
    above: list[tuple] = field(default_factory=list)
    line_searches: list[dict] = field(default_factory=list)
    ladders: set = field(default_factory=set)  # bands of the landings a ladder was laid from (SearchModule._lay_ladder)
    thresholds: list[Tensor] | None = None
    optimizer_state: list[dict] | None = None

    @property
    def target_ms(self) -> float:
        return self.objectives[0].target_ms

    @property
    def loss_target_ms(self) -> float:
        return self.objectives[0].loss_target_ms

    @property
    def label(self) -> str:
        return ", ".join(f"{o.hardware} {o.target_ms:g} ms" for o in self.objectives)

    def wants(self, score: float, keep: int = CANDIDATES) -> bool:
        """Whether ``offer`` would keep a state of this score (as best_feasible or as a candidate)."""
        if self.best_feasible is None or score >= self.best_feasible[0]:
            return True
        held = [c[0] for c in self.candidates if _band(c[0]) == _band(score)]
        if held:
            return score >= held[0]
        return len(self.candidates) < keep or score >= self.candidates[-1][0]

    def holds(self, score: float) -> bool:
        """Whether a candidate is kept in the band of closeness of ``score``."""
        return any(_band(c[0]) == _band(score) for c in self.candidates)

    def offer(self, score: float, step: int, raw: list, keep: int = CANDIDATES) -> None:
        """A feasible state: the best one so far replaces ``best_feasible``; the best distinct state of each band of
        closeness stays a candidate (``keep`` bands at most, the best ones)."""
        if self.best_feasible is None or score >= self.best_feasible[0]:
            self.best_feasible = (score, step, raw)
        # stable: of equal scores the newest state first (as best_feasible keeps)
        self.candidates = _one_per_band(sorted([(score, step, raw), *self.candidates], key=lambda c: -c[0]), keep)

    def wants_above(self, score: float, keep: int = ABOVE_KEEP) -> bool:
        """Whether ``offer_above`` would keep a state of this score."""
        if not 1.0 < score <= 1.0 + ABOVE_REACH:
            return False
        held = [c[0] for c in self.above if _band(c[0]) == _band(score)]
        if held:
            return score <= held[0]
        return len(self.above) < keep or score <= self.above[-1][0]

    def offer_above(self, score: float, step: int, raw: list, keep: int = ABOVE_KEEP) -> None:
        """A state over a target (closeness ``score`` > 1): the nearest distinct state of each band stays."""
        self.above = _one_per_band(sorted([(score, step, raw), *self.above], key=lambda c: c[0]), keep)

    def store(self, params: list[Tensor], optimizer=None) -> None:
        """Keep a copy of the thresholds (and their optimizer state) now in the supernet."""
        self.thresholds = [p.detach().clone() for p in params]
        if optimizer is not None:
            self.optimizer_state = [clone_state(optimizer.state.get(p, {})) for p in params]

    @torch.no_grad()
    def load(self, params: list[Tensor], optimizer=None) -> None:
        """Put this bank's thresholds (and optimizer state) into the supernet."""
        if self.thresholds is None:
            return
        for p, value in zip(params, self.thresholds):
            p.copy_(value)
        if optimizer is not None and self.optimizer_state is not None:
            for p, state in zip(params, self.optimizer_state):
                if state:
                    optimizer.state[p] = clone_state(state)
                else:
                    optimizer.state.pop(p, None)

    def to_meta(self) -> dict:
        """Checkpoint form (tensors kept as tensors)."""
        meta: dict = {"line_searches": list(self.line_searches), "thresholds": self.thresholds,
                      "optimizer_state": self.optimizer_state}
        if self.best_feasible is not None:
            meta["best_feasible"] = _state_meta(self.best_feasible)
        meta["candidates"] = [_state_meta(c) for c in self.candidates]
        meta["above"] = [_state_meta(c) for c in self.above]
        return meta

    def restore_meta(self, meta: dict) -> None:
        self.line_searches = list(meta.get("line_searches", []))
        self.thresholds = meta.get("thresholds")
        self.optimizer_state = meta.get("optimizer_state")
        best = meta.get("best_feasible")
        if best:
            self.best_feasible = self._state_of(best)
        self.candidates = [self._state_of(c) for c in meta.get("candidates", [])]
        self.above = [self._state_of(c) for c in meta.get("above", [])]

    def _state_of(self, meta: dict) -> tuple:
        raw = [tuple(branch_from_json(b) for b in block) for block in meta["raw"]]
        # older checkpoints kept the latency (one objective): its closeness is latency / target
        score = meta["score"] if "score" in meta else float(meta["latency_ms"]) / self.target_ms
        return (float(score), int(meta["step"]), raw)


def _state_meta(state: tuple) -> dict:
    score, step, raw = state
    return {"score": score, "step": step, "raw": [[branch_to_json(b) for b in block] for block in raw]}


def _one_per_band(states: list[tuple], keep: int) -> list[tuple]:
    """The first state of each network and of each band of closeness, in the given order (best first), ``keep`` at
    most."""
    kept, keys, bands = [], set(), set()
    for state in states:
        key, band = _key(state[2]), _band(state[0])
        if key in keys or band in bands:
            continue
        keys.add(key)
        bands.add(band)
        kept.append(state)
    return kept[:keep]


def _band(score: float) -> int:
    return int(math.floor(score / CANDIDATE_BAND + 1e-9))


def _key(raw: list) -> tuple:
    return tuple(tuple((b.kernel, b.expansion, b.block_type) for b in block) for block in raw)


def clone_state(state: dict) -> dict:
    """A deep enough copy of one parameter's optimizer state (tensors cloned)."""
    return {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in state.items()}
