"""Differentiable latency estimate of a supernet (paper Eq. 7-8) from a LatencyTable.

latency_ms = table.fixed_ms + sum over blocks i, sum over canonical options o of LUT(i, o) * P_i(o), where
P_i(o) is the sum, over the raw per-superkernel combinations that merge into o (same-kernel branches
merged, off branches dropped, sorted; paper Fig. 8), of the product of the indicators selecting exactly
that combination. In the hard forward exactly one option per block has P = 1, so the estimate equals the
table's latency of the supernet's per-position choice (``table.estimate_ms(supernet.chosen_options())``;
a decoded ArchSpec has dropped its skips, and mapping it back may move a block to another same-stage
position whose table entry differs slightly); gradients reach the thresholds through the sigmoid relaxation.
``__call__`` evaluates Eq. 7-8 for the whole network in a few batched ops (``combo_probabilities``);
``per_block`` is the same sum block by block (reference, slower).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["LatencyEstimator"]


class LatencyEstimator:
    """``LatencyEstimator(table)(supernet) -> latency_ms`` (0-dim tensor on the supernet's device)."""

    def __init__(self, table) -> None:
        self.table = table
        self._lut: dict[tuple, Tensor] = {}  # (device, dtype, options per block) -> flat LUT vector

    def block_ms(self, i: int, option) -> float:
        """LUT latency of option ``option`` at position ``i`` (a skip costs 0)."""
        return 0.0 if len(option) == 0 else float(self.table.block_ms(i, tuple(option)))

    def lut_vector(self, per_block_options, device, dtype) -> Tensor:
        """Flat LUT values in the order of the concatenated per-block option lists (cached)."""
        key = (str(device), dtype, tuple(tuple(opts) for opts in per_block_options))
        if key not in self._lut:
            values = [self.block_ms(i, opt) for i, opts in enumerate(per_block_options) for opt in opts]
            self._lut[key] = torch.tensor(values, device=device, dtype=dtype)
        return self._lut[key]

    def block_latencies(self, supernet) -> Tensor:
        """(n_blocks,) expected latency of each block in ms (Eq. 8 per block)."""
        per_block = supernet.option_probability_tensors()
        probs = [p for _, p in per_block]
        lut = self.lut_vector([opts for opts, _ in per_block], probs[0].device, probs[0].dtype)
        sizes = [len(p) for p in probs]
        return torch.stack([(p * v).sum() for p, v in zip(probs, lut.split(sizes))])

    def combo_lut(self, supernet, device, dtype) -> Tensor:
        """(n_blocks, n_combos) LUT latency of every raw combination (0 for skips and padding; cached)."""
        combo_options = supernet.combo_options()
        key = ("combo", str(device), dtype, id(combo_options))
        if key not in self._lut:
            rows = []
            for i, options in enumerate(combo_options):
                ms = {opt: self.block_ms(i, opt) for opt in set(options) if opt is not None}
                rows.append([ms[opt] if opt is not None else 0.0 for opt in options])
            self._lut[key] = torch.tensor(rows, device=device, dtype=dtype)
        return self._lut[key]

    def __call__(self, supernet) -> Tensor:
        """Estimated network latency in ms: fixed parts + expected latency of every block."""
        if hasattr(supernet, "combo_probabilities") and len(supernet.blocks):
            probs = supernet.combo_probabilities()  # (n_blocks, n_combos), a few batched ops
            return (probs * self.combo_lut(supernet, probs.device, probs.dtype)).sum() + float(self.table.fixed_ms)
        return self.per_block(supernet)

    def per_block(self, supernet) -> Tensor:
        """Eq. 8 through ``option_probability_tensors`` (block by block; same value as ``__call__``)."""
        per_block = supernet.option_probability_tensors()
        if not per_block:
            return torch.tensor(float(self.table.fixed_ms))
        probs = torch.cat([p for _, p in per_block])
        lut = self.lut_vector([opts for opts, _ in per_block], probs.device, probs.dtype)
        return (probs * lut).sum() + float(self.table.fixed_ms)
