"""The measured latency table of a black-box device, corrected with end-to-end measurements.

``build_measured_table(space, device, cache_dir=...)``:
1. times every (position, option) as a standalone block (input of the previous block's output shape), the
   stem and the head on the device, in a shuffled order and interleaved in chunks (``Device.measure_many``)
   so a change of the machine's load does not line up with positions;
2. times ``samples`` sampled architectures end to end (random options per position, seeded);
3. fits the layer-adaptive correction (``s3nas.latency.correction``) and returns the raw and corrected
   tables (``LatencyTable`` in integer nanoseconds: ``clock_hz`` = 1e9, so ``estimate_ms`` works as for a
   simulated table).

Every measurement is appended to a JSON-lines log under ``cache_dir`` (one line per entry, flushed and
fsynced after each chunk; a torn last line is ignored), keyed by a hash of the device's identity (kind,
settings, versions, machine; the number format when not fp32: ``hardware.dtype=int8`` tables never mix with
fp32 ones, and their log file names say ``-int8``) and the search space: an interrupted build resumes where it
stopped, a device that fails keeps what it measured, and a finished build costs nothing the next time.

Reference normalisation (``reference=True``, ``hardware.reference``): on a shared machine the level of the
measurements drifts between chunks (other jobs' memory traffic changes what a whole network costs), so every
chunk also times a fixed reference - a mid-size block for chunks of blocks, a mid-size network for chunks of
networks - interleaved with the chunk's networks. The log keeps the raw median (``median_ms``), the reference's
median in that chunk (``ref_ms``) and one ``ref:<kind>:<chunk>`` record per chunk; ``MeasurementLog.median_ms``
returns ``median_ms * R / ref_ms`` with ``R`` the median of the reference over all chunks of the log (the
measurement at the log's typical conditions); ``raw_ms`` returns the raw value.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from s3nas.arch.space import Option, SearchSpace
from s3nas.latency.correction import Correction, fit_correction
from s3nas.latency.device import Device, DeviceError, Measurement, Piece
from s3nas.latency.lut import LatencyTable, _option_from_json, _option_to_json

LOG_FORMAT_VERSION = 1
NS_CLOCK_HZ = 1e9  # table "cycles" are nanoseconds


REFERENCE_KINDS = ("block", "net")


def measurement_key(space: SearchSpace, device: Device, reference: bool | None = None) -> str:
    """Hash of the device identity and the search space (+ deployment shape; + the reference normalisation)."""
    payload = {"device": device.identity(), "space": space.to_dict(), "format": LOG_FORMAT_VERSION}
    if device.reference if reference is None else reference:
        payload["reference"] = reference_id(space)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def option_id(option: Option) -> str:
    return ",".join(f"{b.kernel}x{b.expansion:g}" for b in option)


def network_id(tag: str, k: int, options: Sequence[Option]) -> str:
    """Log id of a sampled network: its tag, index and a digest of its options (a changed sampler never
    attributes a logged measurement to another network)."""
    digest = hashlib.sha256("|".join(option_id(o) for o in options).encode()).hexdigest()[:12]
    return f"{tag}:{k}:{digest}"


def reference_options(space: SearchSpace) -> list[Option]:
    """The reference network: the middle option (by size) of every position."""
    return [space.options(i)[len(space.options(i)) // 2] for i in range(len(space.positions))]


def _reference_block(space: SearchSpace) -> tuple[int, Option]:
    i = len(space.positions) // 2
    options = [o for o in space.options(i) if o]
    return i, options[len(options) // 2]


def reference_networks(space: SearchSpace) -> dict:
    """{"block": the reference block (middle position, middle non-skip option), "net": the reference network}."""
    i, option = _reference_block(space)
    return {"block": Piece.at(space, i, option), "net": space.arch_spec(reference_options(space))}


def reference_id(space: SearchSpace) -> str:
    i, option = _reference_block(space)
    return f"block{i}:{option_id(option)}|net:{'|'.join(option_id(o) for o in reference_options(space))}"


class MeasurementLog:
    """Append-only JSON-lines file of measurements: ``{"id": ..., "median_ms": ..., ...}`` per line."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: dict[str, dict] = {}
        self._reference: dict[str, float | None] = {}
        if path is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a line torn by an interrupt
                    continue
                if isinstance(record, dict) and isinstance(record.get("id"), str) \
                        and isinstance(record.get("median_ms"), (int, float)):
                    self.records[record["id"]] = record

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def raw_ms(self, key: str) -> float:
        """The median as measured."""
        return float(self.records[key]["median_ms"])

    def reference_ms(self, kind: str) -> float | None:
        """Median of the reference of ``kind`` over every chunk of the log (None: no reference timed)."""
        if kind not in self._reference:
            values = [float(r["median_ms"]) for r in self.records.values() if r.get("reference") == kind]
            self._reference[kind] = float(statistics.median(values)) if values else None
        return self._reference[kind]

    def median_ms(self, key: str) -> float:
        """The median, normalised by its chunk's reference when one was timed (raw otherwise)."""
        record = self.records[key]
        raw, ref = float(record["median_ms"]), record.get("ref_ms")
        overall = self.reference_ms(record.get("ref", "")) if ref else None
        return raw * overall / float(ref) if overall and ref else raw

    def append(self, items: Sequence[tuple[str, Measurement, dict]]) -> None:
        """Record measurements (in memory and, when the log has a path, on disk, durably)."""
        lines = []
        for key, m, extra in items:
            record = {"id": key, **m.to_dict(), **extra}
            self.records[key] = record
            lines.append(json.dumps(record))
        self._reference.clear()
        if self.path is None or not lines:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b", buffering=0) as handle:  # one write() per chunk: O_APPEND keeps
                # concurrent writers (a benchmark and a search sharing the log) from interleaving inside a line
                torn = False
                if handle.seek(0, os.SEEK_END) > 0:
                    handle.seek(-1, os.SEEK_END)
                    torn = handle.read(1) != b"\n"
                # a line torn by a kill stays a line of its own (ignored when read), never glued to a record
                handle.write((("\n" if torn else "") + "\n".join(lines) + "\n").encode())
                os.fsync(handle.fileno())
        except OSError as error:  # the build goes on with the measurements in memory
            warnings.warn(f"measurement log {self.path} could not be written ({error.strerror or error}); "
                          "measurements are kept in memory only", stacklevel=2)
            self.path = None


