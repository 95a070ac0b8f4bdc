"""SE / h-swish post-processing and selective SE removal: transforms, simulated latency direction, how the
simulator costs SE (ArchSpec path and torch frontend agree), excitation scores, removal of exactly the
lowest-scored blocks, and both commands' outputs and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import simulator

from s3nas.arch import codec
from s3nas.arch.graph import archspec_to_graph
from s3nas.errors import ConfigError
from s3nas.postsearch.postprocess import apply, se_blocks, with_activation, with_se, without_se
from s3nas.postsearch.selective_se import lowest_blocks, score_blocks
from s3nas.arch.params import count_params


def simulate_ms(spec, profile) -> float:
    """Independent oracle: the simulator's end-to-end latency of ``spec`` on ``profile``."""
    import simulator
    from s3nas.arch.graph import archspec_to_graph

    return float(simulator.simulate(archspec_to_graph(spec), profile).latency_ms)

REPO = Path(__file__).resolve().parents[1]
SMALL = ("stem_c16_k3_s2_re | 0: ir_k3_e2_c16_s1 | 1: ir_k3_e2_c32_s2 ir_k3_e2_c32_s1 mc_k3.5_e4.2_c32_s1 | "
         "2: ir_k3_e4_c64_s2 er_k3_e2_c64_s1 | head_c256_d0.2 | n10_i3_r64 | name:small")


@pytest.fixture
def small():
    return codec.decode(SMALL)


# ------------------------------------------------------------------------------------- transforms
def test_apply_se_choices(small):
    n = len(small.blocks)
    assert se_blocks(apply(small, "all", "keep")) == list(range(n))
    assert all(b.se_ratio == 0.25 for b in apply(small, "all", "keep").blocks)
    assert se_blocks(apply(apply(small, "all", "keep"), "none", "keep")) == []
    some = apply(small, [1, 3], "keep", se_ratio=0.5)
    assert se_blocks(some) == [1, 3] and some.blocks[1].se_ratio == 0.5
    assert se_blocks(apply(some, "2-4", "keep")) == [1, 2, 3, 4]  # adds, keeps the others
    assert apply(small, "keep", "keep") == small


def test_apply_activation_choices(small):
    hs = apply(small, "keep", "hswish")
    assert hs.act == "hswish" and all(b.act == "hswish" for b in hs.blocks)
    partial = apply(small, "keep", "hswish", act_blocks=[4, 5])
    assert partial.act == "relu" and [b.act for b in partial.blocks] == ["relu"] * 4 + ["hswish"] * 2
    back = with_activation(hs, "relu")
    assert back == small


@pytest.mark.parametrize("se,act,match", [("most", "keep", "se:"), ([9], "keep", "se: block indices"),
                                          ("keep", "gelu", "act:"), ("keep", "hswish", "act_blocks")])
def test_apply_rejects_bad_choices(small, se, act, match):
    with pytest.raises(ConfigError, match=match):
        apply(small, se, act, act_blocks="x" if match == "act_blocks" else "all")


def test_se_graph_is_gap_two_fcs_sigmoid_and_multiply(small):
    graph = archspec_to_graph(with_se(small, [1]))
    ops = [(layer.op, layer.act, layer.out_shape) for layer in graph if layer.module.startswith("blocks.1.se")]
    mid = 32  # 16 in -> e2; reduced channels 0.25 x 16 input channels
    assert ops == [("gap", None, (mid, 1, 1)), ("conv", "relu", (4, 1, 1)), ("conv", "sigmoid", (mid, 1, 1)),
                   ("mul", None, (mid, 16, 16))]


@pytest.mark.parametrize("hardware", ["midap", "systolic"])
def test_se_adds_latency_and_hswish_never_lowers_it(small, hardware):
    profile = simulator.load_profile(hardware)
    base = simulate_ms(small, profile)
    se = simulate_ms(with_se(small, range(len(small.blocks))), profile)
    one = simulate_ms(with_se(small, [3]), profile)
    hs = simulate_ms(with_activation(small, "hswish"), profile)
    assert se > one > base  # every SE block costs cycles (multiply pass, two FCs)
    assert hs >= base
    if hardware == "midap":  # MIDAP applies activations in its pipeline at no extra cycle
        assert hs == base


