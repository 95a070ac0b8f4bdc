"""The retraining command (``s3nas-train``, ``python train.py``, ``python -m s3nas.train.app``).

A Hydra app on conf/train.yaml around ``s3nas.train.run_train``. Inputs (network, hardware, data, resume
checkpoint) are checked by ``s3nas.train.check_train`` before anything is printed or written;
``s3nas.runtime.entry.run`` prints user errors as one line (exit 2) and finishes W&B.
"""

from __future__ import annotations

from typing import Any

from s3nas.runtime.entry import run
from s3nas.train import check_train, run_train


def check(cfg: Any) -> Any:
    """Every user-caused error, before the run dir is written."""
    return check_train(cfg)


def task(cfg: Any, checked: Any = None) -> Any:
    """Hydra task: train, test, write the run dir; return the sweeper objective (test accuracy by default)."""
    summary = run_train(cfg, checked)
    return _field(summary, cfg.optimized_metric or "test_acc")


def _field(summary: Any, name: str) -> Any:
    """``name`` of a summary, whether a mapping or a typed object (None when it has no such field)."""
    if isinstance(summary, dict):
        return summary.get(name)
    return getattr(summary, name, None)


def main() -> None:
    """Console script ``s3nas-train``: ``s3nas-train arch=<arch.json | search run dir | timm:<name>>``."""
    run(task, "train", check=check)


if __name__ == "__main__":
    main()
