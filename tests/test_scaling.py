"""Compound scaling (s3nas.postsearch.scaling): width multiples, depth rounding and block copies, the coefficient search
against the simulator (budget met, largest feasible), and the command line (outputs, one-line errors)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import simulator

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.errors import ConfigError, InfeasibleTargetError
from s3nas.postsearch.scaling import copy_order, find_coefficient, round_filters, scale_arch, scaled_depth, stage_depths
from s3nas.arch.params import block_input_channels, block_params, count_params


def simulate_ms(spec, profile) -> float:
    """Independent oracle: the simulator's end-to-end latency of ``spec`` on ``profile``."""
    import simulator
    from s3nas.arch.graph import archspec_to_graph

    return float(simulator.simulate(archspec_to_graph(spec), profile).latency_ms)

REPO = Path(__file__).resolve().parents[1]
MIDAP = simulator.load_profile("midap")

# Stage 1 mixes small and large blocks so "largest first" is visible; widths are multiples of 16.
SMALL = ("stem_c16_k3_s2_re | 0: ir_k3_e2_c16_s1 | 1: ir_k3_e2_c32_s2 ir_k3_e2_c32_s1 mc_k3.5_e4.2_c32_s1 "
         "ir_k5_e4_c32_s1 | 2: ir_k3_e4_c64_s2 mc_k3.5.7_e2.2.2_c64_s1 ir_k3_e2_c64_s1 | head_c256_d0.2 | "
         "n10_i3_r64 | name:small")


@pytest.fixture
def small():
    return codec.decode(SMALL)


@pytest.mark.parametrize("multiple", [8, 16])
@pytest.mark.parametrize("coefficient", [1.0, 1.13, 1.37, 2.2])
def test_widths_are_multiples_and_grow(small, multiple, coefficient):
    scaled = scale_arch(small, coefficient, coefficient ** 2, width_multiple=multiple)
    widths = [scaled.stem_channels, scaled.head_channels] + [b.out_channels for b in scaled.blocks]
    assert all(w % multiple == 0 for w in widths)
    # never below 90% of the exact scaled width (EfficientNet's round_filters), never below the original
    for before, after in ((small.stem_channels, scaled.stem_channels), (small.head_channels, scaled.head_channels)):
        assert after >= 0.9 * before * coefficient and after >= before
    assert scaled.input_size % 4 == 0 and scaled.input_size >= small.input_size
    assert scaled.input_size == max(4, math.floor(64 * coefficient ** 2 / 4 + 0.5) * 4)


def test_round_filters_matches_efficientnet():
    assert round_filters(35.2, 8) == 32 and round_filters(37.0, 8) == 40  # nearest multiple
    assert round_filters(35.2, 16) == 32  # 32 >= 90% of 35.2
    assert round_filters(35.84, 16) == 48  # 32 would be below 90% of 35.84
    assert round_filters(160 * 1.1, 16) == 176
    assert round_filters(7, 16) == 16


def test_depth_rounds_per_stage_and_copies_largest_blocks_first(small):
    coefficient = 1.3  # stage depths 1, 4, 3 -> 1, 5, 4 (round half up, never fewer)
    scaled = scale_arch(small, coefficient, 1.0)
    assert list(stage_depths(scaled).values()) == [scaled_depth(n, coefficient) for n in (1, 4, 3)] == [1, 5, 4]
    widened = scale_arch(small, coefficient, 1.0, scale_stem_head=True)
    copied = widened.meta["scaling"]["copied_blocks"]
    # recompute the ranking independently: parameters of each stage-1 block in the width-scaled network
    width_only = replace(small, blocks=tuple(replace(b, out_channels=round_filters(b.out_channels * coefficient, 16))
                                             for b in small.blocks),
                         stem_channels=round_filters(small.stem_channels * coefficient, 16))
    inputs = block_input_channels(width_only)
    stage1 = [i for i, b in enumerate(width_only.blocks) if b.stage == 1]
    params = {i: block_params(width_only.blocks[i], inputs[i]) for i in stage1}
    largest = max(stage1, key=lambda i: (params[i], -i))
    assert copied["1"] == [largest]
    # the copy sits right after its source, stride 1, same branches/SE/activation, residual (in == out)
    blocks = list(scaled.blocks)
    src = blocks.index(width_only.blocks[largest])
    copy = blocks[src + 1]
    assert copy == replace(width_only.blocks[largest], stride=1)
    assert block_input_channels(scaled)[src + 1] == copy.out_channels


