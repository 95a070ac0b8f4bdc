"""``python -m simulator MODEL [MODEL ...] --hardware NAME[,NAME ...]``: simulate models on NPU profiles.

MODEL is ``timm:<name>`` (torch and timm load only then, and the graph is cached for the next call), an
``.onnx`` file (needs only ``onnx``) or a JSON file (a serialized simulator graph, or any format a
``simulator.model_loaders`` plug-in understands, e.g. an s3nas architecture). Every model runs on every
profile; ``--json`` prints one object for one run and a list for several. Errors a user can cause
(unknown model or hardware, unreadable files, unsupported ops, problems past the simulator's limits) print
one line and exit 2.
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
        description="Simulate one batch-1 inference of CNNs on NPU profiles (cycles, latency, DRAM traffic).")
    parser.add_argument("models", metavar="MODEL", nargs="+",
                        help="timm:<name> (e.g. timm:efficientnet_b0), a .onnx file, a JSON file (serialized "
                             "graph or s3nas arch), or block:<block string> (e.g. block:r1_k3_s11_e6_i32_o32_c0, "
                             "with --input-size); several run one after the other")
    parser.add_argument("--hardware", "-H", default="midap", metavar="NAME[,NAME...]",
                        help="bundled profile name(s) (midap, systolic, eyeriss, ...) or path(s) to YAML profiles, "
                             "comma-separated (default: midap)")
    parser.add_argument("--input-size", type=int, default=None, metavar="N",
                        help="input height = width in pixels (default: the model's own, e.g. timm's pretrained "
                             "cfg; an arch.json is rebuilt at this size)")
    parser.add_argument("--input-onchip", action="store_true",
                        help="start with the model input in the feature memory (as for a block inside a network); "
                             "default: in DRAM")
    parser.add_argument("--per-layer", action="store_true", help="print the per-layer table, not just totals")
    parser.add_argument("--json", action="store_true",
                        help="print JSON (total_cycles, latency_ms, dram_read_bytes, macs, layers, ...): one "
                             "object for one model on one profile, else a list of them")
    parser.add_argument("--csv", metavar="FILE", help="write the per-layer report as CSV ({model} and {hardware} "
                                                    "in FILE are replaced; needed for several runs)")
    parser.add_argument("--trace", metavar="FILE", help="write a Chrome trace (chrome://tracing JSON) of the events "
                                                      "({model}/{hardware} as for --csv)")
    parser.add_argument("--save-graph", metavar="FILE",
                        help="write the layer graph as JSON (loadable as MODEL without torch; {model} as for --csv)")
    parser.add_argument("--no-cache", action="store_true", help="rebuild timm graphs instead of reading the "
                        "graph cache ($SIMULATOR_CACHE_DIR, default ~/.cache/s3nas-simulator)")
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


def _load_graph(spec: str, input_size: int | None, use_cache: bool = True):
    import simulator
    from simulator.loaders import ModelLoadError, load_model_graph

    try:
        return load_model_graph(spec, input_size, use_cache=use_cache)
    except (ModelLoadError, simulator.UnsupportedOpError, simulator.SimulationLimitError) as exc:
        raise CliError(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _write_text(path: str, text: str) -> None:
    """Atomically for a regular file; in place for a device/FIFO; through a symlink (``fileio``)."""
    from simulator.fileio import write_output

    try:
        write_output(path, text)
    except OSError as exc:
        raise CliError(f"cannot write '{path}': {exc.strerror or exc}") from None


def _output_path(template: str | None, option: str, model: str, hardware: str, runs: int) -> str | None:
    if template is None:
        return None
    if runs > 1 and "{" not in template:
        raise CliError(f"{option} {template}: several runs would overwrite one file; put {{model}} and/or "
                       "{hardware} in the name")
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(model).name.replace("timm:", ""))
    try:
        return template.format(model=safe, hardware=hardware)
    except (KeyError, IndexError, ValueError) as exc:
        raise CliError(f"{option} {template}: only {{model}} and {{hardware}} may be used ({exc})") from None


def _simulate(graph, profile, trace: bool, input_in_dram: bool = True):
    import simulator

    try:
        return simulator.simulate(graph, profile, trace=trace, input_in_dram=input_in_dram)
    except (simulator.UnsupportedOpError, simulator.SimulationLimitError) as exc:
        raise CliError(f"{graph.name} on {profile.name}: {_one_line(exc)}") from None


def run(args: argparse.Namespace) -> int:
    """Run the CLI for parsed ``args``; returns the exit status."""
    names = [name.strip() for name in args.hardware.split(",")]
    if not all(names):
        raise CliError(f"--hardware {args.hardware!r}: empty profile name (use NAME[,NAME...])")
    profiles = [_load_profile(name) for name in names]  # before the models: a bad name fails before torch
    runs = len(args.models) * len(profiles)
    results = []
    for spec in args.models:
        graph = _load_graph(spec, args.input_size, not args.no_cache)
        save = _output_path(args.save_graph, "--save-graph", spec, "", len(args.models))
        if save:
            _write_text(save, json.dumps(graph.to_dict()))
        for name, profile in zip(names, profiles):
            report = _simulate(graph, profile, trace=bool(args.trace), input_in_dram=not args.input_onchip)
            csv_path = _output_path(args.csv, "--csv", spec, Path(name).stem, runs)
            if csv_path:
                _write_text(csv_path, report.to_csv())
            trace_path = _output_path(args.trace, "--trace", spec, Path(name).stem, runs)
            if trace_path:
                _write_text(trace_path, json.dumps(report.chrome_trace()))
            if args.json:
                results.append(report.to_dict())
            else:
                print(report.to_table(per_layer=args.per_layer), flush=True)
    if args.json:
        print(json.dumps(results[0] if runs == 1 else results))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m simulator``."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
