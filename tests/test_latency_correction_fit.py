"""The correction's weighted ridge fit (scikit-learn's Ridge): the minimiser of the documented objective; its
leave-one-out score in closed form, against the explicit per-fold refits it replaces; the noise-free error estimate
the latency-correction benchmark reports."""

from __future__ import annotations

import numpy as np
import pytest

from s3nas.latency.correction import _loo_mape, _loo_thetas, _ridge_solve, fit_correction, noise_free_error_pct


@pytest.mark.parametrize("samples, unknowns", [(30, 6), (8, 15)])  # over- and under-determined (few end-to-end runs)
def test_ridge_solve_minimises_the_weighted_objective_with_a_free_intercept(samples, unknowns):
    rng = np.random.default_rng(samples)
    design = np.concatenate([np.ones((samples, 1)), rng.uniform(0.0, 2.0, (samples, unknowns))], axis=1)
    target = rng.normal(size=samples)
    weights = rng.uniform(0.5, 2.0, samples)
    ridge = 3.0
    theta = _ridge_solve(design, target, weights, ridge)
    # sum (w_i (x_i theta - t_i))^2 + alpha |theta[1:]|^2, alpha = ridge * 1e-3 * n: its normal equations
    alpha = ridge * 1e-3 * samples
    penalty = np.diag([0.0] + [alpha] * unknowns)
    weighted = design.T * weights**2
    expected = np.linalg.solve(weighted @ design + penalty, weighted @ target)
    np.testing.assert_allclose(theta, expected, rtol=1e-7, atol=1e-9)
    # the intercept is not shrunk: a constant target is fitted exactly whatever the ridge
    constant = _ridge_solve(design, np.full(samples, 4.0), weights, 100.0)
    np.testing.assert_allclose(constant, [4.0] + [0.0] * unknowns, atol=1e-9)


def test_noise_free_error_recovers_the_model_error_under_much_larger_measurement_noise():
    # the 16x16 corner's situation: a predictor 3% (rms) off the truth, measurements 10% (rms) off it
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.1, 2.0, 4000)
    predicted = truth * np.exp(rng.normal(0.0, 0.03, truth.size))
    first, second = (truth * np.exp(rng.normal(0.0, 0.10, truth.size)) for _ in range(2))
    estimate, upper = noise_free_error_pct(predicted, first, second)
    naive = 100.0 * np.sqrt(np.mean(np.log(predicted / first) ** 2))  # against one measurement: noise included
    assert naive > 10.0
    assert 2.3 < estimate < 3.7 and estimate <= upper < estimate + 1.5
    perfect, _ = noise_free_error_pct(truth, first, second)
    assert perfect < 1.5
    # the noise must be independent: the same measurement twice gives the error against it, noise and all
    same, _ = noise_free_error_pct(predicted, first, first)
    assert abs(same - naive) < 1e-9
    assert noise_free_error_pct([], [], []) == (0.0, 0.0)


# ------------------------------------------------------------------ leave-one-out: closed form vs explicit refits
def _reference_loo_mape(design, target, y, ridge, blocks, n_groups, block_ms, per_param_ms, threshold):
    """The former ``_loo_mape``: one scikit-learn ``Ridge`` refit per ``LeaveOneOut`` fold (``alpha`` from the
    fold's ``n - 1`` samples), every corrected entry clipped at 0, the whole network's relative error."""
    from sklearn.model_selection import LeaveOneOut

    errors = []
    for train, (k,) in LeaveOneOut().split(design):
        theta = _ridge_solve(design[train], target[train], 1.0 / y[train], ridge)
        a, b = 1.0 + theta[1:1 + n_groups], theta[1 + n_groups:1 + 2 * n_groups] * block_ms
        w, v = theta[1 + 2 * n_groups] * per_param_ms, theta[2 + 2 * n_groups] * block_ms
        predicted = max(0.0, theta[0]) + sum(max(0.0, a[g] * t + b[g] + w * p + v * (p > threshold))
                                             for g, t, p in blocks[k])
        errors.append(abs(predicted - y[k]) / y[k])
    return float(100.0 * np.mean(errors))


