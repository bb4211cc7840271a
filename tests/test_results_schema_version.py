"""The versioned results schema (a version in every environment line, `conformance validate
--results`, older versions still loading, newer ones refused), the environment's CPU flags
and the adapters' build information, and precisely expected errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.adapters.base import Outcome, adapter_declaration
from conformance.cases.loading import CaseError, ExpectedError, expected_error, load_file
from conformance.cli import main
from conformance.judge.check import _judge_expected_error
from conformance.results.environment import ISA_FLAGS, cpu_flags, environment
from conformance.results.jsonl import check_line, read_results
from conformance.results.records import RESULTS_SCHEMA_VERSION, Record
from tests.conftest import write
from tests.report_samples import small_run, write_results


def test_every_environment_line_carries_the_schema_version() -> None:
    info = environment()
    assert info["schema_version"] == RESULTS_SCHEMA_VERSION >= 2
    assert check_line({"type": "environment", **info}) is None


def test_files_of_version_1_still_load_and_newer_ones_are_refused(tmp_path: Path) -> None:
    lines = small_run()
    assert "schema_version" not in lines[0]  # the samples are written as version 1 wrote them
    old = write_results(tmp_path / "old.jsonl", lines)
    assert read_results([old]).records
    newer = write_results(tmp_path / "newer.jsonl",
                          [{**lines[0], "schema_version": RESULTS_SCHEMA_VERSION + 1},
                           *lines[1:]])
    with pytest.raises(ValueError, match=rf"newer\.jsonl:1: not an environment line: "
                                         rf"schema_version: .* version "
                                         rf"{RESULTS_SCHEMA_VERSION + 1}"):
        read_results([newer])


def test_validate_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_results(tmp_path / "good.jsonl", small_run())
    assert main(["validate", "--results", str(good)]) == 0
    assert f"{len(small_run())} lines valid" in capsys.readouterr().out
    bad_lines = small_run()
    bad_lines[2] = {**bad_lines[2], "staus": "pass"}
    bad = write_results(tmp_path / "bad.jsonl", bad_lines)
    assert main(["validate", "--results", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:3: not a result record: staus: unknown field (did you mean 'status'?)" \
        in err


def test_cpu_flags_come_from_cpuinfo_and_are_absent_where_it_says_nothing() -> None:
    x86 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f amx_tile\n"
    assert cpu_flags(x86) == ["sse4_2", "avx", "avx2", "fma", "avx512f", "amx_tile"]
    arm = "processor\t: 0\nFeatures\t: fp asimd sve bf16\n"
    assert cpu_flags(arm) == ["asimd", "sve", "bf16"]
    assert cpu_flags("no such lines\n") == []
    here = Path("/proc/cpuinfo")
    if here.exists():  # this machine: exactly what its first CPU lists, nothing guessed
        listed = next((line.split(":", 1)[1].split() for line in here.read_text().splitlines()
                       if line.split(":")[0].strip() in ("flags", "Features")), [])
        assert cpu_flags() == [f for f in ISA_FLAGS if f in listed]


def test_a_build_that_fails_to_describe_itself_costs_no_run() -> None:
    from tests.stand_in_adapters import ExactAdapter

    class Broken(ExactAdapter):
        def build(self) -> dict[str, str | None]:
            raise RuntimeError("no config")

    assert adapter_declaration(ExactAdapter())["build"] == {}
    assert adapter_declaration(Broken())["build"] == {"error": "RuntimeError: no config"}
    line = {"type": "adapter", **adapter_declaration(Broken())}
    assert check_line(line) is None
    line["build"] = {"cuda": 12}
    assert "build.cuda: expected a string or null" in (check_line(line) or "")


# --- expected errors, precisely -------------------------------------------------------------

ERRORS = """\
defaults: {op: cross_entropy, expect: error, dtypes: [float32], source: test}
cases:
  - id: any-error
    input: [[0.1, 0.2]]
    target: [5]
  - id: one-for-all
    input: [[0.1, 0.2]]
    target: [5]
    error: {type: "IndexError|InvalidArgumentError", match: "out of (range|bounds)"}
  - id: per-framework
    input: [[0.1, 0.2]]
    target: [5]
    error:
      torch: {type: IndexError}
      tensorflow: {match: "valid range"}
