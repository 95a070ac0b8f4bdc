"""Latency tables of the search space the debug configs search, built once per test session and copied into a
test's own cache dir: ``seed_tables(cache_dir, "midap")`` (the ``seed_tables`` fixture of conftest.py).

Building the table of the default space (224 px deployment) on one hardware costs ~4.7 CPU-s (two simulator
worker processes); a search whose ``paths.cache_dir`` is a fresh temp dir builds it again. Tests about what a
command writes, resumes or reports (not about the table cache itself) start from a copy of it instead. The tables
are built by the same code the search uses (``backend.table``), in a directory shared by the session's xdist
workers (the first worker builds under the cache's own file lock, the other loads), so a copied file is exactly
what the search would have written: same name, same key. Tests of the table cache (building, locking, a full disk
or a corrupt file) keep an empty cache dir.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence


def shared_table_dir(basetemp: Path) -> Path:
    """The directory all xdist workers of this session share (the parent of a worker's basetemp)."""
    import os

    root = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    path = root / "seeded-latency-tables"
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_tables(shared: Path, cache_dir: Path, hardware: Sequence[str] = ("midap",),
                overrides: Sequence[str] = ("debug=search_tiny",)) -> list[Path]:
    """Copy the latency table of the search space of ``overrides`` on each of ``hardware`` into ``cache_dir``
    (built into ``shared`` on first use); returns the copied files."""
    from s3nas.arch.space import SearchSpace
    from s3nas.config import compose_config
    from s3nas.latency import lut
    from s3nas.latency.backend import make_backend

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in hardware:
        cfg = compose_config("search", [*overrides, f"hardware={name}"])
        space = SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=int(cfg.deploy.num_classes),
                                        input_size=int(cfg.deploy.input_size), in_channels=int(cfg.deploy.in_channels))
        backend = make_backend(cfg.hardware)
        # in this process: the same table as the search's parallel build (tests/test_lut.py::
        # test_parallel_build_matches_serial) without two spawned workers (~2.5 CPU-s of imports each)
        backend.table(space, cache_dir=shared, workers=1, progress=False)
        source = lut.cache_path(shared, space, backend.profile, lut.table_key(space, backend.profile))
        assert source.is_file(), f"the seeded table was not written where the search looks for it: {source}"
        copied.append(Path(shutil.copy2(source, cache_dir / source.name)))
    return copied