def test_torch_frontend_costs_se_and_hswish_like_the_archspec_path(small):
    pytest.importorskip("torch")
    from simulator.frontends.torch import graph_from_module

    from s3nas.nn.builder import build_model

    spec = with_activation(with_se(small, [0, 2, 3, 5]), "hswish")
    profile = simulator.load_profile("midap")
    torch_graph = graph_from_module(build_model(spec), (3, spec.input_size, spec.input_size))
    spec_graph = archspec_to_graph(spec)
    assert [(l.op, l.act, l.out_shape) for l in torch_graph] == [(l.op, l.act, l.out_shape) for l in spec_graph]
    assert simulator.simulate(torch_graph, profile).total_cycles == simulator.simulate(spec_graph, profile).total_cycles


# ------------------------------------------------------------------------------------------ removal
def test_scores_are_the_mean_per_channel_std():
    rng = np.random.default_rng(0)
    flat = np.full((50, 4), 0.5) + rng.normal(0, 0.01, (50, 4))
    varied = rng.uniform(0, 1, (50, 8))
    scores = score_blocks({3: flat, 7: varied, 9: np.tile([0.1, 0.9], (50, 1))})
    assert scores[3] == pytest.approx(flat.std(axis=0).mean())
    assert scores[7] == pytest.approx(varied.std(axis=0).mean())
    assert scores[9] == pytest.approx(0.0, abs=1e-12)  # constant across images: the multiply is a constant
    assert scores[9] < scores[3] < scores[7]


def test_lowest_blocks_by_count_fraction_threshold():
    scores = {0: 0.3, 2: 0.01, 5: 0.2, 6: 0.05, 8: 0.01}
    assert lowest_blocks(scores, count=3) == [2, 8, 6]  # ties: lower index first
    assert lowest_blocks(scores, count=0) == []
    assert lowest_blocks(scores, fraction=0.4) == [2, 8]
    assert lowest_blocks(scores, fraction=1.0) == [2, 8, 6, 5, 0]
    assert lowest_blocks(scores, threshold=0.1) == [2, 8, 6]
    with pytest.raises(ConfigError, match="count: 6 is more than the 5 SE blocks"):
        lowest_blocks(scores, count=6)
    with pytest.raises(ConfigError, match="exactly one"):
        lowest_blocks(scores, count=1, threshold=0.1)


def test_recorded_excitations_drive_the_removal(small):
    torch = pytest.importorskip("torch")
    from s3nas.nn.builder import build_model
    from s3nas.postsearch.selective_se import record_excitations

    spec = with_se(small, range(len(small.blocks)))
    torch.manual_seed(0)
    model = build_model(spec)
    images = torch.randn(40, 3, 16, 16)
    excitations = record_excitations(model, [(images[:16], None), (images[16:],)], max_images=30)
    assert sorted(excitations) == se_blocks(spec)
    mids = [32, 32, 64, 192, 128, 128]
    for i, values in excitations.items():
        assert values.shape == (30, mids[i]) and ((values > 0) & (values < 1)).all()  # sigmoid gate
    scores = score_blocks(excitations)
    removed = lowest_blocks(scores, count=2)
    stripped = without_se(spec, removed)
    assert se_blocks(stripped) == sorted(set(se_blocks(spec)) - set(removed))
    assert max(scores[i] for i in removed) <= min(scores[i] for i in se_blocks(stripped))
    profile = simulator.load_profile("midap")
    assert simulate_ms(stripped, profile) < simulate_ms(spec, profile)
    assert not any(h for m in model.modules() for h in m._forward_hooks.values())  # hooks removed


