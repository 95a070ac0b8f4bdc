"""Latency-aware architecture search: warm-up and search Lightning modules, the pipeline, outputs."""

from s3nas.errors import ConfigError
from s3nas.search.checks import check_search

__all__ = ["check_search", "run_search", "objective"]


def __getattr__(name: str):
    """``run_search`` loads the pipeline (torch, Lightning) on first use, so the checks stay cheap."""
    if name == "run_search":
        import importlib

        return importlib.import_module("s3nas.search.runner").run_search
    raise AttributeError(f"module 's3nas.search' has no attribute {name!r}")


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
