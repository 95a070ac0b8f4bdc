"""Latency lookup table: cycles of every (block position, canonical option) on a simulated NPU, cached on disk.

An entry is what the block costs *inside a network*, not alone: on MIDAP-like NPUs weights of the next
layers are prefetched while a block computes and feature maps spill to DRAM, so an isolated block misses
the stalls and overlaps at its boundaries (about -3% summed over a network on midap). The default
``method="context"`` therefore simulates whole networks at the deployment input size whose options are
drawn so that every option of every position appears ``samples_per_option`` times (stratified, seeded),
splits each network's total cycles into stem/blocks/head by layer end times (layers run one at a time,
so the parts add up exactly), and stores the mean cycles per (position, option); stem, head, pool and FC
are the fixed part. A skip costs 0. ``method="isolated"`` simulates each block alone (input on chip) for
comparison. Tables are cached as JSON under ``cache_dir``, keyed by a hash of the profile's fields, the
search space (supernet + candidates + deployment shape), the method and ``simulator.SIMULATOR_VERSION``;
a corrupted or mismatching cache is rebuilt with a warning.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import simulator
from s3nas.arch.graph import archspec_to_graph, block_to_graph, emit_head, emit_stem
from s3nas.arch.space import Option, SearchSpace, branch_from_json, branch_to_json, canonical
from s3nas.arch.spec import ArchSpec, Branch
from s3nas.utils.io import atomic_write_text, is_disk_full
from s3nas.utils.locks import file_lock
from simulator.graph import GraphBuilder

__all__ = ["LatencyTable", "build_latency_table", "table_key", "LUT_FORMAT"]

LUT_FORMAT = "s3nas.latency_table"
LUT_FORMAT_VERSION = 1
METHODS = ("context", "isolated")


def _option_to_json(option: Option) -> list[list]:
    return [branch_to_json(b) for b in option]


def _option_from_json(value: Any) -> Option:
    return canonical(branch_from_json(b) for b in value)


class LatencyTable:
    """Per-position option cycles + fixed cycles; milliseconds at the profile's clock."""

    def __init__(self, entries: list[dict[Option, int]], fixed_cycles: int, clock_hz: float, key: str = "",
                 *, space: SearchSpace | None = None, meta: dict | None = None) -> None:
        self.entries = entries
        self.fixed_cycles = int(fixed_cycles)
        self.clock_hz = float(clock_hz)
        self.key = key
        self.space = space
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def num_entries(self) -> int:
        return sum(len(e) for e in self.entries)

    def cycles_to_ms(self, cycles: float) -> float:
        return float(cycles) * 1e3 / self.clock_hz

    def options(self, i: int) -> list[Option]:
        return list(self.entries[i])

    def cycles(self, i: int, option: Iterable[Branch]) -> int:
        """Cycles of position ``i`` with ``option`` (canonicalised; a skip is 0)."""
        opt = canonical(option)
        try:
            return self.entries[i][opt]
        except KeyError:
            if not opt:
                return 0
            raise KeyError(f"latency table: position {i} has no option {opt!r}") from None

    def block_ms(self, i: int, option: Iterable[Branch]) -> float:
        return self.cycles_to_ms(self.cycles(i, option))

    @property
    def fixed_ms(self) -> float:
        return self.cycles_to_ms(self.fixed_cycles)

    @property
    def min_cycles(self) -> int:
        return self.fixed_cycles + sum(min(e.values()) for e in self.entries)

    @property
    def max_cycles(self) -> int:
        return self.fixed_cycles + sum(max(e.values()) for e in self.entries)

    @property
    def min_ms(self) -> float:
        """Smallest estimated latency of the space (per-position minimum + fixed)."""
        return self.cycles_to_ms(self.min_cycles)

    @property
    def max_ms(self) -> float:
        """Largest estimated latency of the space (per-position maximum + fixed)."""
        return self.cycles_to_ms(self.max_cycles)

    def _options_of(self, spec_or_options: ArchSpec | Sequence[Iterable[Branch]]) -> list[Option]:
        if isinstance(spec_or_options, ArchSpec):
            if self.space is None:
                raise ValueError("latency table: estimating an ArchSpec needs the table's SearchSpace")
            return self.space.options_of(spec_or_options)
        options = [canonical(o) for o in spec_or_options]
        if len(options) != len(self.entries):
            raise ValueError(f"latency table: expected {len(self.entries)} options (one per position), "
                             f"got {len(options)}")
        return options

    def estimate_cycles(self, spec_or_options: ArchSpec | Sequence[Iterable[Branch]]) -> int:
        return self.fixed_cycles + sum(self.cycles(i, o) for i, o in enumerate(self._options_of(spec_or_options)))

    def estimate_ms(self, spec_or_options: ArchSpec | Sequence[Iterable[Branch]]) -> float:
        """LUT-sum latency of an ArchSpec of this space or of one option per position."""
        return self.cycles_to_ms(self.estimate_cycles(spec_or_options))

    # ------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        positions = []
        for i, entries in enumerate(self.entries):
            row: dict[str, Any] = {"index": i}
            if self.space is not None:
                pos = self.space.positions[i]
                row.update(stage=pos.stage, type=pos.type, in_channels=pos.in_channels,
                           out_channels=pos.out_channels, stride=pos.stride, in_hw=pos.in_hw,
                           has_residual=pos.has_residual)
            row["entries"] = [{"option": _option_to_json(o), "cycles": c} for o, c in entries.items()]
            positions.append(row)
        return {"format": LUT_FORMAT, "version": LUT_FORMAT_VERSION, "key": self.key, "clock_hz": self.clock_hz,
                "fixed_cycles": self.fixed_cycles, "min_ms": self.min_ms, "max_ms": self.max_ms,
                "meta": self.meta, "positions": positions}

    @classmethod
    def from_dict(cls, d: dict, space: SearchSpace | None = None) -> "LatencyTable":
        """Parse (and check) a table dict; ValueError naming what is wrong."""
        if not isinstance(d, dict) or d.get("format") != LUT_FORMAT or d.get("version") != LUT_FORMAT_VERSION:
            raise ValueError("not an s3nas latency table (format/version)")
        fixed, clock = d.get("fixed_cycles"), d.get("clock_hz")
        if not isinstance(fixed, int) or fixed < 0:
            raise ValueError(f"fixed_cycles: expected an integer >= 0, got {fixed!r}")
        if not isinstance(clock, (int, float)) or clock <= 0:
            raise ValueError(f"clock_hz: expected a number > 0, got {clock!r}")
        positions = d.get("positions")
        if not isinstance(positions, list):
            raise ValueError("positions: missing")
        entries: list[dict[Option, int]] = []
        for i, row in enumerate(positions):
            table: dict[Option, int] = {}
            for e in row.get("entries", []) if isinstance(row, dict) else []:
                c = e.get("cycles")
                if not isinstance(c, int) or c < 0:
                    raise ValueError(f"positions[{i}]: bad cycles {c!r}")
                table[_option_from_json(e["option"])] = c
            entries.append(table)
        if space is not None:
            if len(entries) != len(space.positions):
                raise ValueError(f"positions: {len(entries)} in the file, {len(space.positions)} in the space")
            for i, table in enumerate(entries):
                missing = set(space.options(i)) - set(table)
                if missing:
                    raise ValueError(f"positions[{i}]: {len(missing)} options missing")
        return cls(entries, fixed, float(clock), str(d.get("key", "")), space=space, meta=d.get("meta") or {})

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace | None = None) -> "LatencyTable":
        return cls.from_dict(json.loads(Path(path).read_text()), space)


