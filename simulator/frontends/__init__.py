"""Frontends that turn models from other frameworks into the simulator's layer graph.

``simulator.frontends.torch`` (torch ``nn.Module`` -> ``Graph``) is the only module of the simulator that
imports torch; importing this package does not.
"""

from __future__ import annotations

try:  # SIM-CORE's error type (the contract); a local stand-in only until it exists
    from simulator import UnsupportedOpError  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - only before simulator.errors lands
    try:
        from simulator.errors import UnsupportedOpError  # type: ignore[no-redef]
    except ImportError:

        class UnsupportedOpError(ValueError):  # type: ignore[no-redef]
            """An operation the simulator cannot represent; names the module and the op."""


__all__ = ["UnsupportedOpError"]
