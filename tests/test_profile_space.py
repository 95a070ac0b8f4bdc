"""BBSSP (python -m s3nas.profiling.profile_space): SSBNs, cost/selection, the written space, caching, errors.

Fast tests run the real pipeline (SSBN specs, simulated or measured latency, cost, selection, the written
candidates entry composed by search.py) on a one-block-per-stage supernet; where the accuracy ordering must
be known, the short training is replaced by ``trainer_fn`` (an accuracy that grows with the block's size,
like a real accuracy/latency trade-off). The slow test trains for real and runs a search in the space.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from inprocess import SHORT_SEARCH
from omegaconf import OmegaConf

from s3nas.arch import codec
from s3nas.profiling import profile_space as ps
from s3nas.profiling.ssbn import (Candidate, candidates_from_entry, candidates_from_grid, collect_candidates,
                                 load_candidates_entry, space_entry, ssbn_spec)
from s3nas.config import CONF_DIR, compose_config
from s3nas.errors import ConfigError
from s3nas.arch.space import SearchSpace
from s3nas.runtime.entry import prepare_config

TINY = ["supernet.depths=[1,1,1,1,1]", "profile.candidates=[]", "profile.block_types=[mbconv,fused]",
        "profile.grid.mbconv.kernels=[3,5]", "profile.grid.mbconv.expansions=[2,6]", "profile.grid.fused.kernels=[3]",
        "profile.grid.fused.expansions=[2,4]",
        "profile.accuracy.epochs=1", "profile.accuracy.limit_train_batches=2", "data.image_size=8",
        "logger=none"]


def compose(tmp_path: Path, overrides=(), run: str = "run") -> object:
    cfg = compose_config("profile_space", [*TINY, f"paths.cache_dir={tmp_path / 'cache'}",
                                           f"output.config_dir={tmp_path / 'conf'}", *overrides],
                         output_dir=tmp_path / run)
    return prepare_config(cfg)


def size_accuracy(train_cfg) -> dict:
    """Stand-in for the short training: accuracy grows with the SSBN's MACs (a monotone trade-off)."""
    from s3nas.arch.graph import archspec_to_graph
    from s3nas.arch import codec as c
    import simulator

    spec = c.load_json(str(train_cfg.arch))
    macs = simulator.simulate(archspec_to_graph(spec), "midap").macs
    return {"val_acc": 1.0 - 1.0 / (1.0 + macs / 1e8), "test_acc": 0.5, "train_seconds": 0.0}


# ------------------------------------------------------------------------------------------ candidates
def test_candidates_from_the_shipped_entries_and_grid():
    s3nas = candidates_from_entry(load_candidates_entry("s3nas", [CONF_DIR]), ["mbconv", "mixconv", "fused"], "s3nas")
    names = {c.name for c in s3nas}
    # mbconv/fused: 2 kernels x 3 expansions each; mixconv: the (5,5,7) superkernels with e=2 (0 = off is no block)
    assert {"mbconv_k3_e2", "mbconv_k5_e6", "fused_k5_e4", "mixconv_k5.5.7_e2"} <= names
    assert len(s3nas) == 6 + 6 + 1
    grid = candidates_from_grid({"mbconv": {"kernels": [3, 7], "expansions": [2]},
                                 "mixconv": {"max_kernels": [[7, 3, 5]], "expansions": [1, 2]}}, ["mbconv", "mixconv"])
    assert [c.name for c in grid] == ["mbconv_k3_e2", "mbconv_k7_e2", "mixconv_k3.5.7_e1", "mixconv_k3.5.7_e2"]
    merged = collect_candidates([s3nas, grid])
    by_name = {c.name: c for c in merged}
    assert by_name["mbconv_k3_e2"].sources == ("s3nas", "grid")  # deduplicated, both sources kept
    assert len(merged) == len(names | {c.name for c in grid})
    # a mixconv candidate's superkernels with the same kernel merge (paper Fig. 8)
    assert [(b.kernel, b.expansion) for b in by_name["mixconv_k5.5.7_e2"].branches] == [(5, 4.0), (7, 2.0)]


