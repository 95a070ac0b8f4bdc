"""Random architectures of the search space at a latency target (random search / random selection, paper 5.4.1).

Uniform sampling of one option per position almost never lands within +-2% of a target away from the middle
of the space's latency range, so candidates are drawn from the exponentially tilted distribution
``p_i(option) ~ exp(-beta * cycles_i(option))`` per position, with ``beta`` chosen (bisection) so that the
expected latency-table sum equals the target. Among networks whose table sum ``L`` lies in the band, the tilted
probability is ``~ exp(-beta * L)``; accepting a draw with probability ``exp(beta * (L - L_edge))`` (``L_edge``
the band edge that maximises it) cancels it, so accepted networks are *uniform* over the distinct architectures
whose table estimate is within the band. Each accepted network is then simulated end to end on the NPU and kept
only if the simulation is within the band too (the latency that is reported is that simulation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from s3nas.arch.space import Option, SearchSpace
from s3nas.errors import InfeasibleTargetError
from s3nas.latency.backend import NetworkLatency

__all__ = ["Candidate", "SamplingStats", "sample_at_latency", "tilt_for_target"]


@dataclass
class Candidate:
    """One sampled architecture: its options, ArchSpec, table estimate and independent simulation."""

    index: int
    options: list[Option]
    spec: Any  # ArchSpec at the deployment shape
    estimated_ms: float  # latency-table sum
    latency_ms: float  # end-to-end latency of the whole network on the backend (simulated or measured)


@dataclass
class SamplingStats:
    """How many draws it took: for the summary (how hard the band was to hit)."""

    beta_per_ms: float = 0.0
    draws: int = 0
    in_band_estimated: int = 0
    accepted_uniform: int = 0
    duplicates: int = 0
    rejected_by_simulation: int = 0
    simulated_errors_pct: list = field(default_factory=list)  # (simulated - estimated) / estimated * 100
    seconds: float = 0.0

    def to_dict(self) -> dict:
        errors = self.simulated_errors_pct
        return {"beta_per_ms": self.beta_per_ms, "draws": self.draws, "in_band_estimated": self.in_band_estimated,
                "accepted_uniform": self.accepted_uniform, "duplicates": self.duplicates,
                "rejected_by_simulation": self.rejected_by_simulation,
                "estimate_error_pct_mean_abs": float(np.mean(np.abs(errors))) if errors else None,
                "seconds": self.seconds}


def _cost_arrays(table: Any) -> tuple[list[list[Option]], list[np.ndarray]]:
    options = [list(entries) for entries in table.entries]
    cycles = [np.array([entries[o] for o in opts], dtype=np.float64) for entries, opts in zip(table.entries, options)]
    return options, cycles


def _expected_cycles(cycles: list[np.ndarray], beta: float) -> float:
    total = 0.0
    for c in cycles:
        logits = -beta * (c - c.min())
        w = np.exp(logits - logits.max())
        total += float((w * c).sum() / w.sum())
    return total


def tilt_for_target(table: Any, target_ms: float) -> float:
    """``beta`` (per cycle) whose tilted distribution has expected table latency ``target_ms`` (bisection)."""
    _, cycles = _cost_arrays(table)
    target_cycles = target_ms * table.clock_hz / 1e3 - table.fixed_cycles
    span = max(float(sum(c.max() - c.min() for c in cycles)), 1.0)
    lo, hi = -200.0 / span, 200.0 / span  # per cycle; exp(-200) covers the whole range
    if _expected_cycles(cycles, lo) <= target_cycles:
        return lo
    if _expected_cycles(cycles, hi) >= target_cycles:
        return hi
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _expected_cycles(cycles, mid) > target_cycles:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def sample_at_latency(space: SearchSpace, table: Any, backend: Any, target_ms: float, count: int, *,
                      seed: int = 0, tolerance: float = 0.02, max_draws: int = 2_000_000,
                      name_prefix: str = "random", network_ms: Optional[Callable[[list], float]] = None,
                      ) -> tuple[list[Candidate], SamplingStats]:
    """``count`` distinct architectures, uniform over those whose table estimate is within ``target_ms * (1 +-
    tolerance)``, each confirmed in the band by an end-to-end simulation. InfeasibleTargetError when the band is
    outside the space or cannot be hit in ``max_draws`` draws."""
    started = time.time()
    lo_ms, hi_ms = target_ms * (1 - tolerance), target_ms * (1 + tolerance)
    if hi_ms < table.min_ms or lo_ms > table.max_ms:
        raise InfeasibleTargetError(
            f"latency: {target_ms:.4g} ms +-{tolerance:.0%} is outside this search space "
            f"({table.min_ms:.4g}..{table.max_ms:.4g} ms on {getattr(backend, 'name', backend)})")
    if network_ms is None:
        network_ms = NetworkLatency(backend, space)  # the backend's end-to-end latency (simulated or measured)
    options, cycles = _cost_arrays(table)
    per_ms = table.clock_hz / 1e3
    lo_c, hi_c = lo_ms * per_ms, hi_ms * per_ms
    beta = tilt_for_target(table, target_ms)
    probs = []
    for c in cycles:
        logits = -beta * (c - c.min())
        w = np.exp(logits - logits.max())
        probs.append(np.cumsum(w / w.sum()))
    edge = hi_c if beta > 0 else lo_c
    rng = np.random.default_rng(seed)
    stats = SamplingStats(beta_per_ms=beta * per_ms)
    seen: set = set()
    found: list[Candidate] = []
    batch = 4096
    while len(found) < count:
        if stats.draws >= max_draws:
            raise InfeasibleTargetError(
                f"latency: found {len(found)} of {count} architectures within {target_ms:.4g} ms +-{tolerance:.0%} "
                f"in {stats.draws} draws; use a target nearer the middle of {table.min_ms:.4g}..{table.max_ms:.4g} ms")
        u = rng.random((batch, len(cycles)))
        idx = np.stack([np.minimum(np.searchsorted(p, u[:, i], side="right"), len(p) - 1)
                        for i, p in enumerate(probs)], axis=1)
        total = table.fixed_cycles + sum(cycles[i][idx[:, i]] for i in range(len(cycles)))
        stats.draws += batch
        in_band = (total >= lo_c) & (total <= hi_c)
        stats.in_band_estimated += int(in_band.sum())
        # uniform over the band: undo the tilt (exp(-beta * L)) with an acceptance test
        keep = in_band & (rng.random(batch) <= np.exp(np.minimum(beta * (total - edge), 0.0)))
        for row, lat in zip(idx[keep], total[keep]):
            stats.accepted_uniform += 1
            key = tuple(int(j) for j in row)
            if key in seen:
                stats.duplicates += 1
                continue
            seen.add(key)
            opts = [options[i][j] for i, j in enumerate(key)]
            estimated_ms = float(lat) / per_ms
            latency_ms = float(network_ms(opts))
            stats.simulated_errors_pct.append((latency_ms - estimated_ms) / estimated_ms * 100)
            if not lo_ms <= latency_ms <= hi_ms:
                stats.rejected_by_simulation += 1
                continue
            spec = space.arch_spec(opts, name=f"{name_prefix}_{len(found)}")
            found.append(Candidate(index=len(found), options=opts, spec=spec, estimated_ms=estimated_ms,
                                   latency_ms=latency_ms))
            if len(found) >= count:
                break
    stats.seconds = time.time() - started
    return found, stats
