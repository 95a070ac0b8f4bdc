"""The sweep table of a multirun (``sweep_summary.csv``/``.md``): kept here for its users; the code is
``s3nas.runtime.sweep``, where the entry point can reach it when a sweeper stops at a failed job."""

from __future__ import annotations

from s3nas.runtime.sweep import (
                                 COLUMNS,
                                 JOB_STATUS_FILE,
                                 SweepSummaryCallback,
                                 collect_sweep,
                                 write_sweep_summary,
)

__all__ = ["COLUMNS", "JOB_STATUS_FILE", "SweepSummaryCallback", "collect_sweep", "write_sweep_summary"]
