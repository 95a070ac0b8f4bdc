"""Unit tests of the search package's pieces that need no training: schedule, sampler, repair, sweep."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from s3nas.arch.spec import Branch
from s3nas.errors import ConfigError
from s3nas.search import objective
from s3nas.search.data import EpochSeededSampler, ItemSeededDataset
from s3nas.search.module import lr_factor
from s3nas.search.repair import contained, fit_to_target
from s3nas.search.runner import optim_settings, read_checkpoint_meta, world_size_of
from s3nas.search.sweep import write_sweep_summary


def test_lr_decays_097_every_24_epochs():
    steps_per_epoch = 10
    decay_steps = round(2.4 * steps_per_epoch)
    assert lr_factor(0, 0.97, decay_steps) == 1.0
    assert lr_factor(decay_steps - 1, 0.97, decay_steps) == 1.0
    assert lr_factor(decay_steps, 0.97, decay_steps) == pytest.approx(0.97)
    assert lr_factor(10 * decay_steps + 3, 0.97, decay_steps) == pytest.approx(0.97**10)


def test_lr_scales_with_global_batch():
    from omegaconf import OmegaConf

    schedule = OmegaConf.create({"optimizer": {"lr_per_256": 0.016, "alpha": 0.9, "momentum": 0.9, "eps": 1e-3,
                                               "weight_decay": 1e-5, "decay_rate": 0.97, "decay_epochs": 2.4},
                                 "threshold_lr_scale": 2.0, "gradient_clip_val": 10.0})
    optim = optim_settings(schedule, batch_size=256, world_size=4, steps_per_epoch=100)
    assert optim.lr == pytest.approx(0.064)  # the paper's 0.064 at batch 1024
    assert optim.decay_steps == 240
    assert optim.threshold_lr_scale == 2.0
    assert world_size_of(OmegaConf.create({"devices": 4, "num_nodes": 2})) == 8
    assert world_size_of(OmegaConf.create({"devices": "auto"})) == 1


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
    return tuple(Branch(k, e) for k, e in pairs)


@dataclass
class _Position:
    allow_skip: bool = True


class _Space:
    """Two blocks, four options each (stand-in for SearchSpace in this test only)."""

    positions = [_Position(), _Position()]

    def options(self, i):
        return [(), _opt((3, 2)), _opt((3, 4)), _opt((3, 2), (5, 2))]


class _Table:
    """LUT stand-in: latency proportional to expansion * kernel^2."""

    fixed_ms = 0.5

    def block_ms(self, i, option):
        return sum(b.expansion * b.kernel**2 for b in option) * 0.01 * (i + 1)

    def estimate_ms(self, options):
        return self.fixed_ms + sum(self.block_ms(i, o) for i, o in enumerate(options))


def test_contained_only_allows_switching_off():
    assert contained((), _opt((3, 2)))
    assert contained(_opt((3, 2)), _opt((3, 2), (5, 2)))
    assert not contained(_opt((5, 2)), _opt((3, 4)))
    assert not contained(_opt((3, 4)), _opt((3, 2)))


def test_fit_to_target_reaches_target_with_few_steps():
    table, space = _Table(), _Space()
    options = [_opt((3, 2), (5, 2)), _opt((3, 2), (5, 2))]
    start_ms = table.estimate_ms(options)
    target_ms = start_ms - 0.3
    result = fit_to_target(options, space, table, target_ms)
    assert result.repaired
    assert table.estimate_ms(result.options) <= target_ms
    assert table.estimate_ms(result.options) >= 0.5 * target_ms  # did not throw everything away
    for new, old in zip(result.options, options):
        assert contained(new, old)


def test_fit_to_target_follows_the_simulator_gap():
    table, space = _Table(), _Space()
    options = [_opt((3, 2), (5, 2)), _opt((3, 2), (5, 2))]
    target_ms = table.estimate_ms(options) - 0.1
    # the "simulator" is 0.2 ms slower than the LUT: the repair must go further than the LUT asks
    result = fit_to_target(options, space, table, target_ms, simulate_ms=lambda o: table.estimate_ms(o) + 0.2)
    assert table.estimate_ms(result.options) + 0.2 <= target_ms


def test_no_repair_when_under_target():
    table, space = _Table(), _Space()
    options = [_opt((3, 2)), _opt((3, 2))]
    result = fit_to_target(options, space, table, table.estimate_ms(options) + 1.0)
    assert not result.repaired and result.options == options


# ---------------------------------------------------------------------------------- misc
def test_objective_returns_named_summary_values():
    summary = {"val_acc": 0.9, "latency_gap_ms": 0.1}
    assert objective(summary, "val_acc,latency_gap_ms") == (0.9, 0.1)
    assert objective(summary, "val_acc") == 0.9
    assert objective(summary, None) == 0.9


def test_checkpoint_errors_are_user_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="ckpt_path"):
        read_checkpoint_meta(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        read_checkpoint_meta(bad)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ConfigError, match="not an s3nas search checkpoint"):
        read_checkpoint_meta(foreign)


def test_sweep_summary_collects_jobs(tmp_path: Path):
    for job, (l1, sim) in enumerate([(5.0, 2.4), (30.0, 2.2)]):
        job_dir = tmp_path / str(job)
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text(f"- loss.lambda1={l1}\n")
        (job_dir / "summary.json").write_text(json.dumps(
            {"target_ms": 2.5, "estimated_ms": sim, "simulated_ms": sim, "val_acc": 0.5, "lambda1": l1,
             "lambda2": 100.0, "repaired": False, "search_seconds": 1.0}))
    rows = write_sweep_summary(tmp_path)
    assert [r["lambda1"] for r in rows] == [5.0, 30.0]
    csv_text = (tmp_path / "sweep_summary.csv").read_text()
    assert "loss.lambda1=30.0" in csv_text and "simulated_ms" in csv_text.splitlines()[0]
    assert (tmp_path / "sweep_summary.md").read_text().count("\n") == 4
