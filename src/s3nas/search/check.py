"""`s3nas-check [overrides]` (or `python -m s3nas.search.check`): check a search command line without running it.

Composes conf/search.yaml with the overrides, runs every check ``python search.py`` runs before it starts
(loss, schedule, trainer keys, hardware, latency target and its feasibility, data) and prints the resolved
latency target, e.g. ``s3nas-check latency=2500000cycles hardware=systolic``. Bad input: one
``error:`` line, exit 2.
"""

from __future__ import annotations

from typing import Any

from s3nas.runtime.entry import run
from s3nas.search import check_search


def check(cfg: Any) -> Any:
    """The search's own start-up checks."""
    return check_search(cfg)


def main(cfg: Any, checked: Any = None) -> float:
    """Print the resolved latency target in ms, and the space's range on the hardware, and return the target."""
    checked = checked or check(cfg)
    feasibility = checked.feasibility
    if len(checked.networks) == 1 and len(checked.networks[0]) == 1:
        print(f"latency: {cfg.latency} -> latency_ms={cfg.latency_ms:.6g} (hardware: {checked.backend.name}; the "
              f"search space spans {feasibility.fastest_ms:.4g}..{feasibility.slowest_ms:.4g} ms {feasibility.how}); "
              f"checks passed")
        return float(cfg.latency_ms)
    networks = "; ".join(" and ".join(f"{checked.backends[i].name} {t:.6g} ms" for i, t in network)
                         for network in checked.networks)
    print(f"latency: {cfg.latency} -> {len(checked.networks)} network(s): {networks}; checks passed")
    return float(checked.target_ms)


def cli() -> None:
    """Console script ``s3nas-check`` (also ``python -m s3nas.search.check``)."""
    run(main, config_name="search", check=check)


if __name__ == "__main__":
    cli()