# ---------------------------------------------------------------------------------------------- CLI
def _cli(module, args):
    """``python -m <module> <args>``: a real process for the light post-processing command; in the test process
    (tests/support/inprocess.py) for SE removal, whose task's imports (torch, the data) cost seconds a process."""
    if module == "s3nas.postsearch.se_removal":
        from inprocess import run_inprocess

        return run_inprocess(["-m", module, *args], check=False)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def _one_line_error(proc, contains):
    assert proc.returncode == 2, proc.stderr[-1500:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and contains in lines[0], proc.stderr[-1500:]


def test_postprocess_cli(small, tmp_path):
    arch = tmp_path / "arch.json"
    codec.save_json(small, arch)
    out = tmp_path / "pp"
    proc = _cli("s3nas.postsearch.postprocess", [f"arch={arch}", "se=all", "act=hswish", f"hydra.run.dir={out}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    new = codec.load_json(out / "arch.json")
    profile = simulator.load_profile("midap")
    assert se_blocks(new) == summary["se_blocks"] == list(range(len(small.blocks)))
    assert new.act == "hswish" and {b.act for b in new.blocks} == {"hswish"}
    assert summary["latency_ms"] == pytest.approx(simulate_ms(new, profile))
    assert summary["latency_before_ms"] == pytest.approx(simulate_ms(small, profile))
    assert summary["latency_ms"] > summary["latency_before_ms"]
    assert summary["params"] == count_params(new) > summary["params_before"]
    bad = _cli("s3nas.postsearch.postprocess", [f"arch={arch}", "se=[0,40]", f"hydra.run.dir={tmp_path / 'bad'}"])
    _one_line_error(bad, "se: block indices [40] out of range")
    assert not (tmp_path / "bad" / "arch.json").exists()


def _fake_train_run(spec, run_dir: Path, *, image_size: int = 16):
    """A train.py run dir holding weights.pt written by train.py's own writer (untrained weights)."""
    torch = pytest.importorskip("torch")
    from s3nas.nn.builder import build_model
    from s3nas.train.network import NetworkSource
    from s3nas.train.runner import save_weights

    torch.manual_seed(0)
    model = build_model(spec, num_classes=10).eval()
    meta = {"network": NetworkSource(spec=spec, origin="test").to_meta(), "num_classes": 10, "in_channels": 3,
            "image_size": image_size, "drop_path": 0.0, "dropout": None, "data": "digits"}
    save_weights(SimpleNamespace(eval_model=model, meta=meta, ema=None), run_dir / "weights.pt", {"test_acc": 0.1})
    codec.save_json(spec, run_dir / "arch.json")
    return model


def test_se_removal_cli_removes_the_lowest_scored_blocks(small, tmp_path):
    spec = with_se(small, [0, 1, 3, 4, 5])
    run = tmp_path / "train_run"
    _fake_train_run(spec, run)
    out = tmp_path / "rm"
    proc = _cli("s3nas.postsearch.se_removal", [f"run_dir={run}", "count=2", "images=200", f"hydra.run.dir={out}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    scores = {int(k): v for k, v in summary["scores"].items()}
    assert sorted(scores) == [0, 1, 3, 4, 5] and summary["images"] == 200
    assert summary["removed_blocks"] == sorted(scores, key=lambda i: (scores[i], i))[:2]
    new = codec.load_json(out / "arch.json")
    assert se_blocks(new) == sorted(set(scores) - set(summary["removed_blocks"]))
    assert summary["latency_ms"] < summary["latency_before_ms"]
    rows = (out / "scores.csv").read_text().splitlines()
    assert rows[0] == "block,stage,channels,score,rank,removed" and len(rows) == 6
    assert sum(r.endswith("true") for r in rows[1:]) == 2


def test_se_removal_user_errors(small, tmp_path, compose_cfg):
    from s3nas.postsearch.selective_se import check

    run = tmp_path / "train_run"
    _fake_train_run(with_se(small, [1, 2]), run)
    no_se = tmp_path / "no_se"
    _fake_train_run(small, no_se)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    codec.save_json(small, untrained / "arch.json")
    cases = [([f"run_dir={run}", "count=3"], "count: 3 is more than the 2 SE blocks"),
             ([f"run_dir={untrained}"], "run_dir: '"),
             ([f"run_dir={tmp_path / 'missing'}"], "run_dir: no directory"),
             ([f"run_dir={no_se}"], "has no SE blocks"),
             ([f"run_dir={run}", "count=1", "threshold=0.1"], "set only one"),
             ([f"run_dir={run}", "fraction=1.5"], "fraction: must be")]
    for args, contains in cases:
        with pytest.raises(ConfigError, match=contains.replace("(", r"\(")):
            check(compose_cfg(args, config_name="se_removal"))
    out = tmp_path / "out"  # the command line: one line, exit 2, nothing written
    _one_line_error(_cli("s3nas.postsearch.se_removal", [f"run_dir={untrained}", f"hydra.run.dir={out}"]), "weights.pt")
    assert not (out / "arch.json").exists()
