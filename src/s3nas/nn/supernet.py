"""The S3NAS supernet: stem -> one searchable block per SearchSpace position -> head (paper 4.1).

Single-path (paper 3.1): each block holds one weight per superkernel at its largest kernel/expansion,
masked by indicators. Phases: ``warmup`` samples every nested choice with equal probability on each
training forward (paper's supergraph training; thresholds get no gradient), ``search`` uses the
thresholded indicators (hard forward, sigmoid backward). Evaluation-mode forwards, ``decode`` and the
latency estimator always use the thresholded state. ``extract_child`` copies the weights of the decoded
architecture into a plain network from ``s3nas.nn.builder.build_model`` (same outputs in eval mode).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import torch
from torch import Tensor, nn

from s3nas.arch.spec import ArchSpec, Branch
from s3nas.arch.space import ListedOptions
from s3nas.nn.blocks import SearchableBlock, SearchableChoice, build_searchable_block
from s3nas.nn.blocks import canonical_option as _canonical
from s3nas.nn.builder import build_model
from s3nas.nn.layers import init_weights_goog, make_act
from s3nas.nn.superkernel import SuperKernel

__all__ = ["Supernet", "PHASES"]

PHASES = ("warmup", "search")
Option = tuple[Branch, ...]


def _init_weights(module: "Supernet") -> None:
    """timm EfficientNet init (see ``init_weights_goog``) + zero gamma of each residual block's last BN.

    Zero-initialised last BN (as timm's ``zero_init_last``): every residual block starts as the identity,
    so the 20+ block residual stream does not grow with depth at initialisation. The gate of a switched-off
    block still multiplies this BN's weight and bias (``gated_batch_norm``), unchanged.
    """
    init_weights_goog(module)
    for block in module.blocks:
        if isinstance(block, SearchableChoice):  # plain child blocks: their project BN, as the child's init
            for path in block.paths:
                if getattr(path, "has_residual", False):
                    nn.init.zeros_(path.project.bn.weight)
        elif block.has_residual:
            nn.init.zeros_(block.bn3.weight)


class Supernet(nn.Module):
    """Searchable network over a SearchSpace; built for the training resolution (any HxW input)."""

    def __init__(self, space, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.space = space
        self.num_classes = int(num_classes)
        self.dropout_rate = float(dropout)
        act = space.act
        self.conv_stem = nn.Conv2d(space.in_channels, space.stem_channels, space.stem_kernel, space.stem_stride,
                                   space.stem_kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(space.stem_channels)
        self.act1 = make_act(act)
        self.blocks = nn.ModuleList(build_searchable_block(pos, space.options(i))
                                    for i, pos in enumerate(space.positions))
        final_channels = space.positions[-1].out_channels if space.positions else space.stem_channels
        self.conv_head = nn.Conv2d(final_channels, space.head_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(space.head_channels)
        self.act2 = make_act(act)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.classifier = nn.Linear(space.head_channels, self.num_classes)
        _init_weights(self)
        self.phase = "search"
        self.set_phase("search")

    # ------------------------------------------------------------------------------------ forward
    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.act2(self.bn2(self.conv_head(x)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.global_pool(self.forward_features(x)).flatten(1)
        return self.classifier(self.dropout(x))

    # ------------------------------------------------------------------------------------ phases
    def set_phase(self, phase: str) -> None:
        """``warmup``: uniform sub-path sampling in training forwards; ``search``: thresholded indicators."""
        if phase not in PHASES:
            raise ValueError(f"phase: {phase!r} is not a phase; use one of {', '.join(PHASES)}")
        self.phase = phase
        for sk in self.superkernels():
            sk.phase = phase
        for block in self.choice_blocks():
            block.phase = phase

    def set_latency_grad_to_weights(self, enabled: bool) -> None:
        """True (the paper): the latency term's gradient reaches weights through their norms; False: thresholds only."""
        for sk in self.superkernels():
            sk.latency_grad_to_weights = bool(enabled)

    def superkernels(self) -> list[SuperKernel]:
        return [m for m in self.modules() if isinstance(m, SuperKernel)]

    def choice_blocks(self) -> list[SearchableChoice]:
        """The blocks choosing among listed options of any types (``supernet.block_type: choice``)."""
        return [b for b in self.blocks if isinstance(b, SearchableChoice)]

    def threshold_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters: thresholds of every optional ring/slice and the choice blocks' logits."""
        return [p for n, p in self.named_parameters() if _is_architecture(n)]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an architecture parameter (conv/BN/FC weights)."""
        return [p for n, p in self.named_parameters() if not _is_architecture(n)]

    # ------------------------------------------------------------------------------------ choices
    def indicator_state(self) -> list[tuple[Branch, ...]]:
        """Per block, the hard raw choice of each superkernel (expansion 0 = off), for logging."""
        return [block.raw_choice() for block in self.blocks]

    def raw_levels(self) -> list:
        """Per block, per superkernel: (kernel sizes, expansion levels) it can take (0.0 = off when allowed);
        a choice block: its ``ListedOptions``."""
        return [ListedOptions(block.options) if isinstance(block, SearchableChoice) else
                [(tuple(sk.kernels), tuple(block.expansion_levels(sk))) for sk in block.superkernels()]
                for block in self.blocks]

    def chosen_options(self) -> list[Option]:
        """Per block, the canonical option of the thresholded state (``()`` = skip)."""
        return [block.chosen_option() for block in self.blocks]

    def decode(self, name: str | None = None) -> ArchSpec:
        """ArchSpec of the current indicator state (same-kernel branches merged, skips dropped)."""
        return self.space.arch_spec(self.chosen_options(), name=name)

    def option_probability_tensors(self) -> list[tuple[list[Option], Tensor]]:
        """Per block: its options and their differentiable probabilities as one tensor (sums to 1)."""
        return [(block.options, block.option_probs()) for block in self.blocks]

    def option_probabilities(self) -> list[list[tuple[Option, Tensor]]]:
        """Per block: (canonical option, differentiable probability = product of its indicators)."""
        return [list(zip(options, probs.unbind(0))) for options, probs in self.option_probability_tensors()]

    def extract_child(self, name: str | None = None) -> tuple[ArchSpec, nn.Module]:
        """(decoded ArchSpec, plain child network from ``build_model`` carrying this supernet's weights)."""
        return extract_child(self, name=name)

    # ---------------------------------------------------------------- vectorised option probabilities
    def combo_probabilities(self) -> Tensor:
        """(n_blocks, n_combos) probability of every raw combination of superkernel states (Eq. 7).

        The same quantity as ``option_probabilities`` before merging into canonical options, computed
        for the whole network in a few batched tensor ops (the per-block path costs thousands of tiny
        ops per step). ``combo_options()[i][c]`` is the canonical option of combination ``c`` of block
        ``i`` (None for padding combinations, whose probability is exactly 0).
        """
        t = self._combo_tables()
        if t["choice_rows"]:  # choice blocks' softmax rows and the superkernel blocks' rows, padded
            rows: list = [None] * len(self.blocks)
            if t["sk_rows"]:
                for i, row in zip(t["sk_rows"], self._superkernel_combos(t).unbind(0)):
                    rows[i] = row
            for i in t["choice_rows"]:
                rows[i] = self.blocks[i].option_probs()
            return torch.stack([torch.nn.functional.pad(r, (0, t["n_combos"] - r.numel())) for r in rows])
        return self._superkernel_combos(t)

    def _superkernel_combos(self, t: dict) -> Tensor:
        """``combo_probabilities`` of the blocks with superkernels (``t["sk_rows"]``), in their order."""
        sks = t["sks"]
        n_blocks = len(t["sk_rows"])
        ref = sks[0].weight
        if t["block_sk"].device != ref.device:  # move the index tensors once, not every step
            for name in ("k_gather", "c_gather", "block_sk"):
                t[name] = t[name].to(ref.device)
        kernel_u, channel_u = zip(*(sk.indicators() for sk in sks))
        pad = ref.new_zeros(1)
        ku = torch.cat([*kernel_u, pad]).index_select(0, t["k_gather"]).view(len(sks), t["k_levels"] - 1)
        cu = torch.cat([*channel_u, pad]).index_select(0, t["c_gather"]).view(len(sks), t["c_levels"] - 1)
        kp, cp = _batched_chain_probs(ku), _batched_chain_probs(cu)  # (n_sk, KL), (n_sk, CL)
        states = (kp[:, :, None] * cp[:, None, :]).reshape(len(sks), -1)  # (n_sk, M)
        dummy = torch.zeros_like(states[:1])
        dummy[0, 0] = 1.0  # blocks with fewer superkernels: a padding superkernel always in state 0
        states = torch.cat([states, dummy]).index_select(0, t["block_sk"].reshape(-1))
        states = states.view(n_blocks, t["width"], -1)  # (n_blocks, B, M)
        combos = states[:, 0]
        for j in range(1, t["width"]):
            combos = (combos[:, :, None] * states[:, j, None, :]).reshape(n_blocks, -1)
        return combos

    def combo_options(self) -> list[list[Option | None]]:
        """Canonical option of every combination of ``combo_probabilities`` (None = impossible padding)."""
        return self._combo_tables()["options"]

    def _combo_tables(self) -> dict:
        """Gather indices and combination -> option maps of ``combo_probabilities`` (built once)."""
        cached = getattr(self, "_combo_cache", None)
        if cached is not None:
            return cached

        choice_rows = [i for i, b in enumerate(self.blocks) if isinstance(b, SearchableChoice)]
        sk_rows = [i for i, b in enumerate(self.blocks) if not isinstance(b, SearchableChoice)]
        if not sk_rows:  # every block is a choice block: one softmax row each
            options = [list(self.blocks[i].options) for i in choice_rows]
            n_combos = max(len(o) for o in options)
            self._combo_cache = {"sk_rows": [], "choice_rows": choice_rows, "n_combos": n_combos,
                                 "options": [o + [None] * (n_combos - len(o)) for o in options]}
            return self._combo_cache
        sk_blocks = [self.blocks[i] for i in sk_rows]
        per_block = [block.superkernels() for block in sk_blocks]
        sks = [sk for group in per_block for sk in group]
        k_levels = max(len(sk.kernels) for sk in sks)
        c_levels = max(len(sk.channel_levels()) for sk in sks)
        width = max(len(group) for group in per_block)
        total_k = sum(sk.num_kernel_indicators for sk in sks)
        total_c = sum(sk.num_channel_indicators for sk in sks)
        k_gather, c_gather, k_off, c_off = [], [], 0, 0
        for sk in sks:  # padded rows; missing indicators point at the trailing 0 (their levels get P = 0)
            k_gather += [k_off + j if j < sk.num_kernel_indicators else total_k for j in range(k_levels - 1)]
            c_gather += [c_off + j if j < sk.num_channel_indicators else total_c for j in range(c_levels - 1)]
            k_off += sk.num_kernel_indicators
            c_off += sk.num_channel_indicators
        block_sk, options, start = [], [], 0
        n_states = k_levels * c_levels
        for block, group in zip(sk_blocks, per_block):
            block_sk.append([start + j if j < len(group) else len(sks) for j in range(width)])
            start += len(group)
            states = []  # per superkernel: branch of each padded state (None = impossible)
            for j in range(width):
                if j >= len(group):
                    states.append([()] + [None] * (n_states - 1))
                    continue
                sk, levels = group[j], block.expansion_levels(group[j])
                row = []
                for s in range(n_states):
                    kl, cl = divmod(s, c_levels)
                    ok = kl < len(sk.kernels) and cl < len(levels)
                    row.append(((Branch(sk.kernels[kl], levels[cl]),) if levels[cl] else ()) if ok else None)
                states.append(row)
            block_options = []
            for combo in itertools.product(*states):
                block_options.append(None if any(b is None for b in combo)
                                     else _canonical([x for b in combo for x in b]))
            options.append(block_options)
        n_combos = max([len(o) for o in options] + [len(self.blocks[i].options) for i in choice_rows])
        by_block: list = [None] * len(self.blocks)
        for i, o in zip(sk_rows, options):
            by_block[i] = o
        for i in choice_rows:
            by_block[i] = list(self.blocks[i].options)
        self._combo_cache = {
            "sk_rows": sk_rows, "choice_rows": choice_rows, "n_combos": n_combos,
            "options": [o + [None] * (n_combos - len(o)) for o in by_block],
            "sks": sks, "width": width, "k_levels": k_levels, "c_levels": c_levels,
            "k_gather": torch.tensor(k_gather if k_levels > 1 else [], dtype=torch.long),
            "c_gather": torch.tensor(c_gather if c_levels > 1 else [], dtype=torch.long),
            "block_sk": torch.tensor(block_sk, dtype=torch.long),
        }
        return self._combo_cache

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_combo_cache", None)  # holds references to submodules: rebuilt on demand
        return state

    def set_choice(self, options: Sequence[Sequence[Branch]] | None = None, *, margin: float = 1e4) -> None:
        """Set thresholds so the hard state is the given raw per-superkernel choice (None = all on).

        ``options[i]`` lists one Branch per superkernel of block i (expansion 0 = off), as
        ``indicator_state`` returns it. Used by tests, benchmarks and to resume a decoded state.
        """
        with torch.no_grad():
            for i, block in enumerate(self.blocks):
                if isinstance(block, SearchableChoice):  # its raw choice is its option; None: the largest
                    block.set_option(options[i] if options is not None else block.options[-1], margin=margin)
                    continue
                sks = block.superkernels()
                choice = options[i] if options is not None else [None] * len(sks)
                if len(choice) != len(sks):
                    raise ValueError(f"block {i}: expected {len(sks)} branch choices, got {len(choice)}")
                for sk, branch in zip(sks, choice):
                    if branch is None:
                        kernel_level, channel_level = len(sk.kernels) - 1, sk.num_channel_indicators
                    else:
                        kernel_level = sk.kernels.index(int(branch.kernel))
                        levels = block.expansion_levels(sk)
                        channel_level = levels.index(float(branch.expansion))
                    if sk.kernel_thresholds is not None:
                        sk.kernel_thresholds.copy_(torch.tensor(
                            [-margin if i < kernel_level else margin for i in range(sk.num_kernel_indicators)]))
                    if sk.channel_thresholds is not None:
                        sk.channel_thresholds.copy_(torch.tensor(
                            [-margin if i < channel_level else margin for i in range(sk.num_channel_indicators)]))


def _is_architecture(name: str) -> bool:
    """Thresholds (``*_thresholds``) and choice logits (``*choice_logits``) are the architecture parameters."""
    return name.endswith("_thresholds") or name.endswith("choice_logits")


def _batched_chain_probs(u: Tensor) -> Tensor:
    """Row-wise ``chain_probs``: (n, L-1) nested indicators -> (n, L) level probabilities."""
    ones = u.new_ones(u.shape[0], 1)
    kept = torch.cat([ones, torch.cumprod(u, 1)], 1)
    next_off = 1 - torch.cat([u, u.new_zeros(u.shape[0], 1)], 1)
    return kept * next_off


# ------------------------------------------------------------------------------------------ child export
def _copy(dst: Tensor, src: Tensor) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"cannot copy supernet weight of shape {tuple(src.shape)} into {tuple(dst.shape)}")
    dst.copy_(src)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, idx: Tensor | None = None) -> None:
    """Copy affine parameters and running statistics (channels ``idx`` of ``src``; all if None)."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        value = getattr(src, name)
        _copy(getattr(dst, name), value if idx is None else value.index_select(0, idx))
    if dst.num_batches_tracked is not None and src.num_batches_tracked is not None:
        dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _crop(weight: Tensor, kernel: int) -> Tensor:
    """Centre ``kernel x kernel`` part of a (C, Cin, K, K) superkernel weight."""
    lo = (weight.shape[-1] - kernel) // 2
    return weight[..., lo:lo + kernel, lo:lo + kernel]


def _block_channel_groups(block: SearchableBlock) -> list[tuple[int, Tensor]]:
    """Per child branch (sorted by kernel): its kernel and the supernet channel indices it consists of."""
    groups: dict[int, list[Tensor]] = {}
    offset = 0
    for sk in block.superkernels():
        kernel_level, channel_level = sk.choice_levels()
        channels = sk.channel_levels()[channel_level]
        if channels:
            groups.setdefault(sk.kernels[kernel_level], []).append(torch.arange(offset, offset + channels))
        offset += sk.out_channels
    return [(k, torch.cat(groups[k])) for k in sorted(groups)]


def _copy_block(dst: nn.Module, src: SearchableBlock) -> None:
    """Copy the chosen slices/rings of a searchable block into a plain child block (builder layout)."""
    groups = _block_channel_groups(src)
    device = src.conv_pwl.weight.device
    idx = torch.cat([g for _, g in groups]).to(device)  # child's channel order: branches sorted by kernel
    if src.type == "fused":
        kernel = groups[0][0]
        _copy(dst.expand.conv.weight, _crop(src.sk.weight.index_select(0, idx), kernel))
        _copy_bn(dst.expand.bn, src.bn1, idx)
    else:
        _copy(dst.expand.conv.weight, src.conv_pw.weight.index_select(0, idx))
        _copy_bn(dst.expand.bn, src.bn1, idx)
        sks = src.superkernels()
        for (kernel, g), dw in zip(groups, dst.dw):
            g = g.to(device)
            # every superkernel cropped to this branch's kernel, in supernet channel order, then pick
            full = torch.cat([_crop(sk.weight, kernel) if sk.max_kernel >= kernel
                              else sk.weight.new_zeros(sk.out_channels, 1, kernel, kernel) for sk in sks])
            _copy(dw.conv.weight, full.index_select(0, g))
            _copy_bn(dw.bn, src.bn2, g)
    if src.se is not None:
        _copy(dst.se.conv_reduce.weight, src.se.conv_reduce.weight.index_select(1, idx))
        _copy(dst.se.conv_reduce.bias, src.se.conv_reduce.bias)
        _copy(dst.se.conv_expand.weight, src.se.conv_expand.weight.index_select(0, idx))
        _copy(dst.se.conv_expand.bias, src.se.conv_expand.bias.index_select(0, idx))
    _copy(dst.project.conv.weight, src.conv_pwl.weight.index_select(1, idx))
    _copy_bn(dst.project.bn, src.bn3)


def extract_child(supernet: Supernet, name: str | None = None) -> tuple[ArchSpec, nn.Module]:
    """Decode the supernet and build the plain child network carrying the supernet's weights."""
    spec = supernet.decode(name=name)
    child = build_model(spec, num_classes=supernet.num_classes, dropout=supernet.dropout_rate)
    child.to(next(supernet.parameters()).device)
    with torch.no_grad():
        _copy(child.stem.conv.weight, supernet.conv_stem.weight)
        _copy_bn(child.stem.bn, supernet.bn1)
        kept = [b for b, opt in zip(supernet.blocks, supernet.chosen_options()) if opt]
        if len(kept) != len(child.blocks):
            raise ValueError(f"decoded {len(kept)} blocks but the child has {len(child.blocks)}")
        for dst, src in zip(child.blocks, kept):
            if isinstance(src, SearchableChoice):  # the chosen path is the child's block, module for module
                dst.load_state_dict(src.paths[src.chosen_index()].state_dict())
            else:
                _copy_block(dst, src)
        _copy(child.head.conv.weight, supernet.conv_head.weight)
        _copy_bn(child.head.bn, supernet.bn2)
        _copy(child.classifier.weight, supernet.classifier.weight)
        _copy(child.classifier.bias, supernet.classifier.bias)
    child.train(supernet.training)
    return spec, child

