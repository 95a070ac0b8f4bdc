"""The end of a multirun: one table of every job (its overrides, status, reason and figures).

``SweepSummaryCallback`` (registered in conf/hydra/default.yaml) writes ``job_status.json`` into each job's
dir when the job ends (``ok`` or ``failed`` with the one-line reason; in the process that ran the job, so the
joblib launcher's workers too) and ``sweep_summary.csv``/``.md`` into the sweep dir at the end of the
multirun. Hydra's sweepers stop at a failed job without calling ``on_multirun_end``; the entry point
(``s3nas.runtime.entry.run``) then calls ``finish_sweep`` so the summary is written all the same. A job with
neither a status file nor a summary (killed, interrupted) and a planned job that never started are listed
as ``interrupted``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from s3nas.errors import ConfigError, UserError
from s3nas.outputs import load_summary
from s3nas.utils import tables
from s3nas.utils.io import atomic_write_json, atomic_write_text

#: Summary fields of the sweep table (SearchSummary's), in column order.
COLUMNS = ("target_ms", "estimated_ms", "latency_ms", "val_acc", "lambda1", "lambda2", "repaired",
           "search_seconds")
#: The file each job's end leaves in its dir: {"job", "status", "reason", "overrides"}.
JOB_STATUS_FILE = "job_status.json"
OK, FAILED, INTERRUPTED = "ok", "failed", "interrupted"
FIELDS = ("job", "overrides", "status", "reason", *COLUMNS)

#: The sweep dir of the multirun this process started and has not summarised yet (see ``finish_sweep``).
_pending_sweep_dir: Optional[str] = None
#: The report of the sweep ``on_multirun_end`` summarised (the entry point turns its failures into the exit
#: code when the sweeper itself went on past a failed job, as optuna's does).
last_report: Optional["SweepReport"] = None


@dataclass
class SweepReport:
    """What a finished sweep's summary holds: where it is, how many jobs, how many did not end ok."""

    sweep_dir: Path
    jobs: int
    not_ok: int

    def line(self) -> str:
        """'sweep: 1 of 3 jobs failed or were interrupted; see <dir>/sweep_summary.md'."""
        return (f"sweep: {self.not_ok} of {self.jobs} jobs failed or were interrupted; "
                f"see {self.sweep_dir / 'sweep_summary.md'}")


def one_line(text: Any) -> str:
    """``text`` on one line (its non-empty lines joined by spaces)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def failure_reason(error: BaseException) -> str:
    """The one-line reason of a failed job: a user error's message, else '<ExceptionType>: <message>'."""
    if isinstance(error, UserError):
        return one_line(error)
    return one_line(f"{type(error).__name__}: {error}")


def write_job_status(job_dir: str | Path, job: Any, status: str, reason: str, overrides: list[str]) -> Path:
    """Write ``<job_dir>/job_status.json`` atomically."""
    return atomic_write_json(Path(job_dir) / JOB_STATUS_FILE,
                             {"job": job, "status": status, "reason": reason, "overrides": list(overrides)})


def planned_jobs(sweep_dir: str | Path) -> Optional[list[list[str]]]:
    """The overrides of every job Hydra's basic sweeper planned (from ``multirun.yaml``), or None for other
    sweepers (optuna decides its trials as it goes) or when the file is missing."""
    path = Path(sweep_dir) / "multirun.yaml"
    try:
        cfg = OmegaConf.load(path)
        sweeper = cfg.hydra.sweeper
        if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
            return None
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        arguments = params + list(OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False))
        overrides = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(overrides, None)
        return [list(job) for batch in batches for job in batch]
    except Exception:  # noqa: BLE001 - no plan: the table lists the job dirs found
        return None


def collect_sweep(sweep_dir: str | Path, strict: bool = True) -> list[dict]:
    """One row per job of the sweep: job, overrides, status, reason and the summary's main figures.

    Jobs are the sweep dir's job dirs (holding a summary.json, a job_status.json or Hydra's .hydra) and the
    planned jobs of a basic sweep that never started. ``strict``: an unreadable summary.json raises (one
    line naming the file); otherwise its job is listed as failed with that line as its reason.
    """
    sweep_dir = Path(sweep_dir)
    job_dirs = {p.name: p for p in sweep_dir.iterdir() if p.is_dir() and _is_job_dir(p)} if sweep_dir.is_dir() else {}
    plan = planned_jobs(sweep_dir) or []
    names = set(job_dirs) | {str(num) for num in range(len(plan))}
    rows = []
    for name in sorted(names, key=_job_key):
        planned = plan[int(name)] if name.isdigit() and int(name) < len(plan) else None
        rows.append(_job_row(name, job_dirs.get(name), planned, strict))
    return rows


