"""Lightning loggers from ``cfg.logger``: W&B (default; offline without a login), CSV, or none.

``build_loggers(cfg)`` instantiates ``logger._target_`` (``hydra.utils.instantiate``) and returns a list
of Lightning loggers that already hold the resolved config as hyper-parameters. With ``logger.mode=auto`` W&B runs online only when the user has logged in
(``WANDB_API_KEY``, or the ~/.netrc entry of ``wandb login``) and ``WANDB_MODE`` does not say otherwise;
offline runs live under the run's output dir and are announced once per process with the ``wandb sync`` command to
upload them. ``run_name_from_overrides()`` names a run after its command-line overrides.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf

from s3nas.config import instantiate_config
from s3nas.errors import ConfigError

LOGGER_KINDS = ("wandb", "csv", "none")
#: logger.kind -> the Lightning logger class of a config without ``_target_``
DEFAULT_TARGETS = {"wandb": "pytorch_lightning.loggers.WandbLogger", "csv": "pytorch_lightning.loggers.CSVLogger"}
WANDB_MODES = ("auto", "online", "offline", "disabled")
#: Config keys (and their sub-keys) left out of run names: where things go, not what runs.
RUN_NAME_EXCLUDE = ("hydra", "paths", "logger", "callbacks", "debug")

_offline_announced = False


def build_loggers(cfg: Any) -> list:
    """The Lightning loggers of ``cfg.logger`` (empty for ``logger=none``), config already logged.

    The logger is ``hydra.utils.instantiate`` of ``logger._target_`` (the kind's Lightning class when unset)
    with the group's keys, after s3nas has filled in what depends on the run: the save dir, the run name
    and group, and W&B's mode (``auto``: online only when logged in)."""
    logger_cfg = cfg.get("logger") if hasattr(cfg, "get") else None
    if logger_cfg is None:
        return []
    kind = str(logger_cfg.get("kind", "none"))
    if kind not in LOGGER_KINDS:
        raise ConfigError(f"logger.kind: {kind!r} is not a logger; use {', '.join(LOGGER_KINDS)}")
    if kind == "none":
        return []
    settings = _plain(logger_cfg)
    settings.pop("kind", None)
    settings["_target_"] = settings.get("_target_") or DEFAULT_TARGETS[kind]
    save_dir = Path(str(settings.get("save_dir") or _output_dir(cfg)))
    save_dir.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        # the run name and group are W&B's; CSVLogger's `name` is its sub-folder (<save_dir>/csv/version_<n>)
        settings = {"_target_": settings["_target_"], "save_dir": str(save_dir), "name": "csv", "version": None}
    else:
        mode = wandb_mode(str(settings.get("mode") or "auto"))
        if mode == "disabled":
            return []
        if mode == "offline":
            _announce_offline(save_dir)
        settings.update(
            name=settings.get("name") or run_name_from_overrides(),
            group=settings.get("group") or _multirun_group(),
            tags=[str(t) for t in (settings.get("tags") or [])] or None,
            save_dir=str(save_dir),
            mode=mode,  # passed to wandb.init (Lightning's offline=True would set WANDB_MODE process-wide)
        )

    loggers = [instantiate_config(settings, "logger")]
    params = resolved_config(cfg)
    for logger in loggers:
        logger.log_hyperparams(params)
    return loggers


def _plain(node: Any) -> dict:
    """A logger config as a plain dict, interpolations resolved."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dict(node)


def wandb_mode(configured: str = "auto") -> str:
    """online / offline / disabled for ``logger.mode`` (``auto``: online only when logged in)."""
    if configured not in WANDB_MODES:
        raise ConfigError(f"logger.mode: {configured!r} is not a W&B mode; use {', '.join(WANDB_MODES)}")
    if configured != "auto":
        return configured
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode in ("offline", "dryrun"):
        return "offline"
    if env_mode == "disabled" or os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled"
    return "online" if wandb_logged_in() else "offline"


def wandb_logged_in() -> bool:
    """True if a W&B API key is available: WANDB_API_KEY, or the ~/.netrc entry `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    # (wandb.api.api_key would also answer this, but it is deprecated and prints a warning)
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    netrc_path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if netrc_path.is_file():
        try:
            return bool(netrc.netrc(str(netrc_path)).authenticators(host))
        except (netrc.NetrcParseError, OSError):
            return False
    return False


def _announce_offline(save_dir: Path) -> None:
    """Say once per process where offline runs go and how to upload them."""
    global _offline_announced
    if _offline_announced:
        return
    _offline_announced = True
    runs = save_dir / "wandb"
    print(f"W&B: offline run in {runs} (no W&B login); upload with `wandb sync {runs}/offline-run-*`, "
          f"browse with `wandb leet {runs}`")


def resolved_config(cfg: Any) -> dict:
    """The config as a plain dict with interpolations resolved (what loggers record)."""
    if isinstance(cfg, DictConfig):
        container = OmegaConf.to_container(cfg, resolve=True)
        container.pop("hydra", None)  # type: ignore[union-attr]
        return container  # type: ignore[return-value]
    return dict(cfg)


def run_name_from_overrides(overrides: Optional[Iterable[str]] = None,
                            exclude: Iterable[str] = RUN_NAME_EXCLUDE) -> Optional[str]:
    """'latency=2ms,loss.lambda1=5' from the job's command-line overrides (None when there are none)."""
    if overrides is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            overrides = list(HydraConfig.get().overrides.task)
        except (ValueError, ImportError):  # not inside a Hydra run
            return None
    excluded = tuple(exclude)

    def key_of(override: str) -> str:
        return override.lstrip("+~").split("=", 1)[0]

    kept = [o for o in overrides
            if not any(key_of(o) == k or key_of(o).startswith((k + ".", k + "/")) for k in excluded)]
    return ",".join(kept) or None


def _multirun_group() -> Optional[str]:
    """In a multirun, the sweep dir's name (jobs of one sweep share a W&B group); else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return f"{Path(hydra_cfg.sweep.dir).parent.name}/{Path(hydra_cfg.sweep.dir).name}"
    except (ValueError, ImportError):
        pass
    return None


def _output_dir(cfg: Any) -> str:
    paths = cfg.get("paths") if hasattr(cfg, "get") else None
    if paths is not None and paths.get("output_dir"):
        return str(paths.get("output_dir"))
    return os.getcwd()
