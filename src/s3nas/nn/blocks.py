"""Searchable blocks of the supernet: MBConv, MixConv (paper Fig. 6-7) and fused (paper Table 1).

Single-path: every block holds ONE weight per superkernel at its largest kernel and largest expansion,
and the indicators mask it -- kernel rings on the (tiny) depthwise/full-conv weight, expansion slices on
the 1x1 projection weight's input channels (equivalent to masking the expanded activations, since only
the projection reads them, but free of activation-sized work). The optional first slice (skip / branch
off) is a ``gate`` folded into the last BatchNorm's affine parameters, so a switched-off block adds exactly
nothing to the residual (masking the weights alone would leave BN's shift ``beta`` behind).

Every block also enumerates its options: each independent nested chain ("factor") has level
probabilities (paper Eq. 7 F/G terms); the product over factors of one level each is a raw combination,
mapped to its canonical option (same-kernel branches merged, off branches dropped, sorted; paper Fig. 8).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s3nas.arch.shapes import branch_channels, se_channels
from s3nas.arch.space import canonical, option_type, untyped
from s3nas.arch.spec import BlockSpec, Branch
from s3nas.nn.builder import Block
from s3nas.nn.layers import make_act
from s3nas.nn.superkernel import SuperKernel

__all__ = ["expanded_channels", "canonical_option", "SearchableBlock", "SearchableMBConv",
           "SearchableMixConv", "SearchableFused", "SearchableChoice", "SqueezeExcite", "build_searchable_block"]

Option = tuple[Branch, ...]


def expanded_channels(in_channels: int, expansion: float) -> int:
    """Channels of an expansion ratio relative to the block input (same rule as the child builder)."""
    return branch_channels(in_channels, Branch(0, float(expansion)))


#: Merge same-kernel branches (expansions added), drop 0-expansion ones, sort by kernel (the space's ``canonical``).
canonical_option = canonical


def gated_batch_norm(bn: nn.BatchNorm2d, x: Tensor, gate: Tensor | None) -> Tensor:
    """``gate * bn(x)`` with the gate folded into BN's affine parameters (no extra activation tensor)."""
    if gate is None:
        return bn(x)
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight * gate, bn.bias * gate,
                        bn.training or not bn.track_running_stats, bn.momentum or 0.0, bn.eps)


