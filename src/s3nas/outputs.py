"""Typed outputs: the ``summary.json`` of every command and the layout of ``arch.json``.

Each command's summary is a dataclass below (one field = one JSON key, with its type and a one-line doc);
every summary starts with ``schema_version`` and ``kind`` (the command that wrote it). Writers build the
object and call ``write_summary(run_dir, summary)`` (validated, then written atomically); readers call
``load_summary(path)``, which returns the class named by ``kind`` and refuses, in one line naming the file,
a summary written by an older s3nas (no ``schema_version``), a newer one, or one that does not match its
type. ``python -m s3nas.outputs --markdown`` prints docs/reference/outputs.md (a test checks it matches).
This module is a low layer: it imports only the standard library, ``s3nas.errors`` and ``s3nas.utils.io``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from s3nas.errors import ConfigError
from s3nas.utils.io import atomic_write_json, finite_json

#: Version of every summary.json layout below; bump it (and say what changed in outputs.md) on any change.
SCHEMA_VERSION = 1
SUMMARY_FILE = "summary.json"
ARCH_FILE = "arch.json"


class OutputSchemaError(ConfigError, ValueError):
    """A summary (object or file) does not match its schema; the message names the key."""


def doc(text: str, *, key: Optional[str] = None, **kwargs: Any) -> Any:
    """A dataclass field with a one-line ``doc`` (and ``key``: the JSON key when it is not a Python name)."""
    metadata = {"doc": text}
    if key is not None:
        metadata["key"] = key
    return field(metadata=metadata, **kwargs)


# ------------------------------------------------------------------------------------------ validation
def _type_name(tp: Any) -> str:
    """A type as outputs.md writes it: ``float | null``, ``list[int]``, ``dict[str, float]``, record names."""
    if tp is Any:
        return "any JSON"
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"dict[{_type_name(key)}, {_type_name(value)}]"
    if isinstance(tp, type) and issubclass(tp, Record):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return tp.__name__


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against ``tp`` (records from dicts, ints as floats); OutputSchemaError naming ``where``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(tp)) != 2:
            raise TypeError(f"{where}: only Optional[X] unions are supported in schemas")
        if value is None or (args[0] is float and isinstance(value, float) and not math.isfinite(value)):
            return None  # an optional number that is not finite is written as null
        return _coerce(value, args[0], where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise OutputSchemaError(f"{where}: must be a list, got {_got(value)}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise OutputSchemaError(f"{where}: must be an object, got {_got(value)}")
        _, item = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise OutputSchemaError(f"{where}: keys must be strings, got {_got(k)}")
            out[k] = _coerce(v, item, f"{where}.{k}")
        return out
    if isinstance(tp, type) and issubclass(tp, Record):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return tp.from_dict(value, where=f"{where}.")
        raise OutputSchemaError(f"{where}: must be an object ({tp.__name__}), got {_got(value)}")
    if tp is bool:
        if not isinstance(value, bool):
            raise OutputSchemaError(f"{where}: must be true or false, got {_got(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise OutputSchemaError(f"{where}: must be an integer, got {_got(value)}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise OutputSchemaError(f"{where}: must be a number, got {_got(value)}")
        if not math.isfinite(float(value)):
            raise OutputSchemaError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise OutputSchemaError(f"{where}: must be a string, got {_got(value)}")
        return value
    raise TypeError(f"{where}: unsupported schema type {tp!r}")


def _got(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


@dataclass(kw_only=True)
class Record:
    """A typed JSON object: fields are checked on construction; ``to_dict`` / ``from_dict`` round-trip."""

    @classmethod
    def fields(cls) -> list[tuple[str, str, Any, dataclasses.Field]]:
        """(attribute, JSON key, resolved type, field) of every field, in order."""
        hints = typing.get_type_hints(cls)
        return [(f.name, f.metadata.get("key", f.name), hints[f.name], f) for f in dataclasses.fields(cls)]

    def __post_init__(self) -> None:
        for name, key, tp, _ in self.fields():
            setattr(self, name, _coerce(getattr(self, name), tp, key))

    def to_dict(self) -> dict:
        """The JSON object (keys in field order; NaN/inf become null)."""
        return finite_json({key: _encode(getattr(self, name)) for name, key, _, _ in self.fields()})

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> "Record":
        """Validate a parsed JSON object; OutputSchemaError naming the first unknown, missing or bad key."""
        if not isinstance(data, dict):
            raise OutputSchemaError(f"{where.rstrip('.') or cls.__name__}: must be an object, got {_got(data)}")
        fields = cls.fields()
        known = {key for _, key, _, _ in fields}
        unknown = [k for k in data if k not in known]
        if unknown:
            raise OutputSchemaError(f"{where}{unknown[0]}: unknown key for {cls.__name__} (schema_version "
                                    f"{SCHEMA_VERSION}); known: {', '.join(sorted(known))}")
        kwargs = {}
        for name, key, tp, f in fields:
            if key in data:
                kwargs[name] = _coerce(data[key], tp, f"{where}{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise OutputSchemaError(f"{where}{key}: missing key ({cls.__name__} needs it)")
        return cls(**kwargs)


@dataclass(kw_only=True)
class Summary(Record):
    """A command's summary.json: ``schema_version`` and ``kind`` first, then the command's own fields."""

    KINDS: ClassVar[tuple[str, ...]] = ()
    COMMAND: ClassVar[str] = ""

    schema_version: int = doc("layout version of this file (s3nas.outputs.SCHEMA_VERSION)", default=SCHEMA_VERSION)
    kind: str = doc("the command that wrote it (selects the type when read back)", default="")

    def __post_init__(self) -> None:
        if self.kind == "" and len(self.KINDS) == 1:
            self.kind = self.KINDS[0]
        super().__post_init__()
        if self.kind not in self.KINDS:
            raise OutputSchemaError(f"kind: {self.kind!r} is not a {type(self).__name__}; use {' or '.join(self.KINDS)}")
        if self.schema_version != SCHEMA_VERSION:
            raise OutputSchemaError(f"schema_version: {self.schema_version} is not {SCHEMA_VERSION} (this s3nas)")


# ----------------------------------------------------------------------------------------- nested records
@dataclass(kw_only=True)
class NetworkFigures(Record):
    """A network's figures at its deployment input size (scaling's ``before``)."""

    latency_ms: float = doc("latency (ms) of the network, obtained as the summary's latency_source says")
    macs: int = doc("multiply-accumulates at the deployment input size")
    params: int = doc("trainable parameters (counted as train.py counts them)")
    input_size: int = doc("deployment input resolution (pixels)")


@dataclass(kw_only=True)
class ScalingEvaluation(Record):
    """One evaluated (coefficient, input size) point of the coefficient search."""

    coefficient: float = doc("width/depth coefficient c")
    resolution_coefficient: float = doc("resolution coefficient r (input size / source input size)")
    latency_ms: float = doc("latency (ms) of the scaled network")
    input_size: int = doc("input resolution of the scaled network")
    phase: str = doc("'tied' (r = c ** resolution_ratio) or 'refine' (input size below the tie)")
    note: str = doc("free-form note (empty when none)")


@dataclass(kw_only=True)
class LineSearch(Record):
    """One crossing of the latency target that the search line-searched onto."""

    step: int = doc("global step of the crossing")
    from_ms: float = doc("estimated latency (ms) before the step")
    past_ms: float = doc("estimated latency (ms) the plain step would have reached (past the target)")
    to_ms: float = doc("estimated latency (ms) landed on")
    alpha: float = doc("fraction of the step taken")
    ladder: Optional[int] = doc("networks measured after the landing for the decode's ladder under the target (the "
                                "states reached as the thresholds rise alike; measured devices only; null: none)",
                                default=None)


@dataclass(kw_only=True)
class RepairStep(Record):
    """One block changed by the repair that fits the decoded network under the target."""

    block: int = doc("block position")
    from_: str = doc("the block's option before the step", key="from")
    to: str = doc("its option after the step")
    saved_ms: float = doc("latency (ms) saved by the step")


@dataclass(kw_only=True)
class ModelSeconds(Record):
    """Time the zoo spent on one model."""

    build_s: float = doc("seconds to build its graph (timm -> simulator graph)")
    simulate_s: float = doc("seconds to simulate it on every profile")


@dataclass(kw_only=True)
class OverlayPoint(Record):
    """An s3nas network (a run dir) placed on a zoo profile's accuracy-latency plot."""

    label: str = doc("legend label: method (data)")
    method: str = doc("what made the network (s3nas search, s3nas retrained, random_search, ...)")
    data: str = doc("the dataset its accuracy is measured on")
    hardware: str = doc("hardware profile it is simulated on")
    latency_ms: float = doc("simulated latency (ms) at its deployment shape")
    own_data_top1: Optional[float] = doc("test accuracy (%) on its own data (null: none recorded)")
    accuracy_source: str = doc("where the accuracy comes from")
    params_m: Optional[float] = doc("parameters in millions (null: not computed for overlays)")
    macs_g: float = doc("MACs in billions at the deployment shape")
    input_size: int = doc("deployment input resolution")
    run_dir: str = doc("the run dir it was read from")


