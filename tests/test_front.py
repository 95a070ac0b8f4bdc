"""Several networks from one search: ``latency=[...]`` (one network per target, a front) and ``hardware=[a,b]``
(one network meeting a target on every hardware). The targets' threshold banks, the command-line forms and their
errors, the outputs checked against independent simulations, and resume of a many-target search."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
import torch
from inprocess import SHORT_SEARCH, SMALL_SPACE, SMALL_SPLITS

from s3nas.config import resolve_target_ms, resolve_targets_ms
from s3nas.errors import ConfigError
from s3nas.outputs import FrontSummary, SearchSummary, load_summary
from s3nas.runtime.entry import prepare_config
from s3nas.runtime.hardware_list import expand_hardware_list

REPO_ROOT = Path(__file__).resolve().parents[1]
# tiny searches at 16 px and 2 batches an epoch (6 steps: 2 warm-up, 4 search; 1 validation batch, 2 for the BN
# statistics) in the 6-position MBConv space (SMALL_SPACE; its table built in the command's process, in the test's
# own paths.cache_dir): what is tested is the bookkeeping of several networks, not how far each search gets or the
# space. Its networks span 0.32-0.69 ms on midap and 0.57-1.01 ms on systolic (224 px deployment), so the targets
# below lie inside those ranges and each bank's latency term trains its thresholds
TINY = ["search.py", "debug=search_tiny", "data.image_size=16", "logger=none", *SHORT_SEARCH, *SMALL_SPLITS,
        *SMALL_SPACE]


def simulate(arch_jsons: Sequence[Path], hardware: Sequence[str]) -> list[float]:
    """The latency of each network of ``arch_jsons`` on each of ``hardware`` (network by network, then hardware by
    hardware) by one independent `python -m simulator` process (not the search's process or its latency table)."""
    proc = subprocess.run([sys.executable, "-m", "simulator", *map(str, arch_jsons), "--hardware", ",".join(hardware),
                           "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert len(reports) == len(arch_jsons) * len(hardware)
    return [float(report["latency_ms"]) for report in reports]


# ------------------------------------------------------------------------------------ command line and config
def test_hardware_list_is_rewritten_to_one_hardware_plus_extra_ones():
    argv = ["latency=[2.5ms,3.5ms]", "hardware=[midap,systolic,eyeriss]", "seed=1"]
    assert expand_hardware_list(argv, "search") == [
        "latency=[2.5ms,3.5ms]", "hardware=midap", "+hardware@extra_hardware.systolic=systolic",
        "+hardware@extra_hardware.eyeriss=eyeriss", "seed=1"]
    assert expand_hardware_list(["hardware=[midap]"], "search") == ["hardware=midap"]
    assert expand_hardware_list(["hardware=midap,systolic", "-m"], "search") == ["hardware=midap,systolic", "-m"]
    with pytest.raises(ConfigError, match=r"hardware: midap is listed twice"):
        expand_hardware_list(["hardware=[midap,midap]"], "search")
    with pytest.raises(ConfigError, match=r"hardware: this command takes one hardware, got 2"):
        expand_hardware_list(["hardware=[midap,systolic]"], "train")
    with pytest.raises(ConfigError, match=r"not a list of hardware names"):
        expand_hardware_list(["hardware=[]"], "search")


def test_targets_resolve_per_hardware_and_refuse_what_cannot_pair(compose_cfg):
    cfg = compose_cfg(["latency=[3ms,1.5ms,2000us]"])
    assert resolve_targets_ms(cfg) == pytest.approx([3.0, 1.5, 2.0])
    prepare_config(cfg)
    assert cfg.latency_ms is None and list(cfg.latency_targets_ms) == pytest.approx([3.0, 1.5, 2.0])
    with pytest.raises(ConfigError, match=r"latency: this command takes one target, got 3"):
        resolve_target_ms(cfg)
    both = compose_cfg(["hardware=midap", "+hardware@extra_hardware.systolic=systolic", "latency=[2.5ms,3.5ms]"])
    assert resolve_targets_ms(both) == pytest.approx([2.5, 3.5])
    # cycles use the clock of the hardware the target is for
    from s3nas.config import hardware_clock_hz

    cycles = compose_cfg(["hardware=midap", "+hardware@extra_hardware.systolic=systolic",
                          "latency=[1000000cycles,1000000cycles]"])
    expected = [1e6 / hardware_clock_hz(h) * 1e3 for h in (cycles.hardware, cycles.extra_hardware.systolic)]
    assert resolve_targets_ms(cycles) == pytest.approx(expected)
    three = compose_cfg(["hardware=midap", "+hardware@extra_hardware.systolic=systolic", "latency=[1ms,2ms,3ms]"])
    with pytest.raises(ConfigError, match=r"latency: 3 targets \(\[1ms,2ms,3ms\]\) for 2 hardware \(\[midap,systolic\]\)"):
        resolve_targets_ms(three)
    with pytest.raises(ConfigError, match="listed twice"):
        resolve_targets_ms(compose_cfg(["latency=[2ms,2000us]"]))


# ------------------------------------------------------------------------------------ threshold banks
def _tiny_module(targets):
    from s3nas.arch.space import SearchSpace
    from s3nas.nn.supernet import Supernet
    from s3nas.search.module import OptimSettings, SearchModule
    from s3nas.search.objectives import LatencyObjective

    small = dict(widths=[8, 16], depths=[1, 1], strides=[2, 2], stem_channels=8, head_channels=16, block_type="mbconv")
    space = SearchSpace.from_config(small, {}, num_classes=10)
    supernet = Supernet(space, num_classes=10)
    optim = OptimSettings(lr=0.01, alpha=0.9, momentum=0.0, eps=1e-3, weight_decay=0.0, decay_rate=0.97, decay_steps=10,
                          gradient_clip_val=None, threshold_lr_scale=1.0, threshold_eps=None, threshold_momentum=None,
                          threshold_square_avg_init=None, threshold_init="zero", threshold_init_margin=0.0)
    banks = [[LatencyObjective("midap", None, t, t)] for t in targets]
    return SearchModule(supernet, optim, banks=banks, warmup_epochs=0)


def test_banks_keep_their_own_thresholds_and_survive_a_checkpoint():
    module = _tiny_module([1.0, 2.0, 3.0])
    params = list(module.supernet.threshold_parameters())
    for bank in module.banks:
        bank.store(params)
    with torch.no_grad():
        for p in params:
            p.fill_(0.25)  # bank 0 trains
    module.use_bank(2)
    assert module.target_ms == 3.0 and all(float(p.detach().abs().max()) == 0.0 for p in params)
    with torch.no_grad():
        for p in params:
            p.fill_(-0.5)  # bank 2 trains
    module.use_bank(0)
    assert all(torch.all(p == 0.25) for p in params)
    module.use_bank(2)
    assert all(torch.all(p == -0.5) for p in params)
    module.thresholds_initialised = True
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    restored = _tiny_module([1.0, 2.0, 3.0])
    restored.on_load_checkpoint(checkpoint)
    assert restored.bank_index == 2
    restored.use_bank(0)
    # bank 0's thresholds came from the checkpoint, not from the supernet restored
    assert all(torch.all(p == 0.25) for p in restored.supernet.threshold_parameters())
    with pytest.raises(ConfigError, match=r"latency: the checkpoint searched 3 network\(s\), this run 2"):
        _tiny_module([1.0, 2.0]).on_load_checkpoint(checkpoint)


def test_one_objective_per_hardware_sums_the_terms_and_needs_every_target():
    from s3nas.search.objectives import LatencyObjective, closeness, meets

    objectives = [LatencyObjective("midap", None, 2.0, 1.9), LatencyObjective("systolic", None, 3.0, 2.9)]
    assert meets(objectives, [1.9, 2.9], loss_target=True)
    assert not meets(objectives, [1.9, 2.95], loss_target=True)
    assert meets(objectives, [1.95, 2.95], loss_target=False)
    assert closeness(objectives, [1.0, 3.0]) == pytest.approx((0.5 + 1.0) / 2)


# ------------------------------------------------------------------------------------ whole searches (tiny)
#: three targets, not in order (the front sorts them), spread over the space's midap range (0.32-0.69 ms)
TARGETS = "latency=[0.6ms,0.4ms,0.5ms]"


@pytest.fixture(scope="module")
def front_run(tmp_path_factory):
    """One tiny many-target search (three targets; W&B offline), in the test process (tests/support/inprocess.py)."""
    from inprocess import run_inprocess

    run_dir = tmp_path_factory.mktemp("front")
    proc = run_inprocess([*TINY, "logger=wandb", TARGETS, f"hydra.run.dir={run_dir}",
                          f"paths.cache_dir={run_dir.parent / 'front_cache'}"])
    return run_dir, proc


def test_many_targets_deliver_one_network_each_with_a_front(front_run):
    run_dir, proc = front_run
    front = load_summary(run_dir)
    assert isinstance(front, FrontSummary)
    assert front.targets_ms == pytest.approx([0.4, 0.5, 0.6])
    assert [p.dir for p in front.points] == ["target_0.4ms", "target_0.5ms", "target_0.6ms"]
    rows = list(csv.DictReader((run_dir / "front.csv").open()))
    assert [float(r["target_ms"]) for r in rows] == pytest.approx([0.4, 0.5, 0.6])
    assert (run_dir / "front.png").stat().st_size > 10_000
    assert "Front on midap" in proc.stdout
    archs = set()
    for point in front.points:
        summary = load_summary(run_dir / point.dir)
        assert isinstance(summary, SearchSummary)
        assert summary.target_ms == point.target_ms and summary.search_targets_ms == pytest.approx([0.4, 0.5, 0.6])
        assert summary.latency_ms == pytest.approx(point.latency_ms) and summary.val_acc == point.val_acc
        assert point.meets_target == (point.latency_ms <= point.target_ms)
        archs.add(point.arch)
    # each figure belongs to the network in that directory's arch.json (the three simulated by one other process)
    independent = simulate([run_dir / point.dir / "arch.json" for point in front.points], ["midap"])
    assert independent == pytest.approx([point.latency_ms for point in front.points], rel=1e-9)
    assert front.all_meet_target == all(p.meets_target for p in front.points)
    assert len(archs) >= 2, "every target delivered the same network"
    assert front.total_steps == 6 and front.zoo_overlay  # 2 batches x 3 epochs; the zoo drawn on midap
    # W&B (offline) got the front's table and plot
    run_file = next(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    read = subprocess.run(["wandb", "leet", "inspect", "--summary", "--json", str(run_file)], capture_output=True,
                          text=True, timeout=300)
    logged = json.loads(read.stdout)["summary"]
    assert logged["front/table"]["_type"] == "table-file" and logged["front/plot"]["_type"] == "image-file"
    assert logged["front/all_meet_target"] == front.all_meet_target


def test_many_target_search_resumes_exactly(front_run, tmp_path, run_inproc):
    """Crash in the search phase (after step 5), resume from the checkpoint of step 4 (the first search epoch's end;
    its steps 3 and 4 were taken by different targets' banks, so the checkpoint holds two banks' trained thresholds):
    the same steps, each by the same target's bank from the same thresholds, and the same networks (both commands in
    the test process: tests/support/inprocess.py). The networks alone do not tell: in this short search every
    target's network comes from the decode's repair, which a lost bank does not change; the history does."""
    run_dir, _ = front_run
    resumed = tmp_path / "resumed"
    args = [*TINY, TARGETS, f"hydra.run.dir={resumed}", f"paths.cache_dir={tmp_path / 'cache'}", "callbacks=default"]
    crashed = run_inproc(args, env={"S3NAS_FAULT_INTERRUPT_AFTER_STEPS": "5"}, check=False)
    assert crashed.returncode != 0
    assert list((resumed / "checkpoints").glob("*.ckpt"))
    checkpoint = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 4 and checkpoint["s3nas"]["thresholds_initialised"]
    run_inproc(args)
    first, second = load_summary(run_dir), load_summary(resumed)
    assert [p.arch for p in second.points] == [p.arch for p in first.points]
    assert [p.latency_ms for p in second.points] == [p.latency_ms for p in first.points]
    history, expected = (json.loads((d / "history.json").read_text()) for d in (resumed, run_dir))
    assert [(r["step"], r["target_ms"], r["ce"], r["thresholds"]) for r in history] == \
           [(r["step"], r["target_ms"], r["ce"], r["thresholds"]) for r in expected]  # exact, steps 1-6


def test_several_hardware_deliver_one_network_meeting_each(tmp_path, run_inproc):
    out = tmp_path / "two"
    # targets inside the space's ranges on each (midap 0.32-0.69 ms, systolic 0.57-1.01 ms)
    proc = run_inproc([*TINY, "hardware=[midap,systolic]", "latency=[0.5ms,0.8ms]", f"hydra.run.dir={out}",
                       f"paths.cache_dir={tmp_path / 'cache'}"])
    summary = load_summary(out)
    assert isinstance(summary, SearchSummary) and summary.hardware == "midap"
    entries = {h.hardware: h for h in summary.hardware_targets}
    assert set(entries) == {"midap", "systolic"}
    # the one network, simulated on each profile by another process
    independent = dict(zip(["midap", "systolic"], simulate([out / "arch.json"], ["midap", "systolic"])))
    for name, target in (("midap", 0.5), ("systolic", 0.8)):
        entry = entries[name]
        assert entry.target_ms == target
        assert independent[name] == pytest.approx(entry.latency_ms, rel=1e-9)
        assert entry.meets_target == (independent[name] <= target)
    assert summary.meets_target == all(h.meets_target for h in summary.hardware_targets)
    assert "on systolic:" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["hardware=[midap,systolic]", "latency=[1ms,2ms,3ms]"],
     "error: latency: 3 targets ([1ms,2ms,3ms]) for 2 hardware ([midap,systolic])"),
    (["hardware=[midap,systolic]", "latency=[0.6ms,0.05ms]"], "below the fastest architecture of the search space"),
    (["hardware=[midap,midap]"], "error: hardware: midap is listed twice"),
])
def test_unreachable_or_unpaired_targets_fail_at_start_in_one_line(tmp_path, run_inproc, args, message):
    proc = run_inproc([*TINY, *args, f"hydra.run.dir={tmp_path / 'r'}"], check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    if "0.05ms" in args[-1]:
        assert "on systolic" in lines[0]
    assert not (tmp_path / "r" / "summary.json").exists()


@pytest.mark.slow
def test_front_benchmark_runs_and_reports_its_keys(tmp_path):
    """benchmarks/front.py on a tiny budget: the single searches and the front side by side, its JSON keys."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update({"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "S3NAS_BENCH_RECORD": "0"})
    proc = subprocess.run([sys.executable, "benchmarks/front.py", "--targets", "2", "3", "--out", str(tmp_path),
                           "--", "debug=search_tiny"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("targets", "delivered_ms", "repaired", "val_acc_multi", "val_acc_single", "time_ratio"):
        assert key in figures
    assert figures["targets"] == [2.0, 3.0] and len(figures["delivered_ms"]) == 2 and figures["time_ratio"] > 0
    front = load_summary(tmp_path / "front")
    assert [p.latency_ms for p in front.points] == figures["delivered_ms"]


def test_a_device_decode_measures_the_next_best_visited_states():
    """On a device the table stands for the latency during the search: when the best feasible state measures over
    the target, the decode measures the bank's next best distinct states and delivers the first that meets it."""
    from types import SimpleNamespace

    from s3nas.arch.spec import Branch
    from s3nas.search.objectives import Bank
    from s3nas.search.outputs import _measured_feasible

    def state(kernel):
        return [(Branch(kernel, 2.0),)]

    bank = Bank([])
    for score, step, kernel in ((0.95, 10, 3), (0.99, 20, 5), (0.97, 30, 7), (0.99, 40, 5), (0.90, 50, 3)):
        bank.offer(score, step, state(kernel))
    # one entry per distinct state (the newest of equal scores, as best_feasible keeps), best first
    assert [(c[0], c[1]) for c in bank.candidates] == [(0.99, 40), (0.97, 30), (0.95, 10)]
    assert bank.best_feasible[1] == 40  # the newest of equal scores is the decode's first choice, as before
    restored = Bank([SimpleNamespace(target_ms=1.0)])
    restored.restore_meta(bank.to_meta())
    assert restored.candidates == bank.candidates and restored.best_feasible == bank.best_feasible

    measured = {5: 1.02, 7: 0.98, 3: 0.9}  # kernel -> "measured" ms; target 1.0
    calls = []

    def measure(options):
        calls.append(options[0][0].kernel)
        return measured[options[0][0].kernel]

    module = SimpleNamespace(bank=bank)
    constraints = [(SimpleNamespace(cheap_networks=False), None, 1.0, measure)]
    raw, step, tried = _measured_feasible(module, constraints, state(5), 40)
    assert raw == state(7) and step == 30 and calls == [5, 7]
    assert [t["meets_target"] for t in tried] == [False, True] and tried[0]["latency_ms"] == [1.02]
    # the best state meets: nothing else is measured, nothing recorded
    calls.clear()
    assert _measured_feasible(module, constraints, state(7), 30) == (state(7), 30, None) and calls == [7]
