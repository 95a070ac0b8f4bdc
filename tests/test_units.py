"""Latency targets with units: a table of good and bad inputs."""

from __future__ import annotations

import pytest

from s3nas.config import parse_latency_ms, resolve_target_ms
from s3nas.config.units import split_latency
from s3nas.errors import ConfigError, UserError

CLOCK_HZ = 1e9  # 1 GHz: 1e6 cycles = 1 ms

GOOD = [
    ("2.5ms", 2.5),
    ("800us", 0.8),
    ("800µs", 0.8),
    ("0.0025s", 2.5),
    ("2500000cycles", 2.5),
    ("2500000 cycles", 2.5),
    ("1e6cycles", 1.0),
    ("2.5", 2.5),
    (2.5, 2.5),
    (3, 3.0),
    (" 4ms ", 4.0),
    ("2.5MS", 2.5),
    (".5ms", 0.5),
    ("1500ns", 0.0015),
]

BAD = ["fast", "-1ms", "0ms", "0", 0, -2.5, "2.5parsecs", "", "ms", "2.5 m s", "nan", "infms", "1e999ms", True,
       None, "2.5ms5", "cycles"]


@pytest.mark.parametrize("value,expected_ms", GOOD)
def test_good_latencies(value, expected_ms):
    assert parse_latency_ms(value, CLOCK_HZ) == pytest.approx(expected_ms, rel=1e-12)


@pytest.mark.parametrize("value", BAD)
def test_bad_latencies_name_key_and_forms(value):
    with pytest.raises(ConfigError) as info:
        parse_latency_ms(value, CLOCK_HZ)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert message.startswith("latency: ")
    assert "2.5ms" in message and "800us" in message and "cycles" in message
    assert "\n" not in message


def test_cycles_scale_with_clock():
    assert parse_latency_ms("2500000cycles", 2.5e8) == pytest.approx(10.0)
    assert parse_latency_ms("2500000cycles", lambda: 5e8) == pytest.approx(5.0)


def test_cycles_need_a_clock():
    with pytest.raises(ConfigError, match="latency"):
        parse_latency_ms("100cycles", None)


def test_clock_is_not_needed_for_time_units():
    assert parse_latency_ms("2ms", lambda: 1 / 0) == 2.0  # the clock is never asked for


def test_split_keeps_unit():
    assert split_latency("800us") == (800.0, "us")
    assert split_latency(2) == (2.0, "ms")


@pytest.mark.parametrize("hardware", ["midap", "systolic", "eyeriss"])
def test_resolve_cycles_with_each_profile_clock(compose_cfg, hardware):
    import yaml

    from s3nas.config import REPO_ROOT

    cfg = compose_cfg([f"hardware={hardware}", "latency=1000000cycles"])
    profile_yaml = REPO_ROOT / "simulator" / "profiles" / f"{hardware}.yaml"
    if profile_yaml.is_file():
        clock_hz = float(yaml.safe_load(profile_yaml.read_text())["clock_hz"])
        assert resolve_target_ms(cfg) == pytest.approx(1e6 / clock_hz * 1e3)
    else:
        assert resolve_target_ms(cfg) > 0


def test_resolve_bare_number_and_default(compose_cfg):
    assert resolve_target_ms(compose_cfg([])) == pytest.approx(2.5)
    assert resolve_target_ms(compose_cfg(["latency=3"])) == pytest.approx(3.0)
    assert resolve_target_ms(compose_cfg(["latency=800us"])) == pytest.approx(0.8)
