"""INT8 post-training quantization of an ONNX file with onnxruntime's static quantizer (QDQ format).

Why onnxruntime and not torch's PT2E export quantization: torch 2.14 no longer ships PT2E quantization in
``torch.ao`` (it moved to the separate torchao package), while onnxruntime is already a dependency, writes
the standard QDQ ONNX that NPU toolchains and ONNX runtimes consume, and runs it with real INT8 kernels on
the CPU, so the file whose accuracy is reported is the file that is deployed.

The scheme, matching an 8-bit NPU: weights INT8, symmetric, per output channel (range [-127, 127], zero
point 0); activations UINT8, asymmetric, one scale per tensor from calibration images (min/max by
default); BatchNorm folded into the convolutions by the ONNX exporter (checked: no BatchNormalization node
may remain); the activation functions the NPUs here support (ReLU, ReLU6 as Clip, h-swish as HardSwish,
swish and SE's gate as Sigmoid and Mul) and the residual Add / SE Mul get quantized inputs too. An operator
outside :data:`QUANTIZED_OPS` and :data:`LAYOUT_OPS` stops the quantization with one line naming it (it
would run in float on the NPU's host) unless the caller lists it in ``allow_float_ops``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from s3nas.errors import ConfigError
from s3nas.utils.io import atomic_output_path

#: Operators whose inputs get INT8 quantization (onnxruntime's QDQ and QLinear registries, and the NPU's
#: activation functions).
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "Sigmoid", "HardSwish",
                 "HardSigmoid", "GlobalAveragePool", "AveragePool", "MaxPool", "ReduceMean", "Concat",
                 "Softmax", "Resize", "LeakyRelu")
#: Operators that only move or reshape data (no arithmetic): nothing to quantize.
LAYOUT_OPS = ("Flatten", "Reshape", "Split", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Pad", "Identity",
              "Constant", "Shape", "Gather", "Cast", "Dropout")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def toolchain() -> str:
    """The quantizer and its version, as summaries record it."""
    return f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ)"


def op_census(path: str | os.PathLike) -> Counter:
    """How many nodes of each operator type the ONNX file holds."""
    return Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def unquantizable_nodes(path: str | os.PathLike, allow_float_ops: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(op type, node name) of every node that is neither quantized nor pure layout (nor allowed in float)."""
    allowed = set(QUANTIZED_OPS) | set(LAYOUT_OPS) | set(allow_float_ops)
    graph = onnx.load(str(path), load_external_data=False).graph
    return [(node.op_type, node.name) for node in graph.node if node.op_type not in allowed]


def check_quantizable(path: str | os.PathLike, allow_float_ops: Iterable[str] = ()) -> None:
    """ConfigError naming the first operator the INT8 toolchain does not quantize (and how many there are)."""
    bad = unquantizable_nodes(path, allow_float_ops)
    if bad:
        kinds = sorted({op for op, _ in bad})
        op, name = bad[0]
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ConfigError(f"quantize: operator {op} (node '{name}'{more}) "
                          f"has no INT8 kernel in {toolchain()}; use a network without {', '.join(kinds)}, "
                          f"or allow it in float: quantize.allow_float_ops=[{','.join(kinds)}]")


class _Reader:
    """onnxruntime CalibrationDataReader over a (N, C, H, W) float array, in batches."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int) -> None:
        self._batches = iter([{input_name: images[i:i + batch]} for i in range(0, len(images), batch)])

    def get_next(self) -> Optional[dict]:
        return next(self._batches, None)

    def rewind(self) -> None:  # not needed by the calibrators used here
        raise NotImplementedError


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike, calibration: np.ndarray, *,
                  method: str = "minmax", per_channel: bool = True, batch: int = 32,
                  allow_float_ops: Sequence[str] = (), percentile: float = 99.999) -> dict:
    """Write the INT8 (QDQ) version of the float ONNX model ``src`` to ``dst``; returns what was done.

    ``calibration``: float32 images (N, C, H, W) in the model's input layout, N >= 1. ``dst`` is written
    atomically (nothing is left at ``dst`` when any step fails).
    """
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"quantize.calibration_method: {method!r}; use {', '.join(CALIBRATION_METHODS)}")
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise ConfigError("quantize.calibration_images: no calibration images (need at least 1); set it to a "
                          "positive number, e.g. quantize.calibration_images=512")
    census = op_census(src)
    if census.get("BatchNormalization"):
        raise ConfigError(f"quantize: {census['BatchNormalization']} BatchNormalization node(s) were not folded "
                          f"into a convolution by the export; the INT8 model would keep them in float")
    check_quantizable(src, allow_float_ops)
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    calibrators = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
    extra = {"CalibPercentile": float(percentile)} if method == "percentile" else {}
    with tempfile.TemporaryDirectory(prefix="s3nas-int8-") as scratch, \
            atomic_output_path(Path(dst)) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = Path(scratch) / "prepared.onnx"
        try:  # shape inference + graph cleanup, as onnxruntime recommends before static quantization
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - optional step: quantize the export as it is
            prepared = Path(src)
        # equal batches: onnxruntime's histogram calibrators (entropy, percentile) stack them
        size = next(b for b in range(max(1, min(int(batch), len(calibration))), 0, -1) if len(calibration) % b == 0)
        quantize_static(str(prepared), str(tmp), _Reader(input_name, calibration, size),
                        quant_format=QuantFormat.QDQ, per_channel=bool(per_channel),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calibrators[method], op_types_to_quantize=list(QUANTIZED_OPS),
                        extra_options={"CalibTensorRangeSymmetric": False, **extra},
                        calibration_providers=["CPUExecutionProvider"])
        after = op_census(tmp)
    float_compute = sorted(op for op in census if op not in QUANTIZED_OPS and op not in LAYOUT_OPS)
    return {"path": str(dst), "toolchain": toolchain(), "format": "QDQ", "weights": "int8 symmetric per-channel"
            if per_channel else "int8 symmetric per-tensor", "activations": "uint8 asymmetric per-tensor",
            "calibration_method": method, "calibration_images": int(len(calibration)),
            "quantize_nodes": int(after.get("QuantizeLinear", 0)),
            "dequantize_nodes": int(after.get("DequantizeLinear", 0)),
            "float_ops": float_compute, "bn_folded": True,
            "size_bytes_fp32": int(Path(src).stat().st_size), "size_bytes_int8": int(Path(dst).stat().st_size)}


def onnx_logits(path: str | os.PathLike, batches: Iterable[np.ndarray], threads: int = 1) -> np.ndarray:
    """Concatenated outputs (logits) of the ONNX model for each float32 batch, on onnxruntime's CPU provider."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = [session.run(None, {name: np.ascontiguousarray(b, dtype=np.float32)})[0] for b in batches]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)
