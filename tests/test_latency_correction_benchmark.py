"""benchmarks/latency_correction.py end to end on the simulated black box (noise-free truth known): the last line
is the JSON the issue asks for, and the corrected table beats the raw sum on the held-out networks.

The benchmark runs in the test process (tests/support/inprocess.py: ``python benchmarks/latency_correction.py ...``
as a command line, stdout and return code captured): what is tested is its figures and its table, not a process."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_reports_raw_and_corrected_scores_on_heldout_networks(tmp_path, run_inproc, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # its `from results import record`, as `python <script>`
    proc = run_inproc(["benchmarks/latency_correction.py", "--devices", "sim_midap_blackbox", "--sim-input-size", "64",
                       "--fit", "12", "--heldout", "8", "--noise-nets", "2", "--cache-dir", str(tmp_path)],
                      check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("raw_mape_pct", "corrected_mape_pct", "within10_pct", "n_heldout", "noise_pct"):
        assert key in result, key
    assert result["n_heldout"] == 8 and result["device"] == "sim_midap_blackbox"
    assert result["corrected_mape_pct"] < result["raw_mape_pct"] / 2
    assert result["devices"][0]["vs_truth"]["stage_affine_weights"]["mape_pct"] < \
        result["devices"][0]["vs_truth"]["raw"]["mape_pct"]
    assert "raw" in proc.stdout and "stage_affine_weights" in proc.stdout  # the readable table
    assert list(tmp_path.glob("measured-*sim_midap_blackbox*.jsonl"))  # measurements logged where asked
