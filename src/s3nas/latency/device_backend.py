"""The black-box device backend: latency measured on a device, the search's table measured and corrected.

``hardware=cpu_onnxruntime`` (torch_cpu, command, sim_midap_blackbox) selects it. A network's latency is the
median of ``noise_repeats`` separate measurements (each the median of ``repeats`` timed runs) with their spread
as the noise (``hardware.dtype=int8``: the INT8 QDQ model is timed, ``data_dtype`` is int8 and the sources say so);
the table is timed block by block and corrected with end-to-end measurements of sampled networks
(``s3nas.latency.measured``, cached and resumable); feasibility measures the space's fastest and slowest network.
"""

from __future__ import annotations

from typing import Any, Sequence

from s3nas.arch import codec
from s3nas.arch.spec import ArchSpec
from s3nas.latency.backend import LatencyBackend, LatencyResult
from s3nas.latency.device import Device, Measurement, make_device
from s3nas.latency.measured import build_measured_table, reference_networks

__all__ = ["DeviceBackend"]


class DeviceBackend(LatencyBackend):
    """A black-box ``Device`` (s3nas.latency.device) with the settings of its measured table."""

    how = "measured"
    method = "measurement"
    cheap_networks = False  # the corrected table stands for the search's states

    def __init__(self, device: Device, *, correction: str = "stage_affine_weights", correction_samples: int = 60,
                 correction_ridge: float = 0.1, seed: int = 0, noise_repeats: int = 5) -> None:
        self.device = device
        self.name = device.name
        self.data_dtype = str(getattr(device, "dtype", "fp32"))  # the format the device times networks in
        self.correction, self.correction_samples = str(correction), int(correction_samples)
        self.correction_ridge, self.seed, self.noise_repeats = float(correction_ridge), int(seed), int(noise_repeats)
        self._measurements: dict = {}
        self._reference: tuple[Any, float] | None = None  # (reference network, its level in the table's log)

    @classmethod
    def from_config(cls, hardware_cfg: Any) -> "DeviceBackend":
        hw = hardware_cfg
        return cls(make_device(hw), correction=hw["correction"], correction_samples=hw["correction_samples"],
                   correction_ridge=hw["correction_ridge"], seed=hw["seed"], noise_repeats=hw["noise_repeats"])

    # ------------------------------------------------------------------------------ networks
    def measurement(self, spec: ArchSpec) -> Measurement:
        """One measurement (median of the device's timed runs) of ``spec``, cached per network."""
        key = (codec.encode(spec), spec.input_size, spec.num_classes, spec.in_channels)
        if key not in self._measurements:
            self._measurements[key] = self.device.measure(spec)
        return self._measurements[key]

    def latency_ms(self, spec: ArchSpec) -> float:
        return float(self.measurement(spec).median_ms)

    def latencies_ms(self, specs: Sequence[ArchSpec]) -> list[float]:
        return [float(m.median_ms) for m in self.device.measure_many(list(specs))]

    def evaluate(self, spec: ArchSpec) -> LatencyResult:
        """Median of ``noise_repeats`` separate measurements, their spread as the noise, the drift of the
        table's reference network since the table was measured (when the table normalised by one); measurements
        taken again because their runs differed wildly, or kept unstable, are counted in the details and the source."""
        noise = self.device.noise(spec, repeats=max(2, self.noise_repeats))
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
            now_ms = self.device.measure(reference_net).median_ms
            details.update(reference_now_ms=now_ms, reference_table_ms=table_ms,
                           device_drift_pct=100.0 * (now_ms / table_ms - 1.0))
            notes += f"; reference network {details['device_drift_pct']:+.1f}% vs the table's measurements"
        source = (f"measurement ({self.device.label}, {spec.input_size}x{spec.input_size}, {spec.num_classes} classes; "
                  f"median of {len(noise.medians_ms)} measurements of {first.n} timed runs each, noise "
                  f"+-{noise.noise_pct:.1f}%{notes})")
        return LatencyResult(float(noise.median_ms), source, noise_pct=float(noise.noise_pct), details=details)

    def source(self, spec: ArchSpec) -> str:
        return f"measurement ({self.device.label}, {spec.input_size}x{spec.input_size}, {spec.num_classes} classes)"

    # ------------------------------------------------------------------------------ spaces
    def table(self, space: Any, *, cache_dir: Any = None, workers: int = 1, progress: bool = True) -> Any:
        """The corrected measured table (block by block, corrected with end-to-end samples; cached)."""
        measured = build_measured_table(space, self.device, cache_dir=cache_dir, samples=self.correction_samples,
                                        correction=self.correction, ridge=self.correction_ridge, seed=self.seed,
                                        progress=progress)
        table = measured.corrected
        table.meta["fit"] = measured.correction.fit
        reference_ms = (table.meta.get("reference") or {}).get("net")
        if reference_ms:
            self._reference = (reference_networks(space)["net"], float(reference_ms))
        return table

    def identity(self) -> dict:
        return {"backend": "device", "device": self.device.identity()}

    def close(self) -> None:
        self.device.close()
