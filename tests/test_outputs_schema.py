"""Typed outputs (s3nas.outputs): every summary type round-trips and refuses, naming the key, what does not
match it; docs/reference/outputs.md is the types' own text; the cheap commands' real summary.json files
(post-processing, scaling, flow, zoo, compare) validate against their types and are read back by flow,
compare and the zoo's overlay through the types."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from s3nas import outputs
from s3nas.errors import ConfigError
from s3nas.outputs import (SUMMARY_TYPES, ArchFile, FlowSummary, OutputSchemaError, PostprocessSummary, Record,
                           ScalingSummary, SearchSummary, TrainSummary, example, load_summary, summary_from_dict,
                           validate_summary_file, write_summary)

REPO = Path(__file__).resolve().parents[1]
SMALL = ("stem_c16_k3_s2_re | 0: ir_k3_e2_c16_s1 | 1: ir_k3_e2_c32_s2 mc_k3.5_e4.2_c32_s1 ir_k5_e4_c32_s1 | "
         "2: ir_k3_e4_c64_s2 ir_k3_e2_c64_s1 | head_c256_d0.2 | n10_i3_r64 | name:small")


def _records() -> list[type[Record]]:
    found: dict[str, type[Record]] = {}
    for cls in (*SUMMARY_TYPES, ArchFile):
        found[cls.__name__] = cls
        outputs._records_of(cls, found)
    return list(found.values())


def _wrong_value(tp) -> object:
    """A JSON value that ``tp`` does not accept (a number for strings, a string for everything else)."""
    import typing

    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) is not None and \
        type(None) in typing.get_args(tp) else [tp]
    return 12 if args == [str] else "text"


# ------------------------------------------------------------------------------------------------ the docs
def test_outputs_md_is_generated_from_the_types():
    text = (REPO / "docs" / "reference" / "outputs.md").read_text()
    assert text == outputs.markdown(), ("docs/reference/outputs.md is stale: python -m s3nas.outputs --markdown "
                                        "> docs/reference/outputs.md")


def test_every_field_has_a_doc_and_a_row_in_outputs_md():
    text = outputs.markdown()
    for cls in _records():
        section = text.split(f"## {cls.__name__}\n", 1)[1] if f"## {cls.__name__}\n" in text else \
            text.split(f"### {cls.__name__}\n", 1)[1]
        section = section.split("\n## ", 1)[0].split("\n### ", 1)[0]
        for _, key, _, f in cls.fields():
            assert f.metadata.get("doc"), f"{cls.__name__}.{key} has no doc"
            assert f"| `{key}` |" in section, f"{cls.__name__}.{key} missing from outputs.md"


# ------------------------------------------------------------------------------------------- the types
@pytest.mark.parametrize("cls", SUMMARY_TYPES, ids=lambda c: c.__name__)
def test_summary_round_trips_through_its_file(cls, tmp_path):
    summary = example(cls)
    path = write_summary(tmp_path, summary)
    data = json.loads(path.read_text())
    assert list(data)[:2] == ["schema_version", "kind"] and data["schema_version"] == outputs.SCHEMA_VERSION
    assert data["kind"] in cls.KINDS
    again = load_summary(tmp_path)
    assert type(again) is cls and again == summary
    assert again.to_dict() == data


@pytest.mark.parametrize("cls", SUMMARY_TYPES, ids=lambda c: c.__name__)
def test_missing_unknown_and_mistyped_keys_are_named(cls):
    data = example(cls).to_dict()
    for _, key, tp, f in cls.fields():
        if key in ("schema_version", "kind"):
            continue
        if f.default is dataclasses.MISSING:
            missing = {k: v for k, v in data.items() if k != key}
            with pytest.raises(OutputSchemaError) as info:
                summary_from_dict(missing, "run/summary.json")
            assert str(info.value).startswith(f"run/summary.json: {key}: missing key")
        if tp is not Any:
            with pytest.raises(OutputSchemaError) as info:
                summary_from_dict({**data, key: _wrong_value(tp)}, "run/summary.json")
            assert str(info.value).startswith(f"run/summary.json: {key}"), str(info.value)
    with pytest.raises(OutputSchemaError, match=r"^run/summary.json: simulated_ms: unknown key"):
        summary_from_dict({**data, "simulated_ms": 1.0}, "run/summary.json")


def test_nested_errors_name_the_path():
    data = example(FlowSummary).to_dict()
    data["stages"][0]["latency_ms"] = "fast"
    with pytest.raises(OutputSchemaError, match=r"^x: stages\[0\]\.latency_ms: must be a number"):
        summary_from_dict(data, "x")


def test_old_newer_and_foreign_summaries_are_one_line_errors(tmp_path):
    old = tmp_path / "old" / "summary.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"target_ms": 2.5, "simulated_ms": 2.4}))  # what s3nas wrote before schema_version
    with pytest.raises(ConfigError) as info:
        load_summary(old.parent)
    message = str(info.value)
    assert str(old) in message and "older s3nas" in message and "\n" not in message
    newer = {**example(FlowSummary).to_dict(), "schema_version": outputs.SCHEMA_VERSION + 1}
    with pytest.raises(OutputSchemaError, match="newer s3nas"):
        summary_from_dict(newer, "n")
    with pytest.raises(OutputSchemaError, match="kind 'nope' is not a summary kind"):
        summary_from_dict({**example(FlowSummary).to_dict(), "kind": "nope"}, "k")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(OutputSchemaError, match="not readable JSON"):
        load_summary(tmp_path / "bad.json")


def test_non_finite_numbers_become_null_only_where_null_is_allowed(tmp_path):
    summary = example(ScalingSummary, resolution_ratio_effective=float("nan"))
    assert summary.resolution_ratio_effective is None
    with pytest.raises(OutputSchemaError, match="^latency_ms: must be a finite number"):
        example(ScalingSummary, latency_ms=float("inf"))


def test_write_refuses_an_object_changed_off_its_schema(tmp_path):
    summary = example(PostprocessSummary)
    summary.latency_ms = "fast"  # changed after construction
    with pytest.raises(OutputSchemaError, match="latency_ms"):
        write_summary(tmp_path, summary)
    assert not (tmp_path / "summary.json").exists()


def test_random_baseline_kind_follows_its_method():
    from s3nas.outputs import RandomBaselineSummary

    assert example(RandomBaselineSummary, method="random_selection").kind == "random_selection"
    with pytest.raises(OutputSchemaError, match="^method"):
        example(RandomBaselineSummary, kind="random_search", method="random_selection")


def test_arch_file_type_matches_the_codec():
    from s3nas.arch import codec

    spec = codec.decode(SMALL)
    data = codec.to_dict(spec)
    assert [key for _, key, _, _ in ArchFile.fields()] == list(data)
    assert ArchFile.from_dict(data).to_dict() == json.loads(json.dumps(data))
    block_keys = [key for _, key, _, _ in outputs.ArchBlock.fields()]
    assert all(list(b) == block_keys for b in data["blocks"])


# ------------------------------------------------------------------------------------- real outputs
def _cfg(name: str, overrides: list[str], out: Path):
    from s3nas.config import compose_config
    from s3nas.runtime.entry import prepare_config

    return prepare_config(compose_config(name, overrides, output_dir=out))


def _typed_run(path: Path, spec, summary) -> Path:
    from s3nas.arch import codec

    codec.save_json(spec, path / "arch.json")
    write_summary(path, summary)
    return path


def test_cheap_commands_write_summaries_that_validate_and_read_back(tmp_path):
    """post-process -> scale -> flow (with a search and a train run) -> zoo (overlay) -> compare; every
    summary.json and arch.json validates against its type, and the readers take what the writers wrote."""
    import simulator

    from s3nas.arch import codec
    from s3nas.baselines import compare, zoo
    from s3nas.arch.graph import archspec_to_graph
    from s3nas.postsearch import flow, postprocess, scaling

    midap = simulator.load_profile("midap")
    base = codec.decode(SMALL)
    codec.save_json(base, tmp_path / "in" / "arch.json")

    post = tmp_path / "post"
    postprocess.main(_cfg("postprocess", [f"arch={tmp_path / 'in'}", "se=all", "act=hswish"], post))
    post_summary = validate_summary_file(post / "summary.json")
    assert isinstance(post_summary, PostprocessSummary) and isinstance(validate_summary_file(post / "arch.json"),
                                                                     ArchFile)
    assert post_summary.latency_ms > post_summary.latency_before_ms and post_summary.latency_noise_pct is None

    scaled = tmp_path / "scaled"
    target_ms = round(2.0 * post_summary.latency_ms, 6)
    scaling.main(_cfg("scaling", [f"arch={post}", f"latency={target_ms}ms"], scaled))
    scaled_summary = validate_summary_file(scaled / "summary.json")
    assert isinstance(scaled_summary, ScalingSummary) and isinstance(validate_summary_file(scaled / "arch.json"),
                                                                     ArchFile)
    assert scaled_summary.latency_ms <= scaled_summary.target_ms == pytest.approx(target_ms)

    # a search and a train run as those commands write them (their own tests run the real commands)
    search = _typed_run(tmp_path / "search", base, example(SearchSummary, test_acc=0.9, target_ms=1.0, data="digits"))
    train = _typed_run(tmp_path / "train", base, example(
        TrainSummary, test_acc=0.8, data="digits", arch_origin=str(search / "arch.json"), seed=3))

    flow_dir = tmp_path / "flow"
    flow.main(_cfg("flow", [f"runs=[{search},{train},{post},{scaled}]"], flow_dir))
    flow_summary = validate_summary_file(flow_dir / "summary.json")
    assert isinstance(flow_summary, FlowSummary)
    stages = flow_summary.stages
    assert [s.stage for s in stages] == ["search", "train", "postprocess", "scaling"]
    assert [s.test_acc for s in stages] == [0.9, 0.8, None, None]
    assert stages[0].target_ms == 1.0 and stages[3].target_ms == pytest.approx(target_ms)
    assert stages[1].accuracy_source.startswith("retrained (digits")
    independent = simulator.simulate(archspec_to_graph(codec.load_json(post / "arch.json")), midap).latency_ms
    assert stages[2].latency_ms == pytest.approx(independent, rel=1e-9) == post_summary.latency_ms

    zoo_dir = tmp_path / "zoo"
    zoo.main(_cfg("zoo", ["models=[mobilenetv2_100]", "profiles=[midap]", "plot=false", f"overlay=[{train}]",
                          "logger=none"],
                  zoo_dir))
    zoo_summary = validate_summary_file(zoo_dir / "summary.json")
    assert zoo_summary.models == ["mobilenetv2_100"] and zoo_summary.rows == 1
    (point,) = zoo_summary.overlay
    assert point.method == "s3nas retrained" and point.own_data_top1 == pytest.approx(80.0)

    compare_dir = tmp_path / "compare"
    compare.main(_cfg("compare", [f"runs=[{search},{train}]", "zoo=[mobilenetv2_100]", "plot=false",
                                    "logger=none"], compare_dir))
    compare_summary = validate_summary_file(compare_dir / "summary.json")
    kinds = {row.kind: row for row in compare_summary.rows}
    assert set(kinds) == {"s3nas search", "s3nas (retrained)", "zoo (published)"}
    assert kinds["s3nas (retrained)"].accuracy == pytest.approx(80.0) and kinds["s3nas (retrained)"].seed == 3
    assert kinds["s3nas (retrained)"].search_seconds == kinds["s3nas search"].search_seconds  # inherited cost


def test_flow_refuses_a_summary_of_an_older_s3nas(tmp_path):
    from s3nas.arch import codec
    from s3nas.postsearch import flow

    run = tmp_path / "run"
    codec.save_json(codec.decode(SMALL), run / "arch.json")
    (run / "summary.json").write_text(json.dumps({"test_acc": 0.9, "target_ms": 1.0}))
    cfg = _cfg("flow", [f"runs=[{run}]"], tmp_path / "flow")
    with pytest.raises(ConfigError, match="older s3nas") as info:
        flow.check(cfg)
    assert str(run / "summary.json") in str(info.value)
    assert not (tmp_path / "flow" / "summary.json").exists()


def test_sweep_table_reads_typed_summaries(tmp_path):
    from s3nas.search.sweep import collect_sweep

    for job, lam in enumerate((5.0, 30.0)):
        write_summary(tmp_path / str(job), example(SearchSummary, lambda1=lam, latency_ms=2.4 + job / 10))
    rows = collect_sweep(tmp_path)
    assert [r["lambda1"] for r in rows] == [5.0, 30.0]
    assert [r["latency_ms"] for r in rows] == pytest.approx([2.4, 2.5])
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "summary.json").write_text(json.dumps({"lambda1": 1.0, "simulated_ms": 2.0}))
    with pytest.raises(ConfigError, match="older s3nas"):
        collect_sweep(tmp_path)
