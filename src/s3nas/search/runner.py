"""The search pipeline behind ``python search.py``.

target -> hardware profile -> data -> search spaces (training shape, deployment shape) -> latency table
-> feasibility -> warm-up fit -> search fit -> decode -> (fit to target) -> end-to-end simulation ->
arch.json, summary.json, W&B summary/artifacts, printed table. Every user error is raised before the
first training step; arch.json is written atomically and only on success.

Checkpoints (``<run_dir>/checkpoints``): ``warmup-last.ckpt`` during warm-up, ``warmup.ckpt`` once it
is done (the search phase always starts from it), ``last.ckpt`` during the search. A run resumes from
``ckpt_path=...`` (either phase) or, without it, from whatever its run dir holds.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from s3nas.errors import ConfigError
from s3nas.search.module import InterruptAfter, OptimSettings, SearchModule, WarmupModule

WARMUP_DONE = "warmup.ckpt"
WARMUP_LAST = "warmup-last"
SEARCH_LAST = "last"


# ----------------------------------------------------------------------------------- small helpers
def run_dir_of(cfg: DictConfig) -> Path:
    """The Hydra run dir of this job (paths.output_dir)."""
    try:
        return Path(cfg.paths.output_dir)
    except Exception:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)


def load_hardware(hardware_cfg) -> Any:
    """Simulator profile from ``hardware.name`` / ``hardware.profile`` (ConfigError when unknown)."""
    import simulator

    name_or_path = hardware_cfg.get("profile") or hardware_cfg.get("name")
    key = "hardware.profile" if hardware_cfg.get("profile") else "hardware.name"
    try:
        return simulator.load_profile(str(name_or_path))
    except (ValueError, FileNotFoundError, KeyError, OSError) as error:
        try:
            known = ", ".join(simulator.list_profiles())
        except Exception:
            known = "midap, systolic, eyeriss"
        raise ConfigError(f"{key}: unknown hardware '{name_or_path}' ({error}); use one of {known} "
                          f"or hardware.profile=<profile.yaml>") from None


def read_checkpoint_meta(path: str | Path) -> dict:
    """The s3nas block of a checkpoint (phase, step offsets); ConfigError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at '{path}'")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated/corrupt files raise many different errors
        raise ConfigError(f"ckpt_path: '{path}' is not a readable checkpoint "
                          f"({type(error).__name__}); delete it or pass another ckpt_path") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path: '{path}' is not a Lightning checkpoint (no state_dict)")
    meta = checkpoint.get("s3nas")
    if not isinstance(meta, dict) or meta.get("phase") not in ("warmup", "search"):
        raise ConfigError(f"ckpt_path: '{path}' is not an s3nas search checkpoint (no phase recorded)")
    return dict(meta, optimizer_states=checkpoint.get("optimizer_states"),
                state_dict=checkpoint["state_dict"])


def plan_resume(cfg: DictConfig, ckpt_dir: Path) -> dict:
    """Which phase to resume from which file: {'warmup': path|None, 'search': path|None, 'warmup_done': path|None}."""
    plan: dict = {"warmup": None, "search": None, "warmup_done": None}
    done = ckpt_dir / WARMUP_DONE
    if cfg.get("ckpt_path"):
        meta = read_checkpoint_meta(cfg.ckpt_path)
        plan[meta["phase"]] = Path(cfg.ckpt_path)
        if meta["phase"] == "search":
            plan["search_meta"] = meta
        return plan
    if (ckpt_dir / f"{SEARCH_LAST}.ckpt").exists():
        plan["search"] = ckpt_dir / f"{SEARCH_LAST}.ckpt"
        plan["search_meta"] = read_checkpoint_meta(plan["search"])
    elif done.exists():
        read_checkpoint_meta(done)
        plan["warmup_done"] = done
    elif (ckpt_dir / f"{WARMUP_LAST}.ckpt").exists():
        plan["warmup"] = ckpt_dir / f"{WARMUP_LAST}.ckpt"
        read_checkpoint_meta(plan["warmup"])
    return plan


