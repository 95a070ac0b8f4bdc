"""Few-shot device latency: a new device's latency model from a handful of end-to-end measurements, with error bars.

The full measured table times every (position, option) block standalone (437 pieces at the default space) plus 60
networks: minutes on this CPU, hours to days on a phone over adb or a remote NPU farm. The few-shot model needs no
per-block measurement. Its prior costs no device time: every network is described by analytic features of its
simulator graph (``s3nas.arch.graph``) - the multiply-accumulates of pointwise (1x1) convolutions and the
classifier, of depthwise convolutions, of dense kxk convolutions (stem, fused blocks), and the activation
elements every layer reads and writes (memory traffic), and the number of layers (per-operator dispatch) - and its
latency is modelled as

    latency ~= c + a_pw * MAC_pw + a_dw * MAC_dw + a_dense * MAC_dense + a_mem * elements + a_op * layers,

the roofline of a CPU or an accelerator with one throughput per operator class, a per-operator and a per-network
overhead. The
coefficients are fitted to ``budget.networks`` end-to-end measurements by ridge regression on relative errors
(coefficients >= 0, the overhead free). The features of a network are sums over its layers, so the model is one
number per (position, option) plus a fixed part: a ``LatencyTable`` the search uses unchanged.

**Which networks to measure** (``selection``): ``active`` chooses them one at a time to reduce the model's
uncertainty - greedy D-optimal design: the candidate (from a pool of sampled architectures spread from the
smallest to the largest) with the largest predictive variance under the networks chosen so far; the variance of
a linear model does not depend on the measurements, so the whole set is chosen before the device is touched.
``random`` takes sampled architectures in order (the same pool's stratified samples).

**Error bars**: relative residuals ``(measured - predicted) / predicted`` are modelled as normal with a variance
pooled from a prior and the fit: ``s^2 = (nu0 s0^2 + RSS) / (nu0 + n - p_eff)`` (``s0`` = ``prior_error_pct``,
``nu0`` = ``prior_weight`` pseudo-measurements, ``p_eff`` the fit's effective number of parameters; residuals more
than 3 robust standard deviations (1.4826 x their median absolute value) out - a measurement disturbed by the
machine's load - are left out of ``RSS`` and ``n``); the 90%
interval of a network is ``predicted * (1 +- z_0.95 * s * sqrt(1 + leverage))`` with its leverage under the fit
(wider for networks unlike the measured ones). The prior (2%, weight 6) is the residual this model leaves on the
CPU runtimes measured for ``benchmarks/latency_fewshot.py``; with more measurements the fit's own residuals take
over. ``docs/guide/device.md`` shows the curve and the empirical coverage.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import lsq_linear
from scipy.special import ndtri

from s3nas.arch.graph import block_to_graph, emit_head, emit_stem
from s3nas.arch.space import Option, SearchSpace
from s3nas.latency.lut import LatencyTable
from s3nas.latency.measured import sample_architectures
from simulator.graph import GraphBuilder

__all__ = ["FEATURES", "FEATURE_SETS", "SELECTIONS", "FewShotModel", "SpaceFeatures", "graph_features", "select_networks",
           "fit_fewshot", "z_value", "Z_90"]

FEATURES = ("pointwise_macs", "depthwise_macs", "dense_macs", "activation_elements", "layers")
#: ``budget.features``: ``base`` (FEATURES) or ``depthwise_by_kernel`` (the depthwise MACs of 5x5 and of >= 7x7
#: kernels in columns of their own: runtimes whose depthwise kernels differ in efficiency by size, XNNPACK's 7x7
#: measured 3-5x slower per MAC than OpenVINO's here while its other blocks were within 0.55-1.5x)
FEATURE_SETS = {"base": FEATURES,
                "depthwise_by_kernel": FEATURES + ("depthwise_k5_macs", "depthwise_k7_macs")}
#: residuals beyond this many robust standard deviations are left out of the interval's variance
OUTLIER_SD = 3.0
SELECTIONS = ("active", "random")
#: two-sided 90% normal quantile
Z_90 = 1.6448536269514722
NS_CLOCK_HZ = 1e9  # table "cycles" are nanoseconds, as in the measured table


def graph_features(graph: Any, feature_set: str = "base") -> np.ndarray:
    """[pointwise MACs, depthwise MACs, dense kxk MACs, activation elements read + written, layers] of a simulator
    graph (``depthwise_by_kernel``: then the depthwise MACs of 5x5 and >= 7x7 kernels, out of the depthwise column)."""
    split = feature_set == "depthwise_by_kernel"
    f = np.zeros(len(FEATURE_SETS[feature_set]))
    for layer in graph:
        if layer.op == "conv":
            if layer.is_depthwise:
                k = max(layer.kernel)
                f[1 if not split or k < 5 else (5 if k == 5 else 6)] += layer.macs
            elif tuple(layer.kernel) == (1, 1):
                f[0] += layer.macs
            else:
                f[2] += layer.macs
        elif layer.op == "fc":
            f[0] += layer.macs
        c, h, w = layer.out_shape
        f[3] += sum(a * b * d for a, b, d in layer.in_shapes) + c * h * w
        f[4] += 1
    return f


@dataclass
class SpaceFeatures:
    """Features of every (position, option) of a space, and of its stem + head (``fixed``)."""

    space: SearchSpace
    blocks: list[dict[Option, np.ndarray]]
    fixed: np.ndarray
    feature_set: str = "base"

    @classmethod
    def of(cls, space: SearchSpace, feature_set: str = "base") -> "SpaceFeatures":
        if feature_set not in FEATURE_SETS:
            raise ValueError(f"features {feature_set!r}; use one of {', '.join(FEATURE_SETS)}")
        size = len(FEATURE_SETS[feature_set])
        blocks = []
        for i, pos in enumerate(space.positions):
            row = {}
            for option in space.options(i):
                row[option] = (graph_features(block_to_graph(space.block_spec(i, option), pos.in_channels, pos.in_hw),
                                              feature_set) if option else np.zeros(size))
            blocks.append(row)
        arch = space.arch_spec(space.min_options())
        stem = GraphBuilder((space.in_channels, space.input_size, space.input_size), name="stem")
        emit_stem(stem, stem.input, arch)
        head = GraphBuilder((space.final_channels, space.final_hw, space.final_hw), name="head")
        emit_head(head, head.input, arch)
        return cls(space, blocks, graph_features(stem.graph, feature_set) + graph_features(head.graph, feature_set),
                   feature_set)

    def network(self, options: Sequence[Option]) -> np.ndarray:
        """Features of one network (one option per position) plus the constant 1 of the overhead: shape (F + 1,)."""
        total = self.fixed.copy()
        for row, option in zip(self.blocks, options):
            total += row[tuple(option)]
        return np.append(total, 1.0)

    def matrix(self, nets: Sequence[Sequence[Option]]) -> np.ndarray:
        return np.stack([self.network(o) for o in nets]) if nets else np.zeros((0, len(self.fixed) + 1))


def candidate_pool(space: SearchSpace, size: int, seed: int) -> list[list[Option]]:
    """Architectures to choose measurements from: stratified from the smallest to the largest (the fastest network
    first) plus uniformly random ones, deduplicated."""
    rng = np.random.default_rng(seed)
    nets = sample_architectures(space, size // 2, seed) + [space.random_options(rng) for _ in range(size - size // 2)]
    nets.append(list(space.max_options()))
    seen, pool = set(), []
    for net in nets:
        key = tuple(tuple(o) for o in net)
        if key not in seen:
            seen.add(key)
            pool.append(list(net))
    return pool


def _design_rows(features: np.ndarray) -> np.ndarray:
    """Rows as the relative-error fit sees them: each feature scaled to its pool mean, each row divided by a
    latency proxy (the sum of its scaled features), so the choice favours networks whose *relative* error is
    uncertain."""
    scaled = features / np.maximum(features.mean(axis=0), 1e-12)
    return scaled / scaled[:, :-1].sum(axis=1, keepdims=True)


def select_networks(space: SearchSpace, features: SpaceFeatures, count: int, *, selection: str = "active",
                    seed: int = 0, pool_size: int = 400, pool: Sequence[Sequence[Option]] | None = None
                    ) -> list[list[Option]]:
    """``count`` networks to measure: ``active`` (greedy D-optimal over a pool, see the module docstring) or
    ``random`` (the pool's stratified samples in order); ``pool``: choose from these networks instead."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection {selection!r}; use one of {', '.join(SELECTIONS)}")
    pool = [list(o) for o in pool] if pool is not None else candidate_pool(space, max(pool_size, 2 * count), seed)
    if selection == "random":
        rest = pool[1:]
        random.Random(seed).shuffle(rest)
        return [pool[0]] + rest[:count - 1] if count else []
    rows = _design_rows(features.matrix(pool))
    information = 1e-6 * np.eye(rows.shape[1])
    chosen: list[int] = []
    for _ in range(min(count, len(pool))):
        variance = np.einsum("ij,jk,ik->i", rows, np.linalg.inv(information), rows)
        variance[chosen] = -np.inf
        best = int(np.argmax(variance))
        chosen.append(best)
        information += np.outer(rows[best], rows[best])
    return [pool[k] for k in chosen]


@dataclass
class FewShotModel:
    """latency (ms) = coef . [features, 1]; relative residual sd ``sd`` with ``dof`` degrees of freedom."""

    coef: list[float]  # ms per unit of each feature, then the overhead (ms)
    scales: list[float]  # column scales of the normalised design
    covariance: list[list[float]]  # (A'A + ridge)^-1 of the normalised design
    sd: float  # relative residual sd (pooled prior + fit)
    dof: float
    level: float = 0.9
    fit: dict = field(default_factory=dict)
    feature_set: str = "base"

    def network_features(self, graph: Any) -> np.ndarray:
        """The model's features of a network's simulator graph, overhead's 1 appended."""
        return np.append(graph_features(graph, self.feature_set), 1.0)

    def predict_ms(self, x: np.ndarray) -> float:
        return float(np.dot(self.coef, x))

    def half_width(self, x: np.ndarray) -> float:
        """Relative half-width of the ``level`` interval of a network with features ``x``."""
        predicted = self.predict_ms(x)
        a = (np.asarray(x, dtype=float) / max(predicted, 1e-12)) / np.asarray(self.scales)
        leverage = float(a @ np.asarray(self.covariance) @ a)
        return z_value(self.level) * self.sd * math.sqrt(1.0 + max(0.0, leverage))

    def interval_ms(self, x: np.ndarray) -> tuple[float, float, float]:
        """(predicted, low, high) in ms."""
        predicted, h = self.predict_ms(x), self.half_width(x)
        return predicted, predicted * (1.0 - h), predicted * (1.0 + h)

    def table(self, features: SpaceFeatures, key: str = "", meta: dict | None = None, *, scale: float = 1.0) -> LatencyTable:
        """The model as a per-(position, option) table (ns units), every entry times ``scale`` (the conservative
        search's upper bound)."""
        coef = np.asarray(self.coef)
        entries = [{o: 0 if not o else int(round(max(0.0, float(coef[:-1] @ f)) * scale * 1e6)) for o, f in row.items()}
                   for row in features.blocks]
        fixed = max(0.0, float(coef[:-1] @ features.fixed + coef[-1])) * scale
        return LatencyTable(entries, int(round(fixed * 1e6)), NS_CLOCK_HZ, key, space=features.space,
                            meta=dict(meta or {}))

    def to_dict(self) -> dict:
        return {"features": list(FEATURE_SETS[self.feature_set]) + ["overhead"], "coef": self.coef, "sd_pct": 100.0 * self.sd,
                "dof": self.dof, "level": self.level, "fit": self.fit}


def z_value(level: float) -> float:
    return float(ndtri(0.5 + level / 2.0)) if level != 0.9 else Z_90


def fit_fewshot(features: np.ndarray, measured_ms: Sequence[float], *, ridge: float = 1e-3,
                prior_error_pct: float = 2.0, prior_weight: float = 6.0, level: float = 0.9,
                feature_set: str = "base") -> FewShotModel:
    """Fit the model to ``features`` (n x (F + 1), ``SpaceFeatures.matrix``) and their measured latencies."""
    x = np.asarray(features, dtype=float)
    y = np.asarray(measured_ms, dtype=float)
    if len(y) < 1:
        raise ValueError("few-shot model: no measured network to fit")
    a = x / y[:, None]  # relative errors: a . coef ~= 1
    scales = np.sqrt((a ** 2).mean(axis=0))
    scales[scales == 0] = 1.0
    an = a / scales
    lam = ridge * len(y)
    p = an.shape[1]
    # ridge as extra rows; every feature's coefficient >= 0, the overhead free
    design = np.vstack([an, math.sqrt(lam) * np.eye(p)]) if lam > 0 else an
    target = np.concatenate([np.ones(len(y)), np.zeros(p)]) if lam > 0 else np.ones(len(y))
    lower = np.zeros(p)
    lower[-1] = -np.inf
    theta = lsq_linear(design, target, bounds=(lower, np.full(p, np.inf)), method="bvls").x
    covariance = np.linalg.pinv(an.T @ an + lam * np.eye(p))  # pinv: a feature constant over the space (the stem's
    # dense MACs without fused blocks) is collinear with the overhead
    residuals = 1.0 - an @ theta  # relative (measured - predicted) / measured ~ (m - p) / p
    leverage = np.einsum("ij,jk,ik->i", an, covariance, an)
    dof_all = len(y) - float(leverage.sum())
    kept = np.ones(len(y), dtype=bool)
    if dof_all > 0.5:  # robust scale: leave out residuals of disturbed measurements
        robust = 1.4826 * float(np.median(np.abs(residuals))) * math.sqrt(len(y) / dof_all)
        kept = np.abs(residuals) <= max(OUTLIER_SD * robust, 1e-12)
    dof_fit = max(0.0, float(kept.sum()) - float(leverage[kept].sum()))
    rss = float(residuals[kept] @ residuals[kept])
    s0 = prior_error_pct / 100.0
    dof = prior_weight + dof_fit
    sd = math.sqrt((prior_weight * s0 ** 2 + rss) / dof) if dof > 0 else s0
    coef = (theta / scales).tolist()
    predicted = x @ np.asarray(coef)
    fit = {"networks": int(len(y)), "ridge": float(ridge), "prior_error_pct": float(prior_error_pct),
           "prior_weight": float(prior_weight),
           "train_mape_pct": float(100.0 * np.mean(np.abs(predicted - y) / y)), "outliers": int((~kept).sum()),
           "fit_sd_pct": float(100.0 * math.sqrt(rss / dof_fit)) if dof_fit > 0.5 else None}
    return FewShotModel(coef, scales.tolist(), covariance.tolist(), sd, dof, level, fit, feature_set)
