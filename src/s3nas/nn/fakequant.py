"""Fake INT8 quantization of a torch network, the same scheme as ``s3nas.utils.onnxquant`` (onnxruntime QDQ).

``attach(model)`` wraps every ``Conv2d`` and ``Linear`` in a :class:`FakeQuant` module that quantizes

- its weight per output channel, symmetric INT8 in [-127, 127] (scale = max|w| / 127, zero point 0); BN folded
  into the convolution scales each output channel by gamma / sigma, which commutes with this rounding, so the
  unfolded weight quantized here equals the folded weight quantized by onnxruntime;
- its input per tensor, asymmetric UINT8 (scale = (max - min) / 255 over a range that includes 0).

The input range is observed by ``calibrate(model, batches)``: min/max over calibration images, what
onnxruntime's MinMax calibrator does. It stays fixed afterwards, in training too: the deployed model's ranges
come from the same calibration, so quantization-aware training sees the clipping the INT8 model will have
(a moving average of batch ranges would shrink them below the calibrated min/max). Gradients pass straight
through the rounding (torch's fake_quantize ops). ``strip(model)`` returns the float network with the
wrappers removed (its weights are the trained ones; export it and quantize it with onnxruntime).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

QMIN_W, QMAX_W = -127, 127
QMIN_A, QMAX_A = 0, 255


class FakeQuant(nn.Module):
    """A Conv2d or Linear with fake-quantized weight and input."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("act_min", torch.tensor(0.0))
        self.register_buffer("act_max", torch.tensor(0.0))
        self.register_buffer("observed", torch.tensor(False))
        self.calibrating = False  # collect min/max without quantizing (calibrate())
        self.enabled = True

    # ------------------------------------------------------------------------------ quantizers
    def _weight(self) -> torch.Tensor:
        weight = self.inner.weight
        absmax = weight.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12)
        scale = (absmax / QMAX_W).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, QMIN_W, QMAX_W)

    def _observe(self, x: torch.Tensor) -> None:
        low, high = x.detach().min().float(), x.detach().max().float()
        if bool(self.observed):
            low, high = torch.minimum(self.act_min, low), torch.maximum(self.act_max, high)
        self.act_min.copy_(low)
        self.act_max.copy_(high)
        self.observed.fill_(True)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        low = torch.clamp(self.act_min, max=0.0)
        high = torch.clamp(self.act_max, min=0.0)
        scale = float(torch.clamp((high - low) / (QMAX_A - QMIN_A), min=1e-8))
        zero = int(torch.clamp(torch.round(QMIN_A - low / scale), QMIN_A, QMAX_A))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, QMIN_A, QMAX_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self._observe(x)
        if self.calibrating or not self.enabled or not bool(self.observed):
            return self.inner(x)
        x = self._input(x)
        weight = self._weight()
        if isinstance(self.inner, nn.Linear):
            return F.linear(x, weight, self.inner.bias)
        conv = self.inner
        return conv._conv_forward(x, weight, conv.bias)


def attach(model: nn.Module) -> nn.Module:
    """Wrap every Conv2d / Linear of ``model`` (in place) in :class:`FakeQuant`; returns ``model``."""
    for name, child in list(model.named_children()):
        if isinstance(child, FakeQuant):
            continue
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(model, name, FakeQuant(child))
        else:
            attach(child)
    return model


def wrappers(model: nn.Module) -> list[FakeQuant]:
    return [m for m in model.modules() if isinstance(m, FakeQuant)]


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Observe min/max of every quantized input over ``batches`` (eval mode, no quantization while observing);
    returns the number of images seen."""
    was_training = model.training
    model.eval()
    quantizers = wrappers(model)
    for q in quantizers:
        q.observed.fill_(False)
        q.calibrating = True
    seen = 0
    try:
        for batch in batches:
            model(batch)
            seen += len(batch)
    finally:
        for q in quantizers:
            q.calibrating = False
    model.train(was_training)
    return seen


def strip(model: nn.Module) -> nn.Module:
    """Replace every :class:`FakeQuant` by the module it wraps (in place); returns ``model``."""
    for name, child in list(model.named_children()):
        if isinstance(child, FakeQuant):
            setattr(model, name, child.inner)
        else:
            strip(child)
    return model
