"""A black-box device whose end-to-end latency grows faster than its blocks' sum near the all-on network.

The midap simulator seen as a black box (``SimulatedDevice``), every network's latency multiplied by
``1 + STEEPNESS * (ms / ALL_ON_MS) ** 3``: blocks timed alone (small) are nearly exact, sampled networks a little
slower, the largest networks up to ``STEEPNESS`` slower. A corrected table (an affine fit to sampled networks) then
under-predicts the networks near the all-on one, as the CPU's table does (docs/notes/front.md). Use it as
``hardware=sim_midap_blackbox hardware._target_=steep_device.SteepBackend`` with ``tests/support`` on sys.path.

``DriftingSteepBackend``: the same device, ``DRIFT`` slower from the decode on (its first ``evaluate``), as a shared
CPU can be minutes after the search measured the states it visited.
"""

from __future__ import annotations

from s3nas.config.device_schema import device_config
from s3nas.latency.device import SimulatedDevice, summarize
from s3nas.latency.device_backend import DeviceBackend

STEEPNESS = 0.2
ALL_ON_MS = 0.72  # the all-on network of debug=search_small at 16 px on midap: 0.713 ms


DRIFT = 0.03


class SteepDevice(SimulatedDevice):
    def __init__(self) -> None:
        super().__init__("midap", "steep_midap", repeats=1)
        self.drift = 0.0  # how much slower than its simulated-and-steepened latency the machine now is

    def steep_ms(self, network) -> float:
        ms = self.simulate_ms(network)
        return ms * (1.0 + STEEPNESS * min(1.0, ms / ALL_ON_MS) ** 12) * (1.0 + self.drift)

    def _samples(self, network, repeats):
        return [self.steep_ms(network)] * repeats

    def measure_many(self, networks, repeats=None, rounds=None):
        return [summarize([self.steep_ms(n)], self.name, self.source) for n in networks]


class SteepBackend(DeviceBackend):
    @classmethod
    def from_config(cls, hardware_cfg) -> "SteepBackend":
        hw = device_config(hardware_cfg)
        return cls(SteepDevice(), correction=hw["correction"], correction_samples=hw["correction_samples"],
                   correction_ridge=hw["correction_ridge"], seed=hw["seed"], noise_repeats=2)


class DriftingSteepBackend(SteepBackend):
    def evaluate(self, spec):
        self.device.drift = DRIFT
        return super().evaluate(spec)
