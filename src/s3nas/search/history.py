"""Search history: per-step metrics, thresholds and per-block choices, written to the run dir.

``history.json`` (list of rows: step, phase, epoch, ce, latency_ms, latency_loss, lr, thresholds) and
``choices.csv`` (step, block, kernels, expansions) make a run analysable without W&B (the notebook
reads them). When a W&B logger is attached the same data goes to W&B: threshold histograms and a
``search/choices`` table.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytorch_lightning as pl
import torch

from s3nas.utils.io import atomic_write_text
from s3nas.utils.tables import write_csv

CHOICE_COLUMNS = ["step", "phase", "block", "kernels", "expansions", "expansion_total"]


def option_kernels(option) -> str:
    """'3+5' for a MixConv option, 'skip' for an empty one."""
    return "+".join(str(b.kernel) for b in option) if option else "skip"


def option_expansions(option) -> str:
    """'2+4' (expansions per branch), '0' for skip."""
    return "+".join(f"{b.expansion:g}" for b in option) if option else "0"


def wandb_experiments(trainer: pl.Trainer) -> list:
    """The wandb Run objects behind the trainer's W&B loggers (empty without W&B)."""
    runs = []
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            try:
                runs.append(logger.experiment)
            except Exception:  # a broken W&B setup must not stop the search
                pass
    return runs


class SearchRecorder(pl.Callback):
    """Records metrics every ``every_n_steps`` and choices every ``choices_every_n_steps`` optimizer steps."""

    def __init__(self, run_dir: str | Path, every_n_steps: int = 5, choices_every_n_steps: int = 20) -> None:
        self.run_dir = Path(run_dir)
        self.every_n_steps = max(1, every_n_steps)
        self.choices_every_n_steps = max(1, choices_every_n_steps)
        self.rows: list[dict] = []
        self.choices: list[dict] = []
        self.is_global_zero = True
        self._load_existing()

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.is_global_zero = bool(trainer.is_global_zero)

    # ---- persistence ---------------------------------------------------------------------------
    @property
    def history_path(self) -> Path:
        return self.run_dir / "history.json"

    @property
    def choices_path(self) -> Path:
        return self.run_dir / "choices.csv"

    def _load_existing(self) -> None:
        # A resumed run keeps the history written before the interruption.
        if self.history_path.exists():
            try:
                self.rows = json.loads(self.history_path.read_text())
            except (OSError, ValueError):
                self.rows = []
        if self.choices_path.exists():
            try:
                with self.choices_path.open() as handle:
                    self.choices = [dict(r, step=int(r["step"])) for r in csv.DictReader(handle)]
            except (OSError, ValueError, KeyError):
                self.choices = []

    def truncate(self, total_step: int) -> None:
        """Drop rows past ``total_step`` (recorded after the checkpoint a run resumes from)."""
        self.rows = [r for r in self.rows if r["step"] <= total_step]
        self.choices = [c for c in self.choices if int(c["step"]) <= total_step]

    def flush(self) -> None:
        """Write history.json and choices.csv atomically (rank 0 only)."""
        if not self.is_global_zero:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.history_path, json.dumps(self.rows))
        write_csv(self.choices_path, self.choices, CHOICE_COLUMNS)

    # ---- recording -----------------------------------------------------------------------------
    def record_choices(self, step: int, phase: str, supernet) -> None:
        """Append the current per-block choice (hard indicators) at ``step``."""
        self.choices = [c for c in self.choices if not (int(c["step"]) == step and c["phase"] == phase)]
        for block, option in enumerate(supernet.chosen_options()):
            self.choices.append({
                "step": step, "phase": phase, "block": block,
                "kernels": option_kernels(option), "expansions": option_expansions(option),
                "expansion_total": f"{sum(b.expansion for b in option):g}",
            })

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = pl_module.total_step  # already incremented: optimizer steps done
        if step % self.every_n_steps == 0 and isinstance(outputs, dict):
            thresholds = [float(v) for p in pl_module.supernet.threshold_parameters()
                          for v in p.detach().flatten().cpu().tolist()]
            row = {"step": step, "phase": pl_module.phase, "epoch": int(trainer.current_epoch),
                   "lr": float(trainer.optimizers[0].param_groups[0]["lr"])}
            for key in ("loss", "ce", "acc", "latency_ms", "latency_loss"):
                if key in outputs and outputs[key] is not None:
                    row[key] = float(outputs[key])
            if getattr(pl_module, "target_ms", None) is not None:
                row["target_ms"] = float(pl_module.target_ms)
            row["thresholds"] = thresholds
            self.rows.append(row)
            for run in wandb_experiments(trainer):
                import wandb

                run.log({"search/thresholds": wandb.Histogram(thresholds),
                         "search/threshold_mean": sum(thresholds) / max(1, len(thresholds)),
                         "search/total_step": step})
        if pl_module.phase == "search" and step % self.choices_every_n_steps == 0:
            self.record_choices(step, pl_module.phase, pl_module.supernet)
        if step % 10 == 0:  # keep the files fresh for live analysis
            self.flush()

    def on_train_start(self, trainer, pl_module) -> None:
        # the training state is restored by now: rows past it (a run that failed before its first checkpoint,
        # e.g. on a full disk, and is rerun from scratch) are dropped, never duplicated
        self.truncate(pl_module.total_step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.flush()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # every checkpoint has its history on disk (a SIGTERM checkpoint mid-epoch resumes from this step)
        self.flush()

    def on_fit_end(self, trainer, pl_module) -> None:
        if pl_module.phase == "search":
            self.record_choices(pl_module.total_step, pl_module.phase, pl_module.supernet)
            self.log_choices_table(trainer)
        self.flush()

    def log_choices_table(self, trainer) -> None:
        """Log the per-block choices over time as a W&B table."""
        runs = wandb_experiments(trainer)
        if not runs or not self.choices:
            return
        import wandb

        table = wandb.Table(columns=CHOICE_COLUMNS,
                            data=[[c[k] for k in CHOICE_COLUMNS] for c in self.choices])
        for run in runs:
            run.log({"search/choices": table})


def thresholds_of(supernet) -> list[float]:
    """All threshold values, flattened, in parameter order."""
    with torch.no_grad():
        return [float(v) for p in supernet.threshold_parameters() for v in p.flatten().tolist()]
