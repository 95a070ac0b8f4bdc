"""`python -m s3nas.profiling.profile_space hardware=... data=...`: black-box search-space profiling (BBSSP).

Zeng et al. (ASP-DAC 2020): the search space bounds what NAS finds, and spaces designed for mobile CPUs suit
accelerators badly, so profile the candidate blocks on the accelerator first and keep the ones that pay.

1. Candidates: every block choice of the conf/candidates entries in ``profile.candidates`` plus the generated
   ``profile.grid`` (``s3nas.profiling.ssbn``), for the block types in ``profile.block_types``.
2. One search-space base network (SSBN) per candidate: the block repeated through the supernet's stages.
   Latency: simulated on the `hardware` profile, or measured on a black-box device (``hardware.device``, see
   ``s3nas.latency.device``) at ``deploy.*``. Accuracy: a short training of the SSBN on `data` with
   train.py's runner and the `recipe` group (``profile.accuracy`` shortens it; validation accuracy is used,
   test accuracy is reported). Both are cached per SSBN under ``paths.cache_dir/bbssp`` (a training that was
   interrupted resumes from its last checkpoint), so rerunning only does what is missing.
3. Cost (the paper's "artificial parameter" is ``cost.latency_weight`` = w): with both terms min-max
   normalised over the profiled SSBNs, ``cost = (1 - w) * (best_acc - acc) / acc_range + w * (lat - min_lat) /
   lat_range``. The ``select.top_k`` cheapest candidates are selected; the written space takes the block type
   of the cheapest one and the kernels/expansions of the selected candidates of that type.
4. Outputs: ``<output.config_dir>/candidates/<output.name>.yaml`` (null: the checkout's conf/, or ``<run dir>/conf``
   for an installed copy, whose conf/ is not written) (a candidates entry that also sets
   ``supernet.block_type``: ``python search.py candidates=<output.name>``), and in the run dir ``ssbns.csv``
   (every SSBN: latency, accuracy, cost, rank, selected, Pareto), ``profile.png`` (accuracy vs latency, the
   selected ones marked), ``summary.json``, ``ssbns/<name>.json`` (each SSBN's ArchSpec) and a copy of the
   written entry; a table is printed; W&B gets the table, the plot and the summary.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml
from hydra.utils import get_class
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from s3nas.arch import codec
from s3nas.arch.space import SearchSpace, option_type
from s3nas.arch.spec import BLOCK_TYPES, ArchSpec
from s3nas.config import CONF_DIR, REPO_ROOT, ensure_writable_dir
from s3nas.config.supernet_schema import check_supernet
from s3nas.errors import ConfigError
from s3nas.latency.backend import LatencyBackend, make_backend
from s3nas.outputs import ProfileSpaceSummary, write_summary
from s3nas.profiling.ssbn import (
    Candidate,
    candidates_from_entry,
    candidates_from_grid,
    collect_candidates,
    load_candidates_entry,
    space_entry,
    ssbn_spec,
)
from s3nas.runtime.entry import run
from s3nas.runtime.loggers import build_loggers
from s3nas.utils import tables
from s3nas.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from s3nas.utils.locks import file_lock
from s3nas.utils.plots import pyplot

#: Second line (after the package header) of every written candidates entry (only such files may be overwritten).
MARKER = "# Written by `python -m s3nas.profiling.profile_space` (BBSSP)."
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CACHE_FORMAT = 1
ACCURACY_FIELDS = ("val_acc", "test_acc")  # what a cached short training must hold


# ------------------------------------------------------------------------------------------------ checks
@dataclass
class Checked:
    """What ``check`` resolved (passed to ``main``)."""

    candidates: list[Candidate]
    backend: LatencyBackend
    output_path: Path
    config_dir: Path
    run_dir: Path


def config_dirs(cfg: Any) -> list[Path]:
    """Where candidates entries are looked up: output.config_dir (if set), then the project's conf/."""
    dirs = [Path(str(cfg.output.config_dir)).expanduser()] if cfg.output.get("config_dir") else []
    return dirs + [CONF_DIR]


