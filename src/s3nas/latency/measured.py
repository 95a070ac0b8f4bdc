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
fsynced after each chunk; an unreadable line - torn by a kill, or edited - is dropped with a warning and
its measurement taken again), keyed by a hash of the device's identity (kind,
settings, versions, machine; the number format when not fp32: ``hardware.dtype=int8`` tables never mix with
fp32 ones, and their log file names say ``-int8``) and the search space: an interrupted build resumes where it
stopped, a device that fails keeps what it measured, and a finished build costs nothing the next time.
A build holds an advisory lock on ``<log>.lock``: two commands building the same table at once do not
measure twice - the second waits, then reads what the first logged, and both get the same table.

Reference normalisation (``reference=True``, ``hardware.reference``): on a shared machine the level of the
measurements drifts between chunks (other jobs' memory traffic changes what a whole network costs), so every
chunk also times a fixed reference - a mid-size block for chunks of blocks, a mid-size network for chunks of
networks - interleaved with the chunk's networks. The log keeps the raw median (``median_ms``), the reference's
median in that chunk (``ref_ms``) and one ``ref:<kind>:<chunk>`` record per chunk; ``MeasurementLog.median_ms``
returns ``median_ms * R / ref_ms`` with ``R`` the median of the reference over all chunks of the log (the
measurement at the log's typical conditions); ``raw_ms`` returns the raw value.
"""

from __future__ import annotations

import contextlib
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
from s3nas.latency.device import Device, DeviceError, Measurement, PartialMeasurement, Piece
from s3nas.latency.lut import LatencyTable, _option_from_json, _option_to_json
from s3nas.utils.io import append_lines, atomic_write_text, is_disk_full
from s3nas.utils.locks import file_lock

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
    return ",".join(f"{b.block_type}:{b.kernel}x{b.expansion:g}" if b.block_type else f"{b.kernel}x{b.expansion:g}"
                    for b in option)


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
        self.unreadable: list[int] = []  # line numbers (1-based) that are not a record: torn or edited
        if path is not None and path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                try:
                    record = json.loads(line)
                except ValueError:  # a line torn by an interrupt, or garbage
                    record = None
                if isinstance(record, dict) and isinstance(record.get("id"), str) \
                        and isinstance(record.get("median_ms"), (int, float)):
                    self.records[record["id"]] = record
                elif line.strip():
                    self.unreadable.append(number)

    def drop_unreadable(self) -> None:
        """When lines could not be read: one warning naming the file, and the file rewritten without them
        (atomically; call it under the log's lock) - their measurements are taken again."""
        if not self.unreadable or self.path is None:
            return
        lines = ", ".join(map(str, self.unreadable[:5])) + (", ..." if len(self.unreadable) > 5 else "")
        warnings.warn(f"measurement log {self.path}: {len(self.unreadable)} unreadable line(s) ({lines}: cut by an "
                      "interrupt or edited) dropped; those measurements are taken again", stacklevel=3)
        try:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records.values()))
        except OSError:  # left as it is: the unreadable lines are ignored again next time
            pass
        self.unreadable = []

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
            # one write() per chunk (O_APPEND: concurrent writers never interleave inside a line); a line torn
            # by a kill stays a line of its own (ignored when read); a failed append is truncated back
            append_lines(self.path, lines)
        except OSError as error:  # the build goes on with the measurements in memory
            if is_disk_full(error):  # a full disk is reported; what was logged before resumes the build
                raise
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


#: a table build stops when this many networks in a row failed (a device that stopped answering), or when the
#: first PROBE ones all failed (a device that runs nothing: the build starts with a chunk of that size)
ABORT_AFTER_FAILURES = 16
PROBE = 3


def measure_items(device: Device, log: MeasurementLog, items: Sequence[tuple[str, Any, dict]], *,
                  chunk: int = 16, progress: bool = True, description: str = "measuring",
                  on_first: Callable[[float], None] | None = None, reference: tuple[str, Any] | None = None,
                  failures: dict[str, str] | None = None) -> int:
    """Measure the ``(id, network, extra)`` items not yet in ``log``, in chunks; returns how many were measured.
    ``reference`` = (kind, network): timed in every chunk with the others (see the module docstring).
    ``failures``: a dict that receives ``{id: one-line error}`` of the items the device failed on, the others
    being measured (``DeviceError`` when ``ABORT_AFTER_FAILURES`` in a row, or the first ``PROBE`` into an empty
    log, failed);
    without it the first failure raises. Either way what was measured is logged (a rerun resumes)."""
    todo = [item for item in items if item[0] not in log]
    if not todo:
        return 0
    bar, task = _progress(description, len(todo), progress)
    done, in_a_row, start = 0, 0, 0
    try:
        while start < len(todo):
            probing = failures is not None and len(log) == 0  # nothing measured yet: is the device alive?
            size = min(chunk, PROBE) if probing else chunk
            part = todo[start:start + size]
            start += len(part)
            t0 = time.perf_counter()
            networks = [network for _, network, _ in part]
            if reference is not None:
                middle = len(networks) // 2  # interleaved like any other network of the chunk
                networks = networks[:middle] + [reference[1]] + networks[middle:]
            try:
                results = device.measure_many(networks)
                partial = None
            except PartialMeasurement as error:
                results, partial = list(error.results), error
            seconds = _device_seconds(results, time.perf_counter() - t0)
            if reference is None:
                extras = [extra for _, _, extra in part]
                head: list = []
            else:
                ref = results.pop(middle)
                ref_seconds = seconds.pop(middle)
                if isinstance(ref, DeviceError):  # the chunk cannot be normalised: nothing of it is kept
                    raise ref
                kind = reference[0]
                chunk_id = uuid.uuid4().hex[:12]
                tag = {"ref": kind, "ref_ms": ref.median_ms, "chunk": chunk_id}
                extras = [{**extra, **tag} for _, _, extra in part]
                head = [(f"ref:{kind}:{chunk_id}", ref, {"reference": kind, "chunk": chunk_id,
                                                         "seconds": round(ref_seconds, 4)})]
            good = [(key, m, {**extra, "seconds": round(sec, 4)})
                    for (key, _, _), m, extra, sec in zip(part, results, extras, seconds)
                    if not isinstance(m, DeviceError)]
            if good:
                log.append(head + good)
            if partial is not None and failures is None:
                raise partial
            for (key, _, _), m in zip(part, results):
                if isinstance(m, DeviceError):
                    failures[key], in_a_row = str(m), in_a_row + 1
                else:
                    in_a_row = 0
            done += len(good)
            if in_a_row >= (min(PROBE, len(todo)) if probing and not good else ABORT_AFTER_FAILURES):
                last = next(m for m in reversed(results) if isinstance(m, DeviceError))
                raise _Stopped(f"{last} ({'the first ' if probing else ''}{in_a_row} networks in a row failed; "
                               f"{_kept(log)}")
            if good and on_first is not None and done == len(good):
                on_first((time.perf_counter() - t0) / len(part))
            if bar is not None:
                bar.update(task, advance=len(part))
    except _Stopped as error:
        raise DeviceError(str(error)) from None
    except DeviceError as error:
        raise DeviceError(f"{error} ({_kept(log)}") from None
    finally:
        if bar is not None:
            bar.stop()
    return done


def _device_seconds(results: Sequence[Any], elapsed: float) -> list[float]:
    """The device time of a chunk of measurements shared among them in proportion to their medians (their runs
    are interleaved): what each cost, export and session set-up included (the ``seconds`` of the log's records)."""
    medians = [0.0 if isinstance(m, DeviceError) else float(m.median_ms) for m in results]
    total = sum(medians)
    if total <= 0:
        return [elapsed / max(1, len(results))] * len(results)
    return [elapsed * m / total for m in medians]


def device_seconds(log: "MeasurementLog", keys: Sequence[str]) -> float:
    """Device time the measurements ``keys`` cost when they were taken (0 for records from before it was logged)."""
    return float(sum(float(log.records[k].get("seconds") or 0.0) for k in keys if k in log))


class _Stopped(DeviceError):
    """A build stopped by failures in a row (its message already says what was kept)."""


def _kept(log: MeasurementLog) -> str:
    where = f" in {log.path}" if log.path is not None else ""
    return f"{len(log)} measurements kept{where}; rerun to resume)"


def log_path_of(cache_dir: str | os.PathLike | None, space: SearchSpace, device: Device, key: str) -> Path | None:
    if cache_dir is None:
        return None
    dtype = "" if device.dtype == "fp32" else f"-{device.dtype}"  # fp32 logs keep the names they had
    return Path(cache_dir) / f"measured-{space.name}-{space.input_size}px-{device.name}{dtype}-{key[:16]}.jsonl"


def block_table(space: SearchSpace, log: MeasurementLog, key: str = "", meta: dict | None = None, *,
                raw: bool = False, estimated: dict[str, float] | None = None) -> LatencyTable:
    """The table of standalone block measurements in ``log`` (normalised medians; ``raw``: as measured);
    ``estimated``: {id: ms} of blocks the device failed on (``_check_failures``)."""
    measured_ms = log.raw_ms if raw else log.median_ms
    estimated = estimated or {}

    def value(key: str) -> float:
        return estimated[key] if key in estimated else measured_ms(key)

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
    ``reference`` (default ``device.reference``): normalise every chunk by a reference timed in it.
    The log is locked for the build: a second command building the same table waits, then reads the log the
    first one wrote (measuring nothing again), so both get the same table."""
    reference = device.reference if reference is None else bool(reference)
    with _log_lock(log_path_of(cache_dir, space, device, measurement_key(space, device, reference))):
        return _build_measured_table(space, device, cache_dir=cache_dir, samples=samples, correction=correction,
                                     ridge=ridge, seed=seed, progress=progress, chunk=chunk, printer=printer,
                                     reference=reference)


def _log_lock(path: Path | None):
    """The lock of a measurement log (none without a log file)."""
    return contextlib.nullcontext() if path is None else file_lock(path, "measurement log")


def _build_measured_table(space: SearchSpace, device: Device, *, cache_dir: str | os.PathLike | None,
                          samples: int, correction: str, ridge: float, seed: int, progress: bool, chunk: int,
                          printer: Callable[[str], None] | None, reference: bool) -> MeasuredTable:
    """``build_measured_table`` under the log's lock."""
    started = time.time()
    refs = reference_networks(space) if reference else {}
    key = measurement_key(space, device, reference)
    log = MeasurementLog(log_path_of(cache_dir, space, device, key))
    log.drop_unreadable()
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

    failures: dict[str, str] = {}  # pieces and networks the device failed on: named in one warning, not logged
    measured = measure_items(device, log, block_items, chunk=chunk, progress=progress,
                             description=f"{device.name}: blocks", on_first=announce("block", missing_blocks),
                             reference=("block", refs["block"]) if reference else None, failures=failures)
    measured += measure_items(device, log, net_items, chunk=chunk, progress=progress,
                              description=f"{device.name}: networks", on_first=announce("net", missing_nets),
                              reference=("net", refs["net"]) if reference else None, failures=failures)
    filled = _check_failures(space, device, log, block_items, net_items, failures)
    meta = {"method": "measured", "device": device.name, "device_kind": device.kind, "dtype": device.dtype,
            "space": space.name,
            "input_size": space.input_size, "num_classes": space.num_classes, "repeats": device.repeats,
            "statistic": "median", "log": str(log.path) if log.path else None,
            "reference": {k: log.reference_ms(k) for k in REFERENCE_KINDS} if reference else None,
            **_flag_counts(log, [k for k, _, _ in block_items + net_items]),
            "failed": sorted(failures), "estimated_entries": sorted(filled)}
    raw = block_table(space, log, key, meta, estimated=filled)
    fit_samples = [(o, log.median_ms(k)) for (k, _, _), o in zip(net_items, nets) if k not in failures]
    corr = fit_correction(raw, fit_samples, correction, ridge)
    corrected = corr.apply(raw)
    corrected.meta["method"] = f"measured+{corr.method}"
    seconds = time.time() - started
    if printer and measured:
        fitted = (f"; correction {corr.method}: fit MAPE {corr.fit['train_raw_mape_pct']:.1f}% raw -> "
                  f"{corr.fit['train_mape_pct']:.1f}% corrected on {len(fit_samples)} networks") \
            if "train_mape_pct" in corr.fit else "; no correction (no end-to-end samples)"
        flagged = (f"; {meta['unstable_entries']} measurements stayed unstable after re-measuring (flagged in the "
                   f"log)") if meta["unstable_entries"] else ""
        printer(f"latency table on {device.label}: {measured} measurements in {seconds / 60:.1f} min{fitted}"
                f"{flagged}")
    return MeasuredTable(raw, corrected, corr, fit_samples, log.path, device.name, seconds, measured,
                         {"key": key, "estimates_s": estimates})


def _flag_counts(log: MeasurementLog, keys: Sequence[str]) -> dict:
    """How many of the table's measurements were taken again (their runs differed wildly) or stayed unstable."""
    records = [log.records[k] for k in keys if k in log]
    return {"remeasured_entries": sum(1 for r in records if r.get("remeasured")),
            "unstable_entries": sum(1 for r in records if r.get("unstable"))}


def _check_failures(space: SearchSpace, device: Device, log: MeasurementLog, block_items: Sequence[tuple],
                    net_items: Sequence[tuple], failures: dict[str, str]) -> dict[str, float]:
    """What a table build does with the pieces and networks the device failed on: a DeviceError (one line) when
    the stem or the head failed (they are in every network) or every sampled network did; else one warning line
    naming them, and the estimated ms of each failed block (``_estimate_blocks``) - failed networks are left out
    of the correction's fit."""
    if not failures:
        return {}
    pieces = [k for k, _, _ in block_items if k in failures]
    nets = [k for k, _, _ in net_items if k in failures]
    for key in ("stem", "head"):
        if key in failures:
            raise DeviceError(f"{failures[key]} (the {key} is part of every network; {_kept(log)}")
    if nets and len(nets) == len(net_items):
        raise DeviceError(f"{failures[nets[0]]} (failed on all {len(nets)} sampled networks; {_kept(log)}")
    filled = _estimate_blocks(space, log, pieces)

    def named(keys: list[str], total: int, what: str) -> str:
        shown = ", ".join(keys[:6]) + (f", ... ({len(keys) - 6} more)" if len(keys) > 6 else "")
        return f"{len(keys)} of {total} {what}" + (f" ({shown})" if keys else "")

    first = failures[(pieces + nets)[0]]
    warnings.warn(f"device {device.name} failed on {named(pieces, len(block_items), 'pieces')} and "
                  f"{named(nets, len(net_items), 'sampled networks')}; the table goes on without them (a failed "
                  f"block's entry is estimated from its position's measured blocks, per MAC; failed networks are "
                  f"left out of the correction; a rerun tries them again); first failure: {first}", stacklevel=3)
    return filled


def _estimate_blocks(space: SearchSpace, log: MeasurementLog, keys: Sequence[str]) -> dict[str, float]:
    """{id: ms} of failed blocks: their MACs times the median ms per MAC of the measured options of their position
    (of every position when none of it was measured)."""
    cache: dict[int, list[float]] = {}

    def per_mac(i: int) -> list[float]:
        if i in cache:
            return cache[i]
        rates = cache[i] = []
        for option in space.options(i):
            key = f"block:{i}:{option_id(option)}"
            if option and key in log:
                macs = Piece.at(space, i, option).graph().macs
                if macs > 0:
                    rates.append(log.median_ms(key) / macs)
        return rates

    estimates, everywhere = {}, None
    for key in keys:
        _, i_text, _ = key.split(":", 2)
        i = int(i_text)
        option = next(o for o in space.options(i) if o and f"block:{i}:{option_id(o)}" == key)
        rates = per_mac(i)
        if not rates:
            everywhere = everywhere if everywhere is not None else \
                [r for j in range(len(space.positions)) for r in per_mac(j)]
            rates = everywhere
        if not rates:
            raise DeviceError(f"no block of the space could be measured ({key} and every other failed)")
        estimates[key] = float(statistics.median(rates)) * Piece.at(space, i, option).graph().macs
    return estimates


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
    items = [(network_id(tag, k, o), space.arch_spec(list(o)), {"options": [_option_to_json(x) for x in o]})
             for k, o in enumerate(nets)]
    with _log_lock(log_path_of(cache_dir, space, device, measurement_key(space, device, reference))):
        log = open_log(space, device, cache_dir, reference)  # read under the lock: a concurrent writer is done
        log.drop_unreadable()
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
