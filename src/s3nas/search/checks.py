"""The checks of ``python search.py`` that run before anything is printed or written: every value a user can get
wrong (loss, schedule, trainer keys the search owns, hardware, target and its feasibility, data, checkpoint) fails
here with one line. Cheap: torch and Lightning are imported only for the data and checkpoint checks, after the
others passed, so a mistyped value is reported at once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from s3nas.arch.space import SearchSpace
from s3nas.config import hardware_configs, resolve_targets_ms
from s3nas.config.loss_schema import check_loss
from s3nas.config.schedule_schema import check_schedule
from s3nas.errors import ConfigError
from s3nas.latency.backend import make_backend
from s3nas.runtime.trainer import check_finite, check_loader_values

__all__ = ["SEARCH_OWNED_TRAINER_KEYS", "Checked", "check_checkpoint_fits", "check_search", "readable_checkpoint",
           "resume_checkpoint", "run_dir_of"]


#: Trainer keys the search sets itself: the message names the schedule key to use instead.
SEARCH_OWNED_TRAINER_KEYS = {
    "max_epochs": "schedule.warmup_epochs / schedule.search_epochs",
    "min_epochs": "schedule.warmup_epochs / schedule.search_epochs",
    "max_steps": "schedule.warmup_epochs / schedule.search_epochs",
    "gradient_clip_val": "schedule.gradient_clip_val (the search clips the weights only)",
    "accumulate_grad_batches": "data.batch_size",
}


# ----------------------------------------------------------------------------------- small helpers
def run_dir_of(cfg: DictConfig) -> Path:
    """The Hydra run dir of this job (paths.output_dir)."""
    return Path(cfg.paths.output_dir)


def _check_trainer(trainer_cfg) -> None:
    for key, instead in SEARCH_OWNED_TRAINER_KEYS.items():
        value = trainer_cfg.get(key)
        if value is not None and not (key == "accumulate_grad_batches" and value == 1) \
                and not (key == "max_steps" and value == -1):
            raise ConfigError(f"trainer.{key}: set by the search; use {instead} (got {value!r})")


@dataclass
class Checked:
    """What ``check_search`` established (reused by ``run_search``)."""

    backend: Any  # s3nas.latency.backend.LatencyBackend of cfg.hardware
    target_ms: float  # the first target
    deploy_space: Any
    datamodule: Any
    feasibility: Any = None  # the space's fastest and slowest network on the backend
    backends: list = field(default_factory=list)  # every hardware's backend (hardware=[a,b]: a's first)
    # the networks to search: per network, (backend index, target ms) per hardware it must meet
    networks: list[list[tuple[int, float]]] = field(default_factory=list)

    @property
    def many_targets(self) -> bool:
        """Several networks (latency=[...] on one hardware): a front."""
        return len(self.networks) > 1


def check_search(cfg: DictConfig) -> Checked:
    """Every user error of a search, fast (no latency table, no training): raises one-line UserErrors."""
    check_loss(cfg.loss)
    check_schedule(cfg.schedule)
    _check_trainer(cfg.trainer)
    check_loader_values(cfg.data)
    for group in ("schedule", "loss", "data", "trainer"):
        check_finite(cfg[group], group)
    backends = [make_backend(hardware) for hardware in hardware_configs(cfg)]
    targets_ms = [float(t) for t in resolve_targets_ms(cfg)]
    if len(backends) > 1:  # one network meeting one target per hardware (or the same target on every one)
        per_hardware = targets_ms if len(targets_ms) == len(backends) else targets_ms * len(backends)
        networks = [list(enumerate(per_hardware))]
    else:  # one network per target
        networks = [[(0, t)] for t in sorted(targets_ms)]
    if len(networks) > 1 and cfg.get("optimized_metric"):
        raise ConfigError("optimized_metric: a sweep objective needs one network; give one latency target per job "
                          f"(got {len(networks)})")
    deploy_space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=int(cfg.deploy.num_classes),
                                           input_size=int(cfg.deploy.input_size),
                                           in_channels=int(cfg.deploy.in_channels))
    checked_on: dict[int, Any] = {}  # backend index -> its feasibility (the fastest network, simulated or measured)
    for network in networks:  # an unreachable target fails naming its hardware
        for index, target_ms in network:
            if index not in checked_on:
                checked_on[index] = backends[index].check_target(target_ms, deploy_space)
            else:
                checked_on[index].check(target_ms)
    feasibility = checked_on[0]
    return _check_rest(cfg, Checked(backend=backends[0], target_ms=networks[0][0][1], deploy_space=deploy_space,
                                    datamodule=None, feasibility=feasibility, backends=backends, networks=networks))


def _check_rest(cfg: DictConfig, checked: Checked) -> Checked:
    """The checkpoint and data checks (after the hardware's)."""
    if cfg.get("ckpt_path"):
        resume_checkpoint(cfg, None)  # an unreadable ckpt_path is a user error (torch only, before Lightning)
    from s3nas.data import build_datamodule  # torch and Lightning: only after the cheap checks passed

    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()  # missing roots / files: DataError (one line)
    checked.datamodule = datamodule
    return checked


# ----------------------------------------------------------------------------------- checkpoints
def readable_checkpoint(path: Path) -> bool:
    """True if ``path`` loads as an s3nas search checkpoint."""
    import torch  # heavy: the checks import it only when a checkpoint is to be read

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # truncated/corrupt files raise many different errors
        return False
    return isinstance(checkpoint, dict) and "state_dict" in checkpoint and isinstance(checkpoint.get("s3nas"), dict)


def check_checkpoint_fits(path: Path, module: Any, from_ckpt_path: bool) -> None:
    """ConfigError (one line naming the file and what to do) when the search checkpoint ``path`` holds another
    search space's supernet than ``module``'s (other supernet/candidates/data shape: tensors missing, extra or
    of other shapes), instead of Lightning's page of size mismatches."""
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)["state_dict"]
    except Exception:  # noqa: BLE001 - unreadable: resume_checkpoint already said so
        return
    own = module.state_dict()
    missing = sorted(set(own) - set(saved))
    extra = sorted(set(saved) - set(own))
    differ = sorted(k for k in set(own) & set(saved) if _shape(own[k]) != _shape(saved[k]))
    if not (missing or extra or differ):
        return
    if differ:
        example = f"{differ[0]} is {list(_shape(saved[differ[0]]))} in the file, {list(_shape(own[differ[0]]))} here"
    else:
        example = f"{(missing or extra)[0]} is {'missing from' if missing else 'only in'} the file"
    where = f"ckpt_path: '{path}'" if from_ckpt_path else f"checkpoint {path} of the run dir"
    fix = ("pass the checkpoint of this search space, or leave ckpt_path out" if from_ckpt_path else
           "resume with the supernet/candidates/data it was made with, or use another hydra.run.dir")
    count = len(missing) + len(extra) + len(differ)
    raise ConfigError(f"{where} is a search checkpoint of another search space ({count} tensors differ: {example}); "
                      f"{fix}")


def _shape(tensor: Any) -> tuple:
    return tuple(getattr(tensor, "shape", ()))


def resume_checkpoint(cfg: DictConfig, ckpt_dir: Path | None) -> Path | None:
    """``ckpt_path`` if given (must be readable), else the newest readable checkpoint of the run dir."""
    if cfg.get("ckpt_path"):
        path = Path(str(cfg.ckpt_path))
        if not path.is_file():
            raise ConfigError(f"ckpt_path: no checkpoint file at '{path}'")
        if not readable_checkpoint(path):
            raise ConfigError(f"ckpt_path: '{path}' is not a readable s3nas search checkpoint; pass another one")
        return path
    if ckpt_dir is None or not ckpt_dir.is_dir():
        return None
    candidates = sorted((p for p in ckpt_dir.glob("*.ckpt") if p.is_file()), key=lambda p: p.stat().st_mtime,
                        reverse=True)
    for path in candidates:
        if readable_checkpoint(path):
            return path
        warnings.warn(f"skipping unreadable checkpoint {path}")
    return None
