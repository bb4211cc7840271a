"""The documented-value check with NaN and infinities, element by element (issue 12, item 2).

A documented value is judged as ``conformance.judge.compare`` judges a framework's: NaN matches
NaN, an infinity matches only itself, a special value facing a finite one is a
``special-value`` mismatch wherever it lies in the list, and ``documented_tolerance`` applies
only where both sides are finite.  The oracle's values used below (``reference/SPEC.md``):
a row of ``-inf`` logits has a NaN softmax, a NaN logit makes the whole row NaN, a ``-inf``
logit has a ``-inf`` log-probability, and a target on it an infinite loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.cases.loading import load_cases
from conformance.judge.check import check_documented
from conformance.judge.compare import NUMERIC, SPECIAL_VALUE
from conformance.results.records import Record
from tests.conftest import write

# softmax([1, 0]) and log_softmax([1, 0, -inf]) to 7 digits, within the default tolerance
P0, P1 = "0.7310586", "0.2689414"
L0, L1 = "-0.3132617", "-1.3132617"

INPUTS = {
    "nan-row-first": ("softmax", '[["-inf", "-inf"], [1.0, 0.0]]'),  # [[nan, nan], [P0, P1]]
    "nan-row-last": ("softmax", '[[1.0, 0.0], ["-inf", "-inf"]]'),  # [[P0, P1], [nan, nan]]
    "nan-alone": ("log_softmax", '["nan", 1.0]'),  # [nan, nan]
    "finite": ("softmax", "[1.0, 0.0]"),  # [P0, P1]
    "minus-inf-first": ("log_softmax", '["-inf", 1.0, 0.0]'),  # [-inf, L0, L1]
    "minus-inf-last": ("log_softmax", '[1.0, 0.0, "-inf"]'),  # [L0, L1, -inf]
}


def documented(tmp_path: Path, name: str, value: str, grad: str | None = None) -> list[Record]:
    op, logits = INPUTS[name]
    text = (f"cases:\n  - id: {name}\n    source: test\n    op: {op}\n"
            f"    input: {logits}\n    documented: {value}\n")
    if grad is not None:
        text += f"    documented_grad: {grad}\n"
    (case,) = load_cases([write(tmp_path / "c.yaml", text)])
    return check_documented(case)


def loss_case(tmp_path: Path, value: str) -> list[Record]:
    """cross_entropy with its target on a -inf logit: the loss is exactly +inf."""
    text = ("cases:\n  - id: infinite-loss\n    source: test\n    op: cross_entropy\n"
            '    input: [[1.0, "-inf", 0.0]]\n    target: [1]\n    reduction: none\n'
            f"    documented: {value}\n")
    (case,) = load_cases([write(tmp_path / "c.yaml", text)])
    return check_documented(case)


@pytest.mark.parametrize("name, value", [
    ("nan-row-first", f'[["nan", "nan"], [{P0}, {P1}]]'),  # NaN first
    ("nan-alone", '["nan", "nan"]'),  # NaN alone
    ("nan-row-last", f'[[{P0}, {P1}], ["nan", "nan"]]'),  # NaN later
    ("minus-inf-first", f'["-inf", {L0}, {L1}]'),  # -inf first
    ("minus-inf-last", f'[{L0}, {L1}, "-inf"]'),  # -inf later
])
def test_matching_special_values_pass(tmp_path: Path, name: str, value: str) -> None:
    (record,) = documented(tmp_path, name, value)
    assert (record.status, record.kind) == ("pass", None), record.message
    # the error figure is that of the finite elements alone (none: no figure, never NaN)
    if "alone" in name:
        assert record.max_abs_error is None
    else:
        assert record.max_abs_error is not None and record.max_abs_error < 1e-6


def test_a_matching_infinite_loss_passes(tmp_path: Path) -> None:
    (record,) = loss_case(tmp_path, '["inf"]')
    assert (record.status, record.kind) == ("pass", None), record.message


@pytest.mark.parametrize("value", ['["-inf"]', "[1.0e+308]", '["nan"]'])
def test_an_infinite_loss_matches_only_itself(tmp_path: Path, value: str) -> None:
    (record,) = loss_case(tmp_path, value)
    assert (record.status, record.kind) == ("fail", SPECIAL_VALUE), record.message


@pytest.mark.parametrize("name, value, where", [
    ("finite", f'[{P0}, "nan"]', [1]),  # documented NaN, oracle finite, later in the list
    ("finite", f'["nan", {P1}]', [0]),
    ("finite", f'[{P0}, "inf"]', [1]),
    ("nan-row-last", f"[[{P0}, {P1}], [0.5, 0.5]]", [1, 0]),  # finite documented, NaN oracle
    ("nan-row-first", f"[[0.5, 0.5], [{P0}, {P1}]]", [0, 0]),
    ("minus-inf-last", f'[{L0}, {L1}, "inf"]', [2]),  # -inf against inf
    ("minus-inf-last", f'[{L0}, {L1}, -1.0e+300]', [2]),  # -inf against a finite value
])
def test_a_special_value_against_a_finite_or_other_one_fails(
        tmp_path: Path, name: str, value: str, where: list[int]) -> None:
    (record,) = documented(tmp_path, name, value)
    assert (record.status, record.kind) == ("fail", SPECIAL_VALUE), record.message
    assert record.worst_index == where
    assert "special-value" in record.message


def test_the_tolerance_applies_to_the_finite_elements_beside_special_ones(
        tmp_path: Path) -> None:
    (record,) = documented(tmp_path, "nan-row-last", '[[0.7312, 0.2689], ["nan", "nan"]]')
    assert (record.status, record.kind) == ("fail", NUMERIC), record.message
    assert record.max_abs_error == pytest.approx(0.7312 - 0.7310585786, rel=1e-6)
    assert record.worst_index == [0, 0]


def test_documented_gradients_follow_the_same_rules(tmp_path: Path) -> None:
    # softmax's gradient (of the sum of its outputs) is NaN on the NaN row, 0 on the other
    output, grad = documented(tmp_path, "nan-row-first", f'[["nan", "nan"], [{P0}, {P1}]]',
                              grad='[["nan", "nan"], [0.0, 0.0]]')
    assert grad.quantity == "documented_grad"
    assert (output.status, grad.status) == ("pass", "pass"), grad.message
    _, grad = documented(tmp_path, "nan-row-first", f'[["nan", "nan"], [{P0}, {P1}]]',
                         grad='[[0.0, 0.0], [0.0, 0.0]]')
    assert (grad.status, grad.kind) == ("fail", SPECIAL_VALUE), grad.message
