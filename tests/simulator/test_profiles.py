"""Hardware profiles: bundled YAMLs load, every field is documented, invalid values fail naming the field."""

import dataclasses
import math

import pytest
import yaml

import simulator
from simulator.hardware import FIELD_DOCS, HardwareProfile, profile_from_dict


def test_bundled_profiles_load():
    names = simulator.list_profiles()
    assert {"midap", "systolic", "eyeriss"} <= set(names)
    for name in names:
        p = simulator.load_profile(name)
        assert p.name == name
        assert p.peak_macs_per_cycle > 0 and p.dram_bytes_per_cycle > 0


def test_reference_numbers():
    midap = simulator.load_profile("midap")
    assert midap.clock_hz == 1e9 and midap.peak_macs_per_cycle == 1024 and midap.dw_lanes == 64
    assert midap.fmem_bytes == 1 << 20 and midap.wmem_bytes == 256 << 10 and midap.dram_channels == 2
    systolic = simulator.load_profile("systolic")
    assert 3.5 <= systolic.peak_tops <= 4.5 and systolic.fmem_bytes + systolic.wmem_bytes == 8 << 20
    assert 2 <= systolic.dram_gbps <= 8 and systolic.dataflow == "systolic_ws"
    assert simulator.load_profile("eyeriss").dataflow == "spatial_rs"


def test_every_field_documented_with_unit():
    for name, doc in FIELD_DOCS.items():
        assert doc, name
        assert "(" in doc, f"field {name} doc should give a unit or type in parentheses: {doc}"


def test_load_by_path(tmp_path):
    data = simulator.load_profile("midap").to_dict()
    data["name"] = "mine"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    assert simulator.load_profile(str(path)).name == "mine"


@pytest.mark.parametrize("field, value", [
    ("conv_units", 0), ("conv_lanes", -4), ("dram_bytes_per_cycle", -1.0), ("clock_hz", 0),
    ("fmem_bytes", 0), ("dataflow", "magic"), ("bus_arbitration", "random"), ("dram_channels", 0),
    ("dram_latency_base_cycles", -1.0), ("cross_layer_prefetch", "yes"), ("dw_lanes", 10 ** 9),
])
def test_invalid_value_names_field(field, value):
    data = simulator.load_profile("midap").to_dict()
    data[field] = value
    with pytest.raises(simulator.ProfileError, match=f"'{field}'"):
        profile_from_dict(data)


def test_unknown_field_and_missing_field(tmp_path):
    data = simulator.load_profile("midap").to_dict()
    data["mac_count"] = 5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(simulator.ProfileError, match="unknown field 'mac_count'"):
        simulator.load_profile(str(path))
    del data["mac_count"], data["clock_hz"]
    with pytest.raises(simulator.ProfileError, match="'clock_hz'"):
        profile_from_dict(data)


def test_unknown_profile_name_lists_choices():
    with pytest.raises(simulator.ProfileError, match="midap"):
        simulator.load_profile("tpu9000")


def test_replace_revalidates_and_allows_unlimited_bandwidth():
    p = simulator.load_profile("midap")
    with pytest.raises(simulator.ProfileError, match="'wmem_bytes'"):
        dataclasses.replace(p, wmem_bytes=0)
    fast = simulator.unlimited_bandwidth(p)
    assert math.isinf(fast.dram_bytes_per_cycle) and fast.dram_latency_base_cycles == 0
    assert isinstance(fast, HardwareProfile) and fast.cache_key() != p.cache_key()
