"""A search on a measured device measures the states it visits near its target (schedule.measure_states_band).

A device's corrected table is an affine fit to sampled networks; where the device's latency grows faster than the
fit near the all-on network (the CPU's table under-predicted a 90%-of-range landing by 6%), a search that trusts the
table lands on states that measure over the target and the repair has to shrink them. Near the target the search
now measures each state it visits (cached per network) and its loss, kept feasible states and line search use the
measurement; elsewhere the table scaled by the last measured ratio. No real device here: the midap simulator as a
black box made steeper near the all-on network (tests/support/steep_device.py).
"""

from __future__ import annotations

import json

import pytest
from inprocess import SMALL_SPLITS
from steep_device import DRIFT, SteepDevice

from s3nas.arch import codec
from s3nas.config import compose_config
from s3nas.latency.backend import NearTargetLatency, NetworkLatency
from s3nas.search.checks import Checked
from s3nas.search.runner import _banks


class SumTable:
    """Latency of a state = the sum of its options' numbers."""

    def estimate_ms(self, options):
        return float(sum(o[0] for o in options))


class CountingBackend:
    """Measures 10% over the table's sum for networks of 8 ms and more, exactly below."""

    name, cheap_networks = "counting", False

    def __init__(self):
        self.calls = []

    def latency_ms(self, spec):
        self.calls.append(spec)
        ms = float(sum(o[0] for o in spec))
        return ms * 1.1 if ms >= 8 else ms


class Space:
    def arch_spec(self, options):
        return tuple(options)


def _state(*numbers):
    return [(n,) for n in numbers]


def test_states_near_the_target_are_measured_and_the_rest_follow_the_last_ratio():
    backend = CountingBackend()
    latency = NearTargetLatency(NetworkLatency(backend, Space()), SumTable(), target_ms=10.0, band=0.2)
    assert latency(_state(3, 3)) == 6.0 and backend.calls == []  # 6 ms: 40% under the target, the table
    assert latency(_state(5, 4.5)) == pytest.approx(10.45) and len(backend.calls) == 1  # 9.5 ms: near, measured
    assert latency.ratio == pytest.approx(1.1) and latency.measured == 1
    # far from the target the table is scaled by the last measured state's ratio, nothing measured
    assert latency(_state(10, 10)) == pytest.approx(22.0) and len(backend.calls) == 1
    assert latency(_state(2, 2)) == pytest.approx(4.4) and len(backend.calls) == 1
    # near by the scaled table (7.5 x 1.1 = 8.25 ms) though 25% under the target by the table alone
    assert latency(_state(3.5, 4)) == 7.5 and len(backend.calls) == 2 and latency.ratio == pytest.approx(1.0)
    assert latency(_state(2, 2)) == pytest.approx(4.0)  # the ratio of the state measured last
    # a state measured once is served from the cache, and its ratio is the one that counts again
    assert latency(_state(5, 4.5)) == pytest.approx(10.45) and len(backend.calls) == 2
    assert latency.ratio == pytest.approx(1.1) and latency.measured == 2


def test_a_measured_state_counts_with_the_device_noise_guard():
    backend = CountingBackend()
    latency = NearTargetLatency(NetworkLatency(backend, Space()), SumTable(), target_ms=10.0, band=0.2, guard=0.02)
    assert latency(_state(5, 4.5)) == pytest.approx(10.45 * 1.02)  # measured 10.45 ms, counted 2% higher
    assert latency.ratio == pytest.approx(1.1 * 1.02)
    assert latency(_state(2, 2)) == pytest.approx(4.0 * 1.1 * 1.02)  # the table follows the guarded ratio
    assert latency(_state(4.5, 4.5)) == pytest.approx(9.0 * 1.1 * 1.02)  # 9.9 ms measured: over by the guard


class FakeDevice:
    name, cheap_networks, budget_networks, start_noise_pct = "device", False, None, 1.5


class FakeSimulator:
    name, cheap_networks = "midap", True


def _objectives(overrides, backend, world_size=1):
    cfg = compose_config("search", overrides)
    checked = Checked(backend=backend, target_ms=10.0, deploy_space=Space(), datamodule=None, backends=[backend],
                      networks=[[(0, 10.0)], [(0, 20.0)]])
    return [bank[0] for bank in _banks(cfg, checked, [SumTable()], world_size)]


