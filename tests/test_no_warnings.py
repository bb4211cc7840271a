"""The suite's own arithmetic raises no numpy warning (``RuntimeWarning: invalid value``):
each computation below once printed one in the oracle workers, on the terminal of an audit.
They run under ``warnings.simplefilter("error")``, so a warning fails the test."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from reference.oracle import error_bounds, evaluate

MAX64 = float(np.finfo(np.float64).max)
U64 = 2.0 ** -53  # float64's unit roundoff

# Logits of cases/edge/large_logits.yaml: their shifts x_j - m overflow float64 to -inf,
# where the exponential is 0 (0 * inf was NaN, and the whole row's bound became 0).
OVERFLOWING_SHIFTS = [
    ("cross_entropy", [[MAX64, -MAX64]], [1]),
    ("cross_entropy", [[MAX64, 0.0, -MAX64]], [0]),
    ("softmax", [[MAX64, 0.0, -MAX64]], None),
    ("log_softmax", [[MAX64, 0.0, -MAX64]], None),
]


def _strict(call: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


@pytest.mark.parametrize(("op", "logits", "target"), OVERFLOWING_SHIFTS)
def test_bounds_of_overflowing_shifts_raise_no_warning(op: str, logits: list[list[float]],
                                                       target: list[int] | None) -> None:
    _, grad_bound = _strict(lambda: error_bounds(op, logits, target=target))
    assert grad_bound is not None
    exact = _strict(lambda: evaluate(op, logits, target=target))
    grad = np.array([[float(v) for v in row] for row in exact.grad])
    # A bound covers at least one rounding of each finite element of the gradient: not 0,
    # as it was when the row's bound was NaN (then read as 0).
    finite = np.isfinite(grad)
    assert (grad_bound[finite] >= U64 * np.abs(grad[finite])).all()
    assert (grad_bound[finite] > 0).all()


def test_softmax_bound_of_an_overflowing_shift_is_positive() -> None:
    """softmax([max, 0, -max]) = [1, tiny, 0]: the first element's bound is at least one
    rounding of 1 (it was 0)."""
    output_bound, _ = _strict(lambda: error_bounds("softmax", [[MAX64, 0.0, -MAX64]]))
    assert output_bound[0, 0] >= U64
    assert (output_bound > 0).all()


def test_comparing_at_the_largest_float64_raises_no_warning() -> None:
    """np.spacing of the largest float64 overflows; the comparison's margin near it does not
    (cases/edge/large_logits.yaml: a loss that is exactly the float64 maximum)."""
    from mpmath import mpf

    from conformance.judge.compare import compare

    exact = np.array([mpf(MAX64)], dtype=object)
    below = float(np.nextafter(MAX64, 0.0))
    same = _strict(lambda: compare(exact, np.array([MAX64]), "float64", np.array([0.0])))
    off = _strict(lambda: compare(exact, np.array([below]), "float64", np.array([0.0])))
    assert same.passed and not off.passed
    assert off.max_abs_error == MAX64 - below  # one spacing of the top binade, 2**971


def test_keeping_special_values_in_a_record_raises_no_warning() -> None:
    """A documented or returned NaN kept in a record (np.vectorize warned on each cast)."""
    from mpmath import mpf

    from conformance.results.records import values_for_record

    values = np.array([[mpf("nan"), mpf("-inf")], [mpf(1) / 3, mpf(0)]], dtype=object)
    kept = _strict(lambda: values_for_record(values))
    assert np.isnan(kept[0][0]) and kept[0][1] == -np.inf and kept[1] == [1 / 3, 0.0]
    assert _strict(lambda: values_for_record(np.zeros((0, 3), dtype=object))) == []


def test_evaluating_an_undefined_row_raises_no_warning() -> None:
    """NaN inputs are read into mpf one by one (np.vectorize warned on each NaN)."""
    result = _strict(lambda: evaluate("softmax", [[float("nan"), 1.0], [0.0, 0.0]]))
    values = np.array([[float(v) for v in row] for row in result.output])
    assert np.isnan(values[0]).all() and values[1].tolist() == [0.5, 0.5]
    loss = _strict(lambda: evaluate("cross_entropy", [[float("nan"), 0.0]], target=[0]))
    assert np.isnan(float(loss.output))
