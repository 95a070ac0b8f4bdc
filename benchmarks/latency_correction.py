"""Benchmark: raw sum of standalone block measurements vs the layer-adaptive corrected sum, on held-out networks.

python benchmarks/latency_correction.py [--devices cpu_onnxruntime,sim_midap_blackbox] [--dtype fp32|int8] [--fit 40]
    [--heldout 40] [--input-size 224] [--num-classes 1000] [--sim-input-size 224] [--sim-noise-pct 2] [--cache-dir DIR] [--seed 0]

For each device (a conf/hardware name with ``device:`` set): the per-block table is measured block by block
(standalone blocks in their shape context, stem, head; cached and resumable like search.py's table, the same
cache by default), then ``fit + heldout`` sampled architectures are measured end to end in one interleaved,
shuffled pass; the corrections are fitted on the ``fit`` networks and scored on the ``heldout`` ones: MAPE and
the share within +-5% / +-10% against the measured end-to-end latency. With ``hardware.reference`` (the CPU
devices) every chunk of measurements also times a reference (a mid-size block for blocks, a mid-size network
for networks) and the scores use measurements normalised by it (``s3nas.latency.measured``); the same data as
measured (raw blocks, raw networks) is scored too (``as_measured``). ``noise_pct`` is the repeat-measurement
variation: ``--noise-nets`` held-out networks measured again in a later pass (with its own reference),
median |second - first| / first after normalisation (``noise_raw_pct``: as measured); ``repeat_within10_pct``
is the share of those repeats within +-10% of the first measurement (what any predictor can reach at this
noise); ``model_error_pct`` is the default correction's error with that noise taken out (rms over the repeated
networks of sqrt(mean(e1 e2)), e1 and e2 its log errors against the two measurements: independent noise cancels;
``model_error_hi_pct`` adds one standard error of that mean: the estimate is loose when the noise is large;
``--noise-nets 40`` repeats every held-out network). The search space is the S3NAS supernet at search.py's
default deployment shape (``deploy.input_size`` 224, ``deploy.num_classes`` 1000), so the table scored here is
the one ``python search.py hardware=<device>`` builds and the two share the log; ``--input-size 16
--num-classes 10`` is the weight-streaming-bound corner (docs/notes/blackbox.md). ``--dtype int8``
(``hardware.dtype=int8``; default devices then cpu_onnxruntime only, the one device that takes it) times the INT8 QDQ model of every block and network. Last line: one JSON object (keys of the first device at top level, every device under
``devices``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from s3nas.latency.device import make_device
from s3nas.latency.correction import METHODS, fit_correction, noise_free_error_pct, score
from s3nas.latency.measured import (block_table, build_measured_table, measure_networks, open_log, remeasure_networks,
                                  sample_architectures)
from s3nas.config import compose_config
from s3nas.arch.space import SearchSpace
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)


def space_of(input_size: int, num_classes: int) -> SearchSpace:
    cfg = compose_config("search", ["debug=search_small"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=num_classes, input_size=input_size)


def run_device(name: str, args) -> dict:
    overrides = [f"hardware={name}", f"hardware.dtype={args.dtype}"]
    simulated = False
    cfg = compose_config("search", overrides)
    if cfg.hardware.get("device") == "simulated":
        simulated = True
        cfg = compose_config("search", overrides + [f"hardware.noise_pct={args.sim_noise_pct}"])
    device = make_device(cfg.hardware)
    if device is None:
        raise SystemExit(f"error: hardware={name} is a simulator profile, not a device")
    size = args.sim_input_size if simulated else args.input_size
    space = space_of(size, args.num_classes)
    cache_dir = args.cache_dir or cfg.paths.cache_dir
    started = time.time()
    raw = build_measured_table(space, device, cache_dir=cache_dir, samples=0, seed=args.seed, progress=True).raw
    table_s = time.time() - started
    nets = sample_architectures(space, args.fit + args.heldout, seed=1000 + args.seed)
    order = list(range(len(nets)))
    random.Random(args.seed).shuffle(order)  # fit and held-out networks measured interleaved
    shuffled = [nets[k] for k in order]
    measured_shuffled = measure_networks(device, space, shuffled, tag=f"bench:{args.seed}", cache_dir=cache_dir)
    log = open_log(space, device, cache_dir)
    as_measured_shuffled = measure_networks(device, space, shuffled, tag=f"bench:{args.seed}", cache_dir=cache_dir,
                                            progress=False, raw=True)  # all in the log now: nothing measured
    measured, as_measured = [0.0] * len(nets), [0.0] * len(nets)
    for k, value, value_raw in zip(order, measured_shuffled, as_measured_shuffled):
        measured[k], as_measured[k] = value, value_raw
    held = nets[args.fit:]

    def scores(table, values):
        fit = list(zip(nets[:args.fit], values[:args.fit]))
        held_ms = values[args.fit:]
        rows = {"raw": score([table.estimate_ms(o) for o in held], held_ms)}
        corrections = {}
        for method in (m for m in METHODS if m != "none"):
            correction = fit_correction(table, fit, method, args.ridge)
            corrected = correction.apply(table)
            rows[method] = score([corrected.estimate_ms(o) for o in held], held_ms)
            corrections[method] = correction
        return rows, corrections

    rows, corrections = scores(raw, measured)
    held_ms = measured[args.fit:]
    raw_pred = [raw.estimate_ms(o) for o in held]
    result_extra = {}
    if device.reference:  # the same measurements without the reference normalisation
        rows_as_measured, _ = scores(block_table(space, log, raw=True), as_measured)
        result_extra = {"as_measured": rows_as_measured,
                        "reference_ms": {k: log.reference_ms(k) for k in ("block", "net")},
                        "reference_chunks": sum(1 for r in log.records.values() if r.get("reference") == "net")}
        refs = [float(r["median_ms"]) for r in log.records.values() if r.get("reference") == "net"]
        result_extra["net_reference_range_ms"] = [min(refs), max(refs)]
    # repeat-measurement noise: a later pass over some held-out networks (not cached; its own reference)
    repeat = held[:args.noise_nets]
    again_raw, again = remeasure_networks(device, space, repeat, cache_dir=cache_dir)
    first_raw = as_measured[args.fit:args.fit + len(repeat)]

    def spread(first, second):
        diffs = [100.0 * abs(b - a) / a for a, b in zip(first, second)]
        return (statistics.median(diffs) if diffs else 0.0,
                100.0 * sum(d <= 10.0 for d in diffs) / len(diffs) if diffs else 100.0)

    noise, repeat_within10 = spread(held_ms, again)
    noise_raw, repeat_within10_raw = spread(first_raw, again_raw)
    # the correction's own error with the measurement noise taken out (the repeated networks' two measurements)
    corrected_table = corrections[args.correction].apply(raw)
    model_error, model_error_hi = noise_free_error_pct([corrected_table.estimate_ms(o) for o in repeat],
                                                       held_ms[:len(repeat)], again)
    result = {"device": name, "dtype": device.dtype, "source": device.source, "input_size": size, "n_fit": args.fit, "n_heldout": len(held),
              "heldout_ms_range": [min(held_ms), max(held_ms)], "noise_pct": noise,
              "repeat_within10_pct": repeat_within10, "model_error_pct": model_error,
              "model_error_hi_pct": model_error_hi, "noise_raw_pct": noise_raw,
              "repeat_within10_raw_pct": repeat_within10_raw, "reference": bool(device.reference), **result_extra,
              "table_seconds": table_s,
              "seconds": time.time() - started, "scores": rows,
              "correction": args.correction, "noise_nets": len(repeat), "raw_mape_pct": rows["raw"]["mape_pct"],
              "corrected_mape_pct": rows[args.correction]["mape_pct"],
              "within5_pct": rows[args.correction]["within5_pct"],
              "within10_pct": rows[args.correction]["within10_pct"],
              "raw_within10_pct": rows["raw"]["within10_pct"]}
    if simulated:  # known truth: the corrected table against noiseless simulation too
        truth = [device.simulate_ms(space.arch_spec(o)) for o in held]
        corrected = corrections[args.correction].apply(raw)
        result["vs_truth"] = {"raw": score(raw_pred, truth),
                              args.correction: score([corrected.estimate_ms(o) for o in held], truth)}
        result["sim_noise_pct"] = args.sim_noise_pct
    return result


def _label(result: dict) -> str:
    return result["device"] + ("" if result.get("dtype", "fp32") == "fp32" else f" {result['dtype']}")


def print_table(results: list[dict]) -> None:
    print(f"{'device':<25} {'px':>4} {'table':<33} {'MAPE %':>8} {'+-5% %':>8} {'+-10% %':>8}   held-out, noise")
    for r in results:
        for method, s in r["scores"].items():
            print(f"{_label(r):<25} {r['input_size']:>4} {method:<33} {s['mape_pct']:>8.2f} {s['within5_pct']:>8.1f} "
                  f"{s['within10_pct']:>8.1f}   n={r['n_heldout']}, noise {r['noise_pct']:.1f}% "
                  f"(repeats within 10%: {r['repeat_within10_pct']:.0f}%)")
        print(f"{_label(r):<25} {r['input_size']:>4} {r['correction']} error without the noise: "
              f"{r['model_error_pct']:.1f}% rms, up to {r['model_error_hi_pct']:.1f}% (+1 s.e.; over the "
              f"{r['noise_nets']} repeated held-out networks)")
        for method, s in r.get("as_measured", {}).items():
            print(f"{_label(r):<25} {r['input_size']:>4} {method + ' as measured':<33} {s['mape_pct']:>8.2f} "
                  f"{s['within5_pct']:>8.1f} {s['within10_pct']:>8.1f}   no reference normalisation, noise "
                  f"{r['noise_raw_pct']:.1f}% (repeats within 10%: {r['repeat_within10_raw_pct']:.0f}%)")
        if "vs_truth" in r:
            for method, s in r["vs_truth"].items():
                print(f"{_label(r):<25} {r['input_size']:>4} {method + ' vs truth':<33} {s['mape_pct']:>8.2f} "
                      f"{s['within5_pct']:>8.1f} {s['within10_pct']:>8.1f}   noiseless simulation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default=None,
                    help="conf/hardware names (default: cpu_onnxruntime,sim_midap_blackbox; cpu_onnxruntime with int8)")
    ap.add_argument("--dtype", default="fp32", help="hardware.dtype: fp32, or int8 (onnxruntime devices)")
    ap.add_argument("--fit", type=int, default=40)
    ap.add_argument("--heldout", type=int, default=40)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--sim-input-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--sim-noise-pct", type=float, default=2.0)
    ap.add_argument("--correction", default="stage_affine_weights", choices=[m for m in METHODS if m != "none"])
    ap.add_argument("--ridge", type=float, default=0.1)
    ap.add_argument("--noise-nets", type=int, default=8)
    ap.add_argument("--cache-dir", default=None, help="measurement logs (default: paths.cache_dir, as search.py)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    devices = args.devices or ("cpu_onnxruntime,sim_midap_blackbox" if args.dtype == "fp32" else "cpu_onnxruntime")
    results = [run_device(name.strip(), args) for name in devices.split(",") if name.strip()]
    print_table(results)
    first = results[0]
    keys = ("raw_mape_pct", "corrected_mape_pct", "within5_pct", "within10_pct", "raw_within10_pct", "n_heldout",
            "noise_pct", "repeat_within10_pct", "model_error_pct", "noise_raw_pct", "device", "dtype", "correction",
            "reference")
    record({**{k: first[k] for k in keys}, "devices": results}, "latency_correction")


if __name__ == "__main__":
    main()