def test_default_config_profiles_every_block_type(tmp_path):
    cfg = prepare_config(compose_config("profile_space", [f"paths.cache_dir={tmp_path}"], output_dir=tmp_path / "r"))
    checked = ps.check(cfg)
    types = {c.type for c in checked.candidates}
    assert types == {"mbconv", "mixconv", "fused"}
    names = {c.name for c in checked.candidates}
    assert {"mbconv_k7_e6", "mixconv_k3.5.7_e2", "mixconv_k5.5.7_e2", "fused_k5_e6"} <= names
    assert checked.output_path == CONF_DIR / "candidates" / "bbssp_midap.yaml" and not (tmp_path / "r").exists()


def test_grid_and_entry_errors_name_the_key():
    with pytest.raises(ConfigError, match="profile.grid.mbconv.kernels"):
        candidates_from_grid({"mbconv": {"kernels": [4], "expansions": [2]}}, ["mbconv"])
    with pytest.raises(ConfigError, match="profile.grid.fused.expansions"):
        candidates_from_grid({"fused": {"kernels": [3], "expansions": [0]}}, ["fused"])
    with pytest.raises(ConfigError, match="profile.candidates: no candidates entry 'nope'; use one of .*s3nas"):
        load_candidates_entry("nope", [CONF_DIR])


def test_ssbn_repeats_the_candidate_through_the_supernet(compose_cfg):
    cfg = compose_cfg(["supernet=s3nas_mixconv"])
    cand = Candidate("fused", (5,), 4.0)
    spec = ssbn_spec(cand, cfg.supernet)
    assert len(spec.blocks) == sum(cfg.supernet.depths) == 29
    assert {(b.type, b.kernels, b.expansion) for b in spec.blocks} == {("fused", (5,), 4.0)}
    assert [b.out_channels for b in spec.blocks][:4] == [32, 32, 32, 64]
    assert codec.decode(codec.encode(spec)).blocks == spec.blocks  # a plain ArchSpec (round trip)
    proxy = ssbn_spec(cand, cfg.supernet, depth_scale=0.34)
    assert [sum(1 for b in proxy.blocks if b.stage == s) for s in range(5)] == [1, 1, 2, 1, 4]


def test_ssbn_latency_grows_with_expansion_and_kernel(compose_cfg):
    cfg = compose_cfg()
    from s3nas.latency.simulated import SimulatorBackend

    backend = SimulatorBackend("midap")
    specs = [ssbn_spec(Candidate("mbconv", (k,), e), cfg.supernet) for k, e in ((3, 2), (3, 4), (3, 6), (5, 6))]
    lat = backend.latencies_ms(specs)
    assert lat == sorted(lat) and lat[0] < lat[-1]


# ------------------------------------------------------------------------------------ cost and selection
def _rows():
    # a trade-off: faster blocks are less accurate
    return [{"name": f"c{i}", "latency_ms": lat, "val_acc": acc}
            for i, (lat, acc) in enumerate([(1.0, 0.80), (1.5, 0.88), (2.0, 0.91), (3.0, 0.93), (4.0, 0.935),
                                            (2.5, 0.85)])]


def test_cost_knob_moves_the_choice_toward_latency():
    weights = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
    best = [ps.rank_and_select(_rows(), w, 1)[0] for w in weights]
    latencies = [b["latency_ms"] for b in best]
    assert latencies == sorted(latencies, reverse=True)  # non-increasing as the weight moves to latency
    assert best[0]["name"] == "c4" and best[-1]["name"] == "c0"  # most accurate / fastest
    top3 = {w: ps.rank_and_select(_rows(), w, 3) for w in (0.0, 1.0)}
    mean = {w: sum(r["latency_ms"] for r in rows if r["selected"]) / 3 for w, rows in top3.items()}
    assert mean[1.0] < mean[0.0]
    # c5 is dominated by c2 (slower and less accurate): never Pareto, never first
    ranked = ps.rank_and_select(_rows(), 0.5, 2)
    assert [r["pareto"] for r in sorted(ranked, key=lambda r: r["name"])] == [True] * 5 + [False]


