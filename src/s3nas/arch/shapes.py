"""Channel and spatial arithmetic shared by the graph converter, the nn builder and the supernet.

One definition of how many channels a branch gets, so the simulator graph, the plain network and the
supernet's weight slices agree.
"""

from __future__ import annotations

from s3nas.arch.spec import BlockSpec, Branch


def branch_channels(in_channels: int, branch: Branch) -> int:
    """Expanded channels of one branch: round(in_channels * expansion), at least 1."""
    return max(1, int(round(in_channels * branch.expansion)))


def block_mid_channels(block: BlockSpec, in_channels: int) -> list[int]:
    """Per-branch expanded channels of a block, in branch order (sorted by kernel)."""
    return [branch_channels(in_channels, b) for b in block.branches]


def se_channels(in_channels: int, se_ratio: float) -> int:
    """Reduced SE channels, relative to the block's input channels (EfficientNet convention)."""
    return max(1, int(in_channels * se_ratio))


def conv_out_hw(hw: int, kernel: int, stride: int) -> int:
    """Spatial size after a conv with k//2 padding."""
    return (hw + 2 * (kernel // 2) - kernel) // stride + 1


def has_residual(block: BlockSpec, in_channels: int) -> bool:
    """Residual add when the block keeps the shape (stride 1, in == out channels)."""
    return block.stride == 1 and in_channels == block.out_channels
