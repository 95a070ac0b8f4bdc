"""Misbehaving devices: a ``command`` device running a script written here, whose repeats differ wildly (every
5th call prints a latency 100x too high) or which fails on some networks only (exits non-zero for models of
chosen sizes). The table is neither poisoned nor lost: wild measurements are taken again and flagged, failures
are named in one warning line and the rest is kept; a failure on the delivered network or on everything is one
line of error."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from s3nas.arch.space import SearchSpace
from s3nas.config import compose_config
from s3nas.latency.device import DeviceError, Piece, make_device, onnx_bytes
from s3nas.latency.device_backend import DeviceBackend
from s3nas.latency.measured import build_measured_table, option_id, sample_architectures

# a 6-position MBConv space (18 standalone blocks) at 16x16: a table is built in seconds
TINY_SPACE = ["supernet.depths=[1,1,1,1,2]", "supernet.block_type=mbconv", "candidates.mbconv.kernels=[3]"]
BYTES_PER_MS = 1e5  # the scripts' device: latency = model size / 1e5 ms (a truth the test can compute)

# every call is counted; every 5th prints 100x the latency (a device hiccup); a model whose size is listed in
# fail.txt makes it exit 3 (an operator the device does not run)
SCRIPT = """#!/bin/sh
here=$(dirname "$0")
n=$(( $(cat "$here/count" 2>/dev/null || echo 0) + 1 ))
echo $n > "$here/count"
size=$(wc -c < "$1" | tr -d ' ')
if [ -f "$here/fail.txt" ] && grep -qx "$size" "$here/fail.txt"; then
  echo "unsupported operator in a model of $size bytes" >&2
  exit 3