@dataclass(kw_only=True)
class CompareRow(Record):
    """One row of the comparison table (compare.csv has the same columns)."""

    model: str = doc("network name (ArchSpec name, timm name or zoo display name)")
    kind: str = doc("s3nas search, trained, random_search, zoo (published), ...")
    data: str = doc("dataset of the accuracy")
    accuracy: Optional[float] = doc("top-1 accuracy in % of the network the hardware runs where the run has it "
                                    "(the run's test_acc; accuracy_kind says fp32 or int8; null: none recorded)")
    accuracy_kind: str = doc("what kind of accuracy (weight sharing, retrained N ep, published ImageNet top-1) and its "
                             "number format (fp32: float weights, int8: model_int8.onnx)")
    accuracy_fp32: Optional[float] = doc("top-1 accuracy in % of the float weights (null: none recorded)", default=None)
    accuracy_int8: Optional[float] = doc("top-1 accuracy in % of the run's model_int8.onnx (null: no INT8 model, e.g. "
                                         "quantize=none, search and zoo rows)", default=None)
    latency_ms: float = doc("latency (ms) simulated here on the compare profile at the deployment shape")
    target_ms: Optional[float] = doc("the run's latency target (null: none)")
    params_m: float = doc("weights in millions")
    macs_g: float = doc("MACs in billions")
    search_seconds: Optional[float] = doc("search cost, wall clock seconds (null: none, e.g. zoo rows)")
    train_seconds: Optional[float] = doc("training wall clock seconds (null: none)")
    seed: Optional[int] = doc("the run's seed (null for zoo rows)")
    run_dir: str = doc("the run dir (empty for zoo rows)")


@dataclass(kw_only=True)
class FlowStage(Record):
    """One stage of the paper flow, recomputed from its run dir's arch.json."""

    stage: str = doc("the command that made the run dir (search, train, postprocess, scaling, se_removal)")
    run_dir: str = doc("the run dir")
    test_acc: Optional[float] = doc("test accuracy (fraction) from its summary, as the stage reported it (null: the "
                                    "step trains nothing)")
    accuracy_dtype: str = doc("number format test_acc is of: 'int8' (the train run's model_int8.onnx) or 'fp32' "
                              "(float weights; also for stages without an accuracy)", default="fp32")
    test_acc_fp32: Optional[float] = doc("test accuracy of the float weights (train: EMA; search: weight-sharing "
                                         "estimate; null: none)", default=None)
    test_acc_int8: Optional[float] = doc("test accuracy of the train run's model_int8.onnx (null: no INT8 model)",
                                         default=None)
    accuracy_source: str = doc("retrained ..., search estimate ... or 'not trained here'")
    latency_ms: float = doc("latency (ms) of its arch.json on the flow's profile")
    params: int = doc("trainable parameters")
    macs: int = doc("MACs at its deployment input size")
    input_size: int = doc("deployment input resolution")
    blocks: int = doc("number of blocks")
    se_blocks: int = doc("blocks with squeeze-and-excitation")
    activations: list[str] = doc("activations used (sorted)")
    target_ms: Optional[float] = doc("the run's latency target from its summary (null: none)")


@dataclass(kw_only=True)
class SamplingStats(Record):
    """How hard the random baselines' latency band was to hit."""

    beta_per_ms: float = doc("tilt of the proposal distribution toward the band (1/ms)")
    draws: int = doc("architectures drawn")
    in_band_estimated: int = doc("draws whose table estimate fell in the band")
    accepted_uniform: int = doc("draws accepted by the uniform-over-band rejection step")
    duplicates: int = doc("accepted draws that repeated an earlier sample")
    rejected_by_simulation: int = doc("accepted draws whose end-to-end latency left the band")
    estimate_error_pct_mean_abs: Optional[float] = doc("mean |latency - estimate| / estimate in % (null: none)")
    seconds: float = doc("sampling wall clock seconds")


@dataclass(kw_only=True)
class RandomSample(Record):
    """One sampled architecture of a random baseline and its short training."""

    index: int = doc("sample number (its run dir is samples/<index:03d>)")
    estimated_ms: float = doc("latency-table estimate (ms)")
    latency_ms: float = doc("end-to-end latency (ms) of the sample")
    val_acc: Optional[float] = doc("validation accuracy (EMA weights)")
    val_acc_raw: Optional[float] = doc("validation accuracy (raw weights)")
    best_val_acc: Optional[float] = doc("best validation accuracy of the checkpoint callback")
    test_acc: Optional[float] = doc("test accuracy")
    params: Optional[int] = doc("trainable parameters")
    macs: Optional[int] = doc("MACs at the deployment shape")
    epochs: Optional[int] = doc("epochs trained")
    train_seconds: Optional[float] = doc("training wall clock seconds")
    num_blocks: int = doc("number of blocks")
    arch: str = doc("the ArchSpec's compact string")
    run_dir: str = doc("the sample's train.py run dir")


@dataclass(kw_only=True)
class OnnxExport(Record):
    """An ONNX export of a trained network and its onnxruntime check."""

    path: str = doc("the written .onnx file")
    input_size: int = doc("input resolution of the exported graph")
    opset: int = doc("ONNX opset")
    dynamic_batch: bool = doc("the batch dimension is dynamic")
    checked: bool = doc("onnxruntime was compared with torch")
    max_abs_diff: Optional[float] = doc("largest |onnxruntime - torch| logit difference (null: not checked)",
                                        default=None)
    max_abs_diff_by_input: Optional[dict[str, float]] = doc("that difference per input batch (random, real)",
                                                             default=None)
    atol: Optional[float] = doc("the tolerance the check used (null: not checked)", default=None)


