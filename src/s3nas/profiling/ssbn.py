"""Search-space base networks (SSBNs, BBSSP paper): one candidate block repeated through the supernet's stages.

A :class:`Candidate` is one block choice: a block type, its kernel(s) and its expansion. MBConv and fused
candidates have one kernel; a MixConv candidate names the max kernels of its superkernels (all on, each at its
max kernel, each with the same expansion), i.e. the largest block of the MixConv space
``candidates.mixconv = {max_kernels, expansions: [0, e]}``. Candidates come from ``conf/candidates`` entries
(every choice they allow) and from a generated grid. ``ssbn_spec`` builds the SSBN of a candidate as an
ArchSpec: the supernet's stem, stages (widths, strides, depths; ``depth_scale`` shrinks the depths for a
training proxy) and head, with the candidate block at every position. ``space_entry`` turns selected
candidates back into a ``candidates`` config holding exactly them (and the ``supernet.block_type`` it needs:
one type, or ``choice`` among the listed candidates of several types).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from s3nas.arch.space import SearchSpace, canonical
from s3nas.arch.spec import BLOCK_TYPES, ArchSpec, BlockSpec, Branch
from s3nas.config.supernet_schema import CandidatesConfig, check_candidates, check_kernel, check_supernet
from s3nas.errors import ConfigError

__all__ = ["Candidate", "candidates_from_entry", "candidates_from_grid", "collect_candidates", "listed",
           "load_candidates_entry", "space_entry", "ssbn_spec"]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Candidate:
    """One candidate block: ``type`` with ``kernels`` (one kernel, or a MixConv's superkernel max kernels)."""

    type: str
    kernels: tuple[int, ...]
    expansion: float
    sources: tuple[str, ...] = ()  # conf/candidates entries and/or "grid" it came from

    @property
    def key(self) -> tuple:
        return (self.type, self.kernels, float(self.expansion))

    @property
    def name(self) -> str:
        """e.g. ``mbconv_k3_e6``, ``fused_k5_e2``, ``mixconv_k3.5.7_e2``."""
        return f"{self.type}_k{'.'.join(str(k) for k in self.kernels)}_e{_num(self.expansion)}"

    @property
    def branches(self) -> tuple[Branch, ...]:
        """The block's branches (MixConv superkernels with the same kernel merged, paper Fig. 8)."""
        return canonical(Branch(k, float(self.expansion)) for k in self.kernels)

    @property
    def option(self) -> tuple[Branch, ...]:
        """Its option at a choice position (branches typed)."""
        return canonical(Branch(k, float(self.expansion), self.type) for k in self.kernels)

    @property
    def total_expansion(self) -> float:
        return float(sum(b.expansion for b in self.branches))


def candidates_from_entry(entry: Any, block_types: Sequence[str], source: str) -> list[Candidate]:
    """Every choice a candidates config allows, per block type in ``block_types`` (skip excluded)."""
    cand = check_candidates(entry)
    out: list[Candidate] = []
    for btype in block_types:
        if btype == "mixconv":
            mix = cand["mixconv"]
            kernels = tuple(mix["max_kernels"])
            out += [Candidate("mixconv", kernels, e, (source,)) for e in mix["expansions"] if e > 0]
        else:
            out += [Candidate(btype, (k,), e, (source,)) for k in cand[btype]["kernels"]
                    for e in cand[btype]["expansions"]]
    # an entry's listed options (a `choice` space, e.g. one BBSSP wrote) of these block types
    out += [Candidate(o["type"], tuple(o["kernels"]), o["expansion"], (source,))
            for o in cand.get("options", []) if o["type"] in block_types]
    return out


def candidates_from_grid(grid: Any, block_types: Sequence[str]) -> list[Candidate]:
    """The generated grid (``profile.grid``): kernels x expansions per block type; ConfigError on bad values."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(grid):
            grid = OmegaConf.to_container(grid, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    out: list[Candidate] = []
    for btype in block_types:
        sub = (grid or {}).get(btype) or {}
        expansions = [float(e) for e in (sub.get("expansions") or [])]
        for e in expansions:
            if not e > 0:
                raise ConfigError(f"profile.grid.{btype}.expansions: expansion ratios must be > 0, got {e!r}")
        if btype == "mixconv":
            for kernels in sub.get("max_kernels") or []:
                if not isinstance(kernels, (list, tuple)) or not kernels:
                    raise ConfigError("profile.grid.mixconv.max_kernels: expected a list of superkernel lists, "
                                      f"e.g. [[3, 5], [3, 5, 7]], got {kernels!r}")
                ks = tuple(check_kernel("profile.grid.mixconv.max_kernels", k) for k in kernels)
                if min(ks) < 3:
                    raise ConfigError("profile.grid.mixconv.max_kernels: kernels must be >= 3 (min_kernel), "
                                      f"got {list(kernels)!r}")
                out += [Candidate("mixconv", tuple(sorted(ks)), e, ("grid",)) for e in expansions]
        else:
            kernels = [check_kernel(f"profile.grid.{btype}.kernels", k) for k in (sub.get("kernels") or [])]
            out += [Candidate(btype, (k,), e, ("grid",)) for k in kernels for e in expansions]
    return out


def collect_candidates(groups: Iterable[Iterable[Candidate]]) -> list[Candidate]:
    """Deduplicated candidates (sources merged), sorted by type, then total expansion, then kernels."""
    merged: dict[tuple, Candidate] = {}
    for group in groups:
        for c in group:
            if c.key in merged:
                old = merged[c.key]
                merged[c.key] = replace(old, sources=tuple(dict.fromkeys(old.sources + c.sources)))
            else:
                merged[c.key] = c
    order = {t: i for i, t in enumerate(BLOCK_TYPES)}
    return sorted(merged.values(), key=lambda c: (order[c.type], c.total_expansion, c.kernels, c.expansion))


def load_candidates_entry(name: str, config_dirs: Sequence[Path], key: str = "profile.candidates") -> dict:
    """The `candidates` node of ``<dir>/candidates/<name>.yaml`` (first dir that has it); ConfigError if none."""
    for conf_dir in config_dirs:
        path = Path(conf_dir) / "candidates" / f"{name}.yaml"
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"{key}: {path} is not valid YAML ({str(error).splitlines()[0]})") \
                    from None
            if "candidates" in data and isinstance(data["candidates"], dict):  # a written (_global_) entry
                data = data["candidates"]
            return {k: v for k, v in data.items() if k != "defaults"}
    known = sorted({p.stem for d in config_dirs for p in (Path(d) / "candidates").glob("*.yaml")})
    raise ConfigError(f"{key}: no candidates entry {name!r}; use one of {', '.join(known)}")


def ssbn_spec(candidate: Candidate, supernet_cfg: Any, *, num_classes: int = 1000, input_size: int = 224,
              in_channels: int = 3, depth_scale: float = 1.0) -> ArchSpec:
    """The SSBN of ``candidate``: ``supernet_cfg``'s stem/stages/head with this block at every position."""
    sup = check_supernet(supernet_cfg)
    sup["block_type"] = candidate.type
    if depth_scale != 1.0:
        sup["depths"] = [max(1, round(d * depth_scale)) for d in sup["depths"]]
    sup["total_blocks"] = None
    space = SearchSpace.from_config(sup, CandidatesConfig(), num_classes=num_classes, input_size=input_size,
                                    in_channels=in_channels)
    blocks = tuple(BlockSpec(type=candidate.type, branches=candidate.branches, out_channels=p.out_channels,
                             stride=p.stride, stage=p.stage, se_ratio=p.se_ratio, act=p.act)
                   for p in space.positions)
    return ArchSpec(blocks=blocks, stem_channels=space.stem_channels, stem_kernel=space.stem_kernel,
                    stem_stride=space.stem_stride, head_channels=space.head_channels, num_classes=num_classes,
                    in_channels=in_channels, input_size=input_size, act=space.act, dropout=space.dropout,
                    name=f"ssbn_{candidate.name}",
                    meta={"ssbn": candidate.name, "depths": sup["depths"], "depth_scale": float(depth_scale)})


def listed(candidate: Candidate) -> dict:
    """The ``candidates.options`` item of a candidate."""
    if candidate.type == "mixconv":
        return {"type": "mixconv", "kernels": list(candidate.kernels), "expansion": float(candidate.expansion)}
    return {"type": candidate.type, "kernel": int(candidate.kernels[0]), "expansion": float(candidate.expansion)}


def space_entry(selected: Sequence[Candidate], *, allow_skip: bool, name: str) -> tuple[str, dict, list[Candidate]]:
    """(supernet block_type, candidates config, candidates it covers) of the space of exactly ``selected``.

    Every selected candidate is in the space, and no other block. When they are MBConv (or fused) blocks
    whose kernels x expansions are exactly the selected ones, the space is that one-type space (the
    single-path supernet shares one weight among them). Otherwise -- several block types, MixConv, or a
    selection that is not a full cross product -- each block chooses among the listed candidates
    (``supernet.block_type: choice``, ``candidates.options``). Skip is an option where a residual exists
    when ``allow_skip``."""
    if not selected:
        raise ValueError("no candidate selected")
    types = {c.type for c in selected}
    btype = next(iter(types))
    kernels = sorted({c.kernels[0] for c in selected})
    expansions = sorted({float(c.expansion) for c in selected})
    if len(types) == 1 and btype != "mixconv" and len(kernels) * len(expansions) == len(selected):
        entry = {k: v for k, v in check_candidates(CandidatesConfig()).items() if k != "name"}
        entry[btype] = {"kernels": kernels, "expansions": expansions}
        entry = {"name": name, **entry, "allow_skip": bool(allow_skip)}
    else:
        btype = "choice"
        entry = {"name": name, "options": [listed(c) for c in selected], "allow_skip": bool(allow_skip)}
    check_candidates(entry)
    return btype, entry, list(selected)