def test_space_entry_holds_exactly_the_selected_candidates():
    # two block types: every block chooses among exactly the three (skip where a residual exists)
    selected = [Candidate("mbconv", (3,), 4.0), Candidate("fused", (3,), 2.0), Candidate("mbconv", (5,), 2.0)]
    block_type, entry, used = space_entry(selected, allow_skip=True, name="x")
    assert block_type == "choice" and used == selected
    assert entry["options"] == [{"type": "mbconv", "kernel": 3, "expansion": 4.0},
                                {"type": "fused", "kernel": 3, "expansion": 2.0},
                                {"type": "mbconv", "kernel": 5, "expansion": 2.0}]
    space = SearchSpace.from_config({"depths": [1, 2, 1, 1, 1], "block_type": block_type}, entry)
    for i, pos in enumerate(space.positions):
        assert set(space.options(i)) == {c.option for c in selected} | ({()} if pos.has_residual else set())
    assert space.size() == 3 ** 5 * 4
    # the case: fused k5 e2 and k3 e6 are not a cross product; k3 e2 and k5 e6 must not be added
    pair = [Candidate("fused", (5,), 2.0), Candidate("fused", (3,), 6.0)]
    block_type, entry, _ = space_entry(pair, allow_skip=False, name="y")
    space = SearchSpace.from_config({"depths": [1, 1, 1, 1, 1], "block_type": block_type}, entry)
    assert block_type == "choice" and space.num_options() == [2] * 5
    assert {space.block_spec(0, o).type for o in space.options(0)} == {"fused"}
    # a full cross product of one type stays that type's (weight-sharing) space, with nothing more in it
    square = [Candidate("mbconv", (k,), e) for k in (3, 5) for e in (2.0, 4.0)]
    block_type, entry, _ = space_entry(square, allow_skip=True, name="z")
    assert block_type == "mbconv" and entry["mbconv"] == {"kernels": [3, 5], "expansions": [2.0, 4.0]}
    # MixConv: the listed block itself (every superkernel at its max kernel), not the nested sub-space
    mix_type, mix_entry, _ = space_entry([Candidate("mixconv", (3, 5, 7), 2.0), Candidate("mixconv", (3, 5, 7), 1.0)],
                                         allow_skip=False, name="m")
    assert mix_type == "choice" and mix_entry["allow_skip"] is False
    space = SearchSpace.from_config({"depths": [1, 1, 1, 1, 1], "block_type": mix_type}, mix_entry)
    assert space.num_options() == [2] * 5 and space.block_spec(0, space.options(0)[0]).kernels == (3, 5, 7)


# ----------------------------------------------------------------------------------- the whole command
def test_profile_writes_a_space_search_uses_and_the_knob_picks_a_faster_one(tmp_path):
    results = {}
    for w in (0.0, 1.0):
        cfg = compose(tmp_path, [f"cost.latency_weight={w}", "select.top_k=2", f"output.name=bbssp_w{int(w)}"],
                      run=f"run{w}")
        results[w] = ps.run_profile(cfg, trainer_fn=size_accuracy)
    fast, accurate = results[1.0], results[0.0]
    # toward latency: the chosen space's best SSBN, its selected SSBNs and its networks are faster
    assert fast["best_ssbn_latency_ms"] < accurate["best_ssbn_latency_ms"]
    assert fast["selected_mean_latency_ms"] < accurate["selected_mean_latency_ms"]
    assert fast["chosen_space"]["max_latency_ms"] < accurate["chosen_space"]["max_latency_ms"]
    assert fast["best_ssbn_val_acc"] < accurate["best_ssbn_val_acc"]
    rows = list(__import__("csv").DictReader((tmp_path / "run1.0" / "ssbns.csv").open()))
    assert fast["best_ssbn_latency_ms"] == pytest.approx(min(float(r["latency_ms"]) for r in rows))
    assert fast["latency_source"] == "simulation" and len(rows) == fast["num_ssbns"] == 6
    for name in ("summary.json", "profile.png", "ssbns.csv", "bbssp_w1.yaml"):
        assert (tmp_path / "run1.0" / name).is_file()
    from PIL import Image

    with Image.open(tmp_path / "run1.0" / "profile.png") as image:  # a decodable PNG with a drawing on it
        assert image.format == "PNG" and image.width >= 300 and image.height >= 200
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 16
    from s3nas.outputs import ProfileSpaceSummary, validate_summary_file

    typed = validate_summary_file(tmp_path / "run1.0" / "summary.json")  # the summary validates against its type
    assert isinstance(typed, ProfileSpaceSummary) and typed.to_dict() == fast
    assert len(list((tmp_path / "run1.0" / "ssbns").glob("*.json"))) == 6

    # the written entry is what search.py composes: block type and candidates of the chosen space
    written = Path(fast["candidates_file"])
    assert written == tmp_path / "conf" / "candidates" / "bbssp_w1.yaml" and ps.is_written_entry(written)
    assert not (CONF_DIR / "candidates" / "bbssp_w1.yaml").exists()
    search_cfg = compose_config("search", ["candidates=bbssp_w1", "supernet.depths=[1,1,1,1,1]",
                                           f"hydra.searchpath=[file://{tmp_path / 'conf'}]"],
                                output_dir=tmp_path / "search")
    assert search_cfg.supernet.block_type == fast["block_type"]
    space = SearchSpace.from_config(search_cfg.supernet, search_cfg.candidates)
    assert {p.type for p in space.positions} == {fast["block_type"]}
    assert ps.space_description(fast["block_type"], OmegaConf.to_container(search_cfg.candidates)) \
        == ps.space_description(fast["block_type"], fast["candidates"])
    # exactly the selected SSBNs' blocks are options of the space (plus skip where a residual exists)
    assert sorted(fast["in_space"]) == sorted(fast["selected"])
    chosen = {row["name"] for row in rows if row["in_space"] == "True"}
    assert chosen == set(fast["selected"])
    assert fast["chosen_space"]["architectures"] == space.size()
    assert fast["chosen_space"]["max_latency_ms"] <= fast["reference_space"]["max_latency_ms"]