@dataclass(kw_only=True)
class Int8Model(Record):
    """The INT8 model of a trained network (``model_int8.onnx``), how it was made and what it scores."""

    path: str = doc("the written QDQ .onnx file")
    toolchain: str = doc("the quantizer and its version (onnxruntime quantize_static, QDQ format)")
    format: str = doc("ONNX quantization format (QDQ)")
    weights: str = doc("weight quantization (int8 symmetric per-channel / per-tensor)")
    activations: str = doc("activation quantization (uint8 asymmetric per-tensor)")
    calibration_method: str = doc("how activation ranges were calibrated (minmax, entropy, percentile)")
    calibration_images: int = doc("training images (no augmentation) the ranges were calibrated on")
    quantize_nodes: int = doc("QuantizeLinear nodes of the model")
    dequantize_nodes: int = doc("DequantizeLinear nodes of the model")
    float_ops: list[str] = doc("operators left in float (allowed by quantize.allow_float_ops)")
    bn_folded: bool = doc("BatchNorm was folded into the convolutions (checked: no BatchNormalization node)")
    size_bytes_fp32: int = doc("size of the float ONNX file")
    size_bytes_int8: int = doc("size of model_int8.onnx")
    ptq_val_acc: float = doc("val accuracy of the post-training-quantized model (onnxruntime)")
    ptq_test_acc: float = doc("test accuracy of the post-training-quantized model (onnxruntime)")
    qat_epochs: int = doc("quantization-aware fine-tuning epochs (0: PTQ only)")
    qat_val_acc: Optional[float] = doc("val accuracy after QAT (onnxruntime; null: no QAT)")
    qat_test_acc: Optional[float] = doc("test accuracy after QAT (onnxruntime; null: no QAT)")
    qat_seconds: Optional[float] = doc("wall seconds of the QAT fine-tuning (null: no QAT)")
    qat_lr: Optional[float] = doc("learning rate of the QAT fine-tuning (null: no QAT)")
    delivered: str = doc("which model model_int8.onnx is: 'qat', or 'ptq' (no QAT, or QAT scored lower on val)",
                         default="ptq")
    val_acc: float = doc("val accuracy of the delivered model_int8.onnx (onnxruntime)")
    test_acc: float = doc("test accuracy of the delivered model_int8.onnx (onnxruntime)")
    fakequant_test_acc: float = doc("test accuracy of the fake-quantized torch network (same calibration)")
    agreement: float = doc("fraction of test images where model_int8.onnx and the fake-quantized torch network "
                           "predict the same class")
    agreement_images: int = doc("test images the agreement was measured on")
    evaluated_by: str = doc("what ran model_int8.onnx for the accuracies")
    seconds: float = doc("wall seconds of the whole quantization (export, calibration, QAT, evaluation)")


@dataclass(kw_only=True)
class SpaceRange(Record):
    """Size and latency range of a search space (its smallest and largest networks).

    On a simulated NPU the ends are exact (each position's fastest / slowest option by the space's table); on a
    measured device they are the networks of each position's smallest / largest option by expansion (at a choice
    position: by its block's SSBN latency), an estimate of the range's ends."""

    architectures: int = doc("number of architectures in the space")
    options_per_block_max: int = doc("most options of any block position")
    min_latency_ms: float = doc("latency (ms) of the smallest network")
    max_latency_ms: float = doc("latency (ms) of the largest network")
    block_type: list[str] = doc("block types of the space")


# ---------------------------------------------------------------------------------------------- summaries
@dataclass(kw_only=True)
class HardwareTarget(Record):
    """The delivered network on one hardware of a several-hardware search (hardware=[a,b])."""

    hardware: str = doc("hardware profile or device name")
    target_ms: float = doc("its latency target (ms)")
    latency_ms: float = doc("latency (ms) of the network in arch.json on it (simulated or measured, see latency_source)")
    latency_source: str = doc("how latency_ms was obtained: 'simulation (...)' or 'measurement (...)'")
    meets_target: bool = doc("latency_ms <= target_ms")
    estimated_ms: float = doc("its latency table's sum (ms) for the same network")
    decoded_latency_ms: float = doc("latency (ms) of the decoded network on it, before any repair")


@dataclass(kw_only=True)
class MeasuredCandidate(Record):
    """One state a device search visited, evaluated at decode time."""

    step: int = doc("search step it was visited at")
    latency_ms: list[float] = doc("its latency (ms) on each hardware (one entry for one hardware), measured")
    meets_target: bool = doc("every target met")


