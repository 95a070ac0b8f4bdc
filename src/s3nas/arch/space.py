"""The search space: every block position of the supernet and every distinct option it can take.

Built from the `supernet` and `candidates` configs. Positions carry their shape context at the
*deployment* input size (``in_hw``; the training resolution may differ), so the latency table can
simulate each (position, option) once. An option is a canonical tuple of ``Branch`` (same-kernel
branches merged with expansions added, 0-expansion branches dropped, sorted by kernel; paper Fig. 8);
``()`` is the skip, allowed only where a residual exists (stride 1 and in == out channels).

A position of ``supernet.block_type: choice`` chooses among the options listed in ``candidates.options``,
whatever their block types (BBSSP's profiled spaces; FBNet-style choice): its options' branches carry their
``block_type`` (``Branch.block_type``), so the same kernel and expansion of two types are two options.

MixConv (paper Fig. 6-7): superkernel j has a max kernel K_j and picks a kernel in min_kernel..K_j
(step 2) and an expansion from the candidates' list (0 = off). The superkernel with the largest max
kernel may switch off only where the block may be skipped, so a non-residual block never vanishes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from s3nas.arch.spec import ArchSpec, BlockSpec, Branch
from s3nas.config.supernet_schema import check_candidates, check_supernet, linear_depths
from s3nas.errors import ConfigError

Option = tuple[Branch, ...]

__all__ = ["BlockPosition", "ListedOptions", "Option", "SearchSpace", "branch_from_json", "branch_to_json", "canonical",
           "linear_depths", "listed_option", "option_type", "untyped"]


def canonical(branches: Iterable[Branch | tuple[int, float]]) -> Option:
    """Merge same-kernel branches (expansions added), drop 0-expansion branches, sort by kernel.

    Branches keep their ``block_type`` (a choice position's options); same-kernel branches merge only
    within one type."""
    merged: dict[tuple[int, str], float] = {}
    for b in branches:
        kernel, expansion, btype = (b.kernel, b.expansion, b.block_type) if isinstance(b, Branch) \
            else (*b, "") if len(b) == 2 else b
        if expansion:
            key = (int(kernel), str(btype))
            merged[key] = merged.get(key, 0.0) + float(expansion)
    return tuple(Branch(k, merged[(k, t)], t) for k, t in sorted(merged))


def untyped(option: Iterable[Branch]) -> tuple[Branch, ...]:
    """The branches without their ``block_type`` (as a BlockSpec holds them)."""
    return tuple(Branch(b.kernel, b.expansion) for b in option)


def option_type(option: Sequence[Branch], default: str) -> str:
    """Block type of an option: its branches' ``block_type`` when typed, else ``default`` (the position's)."""
    types = {b.block_type for b in option if b.block_type}
    if len(types) > 1:
        raise ValueError(f"option {option!r} mixes block types {sorted(types)}")
    return types.pop() if types else default


def listed_option(entry: dict) -> Option:
    """The typed option of one checked ``candidates.options`` entry ({type, kernels, expansion})."""
    return canonical(Branch(int(k), float(entry["expansion"]), str(entry["type"])) for k in entry["kernels"])


class ListedOptions(tuple):
    """The options of a choice position (``Supernet.raw_levels`` of a choice block): a repair may move to
    any of them, where a nested block may only switch off one ring or slice."""


def branch_to_json(b: Branch) -> list:
    """[kernel, expansion] (+ block_type when typed): the form of raw states in checkpoints and tables."""
    return [b.kernel, float(b.expansion)] + ([b.block_type] if b.block_type else [])


def branch_from_json(value: Sequence) -> Branch:
    return Branch(int(value[0]), float(value[1]), str(value[2]) if len(value) > 2 else "")


def conv_out_hw(hw: int, kernel: int, stride: int) -> int:
    """Spatial size after a 'same'-padded (k//2) conv."""
    return (hw + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class BlockPosition:
    """One searchable block of the supernet with its shape context and candidates."""

    index: int
    stage: int
    type: str  # "mbconv" | "mixconv" | "fused" | "choice" (among ``choices``, whatever their types)
    in_channels: int
    out_channels: int
    stride: int
    in_hw: int  # input height = width at the deployment input size
    has_residual: bool
    kernels: tuple[int, ...] = ()  # mbconv/fused kernel choices
    expansions: tuple[float, ...] = ()  # mbconv/fused expansion choices
    mix_max_kernels: tuple[int, ...] = ()  # mixconv: max kernel of each superkernel
    mix_expansions: tuple[float, ...] = ()  # mixconv: expansion choices of each superkernel (0 = off)
    mix_min_kernel: int = 3
    choices: tuple[Option, ...] = ()  # choice: the listed (typed) options, skip excluded
    allow_skip: bool = False
    se_ratio: float = 0.0
    act: str = "relu"

    @property
    def out_hw(self) -> int:
        return -(-self.in_hw // self.stride)

    @property
    def largest_superkernel(self) -> int:
        """Index of the superkernel with the largest max kernel (the last one on ties)."""
        best = 0
        for j, k in enumerate(self.mix_max_kernels):
            if k >= self.mix_max_kernels[best]:
                best = j
        return best

    def superkernel_choices(self) -> list[list[Branch | None]]:
        """MixConv: per superkernel, its raw choices (None = off), before merging."""
        choices = []
        for j, max_kernel in enumerate(self.mix_max_kernels):
            kernels = range(self.mix_min_kernel, max_kernel + 1, 2)
            states: list[Branch | None] = []
            for e in self.mix_expansions:
                if e == 0:
                    if j != self.largest_superkernel or self.allow_skip:
                        states.append(None)
                else:
                    states.extend(Branch(k, float(e)) for k in kernels)
            choices.append(states)
        return choices


@dataclass
class SearchSpace:
    """Supernet positions plus stem/head; enumerates canonical options and builds ArchSpecs."""

    positions: list[BlockPosition]
    stem_channels: int = 32
    stem_kernel: int = 7
    stem_stride: int = 2
    head_channels: int = 1280
    num_classes: int = 1000
    in_channels: int = 3
    input_size: int = 224
    act: str = "relu"
    dropout: float = 0.2
    name: str = "s3nas_mixconv"
    supernet_cfg: dict = field(default_factory=dict, repr=False)  # validated, for hashing/logging
    candidates_cfg: dict = field(default_factory=dict, repr=False)
    _options: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, supernet_cfg: Any, candidates_cfg: Any, *, num_classes: int = 1000,
                    input_size: int = 224, in_channels: int = 3) -> "SearchSpace":
        """Build from the `supernet` and `candidates` config nodes (DictConfig, dataclass or dict)."""
        sup = check_supernet(supernet_cfg)
        cand = check_candidates(candidates_cfg)
        for key, value in (("num_classes", num_classes), ("input_size", input_size),
                           ("in_channels", in_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"deploy.{key}: must be a positive integer, got {value!r}")
        hw = conv_out_hw(input_size, sup["stem_kernel"], sup["stem_stride"])
        positions: list[BlockPosition] = []
        channels = sup["stem_channels"]
        for stage, (width, depth, first_stride, btype, se) in enumerate(
                zip(sup["widths"], sup["depths"], sup["strides"], sup["block_type"], sup["se_ratio"])):
            for d in range(depth):
                stride = first_stride if d == 0 else 1
                residual = stride == 1 and channels == width
                kw: dict[str, Any] = {}
                if btype == "choice":
                    if not cand.get("options"):
                        raise ConfigError("candidates.options: supernet.block_type 'choice' chooses among the "
                                          "listed options; list at least one ({type, kernel(s), expansion})")
                    kw = dict(choices=tuple(listed_option(e) for e in cand["options"]))
                elif btype == "mixconv":
                    kw = dict(mix_max_kernels=tuple(cand["mixconv"]["max_kernels"]),
                              mix_expansions=tuple(cand["mixconv"]["expansions"]),
                              mix_min_kernel=cand["mixconv"]["min_kernel"])
                else:
                    kw = dict(kernels=tuple(cand[btype]["kernels"]), expansions=tuple(cand[btype]["expansions"]))
                positions.append(BlockPosition(
                    index=len(positions), stage=stage, type=btype, in_channels=channels, out_channels=width,
                    stride=stride, in_hw=hw, has_residual=residual,
                    allow_skip=residual and cand["allow_skip"], se_ratio=se, act=sup["act"], **kw))
                hw = -(-hw // stride)
                channels = width
        return cls(positions=positions, stem_channels=sup["stem_channels"], stem_kernel=sup["stem_kernel"],
                   stem_stride=sup["stem_stride"], head_channels=sup["head_channels"], num_classes=num_classes,
                   in_channels=in_channels, input_size=input_size, act=sup["act"], dropout=float(sup["dropout"]),
                   name=str(sup["name"]), supernet_cfg=sup, candidates_cfg=cand)

    # ------------------------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.positions)

    @property
    def num_stages(self) -> int:
        return len(self.supernet_cfg.get("widths", [])) or (max(p.stage for p in self.positions) + 1)

    @property
    def final_hw(self) -> int:
        """Spatial size entering the head at the deployment input size."""
        last = self.positions[-1] if self.positions else None
        return last.out_hw if last else conv_out_hw(self.input_size, self.stem_kernel, self.stem_stride)

    @property
    def final_channels(self) -> int:
        return self.positions[-1].out_channels if self.positions else self.stem_channels

    @staticmethod
    def canonical(branches: Iterable[Branch | tuple[int, float]]) -> Option:
        """Merge same-kernel branches (expansions added), drop 0-expansion branches, sort by kernel."""
        return canonical(branches)

    def options(self, i: int) -> list[Option]:
        """Every distinct canonical option of position ``i``; ``()`` (skip) first when allowed."""
        if i not in self._options:
            self._options[i] = self._enumerate(self.positions[i])
        return list(self._options[i])

    @staticmethod
    def _enumerate(pos: BlockPosition) -> list[Option]:
        found: set[Option] = set()
        if pos.type == "choice":
            found.update(pos.choices)
            if pos.allow_skip:
                found.add(())
        elif pos.type == "mixconv":
            for combo in itertools.product(*pos.superkernel_choices()):
                found.add(canonical(b for b in combo if b is not None))
        else:
            found.update((Branch(k, float(e)),) for k in pos.kernels for e in pos.expansions)
            if pos.allow_skip:
                found.add(())
        if not pos.allow_skip:
            found.discard(())
        return sorted(found, key=lambda opt: (sum(b.expansion for b in opt), len(opt),
                                              tuple((b.kernel, b.expansion, b.block_type) for b in opt)))

    def num_options(self) -> list[int]:
        """Number of distinct canonical options per position."""
        return [len(self.options(i)) for i in range(len(self.positions))]

    def size(self) -> int:
        """Number of distinct architectures (product of per-position option counts)."""
        total = 1
        for n in self.num_options():
            total *= n
        return total

    def block_spec(self, i: int, option: Sequence[Branch]) -> BlockSpec:
        """The BlockSpec of position ``i`` with ``option`` (canonicalised; () gives an empty skip block)."""
        pos = self.positions[i]
        opt = canonical(option)
        if opt not in set(self.options(i)):
            raise ValueError(f"position {i} ({pos.type}, stage {pos.stage}): {option!r} is not one of its options")
        btype = option_type(opt, pos.type if pos.type != "choice" else "mbconv")  # (the skip's type: unused)
        return BlockSpec(type=btype, branches=untyped(opt), out_channels=pos.out_channels, stride=pos.stride,
                         stage=pos.stage, se_ratio=pos.se_ratio, act=pos.act)

    def option_of_block(self, i: int, block: BlockSpec) -> Option:
        """The option of position ``i`` a BlockSpec is (typed at a choice position); () for no branches."""
        if self.positions[i].type == "choice":
            return canonical(Branch(b.kernel, b.expansion, block.type) for b in block.branches)
        return canonical(block.branches)

    def arch_spec(self, options: Sequence[Sequence[Branch]], name: str | None = None) -> ArchSpec:
        """ArchSpec of one option per position; skipped blocks dropped."""
        if len(options) != len(self.positions):
            raise ValueError(f"expected {len(self.positions)} options (one per position), got {len(options)}")
        blocks = tuple(self.block_spec(i, opt) for i, opt in enumerate(options))
        kept = [i for i, b in enumerate(blocks) if b.branches]
        return ArchSpec(blocks=tuple(blocks[i] for i in kept), stem_channels=self.stem_channels,
                        stem_kernel=self.stem_kernel, stem_stride=self.stem_stride,
                        head_channels=self.head_channels, num_classes=self.num_classes,
                        in_channels=self.in_channels, input_size=self.input_size, act=self.act,
                        dropout=self.dropout, name=name or self.name,
                        meta={"space": self.name, "positions": kept})

    def options_of(self, spec: ArchSpec) -> list[Option]:
        """Map an ArchSpec of this space back to one option per position (skips where blocks are missing)."""
        blocks = list(spec.blocks)
        exact = self._options_at_recorded_positions(spec)
        if exact is not None:
            return exact
        result: list[Option] = []
        j = 0
        for i, pos in enumerate(self.positions):
            b = blocks[j] if j < len(blocks) else None
            option = self.option_of_block(i, b) if b is not None else ()
            if (b is not None and b.stage == pos.stage and b.out_channels == pos.out_channels
                    and b.stride == pos.stride and option in set(self.options(i)) and option):
                # a block is placed at the earliest position of its stage that is still free; a skip
                # is only allowed where a residual exists, so non-residual positions always match first
                result.append(option)
                j += 1
            elif pos.allow_skip:
                result.append(())
            else:
                raise ValueError(f"ArchSpec block {j} does not fit position {i} of the search space")
        if j != len(blocks):
            raise ValueError(f"ArchSpec has {len(blocks) - j} blocks more than the search space can hold")
        return result

    def _options_at_recorded_positions(self, spec: ArchSpec) -> list[Option] | None:
        """Options from the positions ``arch_spec`` recorded in ``spec.meta`` (exact round trip), if valid."""
        positions = (spec.meta or {}).get("positions")
        if not isinstance(positions, list) or len(positions) != len(spec.blocks):
            return None
        result: list[Option] = [()] * len(self.positions)
        for i, block in zip(positions, spec.blocks):
            if not isinstance(i, int) or not 0 <= i < len(self.positions):
                return None
            pos, option = self.positions[i], self.option_of_block(i, block)
            if (block.stage, block.out_channels, block.stride) != (pos.stage, pos.out_channels, pos.stride) \
                    or option not in set(self.options(i)):
                return None
            result[i] = option
        if any(not o and not self.positions[i].allow_skip for i, o in enumerate(result)):
            return None
        return result

    def random_options(self, rng: Any) -> list[Option]:
        """One uniformly random option per position (``rng``: random.Random or numpy Generator)."""
        out = []
        for i in range(len(self.positions)):
            opts = self.options(i)
            out.append(opts[int(rng.integers(len(opts))) if hasattr(rng, "integers") else rng.randrange(len(opts))])
        return out

    def min_options(self) -> list[Option]:
        """Smallest option (by total expansion, then kernel) per position."""
        return [self.options(i)[0] for i in range(len(self.positions))]

    def max_options(self) -> list[Option]:
        """Largest option (by total expansion, then kernel) per position."""
        return [self.options(i)[-1] for i in range(len(self.positions))]

    def to_dict(self) -> dict:
        """JSON-able description (validated configs + deployment shape), used for cache keys and logs."""
        return {"supernet": self.supernet_cfg, "candidates": self.candidates_cfg, "num_classes": self.num_classes,
                "input_size": self.input_size, "in_channels": self.in_channels}
