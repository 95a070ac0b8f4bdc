"""SE and h-swish post-processing (S3NAS section 4.3.2): ``python -m s3nas.postsearch.postprocess arch=... se=all act=hswish``.

ArchSpec -> ArchSpec transforms and their command. ``with_se(spec, blocks, ratio)`` puts a squeeze-and-
excitation block (GAP -> 1x1 reduce, ReLU -> 1x1 expand, sigmoid -> channel multiply; reduced channels =
ratio x block input channels, 0.25 by default) on the chosen blocks, ``without_se(spec, blocks)`` removes
it, ``with_activation(spec, act, blocks)`` sets the blocks' activation (all blocks also set the stem/head's).
The simulator costs SE as MIDAP runs it (the squeeze in the reduction stage of the producing layer's
pipeline, two FC-sized 1x1 convs, the channel multiply as an element-wise pass over the feature map) and
activations, h-swish included, inside the pipeline at no extra cycle; so SE adds latency and h-swish
leaves it unchanged on midap. The command writes arch.json and summary.json (simulated latency, params
and MACs before and after).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Optional

from s3nas.arch import codec
from s3nas.arch.spec import ACTIVATIONS, ArchSpec
from s3nas.errors import ConfigError
from s3nas.latency.backend import make_backend
from s3nas.outputs import PostprocessSummary, write_summary
from s3nas.postsearch.stepio import change_fields, load_arch, measure, parse_block_list
from s3nas.runtime.entry import run

SE_CHOICES = ("all", "none", "keep")
ACT_CHOICES = ("keep",) + ACTIVATIONS


def with_se(spec: ArchSpec, blocks: Iterable[int], ratio: float = 0.25) -> ArchSpec:
    """``spec`` with SE (``ratio``) on ``blocks``; the other blocks are unchanged."""
    chosen = set(blocks)
    return replace(spec, blocks=tuple(replace(b, se_ratio=float(ratio)) if i in chosen else b
                                      for i, b in enumerate(spec.blocks)))


def without_se(spec: ArchSpec, blocks: Iterable[int]) -> ArchSpec:
    """``spec`` with the SE of ``blocks`` removed (se_ratio 0); the other blocks are unchanged."""
    return with_se(spec, blocks, 0.0)


def with_activation(spec: ArchSpec, act: str, blocks: Optional[Iterable[int]] = None) -> ArchSpec:
    """``spec`` with activation ``act`` in ``blocks`` (None: every block and the stem/head)."""
    if act not in ACTIVATIONS:
        raise ConfigError(f"act: {act!r} is not an activation; use one of {', '.join(ACT_CHOICES)}")
    chosen = set(range(len(spec.blocks)) if blocks is None else blocks)
    new_blocks = tuple(replace(b, act=act) if i in chosen else b for i, b in enumerate(spec.blocks))
    return replace(spec, blocks=new_blocks, act=act if blocks is None else spec.act)


def se_blocks(spec: ArchSpec) -> list[int]:
    """Indices of the blocks with SE."""
    return [i for i, b in enumerate(spec.blocks) if b.se_ratio > 0]


def select_blocks(value: Any, spec: ArchSpec, key: str) -> Optional[list[int]]:
    """'all' -> None (every block), a list/'0,3'/'2-6' -> the indices; ConfigError naming ``key``."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    return parse_block_list(value, len(spec.blocks), key)


def apply(spec: ArchSpec, se: Any = "keep", act: str = "keep", *, se_ratio: float = 0.25,
          act_blocks: Any = "all") -> ArchSpec:
    """The command's transform: ``se`` all|none|keep|<blocks>, ``act`` keep|<activation> on ``act_blocks``."""
    n = len(spec.blocks)
    se_text = str(se).strip().lower() if isinstance(se, str) else None
    if se_text == "all":
        spec = with_se(spec, range(n), se_ratio)
    elif se_text == "none":
        spec = without_se(spec, range(n))
    elif se_text != "keep":
        if se_text is not None and not any(ch.isdigit() for ch in se_text):
            raise ConfigError(f"se: {se!r} is not a choice; use {', '.join(SE_CHOICES)} or a list of block indices "
                              f"like [0,3,5] (0..{n - 1})")
        spec = with_se(spec, parse_block_list(se, n, "se"), se_ratio)
    act_text = str(act).strip().lower()
    if act_text not in ACT_CHOICES:
        raise ConfigError(f"act: {act!r} is not a choice; use {', '.join(ACT_CHOICES)}")
    if act_text != "keep":
        spec = with_activation(spec, act_text, select_blocks(act_blocks, spec, "act_blocks"))
    return spec


