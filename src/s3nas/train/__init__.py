"""Retraining (``python train.py``): the plain network of an ArchSpec or a timm model, the paper's recipe.

``s3nas.train.runner``: ``check_train(cfg)`` validates the inputs (train.py's check), ``run_train(cfg, checked)`` trains
and writes the run dir, ``train_task`` is the command's Hydra task; ``s3nas.train.export``: ``export_onnx`` /
``export_run_dir`` write a checked ONNX file; ``s3nas.train.app``: the command, which imports none of them (torch,
Lightning) before it runs.
"""
