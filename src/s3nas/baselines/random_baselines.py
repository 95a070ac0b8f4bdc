"""Random search and random selection (paper 5.4.1): sample at the target, train with train.py's runner, pick.

Both draw ``num_samples`` architectures of the same search space as search.py, uniform over those whose
latency-table estimate is within ``target * (1 +- tolerance)`` and confirmed in that band by simulating the whole
network (``s3nas.baselines.sampling``). Every sample is trained from scratch by ``s3nas.train.runner.run_train`` (the
code behind ``python train.py``) with the ``short`` budget, in ``<run dir>/samples/<i>/`` (a train.py run dir of
its own); the best by ``select_on`` (validation accuracy, never test) is the result. Random search then retrains
it with the ``full`` budget in ``<run dir>/final/``; random selection (``full: null``) trains every sample fully
and keeps the best as is. ``arch.json`` / ``summary.json`` are written like search.py's, with the delivered
network's own simulated latency and test accuracy and ``search_seconds`` (wall clock of sampling + sample
trainings) so Table 6-style comparisons include search cost. Rerunning with the same ``hydra.run.dir`` reuses
finished sample trainings (and train.py resumes unfinished ones from their last checkpoint).
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.arch.space import SearchSpace
from s3nas.baselines.sampling import sample_at_latency
from s3nas.config import resolve_target_ms
from s3nas.data import build_datamodule
from s3nas.errors import ConfigError, InfeasibleTargetError
from s3nas.latency.backend import make_backend
from s3nas.outputs import RandomBaselineSummary, TrainSummary, load_summary, write_summary
from s3nas.runtime.loggers import build_loggers
from s3nas.runtime.trainer import check_finite, check_loader_values
from s3nas.train.runner import check_train, run_train
from s3nas.train.module import SCHEDULERS
from s3nas.train.runner import _check_recipe
from s3nas.utils.tables import write_csv

SELECT_ON = ("val_acc", "val_acc_raw", "best_val_acc")
SAMPLES_DIR = "samples"
FINAL_DIR = "final"


@dataclass
class Checked:
    """What ``check_random`` established (reused by ``run_random``)."""

    backend: Any  # the hardware's LatencyBackend
    target_ms: float
    space: Any  # SearchSpace at the deployment shape
    fastest_ms: float


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def method_of(cfg: DictConfig) -> str:
    """'random_search' (a retraining stage follows) or 'random_selection'."""
    return "random_search" if cfg.get("full") is not None else "random_selection"


# ----------------------------------------------------------------------------------------- checks
def check_random(cfg: DictConfig) -> Checked:
    """Every user error before anything is written (one line each, exit 2)."""
    tolerance = float(cfg.tolerance)
    if not 0.0 < tolerance < 0.5 or not math.isfinite(tolerance):
        raise ConfigError(f"tolerance: must be a fraction in (0, 0.5), e.g. 0.02 for +-2%; got {cfg.tolerance}")
    if int(cfg.num_samples) < 1:
        raise ConfigError(f"num_samples: must be >= 1, got {cfg.num_samples}")
    if str(cfg.select_on) not in SELECT_ON:
        raise ConfigError(f"select_on: {cfg.select_on!r}; use one of {', '.join(SELECT_ON)}")
    for stage in ("short", "full"):
        node = cfg.get(stage)
        if node is None:
            if stage == "short":
                raise ConfigError("short: must be set (the training of every sample)")
            continue
        if node.get("epochs") is not None and int(node.epochs) < 1:
            raise ConfigError(f"{stage}.epochs: must be >= 1 or null (recipe.epochs), got {node.epochs}")
        if node.get("scheduler") is not None and str(node.scheduler) not in SCHEDULERS:
            raise ConfigError(f"{stage}.scheduler: {node.scheduler!r}; use {', '.join(SCHEDULERS)} or null")
    check_loader_values(cfg.data)
    for group in ("recipe", "data", "trainer"):
        check_finite(cfg[group], group)

    _check_recipe(OmegaConf.create({"recipe": _plain(cfg.recipe), "data": _plain(cfg.data),
                                    "trainer": _plain(cfg.trainer), "export": {"onnx": False}}))
    backend = make_backend(cfg.hardware)
    target_ms = float(resolve_target_ms(cfg))
    space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=int(cfg.deploy.num_classes),
                                    input_size=int(cfg.deploy.input_size),
                                    in_channels=int(cfg.deploy.in_channels))
    fastest_ms = backend.feasibility(space).fastest_ms
    if not math.isfinite(target_ms) or target_ms * (1 + tolerance) < fastest_ms:
        raise InfeasibleTargetError(
            f"latency: target {target_ms:.4g} ms (+-{tolerance:.0%}) is below the fastest architecture of the search "
            f"space ({fastest_ms:.4g} ms {backend.how} on {backend.name}); use a latency of at least {fastest_ms:.4g}ms")

    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    return Checked(backend=backend, target_ms=target_ms, space=space, fastest_ms=fastest_ms)


# ----------------------------------------------------------------------------------------- training
def train_config(cfg: DictConfig, *, arch_path: Path, out_dir: Path, stage: Any) -> DictConfig:
    """train.py's config for one network: this run's data/recipe/trainer/hardware/deploy, the stage's budget,
    no logger, no extra callbacks, no export, run dir ``out_dir``."""
    recipe = _plain(cfg.recipe)
    if stage is not None and stage.get("epochs") is not None:
        recipe["epochs"] = int(stage.epochs)
    if stage is not None and stage.get("scheduler") is not None:
        recipe["scheduler"]["name"] = str(stage.scheduler)
    trainer = _plain(cfg.trainer)
    for key in ("enable_progress_bar", "enable_model_summary"):  # one line per sample is printed instead
        if trainer.get(key) is None:
            trainer[key] = False
    paths = _plain(cfg.paths)
    paths["output_dir"] = str(out_dir)
    return OmegaConf.create({
        "arch": str(arch_path), "seed": int(cfg.seed), "task_name": "train", "deploy": _plain(cfg.deploy),
        "ckpt_path": None, "optimized_metric": None, "tags": [], "data": _plain(cfg.data),
        "hardware": _plain(cfg.hardware), "recipe": recipe, "export": {"onnx": False}, "trainer": trainer,
        "logger": {"_target_": None, "kind": "none"}, "callbacks": {}, "paths": paths,
    })


def train_network(cfg: DictConfig, spec: Any, out_dir: Path, stage: Any,
                  keep_checkpoints: bool = False) -> TrainSummary:
    """Train ``spec`` with train.py's runner in ``out_dir`` (reusing a finished run there); its summary. The
    finished run's Lightning checkpoints are removed unless ``keep_checkpoints``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "summary.json"
    train_cfg = train_config(cfg, arch_path=out_dir / "arch.json", out_dir=out_dir, stage=stage)
    if summary_path.is_file():
        done = load_summary(summary_path)  # a summary of an older s3nas: one line naming it, not a silent retrain
        if isinstance(done, TrainSummary) and done.arch == codec.encode(spec) and \
                done.epochs == int(train_cfg.recipe.epochs):
            return done
    codec.save_json(spec, out_dir / "arch.json")
    summary = run_train(train_cfg, check_train(train_cfg))
    summary = summary if isinstance(summary, TrainSummary) else TrainSummary.from_dict(summary)
    if not keep_checkpoints:
        # finished: summary.json marks it done and weights.pt holds the evaluated weights; the Lightning
        # checkpoints (2 x ~190 MB for a 12 M-parameter network) are only needed to resume an unfinished run
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return summary