# ----------------------------------------------------------------------------------------- building


def _load_profile(profile: Any) -> Any:
    return profile if not isinstance(profile, (str, os.PathLike)) else simulator.load_profile(str(profile))


def table_key(space: SearchSpace, profile: Any, method: str = "context", samples_per_option: int = 16,
              seed: int = 0) -> str:
    """Cache key: hash of profile fields, search space + deployment shape, method, simulator and cost-model
    versions (a cost-model change must not serve stale latencies)."""
    prof = dataclasses.asdict(profile) if dataclasses.is_dataclass(profile) else vars(profile)
    payload = {"profile": prof, "space": space.to_dict(), "simulator_version": simulator.SIMULATOR_VERSION,
               "cost_model_version": getattr(simulator, "COST_MODEL_VERSION", 0), "method": method, "samples_per_option": samples_per_option if method == "context" else None,
               "seed": seed if method == "context" else None, "format": LUT_FORMAT_VERSION}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def context_samples(space: SearchSpace, samples_per_option: int, seed: int = 0) -> list[list[Option]]:
    """Whole-network option lists in which every option of every position appears about equally often."""
    rng = random.Random(seed)
    counts = [len(space.options(i)) for i in range(len(space.positions))]
    n_networks = samples_per_option * max(counts)
    columns = []
    for i, n in enumerate(counts):
        column: list[Option] = []
        while len(column) < n_networks:  # concatenated shuffled permutations: balanced, random pairings
            perm = space.options(i)
            rng.shuffle(perm)
            column.extend(perm)
        columns.append(column[:n_networks])
    return [[columns[i][r] for i in range(len(counts))] for r in range(n_networks)]


