"""Latency-aware architecture search: warm-up and search Lightning modules, the pipeline, outputs."""

from s3nas.search.runner import check_search, run_search

__all__ = ["check_search", "run_search", "objective"]


def objective(summary: dict, metrics: str | None):
    """Values returned to a sweeper: ``optimized_metric`` names summary keys, comma separated."""
    if not metrics:
        return summary.get("val_acc")
    names = [name.strip() for name in str(metrics).split(",") if name.strip()]
    values = tuple(float(summary[name]) for name in names)
    return values[0] if len(values) == 1 else values
