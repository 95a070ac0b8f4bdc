"""Small layers of s3nas networks: conv-BN-act, activations by name, SE (timm's SqueezeExcite), h-swish.

Activation names follow ``ArchSpec`` (relu, relu6, swish, hswish) and map to timm's activation factory;
h-swish is x * relu6(x + 3) / 6 (``nn.Hardswish``). SE is GAP -> 1x1 reduce (ReLU) -> 1x1 expand
(sigmoid) -> channel multiply, reduced channels relative to the block's input channels.
"""

from __future__ import annotations

import math

import torch
from timm.layers import create_act_layer, create_conv2d, get_act_layer
from timm.models._efficientnet_blocks import SqueezeExcite as _TimmSqueezeExcite
from torch import nn

_ACT_NAMES = {"relu": "relu", "relu6": "relu6", "swish": "swish", "hswish": "hard_swish"}


def act_layer(name: str | None) -> type[nn.Module] | None:
    """timm activation class for an ArchSpec activation name (None -> None)."""
    if name is None:
        return None
    if name not in _ACT_NAMES:
        raise ValueError(f"act: {name!r} is not an activation; use one of {', '.join(_ACT_NAMES)}")
    return get_act_layer(_ACT_NAMES[name])


def make_act(name: str | None) -> nn.Module:
    """The activation module of an ArchSpec name, in place (timm's factory; nn.Identity for None): the one
    activation factory of every network here (child networks, supernet, searchable blocks)."""
    layer = act_layer(name)
    return create_act_layer(layer, inplace=True) if layer is not None else nn.Identity()


class ConvBnAct(nn.Module):
    """conv (k//2 padding, no bias) -> BatchNorm -> activation; submodules ``conv``, ``bn``, ``act``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = "relu") -> None:
        super().__init__()
        self.conv = create_conv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def squeeze_excite(channels: int, reduced_channels: int) -> nn.Module:
    """timm SqueezeExcite: ``conv_reduce`` (ReLU) -> ``conv_expand`` (sigmoid) on GAP, then multiply."""
    return _TimmSqueezeExcite(channels, rd_channels=reduced_channels, act_layer=nn.ReLU, gate_layer=nn.Sigmoid)


def init_weights_goog(module: nn.Module) -> None:
    """TF/timm EfficientNet init (``timm.models._efficientnet_builder._init_weight_goog``), one change.

    conv: normal(0, sqrt(2 / fan_out)), fan_out = k*k*out/groups, bias 0; BN: (1, 0); Linear: uniform
    (-r, r), bias 0. timm takes r = 1/sqrt(out features), tuned for 1000 classes; with 10 classes it gives
    initial logits of std ~5 (CE ~8 at step 1 on digits), so r = 1/sqrt(in features) here: the same scale
    for ImageNet (1/sqrt(1280) vs 1/sqrt(1000)) and logits of std ~0.3 for any class count.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.weight.shape[1])
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