# ----------------------------------------------------------------------------------------- pipeline
def random_task(cfg: Any, checked: Any = None) -> Any:
    """The random baselines' Hydra task: sample, train, select, retrain; returns the sweeper objective (test accuracy
    by default)."""
    summary = run_random(cfg, checked)
    metric = cfg.get("optimized_metric")
    return summary.get(metric) if metric else summary.get("test_acc")


def run_random(cfg: DictConfig, checked: Optional[Checked] = None) -> dict:
    """Sample, train, select (and retrain for random search); write arch.json / summary.json."""
    started = time.time()
    checked = checked or check_random(cfg)
    method = method_of(cfg)
    run_dir = Path(str(cfg.paths.output_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    space, backend, target_ms = checked.space, checked.backend, checked.target_ms
    table = backend.table(space, cache_dir=cfg.paths.cache_dir, workers=int(cfg.lut_workers), progress=True)
    samples, stats = sample_at_latency(space, table, backend, target_ms, int(cfg.num_samples), seed=int(cfg.seed),
                                       tolerance=float(cfg.tolerance), name_prefix=method)
    print(f"{method}: {len(samples)} architectures within {target_ms:.4g} ms +-{float(cfg.tolerance):.0%} on "
          f"{backend.name} ({backend.how} {min(s.latency_ms for s in samples):.4f}..{max(s.latency_ms for s in samples):.4f} ms; "
          f"{stats.draws} draws, {stats.rejected_by_simulation} rejected by simulation)")
    loggers = build_loggers(cfg)
    rows: list[dict] = []
    select_on = str(cfg.select_on)
    for sample in samples:
        out_dir = run_dir / SAMPLES_DIR / f"{sample.index:03d}"
        result = train_network(cfg, sample.spec, out_dir, cfg.short, keep_checkpoints=bool(cfg.keep_checkpoints))
        row = {"index": sample.index, "estimated_ms": sample.estimated_ms, "latency_ms": sample.latency_ms,
               "val_acc": result.val_acc, "val_acc_raw": result.val_acc_raw,
               "best_val_acc": result.best_val_acc, "test_acc": result.test_acc,
               "params": result.params, "macs": result.macs, "epochs": result.epochs,
               "train_seconds": result.train_seconds, "num_blocks": len(sample.spec.blocks),
               "arch": codec.encode(sample.spec), "run_dir": str(out_dir)}
        rows.append(row)
        _log_metrics(loggers, {f"sample/{k}": v for k, v in row.items() if isinstance(v, (int, float))
                               and not isinstance(v, bool) and v is not None}, step=sample.index)
        print(f"{method}: sample {sample.index + 1}/{len(samples)}  {backend.how} {sample.latency_ms:.4f} ms  "
              f"{select_on} {_fmt(row[select_on])}")
    scores = [(r[select_on] if r[select_on] is not None and math.isfinite(r[select_on]) else -1.0) for r in rows]
    best = max(range(len(rows)), key=lambda i: (scores[i], -i))  # ties: the first sampled
    search_seconds = time.time() - started
    chosen = samples[best]
    if method == "random_search":
        final = train_network(cfg, chosen.spec, run_dir / FINAL_DIR, cfg.full, keep_checkpoints=True)
        final_dir = run_dir / FINAL_DIR
    else:
        final_dir = Path(rows[best]["run_dir"])
        final = load_summary(final_dir / "summary.json")
    delivered = backend.evaluate(chosen.spec)  # independent check of the delivered network
    latency_ms = float(delivered.latency_ms)
    tolerance = float(cfg.tolerance)
    typed = RandomBaselineSummary(
        method=method,
        target_ms=target_ms,
        latency_ms=latency_ms,
        latency_source=delivered.source,
        latency_noise_pct=delivered.noise_pct,
        estimated_ms=chosen.estimated_ms,
        target_ratio=latency_ms / target_ms,
        within_tolerance=abs(latency_ms / target_ms - 1.0) <= tolerance + 1e-12,
        meets_target=delivered.meets(target_ms),
        tolerance=tolerance,
        val_acc=final.val_acc,
        test_acc=final.test_acc,
        selected_on=select_on,
        selected_sample=best,
        selected_sample_score=rows[best][select_on],
        accuracy_source=(f"trained from scratch by train.py's runner (recipe {final.recipe}, "
                         f"{final.epochs} epochs, seed {int(cfg.seed)}, {final.evaluated} weights) "
                         f"in {final_dir}"),
        search_seconds=search_seconds,
        train_seconds=final.train_seconds,
        total_seconds=time.time() - started,
        num_samples=len(samples),
        short_epochs=rows[best]["epochs"],
        full_epochs=final.epochs,
        sampling=stats.to_dict(),
        samples=rows,
        hardware=backend.name,
        seed=int(cfg.seed),
        data=str(cfg.data.name),
        params=final.params,
        macs=int(archspec_to_graph(chosen.spec).macs),
        num_blocks=len(chosen.spec.blocks),
        arch=codec.encode(chosen.spec),
        final_run_dir=str(final_dir),
        run_dir=str(run_dir),
    )
    summary = typed.to_dict()
    keys = ("method", "target_ms", "estimated_ms", "latency_ms", "val_acc", "test_acc", "accuracy_source",
            "latency_source", "hardware", "data", "search_seconds")

    spec = replace(chosen.spec, meta={**dict(chosen.spec.meta or {}), method: {k: summary[k] for k in keys}})
    codec.save_json(spec, run_dir / "arch.json")
    write_summary(run_dir, typed)
    write_csv(run_dir / "samples.csv", rows)
    _log_final(loggers, summary, rows, run_dir)
    print_summary(summary)
    return summary


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def _log_metrics(loggers: list, metrics: dict, step: int) -> None:
    for logger in loggers:
        try:
            logger.log_metrics(metrics, step=step)
        except Exception as error:  # noqa: BLE001 - a logger never fails the run
            warnings.warn(f"logger {type(logger).__name__}: {error}")


def _log_final(loggers: list, summary: dict, rows: list[dict], run_dir: Path) -> None:
    """Final figures to every logger; W&B also gets the samples table and the arch.json artifact."""
    scalars = {f"final/{k}": v for k, v in summary.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
    for logger in loggers:
        try:
            if type(logger).__name__ != "WandbLogger":
                logger.log_metrics(scalars)
                logger.save()
                continue
            import wandb

            run = logger.experiment
            run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
            columns = list(rows[0])
            run.log({"samples": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])})
            artifact = wandb.Artifact(f"arch-{run.id}", type="architecture", metadata={
                k: summary[k] for k in ("method", "target_ms", "latency_ms", "val_acc", "test_acc", "hardware")})
            artifact.add_file(str(run_dir / "arch.json"))
            run.log_artifact(artifact)
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"logging the results failed ({type(logger).__name__}): {error}")