@dataclass
class MeasuredTable:
    """What ``build_measured_table`` produced."""

    raw: LatencyTable  # sum of standalone block measurements + stem + head
    corrected: LatencyTable  # after the layer-adaptive correction
    correction: Correction
    samples: list[tuple[list[Option], float]]  # (options, measured end-to-end ms) used for the fit
    log_path: Path | None
    device: str
    build_seconds: float = 0.0
    measured_now: int = 0  # measurements taken by this call (0: all from the log)
    meta: dict = field(default_factory=dict)


def sample_architectures(space: SearchSpace, count: int, seed: int, *, include_min: bool = True,
                         spread: float = 0.25) -> list[list[Option]]:
    """``count`` architectures spread from the smallest to the largest (seeded): a per-architecture "size"
    stratified over [0, 1] (one architecture per stratum, strata in random order) picks, per position, the
    option near that relative size (gaussian jitter of ``spread`` of the options' range). With ``include_min``
    the first architecture is the fastest one (smallest option everywhere), so the correction's range reaches
    the smallest networks."""
    rng = random.Random(seed)
    strata = list(range(count))
    rng.shuffle(strata)
    out = []
    for k in range(count):
        if include_min and k == 0:
            out.append(list(space.min_options()))
            continue
        size = (strata[k] + rng.random()) / max(1, count)  # 0: small options, 1: large options
        row = []
        for i in range(len(space.positions)):
            options = space.options(i)  # ascending size
            top = len(options) - 1
            row.append(options[min(top, max(0, int(round(size * top + rng.gauss(0.0, spread * top)))))])
        out.append(row)
    return out


def _progress(description: str, total: int, enabled: bool):
    if not enabled:
        return None, None

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), transient=False)
    bar.start()
    return bar, bar.add_task(description, total=total)