def attribute_cycles(report: Any, block_positions: Sequence[int], n_positions: int) -> tuple[list[int], int]:
    """Split a whole-network report's total cycles into per-position cycles and the fixed part.

    Layers run one at a time, so each part is the span from the previous part's last layer end to its own
    last layer end (waiting for weights counts for the part that waits).
    """
    part_end: dict[Any, int] = {}
    for layer in report.layers:
        name = layer.name
        key: Any = "fixed"
        if name.startswith("blocks."):
            key = block_positions[int(name.split(".")[1])]
        end = layer.start_cycles + layer.cycles
        if end > part_end.get(key, -1):
            part_end[key] = end
    per = [0] * n_positions
    fixed = last = 0
    for key, end in sorted(part_end.items(), key=lambda kv: kv[1]):
        span = max(0, end - last)
        if key == "fixed":
            fixed += span
        else:
            per[key] += span
        last = max(last, end)
    fixed += max(0, report.total_cycles - last)
    return per, fixed


def _simulate_contexts(space: SearchSpace, profile: Any, samples: list[list[Option]]) -> list[tuple[list[int], int]]:
    """Worker: simulate whole networks, return (per-position cycles, fixed cycles) for each."""
    out = []
    for options in samples:
        spec = space.arch_spec(options)
        report = simulator.simulate(archspec_to_graph(spec), profile, input_in_dram=True)
        block_positions = [i for i, o in enumerate(options) if o]
        out.append(attribute_cycles(report, block_positions, len(options)))
    return out


def _simulate_isolated(space: SearchSpace, profile: Any, items: list[tuple[int, Option]]) -> list[int]:
    """Worker: simulate blocks alone (input already on chip, as when the previous block just wrote it)."""
    out = []
    for i, option in items:
        pos = space.positions[i]
        graph = block_to_graph(space.block_spec(i, option), pos.in_channels, pos.in_hw, prefix=f"blocks.{i}")
        out.append(simulator.simulate(graph, profile, input_in_dram=False).total_cycles)
    return out


def isolated_fixed_cycles(space: SearchSpace, profile: Any) -> int:
    """Stem (input image in DRAM) + head/pool/FC (input on chip), each simulated alone."""
    spec = space.arch_spec(space.min_options())
    b = GraphBuilder((space.in_channels, space.input_size, space.input_size), name="stem")
    emit_stem(b, b.input, spec)
    stem = simulator.simulate(b.graph, profile, input_in_dram=True).total_cycles
    b = GraphBuilder((space.final_channels, space.final_hw, space.final_hw), name="head")
    emit_head(b, b.input, spec)
    head = simulator.simulate(b.graph, profile, input_in_dram=False).total_cycles
    return stem + head