def print_summary(summary: dict) -> None:
    """One table of the samples, then the delivered network's figures."""
    console = Console(width=120)
    table = Table(title=f"{summary['method']}: {summary['num_samples']} samples at {summary['target_ms']:.4g} ms "
                        f"+-{summary['tolerance']:.0%} on {summary['hardware']}")
    for column in ("#", "latency ms", "estimated ms", summary["selected_on"], "test acc", "params", "epochs"):
        table.add_column(column, justify="right")
    for row in summary["samples"]:
        mark = " *" if row["index"] == summary["selected_sample"] else ""
        table.add_row(f"{row['index']}{mark}", _fmt(row["latency_ms"]), _fmt(row["estimated_ms"]),
                      _fmt(row[summary["selected_on"]]), _fmt(row["test_acc"]), str(row["params"]), str(row["epochs"]))
    console.print(table)
    console.print(f"delivered (sample {summary['selected_sample']}): latency {summary['latency_ms']:.4f} ms "
                  f"(target {summary['target_ms']:.4g} ms, ratio {summary['target_ratio']:.3f}), "
                  f"val acc {_fmt(summary['val_acc'])}, test acc {_fmt(summary['test_acc'])} after "
                  f"{summary['full_epochs']} epochs; search {summary['search_seconds']:.0f} s, "
                  f"total {summary['total_seconds']:.0f} s")
    console.print(f"run dir: {summary['run_dir']}")
