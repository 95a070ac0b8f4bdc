"""Black-box devices (measure instead of simulate) and layer-adaptive latency correction.

``devices``: the device interface (``make_device(cfg.hardware)``, ``Device.measure(network)``);
``table``: the measured per-block latency table, cached and resumable; ``correction``: the fitted correction
that makes the table's sum match end-to-end measurements. See docs/blackbox.md.
"""

from s3nas.blackbox.devices import (DEVICE_KINDS, CommandDevice, Device, DeviceError, Measurement, NoiseEstimate,
                                    OnnxRuntimeDevice, Piece, SimulatedDevice, TorchCpuDevice, make_device)

__all__ = ["DEVICE_KINDS", "CommandDevice", "Device", "DeviceError", "Measurement", "NoiseEstimate",
           "OnnxRuntimeDevice", "Piece", "SimulatedDevice", "TorchCpuDevice", "make_device"]
