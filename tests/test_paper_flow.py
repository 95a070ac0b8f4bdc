"""The third S3NAS step chained: scale -> SE/h-swish -> selective SE removal.

The first test chains the transforms on a small ArchSpec with an untrained network's excitations (no
training); a default-suite test runs the commands on a tiny budget (search -> train -> post-process -> scale ->
flow table); the slow one runs the README's whole sequence (benchmarks/paper_flow.py: search -> train ->
post-process -> scale -> train -> SE removal -> train -> table).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import simulator

from s3nas.arch import codec
from s3nas.postsearch.postprocess import apply, se_blocks, without_se
from s3nas.postsearch.scaling import find_coefficient
from s3nas.postsearch.se_removal import lowest_blocks, record_excitations, score_blocks
from s3nas.arch.params import count_params


def simulate_ms(spec, profile) -> float:
    """Independent oracle: the simulator's end-to-end latency of ``spec`` on ``profile``."""
    import simulator
    from s3nas.arch.graph import archspec_to_graph

    return float(simulator.simulate(archspec_to_graph(spec), profile).latency_ms)

REPO = Path(__file__).resolve().parents[1]
SMALL = ("stem_c16_k3_s2_re | 0: ir_k3_e2_c16_s1 | 1: ir_k3_e2_c32_s2 mc_k3.5_e4.2_c32_s1 ir_k5_e4_c32_s1 | "
         "2: ir_k3_e4_c64_s2 ir_k3_e2_c64_s1 | head_c256_d0.2 | n10_i3_r64 | name:small")


def test_scale_then_se_then_removal_on_a_small_arch():
    torch = pytest.importorskip("torch")
    from s3nas.nn.builder import build_model

    midap = simulator.load_profile("midap")
    base = codec.decode(SMALL)
    plus = apply(base, "all", "hswish")  # M -> M+
    plus_ms, base_ms = simulate_ms(plus, midap), simulate_ms(base, midap)
    assert plus_ms > base_ms and se_blocks(plus) == list(range(len(base.blocks)))

    target = 2.0 * plus_ms  # M+ -> L+
    scaled = find_coefficient(plus, target, lambda s: simulate_ms(s, midap)).spec
    scaled_ms = simulate_ms(scaled, midap)
    assert plus_ms < scaled_ms <= target
    assert len(scaled.blocks) >= len(plus.blocks) and scaled.input_size > plus.input_size
    assert se_blocks(scaled) == list(range(len(scaled.blocks)))  # copies keep their SE and h-swish
    assert {b.act for b in scaled.blocks} == {"hswish"}

    torch.manual_seed(0)  # L+ -> L-rmSE+ (untrained weights stand in for the trained ones)
    model = build_model(scaled)
    excitations = record_excitations(model, [(torch.randn(24, 3, 32, 32),)], max_images=24)
    scores = score_blocks(excitations)
    removed = lowest_blocks(scores, fraction=0.4)
    stripped = without_se(scaled, removed)
    assert len(removed) == round(0.4 * len(scaled.blocks))
    assert set(se_blocks(stripped)) == set(scores) - set(removed)
    assert max(scores[i] for i in removed) <= min(scores[i] for i in se_blocks(stripped))
    stripped_ms = simulate_ms(stripped, midap)
    assert simulate_ms(apply(scaled, "none", "keep"), midap) < stripped_ms < scaled_ms
    assert count_params(stripped) < count_params(scaled)


