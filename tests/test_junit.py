"""conformance run --junit-xml: one testcase per job, named like the pytest items, failures
carrying the records' messages, valid against the JUnit schema (tests/data/junit.xsd)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.results.jsonl import read_results
from conformance.results.junit import item_name, junit_tree
from conformance.results.records import Record
from tests.conftest import TESTS, write

CASES = """\
cases:
  - id: case-a
    source: test
    op: cross_entropy
    input: [[1.0, 2.0, 0.5]]
    target: [1]
    dtypes: [float64, float32]
  - id: case-b
    source: test
    op: softmax
    input: [1.0, 2.0, 3.0]
    dtypes: [float64]
    documented: [0.09003057, 0.24472847, 0.66524096]
"""
XSD = TESTS / "data" / "junit.xsd"


def schema() -> object:
    xmlschema = pytest.importorskip("xmlschema", reason="the JUnit check needs the test extra")
    return xmlschema.XMLSchema(str(XSD))


def test_the_schema_rejects_what_ci_systems_would(tmp_path: Path) -> None:
    """The XSD is not a rubber stamp: a testcase without a name, or a count that is not a
    number, is invalid."""
    xsd = schema()
    good = '<testsuite name="s" tests="1" failures="0" errors="0"><testcase name="t"/></testsuite>'
    assert xsd.is_valid(good)  # type: ignore[attr-defined]
    assert not xsd.is_valid(good.replace(' name="t"', ""))  # type: ignore[attr-defined]
    assert not xsd.is_valid(good.replace('tests="1"', 'tests="one"'))  # type: ignore[attr-defined]
    assert not xsd.is_valid(good.replace("<testcase", "<test"))  # type: ignore[attr-defined]


def test_a_run_writes_one_valid_testcase_per_job(tmp_path: Path, stand_ins: None) -> None:
    xsd = schema()
    cases = write(tmp_path / "cases.yaml", CASES)
    out, xml = tmp_path / "r.jsonl", tmp_path / "junit.xml"
    known = write(tmp_path / "known.yaml", """\
- match: {framework: offset, case: case-b}
  reason: the stand-in adds an offset
  link: not reported upstream yet
""")
    code = main(["run", "--cases", str(cases), "--framework", "exact", "offset", "missing",
                 "--out", str(out), "--junit-xml", str(xml), "--baseline", str(known)])
    # 2: the named framework 'missing' cannot be imported (else 1: offset's case-a is new);
    # the XML is written either way
    assert code == 2
    xsd.validate(str(xml))  # type: ignore[attr-defined]
    records = read_results([out]).records
    jobs = {(r.framework, r.job) for r in records}
    suite = ET.parse(xml).getroot()
    testcases = suite.findall("testcase")
    assert len(testcases) == len(jobs) == int(suite.get("tests", "0"))
    by_name = {t.get("name"): t for t in testcases}
    # named as the pytest plugin names its items
    assert "case-a[exact-cross_entropy-cpu-float64]" in by_name
    assert "case-b[documented]" in by_name
    assert "case-a[missing]" in by_name and by_name["case-a[missing]"].find("skipped") is not None
    failure = by_name["case-a[offset-cross_entropy-cpu-float32]"].find("failure")
    assert failure is not None
    offset_a = next(r for r in records if r.framework == "offset" and r.case_id == "case-a"
                    and r.dtype == "float32" and r.status == "fail")
    assert offset_a.message[:80] in (failure.get("message") or "")
    assert offset_a.message[:80] in (failure.text or "")
    xfail = by_name["case-b[offset-softmax-cpu-float64]"].find("skipped")
    assert xfail is not None and (xfail.get("message") or "").startswith(
        "xfail: the stand-in adds an offset (not reported upstream yet)")
    assert by_name["case-a[exact-cross_entropy-cpu-float64]"].find("*") is None  # a pass
    assert int(suite.get("failures", "0")) == sum(
        t.find("failure") is not None for t in testcases)


def test_xpass_fails_only_under_strict(tmp_path: Path) -> None:
    xsd = schema()
    record = Record(case_id="c", op="softmax", group="g", framework="f", framework_version="1",
                    api="f.softmax", api_kind="native", device="cpu", device_name="",
                    dtype="float32", quantity="output", status="pass", job="c|softmax|cpu|float32",
                    baseline={"outcome": "xpass", "reason": "old bug", "link": "l",
                              "entry": "k.yaml:1"})
    assert junit_tree([record]).getroot().find("testcase/failure") is None
    strict = junit_tree([record], strict_baseline=True).getroot()
    failure = strict.find("testcase/failure")
    assert failure is not None and "XPASS(strict)" in (failure.get("message") or "")
    xsd.validate(ET.tostring(strict, encoding="unicode"))  # type: ignore[attr-defined]
    assert item_name(record) == "c[f-softmax-cpu-float32]"


def test_control_characters_of_messages_stay_valid_xml() -> None:
    record = Record(case_id="c", op="softmax", group="g", framework="f", framework_version="1",
                    api="f.softmax", api_kind="native", device="cpu", device_name="",
                    dtype="float32", quantity="output", status="fail", kind="numeric",
                    message="bad \x00 byte \x1b[31m", job="c|softmax|cpu|float32")
    text = ET.tostring(junit_tree([record]).getroot(), encoding="unicode")
    assert "\\x00" in text and "\x00" not in text
    ET.fromstring(text)
