"""`python train.py arch=<arch.json | search run dir | timm:<name>>`: retrain a network with the paper's recipe.

A thin Hydra entry point (conf/train.yaml) around ``s3nas.train.run_train``. Inputs (network, hardware,
data, resume checkpoint) are checked by ``s3nas.train.check_train`` before anything is printed or written;
BASE's runner (``s3nas.utils.entry.run``) prints user errors as one line (exit 2) and finishes W&B.
"""

from __future__ import annotations


def check(cfg):
    """Every user-caused error, before the run dir is written."""
    from s3nas.train import check_train

    return check_train(cfg)


def main(cfg, checked=None):
    """Hydra task: train, test, write the run dir; return the sweeper objective (test accuracy)."""
    from s3nas.train import run_train

    summary = run_train(cfg, checked)
    metric = cfg.get("optimized_metric")
    return summary.get(metric) if metric else summary.get("test_acc")


if __name__ == "__main__":
    from s3nas.utils.entry import run

    run(main, "train", check=check)
