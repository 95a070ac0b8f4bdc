"""The third S3NAS step chained: scale -> SE/h-swish -> selective SE removal.

The first test chains the transforms on a small ArchSpec with an untrained network's excitations (no
training); a default-suite test runs the commands on a tiny budget (search -> train -> post-process -> scale ->
flow table, the train stage with its INT8 model); the slow one runs the README's whole sequence (benchmarks/paper_flow.py: search -> train ->
post-process -> scale -> train -> SE removal -> train -> table).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import simulator
from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS

from s3nas.arch import codec
from s3nas.postsearch.postprocess import apply, se_blocks, without_se
from s3nas.postsearch.scaling import find_coefficient
from s3nas.postsearch.selective_se import lowest_blocks, record_excitations, score_blocks
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


def test_paper_flow_commands_on_a_tiny_budget(tmp_path, run_inproc):
    """search (tiny) -> train (2 batches, INT8 PTQ) -> +SE/h-swish -> scale to 1.5x -> flow table, as the README's
    commands (run in the test process: tests/support/inprocess.py); the table recomputes every stage's latency on
    the simulator from its arch.json and shows the train stage's float and INT8 accuracies side by side.

    The search runs in the 6-position MBConv space (``SMALL_SPACE``, its table built in the command's process into
    this test's own cache dir): the chain of commands is tested, not the space. In the debug space (25 blocks)
    the train stage's INT8 quantization (onnxruntime) and the scaling's simulations cost ~4x more (21 -> 5 CPU-s
    in all), and the search used the user's cache dir (~/.cache/s3nas), building the debug table there when
    empty."""
    runs = {name: tmp_path / name for name in ("search", "train", "plus", "scaled", "table")}
    run_inproc(["search.py", "debug=search_tiny", "data.image_size=16", "latency=2.5ms", *SHORT_SEARCH, *SMALL_SPACE,
                *SMALL_SPLITS, f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={runs['search']}"])
    run_inproc(["train.py", f"arch={runs['search']}", "data.image_size=16", "data.batch_size=16", "recipe.epochs=1",
                "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                "quantize=int8", "quantize.calibration_images=32", "logger=none", "callbacks=none",
                "trainer.enable_progress_bar=false", f"hydra.run.dir={runs['train']}"])
    run_inproc(["-m", "s3nas.postsearch.postprocess", f"arch={runs['train']}", "se=all", "act=hswish", "logger=none",
                f"hydra.run.dir={runs['plus']}"])
    midap = simulator.load_profile("midap")
    plus = codec.load_json(runs["plus"] / "arch.json")
    target_ms = round(1.5 * simulate_ms(plus, midap), 4)
    run_inproc(["-m", "s3nas.postsearch.scaling", f"arch={runs['plus']}", f"latency={target_ms}ms", "logger=none",
                f"hydra.run.dir={runs['scaled']}"])
    stage_dirs = ",".join(str(runs[n]) for n in ("search", "train", "plus", "scaled"))
    run_inproc(["-m", "s3nas.postsearch.flow", f"runs=[{stage_dirs}]", f"hydra.run.dir={runs['table']}"])

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
    # the train stage: the accuracy it reported (the INT8 model's: midap computes in int8) and both of the pair
    train = json.loads((runs["train"] / "summary.json").read_text())
    assert train["accuracy_dtype"] == "int8" and train["test_acc_int8"] is not None
    assert stages[1]["test_acc"] == train["test_acc"] == train["test_acc_int8"]
    assert stages[1]["accuracy_dtype"] == "int8"
    assert (stages[1]["test_acc_fp32"], stages[1]["test_acc_int8"]) == (train["test_acc_fp32"], train["test_acc_int8"])
    assert stages[0]["test_acc_int8"] is None and stages[2]["test_acc_int8"] is None
    table = (runs["table"] / "flow.md").read_text()
    assert all(f"| {i} | {name} |" in table for i, name in enumerate(["search", "train", "postprocess", "scaling"]))
    assert f"| 1 | train | {train['test_acc_fp32']:.4f} | {train['test_acc_int8']:.4f} |" in table
    assert "`midap` computes in int8" in table and "test acc int8 (midap runs this)" in table


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
    from s3nas.outputs import FlowSummary, PostprocessSummary, SearchSummary, TrainSummary, example, write_summary

    int8 = dict(test_acc=0.7812, accuracy_dtype="int8", hardware_dtype="int8", test_acc_fp32=0.8125,
                test_acc_int8=0.7812)  # a train.py quantize=int8 run on an int8 NPU
    old = dict(test_acc=0.75, accuracy_dtype="fp32", hardware_dtype="fp32", test_acc_fp32=None, test_acc_int8=None,
               int8=None)  # a train summary written before the INT8 fields existed
    runs = []
    for name, spec, summary in (("search", base, example(SearchSummary, test_acc=0.9, target_ms=1.0)),
                                ("train", base, example(TrainSummary, data="digits", latency_ms=123.0, **int8)),
                                ("postprocess", plus, example(PostprocessSummary, latency_ms=0.0)),
                                ("train_old", plus, example(TrainSummary, data="digits", **old))):
        run = tmp_path / name
        codec.save_json(spec, run / "arch.json")
        write_summary(run, summary)  # the stage is the summary's kind
        runs.append(run)
    from s3nas.latency.simulated import SimulatorBackend

    rows = [stage_row(r, SimulatorBackend("midap")) for r in runs]
    assert [r["stage"] for r in rows] == ["search", "train", "postprocess", "train"]
    assert rows[1]["latency_ms"] == pytest.approx(simulate_ms(base, midap))  # not the summary's figure
    assert rows[2]["latency_ms"] == pytest.approx(simulate_ms(plus, midap))
    assert rows[2]["latency_ms"] > rows[1]["latency_ms"]
    assert rows[2]["params"] == count_params(plus) and rows[2]["se_blocks"] == len(plus.blocks)
    assert rows[0]["accuracy_source"].startswith("search") and rows[1]["accuracy_source"].startswith("retrained")
    assert rows[2]["test_acc"] is None
    # honest pairs: the reported accuracy stays the stage's own, float and INT8 side by side
    assert (rows[1]["test_acc"], rows[1]["accuracy_dtype"]) == (0.7812, "int8")
    assert (rows[1]["test_acc_fp32"], rows[1]["test_acc_int8"]) == (0.8125, 0.7812)
    assert (rows[0]["test_acc_fp32"], rows[0]["test_acc_int8"], rows[0]["accuracy_dtype"]) == (0.9, None, "fp32")
    assert (rows[2]["test_acc_fp32"], rows[2]["test_acc_int8"]) == (None, None)
    assert (rows[3]["test_acc"], rows[3]["test_acc_fp32"], rows[3]["test_acc_int8"]) == (0.75, 0.75, None)
    assert rows[3]["accuracy_dtype"] == "fp32"
    text = table_markdown(rows, "midap", "int8")
    assert "| 0 | search | 0.9000* | - |" in text and "| 2 | postprocess | - | - |" in text
    assert "| 1 | train | 0.8125 | 0.7812 |" in text and "| 3 | train | 0.7500 | - |" in text
    assert "`midap` computes in int8: the int8 accuracy column" in text
    assert "| test acc fp32 | test acc int8 (midap runs this) |" in text
    float_hw = table_markdown(rows, "fp32npu", "fp32")
    assert "| test acc fp32 (fp32npu runs this) | test acc int8 |" in float_hw and "computes in fp32" in float_hw
    FlowSummary.from_dict(FlowSummary(hardware="midap", hardware_dtype="int8", stages=rows).to_dict())
    older = FlowSummary(hardware="midap", stages=rows).to_dict()  # a flow summary without the INT8 keys loads
    older.pop("hardware_dtype")
    for stage in older["stages"]:
        for key in ("accuracy_dtype", "test_acc_fp32", "test_acc_int8"):
            stage.pop(key)
    loaded = FlowSummary.from_dict(older)
    assert loaded.hardware_dtype == "fp32" and loaded.stages[1].test_acc_int8 is None
    assert "| 1 | train | 0.7812 | - |" in table_markdown(older["stages"], "midap")  # fp32 then: as it was
