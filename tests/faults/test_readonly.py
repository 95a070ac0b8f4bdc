"""Read-only places: an unwritable HOME (the default paths.cache_dir), a read-only working directory (the default
run dirs) and an installed copy whose config tree must not be written. Each command either works with the
paths pointed elsewhere or prints one line naming the key to set.

Permission bits do not stop root, so as root an "unwritable" directory is a path under a regular file (ENOTDIR
for everybody) and a "read-only working directory" is one where the default run-dir roots (outputs/, multirun/)
and data/ are regular files; otherwise they are real 0555 directories.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from s3nas.config import CONF_DIR

AS_ROOT = os.geteuid() == 0
BBSSP = ["-m", "s3nas.profiling.profile_space", "supernet.depths=[1,1,1,1,1]", "profile.candidates=[]",
         "profile.block_types=[fused]", "profile.grid.fused.kernels=[3]", "profile.grid.fused.expansions=[2,4]",
         "profile.accuracy.epochs=1", "profile.accuracy.limit_train_batches=2", "data.image_size=8", "logger=none",
         "select.top_k=1", "output.name=bbssp_ro"]
CHECK = ["-m", "s3nas.search.check", "latency=2.5ms", "logger=none"]


@pytest.fixture
def read_only(tmp_path):
    """read_only(name) -> a directory path nothing can be written under (see the module docstring)."""
    made: list[Path] = []

    def _make(name: str) -> Path:
        if AS_ROOT:
            (tmp_path / f"{name}.file").write_text("a regular file\n")
            return tmp_path / f"{name}.file" / name
        path = tmp_path / name
        path.mkdir()
        path.chmod(0o555)
        made.append(path)
        return path

    yield _make
    for path in made:
        path.chmod(0o755)


@pytest.fixture
def read_only_cwd(tmp_path):
    """A working directory where the default run dirs (outputs/, multirun/) and data/ cannot be created."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if AS_ROOT:
        for name in ("outputs", "multirun", "data"):
            (cwd / name).write_text("a regular file\n")
    else:
        cwd.chmod(0o555)
    yield cwd
    cwd.chmod(0o755)


def _run(args: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """python <args> with ``env`` over this environment, without the variables that move the cache off HOME."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("S3NAS_CACHE_DIR", "XDG_CACHE_HOME", "HYDRA_FULL_ERROR", "MPLCONFIGDIR")}
    full_env.update(WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, *map(str, args)], check=False, cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:") or "Traceback" in line]


def test_an_unwritable_home_names_paths_cache_dir_or_works_with_it_set(tmp_path, read_only):
    """Both as real processes: BBSSP refuses the cache dir under an unwritable HOME before it imports torch or
    Lightning; the search's checks import torch, Lightning, timm and W&B with that HOME and pass."""
    home = read_only("home")
    env = {"HOME": str(home)}  # the default cache dir, ~/.cache/s3nas, follows HOME
    run_dir = tmp_path / "run"
    proc = _run([*BBSSP, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    # one error line, no traceback (matplotlib and onnxruntime add their own warnings about HOME on import)
    (line,) = _error_lines(proc)
    assert line.startswith(f"error: paths.cache_dir: cannot write in '{home / '.cache' / 's3nas' / 'bbssp'}'")
    assert "set paths.cache_dir=" in line and "S3NAS_CACHE_DIR" in line
    assert not run_dir.exists()  # nothing was started
    # the search's checks need no cache: they run as they are with HOME unwritable
    proc = _run([*CHECK, f"hydra.run.dir={tmp_path / 'check'}"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checks passed" in proc.stdout and (tmp_path / "check" / "config_resolved.yaml").is_file()


def test_a_read_only_working_directory_names_hydra_run_dir_or_works_with_it_set(tmp_path, run_inproc,
                                                                                 read_only_cwd):
    """The command in the test process, in the read-only working directory (tests/support/inprocess.py)."""
    proc = run_inproc(CHECK, cwd=read_only_cwd, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write 'outputs/"), proc.stderr[-3000:]
    assert "set hydra.run.dir=" in lines[0]
    run_dir = tmp_path / "run"
    proc = run_inproc([*CHECK, f"hydra.run.dir={run_dir}"], cwd=read_only_cwd)
    assert "checks passed" in proc.stdout
    saved = (run_dir / "config_resolved.yaml").read_text()
    assert f"output_dir: {run_dir}" in saved


def test_an_installed_copy_writes_its_candidates_entry_outside_the_package(tmp_path, run_cmd, read_only,
                                                                           read_only_cwd):
    """BBSSP with output.config_dir=null in an installed copy (its conf/ outside a checkout, read-only unless
    root) writes the entry into its run dir and says how to search in it; a read-only output.config_dir is
    one line naming that key (a real process that fails before it imports torch: ~1 CPU-s)."""
    conf = tmp_path / "site" / "s3nas" / "conf"
    shutil.copytree(CONF_DIR, conf, ignore=shutil.ignore_patterns("bbssp_*"))
    before = sorted(p.relative_to(conf).as_posix() for p in conf.rglob("*"))
    if not AS_ROOT:
        for path in [conf, *conf.rglob("*")]:
            if path.is_dir():
                path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    env = {"S3NAS_CONFIG_DIR": str(conf), "PYTHONDONTWRITEBYTECODE": "1"}
    cache = tmp_path / "cache"
    try:
        bad = read_only("config")
        proc = run_cmd([*BBSSP, f"output.config_dir={bad}", f"hydra.run.dir={tmp_path / 'bad'}",
                        f"paths.cache_dir={cache}"], cwd=read_only_cwd, env=env, check=False, timeout=300)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
        assert lines[0].startswith(f"error: output.config_dir: cannot write in '{bad / 'candidates'}'")
        assert "set output.config_dir=" in lines[0] and not (tmp_path / "bad").exists()

        run_dir = tmp_path / "run"
        run_cmd([*BBSSP, f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache}"], cwd=read_only_cwd, env=env,
                timeout=600)
    finally:
        for path in [conf, *conf.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    assert sorted(p.relative_to(conf).as_posix() for p in conf.rglob("*")) == before  # the package is untouched
    entry = run_dir / "conf" / "candidates" / "bbssp_ro.yaml"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["candidates_file"] == str(entry) and entry.read_text() == (run_dir / "bbssp_ro.yaml").read_text()
    assert summary["search_command"] == f"python search.py candidates=bbssp_ro hydra.searchpath=[file://{run_dir / 'conf'}]"
