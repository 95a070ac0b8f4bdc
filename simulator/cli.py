"""``python -m simulator MODEL --hardware NAME``: simulate one model on one NPU profile and report.

MODEL is ``timm:<name>`` (torch and timm load only then) or a JSON file (a serialized simulator graph, or
any format a ``simulator.model_loaders`` plug-in understands, e.g. an s3nas architecture). Errors a user
can cause (unknown model or hardware, unreadable files, unsupported ops) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

EXIT_USER_ERROR = 2


class CliError(Exception):
    """A user error the CLI reports as one line (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used for ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulate one batch-1 inference of a CNN on an NPU profile (cycles, latency, DRAM traffic).")
    parser.add_argument("model", metavar="MODEL",
                        help="timm:<name> (e.g. timm:efficientnet_b0) or a JSON file (serialized graph or s3nas arch)")
    parser.add_argument("--hardware", "-H", default="midap", metavar="NAME",
                        help="bundled profile name (midap, systolic, eyeriss, ...) or a path to a YAML profile "
                             "(default: midap)")
    parser.add_argument("--input-size", type=int, default=None, metavar="N",
                        help="input height = width in pixels (default: the model's own, e.g. timm's pretrained cfg)")
    parser.add_argument("--per-layer", action="store_true", help="print the per-layer table, not just totals")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (total_cycles, latency_ms, dram_read_bytes, macs, layers, ...)")
    parser.add_argument("--csv", metavar="FILE", help="write the per-layer report as CSV")
    parser.add_argument("--trace", metavar="FILE", help="write a Chrome trace (chrome://tracing JSON) of the events")
    parser.add_argument("--save-graph", metavar="FILE",
                        help="write the layer graph as JSON (loadable as MODEL without torch)")
    return parser


def _load_profile(name: str):
    import simulator

    looks_like_path = name.endswith((".yaml", ".yml")) or os.sep in name or Path(name).exists()
    if not looks_like_path and name not in simulator.list_profiles():
        raise CliError(f"unknown hardware '{name}': available: {', '.join(simulator.list_profiles())} "
                       "(or a path to a .yaml profile)")
    try:
        return simulator.load_profile(name)
    except (simulator.ProfileError, OSError) as exc:
        raise CliError(f"--hardware {name}: {_one_line(exc)}") from None


def _load_graph(spec: str, input_size: int | None):
    import simulator
    from simulator.loaders import ModelLoadError, load_model_graph

    try:
        return load_model_graph(spec, input_size)
    except (ModelLoadError, simulator.UnsupportedOpError) as exc:
        raise CliError(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _write_text(path: str, text: str) -> None:
    """Write atomically (temp file + rename) so no half-written file is left behind."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(target)
    except OSError as exc:
        raise CliError(f"cannot write '{path}': {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run the CLI for parsed ``args``; returns the exit status."""
    import simulator

    profile = _load_profile(args.hardware)  # before the model: a bad name fails before torch loads
    graph = _load_graph(args.model, args.input_size)
    try:
        report = simulator.simulate(graph, profile, trace=bool(args.trace))
    except simulator.UnsupportedOpError as exc:
        raise CliError(_one_line(exc)) from None
    if args.save_graph:
        _write_text(args.save_graph, json.dumps(graph.to_dict()))
    if args.csv:
        try:
            report.to_csv(args.csv)
        except OSError as exc:
            raise CliError(f"cannot write '{args.csv}': {exc.strerror or exc}") from None
    if args.trace:
        _write_text(args.trace, json.dumps(report.chrome_trace()))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.to_table(per_layer=args.per_layer))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m simulator``."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
