"""Hydra's run mode of a command line without a composition of its own, for the test processes (conftest.py, the fork
server).

Before a command runs, Hydra composes its whole config once only to read ``hydra.mode`` (``Hydra.get_mode``, in
MULTIRUN mode), then composes it again for the run: half of the compositions a short command spends. ``get_mode``
returns None for an unset mode (then Hydra runs the command in RUN mode, or in MULTIRUN mode with ``-m``). Here the
answer is None without composing when nothing the command line selects can set ``hydra.mode``:

- the files of conf/ that set it (``hparams_search/optuna.yaml``: ``mode: MULTIRUN``), and the files whose defaults
  list selects from a group holding one, make their config groups (``hparams_search``) "mode-setting"
  (``mode_setting()``, read from conf/ once);
- a command line that selects such a group (``hparams_search=optuna``), names ``hydra.mode`` or
  ``hydra.searchpath``, or whose config is one of those files, or any command with ``$S3NAS_CONFIG_DIR`` set (a
  config tree of another origin) asks Hydra's own ``get_mode``.

A command's primary config never selects a mode-setting group by default (their default option is ``null``):
tests/test_compose_speedups.py checks that, and that the answers are Hydra's.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

_original_get_mode = None
#: overrides naming Hydra's own keys that set the mode or add config files of other origins
_HYDRA_KEYS = re.compile(r"^[+~]*hydra\.(mode|searchpath)\b")


def install() -> None:
    """Replace ``Hydra.get_mode`` (idempotent)."""
    global _original_get_mode
    if _original_get_mode is not None:
        return
    from hydra._internal.hydra import Hydra

    _original_get_mode = Hydra.get_mode
    Hydra.get_mode = get_mode


def _sets_mode(node) -> bool:
    return isinstance(node, dict) and isinstance(node.get("hydra"), dict) and "mode" in node["hydra"]


def _selected_groups(node) -> set[str]:
    """Config groups a defaults list selects from (``- hparams_search: null``, ``- override /hydra/sweeper: x``)."""
    groups = set()
    for entry in (node.get("defaults") or []) if isinstance(node, dict) else []:
        if isinstance(entry, dict):
            for key in entry:
                groups.add(str(key).split("@")[0].replace("override ", "").strip().strip("/"))
    return groups


@functools.lru_cache(maxsize=None)
def mode_setting(conf_dir: str) -> tuple[frozenset[str], frozenset[str]]:
    """(config groups, top-level config names) of ``conf_dir`` whose files may set ``hydra.mode``."""
    import yaml

    files = {}
    for path in sorted(Path(conf_dir).rglob("*.yaml")):
        node = yaml.safe_load(path.read_text()) or {}
        rel = path.relative_to(conf_dir)
        if rel.parts[0] == "hydra":  # the hydra group's files are the hydra node itself
            node = {"hydra": node}
        files[rel] = node
    group_of = {rel: "/".join(rel.parts[:-1]) for rel in files}
    setting = {rel for rel, node in files.items() if _sets_mode(node)}
    while True:  # a file selecting from a group with a mode-setting file may set it too
        groups = {group_of[rel] for rel in setting}
        more = {rel for rel, node in files.items() if rel not in setting and _selected_groups(node) & groups
                and group_of[rel] != ""}
        if not more:
            break
        setting |= more
    groups = frozenset(group_of[rel] for rel in setting if group_of[rel])
    top = frozenset(rel.stem for rel in setting if not group_of[rel])
    return groups, top


def _group_of_override(override: str) -> str:
    key = override.split("=", 1)[0].lstrip("+~")
    return key.split("@")[0].replace(".", "/")


def get_mode(self, config_name, overrides):
    """None (Hydra's answer for an unset ``hydra.mode``) when nothing on the command line can set it."""
    from s3nas.config import CONF_DIR

    groups, top = mode_setting(str(CONF_DIR))
    if (os.environ.get("S3NAS_CONFIG_DIR") or config_name in top
            or any(_HYDRA_KEYS.match(str(o)) or _group_of_override(str(o)) in groups for o in overrides)):
        return _original_get_mode(self, config_name=config_name, overrides=overrides)
    return None