def _loo_problem(seed, samples, n_groups, *, threshold=128_000, empty_group=False, identical=False, one_big=False):
    """A stage_affine_weights design as ``fit_correction`` builds it, from random networks (group, ms, params of
    each present block) and a noisy truth with a weight-streaming cost. ``empty_group``: the last group has no
    block (two zero columns); ``identical``: every network the same (one row repeated); ``one_big``: a single
    block above ``threshold`` (a column only one sample sees: leverage near 1 under a small ridge)."""
    rng = np.random.default_rng(seed)
    block_ms, per_param_ms = 0.2, 0.2 / 150_000
    used = n_groups - 1 if empty_group else n_groups
    blocks = [[(int(rng.integers(used)), float(rng.uniform(0.02, 0.5)), int(rng.integers(1_000, 400_000)))
               for _ in range(int(rng.integers(1, 3 * n_groups + 1)))] for _ in range(samples)]
    if identical:
        blocks = [blocks[0]] * samples
    if one_big:
        blocks = [[(g, t, min(p, threshold)) for g, t, p in present] for present in blocks]
        blocks[0] = blocks[0] + [(0, 0.3, 2 * threshold)]
    y = np.array([0.05 + sum((1.0 + 0.1 * g) * t + 0.003 + 3e-8 * p + 0.01 * (p > threshold) for g, t, p in present)
                  for present in blocks]) * np.exp(rng.normal(0.0, 0.05, samples))
    totals, counts = np.zeros((samples, n_groups)), np.zeros((samples, n_groups))
    for k, present in enumerate(blocks):
        for g, t, _ in present:
            totals[k, g] += t
            counts[k, g] += 1
    weight_col = np.array([sum(p for _, _, p in present) for present in blocks]) * per_param_ms
    big_col = np.array([sum(p > threshold for _, _, p in present) for present in blocks]) * block_ms
    design = np.concatenate([np.ones((samples, 1)), totals, counts * block_ms, weight_col[:, None],
                             big_col[:, None]], axis=1)
    return design, y - totals.sum(axis=1), y, blocks, n_groups, block_ms, per_param_ms, threshold


LOO_CASES = [  # (seed, samples, groups, options), ridges
    ((0, 60, 10, {}), (1e-5, 1e-2, 0.1, 10.0)),  # the default space's size: over-determined
    ((1, 30, 10, {}), (1e-3, 1.0)),
    ((2, 8, 10, {}), (1e-2, 1.0)),  # fewer samples than unknowns: every leverage near 1
    ((3, 12, 4, {"empty_group": True}), (1e-3, 0.1)),  # zero columns
    ((4, 20, 3, {"threshold": 10_000_000}), (1e-2, 1.0)),  # no block above the threshold: a zero column
    ((5, 6, 2, {"identical": True}), (0.1,)),  # all rows identical
    ((6, 30, 10, {"one_big": True}), (1e-9, 1e-6, 0.1)),  # one sample with leverage ~1: refitted explicitly
    ((7, 3, 1, {}), (0.1,)),  # tiny sample counts
    ((8, 2, 2, {}), (0.1,)),
    ((9, 15, 5, {}), (0.0,)),  # no penalty: explicit refits (scikit-learn's minimum-norm fits)
]


@pytest.mark.parametrize("case, ridges", LOO_CASES)
def test_loo_closed_form_matches_the_explicit_refits(case, ridges):
    """The leave-one-out score (rank-one downdates of one weighted ridge solve) equals the explicit refits on the
    other n - 1 samples (scikit-learn's Ridge, alpha from n - 1), clipping and all; so do the coefficients."""
    seed, samples, n_groups, options = case
    problem = _loo_problem(seed, samples, n_groups, **options)
    design, target, y = problem[:3]
    for ridge in ridges:
        expected = _reference_loo_mape(*problem[:3], ridge, *problem[3:])
        assert _loo_mape(*problem[:3], ridge, *problem[3:]) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        refits = np.array([_ridge_solve(np.delete(design, k, 0), np.delete(target, k), np.delete(1.0 / y, k), ridge)
                           for k in range(samples)])
        np.testing.assert_allclose(_loo_thetas(design, target, 1.0 / y, ridge), refits, rtol=1e-8,
                                   atol=1e-9 * np.abs(refits).max())


