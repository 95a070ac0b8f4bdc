"""`s3nas-export run_dir=<train.py run dir> [input_size=224] [output=...] [opset=18] [atol=1e-4]`.

Exports the trained (EMA) network of a train.py run to ONNX (``<run_dir>/model.onnx`` by default), checks
onnxruntime against torch on random input and on real test images of the run's dataset, and prints one
JSON line with the result; beside the model, ``latency.json`` (s3nas.train.contract) holds the run's latency
figures for it. A Hydra app on conf/export.yaml like every other command (``python -m
s3nas.train.export_app`` works too); bad input prints one ``error:`` line and exits 2, and nothing is
written unless the check passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from s3nas.config.ranges import check_ranges
from s3nas.config.train_schema import EXPORT_RANGES
from s3nas.errors import ConfigError
from s3nas.outputs import ExportSummary, write_summary
from s3nas.runtime.entry import run
from s3nas.train.contract import write_run_contract
from s3nas.train.export import export_run_dir


def check(cfg: Any) -> None:
    """ConfigError for a missing run dir or an out-of-range option (before anything is written)."""
    if not cfg.run_dir:
        raise ConfigError("run_dir: not set; usage: s3nas-export run_dir=<train.py run dir> "
                          "[input_size=N] [output=model.onnx]")
    if not Path(cfg.run_dir).is_dir():
        raise ConfigError(f"run_dir: no directory '{cfg.run_dir}'; give a train.py run dir")
    check_ranges(cfg, EXPORT_RANGES)  # the same ranges as train.py's export group


def main(cfg: Any, checked: Any = None) -> dict:
    """Hydra task: export and check; print the result as one JSON line and return it."""
    result = export_run_dir(cfg.run_dir, output=cfg.output, input_size=cfg.input_size, opset=cfg.opset,
                            dynamic_batch=cfg.dynamic_batch, check=cfg.check, atol=cfg.atol,
                            weights=cfg.weights)
    # latency.json beside the model: the train run's latency figures for it (none for an unfinished run)
    write_run_contract(result["path"], cfg.run_dir, written_by="s3nas-export")
    run_dir = Path(str(cfg.paths.output_dir))
    write_summary(run_dir, ExportSummary(onnx=result, source_run_dir=str(cfg.run_dir), run_dir=str(run_dir)))
    print(json.dumps(result), flush=True)
    return result


def cli() -> None:
    """Console script ``s3nas-export``."""
    run(main, "export", check=check)


if __name__ == "__main__":
    cli()