def test_paper_flow_commands_on_a_tiny_budget(tmp_path, run_cmd):
    """search (tiny) -> train (2 batches) -> +SE/h-swish -> scale to 1.5x -> flow table, as the README's commands;
    the table recomputes every stage's latency on the simulator from its arch.json."""
    runs = {name: tmp_path / name for name in ("search", "train", "plus", "scaled", "table")}
    run_cmd(["search.py", "debug=search_tiny", "data.image_size=16", "latency=2.5ms",
             f"hydra.run.dir={runs['search']}"])
    run_cmd(["train.py", f"arch={runs['search']}", "data.image_size=16", "data.batch_size=16", "recipe.epochs=1",
             "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
             "logger=none", "callbacks=none", "trainer.enable_progress_bar=false", f"hydra.run.dir={runs['train']}"])
    run_cmd(["-m", "s3nas.postsearch.postprocess", f"arch={runs['train']}", "se=all", "act=hswish", "logger=none",
             f"hydra.run.dir={runs['plus']}"])
    midap = simulator.load_profile("midap")
    plus = codec.load_json(runs["plus"] / "arch.json")
    target_ms = round(1.5 * simulate_ms(plus, midap), 4)
    run_cmd(["-m", "s3nas.postsearch.scaling", f"arch={runs['plus']}", f"latency={target_ms}ms", "logger=none",
             f"hydra.run.dir={runs['scaled']}"])
    stage_dirs = ",".join(str(runs[n]) for n in ("search", "train", "plus", "scaled"))
    run_cmd(["-m", "s3nas.postsearch.flow", f"runs=[{stage_dirs}]", f"hydra.run.dir={runs['table']}"])

    stages = json.loads((runs["table"] / "summary.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["search", "train", "postprocess", "scaling"]
    specs = [codec.load_json(runs[n] / "arch.json") for n in ("search", "train", "plus", "scaled")]
    for stage, spec in zip(stages, specs):  # every figure recomputed from the stage's own network
        assert stage["latency_ms"] == pytest.approx(simulate_ms(spec, midap))
        assert stage["se_blocks"] == len(se_blocks(spec))
    lat = [s["latency_ms"] for s in stages]
    search_summary = json.loads((runs["search"] / "summary.json").read_text())
    assert lat[0] <= 2.5 and lat[0] == pytest.approx(search_summary["latency_ms"])
    assert lat[1] == pytest.approx(lat[0]) and specs[1].blocks == specs[0].blocks  # train keeps the network
    assert lat[2] > lat[1] and stages[2]["se_blocks"] == len(specs[2].blocks)  # + SE on every block
    assert lat[2] < lat[3] <= target_ms  # scaled up, within the final target
    assert stages[3]["input_size"] > stages[2]["input_size"] and stages[3]["params"] > stages[2]["params"]
    assert stages[1]["test_acc"] is not None and 0.0 <= stages[1]["test_acc"] <= 1.0
    table = (runs["table"] / "flow.md").read_text()
    assert all(f"| {i} | {name} |" in table for i, name in enumerate(["search", "train", "postprocess", "scaling"]))


@pytest.mark.slow
def test_paper_flow_end_to_end_on_a_tiny_budget(tmp_path):
    """search_small -> train (2 batches) -> +SE/h-swish -> scale x1.5 -> train -> remove 40% SE -> train."""
    train = ("data.image_size=16 data.batch_size=16 recipe.epochs=1 trainer.limit_train_batches=2 "
             "trainer.limit_val_batches=1 trainer.limit_test_batches=1")
    out = tmp_path / "flow"
    proc = subprocess.run(
        [sys.executable, "benchmarks/paper_flow.py", "--out", str(out), "--search-args",
         "debug=search_small",
         "--train", train, "--latency-factor", "1.5", "--removal-args", "images=64",
         "--common", "logger=none callbacks=none"],
        cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    stages = {s["stage"] + str(i): s for i, s in enumerate(result["stages"])}
    names = [s["stage"] for s in result["stages"]]
    assert names == ["search", "train", "postprocess", "scaling", "train", "se_removal", "train"]
    lat = [s["latency_ms"] for s in result["stages"]]
    assert lat[0] == pytest.approx(lat[1])  # train keeps the searched network
    assert lat[2] > lat[1]  # + SE
    assert lat[2] < lat[3] <= result["scaling_target_ms"]  # scaled within the final target
    assert lat[5] < lat[4] and lat[5] == pytest.approx(lat[6])  # SE removal saves latency; retrained as is
    assert result["stages"][5]["se_blocks"] == result["stages"][4]["se_blocks"] - len(result["removed_se_blocks"])
    for i in (1, 4, 6):
        assert result["stages"][i]["test_acc"] is not None
    assert stages["se_removal5"]["input_size"] == stages["scaling3"]["input_size"]
    # resumable: a second call skips every finished stage
    again = subprocess.run(
        [sys.executable, "benchmarks/paper_flow.py", "--out", str(out), "--latency-factor", "1.5",
         "--common", "logger=none callbacks=none"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("# skip (done)") == 7


def test_flow_table_recomputes_every_stage_from_its_arch(tmp_path):
    from s3nas.postsearch.flow import stage_row, table_markdown

    midap = simulator.load_profile("midap")
    base = codec.decode(SMALL)
    plus = apply(base, "all", "hswish")
    from s3nas.outputs import PostprocessSummary, SearchSummary, TrainSummary, example, write_summary

    runs = []
    for name, spec, summary in (("search", base, example(SearchSummary, test_acc=0.9, target_ms=1.0)),
                                ("train", base, example(TrainSummary, test_acc=0.8, data="digits", latency_ms=123.0)),
                                ("postprocess", plus, example(PostprocessSummary, latency_ms=0.0))):
        run = tmp_path / name
        codec.save_json(spec, run / "arch.json")
        write_summary(run, summary)  # the stage is the summary's kind
        runs.append(run)
    from s3nas.latency.simulated import SimulatorBackend

    rows = [stage_row(r, SimulatorBackend("midap")) for r in runs]
    assert [r["stage"] for r in rows] == ["search", "train", "postprocess"]
    assert rows[1]["latency_ms"] == pytest.approx(simulate_ms(base, midap))  # not the summary's figure
    assert rows[2]["latency_ms"] == pytest.approx(simulate_ms(plus, midap))
    assert rows[2]["latency_ms"] > rows[1]["latency_ms"]
    assert rows[2]["params"] == count_params(plus) and rows[2]["se_blocks"] == len(plus.blocks)
    assert rows[0]["accuracy_source"].startswith("search") and rows[1]["accuracy_source"].startswith("retrained")
    assert rows[2]["test_acc"] is None
    text = table_markdown(rows, "midap")
    assert "| 0 | search | 0.9000* |" in text and "| 2 | postprocess | - |" in text
