"""Supernet: phases, parameter groups, option probabilities, decoding, child export equivalence."""

from __future__ import annotations

import random

import pytest
import torch

from s3nas.arch.spec import Branch
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


def small_space(**overrides) -> SearchSpace:
    return SearchSpace.from_config({**SMALL, **overrides}, {}, num_classes=10)


def randomize(net: Supernet, rng: random.Random) -> None:
    """Random hard indicator state (thresholds far from the norms) and non-trivial BN statistics."""
    with torch.no_grad():
        for sk in net.superkernels():
            for t in (sk.kernel_thresholds, sk.channel_thresholds):
                if t is not None:
                    t.copy_(torch.tensor([rng.choice([-1e4, 1e4]) for _ in range(t.numel())]))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()


@pytest.fixture(scope="module")
def net() -> Supernet:
    torch.manual_seed(0)
    return Supernet(small_space(), num_classes=10)


def test_parameter_groups_partition_the_parameters(net):
    thresholds = {id(p) for p in net.threshold_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert thresholds and not thresholds & weights
    assert thresholds | weights == {id(p) for p in net.parameters()}
    assert all(float(p.detach().abs().sum()) == 0.0 for p in net.threshold_parameters())  # initialised to 0


def test_all_options_on_at_initialisation():
    net = Supernet(small_space(), num_classes=10)
    largest = [max(net.space.options(i), key=lambda o: (sum(b.expansion for b in o),
                                                        sum(b.kernel * b.expansion for b in o)))
               for i in range(len(net.space.positions))]
    assert net.chosen_options() == largest


def test_option_probabilities_sum_to_one_and_pick_the_decoded_option(net):
    rng = random.Random(3)
    for _ in range(3):
        randomize(net, rng)
        chosen = net.chosen_options()
        for i, block in enumerate(net.option_probabilities()):
            assert [opt for opt, _ in block] == net.space.options(i)
            probs = torch.stack([p for _, p in block])
            assert float(probs.sum()) == 1.0
            assert {opt: float(p) for opt, p in block}[chosen[i]] == 1.0


def test_decode_merges_same_kernel_branches_and_drops_skips():
    torch.manual_seed(0)
    net = Supernet(small_space(block_type="mixconv"), num_classes=10)
    residual = [i for i, p in enumerate(net.space.positions) if p.has_residual]
    plain = [i for i, p in enumerate(net.space.positions) if not p.has_residual]
    choice = [None] * len(net.blocks)
    choice[plain[0]] = (Branch(5, 2.0), Branch(5, 2.0), Branch(7, 2.0))
    choice[residual[0]] = (Branch(3, 0.0), Branch(3, 0.0), Branch(3, 0.0))  # all off: skip
    choice[residual[1]] = (Branch(3, 2.0), Branch(5, 0.0), Branch(3, 2.0))
    net.set_choice([c if c is not None else tuple(Branch(sk.kernels[-1], 2.0) for sk in b.superkernels())
                    for c, b in zip(choice, net.blocks)])
    assert net.indicator_state()[plain[0]] == (Branch(5, 2.0), Branch(5, 2.0), Branch(7, 2.0))
    options = net.chosen_options()
    assert options[plain[0]] == (Branch(5, 4.0), Branch(7, 2.0))
    assert options[residual[0]] == ()
    assert options[residual[1]] == (Branch(3, 4.0),)
    spec = net.decode()
    assert len(spec.blocks) == len(net.blocks) - 1
    assert spec.blocks[plain[0]].branches == (Branch(5, 4.0), Branch(7, 2.0))


def test_largest_branch_cannot_switch_off_without_residual():
    net = Supernet(small_space(block_type="mixconv"), num_classes=10)
    for block, pos in zip(net.blocks, net.space.positions):
        optional = [sk.first_optional for sk in block.superkernels()]
        assert optional == [True, True, pos.allow_skip]
        assert (() in block.options) == pos.allow_skip


@pytest.mark.parametrize("overrides", [{}, {"se_ratio": 0.25, "act": "swish"}, {"block_type": "mbconv"}])
def test_child_matches_supernet_in_the_same_indicator_state(overrides):
    torch.manual_seed(0)
    net = Supernet(small_space(**overrides), num_classes=10, dropout=0.0)
    rng = random.Random(0)
    x = torch.randn(4, 3, 32, 32)
    for _ in range(4):
        randomize(net, rng)
        net.eval()
        spec, child = net.extract_child()
        assert spec == net.decode()
        child.eval()
        with torch.no_grad():
            torch.testing.assert_close(child(x), net(x), atol=1e-5, rtol=1e-5)
            # training-mode BN uses batch statistics: masked channels must not leak into them either
            net.train()
            child.train()
            torch.testing.assert_close(child(x), net(x), atol=1e-4, rtol=1e-4)


def test_warmup_samples_paths_and_leaves_thresholds_without_gradient():
    torch.manual_seed(0)
    net = Supernet(small_space(), num_classes=10, dropout=0.0)
    x = torch.randn(2, 3, 32, 32)
    net.set_phase("warmup")
    net.train()
    outputs = [net(x) for _ in range(3)]
    assert not torch.allclose(outputs[0], outputs[1])
    outputs[-1].sum().backward()
    assert all(p.grad is None for p in net.threshold_parameters())
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # evaluation uses the thresholded state
    with pytest.raises(ValueError, match="phase"):
        net.set_phase("finetune")


def test_search_phase_gives_threshold_gradients_from_the_task_loss():
    torch.manual_seed(0)
    net = Supernet(small_space(), num_classes=10)
    net.set_phase("search")
    net.train()
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = [p.grad for p in net.threshold_parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_estimator_reuses_forward_indicators_only_while_parameters_are_unchanged():
    import copy

    from s3nas.latency.estimator import LatencyEstimator

    class Table:
        fixed_ms = 0.0

        def block_ms(self, i, option):
            return sum(b.kernel * b.expansion for b in option) * 0.01

    torch.manual_seed(0)
    net = Supernet(small_space(), num_classes=10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    estimator = LatencyEstimator(Table())
    x = torch.randn(2, 3, 32, 32)
    for _ in range(2):  # forward -> estimator -> backward -> step, twice: no stale graph is reused
        optimizer.zero_grad()
        loss = net(x).square().mean() + estimator(net)
        loss.backward()
        optimizer.step()
        fresh = [torch.cat([u.reshape(-1) for u in sk.indicators()]) for sk in net.superkernels()]
        with torch.no_grad():
            for sk in net.superkernels():
                sk.__dict__.pop("_cached", None)
        recomputed = [torch.cat([u.reshape(-1) for u in sk.indicators()]) for sk in net.superkernels()]
        assert all(torch.equal(a, b) for a, b in zip(fresh, recomputed))
    assert float(estimator(net)) >= 0  # after the step: recomputed, still differentiable
    net(x)
    copy.deepcopy(net)  # cached graph tensors are not copied


def test_paper_supernet_child_export_and_estimator_paths_agree():
    """The full s3nas_mixconv supernet (29 blocks): random hard state -> child == supernet, estimates agree."""
    from s3nas.config.supernet_schema import CandidatesConfig, SupernetConfig
    from s3nas.latency.estimator import LatencyEstimator

    space = SearchSpace.from_config(SupernetConfig(), CandidatesConfig(), num_classes=10)
    torch.manual_seed(0)
    net = Supernet(space, num_classes=10, dropout=0.0)
    randomize(net, random.Random(7))
    net.eval()
    spec, child = net.extract_child()
    child.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(child(x), net(x), atol=1e-4, rtol=1e-4)

    class Table:
        fixed_ms = 0.1

        def block_ms(self, i, option):
            return 0.001 * (i + 1) * sum(b.kernel ** 2 * b.expansion for b in option) + 0.01 * len(option) ** 2

    estimator = LatencyEstimator(Table())
    expected = Table.fixed_ms + sum(Table().block_ms(i, o) for i, o in enumerate(net.chosen_options()) if o)
    assert float(estimator(net)) == pytest.approx(expected, rel=1e-5)
    assert float(estimator.per_block(net)) == pytest.approx(expected, rel=1e-5)
