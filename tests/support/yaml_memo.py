"""``OmegaConf.load`` remembered by the YAML text, for the test processes (conftest.py, the fork server).

Every Hydra composition parses its ~20 config files again (ours and Hydra's own) with PyYAML's pure-Python loader:
~1.8 ms a file, about a fifth of a composition, and the suite composes ~1,000 times (tests' ``compose_config``,
twice per command run in the test process: Hydra composes once for the run mode and once for the run). With
``install()`` a text loaded before is a deep copy of the config it gave (~0.3 ms) instead of a new parse.

It changes nothing a test can see: the key is the whole text read (not the path nor a time stamp), so a file
written by a test, or rewritten with other content, is parsed; what is returned is a copy nobody else holds; a text
that does not load (bad YAML, a top-level scalar) goes to OmegaConf's own ``load`` with the original argument every
time, so its error and message are OmegaConf's. Streams that cannot seek back go to ``load`` unchanged.
"""

from __future__ import annotations

import copy
import io
import os

from omegaconf import OmegaConf

_original_load = None
_memo: dict = {}


def install() -> None:
    """Replace ``OmegaConf.load`` by the remembering one (idempotent)."""
    global _original_load
    if _original_load is not None:
        return
    _original_load = OmegaConf.load
    OmegaConf.load = staticmethod(load)


def load(file_):
    """``OmegaConf.load(file_)``, a deep copy of an earlier result for a text seen before."""
    if isinstance(file_, (str, bytes, os.PathLike)):
        with io.open(os.path.abspath(file_), "r", encoding="utf-8") as f:
            text = f.read()
        rewind = None
    elif hasattr(file_, "read") and hasattr(file_, "seek") and file_.seekable():
        start = file_.tell()
        text = file_.read()

        def rewind():
            file_.seek(start)
    else:
        return _original_load(file_)
    hit = _memo.get(text)
    if hit is not None:
        return copy.deepcopy(hit)
    if rewind is not None:
        rewind()
    cfg = _original_load(file_)  # an error here is OmegaConf's own, and nothing is remembered
    _memo[text] = copy.deepcopy(cfg)
    return cfg