def test_the_runner_measures_states_on_a_device_only_where_it_should():
    device = FakeDevice()
    first, second = _objectives(["schedule.target_margin=0.02"], device)  # digits: measure_states_band 0.1
    assert isinstance(first.state_latency, NearTargetLatency) and first.state_latency.band == 0.1
    assert first.state_latency.target_ms == pytest.approx(9.8)  # the loss target
    assert first.state_latency.guard == pytest.approx(0.015)  # the device's noise at the search's start
    noisy = FakeDevice()
    noisy.start_noise_pct = 8.0
    assert _objectives([], noisy)[0].state_latency.guard == pytest.approx(0.05)  # at most 5%
    unknown = FakeDevice()
    unknown.start_noise_pct = None
    assert _objectives([], unknown)[0].state_latency.guard == 0.0
    assert second.state_latency.target_ms == pytest.approx(19.6)
    assert first.state_latency.network is second.state_latency.network  # one cache per device
    assert all(o.state_latency is None for o in _objectives(["schedule.measure_states_band=null"], device))
    few_shot = FakeDevice()
    few_shot.budget_networks = 30  # keeps to its budget of measurements
    assert all(o.state_latency is None for o in _objectives([], few_shot))
    with pytest.warns(UserWarning, match="schedule.measure_states_band: off under several processes"):
        assert all(o.state_latency is None for o in _objectives([], device, world_size=2))
    # a simulator's states are all simulated (simulate_states), not measured near the target
    assert all(type(o.state_latency) is NetworkLatency for o in _objectives([], FakeSimulator()))


class EvaluatingDevice(CountingBackend):
    """One measurement 5% under what the delivered statistic (evaluate's median) says."""

    def __init__(self):
        super().__init__()
        self.evaluated = []

    def latency_ms(self, spec):
        return super().latency_ms(spec) * 0.95

    def evaluate(self, spec):
        from s3nas.latency.backend import LatencyResult

        self.evaluated.append(spec)
        return LatencyResult(float(sum(o[0] for o in spec)), "median of 5")


def test_on_a_device_the_decode_uses_the_delivered_statistic_once_per_network():
    from s3nas.search.outputs import _delivered_latency, _evaluated

    device, evaluations = EvaluatingDevice(), {}
    measure = _delivered_latency(device, NetworkLatency(device, Space()), Space(), evaluations)
    assert measure(_state(5, 5)) == 10.0 and measure(_state(5, 5)) == 10.0  # not 9.5: the median, not one run
    assert len(device.evaluated) == 1 and device.calls == []
    assert _evaluated(device, _state(5, 5), None, evaluations).latency_ms == 10.0  # the delivered result itself
    assert len(device.evaluated) == 1
    simulated = FakeSimulator()
    network = NetworkLatency(device, Space())
    assert _delivered_latency(simulated, network, Space(), evaluations) is network  # a simulation: itself


def test_the_summary_counts_measured_states_once_per_device():
    from types import SimpleNamespace

    from s3nas.search.outputs import _measured_states

    shared = NetworkLatency(CountingBackend(), Space())
    a = NearTargetLatency(shared, SumTable(), target_ms=10.0, band=0.2, guard=0.01)
    b = NearTargetLatency(shared, SumTable(), target_ms=9.0, band=0.2, guard=0.03)
    a(_state(5, 4.5)), b(_state(4, 4.5)), b(_state(5, 4.5))  # two networks measured on the one device
    simulated = SimpleNamespace(state_latency=NetworkLatency(CountingBackend(), Space()))
    figures = _measured_states([SimpleNamespace(state_latency=a), simulated, SimpleNamespace(state_latency=b)])
    assert figures == {"measured_states": 2, "measured_states_guard_pct": pytest.approx(3.0)}
    assert _measured_states([simulated, SimpleNamespace(state_latency=None)]) == {
        "measured_states": None, "measured_states_guard_pct": None}


