"""Rich printing of the resolved config tree, and saving it next to the run's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from s3nas.utils.io import atomic_write_text

#: Top-level keys printed first (the rest follow in config order).
PRINT_ORDER = ("latency", "latency_ms", "data", "supernet", "candidates", "hardware", "loss", "schedule",
               "trainer", "logger", "callbacks", "paths")


def config_to_yaml(cfg: DictConfig) -> str:
    """The config as YAML with every interpolation resolved."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def print_config_tree(cfg: DictConfig, order: Sequence[str] = PRINT_ORDER, save_to: Optional[Path] = None,
                      console: Any = None) -> None:
    """Print ``cfg`` as a rich tree (one branch per top-level key); optionally save it as YAML."""
    tree = Tree("CONFIG", style="bold", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    for key in keys:
        value = cfg[key]
        branch = tree.add(str(key), style="bold cyan")
        if isinstance(value, DictConfig) or OmegaConf.is_list(value):
            text = OmegaConf.to_yaml(value, resolve=True)
        else:
            text = str(value)
        branch.add(Syntax(text.rstrip() or "null", "yaml", theme="ansi_dark", background_color="default"))
    (console or Console()).print(tree)
    if save_to is not None:
        atomic_write_text(save_to, config_to_yaml(cfg))
