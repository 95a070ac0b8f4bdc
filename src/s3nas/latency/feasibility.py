"""Feasibility of a latency target against the search space, known before any training.

The latency table gives the fastest (``min_ms``) and slowest (``max_ms``) architecture of the space; a
target below the fastest cannot be met by any architecture, one above the slowest makes the latency term
of the loss inactive for the whole search.
"""

from __future__ import annotations

import math
import warnings

from s3nas.errors import InfeasibleTargetError

__all__ = ["check_target", "LatencyTargetWarning"]


class LatencyTargetWarning(UserWarning):
    """The latency target is above the slowest architecture: the latency term will be inactive."""


def check_target(target_ms: float, table) -> None:
    """Raise InfeasibleTargetError if ``target_ms`` < table.min_ms; warn if it is > table.max_ms."""
    min_ms, max_ms = float(table.min_ms), float(table.max_ms)
    target = float(target_ms)
    if math.isnan(target) or target < min_ms:
        raise InfeasibleTargetError(
            f"latency: target {target:.4g} ms is below the fastest architecture of the search space "
            f"({min_ms:.4g} ms; the space spans {min_ms:.4g}..{max_ms:.4g} ms); use a latency of at least "
            f"{min_ms:.4g}ms, or a smaller supernet/candidates")
    if target > max_ms:
        warnings.warn(
            f"latency: target {target:.4g} ms is above the slowest architecture of the search space "
            f"({max_ms:.4g} ms; the space spans {min_ms:.4g}..{max_ms:.4g} ms): the latency term will be "
            f"inactive and the search optimises accuracy only", LatencyTargetWarning, stacklevel=2)
