"""search.py on a black-box device: checks, the measured + corrected table, the delivered network measured.

``runner.check_search`` calls ``check_device(cfg, device, space, target_ms)`` instead of the simulator's
feasibility check (the fastest network of the space is measured end to end); ``runner.run_search`` takes the
table from ``device_table`` (measured block by block, corrected with end-to-end samples, cached and
resumable); ``outputs.finish_search`` measures the decoded network end to end through ``DeviceLatency``, so
the latency in ``summary.json`` is a measurement of the network in ``arch.json`` (``latency_source``
says so, with the number of runs and the measurement noise).
"""

from __future__ import annotations

from typing import Any, Sequence

from s3nas.latency.device import Device, Measurement
from s3nas.errors import InfeasibleTargetError


def check_device(cfg: Any, device: Device, space: Any, target_ms: float) -> float:
    """Measure the fastest network of ``space``; InfeasibleTargetError when the target is below it."""
    fastest_ms = device.measure(space.arch_spec(space.min_options())).median_ms
    if not target_ms >= fastest_ms:
        raise InfeasibleTargetError(
            f"latency: target {target_ms:.4g} ms is below the fastest architecture of the search space "
            f"({fastest_ms:.4g} ms measured on {device.name}); use a latency of at least {fastest_ms:.4g}ms, or a "
            f"smaller supernet/candidates/deploy.input_size")
    return fastest_ms


def device_table(cfg: Any, device: Device, space: Any, progress: bool = True):
    """The corrected measured table of ``space`` on ``device`` (``hardware.correction*`` settings)."""
    from s3nas.latency.measured import build_measured_table

    hw = cfg.hardware
    measured = build_measured_table(space, device, cache_dir=cfg.paths.cache_dir,
                                    samples=int(hw.get("correction_samples", 60)),
                                    correction=str(hw.get("correction", "stage_affine_weights")),
                                    ridge=float(hw.get("correction_ridge", 0.1)), seed=int(hw.get("seed", 0)),
                                    progress=progress)
    table = measured.corrected
    table.meta["fit"] = measured.correction.fit
    return table


class DeviceLatency:
    """options -> measured end-to-end latency (median ms) of the deployment network, cached per state."""

    def __init__(self, device: Device, space: Any, noise_repeats: int = 5, reference_ms: float | None = None) -> None:
        """``reference_ms``: the reference network's median over the table's log (the level the table's entries
        are normalised to; None when the table was built without a reference)."""
        self.device, self.space, self.noise_repeats = device, space, int(noise_repeats)
        self.reference_ms = reference_ms
        self.cache: dict = {}

    def measurement(self, options: Sequence) -> Measurement:
        key = tuple(tuple(o) for o in options)
        if key not in self.cache:
            self.cache[key] = self.device.measure(self.space.arch_spec(list(key)))
        return self.cache[key]

    def __call__(self, options: Sequence) -> float:
        return float(self.measurement(options).median_ms)

    def delivered(self, options: Sequence) -> dict:
        """Measurement of the delivered network with its repeat-measurement noise (summary keys)."""
        spec = self.space.arch_spec(list(options))
        noise = self.device.noise(spec, repeats=max(2, self.noise_repeats))
        first = self.measurement(options)
        median_ms = noise.median_ms
        out = {"measured_ms": median_ms, "latency_iqr_ms": first.iqr_ms, "latency_runs": first.n,
               "latency_measurements_ms": list(noise.medians_ms), "latency_noise_pct": noise.noise_pct}
        drift = ""
        if self.reference_ms:  # how far the machine is now from the conditions the table was normalised to
            from s3nas.latency.measured import reference_networks

            now_ms = self.device.measure(reference_networks(self.space)["net"]).median_ms
            out.update(reference_now_ms=now_ms, reference_table_ms=self.reference_ms,
                       device_drift_pct=100.0 * (now_ms / self.reference_ms - 1.0))
            drift = f"; reference network {out['device_drift_pct']:+.1f}% vs the table's measurements"
        out["latency_source"] = (f"measurement ({self.device.name}, {self.space.input_size}x{self.space.input_size}, "
                                 f"{self.space.num_classes} classes; median of {len(noise.medians_ms)} measurements "
                                 f"of {first.n} timed runs each, noise +-{noise.noise_pct:.1f}%{drift})")
        return out
