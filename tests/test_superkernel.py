"""Superkernel: straight-through indicator, nested ring/slice masks, warm-up sampling distribution."""

from __future__ import annotations

import torch

from s3nas.nn.superkernel import SuperKernel, chain_probs, indicator, nested_levels, sample_nested


def test_indicator_hard_forward_sigmoid_backward():
    x = torch.tensor([-2.0, -0.1, 0.0, 0.3, 4.0], requires_grad=True)
    u = indicator(x)
    assert u.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]  # exact 0/1 values, step(x) = 1[x > 0]
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (u * weights).sum().backward()
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(x.grad, weights * s * (1 - s))


def test_threshold_gradient_is_minus_sigmoid_slope():
    sk = SuperKernel([4, 8], 1, [3, 5], first_optional=False)
    ku = sk.kernel_indicators()
    ku.sum().backward()
    with torch.no_grad():
        ring = sk.weight * sk.ring_masks[1]
        x = ring.norm() - 0.0  # plain L2 norm minus the threshold (initialised to 0)
        s = torch.sigmoid(x)
    torch.testing.assert_close(sk.kernel_thresholds.grad, -(s * (1 - s)).reshape(1))
    assert ku.item() == 1.0  # thresholds start at 0: every option on


def _set(sk: SuperKernel, kernel_level: int, channel_level: int) -> None:
    with torch.no_grad():
        if sk.kernel_thresholds is not None:
            sk.kernel_thresholds.copy_(torch.tensor([-1e4 if i < kernel_level else 1e4
                                                     for i in range(sk.num_kernel_indicators)]))
        if sk.channel_thresholds is not None:
            sk.channel_thresholds.copy_(torch.tensor([-1e4 if i < channel_level else 1e4
                                                      for i in range(sk.num_channel_indicators)]))


def test_nested_kernel_rings_mask_exactly():
    torch.manual_seed(0)
    sk = SuperKernel([4, 8, 12], 1, [3, 5, 7], first_optional=True)
    for level, k in enumerate((3, 5, 7)):
        _set(sk, level, 3)
        st = sk.state()
        expected = torch.zeros_like(sk.weight)
        lo = (7 - k) // 2
        expected[..., lo:lo + k, lo:lo + k] = sk.weight.detach()[..., lo:lo + k, lo:lo + k]
        assert torch.equal(st.weight.detach(), expected)
        assert sk.choice() == (k, 12)


def test_nested_channel_slices_mask_exactly():
    torch.manual_seed(0)
    sk = SuperKernel([4, 8, 12], 1, [3, 5], first_optional=True)
    for level, channels in enumerate((0, 4, 8, 12)):
        _set(sk, 1, level)
        st = sk.state()
        assert st.gate.item() == float(level > 0)
        expected = torch.zeros(12)
        expected[:max(channels, 4)] = 1.0  # the mask holds slice 0; the gate switches the whole block
        assert torch.equal(st.channel_mask.detach(), expected)
        assert sk.choice() == (5, channels)
    # a mandatory first slice has no gate, and a single slice needs no mask
    fixed = SuperKernel([6], 1, [3, 5], first_optional=False)
    st = fixed.state()
    assert st.gate is None and st.channel_mask is None and fixed.channel_thresholds is None


def test_channel_indicator_uses_kernel_selected_weight():
    torch.manual_seed(0)
    sk = SuperKernel([4, 8], 1, [3, 5], first_optional=False)
    with torch.no_grad():
        sk.weight[4:, :, 1:4, 1:4] = 0.0  # slice 1 has weights only in the 5x5 ring
        sk.kernel_thresholds.fill_(1e4)  # kernel 3: the ring is masked -> slice 1's norm is 0
        sk.channel_thresholds.fill_(1e-3)
    _, cu = sk.indicators()
    assert cu.tolist() == [0.0]
    with torch.no_grad():
        sk.kernel_thresholds.fill_(-1e4)
    _, cu = sk.indicators()
    assert cu.tolist() == [1.0]


def test_chain_probs_sum_to_one_and_pick_the_level():
    u = torch.rand(3, requires_grad=True)
    p = chain_probs(u)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))
    p[1].backward()
    assert u.grad.abs().sum() > 0
    hard = torch.tensor([1.0, 1.0, 0.0])
    assert chain_probs(hard).tolist() == [0.0, 0.0, 1.0, 0.0]
    assert nested_levels(hard) == 2


def _chi_square(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def test_warmup_drop_rule_is_uniform_over_nested_levels():
    gen = torch.Generator().manual_seed(0)
    # chi-square critical values at p = 0.001: df 1: 10.83, df 2: 13.82, df 3: 16.27
    for n, critical in ((1, 10.83), (2, 13.82), (3, 16.27)):
        counts = [0] * (n + 1)
        for _ in range(6000):
            counts[nested_levels(sample_nested(n, gen))] += 1
        assert _chi_square(counts) < critical, (n, counts)


def test_warmup_superkernel_samples_every_sub_path_uniformly():
    torch.manual_seed(1)
    sk = SuperKernel([4, 8, 12], 1, [3, 5, 7], first_optional=True)
    sk.phase = "warmup"
    sk.train()
    counts: dict[tuple[int, int], int] = {}
    for _ in range(4800):
        st = sk.state()
        assert not st.kernel_u.requires_grad  # warm-up: constant indicators, thresholds untouched
        key = (nested_levels(st.kernel_u), nested_levels(st.channel_u))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 12  # 3 kernels x 4 channel levels (0 = skip)
    assert _chi_square(list(counts.values())) < 31.26  # df 11, p = 0.001
    sk.eval()  # evaluation uses the thresholded (deterministic) state
    assert nested_levels(sk.state().kernel_u) == 2