"""


def base() -> Record:
    return Record(case_id="c", op="cross_entropy", group="g", framework="torch",
                  framework_version="1", api="a", api_kind="native", device="cpu",
                  device_name="", dtype="float32", quantity="output", status="skip")


def test_an_error_spec_is_loaded_per_framework(tmp_path: Path) -> None:
    cases = {c.id: c for c in load_file(write(tmp_path / "e.yaml", ERRORS))}
    assert expected_error(cases["any-error"], "torch") is None
    one = expected_error(cases["one-for-all"], "jax")
    assert one == ExpectedError(("IndexError", "InvalidArgumentError"), "out of (range|bounds)")
    assert expected_error(cases["per-framework"], "torch") == ExpectedError(("IndexError",))
    assert expected_error(cases["per-framework"], "tensorflow") == ExpectedError((), "valid range")
    assert expected_error(cases["per-framework"], "jax") is None  # need only raise


def test_the_error_raised_is_judged() -> None:
    wanted = ExpectedError(("IndexError", "InvalidArgumentError"), "out of (range|bounds)")
    right = Outcome("error", error_type="IndexError", message="Target 5 is out of bounds.")
    assert _judge_expected_error(base(), right, wanted).status == "pass"
    wrong_type = Outcome("error", error_type="RuntimeError", message="Target 5 is out of bounds.")
    record = _judge_expected_error(base(), wrong_type, wanted)
    assert (record.status, record.kind) == ("fail", "behaviour")
    assert record.message == ("raised RuntimeError: Target 5 is out of bounds.; expected "
                              "IndexError|InvalidArgumentError matching 'out of (range|bounds)'")
    wrong_text = Outcome("error", error_type="IndexError", message="list index")
    assert _judge_expected_error(base(), wrong_text, wanted).kind == "behaviour"
    import numpy as np

    value = Outcome("ok", output=np.array(0.5))
    assert "returned a value" in _judge_expected_error(base(), value, wanted).message
    assert _judge_expected_error(base(), wrong_type, None).status == "pass"  # no spec: any


@pytest.mark.parametrize(("error", "expected"), [
    ('{type: "Index Error"}', r"cases\[0\]\.error"),
    ("{match: '(unclosed'}", r":6: cases\[0\]\.error\.match: not a regular expression"),
    ("{kind: IndexError}", r"cases\[0\]\.error"),
    ("{}", r"cases\[0\]\.error"),
    ("{torch: {type: 3}}", r"cases\[0\]\.error"),
])
def test_a_bad_error_spec_names_file_line_and_field(tmp_path: Path, error: str,
                                                    expected: str) -> None:
    text = f"""\
defaults: {{op: cross_entropy, expect: error, source: test}}
cases:
  - id: bad
    input: [[0.1, 0.2]]
    target: [5]
    error: {error}
"""
    with pytest.raises(CaseError, match=expected):
        load_file(write(tmp_path / "bad.yaml", text))


def test_an_error_spec_needs_expect_error(tmp_path: Path) -> None:
    text = """\
cases:
  - id: bad
    source: test
    op: softmax
    input: [0.1, 0.2]
    error: {type: ValueError}
"""
    with pytest.raises(CaseError, match=r"bad\.yaml:6: cases\[0\]\.error: names the error "
                                        r"expected, so the case needs 'expect: error'"):
        load_file(write(tmp_path / "bad.yaml", text))


def test_the_shipped_invalid_cases_name_the_errors_they_expect() -> None:
    from tests.conftest import ROOT

    cases = {c.id: c for c in load_file(ROOT / "cases" / "invalid" / "invalid_inputs.yaml")}
    spec = expected_error(cases["invalid-target-equals-c"], "torch")
    assert spec is not None and spec.accepts("IndexError", "Target 3 is out of bounds.")
    assert not spec.accepts("ValueError", "Target 3 is out of bounds.")
    tf_spec = expected_error(cases["invalid-target-equals-c"], "tensorflow")
    assert tf_spec is not None and tf_spec.accepts(
        "InvalidArgumentError", "Received a label value of 3 which is outside the valid "
        "range of [0, 3).  Label values: 3")
    assert json.dumps(sorted(c for c in cases if cases[c].error is not None))
