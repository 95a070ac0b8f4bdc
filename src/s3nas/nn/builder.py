"""ArchSpec -> plain nn.Module (no masks, no thresholds): the network that is retrained and deployed.

Module names (what the supernet copies weights into; shapes with C = block input channels, M_j = branch
j's expanded channels = round(C * e_j), M = sum M_j, O = out channels, branches sorted by kernel):
- ``stem.conv`` [stem_channels, in_channels, k, k] (+ ``stem.bn``, ``stem.act``)
- ``blocks.<i>.expand.conv``: MBConv/MixConv [M, C, 1, 1]; fused [M, C, k, k] with the block's stride
- ``blocks.<i>.dw.<j>.conv``: depthwise [M_j, 1, k_j, k_j] with the block's stride (absent for fused);
  branch j reads channels [sum M_<j, sum M_<=j) of the expanded tensor; each has its own ``.bn``/``.act``
- ``blocks.<i>.se.conv_reduce`` / ``.conv_expand`` (timm SqueezeExcite, only when se_ratio > 0)
- ``blocks.<i>.project.conv`` [O, M, 1, 1] + ``.bn`` (no act); residual add when stride 1 and C == O
- ``head.conv`` [head_channels, O_last, 1, 1]; ``global_pool``; ``dropout``; ``classifier`` (Linear)
The simulator graph of ``s3nas.arch.graph.archspec_to_graph`` uses the same paths as layer ``module``.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import nn

from s3nas.arch.codec import validate
from s3nas.arch.shapes import block_mid_channels, has_residual, se_channels
from s3nas.arch.spec import ArchSpec, BlockSpec
from s3nas.nn.layers import ConvBnAct, init_weights_goog, squeeze_excite


class Block(nn.Module):
    """One MBConv / MixConv / fused block built from a BlockSpec."""

    def __init__(self, block: BlockSpec, in_channels: int, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.spec = block
        self.splits = block_mid_channels(block, in_channels)
        mid = sum(self.splits)
        self.has_residual = has_residual(block, in_channels)
        if block.type == "fused":
            self.expand = ConvBnAct(in_channels, mid, block.branches[0].kernel, block.stride, act=block.act)
            self.dw = None
        else:
            self.expand = ConvBnAct(in_channels, mid, 1, act=block.act)
            self.dw = nn.ModuleList(ConvBnAct(c, c, b.kernel, block.stride, groups=c, act=block.act)
                                    for b, c in zip(block.branches, self.splits))
        self.se = squeeze_excite(mid, se_channels(in_channels, block.se_ratio)) if block.se_ratio else nn.Identity()
        self.project = ConvBnAct(mid, block.out_channels, 1, act=None)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate and self.has_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x)  # (B, M, H, W)
        if self.dw is not None:
            if len(self.dw) == 1:
                y = self.dw[0](y)
            else:
                parts = torch.split(y, self.splits, dim=1)
                y = torch.cat([conv(part) for conv, part in zip(self.dw, parts)], dim=1)  # (B, M, H/s, W/s)
        y = self.se(y)
        y = self.project(y)  # (B, O, H/s, W/s)
        if self.has_residual:
            y = self.drop_path(y) + x
        return y


class S3Net(nn.Module):
    """stem -> blocks -> head conv -> global average pool -> dropout -> classifier."""

    def __init__(self, spec: ArchSpec, num_classes: int | None = None, drop_path_rate: float = 0.0,
                 dropout: float | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes if num_classes is not None else spec.num_classes
        self.stem = ConvBnAct(spec.in_channels, spec.stem_channels, spec.stem_kernel, spec.stem_stride, act=spec.act)
        blocks, channels, n = [], spec.stem_channels, max(1, len(spec.blocks))
        for i, block in enumerate(spec.blocks):
            # drop-path grows linearly with depth (EfficientNet recipe)
            blocks.append(Block(block, channels, drop_path_rate * i / n))
            channels = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBnAct(channels, spec.head_channels, 1, act=spec.act)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout if dropout is None else dropout)
        self.classifier = nn.Linear(spec.head_channels, self.num_classes)
        # same init as the supernet: timm EfficientNet init, residual blocks' last BN gamma at 0
        init_weights_goog(self)
        for block in self.blocks:
            if block.has_residual:
                nn.init.zeros_(block.project.bn.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))  # (B, head_channels, H/32, W/32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(self.forward_features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def build_model(spec: ArchSpec, num_classes: int | None = None, *, drop_path_rate: float = 0.0,
                dropout: float | None = None) -> S3Net:
    """A plain network for ``spec`` (any input resolution); ``num_classes`` overrides the spec's."""
    return S3Net(validate(spec), num_classes=num_classes, drop_path_rate=drop_path_rate, dropout=dropout)
