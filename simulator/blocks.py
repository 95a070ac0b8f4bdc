"""Isolated blocks: one inverted-residual block (MBConv, MixConv or fused) simulated on its own.

A :class:`Block` describes a block the way EfficientNet/MnasNet/S3NAS block strings do
(``r1_k3_s11_e6_i32_o32_c0_se0.25[_noskip]``); :func:`parse_block` and :meth:`Block.to_string` convert.
:func:`block_graph` builds its layer graph at a given input size and :func:`simulate_block` simulates it
with the block input on chip or in DRAM as an explicit choice. The block input is an inner feature map
(``Graph.image_input = False``: padded like any map, by its readers) unless the caller says the block reads
the network's image (``input_channel_align``). As in MidapSim, where a block simulated alone reads a HEAD
layer, a first conv with at most ``gemm_max_input_channels`` (3) input channels takes the GEMM path.

Conventions (EfficientNet's builder): MBConv = [1x1 expand (only when the expansion is not 1)] -> kxk
depthwise (stride) [-> SE] -> 1x1 project [-> residual add]; several kernels (``k3.5.7``) make a MixConv:
the expanded channels split into equal groups (the first takes the remainder), one depthwise kernel each,
then concatenated; ``c1`` makes a fused block: kxk conv (stride) to the expanded channels -> 1x1 project.
SE reduces to ``max(1, int(in_channels * se_ratio))`` channels. The residual add exists when the block
keeps its shape (stride 1, in == out) and the string has no ``noskip``. ``r<n>`` repeats the block; the
repeats after the first have stride 1 and ``out_channels`` inputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .graph import ACTIVATIONS, Graph, GraphBuilder
from .hardware import HardwareProfile
from .report import Report

#: Keys of a block string and what they take.
BLOCK_KEYS = {
    "r": "repeats (int >= 1)", "k": "kernel(s), '.'-separated odd ints (k3, k3.5.7)",
    "s": "stride (s11, s22 or s1, s2)", "e": "expansion (number > 0)", "i": "input channels (int >= 1)",
    "o": "output channels (int >= 1)", "c": "conv type (c0 depthwise MBConv/MixConv, c1 fused)",
    "se": "squeeze-excitation ratio (0..1)", "noskip": "no residual add", "sw": "swish activation",
    "a": "expand groups (a1 only)", "p": "project groups (p1 only)",
}


class BlockError(ValueError):
    """An invalid block or block string; the message names the field or token and the accepted values."""


@dataclass(frozen=True)
class Block:
    """One block (see the module doc for the layers it makes)."""

    in_channels: int
    out_channels: int
    kernels: tuple[int, ...] = (3,)
    stride: int = 1
    expansion: float = 6.0
    fused: bool = False
    se_ratio: float = 0.0
    skip: bool = True
    repeats: int = 1
    act: str = "relu"

    def __post_init__(self) -> None:
        def positive_int(name: str, value) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BlockError(f"block {name}: must be an integer >= 1, got {value!r}")

        for name in ("in_channels", "out_channels", "stride", "repeats"):
            positive_int(name, getattr(self, name))
        if not isinstance(self.kernels, tuple) or not self.kernels:
            raise BlockError(f"block kernels: must be a non-empty tuple of odd ints, got {self.kernels!r}")
        for k in self.kernels:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise BlockError(f"block kernels: each must be an odd integer >= 1, got {self.kernels!r}")
        if isinstance(self.expansion, bool) or not isinstance(self.expansion, (int, float)) \
                or not math.isfinite(self.expansion) or self.expansion <= 0:
            raise BlockError(f"block expansion: must be a finite number > 0, got {self.expansion!r}")
        if isinstance(self.se_ratio, bool) or not isinstance(self.se_ratio, (int, float)) \
                or not 0 <= self.se_ratio <= 1:
            raise BlockError(f"block se_ratio: must be a number in [0, 1], got {self.se_ratio!r}")
        if self.fused and len(self.kernels) != 1:
            raise BlockError(f"block kernels: a fused block (c1) has one kernel, got {self.kernels!r}")
        if self.act not in ACTIVATIONS or self.act is None:
            raise BlockError(f"block act: {self.act!r} is not one of {', '.join(a for a in ACTIVATIONS if a)}")
        if len(self.kernels) > self.mid_channels:
            raise BlockError(f"block kernels: {len(self.kernels)} kernel groups for {self.mid_channels} "
                             "expanded channels")

    @property
    def mid_channels(self) -> int:
        """Expanded channels: round(in_channels * expansion), at least 1."""
        return max(1, int(round(self.in_channels * self.expansion)))

    @property
    def has_residual(self) -> bool:
        return self.skip and self.stride == 1 and self.in_channels == self.out_channels

    def to_string(self) -> str:
        """The block string (``parse_block`` reads it back)."""
        e = int(self.expansion) if float(self.expansion).is_integer() else self.expansion
        parts = [f"r{self.repeats}", "k" + ".".join(map(str, self.kernels)), f"s{self.stride}{self.stride}",
                 f"e{e}", f"i{self.in_channels}", f"o{self.out_channels}", f"c{int(self.fused)}"]
        if self.se_ratio:
            parts.append(f"se{self.se_ratio:g}")
        if not self.skip:
            parts.append("noskip")
        if self.act == "swish":
            parts.append("sw")
        return "_".join(parts)


_TOKEN = re.compile(r"^(se|r|k|s|e|i|o|c|a|p)(.+)$")


def parse_block(text: str, act: str = "relu") -> Block:
    """``r1_k3_s11_e6_i32_o32_c0[_se0.25][_noskip][_sw]`` -> Block; raises BlockError naming the token.

    Needs k, e, i and o; r defaults to 1, s to 11, c to 0. ``act`` is the activation unless ``_sw``
    (swish) is given: EfficientNet strings do not encode it.
    """
    if not isinstance(text, str) or not text.strip():
        raise BlockError(f"block string: expected text like r1_k3_s11_e6_i32_o32_c0, got {text!r}")
    values: dict[str, str] = {}
    skip, swish = True, False
    for token in text.strip().split("_"):
        if token == "noskip":
            skip = False
            continue
        if token == "sw":
            swish = True
            continue
        match = _TOKEN.match(token)
        if not match:
            raise BlockError(f"block string {text!r}: unknown token {token!r} (accepted: "
                             + "; ".join(f"{k}: {v}" for k, v in BLOCK_KEYS.items()) + ")")
        key, value = match.groups()
        if key in values:
            raise BlockError(f"block string {text!r}: {key!r} given twice")
        values[key] = value
    missing = [k for k in ("k", "e", "i", "o") if k not in values]
    if missing:
        raise BlockError(f"block string {text!r}: missing {', '.join(missing)} "
                         f"({'; '.join(f'{k}: {BLOCK_KEYS[k]}' for k in missing)})")

    def number(key: str, kind=int):
        try:
            value = kind(values[key])
        except ValueError:
            raise BlockError(f"block string {text!r}: {key}{values[key]} is not valid; {key}: {BLOCK_KEYS[key]}") \
                from None
        if kind is float and not math.isfinite(value):
            raise BlockError(f"block string {text!r}: {key}{values[key]} is not finite; {key}: {BLOCK_KEYS[key]}")
        return value

    stride_text = values.get("s", "11")
    if not stride_text.isdigit() or len(stride_text) not in (1, 2) or len(set(stride_text)) != 1:
        raise BlockError(f"block string {text!r}: s{stride_text} is not valid; s: {BLOCK_KEYS['s']} (equal strides)")
    try:
        kernels = tuple(int(k) for k in values["k"].split("."))
    except ValueError:
        raise BlockError(f"block string {text!r}: k{values['k']} is not valid; k: {BLOCK_KEYS['k']}") from None
    for key in ("a", "p"):
        if key in values and values[key] != "1":
            raise BlockError(f"block string {text!r}: {key}{values[key]} is not supported; {key}: {BLOCK_KEYS[key]}")
    conv_type = values.get("c", "0")
    if conv_type not in ("0", "1"):
        raise BlockError(f"block string {text!r}: c{conv_type} is not valid; c: {BLOCK_KEYS['c']}")
    expansion = number("e", float)
    try:
        return Block(
            in_channels=number("i"), out_channels=number("o"), kernels=kernels, stride=int(stride_text[0]),
            expansion=int(expansion) if expansion.is_integer() else expansion, fused=conv_type == "1",
            se_ratio=number("se", float) if "se" in values else 0.0, skip=skip,
            repeats=number("r") if "r" in values else 1, act="swish" if swish else act)
    except BlockError as exc:
        raise BlockError(f"block string {text!r}: {exc}") from None


def _split_channels(channels: int, groups: int) -> list[int]:
    sizes = [channels // groups] * groups
    sizes[0] += channels - sum(sizes)
    return sizes


def emit_block(b: GraphBuilder, x: str, block: Block, prefix: str = "block") -> str:
    """Append one block (one repeat, input ``x`` with ``block.in_channels``) to ``b``; returns its output."""
    mid, act = block.mid_channels, block.act
    if block.fused:
        y = b.conv(x, mid, block.kernels[0], stride=block.stride, act=act, bias=True, name=f"{prefix}.conv_exp",
                   module=prefix)
    else:
        y = x
        if block.expansion != 1:
            y = b.conv(x, mid, 1, act=act, bias=True, name=f"{prefix}.conv_pw", module=prefix)
        if len(block.kernels) == 1:
            y = b.depthwise(y, block.kernels[0], stride=block.stride, act=act, name=f"{prefix}.conv_dw",
                            module=prefix)
        else:
            sizes, start, outs = _split_channels(mid, len(block.kernels)), 0, []
            parts = []
            for j, size in enumerate(sizes):
                parts.append(b.split(y, start, start + size, name=f"{prefix}.split{j}", module=prefix))
                start += size
            for j, (part, k) in enumerate(zip(parts, block.kernels)):
                outs.append(b.depthwise(part, k, stride=block.stride, act=act, name=f"{prefix}.conv_dw{j}",
                                        module=prefix))
            y = b.concat(*outs, name=f"{prefix}.concat", module=prefix)
    if block.se_ratio:
        y = b.se(y, max(1, int(block.in_channels * block.se_ratio)), act=act, name=f"{prefix}.se", module=prefix)
    y = b.conv(y, block.out_channels, 1, bias=True, name=f"{prefix}.conv_pwl", module=prefix)
    if block.has_residual:
        y = b.add(y, x, name=f"{prefix}.add", module=prefix)
    return y


def _hw(input_size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise BlockError(f"block input size: must be a positive int or (H, W), got {input_size!r}")
    return h, w


def block_graph(block: Block | str, input_size: int | tuple[int, int], *, image_input: bool = False,
                name: str | None = None) -> Graph:
    """The layer graph of ``block`` (all its repeats) on an (in_channels, H, W) input."""
    if isinstance(block, str):
        block = parse_block(block)
    h, w = _hw(input_size)
    b = GraphBuilder((block.in_channels, h, w), name=name or block.to_string(), image_input=image_input)
    x = b.input
    for r in range(block.repeats):
        one = block if r == 0 else Block(
            block.out_channels, block.out_channels, block.kernels, 1, block.expansion, block.fused,
            block.se_ratio, block.skip, 1, block.act)
        x = emit_block(b, x, one, prefix=f"block{r}" if block.repeats > 1 else "block")
    return b.graph


def simulate_block(block: Block | str, input_size: int | tuple[int, int], profile: HardwareProfile | str, *,
                   input_in_dram: bool, image_input: bool = False, trace: bool = False) -> Report:
    """Simulate ``block`` alone at ``input_size``; ``input_in_dram`` says where its input starts (required:
    True = read from DRAM, False = already in the feature memory as far as it fits)."""
    from .api import simulate

    if not isinstance(input_in_dram, bool):
        raise BlockError(f"input_in_dram: must be True (block input in DRAM) or False (on chip), got {input_in_dram!r}")
    graph = block_graph(block, input_size, image_input=image_input)
    return simulate(graph, profile, input_in_dram=input_in_dram, trace=trace)
