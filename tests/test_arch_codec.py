"""ArchSpec codec: block strings, whole-network strings and JSON round-trip exactly; bad files name the field."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace

import pytest

from s3nas.arch import codec
from s3nas.arch.codec import ArchSpecError
from s3nas.arch.spec import ArchSpec, BlockSpec, Branch
from s3nas.errors import ConfigError


def random_spec(rng: random.Random) -> ArchSpec:
    """A random but valid spec exercising every field (property-style generator)."""
    blocks = []
    for i in range(rng.randint(0, 12)):
        kind = rng.choice(["mbconv", "mixconv", "fused"])
        n = rng.randint(1, 3) if kind == "mixconv" else 1
        kernels = sorted(rng.sample([1, 3, 5, 7, 9], n))
        branches = tuple(Branch(k, rng.choice([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 2.25])) for k in kernels)
        blocks.append(BlockSpec(type=kind, branches=branches, out_channels=rng.randint(1, 512), stride=rng.choice([1, 2]),
                                stage=i // 3, se_ratio=rng.choice([0.0, 0.25, 0.125]),
                                act=rng.choice(["relu", "relu6", "swish", "hswish"])))
    return ArchSpec(blocks=tuple(blocks), stem_channels=rng.randint(8, 64), stem_kernel=rng.choice([3, 5, 7]),
                    stem_stride=rng.choice([1, 2]), head_channels=rng.randint(16, 2048),
                    num_classes=rng.randint(2, 1000), in_channels=rng.choice([1, 3]),
                    input_size=rng.choice([32, 224, 300]), act=rng.choice(["relu", "swish", "hswish"]),
                    dropout=rng.choice([0.0, 0.2, 0.4]), name=rng.choice(["s3nas", "ours-M+", "a b|c"]))


def test_block_string_examples():
    b = codec.decode_block("mc_k3.5.7_e2.2.2_c32_s2")
    assert b == BlockSpec("mixconv", (Branch(3, 2), Branch(5, 2), Branch(7, 2)), 32, 2)
    assert codec.encode_block(b) == "mc_k3.5.7_e2.2.2_c32_s2"
    b = codec.decode_block("ir_k3_e6_c32_s1_se0.25_hs")
    assert (b.type, b.se_ratio, b.act, b.expansion) == ("mbconv", 0.25, "hswish", 6.0)
    assert codec.encode_block(b) == "ir_k3_e6_c32_s1_se0.25_hs"
    assert codec.decode_block("er_k5_e4_c24_s2").type == "fused"


@pytest.mark.parametrize("seed", range(40))
def test_random_specs_round_trip(seed, tmp_path):
    spec = random_spec(random.Random(seed))
    assert codec.decode(codec.encode(spec)) == spec
    assert codec.from_dict(json.loads(json.dumps(codec.to_dict(spec)))) == spec
    path = codec.save_json(spec, tmp_path / "sub" / "arch.json")
    loaded = codec.load_json(path)
    assert loaded == spec and loaded.name == spec.name
    assert [p.name for p in path.parent.iterdir()] == ["arch.json"]  # no temp file left behind


def test_meta_round_trips_in_json(tmp_path):
    spec = replace(random_spec(random.Random(1)), meta={"latency_ms": 2.47, "target": "2.5ms"})
    assert codec.load_json(codec.save_json(spec, tmp_path / "a.json")).meta == spec.meta


def _good() -> dict:
    spec = ArchSpec(blocks=(BlockSpec("mixconv", (Branch(3, 2), Branch(5, 4)), 32, 2),
                            BlockSpec("mbconv", (Branch(5, 6),), 32, 1)))
    return codec.to_dict(spec)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("blocks"), "blocks: missing field"),
    (lambda d: d["blocks"][1].pop("out_channels"), "blocks[1].out_channels: missing field"),
    (lambda d: d["blocks"][0]["branches"][1].pop("kernel"), "blocks[0].branches[1].kernel: missing field"),
    (lambda d: d["blocks"][0]["branches"][0].update(kernel=4), "blocks[0].branches[0].kernel: must be odd >= 1"),
    (lambda d: d["blocks"][0]["branches"][0].update(kernel="3"), "blocks[0].branches[0].kernel: must be an integer"),
    (lambda d: d["blocks"][0]["branches"][0].update(expansion=-1), "blocks[0].branches[0].expansion"),
    (lambda d: d["blocks"][1].update(out_channels=0), "blocks[1].out_channels: must be a positive integer"),
    (lambda d: d["blocks"][1].update(type="conv"), "blocks[1].type: 'conv' is not a block type"),
    (lambda d: d["blocks"][1].update(act="gelu"), "blocks[1].act: 'gelu' is not an activation"),
    (lambda d: d.update(stem_channels=1.5), "stem_channels: must be an integer"),
    (lambda d: d.update(head_channels=-3), "head_channels: must be a positive integer"),
    (lambda d: d.update(bogus=1), "bogus: unknown field"),
    (lambda d: d["blocks"].__setitem__(0, "ir_k3"), "blocks[0]: must be an object"),
    (lambda d: d["blocks"][0]["branches"].reverse(), "blocks[0].branches: kernels must be distinct and sorted"),
])
def test_bad_json_names_the_field(mutate, field, tmp_path):
    d = _good()
    mutate(d)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ArchSpecError) as err:
        codec.load_json(path)
    assert field in str(err.value) and str(path) in str(err.value)
    assert isinstance(err.value, ConfigError)


def test_not_json_and_missing_file(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ArchSpecError, match="not valid JSON"):
        codec.load_json(tmp_path / "x.json")
    with pytest.raises(ArchSpecError, match="not found"):
        codec.load_json(tmp_path / "missing.json")


@pytest.mark.parametrize("text, field", [
    ("mc_k3.4_e2.2_c32_s1", "kernel: must be odd"),
    ("zz_k3_e2_c32_s1", "type"),
    ("ir_k3_e2_s1", "missing c"),
    ("mc_k3.5_e2_c32_s1", "2 kernels but 1 expansions"),
    ("ir_k3_e2_c32_s1_q7", "unknown token"),
])
def test_bad_block_strings(text, field):
    with pytest.raises(ArchSpecError, match=field):
        codec.decode_block(text)


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    spec = random_spec(random.Random(3))
    path = codec.save_json(spec, tmp_path / "arch.json")
    before = path.read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(codec.os, "replace", boom)
    with pytest.raises(OSError):
        codec.save_json(random_spec(random.Random(4)), path)
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["arch.json"]


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("value", NON_FINITE + [10 ** 400], ids=["nan", "inf", "-inf", "huge_int"])
@pytest.mark.parametrize("mutate, field", [
    (lambda d, v: d["blocks"][0]["branches"][1].update(expansion=v), "blocks[0].branches[1].expansion"),
    (lambda d, v: d["blocks"][1].update(se_ratio=v), "blocks[1].se_ratio"),
    (lambda d, v: d.update(dropout=v), "dropout"),
])
def test_non_finite_numbers_in_json_name_the_field(mutate, field, value, tmp_path):
    d = _good()
    mutate(d, value)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(d))  # Python's json writes NaN / Infinity, and reads them back
    with pytest.raises(ArchSpecError) as err:
        codec.load_json(path)
    message = str(err.value)
    assert f"{path}: {field}: must be a finite number" in message and "\n" not in message


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_in_specs_and_strings_name_the_field(value):
    good = ArchSpec(blocks=(BlockSpec("mbconv", (Branch(3, 6.0),), 24, 2, se_ratio=0.25),))
    block = good.blocks[0]
    cases = {
        "blocks[0].branches[0].expansion": replace(good, blocks=(replace(block, branches=(Branch(3, value),)),)),
        "blocks[0].se_ratio": replace(good, blocks=(replace(block, se_ratio=value),)),
        "dropout": replace(good, dropout=value),
    }
    for field, spec in cases.items():
        with pytest.raises(ArchSpecError, match=rf"^{re.escape(field)}: must be a finite number"):
            codec.validate(spec)
        with pytest.raises(ArchSpecError, match=rf"^{re.escape(field)}: must be a finite number"):
            codec.save_json(spec, "/nonexistent/never-written.json")
    text = repr(value)  # 'nan', 'inf', '-inf' parse as floats
    for block_text, field in ((f"ir_k3_e{text}_c32_s1", "expansion"), (f"ir_k3_e6_c32_s1_se{text}", "se_ratio")):
        with pytest.raises(ArchSpecError, match=rf"^block.*{field}: must be a finite number"):
            codec.decode_block(block_text)
    with pytest.raises(ArchSpecError, match=r"^dropout: must be a finite number"):
        codec.decode(codec.encode(good).replace("_d0.2", f"_d{text}"))


def test_finite_edge_values_still_accepted():
    spec = ArchSpec(blocks=(BlockSpec("mbconv", (Branch(3, 1e-3),), 24, 1, se_ratio=1.0),), dropout=0.0)
    assert codec.decode(codec.encode(spec)) == spec and codec.from_dict(codec.to_dict(spec)) == spec
