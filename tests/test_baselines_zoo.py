"""Model zoo: the paper's latency order on midap, sourced published values, the CLI's table and errors."""

from __future__ import annotations

import csv

import pytest
from pathlib import Path

from s3nas.baselines.pareto import pareto_front
from s3nas.baselines.zoo import ZOO, ZOO_BY_KEY, check_order, load_profiles, select_entries, zoo_table

REPO_ROOT = Path(__file__).resolve().parents[1]
ISSUE_MODELS = {f"efficientnet_b{i}" for i in range(5)} | {f"efficientnet_lite{i}" for i in range(5)} | {
    "efficientnet_es", "efficientnet_em", "efficientnet_el", "mobilenetv2_100", "mobilenetv3_large_100", "mixnet_s",
    "mixnet_m", "mixnet_l", "resnet50", "inception_v3"}


def test_zoo_covers_the_issue_list_with_sourced_values():
    assert set(ZOO_BY_KEY) == ISSUE_MODELS
    for entry in ZOO:
        assert entry.input_size in (224, 240, 260, 280, 299, 300, 380)
        if entry.published_top1 is not None:
            assert 60 < entry.published_top1 < 90 and len(entry.top1_source) > 10, entry
    # official resolutions (EfficientNet paper / lite README / EdgeTPU)
    assert [ZOO_BY_KEY[f"efficientnet_b{i}"].input_size for i in range(5)] == [224, 240, 260, 300, 380]
    assert [ZOO_BY_KEY[f"efficientnet_lite{i}"].input_size for i in range(5)] == [224, 240, 260, 280, 300]


def test_midap_keeps_the_papers_latency_order():
    keys = [f"efficientnet_b{i}" for i in range(1, 5)] + [f"efficientnet_lite{i}" for i in range(2, 5)]
    rows, _ = zoo_table(select_entries(keys), load_profiles(["midap"]))
    assert check_order(rows, "midap") == {"efficientnet_b1_to_b4": True, "efficientnet_lite2_to_lite4": True}
    latency = {r["timm_name"]: r["latency_ms"] for r in rows}
    assert all(latency[f"efficientnet_b{i}"] < latency[f"efficientnet_b{i + 1}"] for i in range(1, 4))
    assert latency["efficientnet_lite2"] < latency["efficientnet_lite3"] < latency["efficientnet_lite4"]
    for r in rows:  # every figure comes from the simulator report
        assert r["hardware"] == "midap" and r["cycles"] > 0 and r["latency_ms"] == pytest.approx(r["cycles"] / 1e6)
        assert r["bound"] in ("compute", "memory") and r["dram_traffic_mb"] > r["params_m"]  # weights read at least once


def test_pareto_front():
    points = [(1.0, 72.0), (1.4, 76.3), (1.3, 75.0), (2.0, 75.5), (2.5, 78.8), (2.5, 77.0), (5.0, 78.0)]
    assert pareto_front(points) == [(1.0, 72.0), (1.3, 75.0), (1.4, 76.3), (2.5, 78.8)]


def test_zoo_cli_table_matches_the_simulator(tmp_path, run_inproc):
    import simulator
    from simulator.loaders import load_model_graph

    run_dir = tmp_path / "zoo"
    run_inproc(["-m", "s3nas.baselines.zoo", "models=[mobilenetv2_100,efficientnet_b0]", "profiles=[midap,systolic]",
                "logger=none", f"hydra.run.dir={run_dir}"])
    with open(run_dir / "zoo.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {"model", "hardware", "input_size", "latency_ms", "params_m", "macs_g", "published_top1"} <= set(rows[0])
    assert len(rows) == 4
    for row in rows:
        graph = load_model_graph(f"timm:{row['timm_name']}", int(row["input_size"]))
        report = simulator.simulate(graph, simulator.load_profile(row["hardware"]))
        assert float(row["latency_ms"]) == pytest.approx(report.latency_ms, rel=1e-9)
        assert float(row["published_top1"]) == ZOO_BY_KEY[row["timm_name"]].published_top1
    from PIL import Image

    with Image.open(run_dir / "pareto_midap.png") as image:  # a decodable PNG with a drawing on it
        assert image.format == "PNG" and image.width >= 300 and image.height >= 200
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 16
    assert "| MobileNetV2 | 224 |" in (run_dir / "zoo.md").read_text()


def test_zoo_cli_user_error_is_one_line(tmp_path, run_inproc):
    run_dir = tmp_path / "zoo"
    proc = run_inproc(["-m", "s3nas.baselines.zoo", "models=[nope]", "logger=none", f"hydra.run.dir={run_dir}"],
                      check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: models: unknown zoo model(s) nope; use any of"), proc.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("override, key", [("profiles=[tpu9]", "profiles"), ("overlay=[/nonexistent]", "overlay"),
                                           ("models=[efficientnet_b9]", "models")])
def test_zoo_check_user_errors(compose_cfg, override, key):
    from s3nas.baselines.zoo import check
    from s3nas.errors import ConfigError

    cfg = compose_cfg([override, "logger=none"], config_name="zoo")
    with pytest.raises(ConfigError, match=f"^{key}: "):
        check(cfg)
