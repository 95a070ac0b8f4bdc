"""Benchmark: few-shot device latency - accuracy and 90% interval coverage vs measured networks and device time.

python benchmarks/latency_fewshot.py [--devices cpu_onnxruntime,torch_cpu,openvino_cpu,executorch_cpu]
    [--ns 5,10,20,40,60] [--heldout 40] [--random-draws 10] [--no-full-table] [--input-size 224]
    [--num-classes 1000] [--cache-dir DIR] [--seed 0]

For each device (a conf/hardware name with ``device:`` set), at search.py's default deployment shape:

- ``active``: the networks ``hardware.budget.selection=active`` measures (greedy D-optimal over a pool of sampled
  architectures, s3nas.latency.fewshot), the first N of them for each N (the greedy choice is nested);
- ``random``: the same number of sampled architectures chosen at random (``random-draws`` subsets of N out of the
  measured random networks, scores averaged);
- ``held-out``: ``heldout`` architectures sampled like the measured table's correction networks (stratified from the
  smallest to the largest), never used in a fit.

All three sets are measured end to end in one interleaved, shuffled pass through the device's measurement log (as
search.py measures; cached, resumable). For each N the few-shot model is fitted on the first N networks and scored
on the held-out ones: MAPE, share within +-10%, and the empirical coverage of its 90% intervals; ``device_s`` is the
device time those N measurements took (each measurement's share of its chunk's wall time, the chunk's reference
network included, from the log). ``full`` is the full measured table (every block standalone + 60 networks,
corrected; ``hardware.budget.networks=null``) scored the same way with its device time. Last line: one JSON object;
per device ``within10_at_10``, ``within10_at_20``, ``mape_at_20``, ``coverage90_at_20``, ``device_s_at_20`` and the
whole curve.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from s3nas.arch.space import SearchSpace
from s3nas.config import compose_config
from s3nas.latency.device import make_device
from s3nas.latency.device_backend import DeviceBackend
from s3nas.latency.fewshot import SpaceFeatures, fit_fewshot, select_networks
from s3nas.latency.measured import measure_networks, network_id, open_log, sample_architectures
from results import record  # noqa: E402  (benchmarks/results.py: last JSON line + benchmarks/records/)

DEFAULT_DEVICES = "cpu_onnxruntime,torch_cpu,openvino_cpu,executorch_cpu"


def space_of(input_size: int, num_classes: int) -> SearchSpace:
    cfg = compose_config("search", ["debug=search_small"])
    return SearchSpace.from_config(cfg.supernet, cfg.candidates, num_classes=num_classes, input_size=input_size)


def scores(model, x_held: np.ndarray, y_held: np.ndarray) -> dict:
    predicted = x_held @ np.asarray(model.coef)
    errors = np.abs(predicted - y_held) / y_held
    half = np.array([model.half_width(x) for x in x_held])
    inside = np.abs(y_held - predicted) <= half * predicted
    return {"mape_pct": 100.0 * float(errors.mean()), "within10_pct": 100.0 * float(np.mean(errors <= 0.10)),
            "coverage90_pct": 100.0 * float(inside.mean()), "half_width_pct": 100.0 * float(np.median(half))}


def run_device(name: str, args) -> dict:
    cfg = compose_config("search", [f"hardware={name}"])
    device = make_device(cfg.hardware)
    if device is None:
        raise SystemExit(f"error: hardware={name} is a simulator profile, not a device")
    budget = cfg.hardware.budget
    space = space_of(args.input_size, args.num_classes)
    cache_dir = args.cache_dir or cfg.paths.cache_dir
    features = SpaceFeatures.of(space, budget.features)
    top = max(args.ns)
    if name in args.reuse_correction_bench:
        # the 40 + 40 networks benchmarks/latency_correction.py measured (same sampling, order and tag): the
        # selections choose among its fit networks, its held-out networks are scored; nothing is measured again
        nets = sample_architectures(space, args.heldout + 40, seed=1000 + args.seed)
        order = list(range(len(nets)))
        random.Random(args.seed).shuffle(order)
        fit_pool, held = nets[:40], nets[40:]
        top = min(top, len(fit_pool))
        args.ns = [n for n in args.ns if n <= top]
        sets = {"active": select_networks(space, features, top, selection="active", pool=fit_pool),
                "random": fit_pool[:top], "heldout": held}
        items = [("pool", k, nets[k]) for k in order]
        tag = f"bench:{args.seed}"
    else:
        sets = {"active": select_networks(space, features, top, selection="active", seed=args.seed,
                                          pool_size=budget.pool),
                "random": select_networks(space, features, top, selection="random", seed=args.seed,
                                          pool_size=budget.pool),
                "heldout": sample_architectures(space, args.heldout, seed=5000 + args.seed)}
        items = [(kind, k, nets[k]) for kind, nets in sets.items() for k in range(len(nets))]
        random.Random(args.seed).shuffle(items)  # one interleaved pass: load changes hit every set alike
        tag = f"fewshot-bench:{args.seed}"
    started = time.time()
    measured = measure_networks(device, space, [o for _, _, o in items], tag=tag, cache_dir=cache_dir)
    measure_s = time.time() - started
    log = open_log(space, device, cache_dir)
    ids = [network_id(tag, j, o) for j, (_, _, o) in enumerate(items)]
    chunks = {log.records[k].get("chunk") for k in ids if k in log} - {None}
    ref_s = sum(float(r.get("seconds") or 0.0) for k, r in log.records.items()
                if k.startswith("ref:") and r.get("chunk") in chunks)
    per_ref = ref_s / max(1, len(ids))  # the references' device time shared among the networks
    ms: dict[str, list] = {kind: [None] * len(nets) for kind, nets in sets.items()}
    secs: dict[str, list] = {kind: [0.0] * len(nets) for kind, nets in sets.items()}
    by_network = {tuple(map(tuple, o)): (value, (log.records.get(key) or {}).get("seconds"))
                  for (_, _, o), key, value in zip(items, ids, measured)}
    unlogged = any(s is None for _, s in by_network.values())  # measured before the log kept device time
    for kind, nets in sets.items():
        for k, o in enumerate(nets):
            value, seconds = by_network[tuple(map(tuple, o))]
            ms[kind][k], secs[kind][k] = value, (None if unlogged else float(seconds) + per_ref)
    x = {kind: features.matrix(nets) for kind, nets in sets.items()}
    y = {kind: np.array(v) for kind, v in ms.items()}
    fit_kwargs = dict(ridge=budget.ridge, prior_error_pct=budget.prior_error_pct, prior_weight=budget.prior_weight,
                      feature_set=budget.features)
    rows = []
    for n in args.ns:
        model = fit_fewshot(x["active"][:n], y["active"][:n], **fit_kwargs)
        rows.append({"n": n, "selection": "active", **scores(model, x["heldout"], y["heldout"]),
                     "device_s": None if unlogged else float(sum(secs["active"][:n]))})
        rng = random.Random(args.seed + n)
        draws = [list(range(n))] + [rng.sample(range(len(sets["random"])), n)
                                    for _ in range(args.random_draws - 1 if n < len(sets["random"]) else 0)]
        per_draw = [scores(fit_fewshot(x["random"][d], y["random"][d], **fit_kwargs), x["heldout"], y["heldout"])
                    for d in draws]
        rows.append({"n": n, "selection": "random", "draws": len(draws),
                     **{k: float(statistics.mean(s[k] for s in per_draw)) for k in per_draw[0]},
                     "within10_min_pct": float(min(s["within10_pct"] for s in per_draw)),
                     "device_s": None if unlogged else
                     float(statistics.mean(sum(secs["random"][i] for i in d) for d in draws))})
    full = None
    if args.full_table:
        backend = DeviceBackend.from_config(cfg.hardware)
        started = time.time()
        table = backend.table(space, cache_dir=cache_dir)
        table_wall_s = time.time() - started
        log = open_log(space, device, cache_dir)
        parts = [r for k, r in log.records.items() if k.split(":")[0] in ("block", "stem", "head", "net")]
        table_chunks = {r.get("chunk") for r in parts} - {None}
        logged = parts + [r for k, r in log.records.items() if k.startswith("ref:") and r.get("chunk") in table_chunks]
        predicted, inside = [], []
        for o, m in zip(sets["heldout"], y["heldout"]):
            p = backend.predict(space.arch_spec(o))
            predicted.append(p.latency_ms)
            inside.append(p.low_ms <= m <= p.high_ms)
        errors = np.abs(np.array(predicted) - y["heldout"]) / y["heldout"]
        unlogged = sum(1 for r in logged if r.get("seconds") is None)
        full = {"n": f"full ({table.num_entries} entries + {backend.correction_samples} networks)",
                "selection": "table", "mape_pct": 100.0 * float(errors.mean()),
                "within10_pct": 100.0 * float(np.mean(errors <= 0.10)),
                "coverage90_pct": 100.0 * float(np.mean(inside)),
                "half_width_pct": float(table.meta.get("interval", {}).get("sd_pct", 0.0)) * 1.645,
                "device_s": float(sum(float(r.get("seconds") or 0.0) for r in logged)) if not unlogged else None,
                "table_wall_s": table_wall_s, "measurements": len(logged)}
        backend.close()
    device.close()
    return {"device": name, "label": device.label, "rows": rows, "full": full, "measure_wall_s": measure_s,
            "networks_measured": len(ids)}


def summary_of(result: dict) -> dict:
    def at(n: int, selection: str, key: str):
        return next((r[key] for r in result["rows"] if r["n"] == n and r["selection"] == selection), None)

    out = {"within10_at_10": at(10, "active", "within10_pct"), "within10_at_20": at(20, "active", "within10_pct"),
           "mape_at_20": at(20, "active", "mape_pct"), "coverage90_at_20": at(20, "active", "coverage90_pct"),
           "device_s_at_10": at(10, "active", "device_s"), "device_s_at_20": at(20, "active", "device_s"),
           "random_within10_at_10": at(10, "random", "within10_pct"),
           "random_within10_at_20": at(20, "random", "within10_pct"),
           "coverage90_by_n": {r["n"]: r["coverage90_pct"] for r in result["rows"] if r["selection"] == "active"},
           "curve": result["rows"]}
    if result["full"]:
        out.update(full_within10=result["full"]["within10_pct"], full_mape=result["full"]["mape_pct"],
                   full_coverage90=result["full"]["coverage90_pct"], full_device_s=result["full"]["device_s"])
    return out


def print_table(result: dict) -> None:
    print(f"\n{result['device']} ({result['label']}): {result['networks_measured']} networks measured in "
          f"{result['measure_wall_s']:.0f} s")
    print(f"{'N':>6} {'selection':>9} {'MAPE %':>7} {'+-10% %':>8} {'cover90 %':>9} {'+-90% %':>8} {'device s':>9}")
    rows = result["rows"] + ([result["full"]] if result["full"] else [])
    for r in rows:
        device_s = "-" if r["device_s"] is None else f"{r['device_s']:.1f}"
        print(f"{str(r['n'])[:6]:>6} {r['selection']:>9} {r['mape_pct']:7.2f} {r['within10_pct']:8.1f} "
              f"{r['coverage90_pct']:9.1f} {r['half_width_pct']:8.1f} {device_s:>9}")
    if result["full"]:
        print(f"  full = {result['full']['n']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default=DEFAULT_DEVICES)
    ap.add_argument("--ns", default="5,10,20,40,60")
    ap.add_argument("--heldout", type=int, default=40)
    ap.add_argument("--random-draws", type=int, default=10)
    ap.add_argument("--no-full-table", dest="full_table", action="store_false")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--cache-dir", default=None, help="measurement logs (default: paths.cache_dir, as search.py)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse-correction-bench", default="",
                    help="devices (comma-separated) whose networks come from benchmarks/latency_correction.py's "
                         "40 fit + 40 held-out measurements in the same log (nothing measured again; the selections "
                         "choose among its 40 fit networks)")
    args = ap.parse_args()
    args.reuse_correction_bench = [d for d in args.reuse_correction_bench.split(",") if d]
    args.ns = sorted({int(n) for n in args.ns.split(",")})
    results = {}
    ns = args.ns
    for name in [d for d in args.devices.split(",") if d]:
        args.ns = list(ns)
        result = run_device(name, args)
        print_table(result)
        results[name] = summary_of(result)
    record({"input_size": args.input_size, "heldout": args.heldout, "devices": results}, "latency_fewshot")


if __name__ == "__main__":
    main()
