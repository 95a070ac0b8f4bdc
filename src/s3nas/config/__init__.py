"""Config plumbing: the conf/ directory, schema registration, resolvers, latency-target resolution.

The config tree is the repository's top-level conf/, shipped inside the package as ``s3nas.conf``
(pyproject.toml maps it), so ``CONF_DIR`` is found through importlib.resources in a wheel and in an editable
install alike; ``S3NAS_CONFIG_DIR`` overrides it.

``register_configs()`` must run before any composition (entry points do it through
``s3nas.runtime.entry.run``; tests through ``tests/conftest.py``). It stores BASE's schemas and those of
every ``s3nas/config/*_schema.py`` module that defines ``register(cs)``, and registers the ``s3nas.*``
OmegaConf resolvers. ``compose_config`` composes a config outside a Hydra run (tests, notebooks).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterable, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import ListConfig, OmegaConf

import simulator
from s3nas.config import schema
from s3nas.config.units import format_ms, is_cycles, parse_latency_ms, split_latency
from s3nas.errors import ConfigError, UserError

__all__ = [
    "CONF_DIR",
    "compose_config",
    "ensure_writable_dir",
    "format_ms",
    "hardware_clock_hz",
    "instantiate_config",
    "parse_latency_ms",
    "register_configs",
    "resolve_target_ms",
    "split_latency",
]



def _find_conf_dir() -> Path:
    """Hydra's config tree: $S3NAS_CONFIG_DIR, else the ``s3nas.conf`` package (conf/ of the checkout in an
    editable install, site-packages/s3nas/conf in a wheel)."""
    override = os.environ.get("S3NAS_CONFIG_DIR")
    if override:
        return Path(override).resolve()

    try:
        return Path(str(files("s3nas.conf"))).resolve()
    except ModuleNotFoundError:
        raise ConfigError("s3nas.conf (the config tree) is not installed; reinstall s3nas "
                          "(pip install . or pip install -e .)") from None


def _find_project_root(conf_dir: Path) -> Optional[Path]:
    """The checkout holding ``conf_dir`` (a source or editable install), None for an installed wheel."""
    root = conf_dir.parent
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "s3nas").is_dir() else None


#: Hydra's config directory (see _find_conf_dir).
CONF_DIR = _find_conf_dir()
#: The source checkout (editable install) or None (installed wheel); paths.root falls back to the cwd.
REPO_ROOT = _find_project_root(CONF_DIR)

_registered = False


def _share_the_config_store() -> None:
    """Make a deep copy of Hydra's ConfigStore the store itself (it is a singleton).

    Every composition deep-copies its config repository (hydra 1.3's CachingConfigRepository: "to avoid mutating
    it with initialize_sources()"), and the repository's StructuredConfigSource holds the ConfigStore, so every
    composition also copied every registered schema: ~15% of a composition here (~20 ms of ~145 for
    ``compose_config("search")``), again for each job of a multirun (quadratic in the sweep's length, hydra-zen
    issue 769). Nothing mutates the copy: Hydra's later versions no longer hold the store there (hydra PR 2928,
    "Use latest configstore singleton instead of storing it"), and the composed configs are the same.
    """
    if "__deepcopy__" not in vars(ConfigStore):
        ConfigStore.__deepcopy__ = lambda self, memo: self


def register_configs() -> None:
    """Store every structured-config schema in Hydra's ConfigStore and register resolvers (idempotent)."""
    global _registered
    if _registered:
        return

    _share_the_config_store()
    cs = ConfigStore.instance()
    schema.register(cs)
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.endswith("_schema"):
            module = importlib.import_module(f"{__name__}.{module_info.name}")
            if hasattr(module, "register"):
                module.register(cs)
    OmegaConf.register_new_resolver("s3nas.repo_root", lambda: str(REPO_ROOT or Path.cwd()), replace=True)
    OmegaConf.register_new_resolver(
        "s3nas.user_cache",
        lambda: str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "s3nas"),  # empty: unset
        replace=True,
    )
    _registered = True


