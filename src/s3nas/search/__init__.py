"""Latency-aware architecture search: warm-up and search Lightning modules, the pipeline, outputs."""

from s3nas.errors import ConfigError
from s3nas.search.runner import check_search, run_search

__all__ = ["check_search", "run_search", "objective"]


def objective(summary: dict, metrics: str | None):
    """Values returned to a sweeper: ``optimized_metric`` names summary keys, comma separated."""
    if not metrics:
        return summary.get("val_acc")
    names = [name.strip() for name in str(metrics).split(",") if name.strip()]
    unknown = [name for name in names if not isinstance(summary.get(name), (int, float))]
    if unknown:
        numeric = sorted(k for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise ConfigError(f"optimized_metric: {', '.join(unknown)} is not a number of the summary; use any of "
                          f"{', '.join(numeric)}")
    values = tuple(float(summary[name]) for name in names)
    return values[0] if len(values) == 1 else values
