"""``conformance validate`` checks each file completely: every error (up to 50) in file order,
keys that do not apply to the op, and documented values against the oracle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.cases.loading import MAX_ERRORS, CaseError, check_file, load_file
from conformance.cli import main
from tests.conftest import write

FIVE_ERRORS = """\
defaults:
  source: test
cases:
  - id: v-good
    op: cross_entropy
    input: [[1.0, 2.0]]
    target: [0]
  - id: v-softmax-target
    op: softmax
    input: [[1.0, 2.0]]
    target: [1]
  - id: v-typo
    op: cross_entropy
    inptu: [[1.0, 2.0]]
    input: [[1.0, 2.0]]
    target: [0]
  - id: v-reduction
    op: cross_entropy
    input: [[1.0, 2.0]]
    target: [0]
    reduction: avg
  - id: v-range
    op: cross_entropy
    input: [[1.0, 2.0]]
    target: [5]
  - id: v-smoothing
    op: nll_loss
    input: [[-1.0, -2.0]]
    target: [0]
    label_smoothing: 0.1
"""


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


def test_every_error_of_a_file_in_file_order(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "five.yaml", FIVE_ERRORS)
    assert main(["validate", str(path)]) == 2
    errors = _errors(capsys.readouterr().err)
    assert [re.match(r"error: [^:]+:(\d+): (\S+):", e).groups() for e in errors] == [  # type: ignore[union-attr]
        ("11", "cases[1].target"), ("14", "cases[2].inptu"), ("21", "cases[3].reduction"),
        ("25", "cases[4].target"), ("30", "cases[5].label_smoothing")]
    assert "'target' does not apply to op 'softmax'" in errors[0]
    assert "did you mean 'input'?" in errors[1]
    assert "nll_loss has no label_smoothing" in errors[4]


def test_check_file_keeps_the_valid_cases(tmp_path: Path) -> None:
    cases, errors = check_file(write(tmp_path / "five.yaml", FIVE_ERRORS))
    assert [c.id for c in cases] == ["v-good"] and len(errors) == 5
    with pytest.raises(CaseError) as raised:  # loading stops at the first, by line
        load_file(tmp_path / "five.yaml")
    assert raised.value.line == 11 and raised.value.field == "cases[1].target"


def test_at_most_fifty_errors_are_listed(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cases = "".join(f"  - {{id: v-{i}, source: t, op: softmax, input: [1.0], reduction: x}}\n"
                    for i in range(60))
    path = write(tmp_path / "many.yaml", "cases:\n" + cases)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    errors = _errors(err)
    assert len(errors) == MAX_ERRORS + 1 and "stopped at 50 errors" in errors[-1]
    lines = [int(re.match(r"error: [^:]+:(\d+):", e)[1]) for e in errors[:-1]]  # type: ignore[index]
    assert lines == list(range(2, 52))  # the first fifty, in order


def test_a_key_that_the_op_ignores_is_refused_but_not_in_an_expected_error(
        tmp_path: Path) -> None:
    text = """\
cases:
  - id: v-softmax-weight
    source: t
    op: log_softmax
    input: [[1.0, 2.0]]
    weight: [1.0, 2.0]
    expect: error
"""
    assert [c.id for c in load_file(write(tmp_path / "ok.yaml", text))] == ["v-softmax-weight"]
    with pytest.raises(CaseError, match="'weight' does not apply to op 'log_softmax'"):
        load_file(write(tmp_path / "bad.yaml", text.replace("    expect: error\n", "")))


DOCUMENTED = """\
cases:
  - id: v-documented
    source: seeds/000 (torch.manual_seed(42), printed loss 1.3472)
    op: cross_entropy
    input: [[0.3367, 0.1288, 0.2345, 0.2303, -1.1229]]
    target: [0]
    documented: {value}
"""


def test_a_mistyped_documented_value_is_an_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.yaml", DOCUMENTED.format(value="1.3472"))
    assert main(["validate", str(good)]) == 0
    bad = write(tmp_path / "bad.yaml", DOCUMENTED.format(value="1.3482"))  # a digit off
    assert main(["validate", str(bad)]) == 2
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {bad}:2: v-documented: documented: fail against the "
                                "float64 oracle: documented value differs from the oracle by ")
    assert main(["validate", "--no-oracle", str(bad)]) == 0


def test_a_slow_documented_case_is_left_to_the_run_and_said(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "large.yaml", """\
cases:
  - id: v-large
    source: t
    op: cross_entropy
    input: {generate: normal, shape: [64, 128], seed: 1}
    target: {generate: classes, seed: 2}
    documented: 1.0
""")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "note: the documented values of 1 case(s) with over 4096 input elements were not " \
           "checked against the oracle here" in out and "v-large" in out