def _chunks(items: list, n: int) -> list[list]:
    n = max(1, min(n, len(items)))
    size = -(-len(items) // n)
    return [items[k:k + size] for k in range(0, len(items), size)]


def _worker_init() -> None:
    """Table workers: leave Ctrl-C to the parent (one message, no traceback per worker), die with it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # Linux: SIGTERM this worker when its parent dies, even by SIGKILL
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown handles normal exits
        pass


@contextlib.contextmanager
def _stdlib_start_method():
    """Inside a joblib (loky) worker - a ``hydra/launcher=joblib`` multirun job - the process-wide start method
    is "loky", which a spawned child is told to set and cannot (it dies: "cannot find context for 'loky'");
    while our workers start, the default is "spawn", then the caller's again."""
    method = multiprocessing.get_start_method(allow_none=True)
    if method is None or method in ("fork", "spawn", "forkserver"):
        yield
        return
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(method, force=True)


def _run_parallel(fn, space, profile, items: list, workers: int, progress: bool, description: str) -> list:
    """Run ``fn(space, profile, chunk)`` over chunks of ``items`` (in order), with a progress bar."""
    chunks = _chunks(items, max(1, workers) * 8 if workers > 1 else max(1, len(items) // 16 or 1))
    results: list[list] = [None] * len(chunks)  # type: ignore[list-item]
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       transient=False)
        bar.start()
        task = bar.add_task(description, total=len(items))
    try:
        if workers > 1 and len(chunks) > 1:
            ctx = multiprocessing.get_context("spawn")  # no fork of a torch-threaded parent
            with _stdlib_start_method(), \
                    cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
                futures = {pool.submit(fn, space, profile, chunk): k for k, chunk in enumerate(chunks)}
                for fut in cf.as_completed(futures):
                    k = futures[fut]
                    results[k] = fut.result()
                    if bar is not None:
                        bar.update(task, advance=len(chunks[k]))
        else:
            for k, chunk in enumerate(chunks):
                results[k] = fn(space, profile, chunk)
                if bar is not None:
                    bar.update(task, advance=len(chunk))
    finally:
        if bar is not None:
            bar.stop()
    return [r for chunk in results for r in chunk]


def compute_latency_table(space: SearchSpace, profile: Any, *, workers: int = 2, progress: bool = True,
                          method: str = "context", samples_per_option: int = 16, seed: int = 0) -> LatencyTable:
    """Build a table by simulation (no cache)."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r}; use one of {', '.join(METHODS)}")
    profile = _load_profile(profile)
    key = table_key(space, profile, method, samples_per_option, seed)
    n = len(space.positions)
    meta = {"method": method, "profile": getattr(profile, "name", ""), "space": space.name,
            "input_size": space.input_size, "num_classes": space.num_classes,
            "simulator_version": simulator.SIMULATOR_VERSION}
    if method == "context":
        samples = context_samples(space, samples_per_option, seed)
        results = _run_parallel(_simulate_contexts, space, profile, samples, workers, progress,
                                f"latency table ({profile.name}, {len(samples)} networks)")
        sums: list[dict[Option, list[int]]] = [{o: [0, 0] for o in space.options(i)} for i in range(n)]
        fixed_total = 0
        for options, (per, fixed) in zip(samples, results):
            fixed_total += fixed
            for i, o in enumerate(options):
                sums[i][o][0] += per[i]
                sums[i][o][1] += 1
        entries = [{o: (0 if not o else int(round(s / c))) for o, (s, c) in row.items()} for row in sums]
        fixed_cycles = int(round(fixed_total / len(samples)))
        meta.update(samples_per_option=samples_per_option, seed=seed, networks=len(samples))
    else:
        items = [(i, o) for i in range(n) for o in space.options(i) if o]
        results = _run_parallel(_simulate_isolated, space, profile, items, workers, progress,
                                f"latency table ({profile.name}, {len(items)} blocks)")
        entries = [{o: 0 for o in space.options(i)} for i in range(n)]
        for (i, o), c in zip(items, results):
            entries[i][o] = int(c)
        fixed_cycles = isolated_fixed_cycles(space, profile)
    return LatencyTable(entries, fixed_cycles, profile.clock_hz, key, space=space, meta=meta)


def cache_path(cache_dir: str | os.PathLike, space: SearchSpace, profile: Any, key: str) -> Path:
    return Path(cache_dir) / f"lut-{space.name}-{getattr(profile, 'name', 'profile')}-{key[:16]}.json"


def build_latency_table(space: SearchSpace, profile: Any, *, cache_dir: str | os.PathLike | None,
                        workers: int = 2, progress: bool = True, method: str = "context",
                        samples_per_option: int = 16, seed: int = 0) -> LatencyTable:
    """The table of ``space`` on ``profile`` (a HardwareProfile or a profile name/path), from cache if valid."""
    profile = _load_profile(profile)
    key = table_key(space, profile, method, samples_per_option, seed)
    path = cache_path(cache_dir, space, profile, key) if cache_dir is not None else None
    if path is None:
        return compute_latency_table(space, profile, workers=workers, progress=progress, method=method,
                                     samples_per_option=samples_per_option, seed=seed)
    table, _ = _read_cached_table(path, key, space)
    if table is not None:
        return table
    # build-or-load under a lock: a second command building the same table waits, then loads the first's
    with file_lock(path, "latency table"):
        table, problem = _read_cached_table(path, key, space)
        if table is not None:
            return table
        if problem:
            warnings.warn(f"latency table cache {path} is unusable ({problem}); rebuilding it", stacklevel=2)
        table = compute_latency_table(space, profile, workers=workers, progress=progress, method=method,
                                      samples_per_option=samples_per_option, seed=seed)
        try:
            table.save(path)
        except OSError as err:  # unwritable / not a directory: the run goes on with the table in memory
            if is_disk_full(err):  # a full disk is reported (one line naming the file); nothing half-written
                raise
            warnings.warn(f"latency table cache {path} could not be written ({err.strerror or err}); "
                          "using the table in memory (set paths.cache_dir to a writable directory)",
                          stacklevel=2)
        return table


def _read_cached_table(path: Path, key: str, space: SearchSpace) -> tuple[LatencyTable | None, str]:
    """(the cached table, "") when ``path`` holds a valid table of ``key``; (None, what is wrong) otherwise
    ("" when there is no file)."""
    if not _exists(path):
        return None, ""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("key") != key:
            raise ValueError("cache key does not match")
        return LatencyTable.from_dict(data, space), ""
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        return None, str(err).splitlines()[0] if str(err) else type(err).__name__


def _exists(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def difference_table(space: SearchSpace, latency_ms, *, key: str, meta: dict | None = None) -> LatencyTable:
    """A table from whole-network latencies alone (``latency_ms(spec) -> ms``): each option's entry is what
    swapping it into the space's fastest network adds (>= 0); the fixed part is the fastest network's latency.
    For backends that time networks but not layers; one evaluation per option of the space."""
    base = space.min_options()
    base_ms = float(latency_ms(space.arch_spec(base)))
    ns_per_ms = 1e6  # entries in integer "cycles" of a 1 GHz clock: nanoseconds
    entries: list[dict[Option, int]] = []
    for i in range(len(space.positions)):
        row: dict[Option, int] = {}
        for option in space.options(i):
            if option == base[i]:
                row[option] = 0
                continue
            swapped = list(base)
            swapped[i] = option
            row[option] = max(0, int(round((float(latency_ms(space.arch_spec(swapped))) - base_ms) * ns_per_ms)))
        entries.append(row)
    return LatencyTable(entries, int(round(base_ms * ns_per_ms)), 1e9, key, space=space,
                        meta={"method": "differences", **dict(meta or {})})