def test_the_band_is_validated():
    from s3nas.config.schedule_schema import check_schedule
    from s3nas.errors import ConfigError

    with pytest.raises(ConfigError, match="schedule.measure_states_band"):
        check_schedule(compose_config("search", ["schedule.measure_states_band=1.5"]).schedule)


def test_a_search_on_a_steep_device_meets_its_target_by_measured_states_and_its_ladder(tmp_path, run_inproc):
    """The table under-predicts the networks near the all-on one (0.70 ms is 95% of this space's range): the
    search meets the target without repair, its delivered network is the one it measured, and the table alone
    says less than the device (so trusting it would have landed over; docs/notes/front.md has the control run:
    the 8 feasible states it kept all measured over and the repair took the network).

    The device is also 3% slower at the decode than while the search measured its states (a shared CPU drifts so in
    minutes): the states kept nearest the target now measure over it, and the decode walks down the ladder of
    states the search kept under the target (one per 0.5% of closeness, line searches' states included) to one
    that meets it."""
    run_dir = tmp_path / "run"
    # 3 training batches an epoch: 9 search steps instead of the config's 30 (the 0.70 ms target is 98% of the all-on
    # network, reached by the first line searches). Checked at this length over seeds 42, 1, 2, 3: 15-22 states
    # measured, no repair, 4-5 evaluations down the ladder, the table 2-3% under the delivered network; the control
    # with the table alone (steep_device.SteepBackend, schedule.measure_states_band=null) still lands over (0.713 ms
    # measured) and is repaired. The debug space, not SMALL_SPACE: in 6 positions the corrected table's sampled
    # networks reach the steep top, the fit follows it and the table alone meets the target (the test would show
    # nothing). 1 validation batch, 2 batches for the BN statistics, 5% splits: evaluation only
    run_inproc(["search.py", "debug=search_small", "deploy.input_size=16", "deploy.num_classes=10",
                "hardware=sim_midap_blackbox", "hardware._target_=steep_device.DriftingSteepBackend",
                "latency=0.70ms", "schedule.warmup_epochs=0", "trainer.limit_train_batches=3",
                "trainer.limit_val_batches=1", "schedule.bn_recalibration_batches=2", *SMALL_SPLITS,
                f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["measured_states"] > 0 and summary["repaired"] is False, summary
    assert summary["measured_states_guard_pct"] == 0.0  # a noiseless device
    assert summary["decoded_latency_ms"] == summary["latency_ms"]  # the evaluation that decided is the one reported
    assert summary["meets_target"] and 0.9 * 0.70 <= summary["latency_ms"] <= 0.70, summary
    device = SteepDevice()
    device.drift = DRIFT
    spec = codec.load_json(run_dir / "arch.json")
    assert device.steep_ms(spec) == pytest.approx(summary["latency_ms"])  # the network in arch.json, measured now
    assert summary["estimated_ms"] < 0.995 * summary["latency_ms"]  # the table under-predicts it
    tried = summary["measured_candidates"]
    assert tried and tried[-1]["meets_target"] and not any(t["meets_target"] for t in tried[:-1])
    assert len(tried) >= 2 and tried[0]["latency_ms"][0] > 0.70  # the best kept state missed after the drift
    assert tried[-1]["latency_ms"][0] == summary["latency_ms"]


def test_a_bank_keeps_a_ladder_of_states_under_the_target():
    """One state per 0.5% band of closeness, the best of each band, best first, at most CANDIDATES: a machine a few
    percent slower at the decode still finds a kept state under the target, where the best few distinct states
    (all within 1.5% of the target) would all miss."""
    from s3nas.arch.spec import Branch
    from s3nas.search.objectives import CANDIDATES, Bank

    def raw(n):
        return [(Branch(3, float(n)),)]

    bank = Bank(objectives=[])
    for step, score in enumerate([0.985, 0.999, 0.997, 0.995, 0.93, 0.95, 0.952, 0.987]):
        if bank.wants(score):
            bank.offer(score, step, raw(step))
    assert [c[0] for c in bank.candidates] == [0.999, 0.987, 0.952, 0.93]
    assert bank.best_feasible[0] == 0.999
    assert not bank.wants(0.996) and bank.wants(0.9991) and bank.wants(0.96) and not bank.wants(0.951)
    bank.offer(0.96, 9, raw(1))  # the network of the 0.999 state again: kept once, at its best
    assert [c[0] for c in bank.candidates] == [0.999, 0.987, 0.952, 0.93]
    bank.offer(0.96, 9, raw(60))  # a new network in an empty band
    assert [c[0] for c in bank.candidates] == [0.999, 0.987, 0.96, 0.952, 0.93]
    bank.offer(0.9995, 10, raw(7))  # the 0.987 network, now better: its old band empties, it takes the top band
    assert [(c[0], c[1]) for c in bank.candidates] == [(0.9995, 10), (0.96, 9), (0.952, 6), (0.93, 4)]
    for k in range(40):
        bank.offer(0.8 + k * 0.005, 20 + k, raw(100 + k))
    assert len(bank.candidates) == CANDIDATES and bank.candidates[0][0] == 0.9995
    scores = [c[0] for c in bank.candidates]
    assert scores == sorted(scores, reverse=True) and len({int(s / 0.005 + 1e-9) for s in scores}) == CANDIDATES


@pytest.mark.parametrize("block_type", ["mixconv", "mbconv", "fused", "choice"])
def test_the_raw_state_of_scores_is_the_supernets_own(block_type, tmp_path):
    """The line search's states are kept by their raw choice, read from scores: the same as the supernet's
    indicator state when those scores are set, for every block type."""
    import torch

    from s3nas.arch.space import SearchSpace
    from s3nas.nn.supernet import Supernet
    from s3nas.search.module import OptimSettings, SearchModule

    options = [{"type": "mbconv", "kernel": 5, "expansion": 2}, {"type": "fused", "kernel": 3, "expansion": 6},
               {"type": "mixconv", "kernels": [3, 5], "expansion": 2}]
    candidates = {"options": options} if block_type == "choice" else compose_config(
        "search", ["debug=search_tiny"], output_dir=tmp_path).candidates
    space = SearchSpace.from_config({"widths": [8, 16, 16], "strides": [2, 2, 1], "depths": [2, 2, 2],
                                     "stem_channels": 8, "head_channels": 32, "block_type": block_type}, candidates,
                                    num_classes=10, input_size=16)
    torch.manual_seed(0)
    supernet = Supernet(space, num_classes=10)
    schedule = compose_config("search", ["debug=search_tiny"], output_dir=tmp_path).schedule
    module = SearchModule(supernet, OptimSettings.from_schedule(schedule, global_batch=4, steps_per_epoch=1),
                          estimator=None, target_ms=1.0, warmup_epochs=1)
    seen = set()
    for _ in range(6):
        for sk, (kernel_x, channel_x) in zip(supernet.superkernels(), module._scores()):
            sk.set_scores(torch.randn_like(kernel_x), torch.randn_like(channel_x))
        assert module._raw_of_scores(module._scores()) == supernet.indicator_state()
        seen.add(tuple(map(tuple, supernet.indicator_state())))
    assert len(seen) > 1 or block_type == "choice"  # the states differ: the check is not of one state


def test_the_decode_evaluates_each_network_once_best_first():
    """Two kept states of one network (raw branches differ, the network is the same: k3 e2 + k3 e2 == k3 e4) are
    one candidate; the next network that meets is delivered."""
    from types import SimpleNamespace

    from s3nas.arch.spec import Branch
    from s3nas.search.outputs import _measured_feasible

    def raw(*blocks):
        return [tuple(Branch(k, e) for k, e in block) for block in blocks]

    landing = raw([(3, 4)], [(5, 6)])
    same_network = raw([(3, 2), (3, 2)], [(5, 6)])
    smaller = raw([(3, 4)], [(5, 4)])
    evaluated = []

    def measure(options):
        evaluated.append(tuple(options))
        return 10.0 + sum(b.expansion for option in options for b in option) / 10  # 11.0, 10.8 ms

    bank = SimpleNamespace(candidates=[(0.99, 7, same_network), (0.98, 5, smaller)])
    chosen, step, tried = _measured_feasible(SimpleNamespace(bank=bank), [(None, None, 10.9, measure)], landing, 9)
    assert chosen == smaller and step == 5
    assert [t["step"] for t in tried] == [9, 5] and [t["meets_target"] for t in tried] == [False, True]
    assert len(evaluated) == 2


def test_a_line_search_on_a_measured_device_lays_a_ladder_under_its_landing(tmp_path):
    """After a line search lands under the target, the states the search reaches next as its thresholds rise (every
    score lowered alike) are measured one every LADDER_SPACING of the target by the table, down to
    (1 - LADDER_DEPTH) x the target, in bands of closeness the bank does not hold yet, and kept by the bank: the
    decode's ladder. Where the latency is simulated (no measured states) nothing more is evaluated."""
    from types import SimpleNamespace

    import torch

    from s3nas.arch.space import SearchSpace
    from s3nas.nn.supernet import Supernet
    from s3nas.search import module as search_module
    from s3nas.search.module import OptimSettings, SearchModule
    from s3nas.search.objectives import LatencyObjective

    class MacsTable:
        def estimate_ms(self, options):
            return 8.0 + sum(b.kernel * b.expansion for o in options for b in o) / 100.0  # steps of ~1%

    class Device:
        name, cheap_networks = "device", False

        def __init__(self):
            self.calls = 0

        def latency_ms(self, spec):
            self.calls += 1
            return MacsTable().estimate_ms(spec)

    cfg = compose_config("search", ["debug=search_tiny"], output_dir=tmp_path)
    space = SearchSpace.from_config({"widths": [8, 16, 16], "strides": [2, 2, 1], "depths": [3, 3, 3],
                                     "stem_channels": 8, "head_channels": 32, "block_type": "mbconv"},
                                    cfg.candidates, num_classes=10, input_size=16)
    torch.manual_seed(0)
    supernet = Supernet(space, num_classes=10)
    optim = OptimSettings.from_schedule(cfg.schedule, global_batch=4, steps_per_epoch=1)
    table = MacsTable()

    def module_with(state_latency, target_ms):
        objective = LatencyObjective("device", SimpleNamespace(table=table), target_ms, target_ms, state_latency)
        return SearchModule(supernet, optim, warmup_epochs=1, banks=[[objective]])

    probe = module_with(None, 1.0)
    before = [(torch.ones_like(k), torch.ones_like(c)) for k, c in probe._scores()]  # everything on
    generator = torch.Generator().manual_seed(1)
    after = [(1 - 4 * torch.rand(k.shape, generator=generator), 1 - 4 * torch.rand(c.shape, generator=generator))
             for k, c in before]  # each indicator flips off somewhere along the step (or its extension)
    top_ms = table.estimate_ms(probe._options_of_scores(before))
    end_ms = table.estimate_ms(probe._options_of_scores(after))
    target_ms = end_ms + 0.9 * (top_ms - end_ms)

    device = Device()
    latency = NearTargetLatency(NetworkLatency(device, SimpleNamespace(arch_spec=tuple)), table, target_ms, band=0.2)
    module = module_with(latency, target_ms)
    landing_ms, alpha, scores = module._line_search(before, after)
    landed, searched = module.bank.best_feasible, device.calls
    kept = {c[0] for c in module.bank.candidates}  # the line search's own states under the target
    laid = module._lay_ladder(scores)
    assert 2 <= laid <= search_module.LADDER_RUNGS
    assert device.calls - searched == laid  # networks measured now (a state the line search measured is cached)
    rungs = sorted({c[0] for c in module.bank.candidates} - kept, reverse=True)
    assert rungs and all(1.0 - search_module.LADDER_DEPTH <= r < landed[0] for r in rungs), (rungs, landed)
    assert all(a - b >= search_module.LADDER_SPACING - 1e-6 for a, b in zip(rungs, rungs[1:]))
    assert module._lay_ladder(scores) == 0  # laid again: every band it reaches is held, nothing is measured
    assert module.bank.best_feasible == landed  # the ladder is under the landing, which stays the decode's first
    simulated = module_with(lambda options: table.estimate_ms(options), target_ms)
    assert simulated._lay_ladder(scores) == 0
    assert landing_ms[0] <= target_ms


def test_a_decode_on_a_faster_machine_raises_to_the_largest_kept_state_that_meets():
    """The machine is faster at the decode than when the search measured: the landing evaluates under 0.95 x the
    target, so the states the search kept just over the target are evaluated, nearest first, and the largest that
    meets is delivered (the walk stops at the first that misses). At or over 0.95 x the target nothing more is tried;
    a bank keeps the nearest distinct state of each band over the target, within ABOVE_REACH, on a device only."""
    from types import SimpleNamespace

    from s3nas.arch.spec import Branch
    from s3nas.search.objectives import ABOVE_REACH, Bank
    from s3nas.search.outputs import _measured_feasible

    def state(n):
        return [(Branch(3, float(n)),)]

    bank = Bank(objectives=[])
    for step, score in enumerate([1.03, 1.004, 1.002, 1.012, 1.0 + ABOVE_REACH + 0.01, 0.99, 1.02]):
        if bank.wants_above(score):
            bank.offer_above(score, step, state(step))
    assert [c[0] for c in bank.above] == [1.002, 1.012, 1.02, 1.03]  # one per 0.5% band, the nearest; 0.99 meets
    assert not bank.wants_above(1.003) and bank.wants_above(1.0005) and not bank.wants_above(1.2)
    restored = Bank([SimpleNamespace(target_ms=1.0)])
    restored.restore_meta(bank.to_meta())
    assert restored.above == bank.above

    now_ms = {2: 0.96, 3: 0.985, 6: 1.001, 1: 0.95, 9: 0.91, 12: 0.93}  # what the decode measures now, target 1.0
    calls = []

    def measure(options):
        calls.append(int(options[0][0].expansion))
        return now_ms[int(options[0][0].expansion)]

    constraints = [(SimpleNamespace(cheap_networks=False), None, 1.0, measure)]
    raw, step, tried = _measured_feasible(SimpleNamespace(bank=bank), constraints, state(9), 50)
    assert calls == [9, 2, 3, 6] and raw == state(3) and step == 3  # 1.002 and 1.012 meet now, 1.02 does not
    assert [t["meets_target"] for t in tried] == [True, True, True, False]
    calls.clear()
    assert _measured_feasible(SimpleNamespace(bank=bank), constraints, state(1), 40) == (state(1), 40, None)
    assert calls == [1]  # 0.95 x the target: delivered as it is
    # evaluations out of the walk's order (a noisy machine): the largest that meets is delivered, not the last
    bank.above.insert(2, (1.011, 12, state(12)))
    calls.clear()
    raw, step, tried = _measured_feasible(SimpleNamespace(bank=bank), constraints, state(9), 50)
    assert calls == [9, 2, 3, 12, 6] and raw == state(3) and step == 3  # 12 (0.93) met last


def test_states_just_over_the_target_are_kept_on_a_measured_device_only(tmp_path):
    from types import SimpleNamespace

    import torch

    from s3nas.arch.space import SearchSpace
    from s3nas.nn.supernet import Supernet
    from s3nas.search.module import OptimSettings, SearchModule
    from s3nas.search.objectives import LatencyObjective

    cfg = compose_config("search", ["debug=search_tiny"], output_dir=tmp_path)
    space = SearchSpace.from_config({"widths": [8, 16], "strides": [2, 1], "depths": [1, 1], "stem_channels": 8,
                                     "head_channels": 32, "block_type": "mbconv"}, cfg.candidates, num_classes=10,
                                    input_size=16)
    torch.manual_seed(0)
    supernet = Supernet(space, num_classes=10)
    optim = OptimSettings.from_schedule(cfg.schedule, global_batch=4, steps_per_epoch=1)
    measured = SimpleNamespace(guard=0.0, __call__=None)
    for state_latency, kept in ((measured, 1), (None, 0)):
        objective = LatencyObjective("hw", SimpleNamespace(table=None), 1.0, 1.0, state_latency)
        module = SearchModule(supernet, optim, warmup_epochs=1, banks=[[objective]])
        module._track_feasible([1.01])
        module._track_feasible([1.5])  # too far over
        assert len(module.bank.above) == kept and module.bank.best_feasible is None
