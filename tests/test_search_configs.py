"""The search's config options compose: schedules, paper experiment, DDP, SLURM launcher, optuna, joblib."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

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


def test_ddp_and_slurm_compose():
    cfg = _compose(["trainer=ddp", "hydra/launcher=submitit_slurm", "trainer.devices=8"], hydra=True)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 8 and cfg.trainer.sync_batchnorm
    assert "submitit" in cfg.hydra.launcher._target_.lower()


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
    assert cfg.hydra.callbacks.sweep_summary._target_ == "s3nas.search.sweep.SweepSummaryCallback"


def test_bf16_and_channels_last_switches():
    cfg = _compose(["trainer.precision=bf16-mixed", "schedule.channels_last=true"])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.schedule.channels_last is True
    OmegaConf.to_container(cfg.schedule, resolve=True)