@dataclass(kw_only=True)
class SearchSummary(Summary):
    """search.py: the delivered (decoded, possibly repaired) network of the search."""

    KINDS: ClassVar[tuple[str, ...]] = ("search",)
    COMMAND: ClassVar[str] = "s3nas-search (python search.py)"

    target_ms: float = doc("latency target (ms)")
    latency_ms: float = doc("latency (ms) of the network in arch.json (simulated or measured, see latency_source)")
    latency_source: str = doc("how latency_ms was obtained: 'simulation (...)' or 'measurement (...)'")
    latency_noise_pct: Optional[float] = doc("repeat-measurement noise of latency_ms in % (null for a simulation)")
    estimated_ms: float = doc("latency-table sum (ms) of the same network")
    target_ratio: float = doc("latency_ms / target_ms")
    latency_gap_ms: float = doc("|latency_ms - target_ms| (the optuna sweep's second objective)")
    meets_target: bool = doc("latency_ms <= target_ms (hardware=[a,b]: on every hardware)")
    val_acc: Optional[float] = doc("the delivered child's validation accuracy (supernet weights, BN re-estimated)")
    test_acc: Optional[float] = doc("the same network's test accuracy (null: no test split)")
    supernet_val_acc: Optional[float] = doc("the supernet's validation accuracy at the end of the fit")
    accuracy_dtype: str = doc("number format val_acc/test_acc are of (fp32: the search evaluates the float child; "
                              "train.py quantize=int8 gives the INT8 model's)", default="fp32")
    hardware_dtype: str = doc("number format the hardware computes in (int8 for 1-byte NPU profiles)",
                              default="fp32")
    accuracy_source: str = doc("how the accuracies were obtained")
    search_seconds: float = doc("wall clock seconds of the whole search")
    num_threads: Optional[int] = doc("torch CPU threads of the search process", default=None)
    warmup_source: Optional[str] = doc(
        "how the supernet's warm-up was obtained: 'trained' (this run), 'cache (<file>)' (the warm-up of the same "
        "space, data, warm-up schedule and seed, cached by content: schedule.warmup_cache) or 'checkpoint (<file>)' "
        "(a resumed run)", default=None)
    timings_s: Optional[dict[str, float]] = doc(
        "wall clock seconds per part of the search: table_build, fit (of which train_step/warmup, train_step/search "
        "with latency_term inside, line_search, between_steps: data loading and the loop, validation, "
        "checkpoint_write), decode_repair_latency, bn_reestimation, evaluation", default=None)
    world_size: int = doc("number of training processes")
    rank_threshold_max_diff: float = doc("largest threshold difference between processes (0.0: in sync)")
    hardware: str = doc("hardware profile or device name")
    lambda1: float = doc("latency loss weight lambda1")
    lambda2: float = doc("latency loss weight lambda2")
    seed: int = doc("random seed")
    data: str = doc("dataset name")
    schedule: str = doc("schedule config name")
    total_steps: int = doc("optimizer steps of the search")
    decode: str = doc("which state was decoded: 'final' or 'best_feasible' (on a device, the best visited feasible "
                      "state that measures under the target: measured_candidates)")
    line_searches: list[LineSearch] = doc("target crossings the search line-searched onto")
    decode_step: int = doc("step of the decoded state")
    final_state_estimated_ms: float = doc("table estimate (ms) of the state the search ended in")
    final_state_latency_ms: float = doc("latency (ms) of that state on the backend (a simulation; on a device one "
                                        "measurement)")
    decoded_estimated_ms: float = doc("table estimate (ms) of the decoded network, before any repair")
    decoded_latency_ms: float = doc("latency (ms) of the decoded network before any repair, obtained like "
                                    "latency_ms")
    repaired: bool = doc("the repair changed the decoded network to meet the target")
    repair_steps: list[RepairStep] = doc("the repair's steps (empty: no repair)")
    lut_min_ms: float = doc("latency table's smallest network (ms)")
    lut_max_ms: float = doc("latency table's largest network (ms)")
    num_blocks: int = doc("blocks of the delivered network")
    macs: int = doc("MACs of the delivered network at the deployment shape")
    arch: str = doc("the delivered ArchSpec's compact string (arch.json holds it in full)")
    run_dir: str = doc("the run dir")
    latency_iqr_ms: Optional[float] = doc("device only: interquartile range (ms) of the first measurement", default=None)
    latency_runs: Optional[int] = doc("device only: timed runs per measurement", default=None)
    latency_measurements_ms: Optional[list[float]] = doc("device only: median (ms) of each repeat measurement",
                                                          default=None)
    reference_now_ms: Optional[float] = doc("device only: reference network measured now (ms)", default=None)
    reference_table_ms: Optional[float] = doc("device only: reference network when the table was measured (ms)",
                                              default=None)
    device_drift_pct: Optional[float] = doc("device only: reference_now_ms vs reference_table_ms in %", default=None)
    reference_start_ms: Optional[float] = doc("device only: reference network measured at the start of the search "
                                              "(ms; median of hardware.noise_repeats measurements)", default=None)
    device_drift_start_pct: Optional[float] = doc("device only: reference_start_ms vs reference_table_ms in %: how "
                                                  "far the machine had moved from the table when the search began",
                                                  default=None)
    device_drift_start_noise_pct: Optional[float] = doc("device only: noise (+-%) of device_drift_start_pct: the "
                                                        "spread of reference_start_ms's measurements over "
                                                        "sqrt(their count), at least 0.5%; a drift beyond it scales "
                                                        "the table", default=None)
    table_scale: Optional[float] = doc("device only: factor the search's table (and estimated_ms, the prediction) "
                                       "was scaled by for device_drift_start_pct (1.0: within the noise, not "
                                       "scaled; null: no reference network to re-measure)", default=None)
    latency_remeasured: Optional[int] = doc("device only: measurements of the delivered network taken again because "
                                            "their runs differed wildly (hardware.remeasure)", default=None)
    latency_unstable: Optional[bool] = doc("device only: some measurement of the delivered network stayed unstable "
                                           "after re-measuring (its median is that of the bulk of its runs)",
                                           default=None)
    meets_target_within_noise: Optional[bool] = doc("latency_ms <= target_ms * (1 + latency_noise_pct / 100) "
                                                     "(meets_target for a simulation)", default=None)
    latency_model: Optional[str] = doc("the latency table the search used: 'simulated', 'measured+<correction>' "
                                       "(every block timed, corrected) or 'fewshot' (hardware.budget.networks "
                                       "end-to-end measurements)", default=None)
    device_seconds: Optional[float] = doc("device only: device time this run spent measuring (table or few-shot "
                                          "networks, the delivered network's measurements)", default=None)
    conservative: bool = doc("hardware.conservative: the search's table was the upper end of a typical network's "
                             "interval", default=False)
    latency_predicted_ms: Optional[float] = doc("the backend model's prediction (ms) of the delivered network, "
                                                "before measuring it (a simulation predicts itself exactly)",
                                                default=None)
    latency_interval_ms: Optional[list[float]] = doc("[low, high] (ms): the prediction's interval at "
                                                     "latency_interval_level", default=None)
    latency_interval_level: Optional[float] = doc("two-sided confidence of latency_interval_ms (0.9; 1.0 for a "
                                                  "simulation)", default=None)
    latency_prediction: Optional[str] = doc("how latency_predicted_ms was obtained (few-shot model, corrected "
                                            "measured table, simulation)", default=None)
    meets_target_upper_bound: Optional[bool] = doc("the interval's upper end <= target_ms: the target is met with the "
                                                   "interval's confidence", default=None)
    hardware_targets: Optional[list[HardwareTarget]] = doc(
        "hardware=[a,b]: the delivered network on every hardware, the summary's own first (meets_target then says "
        "every target is met); null for one hardware", default=None)
    measured_candidates: Optional[list[MeasuredCandidate]] = doc(
        "a device's search only, when its best feasible state's evaluation (the delivered statistic) was over the "
        "target: that state, then the visited feasible states under it evaluated in turn, best first, until one meets "
        "(the delivered one, last); or when it was under 0.95 x the target: that state, then the visited states just "
        "over the target, nearest first, until one misses (the delivered one is the largest evaluation that meets). One "
        "entry per network (null: neither happened)",
        default=None)
    measured_states: Optional[int] = doc(
        "a device's search only: networks it measured end to end near its target(s) (schedule.measure_states_band), "
        "on every measured device it searched for; "
        "the loss, the feasible states it kept and its line search used those measurements, each raised by "
        "measured_states_guard_pct (null: the table alone)", default=None)
    measured_states_guard_pct: Optional[float] = doc(
        "a device's search only: the device's repeat noise at the search's start (half the range of the reference "
        "network's measurements, in %, at most 5) that every measured state was raised by, so that the delivered "
        "network's median meets the target where one measurement of it did", default=None)
    search_targets_ms: Optional[list[float]] = doc(
        "latency=[...] on one hardware: every target of the search this network is one of (front.json lists all "
        "the networks); null for a one-target search", default=None)


@dataclass(kw_only=True)
class TrainSummary(Summary):
    """train.py: the retrained network's accuracy, size and latency."""

    KINDS: ClassVar[tuple[str, ...]] = ("train",)
    COMMAND: ClassVar[str] = "s3nas-train (python train.py)"

    test_acc: Optional[float] = doc("test accuracy of the delivered network: the INT8 model's when one exists and the "
                                    "hardware computes in int8 (accuracy_dtype), else the float (EMA) weights'")
    val_acc: Optional[float] = doc("validation accuracy of the delivered network (as test_acc)")
    accuracy_dtype: str = doc("number format test_acc/val_acc are of: 'int8' (model_int8.onnx) or 'fp32'",
                              default="fp32")
    hardware_dtype: str = doc("number format the hardware computes in (int8 for 1-byte NPU profiles)",
                              default="fp32")
    test_acc_fp32: Optional[float] = doc("test accuracy of the float (EMA) weights", default=None)
    val_acc_fp32: Optional[float] = doc("validation accuracy of the float (EMA) weights", default=None)
    test_acc_int8: Optional[float] = doc("test accuracy of model_int8.onnx (null: quantize=none)", default=None)
    val_acc_int8: Optional[float] = doc("validation accuracy of model_int8.onnx (null: quantize=none)", default=None)
    int8: Optional[Int8Model] = doc("the INT8 model (quantize=int8), else null", default=None)
    best_val_acc: Optional[float] = doc("best validation accuracy seen by the checkpoint callback")
    test_acc_raw: Optional[float] = doc("test accuracy of the raw (non-EMA) weights")
    val_acc_raw: Optional[float] = doc("validation accuracy of the raw weights")
    params: int = doc("trainable parameters")
    macs: int = doc("MACs at the deployment shape")
    latency_ms: float = doc("latency (ms) of the network at the deployment shape (simulated or measured)")
    latency_source: str = doc("how latency_ms was obtained: 'simulation (...)' or 'measurement (...)'")
    latency_noise_pct: Optional[float] = doc("repeat-measurement noise of latency_ms in % (null for a simulation)")
    latency_measurements_ms: Optional[list[float]] = doc("device only: median (ms) of each repeat measurement",
                                                          default=None)
    hardware: str = doc("hardware profile or device name")
    deploy_input_size: int = doc("deployment input resolution")
    deploy_num_classes: int = doc("deployment number of classes")
    epochs: int = doc("epochs trained")
    steps: int = doc("optimizer steps")
    train_seconds: float = doc("training wall clock seconds")
    images_per_second: float = doc("training throughput")
    arch: str = doc("the ArchSpec's compact string, or timm:<name>")
    arch_origin: str = doc("where the network came from (arch.json path, timm:<name>)")
    network: str = doc("network name")
    ema: bool = doc("an EMA copy of the weights was kept")
    evaluated: str = doc("which weights the accuracies are of: 'ema' or 'raw'")
    data: str = doc("dataset name")
    image_size: int = doc("training/evaluation image size")
    num_classes: int = doc("classes of the dataset")
    global_batch: int = doc("batch size over all processes")
    lr: float = doc("peak learning rate")
    recipe: str = doc("recipe config name")
    seed: int = doc("random seed")
    num_threads: int = doc("torch CPU threads")
    resumed_from: Optional[str] = doc("checkpoint the run resumed from (null: fresh)")
    run_dir: str = doc("the run dir")
    total_seconds: float = doc("wall clock seconds of the whole command")
    onnx: Optional[OnnxExport] = doc("the ONNX export when export.onnx is on, else null", default=None)


