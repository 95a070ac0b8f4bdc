"""ArchSpec codecs: compact timm-style strings and JSON files that round-trip exactly.

Block strings (timm's ``_efficientnet_builder`` in spirit; tokens joined by ``_``, type first):
``ir_k3_e6_c32_s1`` (MBConv), ``mc_k3.5.7_e2.2.2_c32_s2`` (MixConv, one kernel/expansion per branch),
``er_k3_e4_c32_s2`` (fused, timm's EdgeResidual), optional ``se0.25`` and an activation token
(``re`` relu (default), ``r6`` relu6, ``sw`` swish, ``hs`` hswish); a fractional expansion is written
with ``p`` for the decimal point (``e2p5.2``), since ``.`` separates branches. A whole network is
``stem_c32_k7_s2_re | 0: <blocks of stage 0> | 1: ... | head_c1280_re_d0.2 | n1000_i3_r224 | name:<name>``.
JSON: ``to_dict``/``from_dict`` (field names as in ArchSpec), ``save_json`` (atomic), ``load_json``;
bad files raise ``ArchSpecError`` naming the field, e.g. ``blocks[3].branches[0].kernel: must be odd >= 1``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from s3nas.arch.spec import ACTIVATIONS, BLOCK_TYPES, ArchSpec, BlockSpec, Branch
from s3nas.errors import ConfigError
from s3nas.utils.io import atomic_write_text

FORMAT = "s3nas.archspec"
VERSION = 1

_TYPE_TO_CODE = {"mbconv": "ir", "mixconv": "mc", "fused": "er"}
_CODE_TO_TYPE = {**{v: k for k, v in _TYPE_TO_CODE.items()}, "fu": "fused"}
_ACT_TO_CODE = {"relu": "re", "relu6": "r6", "swish": "sw", "hswish": "hs"}
_CODE_TO_ACT = {v: k for k, v in _ACT_TO_CODE.items()}


class ArchSpecError(ConfigError):
    """An ArchSpec file or string is malformed; the message names the field."""


# ------------------------------------------------------------------------------------------ validation


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    """A finite int or float (JSON's NaN/Infinity and float('inf') are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond the float range
        return False


def validate(spec: ArchSpec) -> ArchSpec:
    """Check an ArchSpec's values; raise ArchSpecError naming the first bad field."""
    for key in ("stem_channels", "stem_kernel", "stem_stride", "head_channels", "num_classes", "in_channels",
                "input_size"):
        v = getattr(spec, key)
        if not _is_int(v) or v < 1:
            raise ArchSpecError(f"{key}: must be a positive integer, got {v!r}")
    if spec.stem_kernel % 2 == 0:
        raise ArchSpecError(f"stem_kernel: must be odd >= 1, got {spec.stem_kernel!r}")
    if spec.act not in ACTIVATIONS:
        raise ArchSpecError(f"act: {spec.act!r} is not an activation; use one of {', '.join(ACTIVATIONS)}")
    if not _is_num(spec.dropout) or not 0 <= spec.dropout < 1:
        raise ArchSpecError(f"dropout: must be a finite number in [0, 1), got {spec.dropout!r}")
    if not isinstance(spec.blocks, tuple):
        raise ArchSpecError(f"blocks: must be a tuple of BlockSpec, got {type(spec.blocks).__name__}")
    for i, block in enumerate(spec.blocks):
        _validate_block(block, f"blocks[{i}]")
    return spec


def _validate_block(block: BlockSpec, where: str) -> None:
    if block.type not in BLOCK_TYPES:
        raise ArchSpecError(f"{where}.type: {block.type!r} is not a block type; use one of {', '.join(BLOCK_TYPES)}")
    if not block.branches:
        raise ArchSpecError(f"{where}.branches: a block needs at least one branch (skips are dropped)")
    if block.type != "mixconv" and len(block.branches) != 1:
        raise ArchSpecError(f"{where}.branches: a {block.type} block has exactly one branch, got {len(block.branches)}")
    kernels = [b.kernel for b in block.branches]
    for j, b in enumerate(block.branches):
        if not _is_int(b.kernel) or b.kernel < 1 or b.kernel % 2 == 0:
            raise ArchSpecError(f"{where}.branches[{j}].kernel: must be odd >= 1, got {b.kernel!r}")
        if not _is_num(b.expansion) or b.expansion <= 0:
            raise ArchSpecError(f"{where}.branches[{j}].expansion: must be a finite number > 0, got {b.expansion!r}")
        if b.block_type:
            raise ArchSpecError(f"{where}.branches[{j}]: a block's branches carry no type of their own (the block "
                                f"has it), got {b.block_type!r}")
    if kernels != sorted(set(kernels)):
        raise ArchSpecError(f"{where}.branches: kernels must be distinct and sorted (merge same-size "
                            f"branches), got {kernels}")
    if not _is_int(block.out_channels) or block.out_channels < 1:
        raise ArchSpecError(f"{where}.out_channels: must be a positive integer, got {block.out_channels!r}")
    if not _is_int(block.stride) or block.stride < 1:
        raise ArchSpecError(f"{where}.stride: must be a positive integer, got {block.stride!r}")
    if not _is_int(block.stage) or block.stage < 0:
        raise ArchSpecError(f"{where}.stage: must be an integer >= 0, got {block.stage!r}")
    if not _is_num(block.se_ratio) or not 0 <= block.se_ratio <= 1:
        raise ArchSpecError(f"{where}.se_ratio: must be a finite number in [0, 1], got {block.se_ratio!r}")
    if block.act not in ACTIVATIONS:
        raise ArchSpecError(f"{where}.act: {block.act!r} is not an activation; use one of {', '.join(ACTIVATIONS)}")


# ---------------------------------------------------------------------------------------------- strings


def _num(v: float) -> str:
    """Shortest exact text of a number: 2.0 -> '2', 0.25 -> '0.25'."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def _parse_num(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ArchSpecError(f"{where}: {text!r} is not a number") from None


def _parse_int(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ArchSpecError(f"{where}: {text!r} is not an integer") from None


def encode_block(block: BlockSpec, *, with_stage: bool = False) -> str:
    """One block as a timm-style string, e.g. ``mc_k3.5.7_e2.2.2_c32_s2``."""
    parts = [_TYPE_TO_CODE[block.type], "k" + ".".join(str(b.kernel) for b in block.branches),
             "e" + ".".join(_num(b.expansion).replace(".", "p") for b in block.branches), f"c{block.out_channels}", f"s{block.stride}"]
    if block.se_ratio:
        parts.append(f"se{_num(block.se_ratio)}")
    if block.act != "relu":
        parts.append(_ACT_TO_CODE[block.act])
    if with_stage:
        parts.append(f"g{block.stage}")
    return "_".join(parts)


def decode_block(text: str, stage: int = 0, where: str = "block") -> BlockSpec:
    """Parse one block string (inverse of encode_block); stage from a ``g<n>`` token or the argument."""
    tokens = text.strip().split("_")
    if tokens[0] not in _CODE_TO_TYPE:
        raise ArchSpecError(f"{where}.type: {tokens[0]!r} is not a block code; use one of "
                            f"{', '.join(sorted(_CODE_TO_TYPE))} ({text!r})")
    kind = _CODE_TO_TYPE[tokens[0]]
    kernels: list[int] | None = None
    expansions: list[float] | None = None
    fields: dict[str, Any] = {"stage": stage, "stride": 1, "se_ratio": 0.0, "act": "relu"}
    for tok in tokens[1:]:
        if tok in _CODE_TO_ACT:
            fields["act"] = _CODE_TO_ACT[tok]
        elif tok.startswith("se"):
            fields["se_ratio"] = _parse_num(tok[2:], f"{where}.se_ratio")
        elif tok.startswith("k"):
            kernels = [_parse_int(k, f"{where}.kernel") for k in tok[1:].split(".")]
        elif tok.startswith("e"):
            expansions = [_parse_num(e.replace("p", "."), f"{where}.expansion") for e in tok[1:].split(".")]
        elif tok.startswith("c"):
            fields["out_channels"] = _parse_int(tok[1:], f"{where}.out_channels")
        elif tok.startswith("s"):
            fields["stride"] = _parse_int(tok[1:], f"{where}.stride")
        elif tok.startswith("g"):
            fields["stage"] = _parse_int(tok[1:], f"{where}.stage")
        else:
            raise ArchSpecError(f"{where}: unknown token {tok!r} in {text!r}")
    if kernels is None or expansions is None or "out_channels" not in fields:
        missing = [n for n, v in (("k", kernels), ("e", expansions), ("c", fields.get("out_channels"))) if v is None]
        raise ArchSpecError(f"{where}: missing {', '.join(missing)} token(s) in {text!r}")
    if len(kernels) != len(expansions):
        raise ArchSpecError(f"{where}.branches: {len(kernels)} kernels but {len(expansions)} expansions in {text!r}")
    block = BlockSpec(type=kind, branches=tuple(Branch(k, e) for k, e in zip(kernels, expansions)), **fields)
    _validate_block(block, where)
    return block


def encode(spec: ArchSpec) -> str:
    """Whole network as one line: stem | stage groups | head | deployment | name."""
    segments = [f"stem_c{spec.stem_channels}_k{spec.stem_kernel}_s{spec.stem_stride}_{_ACT_TO_CODE[spec.act]}"]
    groups: list[tuple[int, list[str]]] = []
    for block in spec.blocks:
        if not groups or groups[-1][0] != block.stage:
            groups.append((block.stage, []))
        groups[-1][1].append(encode_block(block))
    segments += [f"{stage}: " + " ".join(blocks) for stage, blocks in groups]
    segments.append(f"head_c{spec.head_channels}_d{_num(spec.dropout)}")
    segments.append(f"n{spec.num_classes}_i{spec.in_channels}_r{spec.input_size}")
    segments.append("name:" + quote(spec.name, safe=""))
    return " | ".join(segments)


def decode(text: str) -> ArchSpec:
    """Inverse of encode; raises ArchSpecError naming the bad part."""
    segments = [s.strip() for s in text.split("|")]
    if len(segments) < 4 or not segments[0].startswith("stem_"):
        raise ArchSpecError(f"arch string: expected 'stem_... | <stage>: blocks | ... | head_... | n..._i..._r...', "
                            f"got {text[:80]!r}")
    fields: dict[str, Any] = {}
    for tok in segments[0].split("_")[1:]:
        if tok in _CODE_TO_ACT:
            fields["act"] = _CODE_TO_ACT[tok]
        elif tok[:1] in ("c", "k", "s"):
            key = {"c": "stem_channels", "k": "stem_kernel", "s": "stem_stride"}[tok[0]]
            fields[key] = _parse_int(tok[1:], key)
        else:
            raise ArchSpecError(f"stem: unknown token {tok!r}")
    blocks: list[BlockSpec] = []
    rest = segments[1:]
    if rest and rest[-1].startswith("name:"):
        fields["name"] = unquote(rest.pop()[5:])
    for seg in rest:
        if seg.startswith("head_"):
            for tok in seg.split("_")[1:]:
                if tok.startswith("c"):
                    fields["head_channels"] = _parse_int(tok[1:], "head_channels")
                elif tok.startswith("d"):
                    fields["dropout"] = _parse_num(tok[1:], "dropout")
                else:
                    raise ArchSpecError(f"head: unknown token {tok!r}")
        elif seg[:1] == "n" and "_" in seg:
            for tok in seg.split("_"):
                key = {"n": "num_classes", "i": "in_channels", "r": "input_size"}.get(tok[:1])
                if key is None:
                    raise ArchSpecError(f"deployment: unknown token {tok!r}")
                fields[key] = _parse_int(tok[1:], key)
        else:
            stage_text, sep, body = seg.partition(":")
            if not sep:
                raise ArchSpecError(f"stage: expected '<stage>: <blocks>', got {seg[:60]!r}")
            stage = _parse_int(stage_text.strip(), "stage")
            for tok in body.split():
                blocks.append(decode_block(tok, stage, where=f"blocks[{len(blocks)}]"))
    return validate(ArchSpec(blocks=tuple(blocks), **fields))


# ------------------------------------------------------------------------------------------------- JSON

_OPTIONAL_TOP = ("stem_channels", "stem_kernel", "stem_stride", "head_channels", "num_classes", "in_channels",
                 "input_size", "act", "dropout", "name")
_INFO_KEYS = ("format", "version", "encoded", "meta")


def to_dict(spec: ArchSpec) -> dict:
    """JSON-able dict (field names as in ArchSpec) with a format tag and the compact string for humans."""
    d: dict[str, Any] = {"format": FORMAT, "version": VERSION, "name": spec.name}
    for key in _OPTIONAL_TOP:
        d[key] = getattr(spec, key)
    d["blocks"] = [
        {"type": b.type, "branches": [{"kernel": br.kernel, "expansion": float(br.expansion)} for br in b.branches],
         "out_channels": b.out_channels, "stride": b.stride, "stage": b.stage, "se_ratio": float(b.se_ratio),
         "act": b.act}
        for b in spec.blocks
    ]
    d["encoded"] = encode(spec)
    d["meta"] = spec.meta
    return d


def _field(d: dict, key: str, where: str, kind: str, default: Any = ..., *, required: bool = False) -> Any:
    if key not in d:
        if required or default is ...:
            raise ArchSpecError(f"{where}{key}: missing field")
        return default
    v = d[key]
    ok = {"int": _is_int(v), "num": _is_num(v), "str": isinstance(v, str), "list": isinstance(v, list),
          "dict": isinstance(v, dict)}[kind]
    if not ok:
        names = {"int": "an integer", "num": "a finite number", "str": "a string", "list": "a list", "dict": "an object"}
        raise ArchSpecError(f"{where}{key}: must be {names[kind]}, got {type(v).__name__} {v!r}")
    return float(v) if kind == "num" else v


def from_dict(d: Any) -> ArchSpec:
    """Inverse of to_dict; raises ArchSpecError naming the first missing or bad field."""
    if not isinstance(d, dict):
        raise ArchSpecError(f"arch: expected a JSON object, got {type(d).__name__}")
    if "format" in d and d["format"] != FORMAT:
        raise ArchSpecError(f"format: expected {FORMAT!r}, got {d['format']!r}")
    unknown = sorted(set(d) - set(_OPTIONAL_TOP) - set(_INFO_KEYS) - {"blocks"})
    if unknown:
        raise ArchSpecError(f"{unknown[0]}: unknown field; accepted: blocks, {', '.join(_OPTIONAL_TOP)}")
    defaults = ArchSpec(blocks=())
    kinds = {"act": "str", "name": "str", "dropout": "num"}
    top = {k: _field(d, k, "", kinds.get(k, "int"), getattr(defaults, k)) for k in _OPTIONAL_TOP}
    blocks_raw = _field(d, "blocks", "", "list", required=True)
    blocks = []
    for i, b in enumerate(blocks_raw):
        where = f"blocks[{i}]."
        if not isinstance(b, dict):
            raise ArchSpecError(f"blocks[{i}]: must be an object, got {type(b).__name__}")
        unknown = sorted(set(b) - {"type", "branches", "out_channels", "stride", "stage", "se_ratio", "act"})
        if unknown:
            raise ArchSpecError(f"{where}{unknown[0]}: unknown field")
        branches = []
        for j, br in enumerate(_field(b, "branches", where, "list", required=True)):
            bw = f"{where}branches[{j}]."
            if not isinstance(br, dict):
                raise ArchSpecError(f"{where}branches[{j}]: must be an object, got {type(br).__name__}")
            branches.append(Branch(kernel=_field(br, "kernel", bw, "int", required=True),
                                   expansion=_field(br, "expansion", bw, "num", required=True)))
        blocks.append(BlockSpec(
            type=_field(b, "type", where, "str", required=True), branches=tuple(branches),
            out_channels=_field(b, "out_channels", where, "int", required=True),
            stride=_field(b, "stride", where, "int", 1), stage=_field(b, "stage", where, "int", 0),
            se_ratio=_field(b, "se_ratio", where, "num", 0.0), act=_field(b, "act", where, "str", "relu")))
    meta = _field(d, "meta", "", "dict", {})
    return validate(ArchSpec(blocks=tuple(blocks), meta=meta, **top))


def save_json(spec: ArchSpec, path: str | os.PathLike) -> Path:
    """Write the spec as JSON atomically (temp file in the same folder + os.replace)."""
    text = json.dumps(to_dict(validate(spec)), indent=2, default=str) + "\n"  # meta may hold odd values
    return atomic_write_text(path, text)


def load_json(path: str | os.PathLike) -> ArchSpec:
    """Read an ArchSpec JSON file; ArchSpecError (naming the file and field) when it is not one."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArchSpecError(f"arch: file not found: {path}") from None
    except IsADirectoryError:
        raise ArchSpecError(f"arch: {path} is a directory, not an arch.json file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ArchSpecError(f"arch: {path} is not valid JSON ({reason}); the file is truncated or not an "
                            f"arch.json: pass the arch.json a search wrote (or rerun that search)") from None
    try:
        return from_dict(d)
    except ArchSpecError as e:
        raise ArchSpecError(f"{path}: {e}; pass the arch.json a search wrote (or rerun that search)") from None


def looks_like_archspec(d: Any) -> bool:
    """True when a parsed JSON object is meant to be an ArchSpec (format tag, or a blocks list)."""
    return isinstance(d, dict) and (d.get("format") == FORMAT or ("blocks" in d and "format" not in d))
