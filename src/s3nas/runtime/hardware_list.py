"""``hardware=[midap,systolic]`` on the command line: one search against several hardware.

Hydra merges the configs of a group list into one node, which loses every profile but the last, so
``expand_hardware_list(argv)`` (called by ``s3nas.runtime.entry.run`` before Hydra reads ``sys.argv``) rewrites
``hardware=[a,b,c]`` into ``hardware=a +hardware@extra_hardware.b=b +hardware@extra_hardware.c=c``: the first stays
``cfg.hardware``, the others are composed from the same group under ``cfg.extra_hardware.<name>`` (override their keys
as ``extra_hardware.b.profile=...``). A one-element list is ``hardware=a``. Commands other than the search take one
hardware; a list there, an empty list or a name given twice is a ConfigError naming ``hardware``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from s3nas.errors import ConfigError

_LIST = re.compile(r"^hardware=\[(?P<items>[^\]]*)\]$")
_NAME = re.compile(r"^[A-Za-z0-9_./-]+$")


def expand_hardware_list(argv: Sequence[str], config_name: str) -> list[str]:
    """``argv`` with a ``hardware=[...]`` override rewritten (see the module docstring)."""
    out: list[str] = []
    for arg in argv:
        match = _LIST.match(arg)
        if match is None:
            out.append(arg)
            continue
        names = [n.strip().strip("'\"") for n in match.group("items").split(",") if n.strip()]
        if not names or not all(_NAME.match(n) for n in names):
            raise ConfigError(f"hardware: {arg.split('=', 1)[1]!r} is not a list of hardware names; "
                              "write hardware=[midap,systolic]")
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"hardware: {twice} is listed twice in {arg.split('=', 1)[1]}; list each hardware once")
        if len(names) > 1 and config_name != "search":
            raise ConfigError(f"hardware: this command takes one hardware, got {len(names)}; a list of hardware "
                              "(one network meeting a target on each) is for search.py")
        out.append(f"hardware={names[0]}")
        out.extend(f"+hardware@extra_hardware.{name}={name}" for name in names[1:])
    return out