def output_path_of(cfg: Any) -> tuple[Path, Path]:
    """(config dir, <config dir>/candidates/<output.name>.yaml); ConfigError for a bad name."""
    name = str(cfg.output.name)
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"output.name: {name!r} is not a config name; use letters, digits, '_', '-', '.'")
    conf_dir = output_config_dir(cfg)
    return conf_dir, conf_dir / "candidates" / f"{name}.yaml"


def output_config_dir(cfg: Any) -> Path:
    """Where the candidates entry is written: output.config_dir; when null, the checkout's conf/ (search.py
    finds it there), or for an installed copy (whose conf/ is inside site-packages, maybe read-only and not
    ours to change) ``<run dir>/conf`` (search.py then needs ``hydra.searchpath=[file://<run dir>/conf]``)."""
    if cfg.output.get("config_dir"):
        return Path(str(cfg.output.config_dir)).expanduser()
    if REPO_ROOT is not None:
        return CONF_DIR
    return Path(str(cfg.paths.output_dir)) / "conf"


def check(cfg: Any) -> Checked:
    """Every user error before anything is written (one line naming the key)."""
    profile, accuracy = cfg.profile, cfg.profile.accuracy
    weight = float(cfg.cost.latency_weight)
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"cost.latency_weight: must be in [0, 1] (0 = accuracy only, 1 = latency only), "
                          f"got {cfg.cost.latency_weight}")
    if int(cfg.select.top_k) < 1:
        raise ConfigError(f"select.top_k: must be >= 1, got {cfg.select.top_k}")
    if int(accuracy.epochs) < 1:
        raise ConfigError(f"profile.accuracy.epochs: must be >= 1, got {accuracy.epochs}")
    if int(accuracy.repeats) < 1:
        raise ConfigError(f"profile.accuracy.repeats: must be >= 1, got {accuracy.repeats}")
    if not 0.0 < float(accuracy.depth_scale) <= 1.0:
        raise ConfigError(f"profile.accuracy.depth_scale: must be in (0, 1], got {accuracy.depth_scale}")
    limit = accuracy.get("limit_train_batches")
    if limit is not None and not float(limit) > 0:
        raise ConfigError(f"profile.accuracy.limit_train_batches: must be > 0 or null, got {limit}")
    block_types = list(profile.block_types)
    for t in block_types:
        if t not in BLOCK_TYPES:
            raise ConfigError(f"profile.block_types: {t!r} is not a block type; use {', '.join(BLOCK_TYPES)}")
    if not block_types:
        raise ConfigError(f"profile.block_types: empty; use some of {', '.join(BLOCK_TYPES)}")

    check_supernet(cfg.supernet)
    dirs = config_dirs(cfg)
    groups = [candidates_from_entry(load_candidates_entry(str(n), dirs), block_types, str(n))
              for n in profile.candidates]
    groups.append(candidates_from_grid(profile.grid, block_types))
    if profile.get("reference"):
        load_candidates_entry(str(profile.reference), dirs, "profile.reference")  # ConfigError now rather than after profiling
    candidates = collect_candidates(groups)
    if not candidates:
        raise ConfigError("profile.candidates / profile.grid: no candidate to profile for block types "
                          f"{block_types}")
    conf_dir, out_path = output_path_of(cfg)
    if out_path.exists() and not is_written_entry(out_path):
        raise ConfigError(f"output.name: {out_path} exists and was not written by profile_space; "
                          f"choose another output.name")
    if not out_path.parent.is_relative_to(Path(str(cfg.paths.output_dir))):  # the run dir is checked by Hydra
        ensure_writable_dir(out_path.parent, "output.config_dir",
                            "set output.config_dir=<a writable directory> (then search with "
                            "hydra.searchpath=[file://<that directory>])")
    ensure_writable_dir(Path(str(cfg.paths.cache_dir)).expanduser() / "bbssp", "paths.cache_dir",
                        "set paths.cache_dir=<a writable directory> (or $S3NAS_CACHE_DIR)")

    from s3nas.data import build_datamodule  # torch and Lightning: only after the cheap checks passed

    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()  # missing data: DataError before anything is written
    backend = make_backend(cfg.hardware)
    return Checked(candidates=candidates, backend=backend, output_path=out_path, config_dir=conf_dir,
                   run_dir=Path(str(cfg.paths.output_dir)))


