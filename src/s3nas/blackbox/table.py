"""The measured latency table of a black-box device, corrected with end-to-end measurements.

``build_measured_table(space, device, cache_dir=...)``:
1. times every (position, option) as a standalone block (input of the previous block's output shape), the
   stem and the head on the device, in a shuffled order and interleaved in chunks (``Device.measure_many``)
   so a change of the machine's load does not line up with positions;
2. times ``samples`` sampled architectures end to end (random options per position, seeded);
3. fits the layer-adaptive correction (``s3nas.blackbox.correction``) and returns the raw and corrected
   tables (``LatencyTable`` in integer nanoseconds: ``clock_hz`` = 1e9, so ``estimate_ms`` works as for a
   simulated table).

Every measurement is appended to a JSON-lines log under ``cache_dir`` (one line per entry, flushed and
fsynced after each chunk; a torn last line is ignored), keyed by a hash of the device's identity (kind,
settings, versions, machine) and the search space: an interrupted build resumes where it stopped, a device
that fails keeps what it measured, and a finished build costs nothing the next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from s3nas.blackbox.correction import Correction, fit_correction
from s3nas.blackbox.devices import Device, DeviceError, Measurement, Piece
from s3nas.latency.lut import LatencyTable, _option_from_json, _option_to_json
from s3nas.space import Option, SearchSpace

LOG_FORMAT_VERSION = 1
NS_CLOCK_HZ = 1e9  # table "cycles" are nanoseconds


def measurement_key(space: SearchSpace, device: Device) -> str:
    """Hash of the device identity and the search space (+ deployment shape)."""
    payload = {"device": device.identity(), "space": space.to_dict(), "format": LOG_FORMAT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def option_id(option: Option) -> str:
    return ",".join(f"{b.kernel}x{b.expansion:g}" for b in option)


def network_id(tag: str, k: int, options: Sequence[Option]) -> str:
    """Log id of a sampled network: its tag, index and a digest of its options (a changed sampler never
    attributes a logged measurement to another network)."""
    digest = hashlib.sha256("|".join(option_id(o) for o in options).encode()).hexdigest()[:12]
    return f"{tag}:{k}:{digest}"


class MeasurementLog:
    """Append-only JSON-lines file of measurements: ``{"id": ..., "median_ms": ..., ...}`` per line."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: dict[str, dict] = {}
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

    def median_ms(self, key: str) -> float:
        return float(self.records[key]["median_ms"])

    def append(self, items: Sequence[tuple[str, Measurement, dict]]) -> None:
        """Record measurements (in memory and, when the log has a path, on disk, durably)."""
        lines = []
        for key, m, extra in items:
            record = {"id": key, **m.to_dict(), **extra}
            self.records[key] = record
            lines.append(json.dumps(record))
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


def sample_architectures(space: SearchSpace, count: int, seed: int) -> list[list[Option]]:
    """``count`` architectures: uniformly random options per position, plus a random per-architecture
    "size" bias so small and large networks are both represented (seeded)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        bias = rng.random()  # 0: small options, 1: large options
        row = []
        for i in range(len(space.positions)):
            options = space.options(i)  # ascending size
            k = min(len(options) - 1, max(0, int(round(rng.triangular(0, len(options) - 1,
                                                                     bias * (len(options) - 1))))))
            row.append(options[k])
        out.append(row)
    return out


def _progress(description: str, total: int, enabled: bool):
    if not enabled:
        return None, None
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), transient=False)
    bar.start()
    return bar, bar.add_task(description, total=total)


def measure_items(device: Device, log: MeasurementLog, items: Sequence[tuple[str, Any, dict]], *,
                  chunk: int = 16, progress: bool = True, description: str = "measuring",
                  on_first: Callable[[float], None] | None = None) -> int:
    """Measure the ``(id, network, extra)`` items not yet in ``log``, in chunks; returns how many were measured."""
    todo = [item for item in items if item[0] not in log]
    if not todo:
        return 0
    bar, task = _progress(description, len(todo), progress)
    done = 0
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            t0 = time.perf_counter()
            results = device.measure_many([network for _, network, _ in part])
            log.append([(key, m, extra) for (key, _, extra), m in zip(part, results)])
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
    return Path(cache_dir) / f"measured-{space.name}-{space.input_size}px-{device.name}-{key[:16]}.jsonl"


def build_measured_table(space: SearchSpace, device: Device, *, cache_dir: str | os.PathLike | None,
                         samples: int = 60, correction: str = "stage_affine", ridge: float = 0.1, seed: int = 0,
                         progress: bool = True, chunk: int = 16,
                         printer: Callable[[str], None] | None = print) -> MeasuredTable:
    """Measure (or load from the log) the block table and ``samples`` end-to-end networks; fit the correction."""
    started = time.time()
    key = measurement_key(space, device)
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
        printer(f"latency table on {device.name}: {missing_blocks} of {len(block_items)} standalone pieces and "
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
                             description=f"{device.name}: blocks", on_first=announce("block", missing_blocks))
    measured += measure_items(device, log, net_items, chunk=chunk, progress=progress,
                              description=f"{device.name}: networks", on_first=announce("net", missing_nets))
    entries: list[dict[Option, int]] = []
    for i in range(n):
        row = {}
        for o in space.options(i):
            row[o] = 0 if not o else int(round(log.median_ms(f"block:{i}:{option_id(o)}") * 1e6))
        entries.append(row)
    fixed = int(round((log.median_ms("stem") + log.median_ms("head")) * 1e6))
    meta = {"method": "measured", "device": device.name, "device_kind": device.kind, "space": space.name,
            "input_size": space.input_size, "num_classes": space.num_classes, "repeats": device.repeats,
            "statistic": "median", "log": str(log.path) if log.path else None}
    raw = LatencyTable(entries, fixed, NS_CLOCK_HZ, key, space=space, meta=meta)
    fit_samples = [(o, log.median_ms(k)) for (k, _, _), o in zip(net_items, nets)]
    corr = fit_correction(raw, fit_samples, correction, ridge)
    corrected = corr.apply(raw)
    corrected.meta["method"] = f"measured+{corr.method}"
    seconds = time.time() - started
    if printer and measured:
        fitted = (f"; correction {corr.method}: fit MAPE {corr.fit['train_raw_mape_pct']:.1f}% raw -> "
                  f"{corr.fit['train_mape_pct']:.1f}% corrected on {len(fit_samples)} networks") \
            if "train_mape_pct" in corr.fit else "; no correction (no end-to-end samples)"
        printer(f"latency table on {device.name}: {measured} measurements in {seconds / 60:.1f} min{fitted}")
    return MeasuredTable(raw, corrected, corr, fit_samples, log.path, device.name, seconds, measured,
                         {"key": key, "estimates_s": estimates})


def measure_networks(device: Device, space: SearchSpace, nets: Sequence[Sequence[Option]], *, tag: str,
                     cache_dir: str | os.PathLike | None, progress: bool = True, chunk: int = 16) -> list[float]:
    """End-to-end medians (ms) of option lists, through the same resumable log as the table."""
    key = measurement_key(space, device)
    log = MeasurementLog(log_path_of(cache_dir, space, device, key))
    items = [(network_id(tag, k, o), space.arch_spec(list(o)), {"options": [_option_to_json(x) for x in o]})
             for k, o in enumerate(nets)]
    measure_items(device, log, items, chunk=chunk, progress=progress, description=f"{device.name}: {tag}")
    return [log.median_ms(k) for k, _, _ in items]


def options_from_record(record: dict) -> list[Option]:
    return [_option_from_json(o) for o in record["options"]]