def test_profile_is_cached_and_resumes_after_a_failure(tmp_path):
    calls = []

    def flaky(train_cfg):
        calls.append(str(train_cfg.arch))
        if len(calls) == 3:
            raise RuntimeError("killed mid-profile")
        return size_accuracy(train_cfg)

    cfg = compose(tmp_path)
    with pytest.raises(RuntimeError):
        ps.run_profile(cfg, trainer_fn=flaky)
    assert not (tmp_path / "conf" / "candidates" / "bbssp_midap.yaml").exists()  # nothing half-written
    summary = ps.run_profile(compose(tmp_path, run="run2"), trainer_fn=flaky)
    assert len(calls) == 3 + 4  # 2 done before the failure were reused; 4 of 6 trained on the rerun
    assert summary["trained"] == 4
    again = ps.run_profile(compose(tmp_path, run="run3"), trainer_fn=flaky)
    assert len(calls) == 7 and again["trained"] == 0 and again["selected"] == summary["selected"]


def test_real_short_training_is_cached(tmp_path):
    """train.py's runner for real (2 batches): accuracies in [0, 1], cached, checkpoints removed."""
    cfg = compose(tmp_path, ["profile.block_types=[fused]", "profile.candidates=[]",
                             "profile.grid.fused.expansions=[2]"])
    summary = ps.run_profile(cfg)
    assert summary["num_ssbns"] == 1 and summary["trained"] == 1
    rows = list(__import__("csv").DictReader((tmp_path / "run" / "ssbns.csv").open()))
    assert 0.0 <= float(rows[0]["val_acc"]) <= 1.0
    results = list((tmp_path / "cache" / "bbssp" / "accuracy").glob("*/result.json"))
    assert len(results) == 1 and not (results[0].parent / "run").exists()
    assert ps.run_profile(compose(tmp_path, ["profile.block_types=[fused]", "profile.candidates=[]",
                                             "profile.grid.fused.expansions=[2]"], run="r2"))["trained"] == 0


def test_black_box_device_latency(tmp_path):
    """hardware=cpu_onnxruntime: SSBN latencies are measured (median of timed runs) and cached."""
    cfg = compose(tmp_path, ["hardware=cpu_onnxruntime", "hardware.repeats=5", "hardware.warmup=1",
                             "deploy.input_size=32", "deploy.num_classes=10", "profile.block_types=[mbconv]",
                             "profile.grid.mbconv.expansions=[2,6]", "select.top_k=1", "cost.latency_weight=1"])
    summary = ps.run_profile(cfg, trainer_fn=size_accuracy)
    assert summary["latency_source"] == "measurement" and summary["hardware"] == "cpu_onnxruntime"
    assert summary["block_type"] == "mbconv" and Path(summary["candidates_file"]).is_file()
    rows = list(__import__("csv").DictReader((tmp_path / "run" / "ssbns.csv").open()))
    assert all(float(r["latency_ms"]) > 0 and r["latency_source"] == "measurement" for r in rows)
    # w = 1: the selected SSBN is the fastest measured one
    assert summary["best_ssbn_latency_ms"] == pytest.approx(min(float(r["latency_ms"]) for r in rows))
    cached = list((tmp_path / "cache" / "bbssp" / "latency").glob("*/*.json"))
    assert len(cached) >= len(rows)


