"""Latency targets with units: "2.5ms", "800us", "0.0025s", "2500000cycles" or a bare number (ms).

``parse_latency_ms`` turns any accepted form into milliseconds; cycles need the hardware clock.
Anything else (no number, a non-positive value, an unknown unit) raises ``ConfigError`` naming
``latency`` and the accepted forms.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Optional, Union

from s3nas.errors import ConfigError

ACCEPTED_FORMS = "a positive number with a unit: 2.5ms, 800us, 0.0025s, 2500000cycles (a bare number means ms)"

#: Milliseconds per unit; "cycles" is handled with the hardware clock.
MS_PER_UNIT = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3, "ns": 1e-6}
CYCLE_UNITS = ("cycles", "cycle")

_LATENCY_RE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Zµ]*)\s*$")

ClockSource = Union[float, int, Callable[[], float], None]


def split_latency(value: object, key: str = "latency") -> tuple[float, str]:
    """Split a latency target into (number, unit); the unit is "ms" for a bare number."""
    if isinstance(value, bool) or value is None:
        raise _bad(value, key)
    if isinstance(value, (int, float)):
        number, unit = float(value), "ms"
    else:
        match = _LATENCY_RE.match(str(value))
        if match is None:
            raise _bad(value, key)
        number, unit = float(match.group(1)), (match.group(2).lower() or "ms")
    if unit not in MS_PER_UNIT and unit not in CYCLE_UNITS:
        raise _bad(value, key)
    if not math.isfinite(number) or number <= 0:
        raise _bad(value, key)
    return number, unit


def is_cycles(value: object) -> bool:
    """True if ``value`` is a valid latency given in cycles."""
    return split_latency(value)[1] in CYCLE_UNITS


def parse_latency_ms(value: object, clock_hz: ClockSource = None, key: str = "latency") -> float:
    """Latency target ``value`` in milliseconds; ``clock_hz`` (a number or a callable) converts cycles."""
    number, unit = split_latency(value, key)
    if unit in MS_PER_UNIT:
        return number * MS_PER_UNIT[unit]
    clock = clock_hz() if callable(clock_hz) else clock_hz
    if clock is None or not float(clock) > 0:
        raise ConfigError(f"{key}: {value!r} is given in cycles but the hardware has no positive clock_hz")
    return number / float(clock) * 1e3


def format_ms(latency_ms: float) -> str:
    """Short human form of a latency in ms, e.g. 2.5 -> '2.5ms'."""
    return f"{latency_ms:.6g}ms"


def _bad(value: object, key: Optional[str]) -> ConfigError:
    return ConfigError(f"{key}: {value!r} is not a latency; use {ACCEPTED_FORMS}")
