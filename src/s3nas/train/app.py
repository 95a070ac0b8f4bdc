"""The retraining command (``s3nas-train``, ``python train.py``, ``python -m s3nas.train.app``).

A Hydra app on conf/train.yaml around ``s3nas.train.runner.run_train``. Inputs (network, hardware, data, resume
checkpoint) are checked by ``s3nas.train.runner.check_train`` before anything is printed or written;
``s3nas.runtime.entry.run`` prints user errors as one line (exit 2) and finishes W&B.
"""

from __future__ import annotations

from s3nas.runtime.entry import run


def main() -> None:
    """Console script ``s3nas-train``: ``s3nas-train arch=<arch.json | search run dir | timm:<name>>``."""
    # named, not imported: torch and Lightning only when the command runs (not for --help, --cfg, a config error)
    run("s3nas.train.runner:train_task", "train", check="s3nas.train.runner:check_train")


if __name__ == "__main__":
    main()
