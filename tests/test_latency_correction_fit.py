"""The correction's weighted ridge fit (scikit-learn's Ridge): the minimiser of the documented objective; the
noise-free error estimate the latency-correction benchmark reports."""

from __future__ import annotations

import numpy as np
import pytest

from s3nas.latency.correction import _ridge_solve, noise_free_error_pct


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
