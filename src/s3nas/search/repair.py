"""Fit to target: a last-resort greedy repair when the decoded network is over the latency target.

The search is meant to meet the target by itself; this step only fires when the decoded network's simulated
latency still exceeds it, and every step is reported in the summary (``repaired``, ``repair_steps``). It works
on the raw per-superkernel choice (one ``Branch(kernel, expansion)`` per superkernel, expansion 0 = off) and
each step switches off exactly one more kernel ring or channel slice of one superkernel, what lowering one
threshold-controlled indicator reaches. No step can therefore grow any branch's kernel or channels. A block
choosing among listed options of several types (``supernet.block_type: choice``) may move to any listed
option of smaller capacity. The step
taken is the one saving the most LUT latency per unit of capacity lost (capacity = sum of expansion x kernel^2
over a block's branches), until the LUT estimate and then the end-to-end simulation are under the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from s3nas.arch.space import ListedOptions, canonical
from s3nas.arch.spec import Branch

#: Per block, per superkernel: (kernel sizes ascending, expansion levels ascending; 0.0 = off when allowed).
Levels = Sequence[Sequence[tuple[Sequence[int], Sequence[float]]]]


def capacity(option) -> float:
    """Rough capacity of a block option: sum of expansion * kernel^2 over its branches."""
    return float(sum(b.expansion * b.kernel * b.kernel for b in option))


def shrinks(raw_block: Sequence[Branch], levels) -> list[tuple[Branch, ...]]:
    """Every raw state one indicator below ``raw_block``: one superkernel loses its outer ring or slice.

    At a choice position (``levels`` is its ``ListedOptions``): every listed option of smaller capacity."""
    if isinstance(levels, ListedOptions):
        return [tuple(o) for o in levels if capacity(o) < capacity(raw_block)]
    out = []
    for j, (branch, (kernels, expansions)) in enumerate(zip(raw_block, levels)):
        kernels, expansions = list(kernels), list(expansions)
        k_level, e_level = kernels.index(int(branch.kernel)), expansions.index(float(branch.expansion))
        if branch.expansion > 0 and k_level > 0:
            out.append(tuple(raw_block[:j]) + (Branch(kernels[k_level - 1], branch.expansion),) + tuple(raw_block[j + 1:]))
        if e_level > 0:
            out.append(tuple(raw_block[:j]) + (Branch(branch.kernel, expansions[e_level - 1]),) + tuple(raw_block[j + 1:]))
    return out


@dataclass
class RepairResult:
    """Raw choice after repair and the steps taken (block, from, to, saved_ms)."""

    raw: list
    steps: list[dict] = field(default_factory=list)

    @property
    def repaired(self) -> bool:
        return bool(self.steps)

    @property
    def options(self) -> list:
        """Canonical option per block."""
        return [canonical(block) for block in self.raw]


def fit_to_target(raw: Sequence[Sequence[Branch]], levels: Levels, space, table, target_ms: float,
                  network_ms: Callable[[list], float] | None = None, max_steps: int = 500) -> RepairResult:
    """Shrink greedily until the LUT estimate (then the simulation of the canonical options, if given) <= target."""
    raw = [tuple(block) for block in raw]
    steps: list[dict] = []
    budget_ms = float(target_ms)
    for _ in range(max_steps):
        options = [canonical(block) for block in raw]
        estimate_ms = table.estimate_ms(options)
        if estimate_ms <= budget_ms:
            if network_ms is None:
                break
            simulated_ms = network_ms(options)
            if simulated_ms <= target_ms:
                break
            # The LUT under-estimates this network: tighten the LUT budget by the observed gap.
            budget_ms = min(budget_ms, estimate_ms) - (simulated_ms - target_ms) - 1e-9
        best = None
        for i, block in enumerate(raw):
            current = options[i]
            current_ms = table.block_ms(i, current)
            legal = set(space.options(i))
            for candidate_raw in shrinks(block, levels[i]):
                candidate = canonical(candidate_raw)
                if candidate == current or candidate not in legal:
                    continue
                saved_ms = current_ms - table.block_ms(i, candidate)
                if saved_ms <= 0:
                    continue
                score = saved_ms / max(capacity(current) - capacity(candidate), 1e-6)
                if best is None or score > best[0]:
                    best = (score, i, candidate_raw, saved_ms)
        if best is None:
            break
        _, i, candidate_raw, saved_ms = best
        steps.append({"block": i, "from": describe(options[i]), "to": describe(canonical(candidate_raw)),
                      "saved_ms": round(saved_ms, 6)})
        raw[i] = candidate_raw
    return RepairResult(raw=raw, steps=steps)


def describe(option) -> str:
    """'k3e2+k5e2', or 'skip'."""
    if not option:
        return "skip"
    return "+".join(f"k{b.kernel}e{b.expansion:g}" for b in option)
