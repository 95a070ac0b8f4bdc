"""Differentiable latency estimator (paper Eq. 7-8) against a latency table."""

from __future__ import annotations

import random

import pytest

import torch

from s3nas.latency.estimator import LatencyEstimator
from s3nas.nn.supernet import Supernet
from s3nas.arch.space import SearchSpace


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscription on the shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

SMALL = dict(widths=[8, 16, 16], depths=[2, 2, 2], strides=[2, 1, 2], stem_channels=8, head_channels=32,
             block_type=["fused", "mbconv", "mixconv"])


class MonotoneTable:
    """Stand-in LatencyTable: block latency grows with kernel area and expansion, differs per position."""

    fixed_ms = 0.25

    def block_ms(self, i, option):
        assert option, "the estimator must not look up skips"
        # deliberately non-additive over branches, so an unmerged lookup would give a different value
        return 0.01 * (i + 1) * sum(b.kernel ** 2 * b.expansion for b in option) + 0.05 * len(option) ** 2

    def estimate_ms(self, options):
        return self.fixed_ms + sum(self.block_ms(i, o) for i, o in enumerate(options) if o)


def _hard_random(net, rng):
    with torch.no_grad():
        for sk in net.superkernels():
            for t in (sk.kernel_thresholds, sk.channel_thresholds):
                if t is not None:
                    t.copy_(torch.tensor([rng.choice([-1e4, 1e4]) for _ in range(t.numel())]))


def test_estimate_equals_table_latency_of_the_decoded_architecture():
    torch.manual_seed(0)
    net = Supernet(SearchSpace.from_config(SMALL, {}, num_classes=10), num_classes=10)
    table = MonotoneTable()
    estimator = LatencyEstimator(table)
    rng = random.Random(0)
    for _ in range(10):
        _hard_random(net, rng)
        expected = table.estimate_ms(net.chosen_options())
        assert abs(float(estimator(net)) - expected) < 1e-5 * max(1.0, expected)


def test_gradients_reach_every_threshold_with_the_right_sign():
    torch.manual_seed(0)
    net = Supernet(SearchSpace.from_config(SMALL, {}, num_classes=10), num_classes=10)
    with torch.no_grad():  # near the decision boundary, so the sigmoid slopes are not negligible
        for sk in net.superkernels():
            ku, cu = sk.indicators()
            if sk.kernel_thresholds is not None:
                sk.kernel_thresholds.copy_(sk.kernel_thresholds - 0.5)
            if sk.channel_thresholds is not None:
                sk.channel_thresholds.copy_(sk.channel_thresholds - 0.5)
        for sk in net.superkernels():
            sk.weight.mul_(0.5 / sk.weight.norm())
    latency = LatencyEstimator(MonotoneTable())(net)
    grads = torch.autograd.grad(latency, net.threshold_parameters())
    flat = torch.cat([g.reshape(-1) for g in grads])
    # raising a threshold switches an option off, which can only lower a monotone table's latency
    assert bool((flat <= 0).all()) and bool((flat < 0).all())


def _synthetic_table(space, seed=0):
    """A real LatencyTable with random cycles per (position, option) -- no simulator needed."""
    from s3nas.latency.lut import LatencyTable

    rng = random.Random(seed)
    entries = [{opt: (rng.randint(10_000, 200_000) if opt else 0) for opt in space.options(i)}
               for i in range(len(space.positions))]
    return LatencyTable(entries, fixed_cycles=123_456, clock_hz=1e9, space=space)


