"""notebooks/search_analysis.ipynb runs top to bottom on a tiny search run (nbclient) and shows that run."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from inprocess import SHORT_SEARCH

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "search_analysis.ipynb"


def _assert_drawn_png(path: Path, min_width: int = 300, min_height: int = 200) -> None:
    """A PNG that decodes, has at least the given size and holds a drawing (many colours, not blank)."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        assert image.width >= min_width and image.height >= min_height, image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 16, f"{path.name} is blank"


def test_search_analysis_notebook_executes(tmp_path, monkeypatch, run_inproc):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    run_dir = tmp_path / "run"
    run_inproc(["search.py", "debug=search_tiny", "data.image_size=16", *SHORT_SEARCH, f"hydra.run.dir={run_dir}"])
    monkeypatch.setenv("S3NAS_RUN_DIR", str(run_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the notebook read this run: it prints the run dir and the summary's figures
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert str(run_dir) in printed
    summary = json.loads((run_dir / "summary.json").read_text())
    shown = next(ast.literal_eval(line) for line in printed.splitlines() if line.startswith("{'target_ms'"))
    assert shown["target_ms"] == summary["target_ms"] and shown["latency_ms"] == summary["latency_ms"]
    assert shown["val_acc"] == summary["val_acc"]
    # it drew the latency chart and the Fig. 12 style architecture into the run dir
    _assert_drawn_png(run_dir / "analysis_latency.png")
    _assert_drawn_png(run_dir / "analysis_architecture.png")
