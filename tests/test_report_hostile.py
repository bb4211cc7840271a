"""Forged results files against the report, merge and pairwise (issue 12, item 15).

* Every line of a results file is checked against ``conformance/results/schema.json`` as it
  is read: a forged field is an error naming the file, the line and the field (exit 2 from
  the CLI, never a traceback), and nesting is bounded before anything recurses.
* Bidirectional-override and other control characters are shown escaped in the page (long
  unbroken strings wrapping is checked in a real browser in ``tests/test_report.py``).

Case files outside ``--cases-root`` (item 14): ``tests/test_report_cases_root.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.report.page import write_report
from conformance.results.jsonl import MAX_NESTING, read_results, results_schema
from conformance.results.merge import merge_results
from conformance.results.records import QUANTITIES, STATUSES, Record
from reference.formats import DTYPES
from tests.report_samples import (
    ENV_A,
    adapter,
    environment,
    result,
    small_run,
    with_details,
    write_results,
)

# --- every line checked against the results schema ---------------------------------------


def _line(**fields: Any) -> str:
    return json.dumps({**result("c-pass", "fail", kind="numeric"), **fields})


FORGED = {
    # name: (the line's text, the field the error names)
    "worst_index strings": (_line(worst_index=["a", "b"]), "worst_index[0]"),
    "worst_index a string": (_line(worst_index="0"), "worst_index"),
    "max_ulp_error a list": (_line(max_ulp_error=[1, 2]), "max_ulp_error"),
    "max_ulp_error another string": (_line(max_ulp_error="lots"), "max_ulp_error"),
    "max_ulp_error past float64": (_line(max_ulp_error=10**400), "max_ulp_error"),
    "tolerance a list": (_line(tolerance=[1, 2]), "tolerance"),
    "tolerance k a list": (_line(tolerance={"k": [1]}), "tolerance.k"),
    "environment_id a list": (_line(environment_id=["x"]), "environment_id"),
    "status unknown": (_line(status="great"), "status"),
    "message a number": (_line(message=5), "message"),
    "shape negative": (_line(shape=[-1]), "shape[0]"),
    "reference of objects": (_line(reference=[{"a": 1}]), "reference"),
    "extra not an object": (_line(extra=[1]), "extra"),
    "a required field missing": (json.dumps({k: v for k, v in result().items()
                                             if k != "api"}), "api"),
    "an unknown field": (_line(max_ulp_eror=3.0), "max_ulp_eror"),
    "100000-deep reference": ('{"type": "result", "reference": ' + "[" * 100_000
                              + "]" * 100_000 + "}", "nested too deeply to parse"),
    "500-deep reference": (_line(reference=json.loads("[" * 500 + "]" * 500)),
                           f"reference[0][0]…({MAX_NESTING} steps)…[0][0]: nested more "
                           f"than {MAX_NESTING} levels"),
    "deep extra": (_line(extra=json.loads('{"a":' * 200 + "1" + "}" * 200)),
                   f"extra.a.a…({MAX_NESTING} steps)…a.a: nested more than {MAX_NESTING}"),
    "NaN literal": (_line().replace('"max_ulp_error": 0.0', '"max_ulp_error": NaN'),
                    "NaN"),
    "an integer of 5000 digits": (_line().replace('"oracle_precision": 113',
                                                  '"oracle_precision": ' + "1" * 5000),
                                  "not strict JSON: "),
    "environment line field": (json.dumps(environment(host=["h"])), "host"),
    "environment settings nested": (json.dumps(environment(settings={"a": {"b": 1}})),
                                    "settings.a"),
    "environment case digest not hex": (json.dumps(environment(case_digests={"c": "zz"})),
                                        "case_digests.c"),
    "adapter apis not a list": (json.dumps({**adapter(), "apis": {"x": 1}}), "apis"),
    "adapter supports of numbers": (json.dumps({**adapter(), "apis": [
        {**adapter()["apis"][0], "supports": [1]}]}), "apis[0].supports[0]"),
    "not an object": ("[1, 2]", "type"),
    "an unknown type": ('{"type": "pairwise"}', "type"),
}


def _forged_file(tmp_path: Path, line: str) -> Path:
    """A good file with ``line`` as its third line (and a good line after it)."""
    path = tmp_path / "forged.jsonl"
    good = [json.dumps(environment()), json.dumps(adapter())]
    path.write_text("\n".join([*good, line, json.dumps(result())]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(FORGED))
def test_a_forged_line_is_an_error_naming_file_line_and_field(tmp_path: Path,
                                                              name: str) -> None:
    line, field = FORGED[name]
    path = _forged_file(tmp_path, line)
    with pytest.raises(ValueError) as raised:
        read_results([path])
    message = str(raised.value)
    assert message.startswith(f"{path}:3: "), message
    assert field in message, message
    assert len(message) < 600, message  # the forged value is abbreviated, never echoed whole
    with pytest.raises(ValueError, match=r"forged\.jsonl:3: "):
        merge_results([path])


@pytest.mark.parametrize("command", ["report", "merge", "pairwise", "support"])
@pytest.mark.parametrize("name", ["worst_index strings", "tolerance a list",
                                  "100000-deep reference", "environment_id a list"])
def test_the_cli_exits_2_on_a_forged_line_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, name: str) -> None:
    line, field = FORGED[name]
    path = _forged_file(tmp_path, line)
    out = tmp_path / "out"
    argv = {"report": ["report", str(path), "-o", str(out)],
            "merge": ["merge", str(path), "-o", str(out)],
            "pairwise": ["pairwise", str(path)],
            "support": ["support", "--results", str(path)]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: " in err and field in err and "Traceback" not in err
    assert not out.exists()


def test_a_torn_last_line_is_still_skipped_but_a_complete_bad_one_is_not(
        tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    text = json.dumps(environment()) + "\n" + json.dumps(result()) + "\n"
    path.write_text(text + json.dumps(result())[:50], encoding="utf-8")  # killed mid-line
    assert len(read_results([path]).records) == 1
    path.write_text(text + json.dumps(result())[:50] + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r\.jsonl:3: not a JSON object"):
        read_results([path])


def test_a_non_utf8_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(json.dumps(environment()).encode() + b'\n{"type": "result\xff"}\n'
                     + json.dumps(result()).encode() + b"\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:2: not UTF-8 text"):
        read_results([path])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_results_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "r.jsonl")
    with pytest.raises(ValueError, match=r"r\.jsonl: not a regular file"):
        read_results([tmp_path / "r.jsonl"])


# --- what older versions wrote still loads --------------------------------------------------


def test_lines_of_older_versions_still_load(tmp_path: Path) -> None:
    """The walking skeleton's records had no bound_use, tolerance, job or job_records; its
    adapter lines no semantics (or environment_id, when written by hand), its environment
    lines only what ``environment()`` gave then."""
    old_record = {k: v for k, v in result().items()
                  if k not in ("bound_use", "tolerance", "job", "job_records")}
    old_adapter = {**adapter(), "apis": [{k: v for k, v in api.items() if k != "semantics"}
                                         for api in adapter()["apis"]]}
    minimal_adapter = {"type": "adapter", "framework": "torch", "version": "2.13.0",
                       "apis": []}
    lines = [environment(), {"type": "environment", "environment_id": "e1", "python": "3.11"},
             old_adapter, minimal_adapter, old_record,
             result("c-x", "fail", kind="special-value", max_rel_error="inf",
                    reference=[1.5, "inf"], actual=["nan", "-inf"], max_abs_error="nan"),
             environment(settings={"cases": ["cases/"], "tolerance_scale": None, "jobs": 2,
                                   "resume": True},
                         case_digests={"c-pass": "ab" * 32})]
    results = read_results([write_results(tmp_path / "old.jsonl", lines)])
    assert len(results.records) == 2 and len(results.adapters) == 2
    assert results.records[1].max_rel_error == float("inf")
    assert results.records[0].bound_use is None and results.records[0].job == ""


def test_what_the_writer_writes_is_valid(tmp_path: Path) -> None:
    lines = small_run()
    lines[-1]["job"], lines[-1]["job_records"] = "c-pass|*|*|*", 1
    records = read_results([write_results(tmp_path / "r.jsonl", lines)]).records
    assert len(records) == len(lines) - 2


def test_the_schema_covers_every_record_field_and_the_codes_constants() -> None:
    schema = results_schema()
    result_line = schema["$defs"]["result"]
    assert set(result_line["properties"]) == {"type"} | {f.name for f in
                                                         dataclasses.fields(Record)}
    required = {f.name for f in dataclasses.fields(Record)
                if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    assert set(result_line["required"]) == {"type"} | required
    assert all(line.get("additionalProperties") is False
               for line in (schema["$defs"][t] for t in ("environment", "adapter", "result")))
    assert result_line["properties"]["status"]["enum"] == list(STATUSES)
    assert result_line["properties"]["quantity"]["enum"] == list(QUANTITIES)
    assert set(DTYPES) < set(schema["$defs"]["dtype"]["examples"])


# --- the page: control characters escaped --------------------------------------------------


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def _report(tmp_path: Path, lines: list[dict[str, Any]]) -> str:
    results = write_results(tmp_path / "results.jsonl", lines)
    # the page and the (compressed) data its details are built from, decompressed
    return with_details(write_report([results], tmp_path / "report.html").path.read_text(
        encoding="utf-8"))


def test_bidi_and_control_characters_are_shown_escaped(tmp_path: Path) -> None:
    message = f"gnp.exe\u202e{BIDI}\x00\x1b[31m"
    lines = [environment(host="lap\u202etop"), adapter(),
             result("c-\u2066bidi", "fail", kind="numeric", message=message,
                    api="torch.\u202enll", max_ulp_error=3.0, environment_id=ENV_A)]
    text = _report(tmp_path, lines)
    assert not set(BIDI + "\x00\x1b") & set(text)
    assert "gnp.exe\\u202e\\u202a" in text and "\\u0000\\u001b[31m" in text
    assert "lap\\u202etop" in text and "c-\\u2066bidi" in text


# --- the compiled checker gives jsonschema's verdict ------------------------------------------


HOSTILE_VALUES: list[Any] = [None, True, 0, -1, 2.5, 10**30, "x", "nan", "", [], [1], ["a"],
                             [[1.5, "inf"], [2]], [-1], [1.0], {}, {"k": 1}, {"a": "b"},
                             "ab" * 32, [None], [[[]]]]


def _mutations(line: dict[str, Any]) -> list[Any]:
    """``line`` with each field (and each field of its nested objects) replaced by each
    hostile value, removed, or joined by an unknown one."""
    out: list[Any] = [line, {**line, "unknown_field": 1}]
    for key, value in line.items():
        out.append({k: v for k, v in line.items() if k != key})
        out += [{**line, key: hostile} for hostile in HOSTILE_VALUES]
        inner = value[0] if isinstance(value, list) and value and isinstance(
            value[0], dict) else value
        if isinstance(inner, dict):
            for variant in _mutations(inner)[1:]:
                out.append({**line, key: [variant] if isinstance(value, list) else variant})
    return out


def test_the_compiled_checker_agrees_with_jsonschema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from conformance.results.jsonl import check_line

    schema = results_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    lines = [environment(settings={"jobs": 2, "cases": ["a"], "x": None},
                         case_digests={"c": "0" * 64}),
             adapter(), {**adapter(), "apis": [{**adapter()["apis"][0], "semantics": {}}]},
             result(tolerance={"k": 4, "scale": 1.0, "source": "policy", "reason": "r"},
                    bound_use=0.5, job="c|a|cpu|float32", job_records=2, kind="numeric",
                    reference=[[0.5, "nan"]], extra={"t": [1, {"u": None}]})]
    checked = 0
    for line in lines:
        for mutated in _mutations(json.loads(json.dumps(line))):
            expected = validator.is_valid(mutated)
            assert (check_line(mutated) is None) == expected, (mutated, check_line(mutated))
            checked += 1
    assert checked > 1000



def test_odd_but_valid_lines_build_a_report(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """What the schema allows, the report, merge and pairwise take without a traceback:
    integer-valued floats as indices, ragged or scalar values, an index past the shape."""
    lines = [environment(), adapter(),
             result("c-a", "fail", kind="numeric", worst_index=[1.0], shape=[2.0],
                    oracle_precision=113.0, job_records=1.0, max_ulp_error=10**300),
             result("c-b", "fail", kind="numeric", reference=[[1.0], [2.0, 3.0]],
                    actual=[[1.0], [2.0]], worst_index=[5, 7], shape=[10**30]),
             result("c-b", "fail", kind="numeric", framework="jax", api="jax.x", actual=2.5,
                    reference=2.5, worst_index=[], shape=[])]
    path = write_results(tmp_path / "odd.jsonl", lines)
    (record, *_) = read_results([path]).records
    assert record.worst_index == [1] and type(record.worst_index[0]) is int
    assert record.oracle_precision == 113 and record.max_ulp_error == 1e300
    for argv in (["report", str(path), "-o", str(tmp_path / "r.html")],
                 ["merge", str(path), "-o", str(tmp_path / "m.jsonl")],
                 ["pairwise", str(path)]):
        assert main(argv) in (0, 1), capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err


def test_the_schema_ships_with_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = config["tool"]["setuptools"]["package-data"]
    assert "schema.json" in shipped["conformance.cases"]
    assert "schema.json" in shipped["conformance.results"]


def test_detail_trees_hold_text_only_and_round_trip() -> None:
    """What the page's script builds details from: element trees whose strings are text
    (control characters shown escaped, long words given ``wbr`` places to wrap), packed as
    gzip + base64, which has no character HTML treats specially."""
    from conformance.report.discrepancies import pack, unpack
    from conformance.report.html import node, node_text

    hostile = '<img src=x onerror=alert(1)>\u202e"&'
    tree = node("td", hostile, node("code", "w" * 100), class_="num", title=hostile + "\x00")
    assert tree[0] == "td" and tree[1] == {"class": "num",
                                           "title": '<img src=x onerror=alert(1)>\\u202e"&\\u0000'}
    assert tree[2] == '<img src=x onerror=alert(1)>\\u202e"&'  # text, shown as it is
    code = tree[3]
    assert [c if isinstance(c, str) else c[0] for c in code[2:]] == ["w" * 40, "wbr", "w" * 40,
                                                                    "wbr", "w" * 20]
    assert node_text(tree) == tree[2] + "w" * 100
    packed = pack({"cases": [tree]})
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", packed)
    assert unpack(packed) == {"cases": [json.loads(json.dumps(tree))]}
