"""The search pipeline behind ``python search.py``.

``check_search(cfg)`` runs before anything is printed or written (the entry point's ``check=``): every value
a user can get wrong (loss, schedule, trainer keys the search owns, hardware, target, data, search space,
feasibility) fails there with one line. ``run_search(cfg)`` then builds the latency table, the supernet and
one Lightning fit whose module switches from warm-up to search at the epoch boundary
(``s3nas.search.module``), decodes, repairs only if it must, evaluates the delivered network and writes the
outputs (``s3nas.search.outputs``). Checkpoints are Lightning's own (``cfg.callbacks.model_checkpoint``); a
run resumes from ``ckpt_path=...`` or, without it, from the newest readable checkpoint in its run dir.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from s3nas.arch.space import SearchSpace
from s3nas.data.resume import resume_safe_loader
from s3nas.latency.backend import NearTargetLatency, NetworkLatency
from s3nas.latency.estimator import LatencyEstimator
from s3nas.nn.supernet import Supernet
from s3nas.runtime import signals
from s3nas.runtime.callbacks import build_callbacks, signal_callbacks
from s3nas.runtime.entry import fault_interrupt_after_steps
from s3nas.runtime.loggers import build_loggers
from s3nas.runtime.timing import FitTimer, Timings
from s3nas.runtime.trainer import build_trainer as build_lightning_trainer
from s3nas.runtime.trainer import limited_steps, world_size_of
from s3nas.search.checkpoint_io import AtomicCheckpointIO
from s3nas.search.checks import (SEARCH_OWNED_TRAINER_KEYS, Checked, check_checkpoint_fits,  # noqa: F401
                                 check_search, readable_checkpoint, resume_checkpoint, run_dir_of)
from s3nas.search.history import SearchRecorder
from s3nas.search.module import InterruptAfter, OptimSettings, SearchModule
from s3nas.search.front import finish_front
from s3nas.search.objectives import LatencyObjective
from s3nas.search.outputs import finish_search
from s3nas.search.warmup_cache import WarmupCacheWriter, warmup_cache_path

# ----------------------------------------------------------------------------------- trainer
def build_trainer(cfg: DictConfig, *, max_epochs: int, callbacks: list, loggers: list, timings: Timings | None = None):
    """The search's pl.Trainer (``s3nas.runtime.trainer.build_trainer``): its epochs, our callbacks then
    cfg.callbacks (checkpointing when those hold a ModelCheckpoint), the schedule's determinism and logging
    interval, atomic checkpoint writes; the trainer keys the schedule owns are dropped."""
    configured = build_callbacks(cfg, loggers)
    checkpointing = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in configured)
    # switched-off options and (in warm-up) the thresholds get no gradient: DDP must expect unused parameters
    return build_lightning_trainer(cfg.trainer, max_epochs=max_epochs, callbacks=callbacks + configured,
                                   loggers=loggers, enable_checkpointing=checkpointing,
                                   deterministic=bool(cfg.schedule.deterministic),
                                   log_every_n_steps=int(cfg.schedule.log_every_n_steps),
                                   drop_keys=SEARCH_OWNED_TRAINER_KEYS, ddp_find_unused_parameters=True,
                                   plugins=[AtomicCheckpointIO(timings)])


def checkpoint_dir(cfg: DictConfig) -> Path | None:
    """Where ``cfg.callbacks.model_checkpoint`` writes (None without checkpointing)."""
    callbacks = cfg.get("callbacks")
    entry = callbacks.get("model_checkpoint") if callbacks else None
    return Path(str(entry.dirpath)) if entry is not None and entry.get("dirpath") else None


# ----------------------------------------------------------------------------------- pipeline
def run_search(cfg: DictConfig, checked: Checked | None = None) -> dict:
    """Run the whole search; returns the summary dict (also written to summary.json)."""
    started = time.time()
    checked = checked or check_search(cfg)
    run_dir = run_dir_of(cfg)
    schedule = cfg.schedule
    ckpt_dir = checkpoint_dir(cfg)
    resume_from = resume_checkpoint(cfg, ckpt_dir)
    if resume_from is not None:
        print(f"resuming from {resume_from}")

    timings = Timings()
    datamodule = checked.datamodule
    datamodule.setup("fit")
    deploy_space = checked.deploy_space
    train_space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=datamodule.num_classes,
                                          input_size=datamodule.image_size, in_channels=datamodule.in_channels)
    backends = checked.backends or [checked.backend]
    with timings.part("table_build"):
        tables = [backend.table(deploy_space, cache_dir=cfg.paths.cache_dir, workers=int(schedule.lut_workers),
                                progress=True) for backend in backends]
        # a measured table was timed at another time than now: a device backend re-measures its reference network
        # and scales the table it gives the search by the machine's drift since (s3nas.latency.device_backend)
        tables = [_at_search_start(backend, deploy_space, t) for backend, t in zip(backends, tables)]
    table = tables[0]

    if schedule.num_threads:
        torch.set_num_threads(int(schedule.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    supernet = Supernet(train_space, num_classes=datamodule.num_classes, dropout=float(cfg.supernet.dropout))
    train_loader = resume_safe_loader(datamodule.train_dataloader(), int(cfg.seed))
    val_loader = datamodule.val_dataloader()
    steps_per_epoch = limited_steps(len(train_loader), cfg.trainer.get("limit_train_batches"))
    world_size = world_size_of(cfg.trainer)
    optim = OptimSettings.from_schedule(schedule, global_batch=int(train_loader.batch_size) * world_size,
                                        steps_per_epoch=steps_per_epoch)
    loggers = build_loggers(cfg)
    _log_config(loggers, checked.target_ms, table)
    recorder = SearchRecorder(run_dir, every_n_steps=int(schedule.history_every_n_steps),
                              choices_every_n_steps=int(schedule.choices_every_n_steps))
    module = SearchModule(supernet, optim, banks=_banks(cfg, checked, tables, world_size),
                          warmup_epochs=int(schedule.warmup_epochs), lambda1=float(cfg.loss.lambda1),
                          lambda2=float(cfg.loss.lambda2), label_smoothing=float(cfg.loss.label_smoothing),
                          seed=int(cfg.seed), channels_last=bool(schedule.channels_last))
    module.timings = timings
    warmup_source, warmup_callbacks = "trained", []
    cached_warmup = warmup_cache_path(cfg, module, world_size)
    if resume_from is not None:
        warmup_source = f"checkpoint ({resume_from})"
    elif cached_warmup is not None and cached_warmup.is_file() and readable_checkpoint(cached_warmup):
        # the same space, data, warm-up schedule and seed were warmed up before: start at the search phase
        resume_from, warmup_source = cached_warmup, f"cache ({cached_warmup})"
        print(f"warm-up reused from the cache: {cached_warmup}")
    elif cached_warmup is not None:
        warmup_callbacks = [WarmupCacheWriter(cached_warmup, int(schedule.warmup_epochs))]
    fault_steps = fault_interrupt_after_steps()  # resume tests only ($S3NAS_FAULT_INTERRUPT_AFTER_STEPS)
    faults = [InterruptAfter(fault_steps)] if fault_steps else []
    timer = FitTimer(timings, phase_of=lambda m: m.phase)
    trainer = build_trainer(cfg, max_epochs=int(schedule.warmup_epochs) + int(schedule.search_epochs),
                            loggers=loggers, callbacks=[timer, recorder, *warmup_callbacks, *faults, *signal_callbacks(train_loader)],
                            timings=timings)
    if resume_from is not None:
        check_checkpoint_fits(resume_from, module, from_ckpt_path=bool(cfg.get("ckpt_path")))
        recorder.truncate(_checkpoint_step(resume_from))
    fit_started = time.perf_counter()
    try:
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                    ckpt_path=str(resume_from) if resume_from else None)
    except SystemExit:
        if trainer.interrupted:  # Lightning ends a Ctrl-C with sys.exit(1): report it as an interrupt
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt
    signals.raise_pending()  # SIGTERM / SIGUSR1 after the last batch: the final epoch's checkpoints hold the state
    timings.add("fit", time.perf_counter() - fit_started)
    supernet_val_acc = _metric(trainer, "val/acc")
    module.store_bank()

    if checked.many_targets:
        return finish_front(cfg, run_dir=run_dir, module=module, datamodule=datamodule, deploy_space=deploy_space,
                            table=table, backend=checked.backend, supernet_val_acc=supernet_val_acc, started=started,
                            loggers=loggers, trainer=trainer, timings=timings, warmup_source=warmup_source)
    return finish_search(cfg, run_dir=run_dir, module=module, datamodule=datamodule, deploy_space=deploy_space,
                         table=table, backend=checked.backend, target_ms=checked.target_ms,
                         supernet_val_acc=supernet_val_acc, started=started, loggers=loggers, trainer=trainer,
                         timings=timings, warmup_source=warmup_source, backends=checked.backends)


def _banks(cfg: DictConfig, checked: Checked, tables: list, world_size: int = 1) -> list[list[LatencyObjective]]:
    """The objectives of every network to search (s3nas.search.objectives), one table per hardware."""
    schedule = cfg.schedule
    backends = checked.backends or [checked.backend]
    networks = checked.networks or [[(0, checked.target_ms)]]
    estimators = [LatencyEstimator(table) for table in tables]
    # where one network's latency is cheap (a simulation) the states visited are evaluated too; on a measured
    # device, the states near each target (schedule.measure_states_band) are measured and the table stands for the
    # rest; elsewhere the table alone
    states = [NetworkLatency(backend, checked.deploy_space)
              if schedule.simulate_states and backend.cheap_networks else None for backend in backends]
    # a measured device with a full table (a few-shot one, hardware.budget.networks, keeps to its budget)
    devices = [not b.cheap_networks and not getattr(b, "budget_networks", None) for b in backends]
    band = _measure_band(schedule, world_size) if any(devices) else None
    measured = [NetworkLatency(b, checked.deploy_space) if device else None for b, device in zip(backends, devices)]
    margin = 1.0 - float(schedule.target_margin)

    def state_latency(i: int, target_ms: float):
        if states[i] is not None or band is None or measured[i] is None:
            return states[i]
        return NearTargetLatency(measured[i], tables[i], target_ms * margin, band, guard=_noise_guard(backends[i]))

    return [[LatencyObjective(backends[i].name, estimators[i], float(t), float(t) * margin, state_latency(i, t))
             for i, t in network] for network in networks]


def _noise_guard(backend) -> float:
    """The device's repeat noise as a fraction (half the range of the reference network's measurements at the
    search's start, at most 5%); 0 where the backend did not measure it."""
    noise_pct = getattr(backend, "start_noise_pct", None)
    return min(0.05, float(noise_pct) / 100.0) if noise_pct is not None else 0.0


def _measure_band(schedule, world_size: int) -> float | None:
    """``schedule.measure_states_band`` for this run: None (the table alone) when unset or on several processes
    (each would measure its own states and their thresholds would part)."""
    band = schedule.get("measure_states_band")
    if band is None:
        return None
    if world_size > 1:
        warnings.warn("schedule.measure_states_band: off under several processes (each would measure its own "
                      "states); the device's table stands for the search's states")
        return None
    return float(band)


def _at_search_start(backend, space: SearchSpace, table):
    """The table the search starts with: the backend's own adjustment to the device's current speed where it has
    one (a measured device: ``DeviceBackend.at_search_start``), else ``table`` (a simulation does not drift)."""
    adjust = getattr(backend, "at_search_start", None)
    return adjust(space, table) if adjust is not None else table


def _checkpoint_step(path: Path) -> int:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return int(checkpoint.get("global_step", 0))


def _metric(trainer, key: str) -> float:
    value = trainer.callback_metrics.get(key)
    return float(value) if value is not None else float("nan")


def _log_config(loggers: list, target_ms: float, table) -> None:
    """Target and the space's latency range as hyper-parameters (the loggers already hold the config)."""
    params = {"target_ms": target_ms, "lut_min_ms": float(table.min_ms), "lut_max_ms": float(table.max_ms)}
    for logger in loggers:
        try:
            logger.log_hyperparams(params)
        except Exception as error:  # never let a logger stop the search
            warnings.warn(f"logger {type(logger).__name__} could not log the config: {error}")
