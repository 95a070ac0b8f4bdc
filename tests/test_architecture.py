"""The package's layering is a contract: layers import only downward (import-linter, pyproject's
[tool.importlinter]), function-local imports are kept for heavy optional modules only, and no runner asks which
kind of latency backend it holds."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "s3nas"
ROOT = SRC.parents[1]
#: the bound the issue set for function-local imports in src/ (heavy optional modules: wandb, onnx, sklearn ...)
MAX_LOCAL_IMPORTS = 60


def local_imports() -> list[str]:
    """``path:line module`` of every import statement inside a function of src/s3nas."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in fn.body:
                    for sub in ast.walk(node):
                        if isinstance(sub, (ast.Import, ast.ImportFrom)):
                            name = sub.names[0].name if isinstance(sub, ast.Import) else sub.module
                            found.append(f"{path.relative_to(ROOT)}:{sub.lineno} {name}")
    return sorted(set(found))


def test_layers_import_only_downward():
    """import-linter's contract (pyproject.toml) holds: e.g. latency never imports search, arch never imports nn."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not installed (it is in the dev extra: pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"Contracts: \d+ kept, 0 broken", proc.stdout), proc.stdout[-2000:]


def test_function_local_imports_are_few():
    imports = local_imports()
    assert len(imports) < MAX_LOCAL_IMPORTS, "\n".join(imports)


def test_no_runner_asks_which_backend_it_holds():
    """Runners get latency through LatencyBackend: none of them builds a device or loads a simulator profile."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent.name in ("latency", "config"):
            continue  # the backends themselves and the hardware config loader
        text = path.read_text()
        for pattern in (r"\bmake_device\(", r"\bload_hardware\(", r"\bsimulator\.simulate\(", r"device is None",
                        r"device is not None"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert not offenders, offenders
