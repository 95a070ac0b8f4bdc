"""README and .ci/run agree: CI installs and tests exactly as the README says, and cannot hide failures."""

from __future__ import annotations

import os
import re

from s3nas.config import REPO_ROOT

INSTALL = 'python -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"'
TEST = "pytest -q"
MAIN_JOB = "python search.py latency=2.5ms"


def test_readme_starts_with_install_test_and_main_job():
    head = "\n".join((REPO_ROOT / "README.md").read_text().splitlines()[:20])
    assert INSTALL in head and TEST in head and MAIN_JOB in head


def test_ci_installs_and_tests_like_the_readme():
    ci = REPO_ROOT / ".ci" / "run"
    text = ci.read_text()
    assert os.access(ci, os.X_OK) and text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert re.search(r"-m venv ", text) and 'pip install -e ".[dev]"' in text
    test_lines = [line for line in text.splitlines() if line.strip().startswith("pytest")]
    assert test_lines and all(line.strip().startswith(TEST) for line in test_lines)
    assert not re.search(r"\|\|\s*(true|:)", text)  # a failing (or empty, exit 5) test run fails CI
    assert "WANDB_MODE=offline" in text


def test_pytest_collects_tests_without_shadowing_simulator():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert "--import-mode=importlib" in pyproject  # tests/simulator/ must not shadow the simulator package