def is_written_entry(path: Path) -> bool:
    """True for a candidates entry this command wrote (its first lines carry MARKER)."""
    try:
        return MARKER in path.read_text(errors="replace").splitlines()[:3]
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ caches
def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else copy.deepcopy(node)


def _read_json(path: Path, fields: Sequence[str] = (), *, warn: bool = True) -> Optional[dict]:
    """A cache entry (a dict of CACHE_FORMAT with numbers in ``fields``), or None: missing, or unusable -
    truncated, garbage, another format - which ``warn`` reports in one warning naming the file (it is rebuilt)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        problem = str(error).splitlines()[0]
    else:
        try:
            data = json.loads(text)
            ours = isinstance(data, dict) and data.get("format") == CACHE_FORMAT
            problem = "" if ours else "not a BBSSP cache entry"
            bad = [f for f in fields if not problem and not isinstance(data.get(f), (int, float))]
            problem = problem or (f"{bad[0]}: missing or not a number" if bad else "")
        except ValueError as error:
            problem = f"not valid JSON ({str(error).splitlines()[0]})"
        if not problem:
            return data
    if warn:
        warnings.warn(f"BBSSP cache entry {path} is unusable ({problem}); rebuilding it", stacklevel=3)
    return None


def profile_latency(specs: dict[str, ArchSpec], backend: LatencyBackend, cache_dir: Path) -> dict[str, dict]:
    """{name: {latency_ms, source, cached}}; cached per (backend key, ArchSpec)."""
    out: dict[str, dict] = {}
    backend_key = _digest(backend.identity())
    paths = {name: cache_dir / "latency" / backend_key / f"{_digest(codec.to_dict(spec))}.json"
             for name, spec in specs.items()}
    missing = _latency_hits(specs, paths, out, warn=False)
    if not missing:
        return out
    # measure-or-load under a lock per backend: a second command profiling the same networks waits, then
    # reads what the first wrote (a device is never asked twice, and both get the same figures)
    with file_lock(cache_dir / "latency" / backend_key, "BBSSP latency cache"):
        missing = _latency_hits({name: specs[name] for name, _, _ in missing}, paths, out, warn=True)
        if missing:
            _measure_latency(missing, backend, out)
    return out


def _latency_hits(specs: dict[str, ArchSpec], paths: dict[str, Path], out: dict, *, warn: bool) -> list:
    """Fill ``out`` with the cached latencies; returns the (name, spec, path) still missing."""
    missing = []
    for name, spec in specs.items():
        hit = _read_json(paths[name], ("latency_ms",), warn=warn)
        if hit is not None:
            out[name] = {"latency_ms": float(hit["latency_ms"]), "source": str(hit.get("source", "")),
                         "cached": True}
        else:
            missing.append((name, spec, paths[name]))
    return missing


def _measure_latency(missing: list, backend: LatencyBackend, out: dict) -> None:
    """Time the missing networks, cache each (atomically) and fill ``out``."""
    values = backend.latencies_ms([spec for _, spec, _ in missing])
    for (name, spec, path), value in zip(missing, values):
        atomic_write_json(path, {"format": CACHE_FORMAT, "latency_ms": value, "source": backend.method,
                                 "backend": backend.name, "arch": codec.encode(spec)})
        out[name] = {"latency_ms": value, "source": backend.method, "cached": False}


def training_key(spec: ArchSpec, cfg: Any, seed: int) -> dict:
    """What an SSBN's short-training accuracy depends on."""
    data = {k: v for k, v in _plain(cfg.data).items() if k not in ("num_workers", "root")}
    recipe = {k: v for k, v in _plain(cfg.recipe).items() if k not in ("num_threads",)}
    accuracy = cfg.profile.accuracy
    # the deployment shape (input size, class count) is not what is trained: one accuracy serves every hardware
    arch = {k: v for k, v in codec.to_dict(spec).items() if k not in ("input_size", "num_classes", "name", "meta", "encoded")}
    return {"arch": arch, "data": data, "recipe": recipe, "epochs": int(accuracy.epochs),
            "limit_train_batches": accuracy.get("limit_train_batches"), "seed": int(seed), "format": CACHE_FORMAT}


