"""Fit to target: a last-resort greedy repair when the decoded network is over the latency target.

The latency loss is the main mechanism; this step only fires when the decoded network's simulated
latency still exceeds the target (the indicators are hard steps, so the search can end a few options
above the target). It repeatedly shrinks the one block whose shrink saves the most LUT latency per unit
of capacity lost (capacity = sum of expansion * kernel^2 over branches), moving only to options that are
contained in the current one (what switching indicators off can reach), until the LUT estimate and
then the end-to-end simulation are under the target. Every step is reported in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


def capacity(option) -> float:
    """Rough capacity of a block option: sum of expansion * kernel^2 over its branches."""
    return float(sum(b.expansion * b.kernel * b.kernel for b in option))


def contained(smaller, larger) -> bool:
    """True if ``smaller`` can be reached from ``larger`` by switching kernel rings / slices off."""
    if not smaller:
        return True
    if not larger:
        return False
    larger_max_kernel = max(b.kernel for b in larger)
    total_small = sum(b.expansion for b in smaller)
    total_large = sum(b.expansion for b in larger)
    return max(b.kernel for b in smaller) <= larger_max_kernel and total_small <= total_large


@dataclass
class RepairResult:
    """Options after repair and the steps taken (block, from, to, saved_ms)."""

    options: list
    steps: list[dict] = field(default_factory=list)

    @property
    def repaired(self) -> bool:
        return bool(self.steps)


def fit_to_target(
    options: list,
    space,
    table,
    target_ms: float,
    simulate_ms: Callable[[list], float] | None = None,
    max_steps: int = 200,
) -> RepairResult:
    """Shrink blocks greedily until the LUT estimate (then the simulation, if given) is <= target."""
    options = list(options)
    steps: list[dict] = []
    budget_ms = float(target_ms)
    for _ in range(max_steps):
        estimate_ms = table.estimate_ms(options)
        if estimate_ms <= budget_ms:
            if simulate_ms is None:
                break
            simulated_ms = simulate_ms(options)
            if simulated_ms <= target_ms:
                break
            # The LUT under-estimates this network: tighten the LUT budget by the observed gap.
            budget_ms = min(budget_ms, estimate_ms) - (simulated_ms - target_ms) - 1e-9
        best = None
        for i, current in enumerate(options):
            current_ms = table.block_ms(i, current)
            for candidate in space.options(i):
                if candidate == current or not contained(candidate, current):
                    continue
                if not candidate and not space.positions[i].allow_skip:
                    continue
                saved_ms = current_ms - table.block_ms(i, candidate)
                if saved_ms <= 0:
                    continue
                lost = max(capacity(current) - capacity(candidate), 1e-6)
                score = saved_ms / lost
                if best is None or score > best[0]:
                    best = (score, i, candidate, saved_ms)
        if best is None:
            break
        _, i, candidate, saved_ms = best
        steps.append({"block": i, "from": _describe(options[i]), "to": _describe(candidate),
                      "saved_ms": round(saved_ms, 6)})
        options[i] = candidate
    return RepairResult(options=options, steps=steps)


def _describe(option) -> str:
    if not option:
        return "skip"
    return "+".join(f"k{b.kernel}e{b.expansion:g}" for b in option)