@dataclass(kw_only=True)
class ExportSummary(Summary):
    """ONNX export of a train.py run (the run dir of the export command; the .onnx file is where ``onnx.path`` says)."""

    KINDS: ClassVar[tuple[str, ...]] = ("export",)
    COMMAND: ClassVar[str] = "s3nas-export (python -m s3nas.train.export_app)"

    onnx: OnnxExport = doc("the export and its check")
    source_run_dir: str = doc("the train.py run dir that was exported")
    run_dir: str = doc("the export command's run dir")


@dataclass(kw_only=True)
class ScalingSummary(Summary):
    """Compound scaling under a latency budget: the scaled network and the coefficient search."""

    KINDS: ClassVar[tuple[str, ...]] = ("scaling",)
    COMMAND: ClassVar[str] = "s3nas-scale (python -m s3nas.postsearch.scaling)"

    target_ms: float = doc("latency budget (ms)")
    latency_ms: float = doc("latency (ms) of the scaled network in arch.json")
    latency_source: str = doc("how latency_ms was obtained: 'simulation (...)' or 'measurement (...)'")
    latency_noise_pct: Optional[float] = doc("repeat-measurement noise of latency_ms in % (null for a simulation)")
    meets_target: bool = doc("latency_ms <= target_ms")
    shortfall: float = doc("1 - latency_ms / target_ms")
    within_shortfall: bool = doc("shortfall <= max_shortfall")
    max_shortfall: float = doc("largest accepted shortfall (config)")
    width_depth_coefficient: float = doc("chosen width/depth coefficient c")
    resolution_coefficient: float = doc("chosen resolution coefficient r")
    resolution_ratio: float = doc("configured ln(r) / ln(c)")
    resolution_ratio_effective: Optional[float] = doc("achieved ln(r) / ln(c) (null at c = 1)")
    refined: bool = doc("the refine phase (smaller input size) produced the result")
    tied_latency_ms: float = doc("latency (ms) of the tied search's best point")
    input_size: int = doc("input resolution of the scaled network")
    params: int = doc("trainable parameters of the scaled network")
    macs: int = doc("MACs of the scaled network")
    stage_depths: list[int] = doc("blocks per stage")
    stage_widths: list[int] = doc("output channels per stage")
    before: NetworkFigures = doc("the input network's figures")
    hardware: str = doc("hardware profile name")
    simulations: int = doc("distinct scaled networks evaluated")
    reached_max_coefficient: bool = doc("the search stopped at max_coefficient")
    arch: str = doc("the scaled ArchSpec's compact string")
    arch_origin: str = doc("the input arch.json")
    evaluations: list[ScalingEvaluation] = doc("every evaluated point, by coefficient")


@dataclass(kw_only=True)
class TransformSummary(Summary):
    """Fields of every ArchSpec -> ArchSpec step of the third step: the network before and after."""

    latency_ms: float = doc("latency (ms) of the new network in arch.json")
    latency_source: str = doc("how latency_ms was obtained: 'simulation (...)' or 'measurement (...)'")
    latency_noise_pct: Optional[float] = doc("repeat-measurement noise of latency_ms in % (null for a simulation)")
    latency_before_ms: float = doc("latency (ms) of the input network")
    latency_change_ms: float = doc("latency_ms - latency_before_ms")
    params: int = doc("trainable parameters after")
    params_before: int = doc("trainable parameters before")
    macs: int = doc("MACs after")
    macs_before: int = doc("MACs before")
    input_size: int = doc("deployment input resolution")


@dataclass(kw_only=True)
class PostprocessSummary(TransformSummary):
    """SE / h-swish post-processing: the network before and after."""

    KINDS: ClassVar[tuple[str, ...]] = ("postprocess",)
    COMMAND: ClassVar[str] = "s3nas-postprocess (python -m s3nas.postsearch.postprocess)"

    se_blocks: list[int] = doc("blocks with SE after")
    se_blocks_before: list[int] = doc("blocks with SE before")
    se_ratio: float = doc("SE reduction ratio applied")
    activations: list[str] = doc("activations used after (sorted)")
    changed_blocks: list[int] = doc("blocks the transform changed")
    hardware: str = doc("hardware profile name")
    arch: str = doc("the new ArchSpec's compact string")
    arch_origin: str = doc("the input arch.json")


@dataclass(kw_only=True)
class SeRemovalSummary(TransformSummary):
    """Selective SE removal: the blocks' excitation scores and the network without the lowest-scoring SE."""

    KINDS: ClassVar[tuple[str, ...]] = ("se_removal",)
    COMMAND: ClassVar[str] = "s3nas-se-removal (python -m s3nas.postsearch.se_removal)"

    removed_blocks: list[int] = doc("blocks whose SE was removed")
    se_blocks: list[int] = doc("blocks with SE after")
    se_blocks_before: list[int] = doc("blocks with SE before")
    scores: dict[str, float] = doc("excitation score per SE block (key: block index)")
    score: str = doc("what the score is")
    images: int = doc("images the excitations were recorded on")
    split: str = doc("dataset split of those images")
    data: str = doc("dataset name")
    image_size: int = doc("image size of the recording")
    trained_on: Optional[str] = doc("dataset the weights were trained on (null: not recorded)")
    weights: str = doc("'EMA' or 'raw' weights")
    hardware: str = doc("hardware profile name")
    arch: str = doc("the new ArchSpec's compact string")
    arch_origin: str = doc("the train.py run dir the weights came from")


@dataclass(kw_only=True)
class FlowSummary(Summary):
    """The paper flow as one table: every stage recomputed on one profile."""

    KINDS: ClassVar[tuple[str, ...]] = ("flow",)
    COMMAND: ClassVar[str] = "s3nas-flow (python -m s3nas.postsearch.flow)"

    hardware: str = doc("hardware profile every stage is simulated on")
    hardware_dtype: str = doc("number format that hardware computes in (int8 for 1-byte NPU profiles): its "
                              "accuracy column in flow.md", default="fp32")
    stages: list[FlowStage] = doc("the stages in order")


@dataclass(kw_only=True)
class ZooSummary(Summary):
    """The model zoo timed on every profile (the table itself is zoo.csv)."""

    KINDS: ClassVar[tuple[str, ...]] = ("zoo",)
    COMMAND: ClassVar[str] = "s3nas-zoo (python -m s3nas.baselines.zoo)"

    rows: int = doc("rows of zoo.csv (models x profiles)")
    models: list[str] = doc("zoo keys of the models")
    hardware: list[str] = doc("hardware profiles")
    table_seconds: float = doc("wall clock seconds of the table")
    build_seconds: float = doc("seconds spent building graphs")
    simulate_seconds: float = doc("seconds spent simulating")
    per_model_seconds: dict[str, ModelSeconds] = doc("time per model (key: zoo key)")
    order_midap: dict[str, Optional[bool]] = doc("the paper's latency orders on midap hold (null: models absent)")
    graph_cache: bool = doc("the simulator's graph cache was used")
    plots: dict[str, str] = doc("Pareto plot PNG per hardware profile")
    overlay: list[OverlayPoint] = doc("s3nas networks overlaid on the plots")
    run_dir: str = doc("the run dir")


@dataclass(kw_only=True)
class CompareSummary(Summary):
    """A Table 6-shaped comparison of run dirs and zoo networks on one profile."""

    KINDS: ClassVar[tuple[str, ...]] = ("compare",)
    COMMAND: ClassVar[str] = "s3nas-compare (python -m s3nas.baselines.compare)"

    hardware: str = doc("hardware profile every row is simulated on")
    hardware_dtype: str = doc("number format that hardware computes in (int8 for 1-byte NPU profiles)",
                              default="fp32")
    data: str = doc("dataset of the runs' accuracies")
    rows: list[CompareRow] = doc("the table's rows")
    plot: Optional[str] = doc("the comparison PNG (null: plot=false)")
    seconds: float = doc("wall clock seconds")
    run_dir: str = doc("the run dir")


