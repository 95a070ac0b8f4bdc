"""Superkernel (paper 3.1, Eq. 1-3): one conv weight holding every kernel-size and expansion choice.

The kernel options are nested rings of one ``K_max x K_max`` weight (3x3 core, 5x5 ring minus the core,
7x7 ring minus 5x5, ...); the expansion options are nested, contiguous output-channel slices. Every
optional ring/slice has one trainable threshold (initialised to 0) and an indicator
``u = step(x) + (sigmoid(x) - sigmoid(x).detach())`` with ``x = ||w_subset||_2 - t``: a hard 0/1 choice in
the forward pass and the sigmoid's gradient in the backward pass. Choices compose as nested products,
``w = w0 + u1 * (w1 + u2 * (w2 + ...))``; the innermost ring is always on and so is the first channel
slice unless it is optional (the block may become a skip / a MixConv branch may switch off), in which
case its indicator is ``gate`` and multiplies everything. The expansion indicators are computed on the
weight *after* kernel selection, as in Eq. (3).

Warm-up ("supergraph training", the paper's footnote): every nested choice is sampled with equal
probability by dropping the i-th optional indicator (0-based) with rate ``1 / (n + 1 - i)`` given that
the previous ones were kept -- the authors' rule, which is uniform over the ``n + 1`` nested levels.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

__all__ = ["indicator", "chain_probs", "nested_levels", "drop_rates", "sample_nested", "SuperKernel",
           "SuperKernelState"]


class _StepWithSigmoidGrad(torch.autograd.Function):
    """``1[x > 0]`` forward; ``sigmoid'(x) = sigmoid(x) * sigmoid(-x)`` backward.

    Written out because autograd's ``sigmoid(x) * (1 - sigmoid(x))`` is exactly 0 in float32 once
    ``|x| > ~16.6`` (sigmoid(x) rounds to 1), and the plain L2 norms of the paper's superkernels sit that far
    above thresholds initialised at 0: those options could then never switch off. The product form stays
    non-zero up to ``|x| ~ 87``; RMSProp normalises the small magnitude.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x) * torch.sigmoid(-x)


def indicator(x: Tensor) -> Tensor:
    """Hard step ``1[x > 0]`` forward, sigmoid gradient backward (exact 0/1 values in the forward)."""
    return _StepWithSigmoidGrad.apply(x)


def chain_probs(u: Tensor) -> Tensor:
    """Probabilities of the ``n + 1`` levels of a nested chain of indicators ``u`` (shape (n,)).

    Level ``l`` = the first ``l`` optional parts are on and part ``l + 1`` is off:
    ``P_l = prod_{i<l} u_i * (1 - u_l)`` (``u_n`` := 0). They telescope to 1; with hard indicators exactly
    one level has probability 1 (paper Eq. 7's F/G terms).
    """
    one = u.new_ones(1)
    kept = torch.cat([one, torch.cumprod(u, 0)])  # (n+1,) prod of the first l indicators
    next_off = 1 - torch.cat([u, u.new_zeros(1)])  # (n+1,)
    return kept * next_off


def nested_levels(u: Tensor) -> int:
    """The hard level of a nested chain: number of leading indicators that are on."""
    level = 0
    for value in u.detach().tolist():
        if value < 0.5:
            break
        level += 1
    return level


def drop_rates(n: int) -> Tensor:
    """The authors' warm-up drop rate of each of ``n`` nested indicators: ``1 / (n + 1 - i)``."""
    return torch.tensor([1.0 / (n + 1 - i) for i in range(n)])


def sample_nested(n: int, generator: torch.Generator | None = None, *, rates: Tensor | None = None) -> Tensor:
    """Warm-up sample of ``n`` nested indicators by the authors' drop rule (uniform over n+1 levels).

    Sampled on the device of ``rates`` (no host-device copy, no synchronisation on GPUs).
    """
    if n == 0:
        return torch.zeros(0) if rates is None else rates.new_zeros(0)
    rates = drop_rates(n) if rates is None else rates
    dropped = torch.rand(n, generator=generator, device=rates.device) < rates
    return torch.cumprod((~dropped).to(rates.dtype), 0)  # once one is dropped, all outer ones are off


