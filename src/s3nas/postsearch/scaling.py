"""Compound scaling under a latency budget (S3NAS section 4.3.1): ``python -m s3nas.postsearch.scaling arch=... latency=5.2ms``.

One coefficient ``c`` scales width and depth together (keeping the supernet's depth-width linearity), the
input resolution grows more aggressively: ``r = c ** resolution_ratio`` (``resolution_ratio`` > 1; the
ratio of log growths). ``scale_arch(spec, c, r)``:
- widths (stem, every block, head): EfficientNet's ``round_filters(w * c)`` to a multiple of
  ``width_multiple`` (16 for MIDAP's 16 MAC units), never below 90% of ``w * c``;
- depth: every stage gets ``max(n, round(n * c))`` blocks; the extra blocks copy the stage's blocks with
  the most parameters first (counted in the width-scaled network, ties by position), as stride-1 blocks
  at the stage's width, each inserted right after the block it copies;
- resolution: ``round(input_size * r)`` to a multiple of ``resolution_multiple`` (4).
``find_coefficient`` searches ``c`` on the simulator: the simulated latency is monotone-ish in ``c`` but a
step function (rounding), so it brackets the target by doubling the step, bisects to ``tolerance``, scans
``scan_points`` coefficients just above the answer (a small non-monotone bump could hide a feasible
larger network) and returns the largest evaluated ``c`` whose latency meets the target. Every distinct
scaled network is simulated once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from s3nas.arch import codec
from s3nas.arch.codec import encode
from s3nas.arch.params import block_input_channels, block_params
from s3nas.arch.spec import ArchSpec, BlockSpec
from s3nas.errors import ConfigError, InfeasibleTargetError
from s3nas.latency.backend import make_backend
from s3nas.outputs import ScalingSummary, write_summary
from s3nas.postsearch.stepio import load_arch, measure
from s3nas.runtime.entry import run


# --------------------------------------------------------------------------------------------- transform
def round_filters(channels: float, divisor: int) -> int:
    """EfficientNet's rounding: nearest multiple of ``divisor`` (at least ``divisor``), never below 90%."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return int(rounded)


