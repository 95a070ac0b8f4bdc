"""The black-box device backend: latency measured on a device, the search's table measured and corrected.

``hardware=cpu_onnxruntime`` (torch_cpu, command, sim_midap_blackbox) selects it. A network's latency is the
median of ``noise_repeats`` separate measurements (each the median of ``repeats`` timed runs) with their spread
as the noise (``hardware.dtype=int8``: the INT8 QDQ model is timed, ``data_dtype`` is int8 and the sources say so);
the table is timed block by block and corrected with end-to-end measurements of sampled networks
(``s3nas.latency.measured``, cached and resumable); feasibility measures the space's fastest and slowest network.
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
                 interval_level: float = 0.9, conservative: bool = False) -> None:
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
        entries = [{o: int(round(c * factor)) for o, c in row.items()} for row in table.entries]
        meta = {**table.meta, "conservative": {"factor": factor, "level": self.interval_level}}
        return type(table)(entries, int(round(table.fixed_cycles * factor)), table.clock_hz, f"{table.key}:upper",
                           space=table.space, meta=meta)

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
            return LatencyPrediction(predicted, predicted * (1 - h), predicted * (1 + h), self.interval_level,
                                     f"corrected measured table ({self.device.label}; {self.interval_level:.0%} "
                                     f"interval from the correction's residuals)")
        return None

    def identity(self) -> dict:
        return {"backend": "device", "device": self.device.identity()}

    def close(self) -> None:
        self.device.close()
