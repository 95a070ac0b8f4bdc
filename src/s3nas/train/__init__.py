"""Retraining (``python train.py``): the plain network of an ArchSpec or a timm model, the paper's recipe.

``check_train(cfg)`` validates the inputs (train.py's ``check=`` hook), ``run_train(cfg, checked)`` trains
and writes the run dir; ``export_onnx`` / ``export_run_dir`` write a checked ONNX file.
"""

from s3nas.train.runner import CheckedInputs, check_train, run_train

__all__ = ["CheckedInputs", "check_train", "run_train"]