def round_to_multiple(value: float, multiple: int) -> int:
    """``value`` rounded half up to a multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, int(math.floor(value / multiple + 0.5)) * multiple)


def stage_depths(spec: ArchSpec) -> dict[int, int]:
    """Blocks per stage, in stage order."""
    depths: dict[int, int] = {}
    for block in spec.blocks:
        depths[block.stage] = depths.get(block.stage, 0) + 1
    return depths


def scaled_depth(depth: int, coefficient: float) -> int:
    """round(depth * coefficient), half up, never below the original depth."""
    return max(depth, int(math.floor(depth * coefficient + 0.5)))


def copy_order(blocks: list[BlockSpec], inputs: list[int]) -> list[int]:
    """Positions (within a stage) ordered by parameter count, largest first; ties keep the stage order."""
    params = [block_params(b, c) for b, c in zip(blocks, inputs)]
    return sorted(range(len(blocks)), key=lambda i: (-params[i], i))


def scale_arch(spec: ArchSpec, coefficient: float, resolution_coefficient: float, *, width_multiple: int = 16,
               resolution_multiple: int = 4, scale_stem_head: bool = True) -> ArchSpec:
    """The compound-scaled ArchSpec (see the module docstring); ``meta['scaling']`` records how."""
    if not coefficient >= 1.0 or not resolution_coefficient >= 1.0:
        raise ConfigError(f"scaling: coefficients must be >= 1 (got width/depth {coefficient}, "
                          f"resolution {resolution_coefficient}); scaling only grows a network")
    width = (lambda w: round_filters(w * coefficient, width_multiple))
    widened = [replace(b, out_channels=width(b.out_channels)) for b in spec.blocks]
    stem = width(spec.stem_channels) if scale_stem_head else spec.stem_channels
    head = width(spec.head_channels) if scale_stem_head else spec.head_channels
    inputs = block_input_channels(replace(spec, blocks=tuple(widened), stem_channels=stem))

    blocks: list[BlockSpec] = []
    copies: dict[int, list[int]] = {}
    start = 0
    for stage, depth in stage_depths(spec).items():
        stage_blocks = widened[start:start + depth]
        stage_inputs = inputs[start:start + depth]
        extra = scaled_depth(depth, coefficient) - depth
        order = copy_order(stage_blocks, stage_inputs)
        count = [0] * depth
        for k in range(extra):  # cycle through the ranking when a stage more than doubles
            count[order[k % depth]] += 1
        copies[stage] = [start + order[k % depth] for k in range(extra)]
        for block, n in zip(stage_blocks, count):
            blocks.append(block)
            blocks.extend(replace(block, stride=1) for _ in range(n))  # in == out: a residual block
        start += depth

    size = round_to_multiple(spec.input_size * resolution_coefficient, resolution_multiple)
    meta = dict(spec.meta)
    meta["scaling"] = {"width_depth_coefficient": coefficient, "resolution_coefficient": resolution_coefficient,
                       "width_multiple": width_multiple, "resolution_multiple": resolution_multiple,
                       "from_input_size": spec.input_size, "from_stage_depths": list(stage_depths(spec).values()),
                       "copied_blocks": {str(k): v for k, v in copies.items()}}
    return replace(spec, blocks=tuple(blocks), stem_channels=stem, head_channels=head, input_size=size, meta=meta)


# ---------------------------------------------------------------------------------- coefficient search
@dataclass
class Evaluation:
    """One simulated (coefficient, input size) point."""

    coefficient: float
    resolution_coefficient: float
    latency_ms: float
    input_size: int
    phase: str = "tied"  # "tied" (r = c ** resolution_ratio) or "refine" (input size below the tie)
    note: str = ""


@dataclass
class CoefficientSearch:
    """Result of ``find_coefficient``: the chosen point, its network and every evaluation."""

    coefficient: float
    resolution_coefficient: float  # input size of the result / input size of the source
    spec: ArchSpec
    latency_ms: float
    target_ms: float
    tied_latency_ms: float  # best point of the tied search alone
    refined: bool = False
    evaluations: list[Evaluation] = field(default_factory=list)
    simulations: int = 0
    reached_max: bool = False

    @property
    def shortfall(self) -> float:
        """How far below the target the result lands, as a fraction of the target."""
        return (self.target_ms - self.latency_ms) / self.target_ms


def find_coefficient(spec: ArchSpec, target_ms: float, latency_of: Callable[[ArchSpec], float], *,
                     resolution_ratio: float = 2.0, width_multiple: int = 16, resolution_multiple: int = 4,
                     scale_stem_head: bool = True, max_coefficient: float = 4.0, initial_step: float = 0.25,
                     tolerance: float = 1e-4, scan_points: int = 12, scan_window: float = 0.05,
                     max_shortfall: float = 0.05, refine_window: float = 0.05, refine_points: int = 24,
                     min_resolution_ratio: float = 1.0) -> CoefficientSearch:
    """The largest scaled network whose simulated latency (``latency_of``) is <= ``target_ms``.

    Tied search: ``r = c ** resolution_ratio``; bracket, bisect, scan just above; the largest feasible
    ``c`` wins. Rounding makes latency a step function with steps of 5-15% on MIDAP (a 16-channel width
    step, a 4-pixel input step that adds a row to the late feature maps), so the tied answer can land far
    below the target. Only then (shortfall > ``max_shortfall``) a refinement keeps width and depth tied but
    lets the input size fall below the tie: for every distinct width/depth configuration with ``c`` up to
    ``refine_window`` (relative) above the tied answer, every input size (multiple of
    ``resolution_multiple``) from ``S0 * c ** min_resolution_ratio`` up to the tie's is simulated, and the
    feasible network with the highest latency is taken when it beats the tied one. InfeasibleTargetError
    when even c = 1 (widths rounded to the multiple) misses the target.
    """
    cache: dict[str, float] = {}
    evaluations: list[Evaluation] = []
    specs: dict[tuple[float, int], ArchSpec] = {}
    base_size = spec.input_size

    def evaluate(c: float, r: Optional[float] = None, phase: str = "tied") -> float:
        r = c ** resolution_ratio if r is None else r
        scaled = scale_arch(spec, c, r, width_multiple=width_multiple, resolution_multiple=resolution_multiple,
                            scale_stem_head=scale_stem_head)
        key = encode(scaled)
        note = ""
        if key not in cache:
            try:
                cache[key] = float(latency_of(scaled))
            except Exception as error:  # noqa: BLE001 - past the simulator's limits: too big, so infeasible
                cache[key] = math.inf
                note = f"not simulated: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        specs[(c, scaled.input_size)] = scaled
        evaluations.append(Evaluation(c, scaled.input_size / base_size, cache[key], scaled.input_size, phase, note))
        return cache[key]

    def feasible(c: float) -> bool:
        return evaluate(c) <= target_ms

    if not feasible(1.0):
        raise InfeasibleTargetError(
            f"latency: target {target_ms:g} ms is below the latency of the network at coefficient 1 "
            f"({evaluations[0].latency_ms:.4f} ms with widths rounded to multiples of {width_multiple}); "
            f"scaling only grows a network: pass a larger latency")
    lo, hi, step = 1.0, None, initial_step
    while hi is None:  # bracket: grow the step until a coefficient misses the target
        c = min(max_coefficient, lo + step)
        if feasible(c):
            lo = c
            if c >= max_coefficient:
                break
            step *= 2
        else:
            hi = c
    if hi is not None:
        while hi - lo > tolerance:
            mid = 0.5 * (lo + hi)
            if feasible(mid):
                lo = mid
            else:
                hi = mid
        for i in range(1, scan_points + 1):  # look just above: rounding can make latency non-monotone
            c = lo * (1.0 + scan_window * i / scan_points)
            if c <= max_coefficient:
                evaluate(c)

    def best_of(points: list[Evaluation]) -> Evaluation:
        # the largest network meeting the target: highest latency, then the larger coefficient
        return max((e for e in points if e.latency_ms <= target_ms), key=lambda e: (e.latency_ms, e.coefficient))

    tied = max((e for e in evaluations if e.latency_ms <= target_ms), key=lambda e: e.coefficient)
    best = tied
    if (target_ms - tied.latency_ms) / target_ms > max_shortfall and hi is not None and refine_points > 0:
        configs: dict[str, float] = {}  # width/depth configuration -> its smallest coefficient on the grid
        for i in range(refine_points + 1):
            c = min(max_coefficient, tied.coefficient * (1.0 + refine_window * i / refine_points))
            key = encode(scale_arch(spec, c, 1.0, width_multiple=width_multiple, resolution_multiple=1,
                                    scale_stem_head=scale_stem_head))
            configs.setdefault(key, c)
        for c in configs.values():
            # rounded up, so the input size grows at least c ** min_resolution_ratio
            low = int(math.ceil(base_size * c ** min_resolution_ratio / resolution_multiple - 1e-9)) * resolution_multiple
            high = round_to_multiple(base_size * c ** resolution_ratio, resolution_multiple)
            for size in range(low, high + 1, resolution_multiple):
                evaluate(c, size / base_size, phase="refine")
        candidate = best_of([e for e in evaluations if e.phase == "refine"] + [tied])
        best = candidate
    return CoefficientSearch(coefficient=best.coefficient, resolution_coefficient=best.resolution_coefficient,
                             spec=specs[(best.coefficient, best.input_size)], latency_ms=best.latency_ms,
                             target_ms=target_ms, tied_latency_ms=tied.latency_ms, refined=best is not tied,
                             evaluations=evaluations, simulations=len(cache), reached_max=hi is None)


# ------------------------------------------------------------------------------------------- command
@dataclass
class ScalingInputs:
    """What ``check`` resolved."""

    spec: ArchSpec
    arch_path: Path
    backend: Any
    run_dir: Path
    before: Any  # stepio.Figures of the input network
    result: CoefficientSearch


def _positive(cfg: Any, key: str, *, at_least: float = 0.0, integer: bool = False) -> float:
    value = cfg.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > at_least
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key}: must be {kind} > {at_least:g}, got {value!r}")
    return int(value) if integer else float(value)


def check(cfg: Any) -> ScalingInputs:
    """Every user-caused error before anything is written (``python -m s3nas.postsearch.scaling``'s ``check=``)."""
    for key, at_least, integer in (("width_multiple", 0, True), ("resolution_multiple", 0, True),
                                   ("max_coefficient", 1.0, False), ("tolerance", 0.0, False),
                                   ("scan_window", 0.0, False)):
        _positive(cfg, key, at_least=at_least, integer=integer)
    ratio = cfg.get("resolution_ratio")
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not math.isfinite(ratio) or ratio < 0:
        raise ConfigError(f"resolution_ratio: must be a number >= 0 (1 = resolution grows like width/depth, "
                          f"2 = twice as fast in log scale), got {ratio!r}")
    if not isinstance(cfg.get("scan_points"), int) or cfg.scan_points < 0:
        raise ConfigError(f"scan_points: must be an integer >= 0, got {cfg.get('scan_points')!r}")
    spec, path = load_arch(cfg.get("arch"))
    backend = make_backend(cfg.hardware)
    target_ms = float(cfg.latency_ms)
    before = measure(spec, backend)
    if target_ms < before.latency_ms:
        raise InfeasibleTargetError(f"latency: target {target_ms:g} ms is below the unscaled network's simulated "
                                    f"{before.latency_ms:.4f} ms ({path}); scaling only grows a network: pass "
                                    f"latency >= {before.latency_ms:.4f}ms")
    # the search only simulates (nothing is written): an unreachable target is reported before the run dir
    result = find_coefficient(
        spec, target_ms, backend.latency_ms, resolution_ratio=float(cfg.resolution_ratio),
        width_multiple=int(cfg.width_multiple), resolution_multiple=int(cfg.resolution_multiple),
        scale_stem_head=bool(cfg.scale_stem_head), max_coefficient=float(cfg.max_coefficient),
        tolerance=float(cfg.tolerance), scan_points=int(cfg.scan_points), scan_window=float(cfg.scan_window),
        max_shortfall=float(cfg.max_shortfall), refine_window=float(cfg.refine.window),
        refine_points=int(cfg.refine.points) if cfg.refine.enabled else 0,
        min_resolution_ratio=float(cfg.refine.min_resolution_ratio))
    return ScalingInputs(spec=spec, arch_path=path, backend=backend, run_dir=Path(str(cfg.paths.output_dir)),
                         before=before, result=result)


def run_scaling(cfg: Any, checked: Optional[ScalingInputs] = None) -> dict:
    """Search the coefficient, write arch.json and summary.json; returns the summary."""
    checked = checked or check(cfg)
    backend, before, result = checked.backend, checked.before, checked.result
    target_ms = float(cfg.latency_ms)
    scaled = result.spec
    meta = dict(scaled.meta)
    meta["scaling"] = {**meta["scaling"], "target_ms": target_ms, "latency_ms": result.latency_ms,
                       "hardware": backend.name, "source": str(checked.arch_path)}
    scaled = replace(scaled, meta=meta)
    after = measure(scaled, backend)
    within = result.shortfall <= float(cfg.max_shortfall)
    summary = ScalingSummary(
        target_ms=target_ms,
        latency_ms=after.latency_ms,
        latency_source=after.latency_source,
        latency_noise_pct=after.latency_noise_pct,
        meets_target=after.latency_ms <= target_ms,
        shortfall=result.shortfall,
        within_shortfall=within,
        max_shortfall=float(cfg.max_shortfall),
        width_depth_coefficient=result.coefficient,
        resolution_coefficient=result.resolution_coefficient,
        resolution_ratio=float(cfg.resolution_ratio),
        resolution_ratio_effective=_log_ratio(result.resolution_coefficient, result.coefficient),
        refined=result.refined,
        tied_latency_ms=result.tied_latency_ms,
        input_size=scaled.input_size,
        params=after.params,
        macs=after.macs,
        stage_depths=list(stage_depths(scaled).values()),
        stage_widths=_stage_widths(scaled),
        before=before.as_dict(),
        hardware=backend.name,
        simulations=result.simulations,
        reached_max_coefficient=result.reached_max,
        arch=codec.encode(scaled),
        arch_origin=str(checked.arch_path),
        evaluations=[e.__dict__ for e in sorted(result.evaluations, key=lambda e: e.coefficient)],
    )
    run_dir = checked.run_dir
    codec.save_json(scaled, run_dir / "arch.json")
    write_summary(run_dir, summary)
    summary = summary.to_dict()
    _print(summary, run_dir)
    return summary


def _log_ratio(resolution_coefficient: float, coefficient: float) -> Optional[float]:
    """ln(r) / ln(c): how much more aggressively the resolution grew (None at c = 1)."""
    return math.log(resolution_coefficient) / math.log(coefficient) if coefficient > 1.0 else None


def _stage_widths(spec: ArchSpec) -> list[int]:
    widths: dict[int, int] = {}
    for block in spec.blocks:
        widths[block.stage] = block.out_channels
    return list(widths.values())


def _print(summary: dict, run_dir: Path) -> None:
    b = summary["before"]
    print(f"scaled x{summary['width_depth_coefficient']:.4f} width/depth, x{summary['resolution_coefficient']:.4f} "
          f"resolution ({summary['simulations']} networks simulated on {summary['hardware']})")
    print(f"{'':10s} {'latency ms':>11s} {'input':>6s} {'params':>12s} {'MACs':>15s}  stage depths / widths")
    print(f"{'before':10s} {b['latency_ms']:11.4f} {b['input_size']:6d} {b['params']:12,d} {b['macs']:15,d}")
    print(f"{'after':10s} {summary['latency_ms']:11.4f} {summary['input_size']:6d} {summary['params']:12,d} "
          f"{summary['macs']:15,d}  {summary['stage_depths']} / {summary['stage_widths']}")
    print(f"target {summary['target_ms']:g} ms: {'met' if summary['meets_target'] else 'MISSED'}, "
          f"{100 * summary['shortfall']:.2f}% below (simulated)")
    if summary["refined"]:
        print(f"refined: the tied search (r = c ** {summary['resolution_ratio']:g}) reached only "
              f"{summary['tied_latency_ms']:.4f} ms; a smaller input size with a larger width/depth coefficient "
              f"lands closer (effective ratio ln r / ln c = {summary['resolution_ratio_effective']:.2f})")
    if not summary["within_shortfall"]:
        print(f"warning: the largest feasible scaled network lands {100 * summary['shortfall']:.1f}% below the "
              f"target (more than max_shortfall={summary['max_shortfall']:g}): rounding steps are coarse here; "
              f"try another width_multiple/resolution_ratio")
    print(f"run dir: {run_dir}")


def main(cfg: Any, checked: Optional[ScalingInputs] = None) -> float:
    """Hydra task: returns the scaled network's simulated latency (ms)."""
    return run_scaling(cfg, checked)["latency_ms"]


def cli() -> None:
    """Console script ``s3nas-scale`` (also ``python -m s3nas.postsearch.scaling``)."""
    run(main, "scaling", check=check)


if __name__ == "__main__":
    cli()
