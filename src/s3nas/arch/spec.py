"""ArchSpec: the one architecture description of s3nas.

Search output, training input, scaling/post-processing input and output, baseline definitions and
simulator input all use these dataclasses. A block is a list of (kernel, expansion) branches:
an MBConv block has one branch, a MixConv block one per distinct kernel size (branches with the same
kernel are merged, expansions added, and branches are sorted by kernel), a fused block one branch whose
kernel is the full kxk conv. A block with no branches (total expansion 0) is a skip and is dropped by
decoding. Shapes: channels are absolute numbers, strides apply to the block's first op.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s3nas.config.vocabulary import ACTIVATIONS, BLOCK_TYPES  # noqa: F401 - the accepted values (shared with the configs)


@dataclass(frozen=True)
class Branch:
    """One depthwise (or fused full-conv) path: kernel size and expansion ratio relative to block input.

    ``block_type`` is empty in a BlockSpec (the block carries its type). In the option of a search-space
    position that chooses among block types (``supernet.block_type: choice``) it names the type the branch
    belongs to, so "mbconv k3 e2" and "fused k3 e2" are different options.
    """

    kernel: int
    expansion: float
    block_type: str = ""


@dataclass(frozen=True)
class BlockSpec:
    """One block. ``in_channels`` is implied by the previous block (or the stem)."""

    type: str  # one of BLOCK_TYPES
    branches: tuple[Branch, ...]
    out_channels: int
    stride: int = 1
    stage: int = 0  # index of the stage this block belongs to (for scaling)
    se_ratio: float = 0.0  # 0 = no SE; else reduced channels = max(1, int(in_channels * se_ratio))
    act: str = "relu"  # one of ACTIVATIONS

    @property
    def expansion(self) -> float:
        return float(sum(b.expansion for b in self.branches))

    @property
    def kernels(self) -> tuple[int, ...]:
        return tuple(b.kernel for b in self.branches)


@dataclass(frozen=True)
class ArchSpec:
    """A whole network: stem -> blocks -> head (1x1 conv, global pool, dropout, FC)."""

    blocks: tuple[BlockSpec, ...]
    stem_channels: int = 32
    stem_kernel: int = 7
    stem_stride: int = 2
    head_channels: int = 1280
    num_classes: int = 1000
    in_channels: int = 3
    input_size: int = 224  # deployment resolution (what the simulator runs)
    act: str = "relu"  # stem/head activation
    dropout: float = 0.2
    name: str = "s3nas"
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # free-form provenance