fi
factor=1
if [ $((n % 5)) -eq 0 ] && [ -f "$here/wild" ]; then factor=100; fi
awk -v s="$size" -v f="$factor" 'BEGIN { printf "%.6f ms\\n", s / 100000 * f }'
"""


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    cfg = compose_config("search", TINY_SPACE)
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=10, input_size=16)


def _device(tmp_path: Path, *overrides: str, wild: bool = False, fail_sizes: tuple[int, ...] = ()):
    folder = tmp_path / "device"
    folder.mkdir(parents=True)
    script = folder / "bench.sh"
    script.write_text(SCRIPT)
    if wild:
        (folder / "wild").write_text("")
    if fail_sizes:
        (folder / "fail.txt").write_text("".join(f"{size}\n" for size in fail_sizes))
    hardware = compose_config("search", ["hardware=command", f"hardware.cmd='sh {script}'",
                                         *overrides]).hardware
    return make_device(hardware), folder


def _truth_ms(network) -> float:
    return len(onnx_bytes(network)) / BYTES_PER_MS


def _log(path: Path) -> dict:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_wild_repeats_are_remeasured_and_flagged_not_poisoning_the_table(space, tmp_path):
    """Two calls per measurement, every 5th call 100x: a measurement that catches the wild call is taken again
    (flagged ``remeasured`` in the log, counted in the table's meta) and every entry is the true latency; with
    re-measuring off it stays unstable, is flagged so, and keeps the median of the bulk of its runs (again the
    truth); with the outlier rule off the same device poisons its entries ~50x (the device really misbehaves)."""
    device, folder = _device(tmp_path, "hardware.repeats=2", wild=True)
    lines: list[str] = []
    measured = build_measured_table(space, device, cache_dir=tmp_path / "cache", samples=3, progress=False,
                                    printer=lines.append)
    truth = {(i, o): _truth_ms(Piece.at(space, i, o)) for i in range(len(space.positions))
             for o in space.options(i) if o}
    for (i, o), ms in truth.items():
        assert measured.raw.block_ms(i, o) == pytest.approx(ms, rel=1e-4), (i, o)
    assert measured.raw.fixed_ms == pytest.approx(_truth_ms(Piece.stem(space)) + _truth_ms(Piece.head(space)),
                                                  rel=1e-4)
    log = _log(measured.log_path)
    remeasured = [k for k, r in log.items() if r.get("remeasured")]
    calls = int((folder / "count").read_text())
    assert len(log) == len(truth) + 2 + 3 and calls == 2 * (len(log) + len(remeasured))
    assert len(remeasured) >= calls // 5 - 1 >= 5  # nearly every wild call caught a measurement: taken again
    assert not any(r.get("unstable") for r in log.values())
    assert measured.raw.meta["remeasured_entries"] == len(remeasured) and measured.raw.meta["unstable_entries"] == 0

    # the delivered network: its measurements are taken again too, and the result says so
    backend = DeviceBackend(device, noise_repeats=3)
    spec = space.arch_spec(space.max_options())
    result = backend.evaluate(spec)
    assert result.latency_ms == pytest.approx(_truth_ms(spec), rel=1e-4)
    assert result.details["latency_remeasured"] >= 1 and result.details["latency_unstable"] is False
    assert "unstable measurement(s) taken again" in result.source

    # re-measuring off: flagged unstable, still the truth (the bulk of [x, 100x] is the faster run)
    stiff, _ = _device(tmp_path / "stiff", "hardware.repeats=2", "hardware.remeasure=0", wild=True)
    flagged = build_measured_table(space, stiff, cache_dir=tmp_path / "stiff-cache", samples=3, progress=False,
                                   printer=lines.append)
    assert flagged.raw.entries == measured.raw.entries
    unstable = [r for r in _log(flagged.log_path).values() if r.get("unstable")]
    assert len(unstable) >= 5 and all(r["wild_runs"] == 1 for r in unstable)
    assert flagged.raw.meta["unstable_entries"] == len(unstable) and "stayed unstable" in lines[-1]
    unstable_result = DeviceBackend(stiff, noise_repeats=3).evaluate(spec)
    assert unstable_result.details["latency_unstable"] is True and "UNSTABLE" in unstable_result.source
    assert unstable_result.latency_ms == pytest.approx(_truth_ms(spec), rel=1e-4)

    # the rule off (no run is ever wild): the same device poisons the entries that caught a wild call
    blind, _ = _device(tmp_path / "blind", "hardware.repeats=2", "hardware.unstable_ratio=1e9", wild=True)
    some = list(truth)[:5]  # 10 calls: one measurement catches the 5th call, another the 10th
    poisoned = blind.measure_many([Piece.at(space, i, o) for i, o in some])
    ratios = sorted(m.median_ms / truth[key] for m, key in zip(poisoned, some))
    assert ratios[-1] > 40 and ratios[-2] > 40 and ratios[0] == pytest.approx(1.0, rel=1e-4)


def test_device_failing_on_some_networks_names_them_and_keeps_the_rest(space, tmp_path):
    """Exit 3 for two blocks and one sampled network: one warning line names them, everything else is measured
    and logged, the failed blocks get estimated entries, the correction fits the other networks; the delivered
    network failing, or a device failing on everything, is one line of error (the latter after 3 tries)."""
    blocks = [(2, space.options(2)[-1]), (4, space.options(4)[1])]
    nets = sample_architectures(space, 4, 0)
    failing = [len(onnx_bytes(Piece.at(space, i, o))) for i, o in blocks] + [len(onnx_bytes(space.arch_spec(nets[2])))]
    device, _ = _device(tmp_path, fail_sizes=tuple(failing))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        measured = build_measured_table(space, device, cache_dir=tmp_path / "cache", samples=4, progress=False,
                                        printer=None)
    messages = [str(w.message) for w in caught if "failed on" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0], messages
    message = messages[0]
    failed = measured.raw.meta["failed"]
    block_ids = [f"block:{i}:{option_id(o)}" for i, o in blocks]
    assert set(block_ids) <= set(failed) and any(k.startswith("net:") for k in failed)
    assert all(k in message for k in block_ids) and "unsupported operator" in message
    assert f"{sum(k.startswith('block:') for k in failed)} of 20 pieces" in message
    assert "1 of 4 sampled networks" in message
    log = _log(measured.log_path)
    all_pieces = 2 + sum(1 for i in range(len(space.positions)) for o in space.options(i) if o)
    assert len(log) == all_pieces + 4 - len(failed) and not set(failed) & set(log)  # the rest kept
    assert len(measured.samples) == 3  # the correction fitted on the networks that ran
    for i, o in blocks:  # estimated from their position's measured blocks: positive, within 3x of the truth
        estimate, true = measured.raw.block_ms(i, o), _truth_ms(Piece.at(space, i, o))
        assert true / 3 < estimate < true * 3
    assert sorted(measured.raw.meta["estimated_entries"]) == sorted(k for k in failed if k.startswith("block:"))

    # the delivered network itself fails: one line naming the device and what it said
    with pytest.raises(DeviceError) as info:
        DeviceBackend(device, noise_repeats=2).evaluate(space.arch_spec(nets[2]))
    assert "\n" not in str(info.value) and "exited with status 3: unsupported operator" in str(info.value)

    # a device that runs nothing: one line after the first 3 tries, not a try per piece
    broken, broken_folder = _device(tmp_path / "broken")
    (broken_folder / "bench.sh").write_text("#!/bin/sh\nn=$(( $(cat \"$(dirname $0)/count\" 2>/dev/null || echo 0) + 1 ))"
                                            "\necho $n > \"$(dirname $0)/count\"\necho 'board offline' >&2\nexit 1\n")
    with pytest.raises(DeviceError) as info:
        build_measured_table(space, broken, cache_dir=tmp_path / "broken-cache", samples=4, progress=False,
                             printer=None)
    text = str(info.value)
    assert "\n" not in text and "board offline" in text and "the first 3 networks in a row failed" in text
    assert int((broken_folder / "count").read_text()) == 3


def test_outlier_settings_come_from_the_schema_and_bad_values_name_the_key():
    from s3nas.config.device_schema import DeviceHardwareConfig
    from s3nas.errors import ConfigError

    schema = DeviceHardwareConfig()
    device = make_device(compose_config("search", ["hardware=command", "hardware.cmd=echo 1"]).hardware)
    assert (device.remeasure, device.unstable_ratio, device.unstable_fraction) == \
        (schema.remeasure, schema.unstable_ratio, schema.unstable_fraction) == (2, 3.0, 0.1)
    for override, key in (("hardware.unstable_ratio=1", "unstable_ratio"), ("hardware.remeasure=-1", "remeasure"),
                          ("hardware.unstable_fraction=1", "unstable_fraction")):
        with pytest.raises(ConfigError, match=rf"hardware\.{key}"):
            make_device(compose_config("search", ["hardware=command", "hardware.cmd=echo 1", override]).hardware)