def _is_job_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("summary.json", JOB_STATUS_FILE, ".hydra"))


def _job_row(name: str, job_dir: Optional[Path], planned: Optional[list[str]], strict: bool) -> dict:
    row: dict[str, Any] = {"job": name, "overrides": " ".join(planned or []), "status": "", "reason": ""}
    row.update({key: None for key in COLUMNS})
    if job_dir is None:
        row.update(status=INTERRUPTED, reason="not started (the sweep stopped before this job)")
        return row
    status = _read_json(job_dir / JOB_STATUS_FILE)
    overrides_path = job_dir / ".hydra" / "overrides.yaml"
    if status and status.get("overrides") is not None:
        row["overrides"] = " ".join(status["overrides"])
    elif overrides_path.exists():
        row["overrides"] = " ".join(yaml.safe_load(overrides_path.read_text()) or [])
    summary_path = job_dir / "summary.json"
    if status:
        row.update(status=status.get("status", ""), reason=status.get("reason", ""))
    elif summary_path.exists():
        row.update(status=OK)
    else:
        row.update(status=INTERRUPTED, reason="the job did not finish (interrupted or killed)")
    if summary_path.exists() and row["status"] == OK:
        try:
            summary = load_summary(summary_path)  # an old or malformed summary: one line naming the file
        except ConfigError as error:
            if strict:
                raise
            row.update(status=FAILED, reason=one_line(error))
            return row
        # a search sweep fills every column; other commands' sweeps (train, random baselines) the ones they have
        row.update({key: getattr(summary, key, None) for key in COLUMNS})
    return row


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _job_key(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")


def write_sweep_summary(sweep_dir: str | Path, strict: bool = True) -> list[dict]:
    """Write sweep_summary.csv/.md into ``sweep_dir``, print the table, return the rows (none: nothing written)."""
    sweep_dir = Path(sweep_dir)
    rows = collect_sweep(sweep_dir, strict=strict)
    if not rows:
        return rows
    tables.write_csv(sweep_dir / "sweep_summary.csv", rows, FIELDS)
    markdown = tables.markdown_table(rows, FIELDS, default=_fmt)
    atomic_write_text(sweep_dir / "sweep_summary.md", markdown)
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Sweep summary ({len(rows)} jobs): {sweep_dir}")
        for field_name in FIELDS:
            table.add_column(field_name)
        for row in rows:
            table.add_row(*(_fmt(row[f]) for f in FIELDS))
        Console(width=160).print(table)
    except Exception:  # noqa: BLE001 - the table is printed plain
        print(markdown, end="")
    return rows


def finish_sweep() -> Optional[SweepReport]:
    """The report of the multirun this process ran, None without one; writes its summary first when
    ``on_multirun_end`` did not (a sweeper stopped at a failed job, or the sweep was interrupted). Never raises."""
    global _pending_sweep_dir, last_report
    sweep_dir, _pending_sweep_dir = _pending_sweep_dir, None
    report, last_report = last_report, None
    if sweep_dir is not None:
        report = _summarise(sweep_dir)
    return report


def _summarise(sweep_dir: str) -> Optional[SweepReport]:
    try:
        rows = write_sweep_summary(sweep_dir, strict=False)
    except Exception as error:  # noqa: BLE001 - a summary that cannot be written must not hide the jobs' outcome
        sys.stderr.write(f"warning: sweep summary not written in {sweep_dir}: {one_line(error)}\n")
        return None
    return SweepReport(Path(sweep_dir), len(rows), sum(row["status"] != OK for row in rows))


class SweepSummaryCallback(Callback):
    """Each job's status file at its end; the sweep's table at the end of the multirun."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _pending_sweep_dir
        _pending_sweep_dir = str(config.hydra.sweep.dir)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        if job_return.status == JobStatus.COMPLETED:
            status, reason = OK, ""
        else:
            status, reason = FAILED, failure_reason(job_return._return_value)
        try:
            write_job_status(config.hydra.runtime.output_dir, OmegaConf.select(config, "hydra.job.num"), status,
                             reason, list(job_return.overrides or []))
        except OSError:  # an unwritable or full job dir: the summary lists the job as interrupted
            pass

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _pending_sweep_dir, last_report
        _pending_sweep_dir = None
        last_report = _summarise(str(config.hydra.sweep.dir))


def _is_multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN
