"""The pipeline behind ``python train.py``: check inputs, train, test, write the run dir, log, export.

``check_train(cfg)`` does everything a user can get wrong (network, hardware profile, dataset, resume
checkpoint and its class count, simulation at the deployment shape) before anything is written; it is
train.py's ``check=`` hook. ``run_train(cfg, checked)`` then writes ``arch.json`` (the network it trains),
trains with checkpoints in ``<run dir>/checkpoints`` (``last.ckpt`` every epoch: all that resume needs;
``best.pt`` when val/acc improves: only the evaluated (EMA) network's weights and what rebuilds it),
tests the final EMA weights and writes ``weights.pt``, ``summary.json`` (and ``model.onnx`` with
``export.onnx=true``, beside it its latency contract ``latency.json``: s3nas.train.contract) atomically. A run
resumes from ``ckpt_path=`` or, without it, from its run dir's ``last.ckpt``; ``arch=`` may then be left out
(the checkpoint records the network).
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.trainer.states import TrainerFn
from rich.console import Console
from rich.table import Table

from s3nas.arch import codec
from s3nas.config.ranges import check_ranges
from s3nas.config.train_schema import EXPORT_RANGES, RECIPE_RANGES
from s3nas.data import build_datamodule
from s3nas.data.resume import resume_safe_loader
from s3nas.errors import ConfigError
from s3nas.latency.backend import make_backend
from s3nas.outputs import TrainSummary, write_summary
from s3nas.runtime import signals
from s3nas.runtime.callbacks import build_callbacks, signal_callbacks
from s3nas.runtime.entry import fault_interrupt_after_steps
from s3nas.runtime.loggers import build_loggers
from s3nas.runtime.trainer import build_trainer as build_lightning_trainer
from s3nas.runtime.trainer import check_finite, check_loader_values, limited_steps, world_size_of
from s3nas.train.contract import CONTRACT_FILES, write_contract
from s3nas.train.export import export_onnx
from s3nas.train.module import EMA_WARMUPS, SCHEDULERS, RecipeSettings, RetrainModule, scaled_lr, steps_of
from s3nas.train.quantize import INT8_ONNX, check_network_quantizable, check_quantize_options, quantize_trained
from s3nas.train.network import NetworkSource, build_network, count_parameters, deploy_latency, resolve_network
from s3nas.utils.io import atomic_write_bytes

CHECKPOINT_DIR = "checkpoints"
LAST = "last"
BEST = "best.pt"
WEIGHTS = "weights.pt"
ONNX = "model.onnx"


@dataclass
class CheckedInputs:
    """What ``check_train`` resolved (passed to ``run_train``)."""

    source: NetworkSource
    backend: Any  # the hardware's LatencyBackend
    latency: Any  # LatencyResult of the network at the deployment shape
    macs: int
    datamodule: Any
    resume_from: Optional[Path]
    run_dir: Path
    deploy_input_size: int = 224  # the shape ``latency`` was obtained at


# ----------------------------------------------------------------------------------------- checks
def run_dir_of(cfg: DictConfig) -> Path:
    """The Hydra run dir of this job (paths.output_dir)."""
    return Path(str(cfg.paths.output_dir))


def checkpoint_dir_of(cfg: DictConfig) -> Path:
    """cfg.callbacks.model_checkpoint.dirpath when set, else <run dir>/checkpoints."""
    callbacks = cfg.get("callbacks")
    entry = callbacks.get("model_checkpoint") if callbacks else None
    if entry is not None and entry.get("dirpath"):
        return Path(str(entry.dirpath))
    return run_dir_of(cfg) / CHECKPOINT_DIR


def read_train_checkpoint(path: Path, key: str = "ckpt_path") -> dict:
    """The ``s3nas_train`` block of a train.py checkpoint; ConfigError if unreadable or not one."""
    if not path.is_file():
        raise ConfigError(f"{key}: no checkpoint file at '{path}'")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - truncated/corrupt files raise many different errors
        raise ConfigError(f"{key}: '{path}' is not a readable checkpoint ({type(error).__name__}); "
                          f"delete it or pass another ckpt_path") from None
    meta = checkpoint.get("s3nas_train") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "network" not in meta:
        raise ConfigError(f"{key}: '{path}' is not a train.py checkpoint (no s3nas_train block; "
                          f"search checkpoints cannot be resumed by train.py)")
    if "loops" not in checkpoint:  # best.pt / weights.pt: the evaluated network's weights, no training state
        raise ConfigError(f"{key}: '{path}' holds weights only, not a resumable checkpoint; "
                          f"pass a run dir's checkpoints/{LAST}.ckpt")
    return meta


def check_train(cfg: DictConfig) -> CheckedInputs:
    """Every user-caused error of train.py, before anything is written (train.py's ``check=``)."""
    _check_recipe(cfg)
    run_dir = run_dir_of(cfg)
    resume_from: Optional[Path] = None
    resume_meta: Optional[dict] = None
    if cfg.get("ckpt_path"):
        resume_from = Path(str(cfg.ckpt_path)).expanduser()
        resume_meta = read_train_checkpoint(resume_from)
    else:
        last = checkpoint_dir_of(cfg) / f"{LAST}.ckpt"
        if last.exists():
            resume_from, resume_meta = last, read_train_checkpoint(last, key=f"run dir checkpoint {last}")

    if cfg.get("arch"):
        source = resolve_network(cfg.arch)
        if resume_meta is not None:
            recorded = NetworkSource.from_meta(resume_meta["network"])
            if recorded.label != source.label:
                raise ConfigError(f"arch: '{cfg.arch}' differs from the network of the checkpoint being resumed "
                                  f"({resume_from}: {recorded.label[:80]}); use another hydra.run.dir or "
                                  f"ckpt_path, or leave arch out")
    elif resume_meta is not None:
        source = NetworkSource.from_meta(resume_meta["network"])
    else:
        source = resolve_network(None)  # raises: arch not set

    backend = make_backend(cfg.hardware)  # simulated or measured: the runner does not ask which
    datamodule = build_datamodule(cfg.data)
    if resume_meta is not None:
        for key, have in (("num_classes", datamodule.num_classes), ("in_channels", datamodule.in_channels)):
            recorded = resume_meta.get(key)
            if recorded is not None and int(recorded) != int(have):
                raise ConfigError(f"data: {cfg.data.name} has {key}={have} but the checkpoint being resumed "
                                  f"({resume_from}) was trained with {key}={recorded}; use the same data or "
                                  f"another hydra.run.dir")
    datamodule.prepare_data()  # missing/empty dataset files: DataError before anything is written
    datamodule.setup("fit")
    deploy = cfg.deploy
    shape = dict(input_size=deploy_input_size(deploy.input_size, source), num_classes=int(deploy.num_classes),
                 in_channels=int(deploy.in_channels))
    latency, macs = deploy_latency(source, backend, **shape)
    quantize = cfg.get("quantize")
    if quantize is not None and str(quantize.mode) == "int8":  # an operator without INT8 kernel: before training
        check_network_quantizable(build_network(source, datamodule.num_classes, datamodule.in_channels),
                                  input_size=cfg.export.get("input_size") or int(datamodule.image_size),
                                  in_channels=int(datamodule.in_channels), options=quantize)
    return CheckedInputs(source=source, backend=backend, latency=latency, macs=macs, datamodule=datamodule,
                         resume_from=resume_from, run_dir=run_dir, deploy_input_size=shape["input_size"])


def deploy_input_size(configured: Any, source: NetworkSource) -> int:
    """``deploy.input_size``, or when null the ArchSpec's own ``input_size`` (a scaled arch.json says 256...);
    224 for timm networks."""
    if configured is not None:
        return int(configured)
    return int(source.spec.input_size) if source.spec is not None else 224


def _check_recipe(cfg: DictConfig) -> None:
    recipe = cfg.recipe
    for group in ("recipe", "data", "trainer"):
        check_finite(cfg[group], group)
    check_loader_values(cfg.data)
    check_ranges(recipe, RECIPE_RANGES, prefix="recipe.")
    if str(recipe.scheduler.name) not in SCHEDULERS:
        raise ConfigError(f"recipe.scheduler.name: {recipe.scheduler.name!r} is not a schedule; use {', '.join(SCHEDULERS)}")
    if str(recipe.ema.warmup) not in EMA_WARMUPS:
        raise ConfigError(f"recipe.ema.warmup: {recipe.ema.warmup!r}; use {', '.join(EMA_WARMUPS)}")
    try:
        from timm.optim import list_optimizers

        known = list_optimizers()
    except Exception:  # noqa: BLE001 - older timm: let create_optimizer_v2 decide
        known = None
    if known is not None and str(recipe.optimizer.name).lower() not in known:
        raise ConfigError(f"recipe.optimizer.name: {recipe.optimizer.name!r} is not a timm optimizer "
                          f"(e.g. rmsproptf, sgd, adamw)")
    if "export" in cfg:  # train.py's export group (absent from BBSSP's short trainings)
        check_ranges(cfg.export, EXPORT_RANGES, prefix="export.")
    if cfg.get("quantize") is not None:
        check_quantize_options(cfg.quantize)


# ----------------------------------------------------------------------------------------- training
def recipe_settings(cfg: DictConfig, *, global_batch: int, steps_per_epoch: int, epochs: int) -> Any:
    """RecipeSettings from cfg.recipe: lr scaled by the global batch, epochs converted to steps."""
    r = cfg.recipe
    return RecipeSettings(
        lr=scaled_lr(float(r.optimizer.lr_per_256), global_batch),
        optimizer=str(r.optimizer.name), alpha=float(r.optimizer.alpha), momentum=float(r.optimizer.momentum),
        eps=float(r.optimizer.eps), weight_decay=float(r.optimizer.weight_decay),
        filter_bias_and_bn=bool(r.optimizer.filter_bias_and_bn),
        scheduler=str(r.scheduler.name), warmup_steps=steps_of(float(r.scheduler.warmup_epochs), steps_per_epoch),
        warmup_lr_init=float(r.scheduler.warmup_lr_init), decay_rate=float(r.scheduler.decay_rate),
        decay_steps=max(1, steps_of(float(r.scheduler.decay_epochs), steps_per_epoch)),
        total_steps=max(1, epochs * steps_per_epoch), min_lr=float(r.scheduler.min_lr),
        label_smoothing=float(r.label_smoothing), ema=bool(r.ema.enabled), ema_decay=float(r.ema.decay),
        ema_warmup=str(r.ema.warmup), ema_warmup_power=float(r.ema.warmup_power),
        channels_last=bool(r.channels_last), validate_raw=bool(r.validate_raw),
        augment_shift=int(r.augment.shift), seed=int(cfg.seed))


class InterruptAfter(pl.Callback):
    """Fault injection for tests: raise after ``steps`` optimizer steps (a crash mid-training)."""

    def __init__(self, steps: int) -> None:
        self.steps = int(steps)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.steps:
            raise RuntimeError(f"S3NAS_FAULT_INTERRUPT_AFTER_STEPS={self.steps}: simulated crash")


class BestWeights(pl.Callback):
    """``best.pt``: the evaluated (EMA) network's state dict + its ``s3nas_train`` meta, epoch, step and val/acc,
    written atomically whenever val/acc beats the best so far (strictly, as ModelCheckpoint(mode=max)).

    A fraction of ``last.ckpt`` (no raw-model copy, no optimizer state): what export or evaluation of the best
    epoch needs; ``last.ckpt`` alone resumes. The best score is part of the callback's state, so a resumed run
    keeps it (and ``summary.json``'s ``best_val_acc``)."""

    def __init__(self, path: Path, monitor: str = "val/acc") -> None:
        self.path, self.monitor = Path(path), monitor
        self.best_score: Optional[float] = None
        self.best_epoch: Optional[int] = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return  # the runner's own validate/test after fit, or Lightning's sanity check
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not bool(torch.isfinite(torch.as_tensor(value))):
            return
        score = float(value)
        if self.best_score is not None and score <= self.best_score:
            return
        self.best_score, self.best_epoch = score, int(trainer.current_epoch)
        if trainer.is_global_zero:
            save_weights(pl_module, self.path, {"epoch": self.best_epoch, "global_step": int(trainer.global_step),
                                                self.monitor: score})

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_score, self.best_epoch = state_dict.get("best_score"), state_dict.get("best_epoch")


def build_trainer(cfg: DictConfig, *, ckpt_dir: Path, loggers: list, extra_callbacks: list) -> pl.Trainer:
    """The retraining's pl.Trainer (``s3nas.runtime.trainer.build_trainer``): ``last.ckpt`` (resumable) every
    epoch, ``best.pt`` (``BestWeights``), cfg.callbacks (minus its checkpoint) and loggers; the recipe owns the
    epochs, determinism and the logging interval (``recipe.log_every_n_steps``, else the trainer's, else 10)."""
    # the single "top-k" file of the latest epoch, named last (Lightning 2.x's save_top_k=0 + save_last=True
    # would write last.ckpt only when training ends, leaving a crashed run nothing to resume from)
    last = pl.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), filename=LAST, monitor=None, save_top_k=1,
                                        save_last=False, auto_insert_metric_name=False,
                                        enable_version_counter=False)
    callbacks = [last, BestWeights(ckpt_dir / BEST), *extra_callbacks]
    callbacks += [c for c in build_callbacks(cfg, loggers) if not isinstance(c, pl.callbacks.ModelCheckpoint)]
    log_every = cfg.recipe.get("log_every_n_steps") or (10 if cfg.trainer.get("log_every_n_steps") is None else None)
    return build_lightning_trainer(cfg.trainer, max_epochs=int(cfg.recipe.epochs), callbacks=callbacks,
                                   loggers=loggers, enable_checkpointing=True,
                                   deterministic=bool(cfg.recipe.deterministic),
                                   log_every_n_steps=log_every)


def train_task(cfg: DictConfig, checked: Optional[CheckedInputs] = None) -> Any:
    """train.py's Hydra task: train, test, write the run dir; return the sweeper objective (test accuracy by
    default)."""
    summary = run_train(cfg, checked)
    return _field(summary, cfg.optimized_metric or "test_acc")


def _field(summary: Any, name: str) -> Any:
    """``name`` of a summary, whether a mapping or a typed object (None when it has no such field)."""
    if isinstance(summary, dict):
        return summary.get(name)
    return getattr(summary, name, None)


def run_train(cfg: DictConfig, checked: Optional[CheckedInputs] = None) -> dict:
    """Train, test, write the run dir's outputs; returns the summary (also in summary.json)."""
    started = time.time()
    # the EMA copy is a submodule kept in eval mode on purpose
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    checked = checked if checked is not None else check_train(cfg)
    source, datamodule, run_dir = checked.source, checked.datamodule, checked.run_dir
    ckpt_dir = checkpoint_dir_of(cfg)
    recipe = cfg.recipe
    if recipe.get("num_threads"):
        torch.set_num_threads(int(recipe.num_threads))

    datamodule.prepare_data()
    datamodule.setup("fit")
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dropout = None if recipe.dropout is None else float(recipe.dropout)
    model = build_network(source, datamodule.num_classes, datamodule.in_channels,
                          drop_path_rate=float(recipe.drop_path), dropout=dropout)
    train_loader = resume_safe_loader(datamodule.train_dataloader(), int(cfg.seed))
    val_loader = datamodule.val_dataloader()
    steps_per_epoch = limited_steps(len(train_loader), cfg.trainer.get("limit_train_batches"))
    epochs = int(recipe.epochs)
    global_batch = int(train_loader.batch_size) * world_size_of(cfg.trainer)
    settings = recipe_settings(cfg, global_batch=global_batch, steps_per_epoch=steps_per_epoch, epochs=epochs)
    meta = {"network": source.to_meta(), "num_classes": int(datamodule.num_classes),
            "in_channels": int(datamodule.in_channels), "image_size": int(datamodule.image_size),
            "drop_path": float(recipe.drop_path), "dropout": dropout, "data": str(cfg.data.name)}
    module = RetrainModule(model, settings, meta=meta)

    run_dir.mkdir(parents=True, exist_ok=True)
    _write_arch(source, run_dir)
    loggers = build_loggers(cfg)
    fault_steps = fault_interrupt_after_steps()  # resume tests only ($S3NAS_FAULT_INTERRUPT_AFTER_STEPS)
    faults = [InterruptAfter(fault_steps)] if fault_steps else []
    trainer = build_trainer(cfg, ckpt_dir=ckpt_dir, loggers=loggers,
                            extra_callbacks=[*faults, *signal_callbacks(train_loader)])
    try:
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                    ckpt_path=str(checked.resume_from) if checked.resume_from else None)
    except SystemExit:
        if trainer.interrupted:  # Lightning ends an interrupt (Ctrl-C, SIGTERM, SIGUSR1) with sys.exit(1)
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt
    signals.raise_pending()  # SIGTERM / SIGUSR1 after the last batch: last.ckpt holds the finished training
    train_seconds = module.train_seconds()

    val = trainer.validate(module, dataloaders=val_loader, verbose=False)
    datamodule.setup("test")
    test = trainer.test(module, dataloaders=datamodule.test_dataloader(), verbose=False)
    val_metrics, test_metrics = (val[0] if val else {}), (test[0] if test else {})
    best_score = next((c.best_score for c in trainer.callbacks if isinstance(c, BestWeights)), None)

    latency = checked.latency
    summary = {
        "test_acc": _metric(test_metrics, "test/acc"),
        "val_acc": _metric(val_metrics, "val/acc"),
        "best_val_acc": float(best_score) if best_score is not None else None,
        "test_acc_raw": _metric(test_metrics, "test/acc_raw"),
        "val_acc_raw": _metric(val_metrics, "val/acc_raw"),
        "params": count_parameters(module.model),
        "macs": int(checked.macs),
        "latency_ms": float(latency.latency_ms),
        "hardware": str(checked.backend.name),
        "latency_source": latency.source,
        "latency_noise_pct": latency.noise_pct,
        "deploy_input_size": int(checked.deploy_input_size),
        "deploy_num_classes": int(cfg.deploy.num_classes),
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "train_seconds": train_seconds,
        "images_per_second": (trainer.global_step * global_batch) / max(train_seconds, 1e-9),
        "arch": source.label,
        "arch_origin": source.origin,
        "network": source.name,
        "ema": bool(settings.ema),
        "evaluated": "ema" if settings.ema else "raw",
        "data": str(cfg.data.name),
        "image_size": int(datamodule.image_size),
        "num_classes": int(datamodule.num_classes),
        "global_batch": global_batch,
        "lr": settings.lr,
        "recipe": str(recipe.name),
        "seed": int(cfg.seed),
        "num_threads": int(torch.get_num_threads()),
        "resumed_from": str(checked.resume_from) if checked.resume_from else None,
        "run_dir": str(run_dir),
        "total_seconds": None,
    }
    weights_path = save_weights(module, run_dir / WEIGHTS, summary)
    if cfg.get("export") is not None and cfg.export.get("onnx"):
        images = next(iter(datamodule.test_dataloader()))[0]
        result = export_onnx(module.eval_model, run_dir / ONNX, input_size=cfg.export.get("input_size")
                             or int(datamodule.image_size), in_channels=int(datamodule.in_channels),
                             opset=int(cfg.export.opset), dynamic_batch=bool(cfg.export.dynamic_batch),
                             check=bool(cfg.export.check), atol=float(cfg.export.atol), real_images=images)
        summary["onnx"] = result
    summary.update(int8_fields(summary, None, checked.backend.data_dtype))
    quantize = cfg.get("quantize")
    if quantize is not None and str(quantize.mode) == "int8":
        int8 = quantize_trained(module.eval_model, datamodule, quantize, run_dir,
                                input_size=cfg.export.get("input_size") or int(datamodule.image_size),
                                in_channels=int(datamodule.in_channels), opset=int(cfg.export.opset),
                                recipe=settings, trainer_cfg=cfg.trainer, meta=meta)
        summary.update(int8_fields(summary, int8, checked.backend.data_dtype))
    summary["total_seconds"] = time.time() - started
    typed = TrainSummary.from_dict(summary)  # the schema (s3nas.outputs): a missing or stray key fails here
    summary = typed.to_dict()
    if trainer.is_global_zero:
        write_summary(run_dir, typed)
        write_model_contracts(run_dir, summary, checked, in_channels=int(cfg.deploy.in_channels))
        _log_results(loggers, summary, run_dir, weights_path)
        print_summary(summary)
    return summary


def write_model_contracts(run_dir: Path, summary: dict, checked: CheckedInputs, *, in_channels: int) -> list[Path]:
    """latency.json beside model.onnx and latency_int8.json beside model_int8.onnx, for the files this run wrote."""
    written = []
    for name, dtype, block in ((ONNX, "fp32", "onnx"), (INT8_ONNX, "int8", "int8")):
        if summary.get(block) and (run_dir / name).is_file():
            written.append(write_contract(run_dir / name, summary=summary, backend=checked.backend,
                                          spec=checked.source.spec, in_channels=in_channels, model_dtype=dtype))
    return written


def int8_fields(summary: dict, int8: Optional[dict], data_dtype: str) -> dict:
    """The accuracy fields of a train summary given its float figures and the INT8 result (None: no INT8 model).

    ``test_acc`` / ``val_acc`` are the accuracies of the network the hardware runs: the INT8 model's when one
    exists and the hardware computes in int8 (``accuracy_dtype: int8``), else the float network's; the float
    figures stay in ``*_fp32`` and the INT8 ones in ``*_int8`` either way.
    """
    fp32 = {f"{split}_acc_fp32": summary[f"{split}_acc"] if summary.get(f"{split}_acc_fp32") is None
            else summary[f"{split}_acc_fp32"] for split in ("test", "val")}
    fields: dict = dict(fp32, test_acc=fp32["test_acc_fp32"], val_acc=fp32["val_acc_fp32"], test_acc_int8=None, val_acc_int8=None, accuracy_dtype="fp32", int8=None,
                        hardware_dtype=str(data_dtype))
    if int8 is not None:
        fields.update(test_acc_int8=int8["test_acc"], val_acc_int8=int8["val_acc"], int8=int8)
        if str(data_dtype) == "int8":
            fields.update(test_acc=int8["test_acc"], val_acc=int8["val_acc"], accuracy_dtype="int8")
    return fields


def _metric(metrics: dict, key: str) -> Optional[float]:
    value = metrics.get(key)
    return float(value) if value is not None else None


def _write_arch(source: NetworkSource, run_dir: Path) -> None:
    """arch.json of the trained network (ArchSpec networks; timm networks are named in summary.json)."""
    if source.is_timm:
        return

    codec.save_json(source.spec, run_dir / "arch.json")


def save_weights(module: Any, path: Path, summary: dict) -> Path:
    """weights.pt (or best.pt): the evaluated (EMA) network's state dict + what rebuilds it + the plain values
    of ``summary``, written atomically."""
    payload = {"state_dict": {k: v.detach().cpu() for k, v in module.eval_model.state_dict().items()},
               "s3nas_train": dict(module.meta, ema=module.ema is not None),
               "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool, type(None)))}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _log_results(loggers: list, summary: dict, run_dir: Path, weights_path: Path) -> None:
    """Final metrics for every logger; W&B also gets the summary and the weights (+ arch, ONNX) artifact."""
    scalars = {f"final/{k}": float(v) for k, v in summary.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":  # W&B gets them as its run summary below
            try:
                logger.log_metrics(scalars)
                logger.save()
            except Exception as error:  # noqa: BLE001 - never let a logger fail a finished run
                warnings.warn(f"logger {type(logger).__name__} could not log the final metrics: {error}")
            continue
        try:
            import wandb

            run = logger.experiment
            run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
            artifact = wandb.Artifact(f"weights-{run.id}", type="model", metadata={
                k: summary[k] for k in ("test_acc", "val_acc", "params", "macs", "latency_ms", "hardware", "arch")})
            artifact.add_file(str(weights_path))
            for extra in ("arch.json", ONNX, INT8_ONNX, *CONTRACT_FILES.values(), "summary.json"):
                if (run_dir / extra).is_file():
                    artifact.add_file(str(run_dir / extra))
            run.log_artifact(artifact)
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"W&B logging of the results failed: {error}")


def print_summary(summary: dict) -> None:
    """Rich table: accuracy, size, latency, time; then the run dir."""
    console = Console(width=120)
    table = Table(title=f"Retrained {summary['network']} on {summary['data']}")
    dtype = summary.get("accuracy_dtype", "fp32")
    columns = (f"test acc ({dtype})", f"val acc ({dtype})", "params", "MACs (deploy)", f"latency ms ({summary['hardware']})", "epochs",
               "train s")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(f"{summary['test_acc']:.4f}", f"{summary['val_acc']:.4f}", f"{summary['params']:,}",
                  f"{summary['macs']:,}", f"{summary['latency_ms']:.4f}", str(summary["epochs"]),
                  f"{summary['train_seconds']:.1f}")
    console.print(table)
    if summary.get("int8"):
        int8 = summary["int8"]
        console.print(f"INT8: {int8['path']} test acc {summary['test_acc_int8']:.4f} (float {summary['test_acc_fp32']:.4f}; "
                      f"PTQ {int8['ptq_test_acc']:.4f}" + (f", QAT {int8['qat_epochs']} ep {int8['qat_test_acc']:.4f}; "
                                                            f"delivered: {int8['delivered']}"
                                                            if int8.get("qat_test_acc") is not None else "")
                      + f"), agreement with fake-quant torch {int8['agreement']:.4f}; reported accuracy: "
                      f"{summary['accuracy_dtype']}")
    elif summary.get("hardware_dtype") == "int8":
        console.print(f"note: {summary['hardware']} computes in int8 but this accuracy is of the float network; "
                      f"add quantize=int8 for the INT8 model and its accuracy")
    if summary.get("onnx"):
        console.print(f"ONNX: {summary['onnx'].get('path')} (max abs diff {summary['onnx'].get('max_abs_diff')})")
    console.print(f"run dir: {summary['run_dir']}")
