"""Positions that choose among listed options of several block types (``supernet.block_type: choice``).

The config's ``candidates.options``, the typed options of the space, the supernet's choice blocks (paths,
logits, straight-through gradient, probabilities in the latency term, child extraction), the latency table,
the repair, and a search in a mixed space from the command line, simulated independently.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from inprocess import SHORT_SEARCH, SMALL_SPLITS

from s3nas.arch import codec
from s3nas.arch.space import ListedOptions, SearchSpace, option_type
from s3nas.arch.spec import Branch
from s3nas.config.supernet_schema import check_candidates
from s3nas.errors import ConfigError
from s3nas.latency.estimator import LatencyEstimator
from s3nas.latency.lut import LatencyTable, compute_latency_table
from s3nas.nn.supernet import Supernet
from s3nas.search.objectives import Bank
from s3nas.search.repair import fit_to_target, shrinks

REPO_ROOT = Path(__file__).resolve().parents[1]
OPTIONS = [{"type": "mbconv", "kernel": 5, "expansion": 2}, {"type": "fused", "kernel": 3, "expansion": 2},
           {"type": "fused", "kernel": 3, "expansion": 6}, {"type": "mixconv", "kernels": [3, 5], "expansion": 2}]
SMALL = dict(widths=[8, 16, 16], strides=[2, 2, 1], depths=[2, 2, 2], stem_channels=8, head_channels=32)


def space(block_type="choice", options=OPTIONS, **kw) -> SearchSpace:
    return SearchSpace.from_config({**SMALL, "block_type": block_type, **kw}, {"options": options},
                                   num_classes=10, input_size=32)


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("options, key", [
    ([{"type": "conv", "kernel": 3, "expansion": 2}], "candidates.options[0].type"),
    ([{"type": "mbconv", "kernel": 3, "kernels": [3], "expansion": 2}], "candidates.options[0]"),
    ([{"type": "mbconv", "kernels": [3, 5], "expansion": 2}], "candidates.options[0].kernels"),
    ([{"type": "fused", "kernel": 4, "expansion": 2}], "candidates.options[0].kernel"),
    ([{"type": "fused", "kernel": 3, "expansion": 0}], "candidates.options[0].expansion"),
    ([{"type": "fused", "kernel": 3, "expansion": 2, "se": 1}], "candidates.options[0].se"),
    ([{"type": "fused", "kernel": 3, "expansion": 2}, {"type": "fused", "kernel": 3, "expansion": 2.0}],
     "candidates.options[1]"),
])
def test_listed_options_errors_name_the_key(options, key):
    with pytest.raises(ConfigError) as error:
        check_candidates({"options": options})
    assert str(error.value).startswith(key + ":") and "\n" not in str(error.value)


def test_choice_needs_listed_options_and_single_types_ignore_them():
    with pytest.raises(ConfigError, match="^candidates.options: supernet.block_type 'choice'"):
        space(options=[])
    with pytest.raises(ConfigError, match="^supernet.block_type: 'mixed' is not a block type; use one of .*choice"):
        space(block_type="mixed")
    # the listed options change nothing for a one-type supernet (and an empty list keeps old cache keys)
    assert check_candidates({}) == check_candidates({"options": []}) and "options" not in check_candidates({})
    plain = SearchSpace.from_config({**SMALL, "block_type": "mbconv"}, {}, num_classes=10, input_size=32)
    listed = SearchSpace.from_config({**SMALL, "block_type": "mbconv"}, {"options": OPTIONS}, num_classes=10,
                                     input_size=32)
    assert plain.num_options() == listed.num_options()


# ------------------------------------------------------------------------------------------ the space
def test_choice_positions_hold_exactly_the_listed_typed_options():
    s = space()
    for i, pos in enumerate(s.positions):
        options = s.options(i)
        assert (() in options) == pos.has_residual  # skip only where a residual exists
        assert len(options) == 4 + pos.has_residual
        types = sorted(option_type(o, "?") for o in options if o)
        assert types == ["fused", "fused", "mbconv", "mixconv"]
    # the same kernel and expansion of two types are two options
    a = (Branch(3, 2.0, "fused"),)
    assert a in s.options(0) and (Branch(3, 2.0, "mbconv"),) not in s.options(0)
    residual = sum(p.has_residual for p in s.positions)
    assert residual == 4 and s.size() == 4 ** 2 * 5 ** 4
    # BlockSpecs are typed by the block, their branches untyped; the round trip through arch.json is exact
    spec = s.arch_spec(s.max_options())
    assert {b.type for b in spec.blocks} <= {"mbconv", "fused", "mixconv"}
    assert all(br.block_type == "" for b in spec.blocks for br in b.branches)
    options = [s.options(i)[k % len(s.options(i))] for k, i in enumerate(range(len(s.positions)))]
    spec = s.arch_spec(options)
    back = codec.from_dict(json.loads(json.dumps(codec.to_dict(spec))))
    assert s.options_of(back) == options
    assert s.options_of(replace(back, meta={})) == options  # also without the recorded positions
    with pytest.raises(ValueError, match="not one of its options"):
        s.block_spec(0, (Branch(3, 2.0, "mbconv"),))
    with pytest.raises(codec.ArchSpecError, match="carry no type"):
        codec.validate(replace(spec, blocks=(replace(spec.blocks[0], branches=a),) + spec.blocks[1:]))


def test_stages_may_mix_choice_and_nested_blocks():
    s = space(block_type=["choice", "mixconv", "choice"])
    assert [p.type for p in s.positions] == ["choice"] * 2 + ["mixconv"] * 2 + ["choice"] * 2
    assert all(b.block_type == "" for i in (2, 3) for o in s.options(i) for b in o)


# ------------------------------------------------------------------------------------------ the supernet
def test_choice_block_paths_gradient_and_child():
    torch.manual_seed(0)
    s = space(block_type=["choice", "mixconv", "choice"])
    net = Supernet(s, num_classes=10)
    logits = [p for n, p in net.named_parameters() if n.endswith("choice_logits")]
    assert len(logits) == 4 and all(any(p is q for q in net.threshold_parameters()) for p in logits)
    assert not any(any(p is q for q in net.weight_parameters()) for p in logits)
    # the search starts from the largest option of each choice block (ties broken toward it)
    assert [net.blocks[i].raw_choice() for i in (0, 5)] == [tuple(s.options(0)[-1]), tuple(s.options(5)[-1])]
    x = torch.randn(4, 3, 32, 32)
    net.train()
    net.set_phase("warmup")  # uniform path sampling; logits get no gradient
    net(x).sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in logits)
    net.zero_grad()
    net.set_phase("search")  # one path sampled, straight-through: the loss reaches the logits
    torch.nn.functional.cross_entropy(net(x), torch.arange(4)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in logits)
    # eval: the chosen path; the child network computes the same function
    for i in (0, 1, 4, 5):
        net.blocks[i].set_option(s.options(i)[1])
        assert net.chosen_options()[i] == s.options(i)[1]
    net.eval()
    spec, child = net.extract_child()
    child.eval()
    assert torch.allclose(net(x), child(x), atol=1e-5)
    assert s.options_of(spec) == net.chosen_options()


def test_latency_expectation_uses_the_choice_probabilities():
    torch.manual_seed(0)
    s = space(block_type=["choice", "mbconv", "choice"])
    table = LatencyTable([{o: 1000 * (i + 1) * (1 + int(sum(b.kernel * b.expansion for b in o)) + len(o)) if o else 0
                           for o in s.options(i)} for i in range(len(s.positions))], 500, 1e9, space=s)
    net = Supernet(s, num_classes=10)
    with torch.no_grad():
        for p in net.threshold_parameters():
            p.normal_()
    estimator = LatencyEstimator(table)
    batched, per_block = estimator(net), estimator.per_block(net)
    assert batched.item() == pytest.approx(per_block.item(), rel=1e-6)
    expected = table.fixed_ms + sum(float((block.option_probs().detach() * torch.tensor(
        [table.block_ms(i, o) for o in block.options])).sum()) for i, block in enumerate(net.blocks))
    assert batched.item() == pytest.approx(expected, rel=1e-6)
    # the latency term pushes a choice block toward its cheaper options
    block = net.blocks[0]
    estimator(net).backward()
    grad = block.choice_logits.grad
    costs = [table.block_ms(0, o) for o in block.options]
    assert grad[costs.index(max(costs))] > 0 > grad[costs.index(min(costs))]


def test_bank_checkpoint_meta_keeps_the_types():
    s = space()
    raw = [tuple(s.options(i)[-1]) for i in range(len(s.positions))]
    bank = Bank(objectives=[])
    bank.offer(1.0, 3, raw)
    restored = Bank(objectives=[])
    restored.restore_meta(json.loads(json.dumps(bank.to_meta())))
    assert restored.best_feasible[2] == raw


def test_table_round_trip_and_repair_move_among_listed_options(tmp_path):
    s = space()
    table = compute_latency_table(s, "midap", workers=1, progress=False, method="isolated")
    again = LatencyTable.load(table.save(tmp_path / "t.json"), space=s)
    assert again.entries == table.entries and set(table.options(0)) == set(s.options(0))
    # different types of the same shape cost differently on the NPU
    assert table.block_ms(0, (Branch(3, 2.0, "fused"),)) != table.block_ms(0, (Branch(5, 2.0, "mbconv"),))
    levels = ListedOptions(s.options(0))
    biggest = tuple(s.options(0)[-1])
    assert set(shrinks(biggest, levels)) == {tuple(o) for o in s.options(0)
                                             if sum(b.expansion * b.kernel ** 2 for b in o)
                                             < sum(b.expansion * b.kernel ** 2 for b in biggest)}
    raw = [tuple(s.max_options()[i]) for i in range(len(s.positions))]
    target = 0.5 * (table.min_ms + table.estimate_ms(raw))
    result = fit_to_target(raw, [ListedOptions(s.options(i)) for i in range(len(s.positions))], s, table, target)
    assert result.repaired and table.estimate_ms(result.options) <= target
    assert all(o in s.options(i) for i, o in enumerate(result.options))


# ------------------------------------------------------------------------------------------ end to end
def test_search_in_a_mixed_space_from_the_command_line(tmp_path, run_inproc):
    """A tiny search whose blocks choose among MBConv and fused options; the delivered network is simulated by an
    independent process within the target.

    Six positions (``supernet.depths=[1,1,1,1,2]``: every stage, each position choosing among the three listed
    options of two types) instead of the debug space's 29: the subject is the mixed space, not its depth. Its table
    (6 x 3-4 entries) is built in the command's process (``schedule.lut_workers=1``, no spawned workers); all-on it
    is 1.08 ms on midap at the 224 px deployment, its fastest network 0.41 ms, so the 0.8 ms target makes the
    latency term train the choice logits and thresholds. 6 steps (SHORT_SEARCH), 5% val/test splits (SMALL_SPLITS):
    the delivered network's accuracy is not checked."""
    run_dir = tmp_path / "search"
    options = "[{type:mbconv,kernel:5,expansion:2},{type:fused,kernel:3,expansion:2},{type:fused,kernel:3,expansion:6}]"
    run_inproc(["search.py", "debug=search_tiny", "latency=0.8ms", "supernet.block_type=choice",
                "supernet.depths=[1,1,1,1,2]", "schedule.lut_workers=1",
                f"candidates.options={options}", *SHORT_SEARCH, *SMALL_SPLITS, f"hydra.run.dir={run_dir}",
                f"paths.cache_dir={tmp_path / 'cache'}"])
    summary = json.loads((run_dir / "summary.json").read_text())
    arch = codec.load_json(run_dir / "arch.json")
    assert {b.type for b in arch.blocks} <= {"mbconv", "fused"}
    allowed = {("mbconv", 5, 2.0), ("fused", 3, 2.0), ("fused", 3, 6.0)}
    assert {(b.type, b.branches[0].kernel, b.branches[0].expansion) for b in arch.blocks} <= allowed
    proc = subprocess.run([sys.executable, "-m", "simulator", str(run_dir / "arch.json"), "--hardware", "midap",
                           "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    simulated = float(json.loads(proc.stdout)["latency_ms"])
    assert simulated == pytest.approx(summary["latency_ms"], rel=1e-9) and simulated <= 0.8
    assert summary["meets_target"]


def test_choice_logits_take_one_normalised_step_in_proportion_to_their_gradients():
    from types import SimpleNamespace

    from s3nas.search.module import SearchModule

    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 0.0, -3.0]), torch.tensor([0.3, -0.3])
    fake = SimpleNamespace(phase="search", threshold_speed=0.5, optim=SimpleNamespace(choice_lr=0.1, approach_band=0.2))
    SearchModule._step_choices(fake, [a, b])
    step = torch.cat([a.detach(), b.detach()])
    assert step.pow(2).mean().sqrt().item() == pytest.approx(0.1 * 0.5)  # RMS step = choice_lr x approach speed
    assert a[0].item() / b[0].item() == pytest.approx(10.0)  # the gradients' proportions are kept
    assert a.grad is None and b.grad is None
    # no step in warm-up, or under the target (speed 0); gradients are still cleared
    a.grad = torch.ones(3)
    before = a.detach().clone()
    SearchModule._step_choices(SimpleNamespace(phase="warmup", threshold_speed=1.0, optim=fake.optim), [a])
    fake.threshold_speed = 0.0
    b.grad = torch.ones(2)
    b_before = b.detach().clone()
    SearchModule._step_choices(fake, [b])
    assert torch.equal(a.detach(), before) and torch.equal(b.detach(), b_before) and a.grad is None
