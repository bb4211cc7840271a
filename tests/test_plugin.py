"""The pytest plugin: YAML cases become items whose failures read like bug reports."""

from __future__ import annotations

import pytest

CASES = """\
cases:
  - id: three-classes
    source: a test
    op: cross_entropy
    input: [[1.0, 2.0, 3.0]]
    target: [0]
    dtypes: [float32]
    documented: 2.4076
  - id: mistyped
    source: a test
    op: softmax
    input: [1.0, 2.0, 3.0]
    dtypes: [float64]
    documented: [0.0800, 0.2447, 0.6652]   # 0.0900 mistyped
    documented_tolerance: 1.0e-4
"""


@pytest.fixture
def case_file(pytester: pytest.Pytester, stand_ins: None):
    return pytester.makefile(".yaml", mine=CASES)


def test_items_are_named_case_framework_api_device_dtype(pytester, case_file) -> None:
    result = pytester.runpytest(str(case_file), "--conformance-framework", "exact", "-v")
    result.stdout.fnmatch_lines([
        "*three-classes?documented? PASSED*",
        "*mistyped?documented? FAILED*",
        "*three-classes?exact-cross_entropy-cpu-float32? PASSED*",
        "*mistyped?exact-softmax-cpu-float64? PASSED*",
    ])
    result.assert_outcomes(passed=3, failed=1)


def test_a_failure_reads_like_a_bug_report(pytester, case_file) -> None:
    result = pytester.runpytest(str(case_file), "--conformance-framework", "offset",
                                "-k", "three-classes and offset")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines([
        "*three-classes: offset 1.0, standin.cross_entropy (native), device cpu*float32*",
        "*case:*mine.yaml:2*source: a test*",
        "*input:*((1.0, 2.0, 3.0),)*",
        "*output: FAIL (numeric)*",
        "*oracle:*2.407605964*",
        "*framework:*2.41760*",
        "*error:*ulp*",
    ])


def test_a_missing_framework_skips_with_its_reason(pytester, case_file) -> None:
    result = pytester.runpytest(str(case_file), "--conformance-framework", "nosuch", "-rs")
    result.stdout.fnmatch_lines(["*unknown framework 'nosuch'*"])
    result.assert_outcomes(passed=1, failed=1, skipped=2)


def test_a_bad_case_file_is_a_collection_error_naming_the_line(pytester, stand_ins) -> None:
    path = pytester.makefile(".yaml", bad=CASES.replace("op: softmax", "op: softmx"))
    result = pytester.runpytest(str(path), "--conformance-framework", "exact")
    result.stdout.fnmatch_lines(["*bad.yaml:11: cases?1?.op: 'softmx' is not one of*"])
    assert result.ret != 0


def test_yaml_outside_the_case_directories_is_left_alone(pytester, stand_ins) -> None:
    pytester.makefile(".yaml", unrelated=CASES)
    pytester.makepyfile(test_nothing="def test_ok():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_a_failure_header_names_the_api_device_and_dtype(pytester, case_file) -> None:
    result = pytester.runpytest(str(case_file), "--conformance-framework", "offset",
                                "-k", "three-classes and offset")
    result.stdout.fnmatch_lines(
        ["_* three-classes: offset standin.cross_entropy on cpu, float32 _*"])


def test_a_failure_carries_no_torch_trace_records(pytester, case_file) -> None:
    result = pytester.runpytest(str(case_file), "--conformance-framework", "tracing",
                                "-k", "three-classes and tracing")
    result.assert_outcomes(failed=1, deselected=3)
    text = result.stdout.str()
    assert "torch.__trace" not in text
    result.stdout.fnmatch_lines(["*Captured log call*", "*tracing: a warning worth reading*"])
