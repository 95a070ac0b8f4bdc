"""`python -m s3nas.config.check [overrides]`: compose conf/search.yaml and print the resolved latency target.

A quick way to check a command line (e.g. ``latency=2500000cycles hardware=systolic``) before a search.
"""

from __future__ import annotations

from typing import Any

from s3nas.utils.entry import run


def main(cfg: Any) -> float:
    """Print the resolved latency target in ms and return it."""
    print(f"latency: {cfg.latency} -> latency_ms={cfg.latency_ms:.6g} (hardware: {cfg.hardware.profile or cfg.hardware.name})")
    return float(cfg.latency_ms)


if __name__ == "__main__":
    run(main, config_name="search")
