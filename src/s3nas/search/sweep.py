"""Hydra callback: after a multirun, collect every job's summary.json into one sweep table.

Writes ``sweep_summary.csv`` and ``sweep_summary.md`` in the sweep dir and prints the table (lambda
values and other overrides vs simulated latency vs accuracy). Registered in conf/hydra/default.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from s3nas.outputs import load_summary
from s3nas.utils import tables
from s3nas.utils.io import atomic_write_text

#: Summary fields of the sweep table (SearchSummary's), in column order.
COLUMNS = ("target_ms", "estimated_ms", "latency_ms", "val_acc", "lambda1", "lambda2", "repaired",
           "search_seconds")


def collect_sweep(sweep_dir: str | Path) -> list[dict]:
    """One row per job dir holding a summary.json: job, overrides, the summary's main figures."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: _job_key(p.parent.name)):
        summary = load_summary(summary_path)  # an old or malformed summary: one line naming the file
        overrides = ""
        overrides_path = summary_path.parent / ".hydra" / "overrides.yaml"
        if overrides_path.exists():
            overrides = " ".join(yaml.safe_load(overrides_path.read_text()) or [])
        row = {"job": summary_path.parent.name, "overrides": overrides}
        # a search sweep fills every column; other commands' sweeps (train, random baselines) the ones they have
        row.update({key: getattr(summary, key, None) for key in COLUMNS})
        rows.append(row)
    return rows


def _job_key(name: str):
    return (0, int(name)) if name.isdigit() else (1, name)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_sweep_summary(sweep_dir: str | Path) -> list[dict]:
    """Write sweep_summary.csv/.md into ``sweep_dir``, print the table, return the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect_sweep(sweep_dir)
    if not rows:
        return rows
    fields = ["job", "overrides", *COLUMNS]
    tables.write_csv(sweep_dir / "sweep_summary.csv", rows, fields)
    markdown = tables.markdown_table(rows, fields, default=_fmt)
    atomic_write_text(sweep_dir / "sweep_summary.md", markdown)
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Sweep summary ({len(rows)} jobs): {sweep_dir}")
        for field_name in fields:
            table.add_column(field_name)
        for row in rows:
            table.add_row(*(_fmt(row[f]) for f in fields))
        Console(width=160).print(table)
    except Exception:
        print(markdown, end="")
    return rows


class SweepSummaryCallback(Callback):
    """Collects the jobs' summary.json files at the end of a multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_summary(config.hydra.sweep.dir)