def measure_items(device: Device, log: MeasurementLog, items: Sequence[tuple[str, Any, dict]], *,
                  chunk: int = 16, progress: bool = True, description: str = "measuring",
                  on_first: Callable[[float], None] | None = None, reference: tuple[str, Any] | None = None) -> int:
    """Measure the ``(id, network, extra)`` items not yet in ``log``, in chunks; returns how many were measured.
    ``reference`` = (kind, network): timed in every chunk with the others (see the module docstring)."""
    todo = [item for item in items if item[0] not in log]
    if not todo:
        return 0
    bar, task = _progress(description, len(todo), progress)
    done = 0
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            t0 = time.perf_counter()
            networks = [network for _, network, _ in part]
            if reference is None:
                results = device.measure_many(networks)
                log.append([(key, m, extra) for (key, _, extra), m in zip(part, results)])
            else:
                kind, ref_network = reference
                middle = len(networks) // 2  # interleaved like any other network of the chunk
                results = device.measure_many(networks[:middle] + [ref_network] + networks[middle:])
                ref = results.pop(middle)
                chunk_id = uuid.uuid4().hex[:12]
                tag = {"ref": kind, "ref_ms": ref.median_ms, "chunk": chunk_id}
                log.append([(f"ref:{kind}:{chunk_id}", ref, {"reference": kind, "chunk": chunk_id})]
                           + [(key, m, {**extra, **tag}) for (key, _, extra), m in zip(part, results)])
            done += len(part)
            if start == 0 and on_first is not None:
                on_first((time.perf_counter() - t0) / len(part))
            if bar is not None:
                bar.update(task, advance=len(part))
    except DeviceError as error:
        where = f" in {log.path}" if log.path is not None else ""
        raise DeviceError(f"{error} ({len(log)} measurements kept{where}; rerun to resume)") from None
    finally:
        if bar is not None:
            bar.stop()
    return done


def log_path_of(cache_dir: str | os.PathLike | None, space: SearchSpace, device: Device, key: str) -> Path | None:
    if cache_dir is None:
        return None
    dtype = "" if device.dtype == "fp32" else f"-{device.dtype}"  # fp32 logs keep the names they had
    return Path(cache_dir) / f"measured-{space.name}-{space.input_size}px-{device.name}{dtype}-{key[:16]}.jsonl"


def block_table(space: SearchSpace, log: MeasurementLog, key: str = "", meta: dict | None = None, *,
                raw: bool = False) -> LatencyTable:
    """The table of standalone block measurements in ``log`` (normalised medians; ``raw``: as measured)."""
    value = log.raw_ms if raw else log.median_ms
    entries = [{o: 0 if not o else int(round(value(f"block:{i}:{option_id(o)}") * 1e6)) for o in space.options(i)}
               for i in range(len(space.positions))]
    fixed = int(round((value("stem") + value("head")) * 1e6))
    return LatencyTable(entries, fixed, NS_CLOCK_HZ, key, space=space, meta=dict(meta or {}))


def build_measured_table(space: SearchSpace, device: Device, *, cache_dir: str | os.PathLike | None,
                         samples: int = 60, correction: str = "stage_affine_weights", ridge: float = 0.1, seed: int = 0,
                         progress: bool = True, chunk: int = 16,
                         printer: Callable[[str], None] | None = print,
                         reference: bool | None = None) -> MeasuredTable:
    """Measure (or load from the log) the block table and ``samples`` end-to-end networks; fit the correction.
    ``reference`` (default ``device.reference``): normalise every chunk by a reference timed in it."""
    started = time.time()
    reference = device.reference if reference is None else bool(reference)
    refs = reference_networks(space) if reference else {}
    key = measurement_key(space, device, reference)
    log = MeasurementLog(log_path_of(cache_dir, space, device, key))
    n = len(space.positions)
    block_items = [("stem", Piece.stem(space), {}), ("head", Piece.head(space), {})]
    block_items += [(f"block:{i}:{option_id(o)}", Piece.at(space, i, o), {}) for i in range(n)
                    for o in space.options(i) if o]
    random.Random(seed).shuffle(block_items)  # load changes must not line up with positions
    nets = sample_architectures(space, samples, seed)
    net_items = [(network_id(f"net:{seed}", k, o), space.arch_spec(o), {"options": [_option_to_json(x) for x in o]})
                 for k, o in enumerate(nets)]
    missing_blocks = sum(1 for k, _, _ in block_items if k not in log)
    missing_nets = sum(1 for k, _, _ in net_items if k not in log)
    if printer and (missing_blocks or missing_nets):
        printer(f"latency table on {device.label}: {missing_blocks} of {len(block_items)} standalone pieces and "
                f"{missing_nets} of {len(net_items)} networks to measure"
                + (f" (resuming {log.path})" if len(log) else ""))
    estimates: dict[str, float] = {}

    def announce(kind: str, count: int):
        def first(seconds_each: float) -> None:
            estimates[kind] = seconds_each
            if printer and kind == "block":
                printer(f"estimated table build time: {seconds_each * count / 60:.1f} min for the blocks "
                        f"({seconds_each:.2f} s each), then the networks")
            elif printer:
                printer(f"estimated time for the networks: {seconds_each * count / 60:.1f} min "
                        f"({seconds_each:.2f} s each)")
        return first

    measured = measure_items(device, log, block_items, chunk=chunk, progress=progress,
                             description=f"{device.name}: blocks", on_first=announce("block", missing_blocks),
                             reference=("block", refs["block"]) if reference else None)
    measured += measure_items(device, log, net_items, chunk=chunk, progress=progress,
                              description=f"{device.name}: networks", on_first=announce("net", missing_nets),
                              reference=("net", refs["net"]) if reference else None)
    meta = {"method": "measured", "device": device.name, "device_kind": device.kind, "dtype": device.dtype,
            "space": space.name,
            "input_size": space.input_size, "num_classes": space.num_classes, "repeats": device.repeats,
            "statistic": "median", "log": str(log.path) if log.path else None,
            "reference": {k: log.reference_ms(k) for k in REFERENCE_KINDS} if reference else None}
    raw = block_table(space, log, key, meta)
    fit_samples = [(o, log.median_ms(k)) for (k, _, _), o in zip(net_items, nets)]
    corr = fit_correction(raw, fit_samples, correction, ridge)
    corrected = corr.apply(raw)
    corrected.meta["method"] = f"measured+{corr.method}"
    seconds = time.time() - started
    if printer and measured:
        fitted = (f"; correction {corr.method}: fit MAPE {corr.fit['train_raw_mape_pct']:.1f}% raw -> "
                  f"{corr.fit['train_mape_pct']:.1f}% corrected on {len(fit_samples)} networks") \
            if "train_mape_pct" in corr.fit else "; no correction (no end-to-end samples)"
        printer(f"latency table on {device.label}: {measured} measurements in {seconds / 60:.1f} min{fitted}")
    return MeasuredTable(raw, corrected, corr, fit_samples, log.path, device.name, seconds, measured,
                         {"key": key, "estimates_s": estimates})