def optim_settings(schedule: DictConfig, batch_size: int, world_size: int, steps_per_epoch: int) -> OptimSettings:
    """Paper optimizer numbers with lr scaled by the global batch size (lr_per_256 * batch / 256)."""
    opt = schedule.optimizer
    global_batch = batch_size * world_size
    return OptimSettings(
        lr=float(opt.lr_per_256) * global_batch / 256.0,
        alpha=float(opt.alpha), momentum=float(opt.momentum), eps=float(opt.eps),
        weight_decay=float(opt.weight_decay),
        threshold_lr_scale=float(schedule.get("threshold_lr_scale", 1.0)),
        threshold_eps=schedule.get("threshold_eps"),
        decay_rate=float(opt.decay_rate),
        decay_steps=max(1, round(float(opt.decay_epochs) * steps_per_epoch)),
        gradient_clip_val=schedule.get("gradient_clip_val"),
        threshold_square_avg_init=schedule.get("threshold_square_avg_init"),
        threshold_init_margin=schedule.get("threshold_init_margin"),
        threshold_momentum=schedule.get("threshold_momentum"),
    )


def world_size_of(trainer_cfg) -> int:
    """Devices x nodes when given as numbers (lr scaling); 1 otherwise."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int):
        count = devices
    elif OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        count = len(devices)
    else:
        count = 1
    return max(1, count) * max(1, int(trainer_cfg.get("num_nodes", 1) or 1))


# ----------------------------------------------------------------------------------- trainers
def build_trainer(cfg: DictConfig, *, max_epochs: int, callbacks: list, loggers: list) -> pl.Trainer:
    """pl.Trainer from cfg.trainer with the phase's epochs, our callbacks and loggers."""
    from hydra.utils import instantiate

    from s3nas.utils.callbacks import build_callbacks

    # cfg.callbacks (progress bar, LR monitor, ...) except its ModelCheckpoint: each phase has its own.
    extra_callbacks = [c for c in build_callbacks(cfg, loggers) if not isinstance(c, pl.callbacks.ModelCheckpoint)]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("max_epochs", None)
    trainer_cfg.setdefault("_target_", "pytorch_lightning.Trainer")
    if trainer_cfg.get("deterministic") in (None, False) and cfg.schedule.get("deterministic", True):
        trainer_cfg["deterministic"] = True if trainer_cfg.get("accelerator", "cpu") == "cpu" else "warn"
    if trainer_cfg.get("num_sanity_val_steps") is None:
        trainer_cfg["num_sanity_val_steps"] = 0
    if trainer_cfg.get("log_every_n_steps") is None or cfg.schedule.get("log_every_n_steps"):
        trainer_cfg["log_every_n_steps"] = int(cfg.schedule.get("log_every_n_steps") or 10)
    trainer_cfg.pop("gradient_clip_val", None)  # the modules clip the weights themselves
    return instantiate(trainer_cfg, max_epochs=max_epochs, callbacks=callbacks + extra_callbacks,
                       logger=loggers or False, enable_checkpointing=True, _convert_="all")


def phase_checkpoint(ckpt_dir: Path, last_name: str, every_n_train_steps: int | None) -> pl.callbacks.ModelCheckpoint:
    """Latest checkpoint of a phase at every epoch end (and every N steps if set); ``<last_name>.ckpt`` links to it."""
    callback = pl.callbacks.ModelCheckpoint(
        dirpath=str(ckpt_dir), filename=(last_name if last_name != SEARCH_LAST else "search") + "-{epoch:03d}-{step:06d}",
        monitor=None, save_top_k=1, save_last="link", every_n_train_steps=every_n_train_steps or None,
        save_on_train_epoch_end=True, enable_version_counter=False)
    callback.CHECKPOINT_NAME_LAST = last_name
    return callback


# ----------------------------------------------------------------------------------- pipeline
def run_search(cfg: DictConfig) -> dict:
    """Run the whole search; returns the summary dict (also written to summary.json)."""
    from s3nas.config import resolve_target_ms
    from s3nas.data import build_datamodule
    from s3nas.latency.feasibility import check_target
    from s3nas.latency.lut import build_latency_table
    from s3nas.space import SearchSpace

    started = time.time()
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = Path(cfg.callbacks.model_checkpoint.dirpath) if cfg.get("callbacks") and cfg.callbacks.get(
        "model_checkpoint") else run_dir / "checkpoints"
    schedule = cfg.schedule

    # 1. everything a user can get wrong, before any training.
    profile = load_hardware(cfg.hardware)
    target_ms = float(resolve_target_ms(cfg))
    plan = plan_resume(cfg, ckpt_dir)
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")

    # 2. search spaces: training shape for the supernet, deployment shape for the latency.
    train_space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=datamodule.num_classes,
                                          input_size=datamodule.image_size, in_channels=datamodule.in_channels)
    deploy_space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=int(cfg.deploy.num_classes),
                                           input_size=int(cfg.deploy.input_size),
                                           in_channels=int(cfg.deploy.get("in_channels", 3)))
    table = build_latency_table(deploy_space, profile, cache_dir=cfg.paths.cache_dir,
                                workers=int(schedule.get("lut_workers", 2)), progress=True)
    check_target(target_ms, table)

    # 3. model, data loaders, loggers.
    from s3nas.latency.estimator import LatencyEstimator
    from s3nas.nn.supernet import Supernet
    from s3nas.search.data import resume_safe_loader
    from s3nas.search.history import SearchRecorder
    from s3nas.utils.loggers import build_loggers

    if schedule.get("num_threads"):
        torch.set_num_threads(int(schedule.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    supernet = Supernet(train_space, num_classes=datamodule.num_classes, dropout=float(schedule.get("dropout", 0.2)))
    train_loader = resume_safe_loader(datamodule.train_dataloader(), int(cfg.seed))
    val_loader = datamodule.val_dataloader()
    limit = cfg.trainer.get("limit_train_batches")
    steps_per_epoch = len(train_loader)
    if isinstance(limit, int) and not isinstance(limit, bool):
        steps_per_epoch = min(steps_per_epoch, limit)
    elif isinstance(limit, float):
        steps_per_epoch = max(1, int(steps_per_epoch * limit))
    world_size = world_size_of(cfg.trainer)
    optim = optim_settings(schedule, int(train_loader.batch_size), world_size, steps_per_epoch)
    loggers = build_loggers(cfg)
    recorder = SearchRecorder(run_dir, every_n_steps=int(schedule.get("history_every_n_steps", 1)),
                              choices_every_n_steps=int(schedule.get("choices_every_n_steps", 10)))
    common = dict(label_smoothing=float(cfg.loss.get("label_smoothing", 0.1)), seed=int(cfg.seed),
                  channels_last=bool(schedule.get("channels_last", False)))
    every_n = schedule.get("checkpoint_every_n_steps")
    warmup_epochs, search_epochs = int(schedule.warmup_epochs), int(schedule.search_epochs)
    _log_config(loggers, cfg, target_ms, table)
    faults = [InterruptAfter(schedule.interrupt_after_steps)] if schedule.get("interrupt_after_steps") else []

    # 4. warm-up (skipped when its end checkpoint exists or the search phase is being resumed).
    warmup_done = plan.get("warmup_done") or (ckpt_dir / WARMUP_DONE if (ckpt_dir / WARMUP_DONE).exists() else None)
    if plan["search"] is None and warmup_done is None:
        warmup = WarmupModule(supernet, optim, step_offset=0, **common)
        if plan["warmup"] is not None:
            recorder.truncate(int(read_checkpoint_meta(plan["warmup"])["total_step"]))
        trainer = build_trainer(cfg, max_epochs=warmup_epochs, loggers=loggers,
                                callbacks=[recorder, phase_checkpoint(ckpt_dir, WARMUP_LAST, every_n), *faults])
        trainer.fit(warmup, train_dataloaders=train_loader,
                    val_dataloaders=val_loader if schedule.get("validate_warmup", False) else None,
                    ckpt_path=str(plan["warmup"]) if plan["warmup"] else None)
        if trainer.interrupted:
            raise KeyboardInterrupt
        warmup_done = ckpt_dir / WARMUP_DONE
        trainer.save_checkpoint(warmup_done)
        _remove_phase_checkpoints(ckpt_dir, WARMUP_LAST)  # warmup.ckpt supersedes them (~150 MB each)

    # 5. latency-aware search.
    estimator = LatencyEstimator(table)
    loss_target_ms = target_ms * (1.0 - float(schedule.get("target_margin", 0.0)))
    search_kwargs = dict(estimator=estimator, target_ms=target_ms, loss_target_ms=loss_target_ms,
                         lambda1=float(cfg.loss.lambda1), lambda2=float(cfg.loss.lambda2), **common)
    if plan["search"] is not None:
        meta = plan.get("search_meta") or read_checkpoint_meta(plan["search"])
        module = SearchModule(supernet, optim, step_offset=int(meta["step_offset"]), **search_kwargs)
        recorder.truncate(int(meta["total_step"]))
        resume_from = str(plan["search"])
    else:
        meta = read_checkpoint_meta(warmup_done)
        module = SearchModule(supernet, optim, step_offset=int(meta["total_step"]), **search_kwargs)
        # The search starts from the warm-up's end state (weights and optimizer), file-based so an
        # uninterrupted and a resumed run start identically.
        module.load_state_dict(_strip_estimator(meta["state_dict"], module), strict=False)
        module.initial_optimizer_state = (meta.get("optimizer_states") or [None])[0]
        recorder.truncate(int(meta["total_step"]))
        resume_from = None
    trainer = build_trainer(cfg, max_epochs=search_epochs, loggers=loggers,
                            callbacks=[recorder, phase_checkpoint(ckpt_dir, SEARCH_LAST, every_n), *faults])
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=resume_from)
    if trainer.interrupted:
        raise KeyboardInterrupt
    val_metrics = trainer.validate(module, dataloaders=val_loader, verbose=False)
    val_acc = float(val_metrics[0].get("val/acc", float("nan"))) if val_metrics else float("nan")

    # 6. decode, fit to target if needed, simulate, write outputs.
    from s3nas.search.outputs import finish_search

    return finish_search(cfg, run_dir=run_dir, supernet=supernet, deploy_space=deploy_space, table=table,
                         profile=profile, target_ms=target_ms, val_acc=val_acc, started=started,
                         loggers=loggers, trainer=trainer, total_steps=module.total_step,
                         best_feasible=module.best_feasible if schedule.get("decode", "final") == "best_feasible" else None)


def _remove_phase_checkpoints(ckpt_dir: Path, last_name: str) -> None:
    """Delete a finished phase's rolling checkpoints and its last link."""
    for path in ckpt_dir.glob(f"{last_name}*.ckpt"):
        try:
            path.unlink()
        except OSError:
            pass


def _strip_estimator(state_dict: dict, module: torch.nn.Module) -> dict:
    """Only the supernet's entries of a warm-up state dict (the search module adds the estimator)."""
    own = module.state_dict()
    return {k: v for k, v in state_dict.items() if k in own}


def _log_config(loggers: list, cfg: DictConfig, target_ms: float, table) -> None:
    """Target and the space's latency range as hyper-parameters (BASE's loggers log the config)."""
    params: dict = {"target_ms": target_ms}
    params["lut_min_ms"] = float(table.min_ms)
    params["lut_max_ms"] = float(table.max_ms)
    for logger in loggers:
        try:
            logger.log_hyperparams(params)
        except Exception as error:  # never let a logger stop the search
            warnings.warn(f"logger {type(logger).__name__} could not log the config: {error}")
