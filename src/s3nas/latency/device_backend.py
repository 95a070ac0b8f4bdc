"""The black-box device backend: latency measured on a device, the search's table measured and corrected.

``hardware=cpu_onnxruntime`` (torch_cpu, command, sim_midap_blackbox) selects it. A network's latency is the
median of ``noise_repeats`` separate measurements (each the median of ``repeats`` timed runs) with their spread
as the noise (``hardware.dtype=int8``: the INT8 QDQ model is timed, ``data_dtype`` is int8 and the sources say so);
the table is timed block by block and corrected with end-to-end measurements of sampled networks
(``s3nas.latency.measured``, cached and resumable); feasibility measures the space's fastest and slowest network.
At the start of a search (``at_search_start``) the table's reference network is measured again: when the machine
runs slower or faster than when the table was measured, by more than the noise of that re-measurement, the search's
table is scaled by the ratio (the summary's ``device_drift_start_pct`` and ``table_scale`` say what was done).
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.arch.spec import ArchSpec
from s3nas.config.device_schema import device_config
from s3nas.latency.backend import LatencyBackend, LatencyPrediction, LatencyResult
from s3nas.latency.device import Device, Measurement, make_device
from s3nas.latency.fewshot import SpaceFeatures, fit_fewshot, select_networks, z_value
from s3nas.latency.measured import (build_measured_table, device_seconds, measure_networks, network_id, open_log,
                                   reference_networks, sample_architectures)

__all__ = ["DeviceBackend"]


class DeviceBackend(LatencyBackend):
    """A black-box ``Device`` (s3nas.latency.device) with the settings of its measured table."""

    how = "measured"
    method = "measurement"
    cheap_networks = False  # the corrected table stands for the search's states

    def __init__(self, device: Device, *, correction: str = "stage_affine_weights", correction_samples: int = 60,
                 correction_ridge: float = 0.1, seed: int = 0, noise_repeats: int = 5, budget: Any = None,
                 interval_level: float = 0.9, conservative: bool = False, rescale_drift: bool = True,
                 drift_min_pct: float = 0.5) -> None:
        self.device = device
        self.name = device.name
        self.data_dtype = str(getattr(device, "dtype", "fp32"))  # the format the device times networks in
        self.correction, self.correction_samples = str(correction), int(correction_samples)
        self.correction_ridge, self.seed, self.noise_repeats = float(correction_ridge), int(seed), int(noise_repeats)
        budget = dict(budget or {})
        self.budget_networks = int(budget["networks"]) if budget.get("networks") else None
        self.selection = str(budget.get("selection", "active"))
        self.pool = int(budget.get("pool", 400))
        self.prior_error_pct = float(budget.get("prior_error_pct", 2.0))
        self.prior_weight = float(budget.get("prior_weight", 6.0))
        self.fewshot_ridge = float(budget.get("ridge", 1e-3))
        self.feature_set = str(budget.get("features", "base"))
        self.interval_level, self.conservative = float(interval_level), bool(conservative)
        self.device_seconds = 0.0  # device time this backend spent (table build + network measurements)
        self._measurements: dict = {}
        self._reference: tuple[Any, float] | None = None  # (reference network, its level in the table's log)
        self._fewshot: Any = None  # (SpaceFeatures, FewShotModel) once a few-shot table was built
        self._table_error: Any = None  # (table, relative sd) of a full measured table
        # at the start of a search: the reference re-measured, the table scaled when it moved beyond the noise
        self.rescale_drift, self.drift_min_pct = bool(rescale_drift), float(drift_min_pct)
        self._start_drift: dict | None = None

    @classmethod
    def from_config(cls, hardware_cfg: Any) -> "DeviceBackend":
        hw = device_config(hardware_cfg)  # schema-complete (budget, interval_level ... have their defaults)
        return cls(make_device(hw), correction=hw["correction"], correction_samples=hw["correction_samples"],
                   correction_ridge=hw["correction_ridge"], seed=hw["seed"], noise_repeats=hw["noise_repeats"],
                   budget=dict(hw["budget"]), interval_level=hw["interval_level"], conservative=hw["conservative"])

    def _timed(self, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.device_seconds += time.perf_counter() - started

    # ------------------------------------------------------------------------------ networks
    def measurement(self, spec: ArchSpec) -> Measurement:
        """One measurement (median of the device's timed runs) of ``spec``, cached per network."""
        key = (codec.encode(spec), spec.input_size, spec.num_classes, spec.in_channels)
        if key not in self._measurements:
            self._measurements[key] = self._timed(self.device.measure, spec)
        return self._measurements[key]

    def latency_ms(self, spec: ArchSpec) -> float:
        return float(self.measurement(spec).median_ms)

    def latencies_ms(self, specs: Sequence[ArchSpec]) -> list[float]:
        return [float(m.median_ms) for m in self._timed(self.device.measure_many, list(specs))]

    def evaluate(self, spec: ArchSpec) -> LatencyResult:
        """Median of ``noise_repeats`` separate measurements, their spread as the noise, the drift of the
        table's reference network since the table was measured (when the table normalised by one); measurements
        taken again because their runs differed wildly, or kept unstable, are counted in the details and the source."""
        noise = self._timed(self.device.noise, spec, repeats=max(2, self.noise_repeats))
        first = self.measurement(spec)
        details = {"latency_iqr_ms": first.iqr_ms, "latency_runs": first.n,
                   "latency_measurements_ms": list(noise.medians_ms)}
        taken = [first, *noise.measurements]
        remeasured = sum(m.remeasured for m in taken)
        unstable = sum(1 for m in taken if m.unstable)
        details.update(latency_remeasured=remeasured, latency_unstable=unstable > 0)
        notes = ""
        if unstable:
            notes += (f"; UNSTABLE: {unstable} of {len(taken)} measurements kept wild runs after "
                      f"{self.device.remeasure} re-measurements, median of the bulk of their runs")
        elif remeasured:
            notes += f"; {remeasured} unstable measurement(s) taken again"
        if self._reference is not None:  # how far the machine is now from the conditions of the table
            reference_net, table_ms = self._reference
            now_ms = self._timed(self.device.measure, reference_net).median_ms
            details.update(reference_now_ms=now_ms, reference_table_ms=table_ms,
                           device_drift_pct=100.0 * (now_ms / table_ms - 1.0))
            notes += f"; reference network {details['device_drift_pct']:+.1f}% vs the table's measurements"
        if self._start_drift is not None:  # what the search's table was scaled by at its start
            start = self._start_drift
            details.update(reference_start_ms=start["reference_start_ms"],
                           device_drift_start_pct=start["drift_pct"],
                           device_drift_start_noise_pct=start["threshold_pct"], table_scale=start["scale"])
            notes += f"; {self.drift_note()}"
        predicted = self.predict(spec)
        if predicted is not None:
            details.update(predicted_ms=predicted.latency_ms, interval_ms=[predicted.low_ms, predicted.high_ms],
                           interval_level=predicted.level, prediction=predicted.how)
        source = (f"measurement ({self.device.label}, {spec.input_size}x{spec.input_size}, {spec.num_classes} classes; "
                  f"median of {len(noise.medians_ms)} measurements of {first.n} timed runs each, noise "
                  f"+-{noise.noise_pct:.1f}%{notes})")
        return LatencyResult(float(noise.median_ms), source, noise_pct=float(noise.noise_pct), details=details)

    def source(self, spec: ArchSpec) -> str:
        return f"measurement ({self.device.label}, {spec.input_size}x{spec.input_size}, {spec.num_classes} classes)"

    # ------------------------------------------------------------------------------ spaces
    def table(self, space: Any, *, cache_dir: Any = None, workers: int = 1, progress: bool = True) -> Any:
        """The corrected measured table (block by block, corrected with end-to-end samples; cached), or with
        ``budget.networks`` the few-shot model's table (s3nas.latency.fewshot)."""
        if self.budget_networks:
            table = self._fewshot_table(space, cache_dir, progress)
        else:
            measured = self._timed(build_measured_table, space, self.device, cache_dir=cache_dir,
                                   samples=self.correction_samples, correction=self.correction,
                                   ridge=self.correction_ridge, seed=self.seed, progress=progress)
            table = measured.corrected
            table.meta["fit"] = measured.correction.fit
            self._table_error = (table, self._table_sd(table, measured.samples, measured.correction))
            table.meta["interval"] = {"level": self.interval_level, "sd_pct": 100.0 * self._table_error[1]}
        reference_ms = (table.meta.get("reference") or {}).get("net")
        if reference_ms:
            self._reference = (reference_networks(space)["net"], float(reference_ms))
        if self.conservative:
            table = self._upper_bound_table(space, table)
        return table

    def at_search_start(self, space: Any, table: Any, *, progress: bool = True) -> Any:
        """The table a search starts with: the table's reference network (``table()`` set it) measured again now
        (median of ``noise_repeats`` measurements); when it moved from the table's level by more than the noise of
        that median (the measurements' spread over sqrt(count), at least ``drift_min_pct``), ``table`` scaled by the
        ratio, else ``table`` unchanged. What was done is kept (``table.meta["drift"]``, the delivered network's
        details). No reference (few-shot table, ``hardware.reference`` off) or ``rescale_drift`` off: ``table``."""
        self._start_drift = None
        if self._reference is None or not self.rescale_drift:
            return table
        reference_net, table_ms = self._reference
        noise = self._timed(self.device.noise, reference_net, repeats=max(2, self.noise_repeats))
        drift = drift_scale(float(table_ms), float(noise.median_ms), float(noise.noise_pct),
                            repeats=len(noise.medians_ms), min_pct=self.drift_min_pct)
        self._start_drift = drift
        if progress:
            print(f"latency table on {self.device.label}: {self.drift_note()}")
        if drift["scale"] == 1.0:
            table.meta["drift"] = drift
            return table
        scaled = scale_table(table, drift["scale"], meta={"drift": drift})
        if self._table_error is not None:  # the prediction of a network follows the table the search used
            self._table_error = (scaled, self._table_error[1])
        return scaled

    @property
    def start_noise_pct(self) -> float | None:
        """Repeat noise (+-%, half the range of the medians) of the reference network's measurements at the search's
        start; None before ``at_search_start`` or without a reference."""
        return float(self._start_drift["noise_pct"]) if self._start_drift is not None else None

    def drift_note(self) -> str:
        """One clause saying how the search's table was adjusted at the start ('' before ``at_search_start``)."""
        d = self._start_drift
        if d is None:
            return ""
        moved = (f"reference network {d['drift_pct']:+.1f}% vs the table (+-{d['threshold_pct']:.1f}%: median of "
                 f"{d['repeats']} measurements, spread +-{d['noise_pct']:.1f}%) at the search's start")
        return (f"{moved}: table scaled x{d['scale']:.4f}" if d["scale"] != 1.0
                else f"{moved}: within the noise, table not scaled")

    def _fewshot_table(self, space: Any, cache_dir: Any, progress: bool) -> Any:
        """Measure ``budget.networks`` networks chosen by ``budget.selection`` end to end and fit the model."""
        features = SpaceFeatures.of(space, self.feature_set)
        count = self.budget_networks
        nets = select_networks(space, features, count, selection=self.selection, seed=self.seed, pool_size=self.pool)
        tag = f"fewshot:{self.selection}:{self.seed}"
        log = open_log(space, self.device, cache_dir)
        ids = [network_id(tag, k, o) for k, o in enumerate(nets)]
        missing = sum(1 for k in ids if k not in log)
        if progress and missing:
            print(f"latency model on {self.device.label}: few-shot, {missing} of {count} networks to measure end to "
                  f"end (chosen by {self.selection} selection; no per-block table)")
        started = time.perf_counter()
        measured_ms = self._timed(measure_networks, self.device, space, nets, tag=tag, cache_dir=cache_dir,
                                  progress=progress)
        now_s = time.perf_counter() - started if missing else 0.0
        log = open_log(space, self.device, cache_dir)  # re-read: the records now hold what each cost
        chunks = {log.records[k].get("chunk") for k in ids if k in log} - {None}
        refs = [k for k, r in log.records.items() if k.startswith("ref:") and r.get("chunk") in chunks]
        spent = device_seconds(log, ids + refs) if log.path is not None else now_s
        model = fit_fewshot(features.matrix(nets), measured_ms, ridge=self.fewshot_ridge,
                            prior_error_pct=self.prior_error_pct, prior_weight=self.prior_weight,
                            level=self.interval_level, feature_set=self.feature_set)
        self._fewshot = (features, model, count)
        meta = {"method": "fewshot", "device": self.device.name, "device_kind": self.device.kind,
                "dtype": self.device.dtype, "space": space.name, "input_size": space.input_size,
                "num_classes": space.num_classes, "networks": count, "selection": self.selection,
                "device_seconds": spent, "measured_now": missing, "log": str(log.path) if log.path else None,
                "fewshot": model.to_dict(), "interval": {"level": self.interval_level, "sd_pct": 100.0 * model.sd}}
        if progress:
            print(f"latency model on {self.device.label}: {count} networks measured ({spent:.1f} s of device time, "
                  f"{missing} now); fit MAPE {model.fit['train_mape_pct']:.1f}%, {self.interval_level:.0%} interval "
                  f"+-{100.0 * model.half_width(features.network(nets[0])):.1f}% for the fastest network")
        return model.table(features, key=f"fewshot:{self.device.name}:{count}:{self.selection}:{self.seed}", meta=meta)

    def _table_sd(self, table: Any, samples: Sequence, correction: Any) -> float:
        """Relative residual sd of a full corrected table on its own fit networks, pooled with the prior as the
        few-shot model's (degrees of freedom: networks less the correction's parameters)."""
        y = np.array([float(m) for _, m in samples])
        if not len(y):
            return self.prior_error_pct / 100.0
        predicted = np.array([table.estimate_ms(o) for o, _ in samples])
        r = (y - predicted) / predicted
        params = 1 + 2 * (max(correction.groups) + 1 if correction.groups else 1) + 2
        dof = self.prior_weight + max(0.0, len(y) - params)
        return math.sqrt((self.prior_weight * (self.prior_error_pct / 100.0) ** 2 + float(r @ r)) / dof)

    def _upper_bound_table(self, space: Any, table: Any) -> Any:
        """``hardware.conservative``: every entry scaled by the upper end of a typical network's interval (the
        median over sampled networks), so the search meets its target with the interval's confidence."""
        nets = sample_architectures(space, 50, self.seed + 1)
        widths = [self._half_width(space.arch_spec(o)) for o in nets]
        factor = 1.0 + float(np.median(widths))
        return scale_table(table, factor, key=f"{table.key}:upper",
                           meta={"conservative": {"factor": factor, "level": self.interval_level}})

    def _half_width(self, spec: ArchSpec) -> float:
        prediction = self.predict(spec)
        if prediction is None or prediction.latency_ms <= 0:
            return 0.0
        return (prediction.high_ms - prediction.latency_ms) / prediction.latency_ms

    def predict(self, spec: ArchSpec) -> LatencyPrediction | None:
        """The few-shot model's (or the full corrected table's) estimate of ``spec`` with its interval; None before
        a table was built or for a network outside the table's space."""
        if self._fewshot is not None:
            _, model, count = self._fewshot
            x = model.network_features(archspec_to_graph(spec))
            predicted, low, high = model.interval_ms(x)
            return LatencyPrediction(predicted, low, high, model.level,
                                     f"few-shot model ({count} networks measured on {self.device.label}, "
                                     f"{self.selection} selection; {model.level:.0%} interval)")
        if self._table_error is not None:
            table, sd = self._table_error
            try:
                predicted = table.estimate_ms(table.space.options_of(spec))
            except (ValueError, KeyError, AttributeError):
                return None
            h = z_value(self.interval_level) * sd
            scaled = table.meta.get("drift", {}).get("scale", 1.0)
            at_start = f", scaled x{scaled:.4f} for the device's drift at the search's start" if scaled != 1.0 else ""
            return LatencyPrediction(predicted, predicted * (1 - h), predicted * (1 + h), self.interval_level,
                                     f"corrected measured table ({self.device.label}{at_start}; "
                                     f"{self.interval_level:.0%} interval from the correction's residuals)")
        return None

    def identity(self) -> dict:
        return {"backend": "device", "device": self.device.identity()}

    def close(self) -> None:
        self.device.close()


def drift_scale(table_ms: float, now_ms: float, noise_pct: float, repeats: int = 1, min_pct: float = 0.5) -> dict:
    """The drift of the reference network from the table's level (``table_ms``) to ``now_ms`` (the median of
    ``repeats`` measurements whose spread is +-``noise_pct``) and the scale for the table: ``now_ms / table_ms`` when
    the drift exceeds the noise of its own estimate (the spread over sqrt(repeats), at least ``min_pct``), else 1.0 (a
    move within that noise is not told from the noise itself)."""
    drift_pct = 100.0 * (now_ms / table_ms - 1.0)
    threshold_pct = max(float(noise_pct) / math.sqrt(max(1, int(repeats))), float(min_pct))
    scale = now_ms / table_ms if abs(drift_pct) > threshold_pct else 1.0
    return {"reference_table_ms": float(table_ms), "reference_start_ms": float(now_ms), "drift_pct": drift_pct,
            "noise_pct": float(noise_pct), "repeats": int(repeats), "threshold_pct": threshold_pct,
            "scale": float(scale)}


def scale_table(table: Any, factor: float, *, key: str | None = None, meta: dict | None = None) -> Any:
    """``table`` with every entry and its fixed part multiplied by ``factor`` (a new table; ``meta`` added to its
    meta, ``key`` default ``<key>:x<factor>``)."""
    entries = [{o: int(round(c * factor)) for o, c in row.items()} for row in table.entries]
    return type(table)(entries, int(round(table.fixed_cycles * factor)), table.clock_hz,
                       key if key is not None else f"{table.key}:x{factor:.4f}", space=table.space,
                       meta={**table.meta, **dict(meta or {})})
