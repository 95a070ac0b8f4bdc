"""``python -m s3nas.quantize run_dir=<train.py run dir>``: the INT8 model of a finished train.py run.

The same as train.py's ``quantize=int8`` after the fact (``s3nas.train.quantize``): writes
``<run_dir>/model_int8.onnx`` and adds the INT8 figures to ``<run_dir>/summary.json`` (the float figures stay
beside them; ``test_acc`` becomes the INT8 one when the run's hardware computes in int8). The command's own
run dir gets a copy of the updated summary.
"""
