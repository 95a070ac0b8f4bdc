"""Layer-adaptive latency correction: make the sum of standalone block measurements match end-to-end latency.

Timing blocks one at a time misses what a whole network does differently: per-call overhead counted once per
block instead of once per network, caches warm or cold at block boundaries, operator fusion across blocks.
The error depends on where a block sits (its shape context), so the correction is fitted per group of
positions (BBSSP's "layer-adaptive" correction giving a "policy-aware" table, Zeng et al. 2020; the fitting
procedure here is ours): for an architecture with raw entries ``t_i`` (0 where skipped),

    latency ~= c + sum_g [ a_g * T_g + b_g * N_g ],   T_g = sum_{i in g} t_i,  N_g = #non-skipped blocks in g

fitted by ridge regression on relative errors (rows divided by the measured latency) over end-to-end
measurements of sampled architectures; the ridge pulls ``a_g`` to 1 and ``b_g`` to 0, so a group the samples
say little about keeps its raw entries. Groups: ``stage_affine`` (each stage's first block, whose stride or
width changes, and its remaining blocks), ``position_affine`` (every position) or ``ratio`` (one global scale,
no offsets) and ``stage_affine_weights`` (the default: ``stage_affine`` plus ``w * P + v * B_C``, the weights a
whole network streams through the caches - ``P`` the network's block weight parameters, ``B_C`` its blocks with
more than ``C`` parameters; ``C`` and the ridge chosen by leave-one-out on the samples, scored as applied). The
corrected entry of position ``i`` is ``max(0, a_g t_i + b_g [+ w p_i + v [p_i > C]])`` (a skip stays 0) and the
fixed part is ``c``: still one number per (position, option), so the search's estimator works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from s3nas.arch.params import block_params
from s3nas.arch.space import Option
from s3nas.latency.lut import LatencyTable

METHODS = ("stage_affine_weights", "stage_affine", "position_affine", "ratio", "none")
LEVERAGE_GAP = 1e-6  # leave-one-out: 1 - leverage below this, the sample's fit is refitted explicitly
WEIGHT_THRESHOLDS = (32_000, 64_000, 128_000, 256_000, 512_000)  # parameters (x4 bytes): 128 KB .. 2 MB


def position_groups(space: Any, method: str) -> list[int]:
    """Group index of every position for ``method``."""
    if method == "position_affine":
        return list(range(len(space.positions)))
    if method in ("stage_affine", "stage_affine_weights"):
        keys, groups = {}, []
        for i, pos in enumerate(space.positions):
            first = i == 0 or space.positions[i - 1].stage != pos.stage
            groups.append(keys.setdefault((pos.stage, first), len(keys)))
        return groups
    return [0] * len(space.positions)


@dataclass
class Correction:
    """Fitted per-group scale and offset (ms) plus the fixed part (ms)."""

    method: str
    groups: list[int]
    scale: list[float]
    offset_ms: list[float]
    fixed_ms: float
    fit: dict = field(default_factory=dict)
    # stage_affine_weights: ms per weight parameter of the block, ms per block above the threshold (parameters)
    weight_ms: float = 0.0
    big_block_ms: float = 0.0
    weight_threshold: int = 0
    space: Any = field(default=None, repr=False, compare=False)

    def entry_ms(self, i: int, raw_ms: float, option: Option) -> float:
        if not option:
            return 0.0
        g = self.groups[i]
        value = self.scale[g] * raw_ms + self.offset_ms[g]
        if (self.weight_ms or self.big_block_ms) and self.space is not None:
            params = block_weight_params(self.space, i, option)
            value += self.weight_ms * params + self.big_block_ms * (params > self.weight_threshold)
        return max(0.0, value)

    def apply(self, raw: LatencyTable) -> LatencyTable:
        """The corrected table (same units as ``raw``: integer cycles at ``raw.clock_hz``)."""
        to_cycles = raw.clock_hz / 1e3
        entries = [{o: int(round(self.entry_ms(i, raw.cycles_to_ms(c), o) * to_cycles)) for o, c in row.items()}
                   for i, row in enumerate(raw.entries)]
        meta = {**raw.meta, "correction": self.to_dict()}
        return LatencyTable(entries, int(round(max(0.0, self.fixed_ms) * to_cycles)), raw.clock_hz, raw.key,
                            space=raw.space, meta=meta)

    def to_dict(self) -> dict:
        return {"method": self.method, "groups": self.groups, "scale": self.scale, "offset_ms": self.offset_ms,
                "fixed_ms": self.fixed_ms, "weight_ms": self.weight_ms, "big_block_ms": self.big_block_ms,
                "weight_threshold": self.weight_threshold, "fit": self.fit}


def block_weight_params(space: Any, i: int, option: Option) -> int:
    """Weight parameters of position ``i`` with ``option`` (0 for a skip)."""
    return block_params(space.block_spec(i, option), space.positions[i].in_channels) if option else 0


def _features(raw: LatencyTable, options: Sequence[Option], groups: list[int], n_groups: int) -> np.ndarray:
    """[T_0..T_G-1, N_0..N_G-1] of one architecture (ms, counts)."""
    totals, counts = np.zeros(n_groups), np.zeros(n_groups)
    for i, o in enumerate(options):
        if o:
            totals[groups[i]] += raw.block_ms(i, o)
            counts[groups[i]] += 1
    return np.concatenate([totals, counts])


def fit_correction(raw: LatencyTable, samples: Sequence[tuple[Sequence[Option], float]],
                   method: str = "stage_affine_weights", ridge: float = 0.1) -> Correction:
    """Fit the correction of ``raw`` to ``samples`` = [(options per position, measured end-to-end ms), ...]."""
    if method not in METHODS:
        raise ValueError(f"correction: {method!r}; use one of {', '.join(METHODS)}")
    space = raw.space
    n_pos = len(raw.entries)
    groups = position_groups(space, method) if space is not None else [0] * n_pos
    n_groups = max(groups) + 1
    if method == "none" or not samples:
        return Correction("none", groups, [1.0] * n_groups, [0.0] * n_groups, raw.fixed_ms, {"samples": 0})
    options = [list(o) for o, _ in samples]
    y = np.array([float(m) for _, m in samples])
    feats = np.stack([_features(raw, o, groups, n_groups) for o in options])
    totals, counts = feats[:, :n_groups], feats[:, n_groups:]
    raw_sums = np.array([raw.estimate_ms(o) for o in options])
    weights = 1.0 / y  # relative errors
    if method == "ratio":
        scale = float(np.sum(weights**2 * raw_sums * y) / np.sum((weights * raw_sums) ** 2))
        correction = Correction(method, groups, [scale], [0.0], raw.fixed_ms * scale)
    else:
        # unknowns: c, delta_a[G], b[G] (+ weight terms); target y - sum T  (a = 1 + delta_a)
        block_ms = float(np.mean([raw.cycles_to_ms(c) for row in raw.entries for o, c in row.items() if o]) or 1.0)
        design = np.concatenate([np.ones((len(y), 1)), totals, counts * block_ms], axis=1)
        target = y - totals.sum(axis=1)
        extra: dict = {}
        if method == "stage_affine_weights" and space is not None:
            params = [[block_weight_params(space, i, o) for i, o in enumerate(opts)] for opts in options]
            all_params = [block_weight_params(space, i, o) for i in range(n_pos) for o in space.options(i) if o]
            per_param_ms = block_ms / float(np.mean(all_params) or 1.0)  # columns in ms units
            weight_col = np.array([sum(p) for p in params]) * per_param_ms

            def big_col(threshold: int) -> np.ndarray:
                return np.array([sum(v > threshold for v in p) for p in params]) * block_ms

            # threshold and ridge chosen by leave-one-out on the fit samples (never on held-out networks)
            # (scored as applied: every corrected entry clipped at 0)
            blocks = [[(groups[i], raw.block_ms(i, o), v) for i, (o, v) in enumerate(zip(opts, p)) if o]
                      for opts, p in zip(options, params)]
            if len(y) >= 2:
                choices = [(t, r) for t in WEIGHT_THRESHOLDS
                           for r in (ridge / 10.0, ridge, ridge * 10.0, ridge * 100.0)]
                loo = {c: _loo_mape(np.concatenate([design, weight_col[:, None], big_col(c[0])[:, None]], axis=1),
                                    target, y, c[1], blocks, n_groups, block_ms, per_param_ms, c[0])
                       for c in choices}
                threshold, ridge = min(choices, key=lambda c: loo[c])
                extra = {"per_param_ms": per_param_ms, "threshold": threshold,
                         "loo_mape_pct": loo[(threshold, ridge)]}
            else:  # one network (e.g. correction_samples=1): nothing to leave out; the middle threshold, ridge as set
                threshold = WEIGHT_THRESHOLDS[len(WEIGHT_THRESHOLDS) // 2]
                extra = {"per_param_ms": per_param_ms, "threshold": threshold}
            design = np.concatenate([design, weight_col[:, None], big_col(threshold)[:, None]], axis=1)
        theta = _ridge_solve(design, target, weights, ridge)
        scale = (1.0 + theta[1:1 + n_groups]).tolist()
        offset = (theta[1 + n_groups:1 + 2 * n_groups] * block_ms).tolist()
        correction = Correction(method, groups, scale, offset, float(theta[0]))
        if extra:
            correction.weight_ms = float(theta[1 + 2 * n_groups] * extra["per_param_ms"])
            correction.big_block_ms = float(theta[2 + 2 * n_groups] * block_ms)
            correction.weight_threshold = int(extra["threshold"])
            correction.space = space
    corrected = correction.apply(raw)
    fitted = np.array([corrected.estimate_ms(o) for o in options])
    correction.fit = {"samples": len(y), "ridge": float(ridge),
                      "train_raw_mape_pct": mape_pct(raw_sums, y), "train_mape_pct": mape_pct(fitted, y)}
    if method == "stage_affine_weights" and "loo_mape_pct" in extra:
        correction.fit["loo_mape_pct"] = float(extra["loo_mape_pct"])
    return correction


def _ridge_solve(design: np.ndarray, target: np.ndarray, weights: np.ndarray, ridge: float) -> np.ndarray:
    """Weighted ridge regression (scikit-learn's ``Ridge``): minimises ``sum (w_i (x_i theta - t_i))^2 +
    alpha |theta[1:]|^2``, ``alpha = ridge * 1e-3 * n``; the first column of ``design`` (all ones) is the
    unpenalised intercept (the fixed part). Returns ``[intercept, coefficients...]``."""
    from sklearn.linear_model import Ridge  # heavy (scipy): imported when a correction is fitted

    alpha = max(0.0, float(ridge)) * 1e-3 * len(target)
    model = Ridge(alpha=alpha, fit_intercept=True, solver="svd")
    model.fit(design[:, 1:], target, sample_weight=weights**2)  # squared residuals weighted by w_i^2
    return np.concatenate([[model.intercept_], model.coef_])


def _loo_mape(design: np.ndarray, target: np.ndarray, y: np.ndarray, ridge: float, blocks: list, n_groups: int,
              block_ms: float, per_param_ms: float, threshold: int) -> float:
    """Leave-one-out MAPE (%) of the stage_affine_weights model as applied: the fixed part plus every present
    block's entry ``max(0, a_g t + b_g + w p + v [p > threshold])`` (``blocks``: (group, t ms, p) per sample).

    Each left-out sample ``k`` is predicted by the ridge fit on the other ``n - 1`` samples (``_ridge_solve``'s
    fit, ``alpha`` from ``n - 1``): its coefficients ``theta_-k`` come from the closed form of ``_loo_thetas``
    (one solve per call instead of ``n`` refits); the clipping at 0 and the whole network's relative error are
    then applied to each ``theta_-k``, which ``RidgeCV``'s closed-form score (linear residuals only) cannot do."""
    n = len(y)
    if n < 2:
        raise ValueError(f"Cannot perform LeaveOneOut with n_samples={n}.")  # as scikit-learn's LeaveOneOut
    thetas = _loo_thetas(design, target, 1.0 / y, ridge)  # row k: fitted without sample k
    a, b = 1.0 + thetas[:, 1:1 + n_groups], thetas[:, 1 + n_groups:1 + 2 * n_groups] * block_ms
    w, v = thetas[:, 1 + 2 * n_groups] * per_param_ms, thetas[:, 2 + 2 * n_groups] * block_ms
    # every present block of every sample, flat: its entry under theta_-k of its own sample k
    sample = np.array([k for k, present in enumerate(blocks) for _ in present], dtype=np.int64)
    group = np.array([g for present in blocks for g, _, _ in present], dtype=np.int64)
    raw_ms = np.array([ms for present in blocks for _, ms, _ in present], dtype=float)
    params = np.array([n_params for present in blocks for _, _, n_params in present], dtype=np.int64)
    entries = np.maximum(0.0, a[sample, group] * raw_ms + b[sample, group] + w[sample] * params
                         + v[sample] * (params > threshold))
    predicted = np.maximum(0.0, thetas[:, 0]) + np.bincount(sample, weights=entries, minlength=n)
    return float(100.0 * np.mean(np.abs(predicted - y) / y))


def _loo_thetas(design: np.ndarray, target: np.ndarray, weights: np.ndarray, ridge: float) -> np.ndarray:
    """Row ``k``: ``_ridge_solve(design, target, weights, ridge)`` on all samples but ``k`` (so ``alpha = ridge *
    1e-3 * (n - 1)``, from the ``n - 1`` samples each fit sees), without refitting. With ``A = X' W X + alpha P``
    (``W = diag(w_i^2)``, ``P`` the identity with 0 for the intercept: scikit-learn's weighted centring gives the
    same unpenalised intercept) and ``theta`` the fit on all ``n`` samples with that ``alpha``, removing sample
    ``k`` is a rank-one downdate of ``A`` (Sherman-Morrison):

        theta_-k = theta - A^-1 x_k w_k^2 r_k / (1 - h_k),   r_k = t_k - x_k theta,   h_k = w_k^2 x_k' A^-1 x_k.

    ``A`` is used through a complete QR factorisation of ``M = [W^1/2 X; sqrt(alpha) P]`` (``A = R'R``): ``1 -
    h_k`` and ``w_k r_k`` come from the orthogonal complement's rows, free of the cancellation ``1 - h_k`` suffers
    when the samples are fewer than the unknowns (every leverage near 1). Refitted explicitly instead: every
    ``k`` when ``alpha`` is 0 (``A`` may be singular, e.g. a column of zeros: scikit-learn's minimum-norm fit as
    before), a ``k`` whose leverage is 1 to within ``LEVERAGE_GAP`` (the formula divides by ``1 - h_k``)."""
    n, p = design.shape
    alpha = max(0.0, float(ridge)) * 1e-3 * (n - 1)
    thetas = np.zeros((n, p))
    refit = np.ones(n, dtype=bool)
    if alpha > 0.0 and n > 1:
        # alpha > 0, w_i > 0: A is positive definite (the penalty holds all but the intercept, the samples that).
        # Columns and target shifted by their weighted means (as scikit-learn centres them): the same problem,
        # the shift absorbed by the free intercept (undone below), better conditioned
        sw = weights**2
        mean_x, mean_t = np.average(design[:, 1:], axis=0, weights=sw), float(np.average(target, weights=sw))
        shifted = np.concatenate([design[:, :1], design[:, 1:] - mean_x], axis=1)
        m = np.concatenate([shifted * weights[:, None], np.sqrt(alpha) * np.eye(p)[1:]])
        rhs = np.concatenate([weights * (target - mean_t), np.zeros(p - 1)])
        q, r = np.linalg.qr(m, mode="complete")  # q orthogonal: its first p columns span M's, the rest the complement
        basis, complement, r = q[:n, :p], q[:, p:], r[:p]
        try:
            theta = np.linalg.solve(r, basis.T @ rhs[:n])
            steps = np.linalg.solve(r, basis.T)  # column k: R^-1 R'^-1 x_k w_k = A^-1 x_k w_k
        except np.linalg.LinAlgError:
            steps = None
        if steps is not None:
            gap = np.einsum("ij,ij->i", complement[:n], complement[:n])  # 1 - h_k (rows of q have norm 1)
            weighted_residual = complement[:n] @ (complement.T @ rhs)  # w_k r_k: M's residual b - M theta, row k
            refit = ~(gap > LEVERAGE_GAP)
            thetas = theta - (steps * (weighted_residual / np.where(refit, 1.0, gap))).T
            thetas[:, 0] += mean_t - thetas[:, 1:] @ mean_x
            refit |= ~np.isfinite(thetas).all(axis=1)
    for k in np.flatnonzero(refit):
        keep = np.arange(n) != k
        thetas[k] = _ridge_solve(design[keep], target[keep], weights[keep], ridge)
    return thetas


# ----------------------------------------------------------------------------------------- scores
def errors_pct(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return 100.0 * (p - m) / m


def mape_pct(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error."""
    return float(np.mean(np.abs(errors_pct(predicted, measured))))


def within_pct(predicted: Sequence[float], measured: Sequence[float], bound: float) -> float:
    """Share (percent) of predictions within +-``bound`` percent of the measurement."""
    return float(100.0 * np.mean(np.abs(errors_pct(predicted, measured)) <= bound))


def score(predicted: Sequence[float], measured: Sequence[float]) -> dict:
    """MAPE and the shares within +-5% / +-10%."""
    return {"mape_pct": mape_pct(predicted, measured), "within5_pct": within_pct(predicted, measured, 5.0),
            "within10_pct": within_pct(predicted, measured, 10.0)}


def noise_free_error_pct(predicted: Sequence[float], first: Sequence[float], second: Sequence[float]
                         ) -> tuple[float, float]:
    """A predictor's own rms error (%) with the measurement noise taken out, from two independent measurements of
    each network: with ``e1``, ``e2`` its log errors against them, ``mean(e1 e2)`` estimates the mean squared
    model error (independent noise cancels in the product). Returns (estimate, estimate one standard error up):
    loose when the noise is large against the model error or the networks are few."""
    p = np.log(np.asarray(predicted, dtype=float))
    products = (p - np.log(np.asarray(first, dtype=float))) * (p - np.log(np.asarray(second, dtype=float)))
    if products.size == 0:
        return 0.0, 0.0
    m2 = float(np.mean(products))
    se = float(np.std(products, ddof=1) / np.sqrt(products.size)) if products.size > 1 else 0.0
    return 100.0 * float(np.sqrt(max(0.0, m2))), 100.0 * float(np.sqrt(max(0.0, m2 + se)))
