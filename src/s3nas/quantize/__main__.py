"""``python -m s3nas.quantize run_dir=<train.py run dir> [calibration_images=512] [qat_epochs=0] ...``.

Writes ``model_int8.onnx`` and its latency contract ``latency_int8.json`` into the run dir and updates its
summary.json (``s3nas.quantize.command``: the check and the task, imported only when the command runs them)."""

from __future__ import annotations

from s3nas.runtime.entry import run


def cli() -> None:
    """Console script ``s3nas-quantize``."""
    run("s3nas.quantize.command:main", "quantize", check="s3nas.quantize.command:check")


if __name__ == "__main__":
    cli()
