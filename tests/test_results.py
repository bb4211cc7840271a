"""The JSON Lines results file: strict JSON, exact round trip, torn last lines."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from conformance.results.jsonl import ResultsWriter, read_results
from conformance.results.records import Record, jsonable

RECORD = Record(
    case_id="c", op="cross_entropy", group="g", framework="torch", framework_version="2.13.0",
    api="torch.nn.functional.cross_entropy", api_kind="native", device="cpu",
    device_name="AMD EPYC", dtype="float32", quantity="output", status="fail",
    kind="special-value", reference=[1.5, math.inf], actual=[math.nan, -math.inf],
    shape=[2], max_abs_error=0.1, max_rel_error=math.inf, max_ulp_error=3.0,
    worst_index=[0], message="NaN where the oracle is finite", environment_id="e1",
)


def test_round_trip_with_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        writer.write_environment({"environment_id": "e1", "python": "3.11"})
        writer.write_adapter({"framework": "torch", "version": "2.13.0", "apis": []})
        writer.write(RECORD)
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-strict JSON {name}"))
    results = read_results([path])
    assert results.environments[0]["python"] == "3.11"
    assert results.adapters[0]["framework"] == "torch"
    (record,) = results.records
    assert record.max_rel_error == math.inf
    assert record.reference == [1.5, "inf"] and record.actual == ["nan", "-inf"]
    assert record.key == RECORD.key


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        writer.write(RECORD)
        writer.write(RECORD)
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # killed while writing the second line
    assert len(read_results([path]).records) == 1


def test_a_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        writer.write(RECORD)
    path.write_text("{not json\n" + path.read_text())
    with pytest.raises(ValueError, match=rf"{path}:1: not a JSON object"):
        read_results([path])


def test_an_unknown_field_is_an_error_naming_file_line_and_field(tmp_path: Path) -> None:
    # The results schema is closed: a field this version does not know (mistyped or forged) is
    # refused where it is read, not carried into a report that would not show it.
    path = tmp_path / "r.jsonl"
    line = {"type": "result", **jsonable(RECORD.__dict__), "from_the_future": 1}
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:1: .*from_the_future"):
        read_results([path])
