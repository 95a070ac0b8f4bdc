"""Parameter counting of an ArchSpec without building the torch model (exactly what ``s3nas.nn.builder`` holds)."""

from __future__ import annotations

from s3nas.arch.shapes import block_mid_channels, se_channels
from s3nas.arch.spec import ArchSpec, BlockSpec

__all__ = ["block_params", "block_input_channels", "count_params"]


def _conv_bn(c_in: int, c_out: int, kernel: int, groups: int = 1) -> int:
    """conv (no bias) + BatchNorm (gamma, beta): what ``ConvBnAct`` holds."""
    return (c_in // groups) * kernel * kernel * c_out + 2 * c_out


def block_params(block: BlockSpec, in_channels: int) -> int:
    """Trainable parameters of one block as ``s3nas.nn.builder.Block`` builds it."""
    mids = block_mid_channels(block, in_channels)
    mid = sum(mids)
    if block.type == "fused":
        total = _conv_bn(in_channels, mid, block.branches[0].kernel)
    else:
        total = _conv_bn(in_channels, mid, 1)
        total += sum(_conv_bn(c, c, b.kernel, groups=c) for b, c in zip(block.branches, mids))
    if block.se_ratio:
        reduced = se_channels(in_channels, block.se_ratio)
        total += mid * reduced + reduced + reduced * mid + mid  # conv_reduce, conv_expand (with biases)
    return total + _conv_bn(mid, block.out_channels, 1)


def block_input_channels(spec: ArchSpec) -> list[int]:
    """Input channels of every block (the stem's width, then the previous block's output)."""
    channels, out = spec.stem_channels, []
    for block in spec.blocks:
        out.append(channels)
        channels = block.out_channels
    return out


def count_params(spec: ArchSpec, num_classes: int | None = None) -> int:
    """Trainable parameters of ``build_model(spec)`` (stem, blocks, head conv, classifier)."""
    classes = spec.num_classes if num_classes is None else num_classes
    total = _conv_bn(spec.in_channels, spec.stem_channels, spec.stem_kernel)
    inputs = block_input_channels(spec)
    total += sum(block_params(b, c) for b, c in zip(spec.blocks, inputs))
    last = spec.blocks[-1].out_channels if spec.blocks else spec.stem_channels
    total += _conv_bn(last, spec.head_channels, 1)
    return total + spec.head_channels * classes + classes
