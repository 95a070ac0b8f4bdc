"""Random search / random selection end to end (tiny budgets), the comparison report and its notebook."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = ["debug=fast", "data.image_size=16", "logger=none", "latency=2.5ms"]


def _run(args, env, timeout=600):
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def random_search_run(tmp_path_factory, run_inproc):
    """A finished random search: 2 samples x 1 epoch of 2 batches, the best retrained for 1 epoch (the command
    line in the test process: tests/support/inprocess.py; its latency table built in that process, not by two spawned
    workers: the parallel build is tests/test_lut.py's)."""
    run_dir = tmp_path_factory.mktemp("baselines") / "random_search"
    run_inproc(["-m", "s3nas.baselines.random_search", *TINY, "num_samples=2", "full.epochs=1", "lut_workers=1",
                f"hydra.run.dir={run_dir}"])
    return run_dir


def test_random_search_delivers_within_two_percent(random_search_run):
    import simulator

    from s3nas.arch import codec
    from s3nas.arch.graph import archspec_to_graph

    from s3nas.outputs import RandomBaselineSummary, validate_summary_file

    assert isinstance(validate_summary_file(random_search_run / "summary.json"), RandomBaselineSummary)
    summary = json.loads((random_search_run / "summary.json").read_text())
    spec = codec.load_json(random_search_run / "arch.json")
    simulated = simulator.simulate(archspec_to_graph(spec), simulator.load_profile("midap")).latency_ms  # independent
    assert abs(simulated / 2.5 - 1) <= 0.02
    assert summary["latency_ms"] == pytest.approx(simulated, rel=1e-9) and summary["within_tolerance"]
    assert codec.encode(spec) == summary["arch"]
    samples = summary["samples"]
    assert len(samples) == 2 and all(abs(s["latency_ms"] / 2.5 - 1) <= 0.02 for s in samples)
    best = max(samples, key=lambda s: (s["val_acc"], -s["index"]))
    assert summary["selected_sample"] == best["index"] and summary["arch"] == best["arch"]
    # the delivered figures are the retrained network's (final/), not the short sample's
    final = json.loads((random_search_run / "final" / "summary.json").read_text())
    assert summary["test_acc"] == final["test_acc"] and final["arch"] == summary["arch"] and final["epochs"] == 1
    assert summary["search_seconds"] > 0 and summary["total_seconds"] >= summary["search_seconds"]
    assert (random_search_run / "samples" / "001" / "summary.json").is_file()
    assert (random_search_run / "samples" / "001" / "weights.pt").is_file()
    assert not (random_search_run / "samples" / "001" / "checkpoints").exists()  # keep_checkpoints=false
    assert (random_search_run / "final" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_random_search_rerun_reuses_finished_samples(random_search_run, python_exe, tmp_path):
    import shutil

    copy = tmp_path / "again"
    shutil.copytree(random_search_run, copy)
    before = json.loads((copy / "summary.json").read_text())
    trained = {path: path.stat().st_mtime_ns for path in copy.glob("samples/*/weights.pt")}
    assert len(trained) >= 2
    env = dict(os.environ, WANDB_MODE="offline")
    env.pop("HYDRA_FULL_ERROR", None)
    proc = _run([python_exe, "-m", "s3nas.baselines.random_search", *TINY, "num_samples=2", "full.epochs=1",
                 f"hydra.run.dir={copy}"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = json.loads((copy / "summary.json").read_text())
    def strip(rows):
        return [{k: v for k, v in r.items() if k != "run_dir"} for r in rows]  # the copy lives elsewhere

    assert strip(after["samples"]) == strip(before["samples"]) and after["test_acc"] == before["test_acc"]
    # no sample was trained again: their weights are the files from before
    assert {path: path.stat().st_mtime_ns for path in copy.glob("samples/*/weights.pt")} == trained


def test_random_baseline_cli_user_error_is_one_line(tmp_path, run_inproc):
    run_dir = tmp_path / "run"
    proc = run_inproc(["-m", "s3nas.baselines.random_selection", "logger=none", "tolerance=2",
                       f"hydra.run.dir={run_dir}"], check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: tolerance: must be a fraction in (0, 0.5)"), proc.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("override, key", [("num_samples=0", "num_samples"), ("latency=0.05ms", "latency"),
                                           ("short.scheduler=linear", "short.scheduler"),
                                           ("full.epochs=0", "full.epochs"), ("select_on=test_acc", "select_on"),
                                           ("hardware.name=tpu9", "hardware.name")])
def test_random_baseline_check_user_errors(compose_cfg, override, key):
    from s3nas.baselines.random_baselines import check_random
    from s3nas.errors import UserError
    from s3nas.runtime.entry import prepare_config

    cfg = compose_cfg(["logger=none", override], config_name="random_search")
    with pytest.raises(UserError, match=f"^{key}: "):
        check_random(prepare_config(cfg))


def test_compare_table(random_search_run, tmp_path):
    from s3nas.baselines.compare import comparison_rows, expand_run_dirs, markdown_table

    from s3nas.latency.simulated import SimulatorBackend

    rows, data = comparison_rows(expand_run_dirs([str(random_search_run)]), ["efficientnet_b1"],
                                 SimulatorBackend("midap"))
    assert data == "digits" and [r["kind"] for r in rows] == ["random_search", "zoo (published)"]
    summary = json.loads((random_search_run / "summary.json").read_text())
    mine = rows[0]
    assert mine["latency_ms"] == pytest.approx(summary["latency_ms"]) and mine["accuracy"] == pytest.approx(
        100 * summary["test_acc"])
    assert mine["search_seconds"] == pytest.approx(summary["search_seconds"])
    final = json.loads((random_search_run / "final" / "summary.json").read_text())  # its float / INT8 pair
    assert mine["accuracy_fp32"] == pytest.approx(100 * final["test_acc_fp32"]) and mine["accuracy_int8"] is None
    assert mine["accuracy_kind"].endswith(", fp32")
    assert rows[1]["accuracy"] == 78.8 and rows[1]["search_seconds"] is None
    text = markdown_table(rows, "midap", data)
    assert "| EfficientNet-B1 | zoo (published) |  | 78.80 |" in text


SMALL = ("stem_c16_k3_s2_re | 0: ir_k3_e2_c16_s1 | 1: ir_k3_e2_c32_s2 ir_k5_e4_c32_s1 | head_c256_d0.2 | n10_i3_r64 | "
         "name:small")


def test_compare_pairs_float_and_int8_accuracies(tmp_path):
    """A train.py quantize=int8 run on an int8 NPU reports its INT8 accuracy (kind int8) with the float one beside
    it; an older train run (no INT8 keys) and a search stay fp32 with an empty INT8 cell; compare.csv,
    compare.md and summary.json carry the column."""
    import csv

    from s3nas.arch import codec
    from s3nas.baselines import compare
    from s3nas.config import compose_config
    from s3nas.outputs import CompareSummary, SearchSummary, TrainSummary, example, validate_summary_file, write_summary
    from s3nas.runtime.entry import prepare_config

    spec = codec.decode(SMALL)
    search, quantized, older = tmp_path / "search", tmp_path / "int8", tmp_path / "older"
    for run, summary in (
            (search, example(SearchSummary, test_acc=0.9, data="digits", seed=1)),
            (quantized, example(TrainSummary, data="digits", seed=2, epochs=3, arch_origin=str(search / "arch.json"),
                                test_acc=0.8125, accuracy_dtype="int8", hardware_dtype="int8", test_acc_fp32=0.84375,
                                test_acc_int8=0.8125)),
            (older, example(TrainSummary, data="digits", seed=3, epochs=3, arch_origin="", test_acc=0.75))):
        codec.save_json(spec, run / "arch.json")
        write_summary(run, summary)
    raw = json.loads((older / "summary.json").read_text())  # as an s3nas before the INT8 fields wrote it
    for key in ("accuracy_dtype", "hardware_dtype", "test_acc_fp32", "val_acc_fp32", "test_acc_int8", "val_acc_int8",
                "int8"):
        raw.pop(key)
    (older / "summary.json").write_text(json.dumps(raw))

    out = tmp_path / "compare"
    cfg = prepare_config(compose_config("compare", [f"runs=[{search},{quantized},{older}]", "zoo=[efficientnet_b1]",
                                                    "plot=false", "logger=none"], output_dir=out))
    compare.main(cfg)
    summary = validate_summary_file(out / "summary.json")
    assert isinstance(summary, CompareSummary) and summary.hardware_dtype == "int8"
    rows = {row.seed: row for row in summary.rows if row.seed is not None}
    assert rows[2].accuracy == pytest.approx(81.25) and rows[2].accuracy_kind == "retrained 3 ep, test split, int8"
    assert (rows[2].accuracy_fp32, rows[2].accuracy_int8) == (pytest.approx(84.375), pytest.approx(81.25))
    assert rows[3].accuracy == rows[3].accuracy_fp32 == pytest.approx(75.0) and rows[3].accuracy_int8 is None
    assert rows[3].accuracy_kind.endswith(", fp32")
    assert rows[1].accuracy_fp32 == pytest.approx(90.0) and rows[1].accuracy_int8 is None
    assert rows[1].accuracy_kind == "weight sharing, test split, fp32"
    zoo_row = next(row for row in summary.rows if row.kind == "zoo (published)")
    assert (zoo_row.accuracy_fp32, zoo_row.accuracy_int8) == (78.8, None)

    table = {row["seed"]: row for row in csv.DictReader((out / "compare.csv").open())}
    assert "accuracy_int8" in table["2"] and float(table["2"]["accuracy_int8"]) == pytest.approx(81.25)
    assert float(table["2"]["accuracy_fp32"]) == pytest.approx(84.375) and table["3"]["accuracy_int8"] == ""
    text = (out / "compare.md").read_text()
    assert "| top-1 % | accuracy kind | fp32 % | int8 % |" in text and "`midap` computes in int8" in text
    assert "| 81.25 | retrained 3 ep, test split, int8 | 84.38 | 81.25 |" in text
    assert "| 75.00 | retrained 3 ep, test split, fp32 | 75.00 |  |" in text


def test_compare_notebook_executes(random_search_run, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("S3NAS_COMPARE_RUNS", str(random_search_run))
    monkeypatch.setenv("S3NAS_COMPARE_ZOO", "mobilenetv2_100,efficientnet_b1")
    monkeypatch.setenv("S3NAS_COMPARE_OUT", str(tmp_path))
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "compare_models.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the figures are inline cell outputs
    for image in images:  # each a decodable, drawn PNG
        _assert_drawn_png(base64.b64decode(image["data"]["image/png"]))
    # the comparison table lists the random-search run and both zoo models, with the run's latency
    tables = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    summary = json.loads((random_search_run / "summary.json").read_text())
    assert "random_search" in tables and "MobileNetV2" in tables and "EfficientNet-B1" in tables
    assert f"{summary['latency_ms']:.3f}" in tables, tables
    for name in ("compare_models_table.png", "compare_models_pareto.png"):
        _assert_drawn_png((tmp_path / name).read_bytes())


def _assert_drawn_png(data: bytes) -> None:
    """A PNG that decodes, is at least 300x200 and holds a drawing (many colours, not a blank canvas)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    assert image.width >= 300 and image.height >= 200, image.size
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 16, "blank image"
