"""The one range validator of the config values: a table ``key -> Range`` checked by ``check_ranges``.

OmegaConf checks types and unknown keys at composition; ranges (``>= 1``, ``in (0, 1]``, ``or null``) are
declared next to each schema as a ``RANGES`` table and checked at start-up, raising one ``ConfigError`` line
naming the key, the accepted range and the value given, e.g.
``schedule.search_epochs: must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from s3nas.errors import ConfigError

_UNSET = object()


@dataclass(frozen=True)
class Range:
    """Accepted values of one numeric key: bounds (open or closed), integer only, null allowed."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # low < value instead of low <= value
    high_open: bool = False  # value < high instead of value <= high
    integer: bool = False
    nullable: bool = False
    hint: str = ""  # appended to the message in parentheses (what to do instead)

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is in the range (None only when nullable; bools are not numbers)."""
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def describe(self) -> str:
        """'an integer >= 1 or null', 'a number in (0, 1]', ..."""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            bounds = f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            bounds = f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            bounds = f" {'<' if self.high_open else '<='} {self.high:g}"
        else:
            bounds = ""
        return f"{kind}{bounds}{' or null' if self.nullable else ''}"


def check_value(key: str, value: Any, rule: Range) -> None:
    """ConfigError '<key>: must be <range>, got <value>' unless ``rule`` accepts ``value``."""
    if not rule.accepts(value):
        raise ConfigError(f"{key}: must be {rule.describe()}, got {value!r}{f' ({rule.hint})' if rule.hint else ''}")


def check_choice(key: str, value: Any, accepted: tuple) -> None:
    """ConfigError '<key>: <value> is not accepted; use one of a, b' unless ``value`` is one of ``accepted``."""
    if value not in accepted:
        raise ConfigError(f"{key}: {value!r} is not accepted; use one of {', '.join(map(str, accepted))}")


def check_ranges(node: Any, rules: Mapping[str, Range], prefix: str = "") -> None:
    """Check every dotted key of ``rules`` in ``node`` (DictConfig, dataclass or dict); keys absent are skipped.

    ``prefix`` names the node in messages (``"schedule."`` gives ``schedule.optimizer.eps: ...``).
    """
    for key, rule in rules.items():
        value = _lookup(node, key)
        if value is not _UNSET:
            check_value(f"{prefix}{key}", value, rule)


def _lookup(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if node is None:
            return _UNSET
        if isinstance(node, Mapping) or hasattr(node, "keys"):
            if part not in node:
                return _UNSET
            node = node[part]
        elif hasattr(node, part):
            node = getattr(node, part)
        else:
            return _UNSET
    return node
