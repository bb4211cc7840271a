"""Framework against framework (conformance/judge/pairwise.py), on hand-made records."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.judge.pairwise import compare_values, pairs_from_records, pairs_from_results
from conformance.results.jsonl import ResultsWriter
from conformance.results.records import Record

F32_STEP = 2.0 ** -23  # float32 spacing in [1, 2)


def record(framework: str, actual: object, api: str = "", **fields: object) -> Record:
    base = Record(case_id="c", op="cross_entropy", group="g", framework=framework,
                  framework_version="1", api=api or f"{framework}.ce", api_kind="native",
                  device="cpu", device_name="cpu", dtype="float32", quantity="output",
                  status="pass", actual=actual, environment_id="env")
    return replace(base, **fields)  # type: ignore[arg-type]


def test_compare_values_by_hand() -> None:
    values = compare_values([1.0, "nan", 2.0, -0.0], [1.0 + F32_STEP, 1.0, 2.0, 0.0], "float32")
    assert values.special_mismatches == 1  # the NaN, counted apart
    assert values.max_ulp_error == 1  # 1 and its float32 successor; -0 and +0 are one point
    assert values.max_abs_error == F32_STEP
    assert values.max_rel_error == pytest.approx(F32_STEP / (1 + F32_STEP), rel=1e-12)
    assert values.worst_index == (1,)


def test_compare_values_across_zero_and_infinities() -> None:
    values = compare_values([2.0 ** -149, "inf"], [-(2.0 ** -149), "inf"], "float32")
    assert values.special_mismatches == 0 and values.max_ulp_error == 2
    assert compare_values(["inf"], ["-inf"], "float16").special_mismatches == 1


def test_pairs_keep_the_largest_disagreement_over_apis() -> None:
    records = [
        record("torch", [1.0, 2.0], api="torch.a"),
        record("torch", [1.0, 2.0 + 2 * 2 * F32_STEP], api="torch.b"),  # 2 steps off at 2
        record("jax", [1.0, 2.0], api="jax.a"),
        record("reference", [1.0, 9.0]),  # documented-value checks are not frameworks
        record("tensorflow", [1.0, 2.0], status="unsupported"),  # nothing to compare
        record("tensorflow", [1.0, 7.0], api_kind="composed"),  # another API kind
    ]
    pairs = pairs_from_records(records)
    assert len(pairs) == 1
    (pair,) = pairs
    assert (pair.framework_a, pair.framework_b) == ("jax", "torch")
    assert (pair.api_a, pair.api_b) == ("jax.a", "torch.b")
    assert pair.exact and pair.max_ulp_error == 2 and pair.api_pairs == 2
    assert pair.max_abs_error == 4 * F32_STEP and pair.worst_index == [1]


def test_large_records_are_bounded_through_the_oracle() -> None:
    # values not kept (more than 256 elements): |E_a - E_b| <= max |a - b| <= E_a + E_b
    a = record("torch", None, max_abs_error=3e-7, max_ulp_error=3.0)
    b = record("jax", None, max_abs_error=1e-7, max_ulp_error=1.0)
    (pair,) = pairs_from_records([a, b])
    assert not pair.exact
    assert pair.max_abs_error == pytest.approx(4e-7) and pair.lower_abs_error == pytest.approx(2e-7)
    assert (pair.lower_ulp_error, pair.max_ulp_error) == (2.0, 4.0)
    assert pair.special_mismatches == 0
    c = replace(b, kind="special-value", status="fail")
    (pair,) = pairs_from_records([a, c])
    assert pair.special_mismatches is None  # unknown: c differs from the oracle somewhere


def test_devices_pair_by_kind_from_the_adapter_lines() -> None:
    adapters = [{"framework": "torch", "environment_id": "env",
                 "devices": [{"id": "cuda:0", "kind": "gpu", "name": "H100"}]},
                {"framework": "jax", "environment_id": "env",
                 "devices": [{"id": "gpu:0", "kind": "gpu", "name": "H100"}]}]
    records = [record("torch", [1.0], device="cuda:0"), record("jax", [1.0], device="gpu:0"),
               record("jax", [1.0])]
    pairs = pairs_from_records(records, adapters)
    assert [p.device for p in pairs] == ["gpu"]


def test_results_file_and_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.jsonl"
    with ResultsWriter(results) as writer:
        writer.write(record("torch", [1.0, math.nan]))
        writer.write(record("jax", [1.0 + F32_STEP, 1.0]))
    (pair,) = pairs_from_results([results])
    assert pair.special_mismatches == 1 and pair.max_ulp_error == 1
    out = tmp_path / "pairs.jsonl"
    assert main(["pairwise", str(results), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["type"] == "pairwise" and lines[0]["special_mismatches"] == 1
    assert "jax vs torch" in capsys.readouterr().out