@dataclass(kw_only=True)
class RandomBaselineSummary(Summary):
    """Random search / random selection (paper 5.4.1): the delivered network and every sample."""

    KINDS: ClassVar[tuple[str, ...]] = ("random_search", "random_selection")
    COMMAND: ClassVar[str] = "s3nas-random-search / s3nas-random-selection (python -m s3nas.baselines.random_*)"

    method: str = doc("'random_search' or 'random_selection' (same as kind)")
    target_ms: float = doc("latency target (ms)")
    latency_ms: float = doc("latency (ms) of the delivered network in arch.json")
    latency_source: str = doc("how latency_ms was obtained: 'simulation (...)' or 'measurement (...)'")
    latency_noise_pct: Optional[float] = doc("repeat-measurement noise of latency_ms in % (null for a simulation)")
    estimated_ms: float = doc("latency-table estimate (ms) of the delivered network")
    target_ratio: float = doc("latency_ms / target_ms")
    within_tolerance: bool = doc("|latency_ms / target_ms - 1| <= tolerance")
    meets_target: bool = doc("latency_ms <= target_ms")
    tolerance: float = doc("sampling band half-width (fraction of the target)")
    val_acc: Optional[float] = doc("validation accuracy of the delivered network")
    test_acc: Optional[float] = doc("test accuracy of the delivered network")
    selected_on: str = doc("metric the best sample was selected on (val_acc, val_acc_raw, best_val_acc)")
    selected_sample: int = doc("index of the selected sample")
    selected_sample_score: Optional[float] = doc("its selected_on value")
    accuracy_source: str = doc("how the accuracies were obtained")
    search_seconds: float = doc("wall clock seconds of sampling + sample trainings")
    train_seconds: Optional[float] = doc("training seconds of the delivered network's final training")
    total_seconds: float = doc("wall clock seconds of the whole command")
    num_samples: int = doc("samples drawn and trained")
    short_epochs: Optional[int] = doc("epochs of the selected sample's short training")
    full_epochs: Optional[int] = doc("epochs of the delivered network's training")
    sampling: SamplingStats = doc("how hard the band was to hit")
    samples: list[RandomSample] = doc("every sample")
    hardware: str = doc("hardware profile or device name")
    seed: int = doc("random seed")
    data: str = doc("dataset name")
    params: Optional[int] = doc("trainable parameters of the delivered network")
    macs: int = doc("MACs of the delivered network")
    num_blocks: int = doc("blocks of the delivered network")
    arch: str = doc("the delivered ArchSpec's compact string")
    final_run_dir: str = doc("train.py run dir of the delivered network's training")
    run_dir: str = doc("the run dir")

    def __post_init__(self) -> None:
        if self.kind == "":
            self.kind = self.method
        super().__post_init__()
        if self.method != self.kind:
            raise OutputSchemaError(f"method: {self.method!r} differs from kind {self.kind!r}")


@dataclass(kw_only=True)
class ProfileSpaceSummary(Summary):
    """Black-box search-space profiling (BBSSP): the selected candidates and the written space."""

    KINDS: ClassVar[tuple[str, ...]] = ("profile_space",)
    COMMAND: ClassVar[str] = "s3nas-profile-space (python -m s3nas.profiling.profile_space)"

    candidates_name: str = doc("name of the written candidates entry")
    candidates_file: str = doc("path of the written candidates YAML")
    search_command: str = doc("the command that searches in the new space")
    block_type: str = doc("supernet.block_type of the written space: one type, or choice (candidates.options)")
    candidates: dict[str, Any] = doc("the written candidates entry (as in the YAML)")
    selected: list[str] = doc("selected SSBNs, cheapest first")
    in_space: list[str] = doc("SSBNs the written space covers")
    latency_weight: float = doc("cost.latency_weight w")
    top_k: int = doc("select.top_k")
    hardware: str = doc("hardware profile or device name")
    latency_source: str = doc("how the SSBN latencies were obtained")
    deploy_input_size: int = doc("deployment input resolution")
    data: str = doc("dataset of the short trainings")
    accuracy_source: str = doc("how the SSBN accuracies were obtained")
    num_ssbns: int = doc("SSBNs profiled")
    chosen_space: SpaceRange = doc("the written space's size and latency range")
    reference_space: Optional[SpaceRange] = doc("the reference space's (null: no profile.reference)")
    reference_space_name: Optional[str] = doc("profile.reference (null: none)")
    best_ssbn: str = doc("cheapest SSBN")
    best_ssbn_latency_ms: float = doc("its latency (ms)")
    best_ssbn_val_acc: float = doc("its validation accuracy")
    selected_mean_latency_ms: float = doc("mean latency (ms) of the selected SSBNs")
    selected_mean_val_acc: float = doc("mean validation accuracy of the selected SSBNs")
    latency_seconds: float = doc("seconds spent on latencies")
    accuracy_seconds: float = doc("seconds spent on short trainings")
    trained: int = doc("SSBNs trained in this run (the rest came from the cache)")
    total_seconds: float = doc("wall clock seconds of the whole command")
    run_dir: str = doc("the run dir")


@dataclass(kw_only=True)
class FrontPoint(Record):
    """One network of a many-target search (front.csv's row; its own summary.json is in ``dir``)."""

    target_ms: float = doc("its latency target (ms)")
    latency_ms: float = doc("latency (ms) of the network in its arch.json (simulated or measured, see latency_source)")
    latency_source: str = doc("how latency_ms was obtained: 'simulation (...)' or 'measurement (...)'")
    meets_target: bool = doc("latency_ms <= target_ms")
    target_ratio: float = doc("latency_ms / target_ms")
    repaired: bool = doc("the repair changed the decoded network to meet the target (false: met by the search)")
    val_acc: Optional[float] = doc("its validation accuracy (supernet weights, BN re-estimated; see accuracy_source)")
    test_acc: Optional[float] = doc("its test accuracy (same network)")
    macs: int = doc("MACs at the deployment shape")
    decode_step: int = doc("step of the decoded state")
    arch: str = doc("its ArchSpec's compact string")
    dir: str = doc("its directory under the run dir (arch.json, summary.json)")


@dataclass(kw_only=True)
class FrontSummary(Summary):
    """search.py with latency=[...]: one network per target from one search (each in its own directory)."""

    KINDS: ClassVar[tuple[str, ...]] = ("search_front",)
    COMMAND: ClassVar[str] = "s3nas-search (python search.py 'latency=[1.5ms,2ms,...]')"

    hardware: str = doc("hardware profile or device name")
    targets_ms: list[float] = doc("the targets, ascending")
    points: list[FrontPoint] = doc("one delivered network per target, in targets_ms order")
    all_meet_target: bool = doc("every network meets its target")
    repaired: int = doc("networks the repair had to change (0: every target met by the search itself)")
    accuracy_source: str = doc("how the accuracies were obtained")
    supernet_val_acc: Optional[float] = doc("the supernet's validation accuracy at the end of the fit")
    total_steps: int = doc("optimizer steps of the search (the targets take turns in the search phase)")
    search_seconds: float = doc("wall clock seconds of the whole search, every network included")
    warmup_source: Optional[str] = doc("how the shared warm-up was obtained ('trained', 'cache (<file>)', "
                                       "'checkpoint (<file>)')", default=None)
    timings_s: Optional[dict[str, float]] = doc("wall clock seconds per part, as in a one-target search's summary",
                                                default=None)
    zoo_overlay: list[str] = doc("zoo networks drawn on front.png on their own axis (published ImageNet top-1; "
                                 "empty on a device)")
    seed: int = doc("random seed")
    data: str = doc("dataset name")
    run_dir: str = doc("the run dir")