def test_estimate_equals_latency_table_of_the_decoded_architecture_real_table():
    torch.manual_seed(0)
    space = SearchSpace.from_config(SMALL, {}, num_classes=10)
    net = Supernet(space, num_classes=10)
    table = _synthetic_table(space)
    estimator = LatencyEstimator(table)
    rng = random.Random(1)
    for _ in range(10):
        _hard_random(net, rng)
        latency = estimator(net)
        # per position: a decoded ArchSpec has lost which same-stage position a skip was at
        expected = table.estimate_ms(net.chosen_options())
        assert abs(float(latency) - expected) <= 1e-6 * expected
        assert abs(float(estimator.per_block(net)) - expected) <= 1e-6 * expected
        grads = torch.autograd.grad(latency, net.threshold_parameters(), allow_unused=False)
        assert all(torch.isfinite(g).all() for g in grads)


def test_estimate_at_initialisation_is_the_largest_architecture():
    torch.manual_seed(0)
    space = SearchSpace.from_config(SMALL, {}, num_classes=10)
    net = Supernet(space, num_classes=10)
    table = _synthetic_table(space, seed=2)
    assert float(LatencyEstimator(table)(net)) == pytest.approx(table.estimate_ms(net.chosen_options()), rel=1e-6)
    assert float(LatencyEstimator(table)(net)) <= table.max_ms + 1e-9


def test_vectorised_and_per_block_estimates_agree_in_soft_states():
    torch.manual_seed(0)
    space = SearchSpace.from_config(SMALL, {}, num_classes=10)
    net = Supernet(space, num_classes=10)
    with torch.no_grad():  # thresholds near the norms: some indicators off, non-trivial gradients
        for sk in net.superkernels():
            for t in (sk.kernel_thresholds, sk.channel_thresholds):
                if t is not None:
                    t.copy_(torch.rand_like(t) * sk.weight.norm())
    estimator = LatencyEstimator(_synthetic_table(space, seed=3))
    fast, slow = estimator(net), estimator.per_block(net)
    g_fast = torch.autograd.grad(fast, net.threshold_parameters())
    g_slow = torch.autograd.grad(slow, net.threshold_parameters())
    assert float(fast) == pytest.approx(float(slow), rel=1e-6)
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    assert any(float(g.abs().sum()) > 0 for g in g_fast)


@pytest.fixture(scope="module")
def simulated():
    """A small space at 32x32 and its latency table simulated on midap (takes well under a second)."""
    from s3nas.latency.lut import compute_latency_table

    space = SearchSpace.from_config(SMALL, {}, num_classes=10, input_size=32)
    table = compute_latency_table(space, "midap", workers=1, progress=False, method="context",
                                  samples_per_option=2)
    return space, table


def test_latency_loss_alone_drives_the_thresholds_under_a_feasible_target(simulated):
    from s3nas.latency.backend import Feasibility
    from s3nas.latency.loss import latency_loss

    space, table = simulated
    torch.manual_seed(0)
    net = Supernet(space, num_classes=10)
    estimator = LatencyEstimator(table)
    target = table.min_ms + 0.4 * (table.max_ms - table.min_ms)
    Feasibility(table.min_ms, table.max_ms, "midap").check(target)  # feasible: no error, no warning
    assert float(estimator(net)) > target  # all options on at initialisation
    optimizer = torch.optim.Adam(net.threshold_parameters(), lr=0.2)
    for _ in range(200):
        optimizer.zero_grad()
        loss = latency_loss(estimator(net), target)
        if float(loss.detach()) == 0.0:
            break
        loss.backward()
        optimizer.step()
    assert table.estimate_ms(net.chosen_options()) <= target
    assert float(estimator(net).detach()) == pytest.approx(table.estimate_ms(net.chosen_options()), rel=1e-6)


def test_feasibility_bounds_of_a_simulated_table(simulated):
    from s3nas.errors import InfeasibleTargetError
    from s3nas.latency.backend import Feasibility, LatencyTargetWarning

    _, table = simulated
    feasibility = Feasibility(table.min_ms, table.max_ms, "midap")
    with pytest.raises(InfeasibleTargetError, match="latency"):
        feasibility.check(table.min_ms * 0.9)
    with pytest.warns(LatencyTargetWarning):
        feasibility.check(table.max_ms * 1.1)
