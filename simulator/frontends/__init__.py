"""Frontends that turn models from other frameworks into the simulator's layer graph.

``simulator.frontends.torch`` (torch ``nn.Module`` -> ``Graph``) is the only module of the simulator that
imports torch; importing this package does not.
"""

from __future__ import annotations

from simulator import UnsupportedOpError

__all__ = ["UnsupportedOpError"]