SUMMARY_TYPES: tuple[type[Summary], ...] = (
    SearchSummary, FrontSummary, TrainSummary, ExportSummary, ScalingSummary, PostprocessSummary, SeRemovalSummary, FlowSummary,
    ZooSummary, CompareSummary, RandomBaselineSummary, ProfileSpaceSummary)
BY_KIND: dict[str, type[Summary]] = {kind: cls for cls in SUMMARY_TYPES for kind in cls.KINDS}


# ------------------------------------------------------------------------------------------------ arch.json
@dataclass(kw_only=True)
class ArchBranch(Record):
    """One (kernel, expansion) branch of a block."""

    kernel: int = doc("depthwise kernel size (odd)")
    expansion: float = doc("expansion ratio of the branch")


@dataclass(kw_only=True)
class ArchBlock(Record):
    """One block of an ArchSpec."""

    type: str = doc("mbconv, mixconv or fused")
    branches: list[ArchBranch] = doc("the block's branches (one unless mixconv)")
    out_channels: int = doc("output channels")
    stride: int = doc("stride")
    stage: int = doc("stage index (for scaling)")
    se_ratio: float = doc("squeeze-and-excitation ratio (0: none)")
    act: str = doc("activation: relu, relu6, swish or hswish")


@dataclass(kw_only=True)
class ArchFile(Record):
    """arch.json: one ArchSpec (s3nas.arch.codec writes and validates it; its version is ``version``)."""

    format: str = doc("always 's3nas.archspec'")
    version: int = doc("ArchSpec file format version (s3nas.arch.codec.VERSION)")
    name: str = doc("network name")
    stem_channels: int = doc("stem output channels")
    stem_kernel: int = doc("stem kernel size")
    stem_stride: int = doc("stem stride")
    head_channels: int = doc("head conv channels")
    num_classes: int = doc("classifier outputs")
    in_channels: int = doc("input channels")
    input_size: int = doc("deployment input resolution")
    act: str = doc("stem/head activation")
    dropout: float = doc("dropout before the classifier")
    blocks: list[ArchBlock] = doc("the blocks in order")
    encoded: str = doc("the compact string of the whole network (for humans; blocks are authoritative)")
    meta: dict[str, Any] = doc("free-form provenance (scaling, post-processing, search figures)")


# -------------------------------------------------------------------------------------------- read / write
def write_summary(run_dir: str | os.PathLike[str], summary: Summary) -> Path:
    """Validate ``summary`` and write it to ``<run_dir>/summary.json`` atomically; returns the path."""
    if not isinstance(summary, Summary):
        raise TypeError(f"write_summary takes a Summary object, got {type(summary).__name__}")
    data = summary.to_dict()
    type(summary).from_dict(data)  # what is written reads back (catches fields changed after construction)
    return atomic_write_json(Path(run_dir) / SUMMARY_FILE, data)


def summary_from_dict(data: Any, source: str = "summary") -> Summary:
    """The typed summary of a parsed summary.json (class chosen by ``kind``); OutputSchemaError naming
    ``source`` when it is from an older/newer s3nas or does not match its type."""
    if not isinstance(data, dict):
        raise OutputSchemaError(f"{source}: not a summary (a JSON object), got {_got(data)}")
    if "schema_version" not in data:
        raise OutputSchemaError(f"{source}: written by an older s3nas (no schema_version); rerun the command that "
                                f"made it with this version")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise OutputSchemaError(f"{source}: schema_version {version!r} written by a {'newer' if newer else 'different'} "
                                f"s3nas; this one reads schema_version {SCHEMA_VERSION}")
    kind = data.get("kind")
    if kind not in BY_KIND:
        raise OutputSchemaError(f"{source}: kind {kind!r} is not a summary kind; known: {', '.join(BY_KIND)}")
    try:
        return BY_KIND[kind].from_dict(data)
    except OutputSchemaError as error:
        raise OutputSchemaError(f"{source}: {error}") from None


def load_summary(path: str | os.PathLike[str]) -> Summary:
    """Read ``path`` (a summary.json or a run dir holding one) as its typed summary; OutputSchemaError (a
    ConfigError) naming the file when it is missing, not JSON, from an older s3nas or off its schema."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputSchemaError(f"{path}: no such summary file") from None
    except (OSError, ValueError) as error:
        raise OutputSchemaError(f"{path}: not readable JSON ({error})") from None
    return summary_from_dict(data, str(path))


def validate_summary_file(path: str | os.PathLike[str]) -> Summary | ArchFile:
    """Validate an output file against its schema (summary.json by kind, arch.json as ArchFile); returns the
    typed object, raises OutputSchemaError naming the file and key."""
    path = Path(path)
    if path.name == ARCH_FILE:
        try:
            return ArchFile.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            raise OutputSchemaError(f"{path}: {error}") from None
    return load_summary(path)


def _placeholder(tp: Any) -> Any:
    """A valid value of type ``tp`` (non-null for optional types, one item for lists and dicts)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        return _placeholder(next(a for a in typing.get_args(tp) if a is not type(None)))
    if typing.get_origin(tp) is list:
        return [_placeholder(typing.get_args(tp)[0])]
    if typing.get_origin(tp) is dict:
        return {"key": _placeholder(typing.get_args(tp)[1])}
    if isinstance(tp, type) and issubclass(tp, Record):
        return example(tp)
    return {bool: True, int: 1, float: 0.5, str: "text"}.get(tp, {"any": 1}) if tp is not Any else {"any": 1}


def example(cls: type[Record], **values: Any) -> Any:
    """An instance of ``cls`` with placeholder values in every field except ``values`` (tests, docs)."""
    kwargs: dict[str, Any] = {}
    for name, _, tp, f in cls.fields():
        if name in values:
            kwargs[name] = values.pop(name)
        elif name == "kind" and issubclass(cls, Summary):
            kwargs[name] = values.get("method", cls.KINDS[0])
        elif name == "method" and issubclass(cls, RandomBaselineSummary):
            kwargs[name] = cls.KINDS[0]
        elif name != "schema_version":
            kwargs[name] = _placeholder(tp)
    if values:
        raise TypeError(f"example({cls.__name__}): unknown field(s) {', '.join(values)}")
    return cls(**kwargs)


# ------------------------------------------------------------------------------------------- documentation
def _records_of(cls: type[Record], seen: dict[str, type[Record]]) -> None:
    """Nested record types reachable from ``cls`` (in first-use order)."""
    for _, _, tp, _ in cls.fields():
        stack = [tp]
        while stack:
            t = stack.pop()
            stack.extend(typing.get_args(t))
            if isinstance(t, type) and issubclass(t, Record) and t.__name__ not in seen:
                seen[t.__name__] = t
                _records_of(t, seen)


def _table(cls: type[Record]) -> list[str]:
    lines = ["| key | type | meaning |", "|---|---|---|"]
    for _, key, tp, f in cls.fields():
        optional = " (may be absent: null)" if f.default is None else ""
        text = f.metadata.get("doc", "")
        lines.append(f"| `{key}` | {_type_name(tp).replace('|', '&#124;')} | {text.replace('|', '&#124;')}{optional} |")
    return lines