def test_copies_cycle_through_the_ranking_when_a_stage_more_than_doubles(small):
    scaled = scale_arch(small, 2.6, 1.0)  # stage 2: 3 blocks -> 8: each copied, the two largest twice
    copied = scaled.meta["scaling"]["copied_blocks"]["2"]
    stage2 = [b for b in small.blocks if b.stage == 2]
    widened = scale_arch(small, 2.6, 1.0)
    assert len(copied) == 5 and len(set(copied)) == 3
    assert copied[3:] == copied[:2]  # the ranking again from the top: the two largest get a second copy
    assert sum(1 for b in widened.blocks if b.stage == 2) == 8 == len(stage2) + 5


def test_copy_order_ranks_by_parameters():
    spec = codec.decode("stem_c16_k3_s2_re | 0: ir_k3_e2_c32_s1 ir_k5_e6_c32_s1 ir_k3_e4_c32_s1 | head_c64_d0.2 | "
                        "n10_i3_r32 | name:t")
    assert copy_order(list(spec.blocks), block_input_channels(spec)) == [1, 2, 0]


def test_param_count_matches_the_built_network():
    torch = pytest.importorskip("torch")  # noqa: F841
    from s3nas.nn.builder import build_model

    spec = codec.decode("stem_c16_k3_s2_hs | 0: er_k3_e4_c32_s1_se0.25 mc_k3.5_e2.4_c32_s1_se0.25_hs | "
                        "1: ir_k5_e6_c48_s2 | head_c128_d0.2 | n10_i3_r32 | name:t")
    for s in (spec, scale_arch(spec, 1.4, 1.6)):
        assert count_params(s) == sum(p.numel() for p in build_model(s).parameters())


def test_scaling_grows_latency_monotonically_on_the_tied_path(small):
    latencies = [simulate_ms(scale_arch(small, c, c ** 2), MIDAP) for c in (1.0, 1.2, 1.5, 2.0)]
    assert latencies == sorted(latencies) and latencies[-1] > 2 * latencies[0]


def test_search_meets_the_budget_and_is_the_largest_feasible(small):
    base_ms = simulate_ms(small, MIDAP)
    target = 2.2 * base_ms
    result = find_coefficient(small, target, lambda s: simulate_ms(s, MIDAP), max_shortfall=1.0)  # tied only
    # the reported latency is the scaled network's, by an independent simulation of the returned spec
    assert result.latency_ms == pytest.approx(float(simulator.simulate(archspec_to_graph(result.spec), MIDAP).latency_ms))
    assert result.latency_ms <= target and not result.refined
    assert result.coefficient > 1.0
    # largest: every evaluated tied coefficient above the answer misses the target
    above = [e for e in result.evaluations if e.coefficient > result.coefficient and e.phase == "tied"]
    assert above and all(e.latency_ms > target for e in above)
    assert result.spec.input_size == max(4, math.floor(64 * result.coefficient ** 2 / 4 + 0.5) * 4)


def test_refinement_lands_closer_without_breaking_the_budget(small):
    base_ms = simulate_ms(small, MIDAP)
    for factor in (1.9, 2.4, 3.1):
        target = factor * base_ms
        tied = find_coefficient(small, target, lambda s: simulate_ms(s, MIDAP), max_shortfall=1.0)
        refined = find_coefficient(small, target, lambda s: simulate_ms(s, MIDAP), max_shortfall=0.0)
        assert refined.latency_ms <= target and tied.latency_ms <= target
        assert refined.latency_ms >= tied.latency_ms
        if refined.refined:  # width/depth stay tied; the input size grows at least like them
            assert refined.resolution_coefficient >= refined.coefficient - 1e-9
            assert refined.spec.input_size < round(64 * refined.coefficient ** 2) + 4


