"""Search space: config composition, enumeration counts, skip rules, canonical merging, shapes."""

from __future__ import annotations

import os
import random

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException

from s3nas.arch.spec import Branch
from s3nas.config.supernet_schema import (CandidatesConfig, SupernetConfig, check_candidates, linear_depths,
                                          register)
from s3nas.errors import ConfigError
from s3nas.arch.space import SearchSpace, canonical

CONF_DIR = os.path.join(os.path.dirname(__file__), "..", "conf")


def compose_space_cfg(overrides=(), supernet="s3nas_mixconv", candidates="s3nas"):
    register(ConfigStore.instance())
    with initialize_config_dir(config_dir=os.path.abspath(CONF_DIR), version_base="1.3"):
        return compose(config_name=None, overrides=[f"+supernet={supernet}", f"+candidates={candidates}",
                                                    *overrides])


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.from_config(SupernetConfig(), CandidatesConfig())


def test_paper_supernet_shapes(space):
    assert len(space.positions) == 29
    assert [sum(p.stage == s for p in space.positions) for s in range(5)] == [3, 4, 7, 4, 11]
    first = [p for p in space.positions if p.index == 0 or p.stage != space.positions[p.index - 1].stage]
    assert [(p.in_channels, p.out_channels, p.stride, p.in_hw) for p in first] == [
        (32, 32, 2, 112), (32, 64, 2, 56), (64, 128, 2, 28), (128, 160, 1, 14), (160, 256, 2, 14)]
    assert space.final_hw == 7 and space.final_channels == 256
    for p in space.positions:
        assert p.has_residual == (p.stride == 1 and p.in_channels == p.out_channels)
        assert p.allow_skip == p.has_residual


def test_deployment_size_tracks_in_hw():
    s = SearchSpace.from_config(SupernetConfig(), CandidatesConfig(), input_size=320)
    assert s.positions[0].in_hw == 160 and s.final_hw == 10


def test_mixconv_option_counts_and_skip_rule(space):
    for i, p in enumerate(space.positions):
        opts = space.options(i)
        assert len(opts) == len(set(opts))
        assert len(opts) == (16 if p.has_residual else 15)  # hand count: multisets of kernels, see below
        assert (() in opts) == p.has_residual
        for opt in opts:
            assert opt == canonical(opt)
            if not p.has_residual:  # the 7x7-capable superkernel is always on
                assert sum(b.expansion for b in opt) >= 2


def test_mixconv_largest_branch_always_on_without_residual(space):
    p = space.positions[0]
    choices = p.superkernel_choices()
    assert None in choices[0] and None in choices[1] and None not in choices[2]
    assert {b.kernel for b in choices[2]} == {3, 5, 7}
    assert None in space.positions[1].superkernel_choices()[2]


def test_canonical_merges_and_sorts():
    assert canonical([Branch(3, 2), Branch(3, 2)]) == (Branch(3, 4.0),)
    assert canonical([Branch(7, 2), Branch(3, 0), Branch(5, 2), Branch(5, 2)]) == (Branch(5, 4.0), Branch(7, 2.0))
    assert canonical([]) == ()
    assert SearchSpace.canonical([(5, 2), (3, 2)]) == (Branch(3, 2.0), Branch(5, 2.0))


def test_mbconv_space_counts():
    s = SearchSpace.from_config({**vars(SupernetConfig()), "block_type": "mbconv"}, CandidatesConfig())
    for i, p in enumerate(s.positions):
        assert len(s.options(i)) == 6 + p.has_residual
        assert all(len(o) <= 1 for o in s.options(i))