def markdown() -> str:
    """docs/reference/outputs.md, generated from the types above."""
    out = ["# Outputs: summary.json and arch.json", "",
           "<!-- Generated by `python -m s3nas.outputs --markdown > docs/reference/outputs.md`; "
           "tests/test_outputs_schema.py checks that it matches the types. Do not edit by hand. -->", "",
           f"Every command writes `summary.json` in its run dir; commands that produce a network also write "
           f"`arch.json`. Each summary is a typed object (`s3nas.outputs`) with `schema_version` "
           f"(now {SCHEMA_VERSION}) and `kind` (the command). Read one with "
           "`s3nas.outputs.load_summary(run_dir)`: it returns the type below that `kind` names and refuses, in one "
           "line naming the file, a summary written by an older s3nas (no `schema_version`) or one off its type. "
           "Numbers that are not finite are written as `null`. Every latency comes with `latency_source` "
           "('simulation (...)' or 'measurement (...)') and `latency_noise_pct` (null for a simulation).", "",
           "| kind | type | command |", "|---|---|---|"]
    for cls in SUMMARY_TYPES:
        out.append(f"| {', '.join(f'`{k}`' for k in cls.KINDS)} | [{cls.__name__}](#{cls.__name__.lower()}) | "
                   f"{cls.COMMAND} |")
    out.append("| (arch.json) | [ArchFile](#archfile) | every command that produces a network |")
    nested: dict[str, type[Record]] = {}
    for cls in SUMMARY_TYPES:
        out += ["", f"## {cls.__name__}", "", f"`kind`: {', '.join(f'`{k}`' for k in cls.KINDS)}; "
                f"written by {cls.COMMAND}. {(cls.__doc__ or '').strip()}", ""]
        out += _table(cls)
        _records_of(cls, nested)
    out += ["", "## ArchFile", "", f"{(ArchFile.__doc__ or '').strip()}", ""] + _table(ArchFile)
    _records_of(ArchFile, nested)
    out += ["", "## LatencyContract", "", "`latency.json` beside `model.onnx` (`latency_int8.json` beside "
            "`model_int8.onnx`). " + (LatencyContract.__doc__ or "").strip(), ""] + _table(LatencyContract)
    _records_of(LatencyContract, nested)
    out += ["", "## Nested objects"]
    for name, cls in nested.items():
        out += ["", f"### {name}", "", (cls.__doc__ or "").strip(), ""] + _table(cls)
    return "\n".join(out) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m s3nas.outputs --markdown`` prints outputs.md; ``--validate FILE...`` checks output files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--markdown"]:
        sys.stdout.write(markdown())
        return 0
    if argv[:1] == ["--validate"] and len(argv) > 1:
        for name in argv[1:]:
            try:
                obj = validate_summary_file(name)
            except OutputSchemaError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            print(f"{name}: ok ({type(obj).__name__})")
        return 0
    print("usage: python -m s3nas.outputs --markdown | --validate FILE...", file=sys.stderr)
    return 2



# ------------------------------------------------------------------------------------ latency.json (contract)
#: Layout version of latency.json / latency_int8.json (independent of SCHEMA_VERSION: the files are not summaries).
LATENCY_CONTRACT_VERSION = 1
LATENCY_CONTRACT_KIND = "latency_contract"


@dataclass(kw_only=True)
class ContractPrediction(Record):
    """The latency backend's prediction for the delivered network (``LatencyBackend.predict``)."""

    latency_ms: float = doc("predicted latency (ms)")
    low_ms: float = doc("lower end of the interval (ms); equal to latency_ms for an exact simulation")
    high_ms: float = doc("upper end of the interval (ms)")
    level: float = doc("two-sided confidence of [low_ms, high_ms] (0.9; 1.0 for a simulation)")
    how: str = doc("how the prediction was obtained (simulation, corrected measured table, few-shot model)")


@dataclass(kw_only=True)
class ContractMeasurement(Record):
    """The latency the run measured (or simulated) for the delivered network."""

    latency_ms: float = doc("latency (ms): the run's summary latency_ms")
    noise_pct: Optional[float] = doc("repeat-measurement noise in % (null for a simulation)")
    method: str = doc("'measurement', 'simulation' or the backend's own word ('estimate')")
    source: str = doc("the run's latency_source: what was timed, where, how many runs")
    measurements_ms: Optional[list[float]] = doc("device only: median (ms) of each repeat measurement", default=None)


@dataclass(kw_only=True)
class ContractDevice(Record):
    """What the latency figures hold for: the hardware, the input shape, and the model file they sit beside."""

    fingerprint: dict[str, Any] = doc("the device's fingerprint (Device.fingerprint(): CPU model, logical CPUs, "
                                      "threads, runtime and version, clock, dtype, host) or, without one, the "
                                      "backend's identity (simulator profile and versions)")
    input_shape: list[int] = doc("[batch, channels, height, width] the latency figures are for (the deployment "
                                 "shape, batch 1)")
    num_classes: int = doc("classifier outputs of the network the latency figures are for")
    batch: int = doc("batch size of the latency figures (1)")
    dtype: str = doc("number format the hardware runs the network in (its latency is of that format)")
    model_file: str = doc("file name of the model beside this file (model.onnx, model_int8.onnx)")
    model_sha256: str = doc("sha256 of that model file (hex)")
    model_bytes: int = doc("size of that model file")
    model_dtype: str = doc("number format of the model file: 'fp32' or 'int8'")
    model_input_shape: list[int] = doc("[batch, channels, height, width] of the model file's input, read from the "
                                       "file (a dynamic batch axis as 1, other dynamic axes as -1)")
    same_shape: bool = doc("model_input_shape equals input_shape: the figures are for this file as it is; false "
                           "when the run trained/exported at another resolution than deploy.input_size")


@dataclass(kw_only=True)
class LatencyContract(Record):
    """latency.json beside model.onnx (latency_int8.json beside model_int8.onnx): the predicted and the measured
    latency of the delivered network, with the device and input shape they hold for and the model file's hash."""

    schema_version: int = doc("layout version of this file (s3nas.outputs.LATENCY_CONTRACT_VERSION)",
                              default=LATENCY_CONTRACT_VERSION)
    kind: str = doc("always 'latency_contract'", default=LATENCY_CONTRACT_KIND)
    arch: str = doc("network name (the ArchSpec's name, or timm:<name>)")
    arch_encoded: str = doc("the ArchSpec's compact string, or timm:<name>")
    hardware: str = doc("hardware profile or device name")
    created: str = doc("when this file was written (ISO 8601, UTC)")
    written_by: str = doc("the command that wrote it (train.py, s3nas-export, python -m s3nas.quantize)")
    predicted: Optional[ContractPrediction] = doc("the backend's prediction with its interval (null: see "
                                                  "predicted_reason)")
    predicted_reason: Optional[str] = doc("why predicted is null (null when there is a prediction)", default=None)
    measured: Optional[ContractMeasurement] = doc("the measured / simulated latency (null: see measured_reason)")
    measured_reason: Optional[str] = doc("why measured is null (null when there is a measurement)", default=None)
    device: ContractDevice = doc("the hardware, input shape and model file the figures hold for")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind != LATENCY_CONTRACT_KIND:
            raise OutputSchemaError(f"kind: {self.kind!r} is not a latency contract ({LATENCY_CONTRACT_KIND!r})")
        if self.schema_version != LATENCY_CONTRACT_VERSION:
            raise OutputSchemaError(f"schema_version: {self.schema_version} is not {LATENCY_CONTRACT_VERSION} "
                                    f"(this s3nas's latency.json)")
        for figure in ("predicted", "measured"):
            if getattr(self, figure) is None and not getattr(self, f"{figure}_reason"):
                raise OutputSchemaError(f"{figure}_reason: needed when {figure} is null")


def write_latency_contract(path: str | os.PathLike[str], contract: LatencyContract) -> Path:
    """Validate ``contract`` and write it to ``path`` atomically (temp file + rename); returns the path."""
    if not isinstance(contract, LatencyContract):
        raise TypeError(f"write_latency_contract takes a LatencyContract, got {type(contract).__name__}")
    data = contract.to_dict()
    LatencyContract.from_dict(data)  # what is written reads back
    return atomic_write_json(Path(path), data)


def load_latency_contract(path: str | os.PathLike[str]) -> LatencyContract:
    """Read a latency.json; OutputSchemaError naming the file when it is missing, not JSON or off its schema."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputSchemaError(f"{path}: no such latency contract") from None
    except (OSError, ValueError) as error:
        raise OutputSchemaError(f"{path}: not readable JSON ({error})") from None
    try:
        return LatencyContract.from_dict(data)
    except OutputSchemaError as error:
        raise OutputSchemaError(f"{path}: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