def train_cfg_for(cfg: Any, arch_path: Path, run_dir: Path, seed: int) -> Any:
    """A train.py config (for ``s3nas.train.runner.run_train``) that trains ``arch_path`` briefly in ``run_dir``."""
    recipe = _plain(cfg.recipe)
    recipe["epochs"] = int(cfg.profile.accuracy.epochs)
    trainer = _plain(cfg.trainer)
    trainer.update(default_root_dir=str(run_dir), enable_progress_bar=False, enable_model_summary=False,
                   limit_train_batches=cfg.profile.accuracy.get("limit_train_batches"))
    paths = _plain(cfg.paths)
    paths["output_dir"] = str(run_dir)
    # train.py times what it trains for its summary; that figure is not used here (latency comes from the
    # profiling backend), so a backend whose networks are costly to time (a device) is not asked for it
    hardware = _plain(cfg.hardware) if get_class(str(cfg.hardware._target_)).cheap_networks else \
        {"_target_": "s3nas.latency.simulated.SimulatorBackend", "name": "midap", "profile": None}
    return OmegaConf.create({
        "data": _plain(cfg.data), "hardware": hardware, "recipe": recipe, "trainer": trainer,
        "logger": {"kind": "none"}, "callbacks": {}, "paths": paths, "arch": str(arch_path), "seed": int(seed),
        "task_name": "profile_space_train", "deploy": _plain(cfg.deploy), "ckpt_path": None, "export": None})


def train_accuracy(spec: ArchSpec, cfg: Any, seed: int, cache_dir: Path,
                   trainer_fn: Optional[Callable[[Any], dict]] = None) -> dict:
    """{val_acc, test_acc, train_seconds, cached} of a short training of ``spec``; cached and resumable."""
    key = training_key(spec, cfg, seed)
    entry_dir = cache_dir / "accuracy" / _digest(key)
    result_path = entry_dir / "result.json"
    hit = _read_json(result_path, ACCURACY_FIELDS, warn=False)
    if hit is not None:
        return {**hit, "cached": True}
    # train-or-load under a lock: two commands never train the same SSBN in the same run dir at once
    with file_lock(result_path, "BBSSP accuracy cache"):
        hit = _read_json(result_path, ACCURACY_FIELDS)  # another command may have trained it while we waited
        if hit is not None:
            return {**hit, "cached": True}
        return _train_accuracy(spec, cfg, seed, entry_dir, result_path, trainer_fn)


def _train_accuracy(spec: ArchSpec, cfg: Any, seed: int, entry_dir: Path, result_path: Path,
                    trainer_fn: Optional[Callable[[Any], dict]]) -> dict:
    run_dir = entry_dir / "run"
    arch_path = entry_dir / "ssbn.json"
    codec.save_json(spec, arch_path)
    train_cfg = train_cfg_for(cfg, arch_path, run_dir, seed)
    if trainer_fn is None:
        from s3nas.train.runner import check_train, run_train  # torch, Lightning, timm: only when a network is trained

        summary = run_train(train_cfg, check_train(train_cfg))
    else:
        summary = trainer_fn(train_cfg)
    result = {"format": CACHE_FORMAT, "val_acc": float(summary["val_acc"]), "test_acc": float(summary["test_acc"]),
              "train_seconds": float(summary.get("train_seconds") or 0.0), "seed": int(seed),
              "epochs": int(cfg.profile.accuracy.epochs), "source": "short training (train.py runner, EMA weights)"}
    atomic_write_json(result_path, result)
    if not cfg.profile.accuracy.keep_checkpoints:
        shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints and weights.pt: large, no longer needed
    return {**result, "cached": False}