def test_non_monotone_latency_takes_the_largest_feasible_coefficient(small):
    """A bump just above a feasible coefficient must not hide feasible larger ones (step function)."""
    def latency(spec):  # monotone in size, plus a bump for one band of input sizes
        return count_params(spec) * spec.input_size ** 2 / 1e9 + (5.0 if spec.input_size in (76, 80) else 0.0)

    target = latency(scale_arch(small, 1.15, 1.15 ** 2)) + 1e-9
    result = find_coefficient(small, target, latency, max_shortfall=1.0)
    feasible = [e.coefficient for e in result.evaluations if e.latency_ms <= target]
    assert result.coefficient == max(feasible)
    assert latency(result.spec) <= target


def test_target_below_coefficient_one_is_an_error(small):
    with pytest.raises(InfeasibleTargetError, match="latency: target"):
        find_coefficient(small, 0.5 * simulate_ms(small, MIDAP), lambda s: simulate_ms(s, MIDAP))


# ------------------------------------------------------------------------------------------------ CLI
def _run(args, tmp_path):
    return subprocess.run([sys.executable, "-m", "s3nas.postsearch.scaling", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_cli_writes_scaled_arch_checked_by_the_simulator_cli(small, tmp_path):
    arch = tmp_path / "in" / "arch.json"
    codec.save_json(small, arch)
    target = round(2.5 * simulate_ms(small, MIDAP), 4)
    out = tmp_path / "out"
    proc = _run([f"arch={arch.parent}", f"latency={target}ms", f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("target_ms", "latency_ms", "width_depth_coefficient", "resolution_coefficient", "input_size",
                "params", "macs"):
        assert key in summary
    scaled = codec.load_json(out / "arch.json")
    assert scaled.input_size == summary["input_size"] > small.input_size
    assert summary["params"] == count_params(scaled)
    check = subprocess.run([sys.executable, "-m", "simulator", str(out / "arch.json"), "--hardware", "midap", "--json"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    independent = json.loads(check.stdout)["latency_ms"]
    assert independent == pytest.approx(summary["latency_ms"], rel=1e-9)
    assert independent <= target
    assert summary["macs"] == json.loads(check.stdout)["macs"]


@pytest.mark.parametrize("case", ["missing", "invalid", "unreachable", "not_a_dir_run"])
def test_user_errors_name_the_key(small, tmp_path, compose_cfg, case):
    from s3nas.postsearch.scaling import check
    from s3nas.runtime.entry import prepare_config

    arch = tmp_path / "arch.json"
    if case == "invalid":
        arch.write_text(json.dumps({"blocks": [{"type": "nope"}]}))
    elif case == "unreachable":
        codec.save_json(small, arch)
    elif case == "not_a_dir_run":
        (tmp_path / "run").mkdir()
    args = {"missing": [f"arch={tmp_path / 'nothing.json'}", "latency=5ms"],
            "invalid": [f"arch={arch}", "latency=5ms"],
            "unreachable": [f"arch={arch}", f"latency={0.5 * simulate_ms(small, MIDAP):.6f}ms"],
            "not_a_dir_run": [f"arch={tmp_path / 'run'}", "latency=5ms"]}[case]
    cfg = prepare_config(compose_cfg(args, config_name="scaling"))
    with pytest.raises(Exception) as info:
        check(cfg)
    assert isinstance(info.value, (InfeasibleTargetError, codec.ArchSpecError, ConfigError))
    assert {"missing": "arch: no file", "invalid": "blocks[0]", "unreachable": "latency: target",
            "not_a_dir_run": "holds no arch.json"}[case] in str(info.value)


def test_cli_error_is_one_line_and_writes_nothing(small, tmp_path):
    arch = tmp_path / "arch.json"
    codec.save_json(small, arch)
    out = tmp_path / "out"
    proc = _run([f"arch={arch}", f"latency={0.5 * simulate_ms(small, MIDAP):.6f}ms", f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: latency: target") and "Traceback" not in proc.stderr
    assert not (out / "arch.json").exists() and not (out / "summary.json").exists()