class SqueezeExcite(nn.Module):
    """SE on the expanded channels: GAP -> 1x1 reduce (ReLU) -> 1x1 expand -> sigmoid -> multiply."""

    def __init__(self, channels: int, rd_channels: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(rd_channels, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.conv_expand(self.act1(self.conv_reduce(s))))


class SearchableBlock(nn.Module):
    """Common parts: projection with channel masks, gated last BN, residual, option enumeration."""

    type: str = ""

    def __init__(self, pos, options_order: Sequence[Option] | None = None) -> None:
        super().__init__()
        self.pos = pos
        self.in_channels, self.out_channels, self.stride = pos.in_channels, pos.out_channels, pos.stride
        self.has_residual = bool(pos.has_residual)
        self._options_order = list(options_order) if options_order is not None else None

    # ------------------------------------------------------------------------ option enumeration
    def _finish_options(self) -> None:
        """Map every raw combination of factor levels to an index into ``self.options``."""
        combos = [canonical_option([b for part in combo for b in part])
                  for combo in itertools.product(*self.factor_states())]
        found = list(dict.fromkeys(combos))
        if self._options_order is not None:
            if set(found) != set(self._options_order):
                raise ValueError(f"block {self.pos.index}: supernet options {sorted(map(str, found))} differ "
                                 f"from the search space's {sorted(map(str, self._options_order))}")
            found = list(self._options_order)
        self.options: list[Option] = found
        index = {opt: i for i, opt in enumerate(found)}
        self.register_buffer("combo_index", torch.tensor([index[c] for c in combos], dtype=torch.long),
                             persistent=False)

    def factor_states(self) -> list[list[tuple[Branch, ...]]]:
        """Per factor (independent nested chain pair), the raw branches of each of its levels."""
        raise NotImplementedError

    def factor_probs(self) -> list[Tensor]:
        """Per factor, the differentiable probability of each level (same order as factor_states)."""
        raise NotImplementedError

    def option_probs(self) -> Tensor:
        """(n_options,) differentiable probabilities of ``self.options`` (sum to 1)."""
        factors = self.factor_probs()
        probs = factors[0]
        for f in factors[1:]:
            probs = (probs[:, None] * f[None, :]).reshape(-1)
        return probs.new_zeros(len(self.options)).index_add(0, self.combo_index, probs)

    def raw_choice(self) -> tuple[Branch, ...]:
        """Hard per-superkernel choice of the threshold state (expansion 0 = off)."""
        raise NotImplementedError

    def chosen_option(self) -> Option:
        return canonical_option(self.raw_choice())

    def superkernels(self) -> list[SuperKernel]:
        return [m for m in self.modules() if isinstance(m, SuperKernel)]

    def expansion_levels(self, sk: SuperKernel) -> list[float]:
        """Expansion ratio of each channel level of one of this block's superkernels (0 = off)."""
        return _levels(sk, self.in_channels, self.expansions)

    # ------------------------------------------------------------------------ shared forward parts
    def _project(self, d: Tensor, cmask: Tensor | None, gate: Tensor | None, x: Tensor) -> Tensor:
        """(SE) -> 1x1 project with masked input channels -> gated BN -> residual."""
        weight = self.conv_pwl.weight
        if self.se is not None:
            if cmask is not None:  # SE pools over channels: mask the activations themselves
                d = d * cmask.view(1, -1, 1, 1)
            d = self.se(d)
        elif cmask is not None:
            weight = weight * cmask.view(1, -1, 1, 1)
        z = gated_batch_norm(self.bn3, F.conv2d(d, weight), gate)
        return z + x if self.has_residual else z

    def _make_tail(self, channels: int, pos) -> None:
        se_ratio = float(getattr(pos, "se_ratio", 0.0) or 0.0)
        self.se = SqueezeExcite(channels, se_channels(self.in_channels, se_ratio)) if se_ratio > 0 else None
        self.conv_pwl = nn.Conv2d(channels, self.out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.out_channels)


def _levels(sk: SuperKernel, in_channels: int, expansions: Sequence[float]) -> list[float]:
    """Expansion ratio of each channel level of ``sk`` (0 first when the first slice is optional)."""
    nonzero = [float(e) for e in expansions if e > 0]
    return ([0.0] if sk.first_optional else []) + nonzero


class SearchableMBConv(SearchableBlock):
    """1x1 expand (max expansion) -> depthwise superkernel -> 1x1 project (+ residual)."""

    type = "mbconv"

    def __init__(self, pos, options_order: Sequence[Option] | None = None) -> None:
        super().__init__(pos, options_order)
        self.expansions = sorted(float(e) for e in pos.expansions if e > 0)
        slices = [expanded_channels(self.in_channels, e) for e in self.expansions]
        channels = slices[-1]
        self.conv_pw = nn.Conv2d(self.in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = make_act(pos.act)
        self.sk = SuperKernel(slices, 1, pos.kernels, first_optional=bool(pos.allow_skip))
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = make_act(pos.act)
        self._make_tail(channels, pos)
        self._finish_options()

    def forward(self, x: Tensor) -> Tensor:
        st = self.sk.state()
        h = self.act1(self.bn1(self.conv_pw(x)))
        c = self.sk.out_channels
        d = F.conv2d(h, st.weight, None, self.stride, self.sk.max_kernel // 2, 1, c)
        d = self.act2(self.bn2(d))
        return self._project(d, st.channel_mask, st.gate, x)

    def factor_states(self):
        levels = _levels(self.sk, self.in_channels, self.expansions)
        return [[(Branch(k, e),) for k in self.sk.kernels for e in levels]]

    def factor_probs(self):
        kp, cp = self.sk.level_probs()
        return [(kp[:, None] * cp[None, :]).reshape(-1)]

    def raw_choice(self):
        kernel_level, channel_level = self.sk.choice_levels()
        levels = _levels(self.sk, self.in_channels, self.expansions)
        return (Branch(self.sk.kernels[kernel_level], levels[channel_level]),)


class SearchableFused(SearchableMBConv):
    """Full kxk conv superkernel (in -> max expansion) -> 1x1 project (+ residual); paper Table 1."""

    type = "fused"

    def __init__(self, pos, options_order: Sequence[Option] | None = None) -> None:
        SearchableBlock.__init__(self, pos, options_order)
        self.expansions = sorted(float(e) for e in pos.expansions if e > 0)
        slices = [expanded_channels(self.in_channels, e) for e in self.expansions]
        channels = slices[-1]
        self.sk = SuperKernel(slices, self.in_channels, pos.kernels, first_optional=bool(pos.allow_skip))
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = make_act(pos.act)
        self._make_tail(channels, pos)
        self._finish_options()

    def forward(self, x: Tensor) -> Tensor:
        st = self.sk.state()
        d = F.conv2d(x, st.weight, None, self.stride, self.sk.max_kernel // 2)
        d = self.act1(self.bn1(d))
        return self._project(d, st.channel_mask, st.gate, x)


class SearchableMixConv(SearchableBlock):
    """1x1 expand -> N parallel depthwise superkernels on channel groups -> concat -> 1x1 project."""

    type = "mixconv"

    def __init__(self, pos, options_order: Sequence[Option] | None = None) -> None:
        super().__init__(pos, options_order)
        self.expansions = sorted(float(e) for e in pos.mix_expansions)
        nonzero = [e for e in self.expansions if e > 0]
        min_kernel = int(getattr(pos, "mix_min_kernel", 3))
        largest = max(range(len(pos.mix_max_kernels)), key=lambda j: (pos.mix_max_kernels[j], j))
        self.sks = nn.ModuleList()
        for j, k_max in enumerate(pos.mix_max_kernels):
            optional = 0.0 in self.expansions and (j != largest or bool(pos.allow_skip))
            slices = [expanded_channels(self.in_channels, e) for e in nonzero]
            self.sks.append(SuperKernel(slices, 1, range(min_kernel, int(k_max) + 1, 2), first_optional=optional))
        self.branch_channels = [sk.out_channels for sk in self.sks]
        channels = sum(self.branch_channels)
        self.conv_pw = nn.Conv2d(self.in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = make_act(pos.act)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = make_act(pos.act)
        self._make_tail(channels, pos)
        # the block vanishes only if every branch can switch off (then a residual exists)
        self.all_optional = all(sk.first_optional for sk in self.sks)
        self._finish_options()

    def forward(self, x: Tensor) -> Tensor:
        states = [sk.state() for sk in self.sks]
        h = self.act1(self.bn1(self.conv_pw(x)))
        parts = torch.split(h, self.branch_channels, dim=1) if len(self.sks) > 1 else (h,)
        outs = [F.conv2d(p, st.weight, None, self.stride, sk.max_kernel // 2, 1, sk.out_channels)
                for p, st, sk in zip(parts, states, self.sks)]
        d = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]  # (B, M, H/s, W/s)
        d = self.act2(self.bn2(d))
        cmask, gate = self._masks(states)
        return self._project(d, cmask, gate, x)

    def _masks(self, states) -> tuple[Tensor | None, Tensor | None]:
        """Concatenated branch channel masks (branch gates included) and the block gate."""
        if all(st.channel_mask is None and st.gate is None for st in states):
            return None, None
        masks = []
        for st, sk in zip(states, self.sks):
            m = st.channel_mask if st.channel_mask is not None else st.weight.new_ones(sk.out_channels)
            masks.append(m * st.gate if st.gate is not None else m)
        gate = None
        if self.all_optional:  # on iff any branch is on: 1 - prod(1 - g_j)
            off = torch.stack([1 - st.gate for st in states]).prod()
            gate = 1 - off
        return torch.cat(masks), gate

    def _branch_levels(self, sk: SuperKernel) -> list[float]:
        return _levels(sk, self.in_channels, self.expansions)

    def factor_states(self):
        out = []
        for sk in self.sks:
            levels = self._branch_levels(sk)
            out.append([(Branch(k, e),) for k in sk.kernels for e in levels])
        return out

    def factor_probs(self):
        out = []
        for sk in self.sks:
            kp, cp = sk.level_probs()
            out.append((kp[:, None] * cp[None, :]).reshape(-1))
        return out

    def raw_choice(self):
        branches = []
        for sk in self.sks:
            kernel_level, channel_level = sk.choice_levels()
            branches.append(Branch(sk.kernels[kernel_level], self._branch_levels(sk)[channel_level]))
        return tuple(branches)


class SearchableChoice(SearchableBlock):
    """A position choosing among listed options of any block types (``supernet.block_type: choice``).

    FBNet-style: one plain block (``s3nas.nn.builder.Block``, the child network's own module) per listed
    option, each with its own weights, an identity path for the skip where allowed, and one trainable logit
    per option, ``choice_logits``, trained by the same loss as the thresholds (a normalised gradient step,
    ``SearchModule._step_choices``). ``option_probs`` is the chosen option's one-hot in value and the softmax of
    the logits in gradient (hard forward, soft backward, as the indicators): the latency term uses it as it
    uses the indicator products of the other blocks. Training forwards run ONE path: warm-up samples it
    uniformly (as the supernet's warm-up samples every nested choice); the search runs the chosen one (the
    largest logit: the thresholded state, as the other blocks) and scales its output by ``1 + p - p.detach()``
    (value 1), so the loss reaches its logit (straight-through). Evaluation and decoding take the same path.
    """

    type = "choice"
    #: Initial logit gap between consecutive options (ascending size): ~10 steps of schedule.thresholds.choice_lr.
    init_gap = 0.5

    def __init__(self, pos, options_order: Sequence[Option] | None = None) -> None:
        super().__init__(pos, options_order)
        found = list(pos.choices) + ([()] if pos.allow_skip else [])
        if options_order is not None:
            if set(found) != set(options_order):
                raise ValueError(f"block {pos.index}: listed options {sorted(map(str, found))} differ from the "
                                 f"search space's {sorted(map(str, options_order))}")
            found = list(options_order)
        self.options = found
        self.phase = "search"
        self.paths = nn.ModuleList(
            Block(BlockSpec(type=option_type(o, "mbconv"), branches=untyped(o), out_channels=pos.out_channels,
                            stride=pos.stride, stage=pos.stage, se_ratio=pos.se_ratio, act=pos.act),
                  pos.in_channels) if o else nn.Identity()
            for o in found)
        # a ramp toward the largest option: the search starts from the largest network (as the thresholds start
        # with every ring and slice on) and steps down through the options one crossing at a time
        self.choice_logits = nn.Parameter(torch.arange(len(found), dtype=torch.float32) * self.init_gap)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.paths[self.chosen_index()](x)
        if self.phase == "warmup":
            return self.paths[int(torch.randint(len(self.paths), ()))](x)
        k = self.chosen_index()
        soft = torch.softmax(self.choice_logits, 0)[k]
        return self.paths[k](x) * (1 + soft - soft.detach())

    def option_probs(self) -> Tensor:
        """Hard forward, soft backward (as the thresholds' indicators): the value is the chosen option's one-hot,
        so the latency term sees the network the block is; the gradient is the softmax's."""
        soft = torch.softmax(self.choice_logits, 0)
        hard = torch.zeros_like(soft)
        hard[self.chosen_index()] = 1.0
        return hard + soft - soft.detach()

    def chosen_index(self) -> int:
        return int(self.choice_logits.detach().argmax())

    def raw_choice(self) -> tuple[Branch, ...]:
        return tuple(self.options[self.chosen_index()])

    def superkernels(self) -> list[SuperKernel]:
        return []

    @torch.no_grad()
    def set_option(self, option: Sequence[Branch], margin: float = 1e4) -> None:
        """Make ``option`` the chosen one (its logit ``margin`` above the others)."""
        k = self.options.index(canonical(option))
        self.choice_logits.fill_(-margin)
        self.choice_logits[k] = margin


def build_searchable_block(pos, options_order: Sequence[Option] | None = None) -> SearchableBlock:
    """The searchable block for a BlockPosition (by ``pos.type``)."""
    classes = {"mbconv": SearchableMBConv, "mixconv": SearchableMixConv, "fused": SearchableFused,
               "choice": SearchableChoice}
    if pos.type not in classes:
        raise ValueError(f"block type {pos.type!r}: use one of {', '.join(classes)}")
    return classes[pos.type](pos, options_order)