# ------------------------------------------------------------------------------------- cost and selection
def costs(rows: Sequence[dict], latency_weight: float) -> list[float]:
    """Min-max normalised cost of each row (``val_acc``, ``latency_ms``); lower is better."""
    accs = [float(r["val_acc"]) for r in rows]
    lats = [float(r["latency_ms"]) for r in rows]
    acc_range = max(accs) - min(accs)
    lat_range = max(lats) - min(lats)
    out = []
    for acc, lat in zip(accs, lats):
        acc_term = (max(accs) - acc) / acc_range if acc_range > 0 else 0.0
        lat_term = (lat - min(lats)) / lat_range if lat_range > 0 else 0.0
        out.append((1.0 - latency_weight) * acc_term + latency_weight * lat_term)
    return out


def pareto_flags(rows: Sequence[dict]) -> list[bool]:
    """True where no other row is at least as accurate and at least as fast, and better in one."""
    flags = []
    for r in rows:
        dominated = any(o is not r and o["val_acc"] >= r["val_acc"] and o["latency_ms"] <= r["latency_ms"]
                        and (o["val_acc"] > r["val_acc"] or o["latency_ms"] < r["latency_ms"]) for o in rows)
        flags.append(not dominated)
    return flags


def rank_and_select(rows: list[dict], latency_weight: float, top_k: int) -> list[dict]:
    """Rows with ``cost``, ``rank`` (1 = cheapest; ties: faster, then more accurate, then name), ``selected``,
    ``pareto``; returned sorted by rank."""
    for row, cost, pareto in zip(rows, costs(rows, latency_weight), pareto_flags(rows)):
        row["cost"], row["pareto"] = cost, pareto
    ordered = sorted(rows, key=lambda r: (r["cost"], r["latency_ms"], -r["val_acc"], r["name"]))
    for rank, row in enumerate(ordered, start=1):
        row["rank"], row["selected"] = rank, rank <= top_k
    return ordered


def space_range(supernet_cfg: Any, block_type: Any, candidates_cfg: dict, deploy: Any,
                backend: LatencyBackend, cache_dir: Path, ssbn_ms: Optional[dict] = None) -> dict:
    """Size and latency of the smallest and largest networks of a space (supernet + candidates).

    The smallest/largest option of each position: by its latency in the space's table where networks are cheap
    (a simulator: the exact ends of the range); else by total expansion, and at a choice position (several block
    types) by the latency of the option's SSBN (``ssbn_ms``: typed option -> ms; an estimate of the ends)."""
    sup = check_supernet(supernet_cfg)
    if block_type is not None:
        sup["block_type"] = block_type
    space = SearchSpace.from_config(sup, candidates_cfg, num_classes=int(deploy.num_classes),
                                    input_size=int(deploy.input_size), in_channels=int(deploy.in_channels))
    table = backend.table(space, cache_dir=cache_dir / "tables", progress=False) \
        if getattr(backend, "cheap_networks", False) else None

    def ordered(i: int) -> list:
        options = space.options(i)
        if table is not None:
            options = sorted(options, key=lambda o: table.block_ms(i, o) if o else -1.0)
        elif space.positions[i].type == "choice" and ssbn_ms:
            options = sorted(options, key=lambda o: ssbn_ms.get(o, 0.0) if o else -1.0)
        return options

    smallest = space.arch_spec([ordered(i)[0] for i in range(len(space.positions))], name="space_min")
    largest = space.arch_spec([ordered(i)[-1] for i in range(len(space.positions))], name="space_max")
    lat = profile_latency({"min": smallest, "max": largest}, backend, cache_dir)
    return {"architectures": int(space.size()), "options_per_block_max": max(space.num_options()),
            "min_latency_ms": lat["min"]["latency_ms"], "max_latency_ms": lat["max"]["latency_ms"],
            "block_type": sorted({option_type(o, p.type) for i, p in enumerate(space.positions)
                                  for o in space.options(i) if o})}