def _nest(parts: Tensor, u: Tensor) -> Tensor:
    """``parts[0] + u[0] * (parts[1] + u[1] * (parts[2] + ...))`` over the leading dim of ``parts``."""
    out = parts[-1]
    for i in range(len(parts) - 2, -1, -1):
        out = parts[i] + u[i] * out
    return out


class SuperKernelState(NamedTuple):
    """One evaluation of a superkernel: the masked weight and the masks/indicators that produced it."""

    weight: Tensor  # (C, C_in/groups, K, K): outer rings masked by the kernel indicators
    channel_mask: Tensor | None  # (C,) nested slice mask without the gate; None if only one slice
    gate: Tensor | None  # scalar indicator of the first slice when it is optional, else None
    kernel_u: Tensor  # (n_kernels - 1,) indicators of the outer rings
    channel_u: Tensor  # indicators of the optional slices (gate first when the first slice is optional)


class SuperKernel(nn.Module):
    """A conv weight with nested kernel rings and nested output-channel slices, each behind an indicator.

    ``slice_channels`` are cumulative channel counts of the expansion choices (e.g. ``[64, 128, 192]`` for
    e in {2, 4, 6} with 32 input channels); the weight has ``slice_channels[-1]`` output channels and
    ``in_channels_per_group`` input channels (1 = depthwise).
    """

    def __init__(self, slice_channels: Sequence[int], in_channels_per_group: int, kernels: Sequence[int],
                 *, first_optional: bool = False) -> None:
        super().__init__()
        kernels = sorted(int(k) for k in kernels)
        bounds = [int(c) for c in slice_channels]
        if any(k % 2 == 0 or k < 1 for k in kernels) or len(set(kernels)) != len(kernels):
            raise ValueError(f"kernels must be distinct odd sizes, got {kernels}")
        if not bounds or any(b <= a for a, b in zip([0] + bounds, bounds)):
            raise ValueError(f"slice_channels must be increasing positive counts, got {bounds}")
        self.kernels = tuple(kernels)
        self.slice_channels = tuple(bounds)
        self.first_optional = bool(first_optional)
        self.phase = "search"
        # True (the paper): the latency estimate's gradient also reaches the weights through their norms.
        self.latency_grad_to_weights = True
        channels, k_max = bounds[-1], kernels[-1]
        self.out_channels, self.in_channels_per_group, self.max_kernel = channels, in_channels_per_group, k_max

        self.weight = nn.Parameter(torch.empty(channels, in_channels_per_group, k_max, k_max))
        # timm / TF EfficientNet init: normal(0, sqrt(2 / fan_out)), fan_out = k*k*out/groups
        fan_out = k_max * k_max * (1 if in_channels_per_group == 1 else channels)
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / fan_out))

        rings = torch.zeros(len(kernels), k_max, k_max)
        for i, k in enumerate(kernels):
            lo = (k_max - k) // 2
            rings[i, lo:lo + k, lo:lo + k] = 1.0
        rings[1:] -= rings[:-1].clone()  # ring i = k_i square minus k_{i-1} square
        self.register_buffer("ring_masks", rings, persistent=False)
        slices = torch.zeros(len(bounds), channels)
        for i, (a, b) in enumerate(zip([0] + bounds[:-1], bounds)):
            slices[i, a:b] = 1.0
        self.register_buffer("slice_masks", slices, persistent=False)
        self.register_buffer("kernel_drop_rates", drop_rates(len(kernels) - 1), persistent=False)
        self.register_buffer("channel_drop_rates", drop_rates(len(bounds) - 1 + int(first_optional)),
                             persistent=False)

        n_kernel_t = len(kernels) - 1
        n_channel_t = len(bounds) - 1 + int(self.first_optional)
        self.kernel_thresholds = nn.Parameter(torch.zeros(n_kernel_t)) if n_kernel_t else None
        self.channel_thresholds = nn.Parameter(torch.zeros(n_channel_t)) if n_channel_t else None

    # ---------------------------------------------------------------------------------------- counts
    @property
    def num_kernel_indicators(self) -> int:
        return len(self.kernels) - 1

    @property
    def num_channel_indicators(self) -> int:
        return len(self.slice_channels) - 1 + int(self.first_optional)

    def channel_levels(self) -> list[int]:
        """Output-channel count of each nested channel level (0 first when the first slice is optional)."""
        return ([0] if self.first_optional else []) + list(self.slice_channels)

    # ---------------------------------------------------------------------------------------- indicators
    def kernel_indicators(self, weight: Tensor | None = None) -> Tensor:
        """Search-mode indicators of the outer rings: ``step(||w_ring||_2 - t)``, sigmoid gradient."""
        weight = self.weight if weight is None else weight
        if self.kernel_thresholds is None:
            return weight.new_zeros(0)
        sq = weight.pow(2).sum(dim=(0, 1))  # (K, K)
        ring_norm = (self.ring_masks[1:] * sq).sum(dim=(1, 2)).clamp_min(1e-24).sqrt()
        return indicator(ring_norm - self.kernel_thresholds)

    def kernel_mask(self, kernel_u: Tensor) -> Tensor:
        """(K, K) nested ring mask ``core + u1 * (ring1 + u2 * (ring2 + ...))``."""
        if kernel_u.numel() == 0:
            return self.ring_masks[0]
        return _nest(self.ring_masks, kernel_u)

    def channel_indicators(self, weight_k: Tensor) -> Tensor:
        """Search-mode indicators of the optional channel slices, on the kernel-selected weight (Eq. 3)."""
        if self.channel_thresholds is None:
            return weight_k.new_zeros(0)
        per_channel = weight_k.pow(2).sum(dim=(1, 2, 3))  # (C,)
        # elementwise rather than a matmul: autocast would run a matmul in half precision
        slice_norm = (self.slice_masks * per_channel).sum(1).clamp_min(1e-24).sqrt()  # (n_slices,)
        if not self.first_optional:
            slice_norm = slice_norm[1:]
        return indicator(slice_norm - self.channel_thresholds)

    def channel_mask(self, channel_u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(mask over channels without the gate, gate) from the channel indicators."""
        gate = channel_u[0] if self.first_optional else None
        inner = channel_u[1:] if self.first_optional else channel_u
        if len(self.slice_channels) == 1:
            return None, gate
        return _nest(self.slice_masks, inner), gate

    def _sampled(self) -> tuple[Tensor, Tensor]:
        """Warm-up: constant indicators sampled uniformly over the nested choices."""
        ku = sample_nested(self.num_kernel_indicators, rates=self.kernel_drop_rates).to(self.weight.dtype)
        cu = sample_nested(self.num_channel_indicators, rates=self.channel_drop_rates).to(self.weight.dtype)
        return ku, cu

    def state(self, *, sample: bool | None = None) -> SuperKernelState:
        """Masked weight, channel mask and gate; sampled in warm-up training, thresholded otherwise."""
        if sample is None:
            sample = self.phase == "warmup" and self.training
        if sample:
            kernel_u, channel_u = self._sampled()
            weight = self.weight * self.kernel_mask(kernel_u) if kernel_u.numel() else self.weight
        else:
            kernel_u = self.kernel_indicators()
            weight = self.weight * self.kernel_mask(kernel_u) if kernel_u.numel() else self.weight
            channel_u = self.channel_indicators(weight)
            # the latency estimator of the same step reuses these (see ``indicators``)
            self._cached = (self._cache_key(), kernel_u, channel_u)
        cmask, gate = self.channel_mask(channel_u)
        return SuperKernelState(weight, cmask, gate, kernel_u, channel_u)

    def __getstate__(self) -> dict:
        # the cached indicators belong to one autograd graph: never copy or pickle them
        state = self.__dict__.copy()
        state.pop("_cached", None)
        return state

    def _cache_key(self) -> tuple:
        """Identifies the parameter values and grad mode the thresholded indicators were computed with."""
        params = [p for p in (self.weight, self.kernel_thresholds, self.channel_thresholds) if p is not None]
        return (torch.is_grad_enabled(), *((p.data_ptr(), p._version) for p in params))

    def indicators(self) -> tuple[Tensor, Tensor]:
        """Thresholded (search-mode) kernel and channel indicators, differentiable w.r.t. thresholds.

        Reuses those of the last thresholded forward while no parameter changed in place since (same
        training step, before the optimizer step) and the grad mode is the same.
        """
        if not getattr(self, "latency_grad_to_weights", True):
            # the latency term trains the thresholds only: norms of detached weights
            weight = self.weight.detach()
            kernel_u = self.kernel_indicators(weight)
            return kernel_u, self.channel_indicators(weight * self.kernel_mask(kernel_u) if kernel_u.numel() else weight)
        cached = getattr(self, "_cached", None)
        if cached is not None and cached[0] == self._cache_key():
            return cached[1], cached[2]
        kernel_u = self.kernel_indicators()
        weight = self.weight * self.kernel_mask(kernel_u) if kernel_u.numel() else self.weight
        return kernel_u, self.channel_indicators(weight)

    # ---------------------------------------------------------------------------------------- scores
    @torch.no_grad()
    def scores(self) -> tuple[Tensor, Tensor]:
        """The indicators' inputs ``x = ||w_subset|| - t`` (kernel rings, then channel slices on the
        kernel-selected weight), detached; the hard state is ``x > 0`` level by level."""
        kernel_x = self._ring_norms(self.weight) - self.kernel_thresholds if self.kernel_thresholds is not None \
            else self.weight.new_zeros(0)
        channel_x = self._slice_norms(self._kernel_selected(kernel_x)) - self.channel_thresholds \
            if self.channel_thresholds is not None else self.weight.new_zeros(0)
        return kernel_x.clone(), channel_x.clone()

    @torch.no_grad()
    def set_scores(self, kernel_x: Tensor, channel_x: Tensor) -> None:
        """Set the thresholds so that ``scores()`` returns the given values at the current weights."""
        if self.kernel_thresholds is not None:
            self.kernel_thresholds.copy_(self._ring_norms(self.weight) - kernel_x)
        if self.channel_thresholds is not None:
            self.channel_thresholds.copy_(self._slice_norms(self._kernel_selected(kernel_x)) - channel_x)

    def _ring_norms(self, weight: Tensor) -> Tensor:
        sq = weight.pow(2).sum(dim=(0, 1))
        return (self.ring_masks[1:] * sq).sum(dim=(1, 2)).clamp_min(1e-24).sqrt()

    def _kernel_selected(self, kernel_x: Tensor) -> Tensor:
        if kernel_x.numel() == 0:
            return self.weight
        return self.weight * self.kernel_mask((kernel_x > 0).to(self.weight.dtype))

    def _slice_norms(self, weight_k: Tensor) -> Tensor:
        per_channel = weight_k.pow(2).sum(dim=(1, 2, 3))
        norms = (self.slice_masks * per_channel).sum(1).clamp_min(1e-24).sqrt()
        return norms if self.first_optional else norms[1:]

    def levels_of_scores(self, kernel_x: Tensor, channel_x: Tensor) -> tuple[int, int]:
        """Hard (kernel level, channel level) of given scores."""
        return nested_levels((kernel_x > 0).float()), nested_levels((channel_x > 0).float())

    def level_probs(self) -> tuple[Tensor, Tensor]:
        """Differentiable probabilities of each kernel and each channel level (threshold state)."""
        kernel_u, channel_u = self.indicators()
        return chain_probs(kernel_u), chain_probs(channel_u)

    def choice_levels(self) -> tuple[int, int]:
        """Hard (kernel level, channel level) of the current threshold state."""
        with torch.no_grad():
            kernel_u, channel_u = self.indicators()
        return nested_levels(kernel_u), nested_levels(channel_u)

    def choice(self) -> tuple[int, int]:
        """Hard (kernel, output channels) of the current threshold state; channels 0 = off."""
        kernel_level, channel_level = self.choice_levels()
        return self.kernels[kernel_level], self.channel_levels()[channel_level]

    def extra_repr(self) -> str:
        return (f"kernels={self.kernels}, slice_channels={self.slice_channels}, "
                f"in_per_group={self.in_channels_per_group}, first_optional={self.first_optional}")