def open_log(space: SearchSpace, device: Device, cache_dir: str | os.PathLike | None,
             reference: bool | None = None) -> MeasurementLog:
    """The measurement log the table of ``space`` on ``device`` uses."""
    return MeasurementLog(log_path_of(cache_dir, space, device, measurement_key(space, device, reference)))


def measure_networks(device: Device, space: SearchSpace, nets: Sequence[Sequence[Option]], *, tag: str,
                     cache_dir: str | os.PathLike | None, progress: bool = True, chunk: int = 16,
                     reference: bool | None = None, raw: bool = False) -> list[float]:
    """End-to-end medians (ms) of option lists, through the same resumable log as the table (normalised by the
    reference network when ``reference``, default ``device.reference``; ``raw``: as measured)."""
    reference = device.reference if reference is None else bool(reference)
    log = open_log(space, device, cache_dir, reference)
    items = [(network_id(tag, k, o), space.arch_spec(list(o)), {"options": [_option_to_json(x) for x in o]})
             for k, o in enumerate(nets)]
    measure_items(device, log, items, chunk=chunk, progress=progress, description=f"{device.name}: {tag}",
                  reference=("net", reference_networks(space)["net"]) if reference else None)
    return [(log.raw_ms if raw else log.median_ms)(k) for k, _, _ in items]


def remeasure_networks(device: Device, space: SearchSpace, nets: Sequence[Sequence[Option]], *,
                       cache_dir: str | os.PathLike | None, reference: bool | None = None) -> tuple[list, list]:
    """Measure ``nets`` again in one fresh (not logged) chunk: (raw medians, medians normalised as the log's
    networks are: by the reference timed in this chunk relative to the log's reference median)."""
    reference = device.reference if reference is None else bool(reference)
    specs = [space.arch_spec(list(o)) for o in nets]
    if not reference:
        raw = [m.median_ms for m in device.measure_many(specs)]
        return raw, list(raw)
    log = open_log(space, device, cache_dir, reference)
    middle = len(specs) // 2
    results = device.measure_many(specs[:middle] + [reference_networks(space)["net"]] + specs[middle:])
    ref = results.pop(middle).median_ms
    overall = log.reference_ms("net") or ref
    raw = [m.median_ms for m in results]
    return raw, [r * overall / ref for r in raw]


def options_from_record(record: dict) -> list[Option]:
    return [_option_from_json(o) for o in record["options"]]
