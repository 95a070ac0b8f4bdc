"""The S3NAS latency loss (paper Eq. 9): active only when the estimated latency exceeds the target.

Total search loss = CE + ``latency_loss(L, T)`` with ``lambda1 * log(1 + lambda2 * ReLU(L - T))``; the
log keeps the gradient bounded far above the target, the ReLU makes any latency under the target free.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["latency_loss"]


def latency_loss(latency_ms: Tensor | float, target_ms: Tensor | float, lambda1: float = 15.0,
                 lambda2: float = 100.0) -> Tensor:
    """``lambda1 * log(1 + lambda2 * relu(latency_ms - target_ms))`` (a scalar tensor, differentiable)."""
    latency = latency_ms if isinstance(latency_ms, Tensor) else torch.tensor(float(latency_ms))
    excess = torch.relu(latency - target_ms)
    return lambda1 * torch.log1p(lambda2 * excess)
