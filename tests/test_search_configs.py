"""The search's config options compose and take effect: schedules, paper experiment, optuna, joblib, bf16 and
channels-last (DDP runs for real in test_search_ddp.py)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from s3nas.config import CONF_DIR, register_configs


def _compose(overrides, hydra=False):
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("search", overrides=overrides, return_hydra_config=hydra)


def test_default_schedule_is_digits_with_paper_optimizer():
    cfg = _compose([])
    assert cfg.schedule.name == "digits" and cfg.data.name == "digits"
    opt = cfg.schedule.optimizer
    assert (opt.lr_per_256, opt.alpha, opt.momentum, opt.eps, opt.weight_decay) == (0.016, 0.9, 0.9, 1e-3, 1e-5)
    assert (opt.decay_rate, opt.decay_epochs) == (0.97, 2.4)
    assert cfg.schedule.gradient_clip_val == 10.0 and cfg.loss.label_smoothing == 0.1
    assert (cfg.deploy.input_size, cfg.deploy.num_classes) == (224, 1000)


def test_paper_imagenet_experiment():
    cfg = _compose(["experiment=paper_imagenet", "data.root=/data/imagenet"])
    assert cfg.data.name == "imagenet" and cfg.schedule.name == "imagenet"
    assert (cfg.schedule.warmup_epochs, cfg.schedule.search_epochs) == (8, 2)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.schedule.channels_last is True
    # batch 256 per GPU x 4 GPUs = 1024: the paper's 0.064
    assert cfg.data.batch_size * cfg.trainer.devices * cfg.schedule.optimizer.lr_per_256 / 256 == pytest.approx(0.064)


def test_joblib_launcher_composes():
    cfg = _compose(["hydra/launcher=joblib"], hydra=True)
    assert "joblib" in cfg.hydra.launcher._target_.lower()


def test_optuna_two_objectives():
    cfg = _compose(["hparams_search=optuna"], hydra=True)
    sweeper = cfg.hydra.sweeper
    assert "optuna" in sweeper._target_.lower()
    assert list(sweeper.direction) == ["maximize", "minimize"]
    assert set(sweeper.params) == {"loss.lambda1", "loss.lambda2"}
    assert cfg.optimized_metric == "val_acc,latency_gap_ms"


def test_sweep_summary_callback_registered():
    cfg = _compose([], hydra=True)
    assert cfg.hydra.callbacks.sweep_summary._target_ == "s3nas.runtime.sweep.SweepSummaryCallback"


def test_bf16_and_channels_last_reach_the_computation(tmp_path):
    """trainer.precision=bf16-mixed and schedule.channels_last=true change what a search step computes: the
    supernet's convolutions run in bfloat16 (CPU autocast) on channels-last tensors (one optimizer step)."""
    import torch

    from s3nas.arch.space import SearchSpace
    from s3nas.config import compose_config
    from s3nas.nn.supernet import Supernet
    from s3nas.search.module import OptimSettings, SearchModule
    from s3nas.search.runner import build_trainer
    from s3nas.runtime.entry import prepare_config

    small = ["debug=search_tiny", "supernet.depths=[1,1,1,1,1]", "supernet.head_channels=64",
             "trainer.limit_train_batches=1", "trainer.limit_val_batches=0"]
    cfg = prepare_config(compose_config("search", [*small, "trainer.precision=bf16-mixed",
                                                   "schedule.channels_last=true"], output_dir=tmp_path))
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=16)
    torch.manual_seed(0)
    supernet = Supernet(space, num_classes=10)
    optim = OptimSettings.from_schedule(cfg.schedule, global_batch=4, steps_per_epoch=1)
    module = SearchModule(supernet, optim, estimator=None, target_ms=1.0, warmup_epochs=1,
                          channels_last=bool(cfg.schedule.channels_last))
    conv = next(m for m in supernet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    conv.register_forward_hook(lambda mod, inputs, output: seen.append(
        (output.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last))))
    images = torch.randn(4, 3, 16, 16)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(4) % 10), batch_size=4)
    trainer = build_trainer(cfg, max_epochs=1, callbacks=[], loggers=[])
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 1 and seen == [(torch.bfloat16, True)]
    # the default (32-true, contiguous) differs: the switches are what changed it
    plain = prepare_config(compose_config("search", small, output_dir=tmp_path / "p"))
    supernet = Supernet(space, num_classes=10)
    conv = next(m for m in supernet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1)
    conv.register_forward_hook(lambda mod, inputs, output: seen.append(
        (output.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last))))
    seen.clear()
    module = SearchModule(supernet, optim, estimator=None, target_ms=1.0, warmup_epochs=1)
    build_trainer(plain, max_epochs=1, callbacks=[], loggers=[]).fit(module, train_dataloaders=loader)
    assert seen == [(torch.float32, False)]
