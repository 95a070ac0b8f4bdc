"""Entry-point runner: every command (search.py, train.py, ...) is ``run(main_fn, config_name)``.

``run`` registers the config schemas, lets Hydra compose ``conf/<config_name>.yaml`` with the
command-line overrides, and calls ``main_fn(cfg)`` with a resolved config in which ``latency_ms`` holds
the latency target in ms. Errors a user can cause (``UserError``, bad overrides, unknown keys, wrong
types, missing config options) print one line ``error: <message>`` on stderr and exit with code 2, no
traceback (``HYDRA_FULL_ERROR=1`` brings tracebacks back). W&B is always finished, so in a multirun a
failed job does not break the next ones. The resolved config is printed (rich) and saved as
``config_resolved.yaml`` in the run's output dir. The value of a ``hardware.cmd`` override is Hydra-quoted before
Hydra parses the command line (``s3nas.runtime.cmd_quoting``), so ``hardware.cmd='python bench.py {onnx}'``
works after the shell stripped its quotes.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

import hydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from s3nas.config import CONF_DIR, register_configs, resolve_target_ms, resolve_targets_ms
from s3nas.errors import ConfigError, UserError
from s3nas.runtime.cmd_quoting import parse_error_message, quote_command_overrides
from s3nas.runtime.hardware_list import expand_hardware_list
from s3nas.runtime.quiet import quiet_third_party
from s3nas.runtime import signals
from s3nas.runtime.rich_utils import print_config_tree
from s3nas.runtime.sweep import finish_sweep
from s3nas.utils.io import disk_full_message, is_disk_full

#: Exit status of every user-caused error.
USER_ERROR_EXIT = 2
#: Fault injection for the resume tests (not a config key): crash after this many optimizer steps.
FAULT_INTERRUPT_ENV = "S3NAS_FAULT_INTERRUPT_AFTER_STEPS"


def fault_interrupt_after_steps() -> Optional[int]:
    """Steps after which the search/retraining simulates a crash ($S3NAS_FAULT_INTERRUPT_AFTER_STEPS), or None."""
    text = os.environ.get(FAULT_INTERRUPT_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{FAULT_INTERRUPT_ENV}: must be an integer >= 1, got {text!r}")
    return int(text)


#: A command's task or check: the function itself, or ``"package.module:function"``, imported only when the command
#: runs it (after the composition): a command module naming its task so imports no torch or Lightning for
#: ``--help``, ``--cfg`` or a config error, nor in the processes a table build spawns (spawn imports the main module).
Target = Union[Callable[..., Any], str]


def resolve_target(target: Target) -> Callable[..., Any]:
    """The function of a ``Target`` (``"s3nas.train.runner:train_task"`` -> that function)."""
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run(main_fn: Target, config_name: str = "search", check: Optional[Target] = None) -> None:
    """Run ``main_fn(cfg)`` as a Hydra app on ``conf/<config_name>.yaml`` (see the module docstring).

    ``check(cfg)``, when given, runs on the resolved config before anything is printed or written; its
    UserErrors are reported like any other, the (still empty) run dir is removed, and its return value is
    passed on: ``main_fn(cfg, checked)``. Either may be named by its import path (``Target``).
    """
    register_configs()
    # a log file on a full disk (the job log, W&B's debug.log) must not print tracebacks; the writer that
    # matters reports the full disk in one line
    logging.raiseExceptions = False

    quiet_third_party()
    full_error = _env_flag("HYDRA_FULL_ERROR")
    # Let Hydra re-raise instead of printing its own multi-line report; we print one line below.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    state = {"task_started": False, "full_error": full_error}
    task = make_task(main_fn, state, check=check)
    hydra_main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)
    # the README's hardware.cmd='python bench.py {onnx}' after the shell stripped its quotes (cmd_quoting.py)
    sys.argv[1:] = quote_command_overrides(sys.argv[1:])
    try:
        sys.argv[1:] = expand_hardware_list(sys.argv[1:], config_name)  # hardware=[a,b] (hardware_list.py)
        try:
            hydra_main()
        finally:
            # a multirun always ends with its sweep_summary, also when the sweeper stopped at a failed job
            sweep_report = finish_sweep()
            if sweep_report is not None and sweep_report.not_ok:
                print_error(sweep_report.line())
        if sweep_report is not None and sweep_report.not_ok:
            sys.exit(1)  # the sweeper went on past failed jobs (optuna): the exit code still says so
    except UserError as err:
        if full_error:
            raise
        if not getattr(err, "reported", False):
            print_error(str(err))
        sys.exit(getattr(err, "exit_code", USER_ERROR_EXIT))
    except Exception as err:  # composition errors happen before the task starts
        if not full_error and is_disk_full(err):  # Hydra's own files (.hydra/, the job log) on a full disk
            print_error(disk_full_message(err.filename))
            sys.exit(USER_ERROR_EXIT)
        if not full_error and isinstance(err, OSError) and err.filename and not _is_config_error(err):
            # the run dir (or a file in it) cannot be written
            print_error(f"cannot write '{err.filename}': {err.strerror or err}; set hydra.run.dir=<a writable "
                        "directory> (hydra.sweep.dir with -m; paths.cache_dir for the caches)")
            sys.exit(USER_ERROR_EXIT)
        if full_error or state["task_started"] or not _is_config_error(err):
            raise
        print_error(parse_error_message(err) or format_config_error(err))
        sys.exit(USER_ERROR_EXIT)


def make_task(main_fn: Target, state: Optional[dict] = None, check: Optional[Target] = None) -> Callable[[Any], Any]:
    """Wrap ``main_fn`` as a Hydra task: resolve, check, print + save the config, report errors, finish W&B."""

    def task(cfg: Any) -> Any:
        if state is not None:
            state["task_started"] = True
        failed = True
        checked_ok = False
        # SIGTERM / SIGUSR1: a checkpoint at the next training step, then the interrupt path below (signals.py)
        restore_signals = signals.install()
        try:
            prepare_config(cfg)
            from s3nas.runtime.quiet import quiet_third_party

            quiet_third_party()  # again: Hydra's job logging was set up after run() started
            checked = resolve_target(check)(cfg) if check is not None else None
            checked_ok = True
            _print_and_save(cfg)
            main = resolve_target(main_fn)
            result = main(cfg, checked) if check is not None else main(cfg)
            failed = False
            return result
        except KeyboardInterrupt:
            if not checked_ok:
                remove_unused_run_dir(cfg)
            print_error(interrupted_message(cfg, started=checked_ok))
            sys.exit(signals.exit_code())  # 130 after Ctrl-C, 128 + signum after SIGTERM / SIGUSR1
        except UserError as err:
            # a run dir holding nothing but the start-up files (an error before the task wrote anything, also after
            # the checks: export's run_dir without weights) is not left behind
            remove_unused_run_dir(cfg)
            if state is not None and state.get("full_error"):
                raise
            prefix = _job_prefix()
            print_error(f"{prefix}{err}")
            err.reported = True  # type: ignore[attr-defined]
            if not prefix:
                # single run: exit here, before Hydra adds its own "Error executing job" line
                sys.exit(getattr(err, "exit_code", USER_ERROR_EXIT))
            raise  # multirun: Hydra marks this job failed and goes on with the next ones
        except OSError as err:
            if not is_disk_full(err) or (state is not None and state.get("full_error")):
                raise
            # a full disk (ENOSPC/EDQUOT) anywhere in the command: one line naming the file; every writer is
            # atomic, so the rerun resumes from what was written before
            prefix = _job_prefix()
            print_error(f"{prefix}{disk_full_message(err.filename)}")
            if not prefix:
                sys.exit(USER_ERROR_EXIT)
            reported = UserError(disk_full_message(err.filename))
            reported.reported = True  # type: ignore[attr-defined]
            raise reported from None
        finally:
            finish_wandb(exit_code=1 if failed else 0)
            restore_signals()

    if isinstance(main_fn, str):
        task.__module__, _, task.__name__ = main_fn.partition(":")
    else:
        task.__name__ = getattr(main_fn, "__name__", "task")
        task.__module__ = getattr(main_fn, "__module__", __name__)
    return task


def prepare_config(cfg: Any) -> Any:
    """Resolve every interpolation in place and write the latency target in ms into ``latency_ms``."""
    check_known_keys(cfg)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(format_config_error(err)) from None
    if "latency" in cfg:
        targets_ms = resolve_targets_ms(cfg)
        if "latency_targets_ms" in cfg:
            cfg.latency_targets_ms = targets_ms
            cfg.latency_ms = targets_ms[0] if len(targets_ms) == 1 else None
        else:
            cfg.latency_ms = resolve_target_ms(cfg)  # one target: a list is a ConfigError here
    return cfg


def check_known_keys(cfg: Any, prefix: str = "") -> None:
    """ConfigError for keys a schema does not declare (``+key=value`` bypasses Hydra's struct check)."""
    if not isinstance(cfg, DictConfig):
        return
    object_type = OmegaConf.get_type(cfg)
    declared = ({f.name for f in dataclasses.fields(object_type)}
                if object_type is not None and dataclasses.is_dataclass(object_type) else None)
    for key in cfg.keys():
        if prefix == "" and key == "hydra":
            continue
        if declared is not None and key not in declared:
            accepted = ", ".join(sorted(k for k in declared if not k.startswith("_")))
            raise ConfigError(f"{prefix}{key}: unknown key; accepted keys: {accepted}")
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none() \
                and not node._is_interpolation():
            check_known_keys(node, f"{prefix}{key}.")


def interrupted_message(cfg: Any, started: bool) -> str:
    """'interrupted[ by SIGTERM]; run dir ...; resume with: python search.py ... hydra.run.dir=...' (one line)."""
    try:
        run_dir = str(cfg.paths.output_dir)
    except Exception:  # noqa: BLE001
        run_dir = ""
    signum = signals.received()
    head = f"interrupted by {signals.signal_name(signum)}" if signum is not None else "interrupted"
    if not started or not run_dir or not Path(run_dir).is_dir():
        return f"{head} before the run started; nothing was written"
    args = [a for a in sys.argv[1:] if not a.startswith("hydra.run.dir=")]
    command = " ".join(shlex.quote(a) for a in [*_command_words(), *args, f"hydra.run.dir={run_dir}"])
    has_checkpoints = any(Path(run_dir).rglob("*.ckpt"))
    where = f"the run dir {run_dir} keeps its checkpoints" if has_checkpoints else "no checkpoint was written yet"
    stop_path, stop_step = signals.stop_checkpoint()
    if stop_path is not None:
        where = f"saved a checkpoint at step {stop_step} ({stop_path})"
    return f"{head}; {where}; resume with: {command}"


def _command_words() -> list[str]:
    """How this command was started: ['s3nas-search'], ['python', 'search.py'] or ['python', '-m', 'module']."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main_spec is not None and main_spec.name:  # python -m s3nas.postsearch.scaling
        return ["python", "-m", main_spec.name.removesuffix(".__main__")]
    script = Path(sys.argv[0]).name
    return ["python", script] if script.endswith(".py") else [script]


#: What Hydra (and our config printer) put into a run dir before the task does anything.
_STARTUP_FILES = (".hydra", "config_resolved.yaml")


def remove_unused_run_dir(cfg: Any) -> None:
    """Delete this job's run dir if it holds nothing but Hydra's start-up files (a run that never started)."""
    try:
        run_dir = Path(str(cfg.paths.output_dir))
    except Exception:  # noqa: BLE001 - no output dir in this config
        return
    if not run_dir.is_dir():
        return
    entries = list(run_dir.iterdir())
    if all(e.name in _STARTUP_FILES or (e.is_file() and e.suffix == ".log") for e in entries):
        shutil.rmtree(run_dir, ignore_errors=True)
        # and the default layout's parents (outputs/<task>/) when this run was all they held
        default_roots = {(Path.cwd() / name).resolve() for name in ("outputs", "multirun")}
        for parent in list(run_dir.resolve().parents)[:2]:
            if not any(parent == root or root in parent.parents for root in default_roots):
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (other runs) or not ours to remove
                break


def finish_wandb(exit_code: int = 0) -> None:
    """Finish the active W&B run, if any (without importing wandb when nothing used it)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=exit_code)
        except Exception:  # noqa: BLE001 - finishing a failed run (e.g. on a full disk) keeps the first error
            if exit_code == 0:
                raise