def test_loo_needs_two_samples_as_before():
    problem = _loo_problem(0, 1, 2)
    for score in (_loo_mape, _reference_loo_mape):
        with pytest.raises(ValueError, match="n_samples=1"):
            score(*problem[:3], 0.1, *problem[3:])


def test_fit_correction_chooses_and_fits_as_with_the_explicit_refits(monkeypatch, tmp_path):
    """On a measured table (the simulated device, as in test_blackbox_table): the same (threshold, ridge) chosen,
    the same leave-one-out score, the same fitted correction as with the former per-fold refits."""
    from s3nas.arch.space import SearchSpace
    from s3nas.config import compose_config
    from s3nas.latency import correction as module
    from s3nas.latency.device import SimulatedDevice
    from s3nas.latency.measured import build_measured_table

    cfg = compose_config("search", ["debug=search_small"])
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=224)
    measured = build_measured_table(space, SimulatedDevice("midap", "sim", repeats=1), cache_dir=tmp_path,
                                    samples=30, progress=False, printer=None)
    rng = np.random.default_rng(0)  # measurement noise: the choice is not decided by a noiseless truth alone
    samples = [(o, ms * float(np.exp(rng.normal(0.0, 0.03)))) for o, ms in measured.samples]
    # chosen (threshold, ridge): (256k, 0.01), (64k, 10), (256k, 0.1)
    for data, ridge in ((measured.samples, 0.1), (samples, 0.1), (samples, 1e-3)):
        fitted = fit_correction(measured.raw, data, ridge=ridge).to_dict()
        with monkeypatch.context() as patch:
            patch.setattr(module, "_loo_mape", _reference_loo_mape)
            expected = fit_correction(measured.raw, data, ridge=ridge).to_dict()
        assert fitted.pop("weight_threshold") == expected.pop("weight_threshold")
        assert fitted["fit"].pop("ridge") == expected["fit"].pop("ridge")
        assert fitted["fit"].pop("loo_mape_pct") == pytest.approx(expected["fit"].pop("loo_mape_pct"), rel=1e-9)
        assert fitted == expected  # the final fit (all samples, alpha from n) is the same Ridge solve


def test_one_end_to_end_network_still_fits_a_correction(tmp_path):
    """hardware.correction_samples=1 (or all but one network failed on the device): no leave-one-out choice (the
    middle weight threshold, the ridge as set), a correction that applies, and no ``loo_mape_pct``: not a
    ``ValueError`` from the choice."""
    from s3nas.arch.space import SearchSpace
    from s3nas.config import compose_config
    from s3nas.latency.correction import WEIGHT_THRESHOLDS
    from s3nas.latency.device import SimulatedDevice
    from s3nas.latency.measured import build_measured_table

    cfg = compose_config("search", ["debug=search_tiny", "supernet.depths=[1,1,1,1,2]", "supernet.block_type=mbconv",
                                    "candidates.mbconv.kernels=[3]"])
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=16)
    measured = build_measured_table(space, SimulatedDevice("midap", "sim", repeats=1), cache_dir=tmp_path,
                                    samples=1, progress=False, printer=None)
    (options, ms), = measured.samples
    correction = fit_correction(measured.raw, measured.samples)
    assert correction.fit["samples"] == 1 and "loo_mape_pct" not in correction.fit and correction.fit["ridge"] == 0.1
    assert correction.weight_threshold == WEIGHT_THRESHOLDS[len(WEIGHT_THRESHOLDS) // 2]
    corrected = correction.apply(measured.raw).estimate_ms(options)
    assert abs(corrected - ms) < abs(measured.raw.estimate_ms(options) - ms) or corrected == pytest.approx(ms)