# ------------------------------------------------------------------------------------------ user errors
@pytest.mark.parametrize("override, key", [
    ("cost.latency_weight=1.5", "cost.latency_weight"), ("select.top_k=0", "select.top_k"),
    ("profile.block_types=[conv]", "profile.block_types"), ("profile.candidates=[nope]", "profile.candidates"),
    ("profile.reference=nope", "profile.reference"),
    ("output.name=a/b", "output.name"), ("profile.accuracy.depth_scale=0", "profile.accuracy.depth_scale"),
])
def test_check_errors_name_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ps.check(compose(tmp_path, [override]))


def test_cli_refuses_to_overwrite_a_shipped_entry(tmp_path, run_inproc):
    run_dir = tmp_path / "run"
    before = (CONF_DIR / "candidates" / "s3nas.yaml").read_text()
    proc = run_inproc(["-m", "s3nas.profiling.profile_space", "output.name=s3nas", "logger=none",
                       f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"], check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: output.name:") and "not written by" in errors[0]
    assert "Traceback" not in proc.stderr and not run_dir.exists()
    assert (CONF_DIR / "candidates" / "s3nas.yaml").read_text() == before


# ------------------------------------------------------------------------------------- profile -> search
def test_profile_then_search_in_the_written_space_end_to_end(tmp_path, run_inproc):
    """Real short training (1 epoch of 2 batches per SSBN at 8 px) through the command line (in the test process)
    writes a candidates entry; search.py (tiny) in the written space meets its target with the chosen block type
    only."""
    conf = tmp_path / "conf"
    run_inproc(["-m", "s3nas.profiling.profile_space", *TINY, f"output.config_dir={conf}",
                f"hydra.run.dir={tmp_path / 'profile'}", f"paths.cache_dir={tmp_path / 'cache'}",
                "output.name=bbssp_e2e", "supernet.depths=[1,2,1,2,1]", "select.top_k=4"])
    summary = json.loads((tmp_path / "profile" / "summary.json").read_text())
    assert (conf / "candidates" / "bbssp_e2e.yaml").is_file()
    low, high = summary["chosen_space"]["min_latency_ms"], summary["chosen_space"]["max_latency_ms"]
    target = math.ceil(1e4 * (0.5 * (low + high) if high > low else high)) / 1e4
    run_inproc(["search.py", "candidates=bbssp_e2e", f"hydra.searchpath=[file://{conf}]", "debug=search_tiny",
                "data.image_size=16", "supernet.depths=[1,2,1,2,1]", f"latency={target:.4f}ms", *SHORT_SEARCH,
                f"hydra.run.dir={tmp_path / 'search'}", f"paths.cache_dir={tmp_path / 'cache'}"],
               cwd=CONF_DIR.parent)
    result = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert result["latency_ms"] <= target and result["meets_target"]
    arch = codec.load_json(tmp_path / "search" / "arch.json")
    # every searched block is one of the selected SSBNs' blocks (the written space holds exactly them)
    search_space = SearchSpace.from_config(
        compose_config("search", ["candidates=bbssp_e2e", "supernet.depths=[1,2,1,2,1]",
                                  f"hydra.searchpath=[file://{conf}]"], output_dir=tmp_path / "s2").supernet,
        load_candidates_entry("bbssp_e2e", [conf]))
    selected = {name: c for name, c in ((c.name, c) for c in collect_candidates(
        [candidates_from_grid(OmegaConf.create({"mbconv": {"kernels": [3, 5], "expansions": [2, 6]},
                                                "fused": {"kernels": [3], "expansions": [2, 4]}}),
                              ["mbconv", "fused"])])) if name in summary["selected"]}
    assert len(selected) == 4
    allowed = {(c.type, tuple(b for b in c.branches)) for c in selected.values()}
    for block in arch.blocks:
        assert (block.type, block.branches) in allowed, block
    assert search_space.size() == summary["chosen_space"]["architectures"]