def test_arch_spec_drops_skips_and_block_spec(space):
    rng = random.Random(0)
    opts = space.random_options(rng)
    opts[1] = ()
    spec = space.arch_spec(opts)
    assert len(spec.blocks) == sum(1 for o in opts if o)
    assert spec.stem_kernel == 7 and spec.head_channels == 1280 and spec.input_size == 224
    assert space.arch_spec(space.options_of(spec)) == spec  # a skip may move within its stage
    b = space.block_spec(0, [Branch(7, 2), Branch(3, 2), Branch(3, 2)])
    assert b.branches == (Branch(3, 4.0), Branch(7, 2.0)) and b.stride == 2 and b.out_channels == 32
    with pytest.raises(ValueError):
        space.block_spec(0, ())  # no residual at the first block
    with pytest.raises(ValueError):
        space.block_spec(1, [Branch(9, 2)])


def test_linear_depths_reproduce_paper():
    assert linear_depths([32, 64, 128, 160, 256], 29) == [3, 4, 7, 4, 11]
    d = linear_depths([32, 64, 128, 160, 256], 12)
    assert sum(d) == 12 and min(d) >= 1
    s = SearchSpace.from_config({"depths": None, "total_blocks": 29}, {})
    assert len(s.positions) == 29


def test_compose_real_configs():
    for name, n, counts in [("s3nas_mixconv", 29, {15, 16}), ("constant_depth", 20, {15, 16}), ("mbconv", 29, {6, 7})]:
        cfg = compose_space_cfg(supernet=name)
        s = SearchSpace.from_config(cfg.supernet, cfg.candidates)
        assert len(s.positions) == n and set(s.num_options()) == counts
    cfg = compose_space_cfg(candidates="mbconv")
    s = SearchSpace.from_config(cfg.supernet, cfg.candidates)
    assert set(s.num_options()) == {6, 7}  # one superkernel per block == plain MBConv space


@pytest.mark.parametrize("override, key", [
    ("supernet.depths=[3,4,7,4]", "supernet.depths: expected 5 values (one per stage), got 4"),
    ("supernet.depths=[3,4,0,4,11]", "supernet.depths"),
    ("supernet.strides=[2,2,2,1]", "supernet.strides: expected 5 values"),
    ("supernet.block_type=conv", "supernet.block_type"),
    ("supernet.stem_kernel=4", "supernet.stem_kernel"),
    ("candidates.mbconv.kernels=[3,4]", "candidates.mbconv.kernels"),
    ("candidates.mbconv.kernels=[3,11]", "candidates.mbconv.kernels"),
    ("candidates.mbconv.expansions=[-1,2]", "candidates.mbconv.expansions"),
    ("candidates.mixconv.expansions=[-2,2]", "candidates.mixconv.expansions"),
    ("candidates.mixconv.max_kernels=[5,6]", "candidates.mixconv.max_kernels"),
    ("candidates.mixconv.min_kernel=7", "candidates.mixconv.max_kernels"),
])
def test_bad_values_name_the_key(override, key):
    cfg = compose_space_cfg([override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        SearchSpace.from_config(cfg.supernet, cfg.candidates)


@pytest.mark.parametrize("override", ["supernet.widths=[32,abc]", "supernet.unknown_key=1",
                                      "supernet.depths=notalist", "candidates.allow_skip=maybe"])
def test_bad_types_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_space_cfg([override])


def test_unknown_key_in_plain_dict():
    cfg = compose_space_cfg(["+supernet.unknown_key=1"])  # '+' bypasses struct mode; the check does not
    with pytest.raises(ConfigError, match="supernet.unknown_key"):
        SearchSpace.from_config(cfg.supernet, cfg.candidates)
    with pytest.raises(ConfigError, match="candidates.bogus"):
        check_candidates({"bogus": 1})


def test_archspec_options_round_trip_exactly_through_json(space, tmp_path):
    """options -> ArchSpec -> arch.json -> options gives back every position, skips included."""
    from s3nas.arch import codec

    rng = random.Random(3)
    for n in range(20):
        options = space.random_options(rng)
        path = tmp_path / f"a{n}.json"
        codec.save_json(space.arch_spec(options), path)
        assert space.options_of(codec.load_json(path)) == options