def print_error(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr."""
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    sys.stderr.write(f"error: {one_line}\n")
    sys.stderr.flush()


def format_config_error(err: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error: what failed, which key, what is accepted."""
    if isinstance(err, MissingConfigException):
        return _format_missing_config(err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    head = lines[0].rstrip(".") if lines else type(err).__name__
    cause = err.__cause__ if err.__cause__ is not None else err
    detail = _omegaconf_detail(cause)
    if detail and cause is not err:
        return f"{head}: {detail}"
    if detail:
        return detail
    hints = [line for line in lines[1:] if not line.startswith(("full_key:", "object_type=", "See https"))]
    return "; ".join([head] + hints)


def _omegaconf_detail(err: BaseException) -> str:
    """Message of an OmegaConf error plus its key and, for unknown keys, the accepted keys."""
    if not isinstance(err, OmegaConfBaseException):
        return ""
    msg = (getattr(err, "msg", None) or str(err)).splitlines()[0].strip()
    full_key = getattr(err, "full_key", None)
    detail = msg
    if full_key and full_key not in msg:
        detail += f" (key: {full_key})"
    object_type = getattr(err, "object_type", None)
    if isinstance(err, (ConfigAttributeError, ConfigKeyError)) and object_type is not None:
        import dataclasses

        if dataclasses.is_dataclass(object_type):
            names = [f.name for f in dataclasses.fields(object_type) if not f.name.startswith("_")]
            detail += f"; accepted keys: {', '.join(names)}"
    return detail


#: Hydra plugins shipped as optional extras: missing config option -> the extra that provides it.
PLUGIN_EXTRAS = {
    "hydra/sweeper/optuna": "sweeps",
    "hydra/sweeper/sampler": "sweeps",
    "hydra/launcher/joblib": "sweeps",
    "hydra/launcher/submitit_slurm": "slurm",
    "hydra/launcher/submitit_local": "slurm",
}


def missing_extra(message: str) -> Optional[str]:
    """The optional extra whose Hydra plugin a 'Could not find ...' message asks for, or None."""
    for option, extra in PLUGIN_EXTRAS.items():
        if f"'{option}" in message:
            return extra
    return None


def _format_missing_config(err: BaseException) -> str:
    """'Could not find data/nope; available options in data: cifar10, digits, ...' (schemas hidden)."""
    lines = [line.strip() for line in str(err).splitlines()]
    head = lines[0] if lines else "config not found"
    extra = missing_extra(head)
    if extra is not None:
        option = head.split("'")[-2] if head.count("'") >= 2 else head
        return f"{option} needs the optional extra '{extra}': pip install \"s3nas[{extra}]\""
    options = [o for o in (getattr(err, "options", None) or []) if not str(o).endswith("_schema")]
    if not options:
        # fall back to parsing Hydra's "Available options in 'group':" block
        collecting = False
        for line in lines[1:]:
            if line.startswith("Available options"):
                collecting = True
                continue
            if collecting and (not line or line.startswith("Config search path")):
                break
            if collecting and not line.endswith("_schema"):
                options.append(line)
    group = head.split("'")[-2].rsplit("/", 1)[0] if head.count("'") >= 2 else ""
    if options:
        return f"{head}; available options{f' in {group!r}' if group else ''}: {', '.join(options)}"
    return head


def _is_config_error(err: BaseException) -> bool:
    return isinstance(err, (HydraException, OmegaConfBaseException))


def _job_prefix() -> str:
    """'job 3 (latency=fast): ' inside a multirun, '' otherwise."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return f"job {hydra_cfg.job.num} ({','.join(hydra_cfg.overrides.task)}): "
    except Exception:  # noqa: BLE001 - no Hydra context: no prefix
        pass
    return ""


def _print_and_save(cfg: Any) -> None:
    output_dir = cfg.paths.output_dir if "paths" in cfg and "output_dir" in cfg.paths else None
    save_to = Path(output_dir) / "config_resolved.yaml" if output_dir else None
    print_config_tree(cfg, save_to=save_to)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