# ------------------------------------------------------------------------------------------- command
@dataclass
class PostprocessInputs:
    """What ``check`` resolved."""

    spec: ArchSpec
    new_spec: ArchSpec
    arch_path: Path
    backend: Any
    run_dir: Path


def check(cfg: Any) -> PostprocessInputs:
    """Every user-caused error before anything is written (``python -m s3nas.postsearch.postprocess``'s ``check=``)."""
    ratio = cfg.get("se_ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"se_ratio: must be a number in (0, 1] (the paper's 0.25), got {ratio!r}")
    spec, path = load_arch(cfg.get("arch"))
    new_spec = apply(spec, cfg.get("se"), cfg.get("act"), se_ratio=float(ratio), act_blocks=cfg.get("act_blocks"))
    backend = make_backend(cfg.hardware)
    return PostprocessInputs(spec=spec, new_spec=new_spec, arch_path=path, backend=backend,
                             run_dir=Path(str(cfg.paths.output_dir)))


def run_postprocess(cfg: Any, checked: Optional[PostprocessInputs] = None) -> dict:
    """Apply the transform, write arch.json and summary.json; returns the summary."""
    checked = checked or check(cfg)
    before = measure(checked.spec, checked.backend)
    meta = dict(checked.new_spec.meta)
    meta.setdefault("postprocess", []).append(
        {"se": str(cfg.se), "act": str(cfg.act), "se_ratio": float(cfg.se_ratio), "act_blocks": str(cfg.act_blocks),
         "source": str(checked.arch_path)})
    new_spec = replace(checked.new_spec, meta=meta)
    after = measure(new_spec, checked.backend)
    changed = [i for i, (a, b) in enumerate(zip(checked.spec.blocks, new_spec.blocks)) if a != b]
    summary = PostprocessSummary(
        **change_fields(before, after),
        input_size=new_spec.input_size,
        se_blocks=se_blocks(new_spec),
        se_blocks_before=se_blocks(checked.spec),
        se_ratio=float(cfg.se_ratio),
        activations=sorted({new_spec.act, *(b.act for b in new_spec.blocks)}),
        changed_blocks=changed,
        hardware=checked.backend.name,
        arch=codec.encode(new_spec),
        arch_origin=str(checked.arch_path),
    )
    codec.save_json(new_spec, checked.run_dir / "arch.json")
    write_summary(checked.run_dir, summary)
    summary = summary.to_dict()
    print(f"{'':8s} {'latency ms':>11s} {'params':>12s} {'MACs':>15s}  SE blocks")
    print(f"{'before':8s} {before.latency_ms:11.4f} {before.params:12,d} {before.macs:15,d}  "
          f"{len(summary['se_blocks_before'])}/{len(new_spec.blocks)}")
    print(f"{'after':8s} {after.latency_ms:11.4f} {after.params:12,d} {after.macs:15,d}  "
          f"{len(summary['se_blocks'])}/{len(new_spec.blocks)}  (activations: {', '.join(summary['activations'])})")
    print(f"latency {summary['latency_change_ms']:+.4f} ms ({summary['latency_source'].split(' (')[0]} on {summary['hardware']}); "
          f"run dir: {checked.run_dir}")
    return summary


def main(cfg: Any, checked: Optional[PostprocessInputs] = None) -> float:
    """Hydra task: returns the new network's latency (ms) on the hardware's backend."""
    return run_postprocess(cfg, checked)["latency_ms"]


def cli() -> None:
    """Console script ``s3nas-postprocess`` (also ``python -m s3nas.postsearch.postprocess``)."""
    run(main, "postprocess", check=check)


if __name__ == "__main__":
    cli()
