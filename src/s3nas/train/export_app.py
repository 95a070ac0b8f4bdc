"""`s3nas-export run_dir=<train.py run dir> [input_size=224] [output=...] [opset=18] [atol=1e-4]`.

Exports the trained (EMA) network of a train.py run to ONNX (``<run_dir>/model.onnx`` by default), checks
onnxruntime against torch on random input and on real test images of the run's dataset, and prints one
JSON line with the result; beside the model, ``latency.json`` (s3nas.train.contract) holds the run's latency
figures for it. A Hydra app on conf/export.yaml like every other command (``python -m
s3nas.train.export_app`` works too); bad input prints one ``error:`` line and exits 2, and nothing is
written unless the check passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s3nas.config.ranges import check_ranges
from s3nas.config.train_schema import EXPORT_RANGES
from s3nas.errors import ConfigError
from s3nas.runtime.entry import run


def check(cfg: Any) -> None:
    """ConfigError for a missing run dir or an out-of-range option (before anything is written)."""
    if not cfg.run_dir:
        raise ConfigError("run_dir: not set; usage: s3nas-export run_dir=<train.py run dir> "
                          "[input_size=N] [output=model.onnx]")
    if not Path(cfg.run_dir).is_dir():
        raise ConfigError(f"run_dir: no directory '{cfg.run_dir}'; give a train.py run dir")
    check_ranges(cfg, EXPORT_RANGES)  # the same ranges as train.py's export group


def cli() -> None:
    """Console script ``s3nas-export``."""
    run("s3nas.train.export:export_task", "export", check=check)  # torch and onnx: only when it runs


if __name__ == "__main__":
    cli()
