"""Unit tests of the search package's pieces that need no training: schedule, sampler, repair, sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s3nas.arch.spec import Branch
from s3nas.errors import ConfigError
from s3nas.search import objective
from s3nas.data.resume import EpochSeededSampler, ItemSeededDataset
from s3nas.config.schedule_schema import check_schedule
from s3nas.search.module import OptimSettings, SearchModule
from s3nas.search.repair import fit_to_target, shrinks
from s3nas.search.runner import readable_checkpoint, resume_checkpoint, world_size_of
from s3nas.search.sweep import write_sweep_summary


def _schedule(**changes):
    from omegaconf import OmegaConf

    from s3nas.config.schedule_schema import ScheduleConfig

    schedule = OmegaConf.structured(ScheduleConfig)
    for key, value in changes.items():
        OmegaConf.update(schedule, key, value)
    return schedule


def test_search_module_lr_decays_097_every_24_steps():
    """The search module's own optimizer and scheduler: the default schedule's x0.97 every 2.4 epochs is
    every 24 steps at 10 steps an epoch, for the weights and the thresholds alike (thresholds at lr x scale)."""
    from s3nas.arch.space import SearchSpace
    from s3nas.nn.supernet import Supernet

    optim = OptimSettings.from_schedule(_schedule(**{"thresholds.lr_scale": 3.0}), global_batch=64, steps_per_epoch=10)
    small = dict(widths=[8, 16], depths=[1, 1], strides=[2, 2], stem_channels=8, head_channels=16, block_type="mbconv")
    supernet = Supernet(SearchSpace.from_config(small, {}, num_classes=10), num_classes=10)
    config = SearchModule(supernet, optim, estimator=None, target_ms=1.0, warmup_epochs=1).configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"  # stepped per optimizer step, not per epoch
    base = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert base["weights"] == pytest.approx(0.016 * 64 / 256) and base["thresholds"] == pytest.approx(3 * base["weights"])
    lrs = []
    for _ in range(49):
        lrs.append({g["name"]: g["lr"] for g in optimizer.param_groups})
        optimizer.step()
        scheduler.step()
    for name, lr in base.items():
        assert lrs[23][name] == pytest.approx(lr) and lrs[24][name] == pytest.approx(0.97 * lr)
        assert lrs[47][name] == pytest.approx(0.97 * lr) and lrs[48][name] == pytest.approx(0.97**2 * lr)


def test_lr_scales_with_global_batch():
    from omegaconf import OmegaConf

    optim = OptimSettings.from_schedule(_schedule(**{"thresholds.lr_scale": 2.0}), global_batch=1024,
                                        steps_per_epoch=100)
    assert optim.lr == pytest.approx(0.064)  # the paper's 0.064 at batch 1024
    assert optim.decay_steps == 240
    assert optim.threshold_lr_scale == 2.0
    assert world_size_of(OmegaConf.create({"devices": 4, "num_nodes": 2})) == 8
    assert world_size_of(OmegaConf.create({"devices": "auto"})) == 1


@pytest.mark.parametrize("key,value,match", [
    ("warmup_epochs", -1, "schedule.warmup_epochs: must be an integer >= 0"),
    ("search_epochs", 0, "schedule.search_epochs: must be an integer >= 1"),
    ("optimizer.lr_per_256", float("nan"), "schedule.optimizer.lr_per_256"),
    ("thresholds.init", "random", "schedule.thresholds.init"),
    ("decode", "best", "schedule.decode"),
    ("thresholds.approach_band", 0.0, "schedule.thresholds.approach_band"),
])
def test_schedule_values_are_checked(key, value, match):
    with pytest.raises(ConfigError, match=match):
        check_schedule(_schedule(**{key: value}))


def test_approach_speed_slows_near_the_target_and_stops_under_it():
    optim = OptimSettings.from_schedule(_schedule(**{"thresholds.approach_band": 0.2, "thresholds.approach_floor": 0.1}),
                                        global_batch=64, steps_per_epoch=10)
    speed = SearchModule._approach_speed
    stand_in = type("M", (), {"optim": optim, "loss_target_ms": 2.0})()
    assert speed(stand_in, 4.0) == 1.0  # far above: full speed
    assert speed(stand_in, 2.2) == pytest.approx(0.5)  # 0.2 ms over = half the 0.4 ms band
    assert speed(stand_in, 2.01) == pytest.approx(0.1)  # floor
    assert speed(stand_in, 2.0) == 0.0 and speed(stand_in, 1.5) == 0.0  # at or under: thresholds stop


def test_sampler_order_depends_on_seed_and_epoch_only():
    a, b = EpochSeededSampler(50, seed=3), EpochSeededSampler(50, seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(123)  # global RNG state must not matter
    assert list(b) == first
    a.set_epoch(1)
    second = list(a)
    assert second != first
    assert sorted(i % 50 for i in second) == list(range(50))


def test_item_seeded_dataset_reproducible_augmentation():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(2) + i

    data = ItemSeededDataset(Noisy(), seed=1)
    torch.manual_seed(5)
    x = data[6]
    torch.manual_seed(99)
    assert torch.equal(data[6], x)  # same (epoch, index) -> same augmentation
    assert not torch.equal(data[2], x)  # same index, other epoch -> other augmentation


# ---------------------------------------------------------------------------------- fit to target
def _opt(*pairs):
    return tuple(Branch(k, float(e)) for k, e in pairs)


# A MixConv-like block: two superkernels, kernels 3/5 and 3/5/7, expansions 0 (off) or 2.
LEVELS = [((3, 5), (0.0, 2.0)), ((3, 5, 7), (0.0, 2.0))]


class _Space:
    """Two blocks of the two-superkernel kind (stand-in for SearchSpace in this test only)."""

    def options(self, i):
        from itertools import product

        from s3nas.arch.space import canonical

        states = [[Branch(k, e) for k in ks for e in es] for ks, es in LEVELS]
        return sorted({canonical(c) for c in product(*states)}, key=str)


class _Table:
    """LUT stand-in: latency proportional to expansion * kernel^2."""

    fixed_ms = 0.5

    def block_ms(self, i, option):
        return sum(b.expansion * b.kernel**2 for b in option) * 0.01 * (i + 1)

    def estimate_ms(self, options):
        return self.fixed_ms + sum(self.block_ms(i, o) for i, o in enumerate(options))


def _never_grows(new_raw, old_raw):
    return all(n.kernel <= o.kernel and n.expansion <= o.expansion for n, o in zip(new_raw, old_raw))


def test_shrinks_only_switch_one_indicator_off():
    raw = _opt((5, 2), (7, 2))
    steps = shrinks(raw, LEVELS)
    assert set(steps) == {_opt((3, 2), (7, 2)), _opt((5, 0), (7, 2)), _opt((5, 2), (5, 2)), _opt((5, 2), (7, 0))}
    assert all(_never_grows(s, raw) for s in steps)
    # the counter-example of the old containment test: k3e2 + k5e2 must never become k5e4 (capacity 68 -> 100)
    raw = _opt((3, 2), (5, 2))
    assert all(_never_grows(s, raw) for s in shrinks(raw, LEVELS))


def test_fit_to_target_reaches_target_and_never_grows_a_branch():
    table, space = _Table(), _Space()
    raw = [_opt((5, 2), (7, 2)), _opt((3, 2), (5, 2))]
    target_ms = table.estimate_ms(result_options(raw)) - 0.3
    result = fit_to_target(raw, [LEVELS, LEVELS], space, table, target_ms)
    assert result.repaired
    assert table.estimate_ms(result.options) <= target_ms
    assert table.estimate_ms(result.options) >= 0.5 * target_ms  # did not throw everything away
    for new, old in zip(result.raw, raw):
        assert _never_grows(new, old)


def result_options(raw):
    from s3nas.arch.space import canonical

    return [canonical(r) for r in raw]


def test_fit_to_target_follows_the_simulator_gap():
    table, space = _Table(), _Space()
    raw = [_opt((5, 2), (7, 2)), _opt((5, 2), (7, 2))]
    target_ms = table.estimate_ms(result_options(raw)) - 0.1
    # the "simulator" is 0.2 ms slower than the LUT: the repair must go further than the LUT asks
    result = fit_to_target(raw, [LEVELS, LEVELS], space, table, target_ms,
                           network_ms=lambda o: table.estimate_ms(o) + 0.2)
    assert table.estimate_ms(result.options) + 0.2 <= target_ms


def test_no_repair_when_under_target():
    table, space = _Table(), _Space()
    raw = [_opt((3, 2), (3, 0)), _opt((3, 2), (3, 0))]
    result = fit_to_target(raw, [LEVELS, LEVELS], space, table, table.estimate_ms(result_options(raw)) + 1.0)
    assert not result.repaired and result.raw == raw


# ---------------------------------------------------------------------------------- misc
def test_objective_returns_named_summary_values():
    summary = {"val_acc": 0.9, "latency_gap_ms": 0.1}
    assert objective(summary, "val_acc,latency_gap_ms") == (0.9, 0.1)
    assert objective(summary, "val_acc") == 0.9
    assert objective(summary, None) == 0.9


def test_checkpoint_errors_are_user_errors(tmp_path: Path):
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match="ckpt_path"):
        resume_checkpoint(OmegaConf.create({"ckpt_path": str(tmp_path / "missing.ckpt")}), None)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="not a readable s3nas search checkpoint"):
        resume_checkpoint(OmegaConf.create({"ckpt_path": str(bad)}), None)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    assert not readable_checkpoint(foreign)


def test_resume_picks_the_newest_readable_checkpoint(tmp_path: Path):
    import os
    import time

    from omegaconf import OmegaConf

    good = tmp_path / "epoch_001.ckpt"
    torch.save({"state_dict": {}, "s3nas": {"phase": "warmup"}}, good)
    truncated = tmp_path / "last.ckpt"
    truncated.write_bytes(good.read_bytes()[:20])  # a write that failed half-way (full disk)
    later = time.time() + 5
    os.utime(truncated, (later, later))
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert resume_checkpoint(OmegaConf.create({"ckpt_path": None}), tmp_path) == good


def test_sweep_summary_collects_jobs(tmp_path: Path):
    from s3nas.outputs import SearchSummary, example, write_summary

    for job, (l1, sim) in enumerate([(5.0, 2.4), (30.0, 2.2)]):
        job_dir = tmp_path / str(job)
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text(f"- loss.lambda1={l1}\n")
        write_summary(job_dir, example(SearchSummary, target_ms=2.5, estimated_ms=sim, latency_ms=sim, val_acc=0.5,
                                       lambda1=l1, lambda2=100.0, repaired=False, search_seconds=1.0))
    rows = write_sweep_summary(tmp_path)
    assert [r["lambda1"] for r in rows] == [5.0, 30.0] and [r["latency_ms"] for r in rows] == [2.4, 2.2]
    csv_text = (tmp_path / "sweep_summary.csv").read_text()
    assert "loss.lambda1=30.0" in csv_text and "latency_ms" in csv_text.splitlines()[0]
    assert (tmp_path / "sweep_summary.md").read_text().count("\n") == 4


def test_below_norm_init_puts_every_indicator_input_at_the_margin():
    from s3nas.nn.supernet import Supernet
    from s3nas.search.module import init_thresholds_below_norms
    from s3nas.arch.space import SearchSpace

    tiny = {"name": "tiny", "widths": [16, 24], "strides": [2, 2], "depths": [2, 2], "stem_channels": 16,
            "head_channels": 32}
    space = SearchSpace.from_config(tiny, {"mixconv": {"max_kernels": [3, 5], "expansions": [0, 2], "min_kernel": 3}},
                                    num_classes=10, input_size=32)
    net = Supernet(space, num_classes=10)
    count = init_thresholds_below_norms(net, 3.0)
    assert count == sum(p.numel() for p in net.threshold_parameters()) > 0
    for sk in net.superkernels():
        for x in sk.scores():
            assert torch.allclose(x, torch.full_like(x, 3.0), atol=1e-4)