# ------------------------------------------------------------------------------------------------ outputs
def space_description(block_type: str, entry: dict) -> Any:
    """The part of a written entry that defines its space: the listed options, or the one type's section."""
    return entry["options"] if block_type == "choice" else entry[block_type]


def entry_text(block_type: str, entry: dict, *, selected: Sequence[dict], cfg: Any, backend: LatencyBackend) -> str:
    """The written candidates entry (YAML, `_global_` package so it can set supernet.block_type)."""
    lines = ["# @package _global_", MARKER,
             f"# hardware {backend.name} ({backend.method}, deploy {cfg.deploy.input_size}px), data "
             f"{cfg.data.name}, cost.latency_weight={float(cfg.cost.latency_weight):g}, "
             f"select.top_k={int(cfg.select.top_k)}.",
             "# Selected candidates (best first): SSBN latency, short-training val acc, cost:"]
    for r in selected:
        lines.append(f"#   {r['name']}: {r['latency_ms']:.4f} ms, val {r['val_acc']:.4f}, cost {r['cost']:.3f}")
    if block_type == "choice":
        lines.append("# Every block chooses among exactly these (supernet.block_type: choice), or skips where a "
                     "residual exists" + (" (select.allow_skip)." if entry.get("allow_skip") else ": no skip."))
    lines += [f"# Use: python search.py candidates={entry['name']}   (it also sets supernet.block_type)"]
    body = {"defaults": ["/candidates/candidates_schema@candidates", "_self_"],
            "supernet": {"block_type": block_type}, "candidates": entry}
    text = "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)
    return text