def ensure_writable_dir(path: str | os.PathLike[str], key: str, hint: str = "") -> Path:
    """Create ``path`` if needed and write (then delete) a probe file in it; a ConfigError naming ``key`` when
    that fails (a read-only install or HOME, a path under a regular file). Probing, not permission bits:
    those do not stop root, and a read-only mount stops everybody."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".s3nas-probe-"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{key}: cannot write in '{path}' ({reason}); "
                          f"{hint or f'set {key}=<a writable directory>'}") from None
    return path


def load_hardware(hardware_cfg: Any) -> Any:
    """Simulator profile from ``hardware.name`` / ``hardware.profile`` (ConfigError naming the problem)."""
    profile = hardware_cfg.profile
    name_or_path = profile or hardware_cfg.name
    key = "hardware.profile" if profile else "hardware.name"
    if profile and Path(str(profile)).is_file():
        try:
            return simulator.load_profile(str(profile))
        except Exception as error:  # a bad field: say which, not "unknown hardware"
            message = " ".join(str(error).split()) or type(error).__name__
            raise ConfigError(f"hardware.profile: '{profile}': {message}") from None
    try:
        return simulator.load_profile(str(name_or_path))
    except (ValueError, FileNotFoundError, KeyError, OSError) as error:
        known = ", ".join(simulator.list_profiles())
        raise ConfigError(f"{key}: unknown hardware '{name_or_path}' ({' '.join(str(error).split())}); "
                          f"use one of {known} or hardware.profile=<profile.yaml>") from None


def hardware_clock_hz(hardware_cfg: Any) -> float:
    """Clock of the configured hardware (``hardware.profile`` path if set, else ``hardware.name``)."""
    if "name" not in hardware_cfg or "profile" not in hardware_cfg:  # a user's backend names no profile
        raise ConfigError("latency: a target in cycles needs the clock of a simulator profile (hardware.name or "
                          "hardware.profile); give this backend's target in ms or us")
    name = hardware_cfg.profile or hardware_cfg.name
    key = "hardware.profile" if hardware_cfg.profile else "hardware.name"
    try:
        return float(simulator.load_profile(str(name)).clock_hz)
    except (ValueError, FileNotFoundError, KeyError, OSError) as err:
        raise ConfigError(f"{key}: {_first_line(err)}") from None


def resolve_target_ms(cfg: Any) -> float:
    """The latency target of ``cfg`` (``cfg.latency``) in ms; cycles use the hardware's clock. One target: a list
    is a ConfigError (only the search takes several)."""
    value = cfg.latency
    if isinstance(value, (list, tuple, ListConfig)):
        if len(value) == 1 and not cfg.get("extra_hardware"):
            return resolve_targets_ms(cfg)[0]
        raise ConfigError(f"latency: this command takes one target, got {len(value)} ({_listed(value)}); a list "
                          "of targets is for search.py")
    if is_cycles(value):
        return parse_latency_ms(value, hardware_clock_hz(cfg.hardware))
    return parse_latency_ms(value)


def hardware_configs(cfg: Any) -> list[Any]:
    """``cfg.hardware`` then every ``cfg.extra_hardware`` entry (``hardware=[a,b]``), in command-line order."""
    extra = cfg.get("extra_hardware") or {}
    return [cfg.hardware, *[extra[name] for name in extra]]


def resolve_targets_ms(cfg: Any) -> list[float]:
    """Every latency target of ``cfg.latency`` (one value or a list) in ms. With several hardware
    (``hardware=[a,b]``) the list gives one target per hardware, in order, or one target for them all; cycles use
    the clock of the hardware the target is for."""
    value = cfg.latency
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    hardware = hardware_configs(cfg)
    if not values:
        raise ConfigError("latency: an empty list; give a target (2.5ms) or a list of them ([1.5ms,2ms,2.5ms])")
    if len(hardware) > 1 and len(values) not in (1, len(hardware)):
        names = ",".join(str(h.get("name", "?")) for h in hardware)
        raise ConfigError(f"latency: {len(values)} targets ({_listed(values)}) for {len(hardware)} hardware "
                          f"([{names}]); give one target per hardware, in order, or one for all")
    out = []
    for i, item in enumerate(values):
        clock_of = hardware[i] if len(hardware) > 1 else hardware[0]
        if is_cycles(item):
            out.append(parse_latency_ms(item, hardware_clock_hz(clock_of)))
        else:
            out.append(parse_latency_ms(item))
    if len(hardware) == 1 and len(set(out)) != len(out):
        raise ConfigError(f"latency: a target is listed twice ({_listed(values)}); list each target once")
    return out


def _listed(values: Any) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def compose_config(
    config_name: str = "search",
    overrides: Iterable[str] = (),
    output_dir: Optional[str | Path] = None,
) -> Any:
    """Compose ``conf/<config_name>.yaml`` outside a Hydra run; ``output_dir`` fills paths.output_dir."""
    register_configs()
    overrides = list(overrides)
    if output_dir is not None:
        overrides.append(f"paths.output_dir={Path(output_dir).as_posix()}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def instantiate_config(node: dict, key: str) -> Any:
    """``hydra.utils.instantiate(node)`` (plain containers); a ``_target_`` that cannot be used is a one-line
    ConfigError naming ``<key>._target_``; the target's own errors come out unwrapped (a DataError stays one)."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if cause is not None and str(err).startswith("Error in call to target"):
            raise cause  # a bug or an unexpected failure of the target: its own exception and traceback
        target = node.get("_target_")
        reason = " ".join(str(cause if cause is not None else err).split())
        reason = reason.removeprefix(f"Error loading '{target}': ")  # Hydra's ImportError repeats the path
        raise ConfigError(f"{key}._target_: cannot instantiate {target!r} ({reason})") from None