def plot_profile(rows: Sequence[dict], path: Path, title: str) -> Path:
    """Accuracy vs latency of every SSBN; selected ones ringed, the written space's first one starred."""
    plt = pyplot()

    colors = {"mbconv": "tab:blue", "mixconv": "tab:green", "fused": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for btype in BLOCK_TYPES:
        pts = [r for r in rows if r["type"] == btype]
        if pts:
            ax.scatter([r["latency_ms"] for r in pts], [r["val_acc"] for r in pts], c=colors[btype], label=btype,
                       s=30, zorder=2)
    chosen = [r for r in rows if r["in_space"]]
    ax.scatter([r["latency_ms"] for r in chosen], [r["val_acc"] for r in chosen], s=160, facecolors="none",
               edgecolors="red", linewidths=1.5, label="in the written space", zorder=3)
    for r in rows:
        ax.annotate(r["name"], (r["latency_ms"], r["val_acc"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("SSBN latency (ms)")
    ax.set_ylabel("short-training val accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)

    return atomic_write_bytes(path, buffer.getvalue())


CSV_COLUMNS = ("rank", "name", "type", "kernels", "expansion", "latency_ms", "latency_source", "val_acc",
               "val_acc_std", "test_acc", "train_seconds", "cost", "selected", "pareto", "in_space", "sources")


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """ssbns.csv: the CSV_COLUMNS of every SSBN row, kernels joined by '.', sources by '+'."""
    flat = [{**r, "kernels": ".".join(str(k) for k in r["kernels"]), "sources": "+".join(r["sources"])} for r in rows]
    return tables.write_csv(path, flat, CSV_COLUMNS, extras="ignore")


def print_table(rows: Sequence[dict], title: str) -> None:
    table = Table(title=title)
    for column in ("rank", "SSBN", "latency ms", "val acc", "test acc", "cost", "selected", "pareto"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["rank"]), r["name"], f"{r['latency_ms']:.4f}", f"{r['val_acc']:.4f}",
                      f"{r['test_acc']:.4f}", f"{r['cost']:.3f}",
                      ("in space" if r["in_space"] else "yes") if r["selected"] else "", "*" if r["pareto"] else "")
    Console(width=120).print(table)


def log_results(cfg: Any, rows: Sequence[dict], summary: dict, plot_path: Path) -> None:
    """W&B: the SSBN table, the plot and the summary; CSV logger: the summary's scalars."""
    scalars = {f"bbssp/{k}": float(v) for k, v in summary.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for logger in build_loggers(cfg):
        try:
            if type(logger).__name__ == "WandbLogger":
                import wandb

                run = logger.experiment
                table = wandb.Table(columns=list(CSV_COLUMNS),
                                    data=[[(".".join(map(str, r[c])) if c == "kernels" else
                                            "+".join(r[c]) if c == "sources" else r.get(c)) for c in CSV_COLUMNS]
                                          for r in rows])
                run.log({"bbssp/ssbns": table, "bbssp/profile": wandb.Image(str(plot_path)), **scalars})
                run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
            else:
                logger.log_metrics(scalars)
                logger.save()
        except Exception as error:  # noqa: BLE001 - never let a logger fail a finished profile
            warnings.warn(f"logger {type(logger).__name__} could not log the profile: {error}")


# ------------------------------------------------------------------------------------------------ main
def run_profile(cfg: Any, checked: Optional[Checked] = None,
                trainer_fn: Optional[Callable[[Any], dict]] = None) -> dict:
    """Profile every SSBN, select, write the candidates entry and the run dir; returns the summary."""
    started = time.time()
    checked = checked if checked is not None else check(cfg)
    run_dir = checked.run_dir
    cache_dir = Path(str(cfg.paths.cache_dir)).expanduser() / "bbssp"
    deploy = cfg.deploy
    shape = dict(num_classes=int(deploy.num_classes), input_size=int(deploy.input_size),
                 in_channels=int(deploy.in_channels))
    cands = {c.name: c for c in checked.candidates}
    specs = {n: ssbn_spec(c, cfg.supernet, **shape) for n, c in cands.items()}
    depth_scale = float(cfg.profile.accuracy.depth_scale)
    train_specs = specs if depth_scale == 1.0 else {
        n: ssbn_spec(c, cfg.supernet, **shape, depth_scale=depth_scale) for n, c in cands.items()}
    for name, spec in specs.items():
        codec.save_json(spec, run_dir / "ssbns" / f"{name}.json")

    print(f"BBSSP: {len(cands)} SSBNs; latency on {checked.backend.name} ({checked.backend.method})")
    t0 = time.time()
    latency = profile_latency(specs, checked.backend, cache_dir)
    latency_seconds = time.time() - t0
    seeds = [int(cfg.seed) + k for k in range(int(cfg.profile.accuracy.repeats))]
    t0 = time.time()
    rows = []
    for i, (name, cand) in enumerate(cands.items(), start=1):
        results = [train_accuracy(train_specs[name], cfg, seed, cache_dir, trainer_fn) for seed in seeds]
        vals = [r["val_acc"] for r in results]
        mean_val = sum(vals) / len(vals)
        std_val = (sum((v - mean_val) ** 2 for v in vals) / len(vals)) ** 0.5
        row = {"name": name, "type": cand.type, "kernels": list(cand.kernels), "expansion": cand.expansion,
               "sources": list(cand.sources), "latency_ms": latency[name]["latency_ms"],
               "latency_source": latency[name]["source"], "val_acc": mean_val, "val_acc_std": std_val,
               "test_acc": sum(r["test_acc"] for r in results) / len(results),
               "train_seconds": sum(r["train_seconds"] for r in results),
               "accuracy_cached": all(r["cached"] for r in results)}
        rows.append(row)
        print(f"[{i}/{len(cands)}] {name}: {row['latency_ms']:.4f} ms, val {mean_val:.4f}"
              f"{' (cached)' if row['accuracy_cached'] else ''}", flush=True)
    accuracy_seconds = time.time() - t0

    rows = rank_and_select(rows, float(cfg.cost.latency_weight), int(cfg.select.top_k))
    selected = [r for r in rows if r["selected"]]
    name = str(cfg.output.name)
    block_type, entry, used = space_entry([cands[r["name"]] for r in selected],
                                          allow_skip=bool(cfg.select.allow_skip), name=name)
    used_names = {c.name for c in used}
    for r in rows:
        r["in_space"] = r["name"] in used_names
    text = entry_text(block_type, entry, selected=selected, cfg=cfg, backend=checked.backend)
    ssbn_ms = {cands[r["name"]].option: r["latency_ms"] for r in rows}
    chosen_range = space_range(cfg.supernet, block_type, entry, deploy, checked.backend, cache_dir, ssbn_ms)
    reference_name = cfg.profile.get("reference")
    reference_range = None
    if reference_name:
        reference_range = space_range(cfg.supernet, None, load_candidates_entry(reference_name, config_dirs(cfg)),
                                      deploy, checked.backend, cache_dir)
    checked.backend.close()

    write_csv(rows, run_dir / "ssbns.csv")
    plot_path = plot_profile(rows, run_dir / "profile.png",
                             f"BBSSP on {checked.backend.name}: w={float(cfg.cost.latency_weight):g}, "
                             f"top {int(cfg.select.top_k)} selected (red), {cfg.data.name}")
    atomic_write_text(run_dir / f"{name}.yaml", text)
    typed = ProfileSpaceSummary(
        candidates_name=name, candidates_file=str(checked.output_path),
        search_command=f"python search.py candidates={name}"
                       + ("" if checked.config_dir == config_dirs(cfg)[-1]
                          else f" hydra.searchpath=[file://{checked.config_dir}]"),
        block_type=block_type, candidates=entry, selected=[r["name"] for r in selected],
        in_space=sorted(used_names), latency_weight=float(cfg.cost.latency_weight),
        top_k=int(cfg.select.top_k), hardware=checked.backend.name, latency_source=checked.backend.method,
        deploy_input_size=int(deploy.input_size), data=str(cfg.data.get("name")),
        accuracy_source="short training (train.py runner): mean val acc over "
                        f"{len(seeds)} seed(s), {int(cfg.profile.accuracy.epochs)} epoch(s), "
                        f"depth_scale {depth_scale:g}",
        num_ssbns=len(rows), chosen_space=chosen_range, reference_space=reference_range,
        reference_space_name=reference_name,
        best_ssbn=selected[0]["name"], best_ssbn_latency_ms=selected[0]["latency_ms"],
        best_ssbn_val_acc=selected[0]["val_acc"],
        selected_mean_latency_ms=sum(r["latency_ms"] for r in selected) / len(selected),
        selected_mean_val_acc=sum(r["val_acc"] for r in selected) / len(selected),
        latency_seconds=latency_seconds, accuracy_seconds=accuracy_seconds,
        trained=sum(not r["accuracy_cached"] for r in rows), total_seconds=time.time() - started,
        run_dir=str(run_dir),
    )
    write_summary(run_dir, typed)
    summary = typed.to_dict()
    # the written entry last: when it exists, everything that describes it exists too
    atomic_write_text(checked.output_path, text)
    print_table(rows, f"BBSSP: {len(rows)} SSBNs on {checked.backend.name}, w={float(cfg.cost.latency_weight):g}")
    print(f"chosen space: {block_type} {json.dumps(space_description(block_type, entry))}, "
          f"{chosen_range['architectures']:.3g} "
          f"architectures, {chosen_range['min_latency_ms']:.4f}..{chosen_range['max_latency_ms']:.4f} ms")
    if reference_range:
        print(f"reference space ({reference_name}): {reference_range['architectures']:.3g} architectures, "
              f"{reference_range['min_latency_ms']:.4f}..{reference_range['max_latency_ms']:.4f} ms")
    print(f"wrote {checked.output_path}\nsearch in it: {summary['search_command']}")
    log_results(cfg, rows, summary, plot_path)
    return summary


def main(cfg: Any, checked: Optional[Checked] = None) -> dict:
    """Hydra task."""
    return run_profile(cfg, checked)


def cli() -> None:
    """Console script ``s3nas-profile-space`` (also ``python -m s3nas.profiling.profile_space``)."""
    run(main, "profile_space", check=check)


if __name__ == "__main__":
    cli()
