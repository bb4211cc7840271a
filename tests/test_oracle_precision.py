"""The oracle states how it knows its digits, and evaluates the comparison's error bounds.

Expected values are computed here, independently, with mpmath at high precision or by hand
from the bound's formula (conformance/judge/compare.py), never read back from the oracle.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from mpmath import mpf

from reference.formats import FORMATS, round_to_float
from reference.oracle import INFLATION, error_bounds, evaluate

# these test the MPFR/mpmath path; tests/test_oracle_vectorised.py tests the vectorised one
pytestmark = pytest.mark.usefixtures("mpfr_path")

U32 = 2.0 ** -24
ETA32 = 2.0 ** -149


def _independent_loss(row: list[float], target: int, prec: int = 600) -> mpf:
    with mpmath.workprec(prec):
        return mpmath.log(mpmath.fsum(mpmath.exp(mpf(v)) for v in row)) - mpf(row[target])


# --- Ziv's strategy: the precision is recorded and the rounding is right ---------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_result_states_its_precision_and_rounds_correctly(dtype: str) -> None:
    rows = [[1.0, 2.0, 3.0], [0.5, -0.25, 4.0]]
    result = evaluate("cross_entropy", rows, target=[0, 2], reduction="none", dtype=dtype)
    assert result.certified
    assert result.precision >= 128  # the first precision is 128 + bits(C); stable at the next
    for r, (row, t) in enumerate(zip(rows, [0, 2])):
        independent = _independent_loss(row, t)
        assert round_to_float(result.output[r], dtype) == round_to_float(independent, dtype)
        assert round_to_float(result.output[r], "float64") == round_to_float(independent,
                                                                               "float64")


def test_tiny_loss_keeps_its_relative_accuracy() -> None:
    # logits [20, 0], target 0: loss = log1p(exp(-20)) = 2.0611536181902e-9
    result = evaluate("cross_entropy", [[20.0, 0.0]], target=[0], dtype="float32")
    with mpmath.workprec(300):
        independent = mpmath.log1p(mpmath.exp(-20))
        assert abs(result.output[()] - independent) < independent * mpf(2) ** -120


# --- the bound, derived by hand ----------------------------------------------------------------


def test_bound_of_two_equal_logits_by_hand() -> None:
    # logits [0, 0], target 0, float32, mean over one row.  s = [0, 0], S = 2, L = ln 2,
    # p = [1/2, 1/2], sigma = 0, c(2, 2) = 1, so lam = ln 2 + 0 + 1 + 1 + 2 eta / (2 u 2).
    # The row: beta = u (|s_0| + lam + |lp_0| + (c(2, 1) + 3) |lp_0|) + eta (1 + 1)
    #              = u (lam + 4 ln 2) + 2 eta.
    # mean over N = 1 (D = 1, delta_D = 1): beta + u * 1 * ln 2 + eta.
    with mpmath.workprec(200):
        ln2 = mpmath.log(2)
        lam = ln2 + 2 + 2 * mpf(ETA32) / (4 * mpf(U32))
        expected = mpf(U32) * (lam + 5 * ln2) + 3 * mpf(ETA32)
        output_bound, _ = error_bounds("cross_entropy", [[0.0, 0.0]], target=[0],
                                       dtype="float32")
        assert output_bound.shape == ()
        assert abs(mpf(float(output_bound)) / (expected * mpf(INFLATION)) - 1) < 1e-14


def test_gradient_bound_of_two_equal_logits_by_hand() -> None:
    # Same case.  A = 1, D = 1, delta_D = 1, c(2, 1) = 0, p_k = 1/2, |s_k| = 0,
    # |lp_k| = ln 2, pi_k = 0 + lam + ln 2 + 1, g = (1/2 - 1, 1/2).
    # bound_k = u [ p_k (pi_k + 1) + (0 + 2 + 1)(p_k + |a_k|) + |g_k| ] + eta (1/2 + 1).
    with mpmath.workprec(200):
        ln2 = mpmath.log(2)
        lam = ln2 + 2 + 2 * mpf(ETA32) / (4 * mpf(U32))
        pi = lam + ln2 + 1
        half = mpf(1) / 2
        expected = [mpf(U32) * (half * (pi + 1) + 3 * (half + a) + abs(half - a))
                    + mpf(ETA32) * mpf(1.5) for a in (1, 0)]
        _, grad_bound = error_bounds("cross_entropy", [[0.0, 0.0]], target=[0], dtype="float32")
        assert grad_bound is not None
        for got, want in zip(grad_bound[0], expected):
            assert abs(mpf(float(got)) / (want * mpf(INFLATION)) - 1) < 1e-14


# --- the two required properties -------------------------------------------------------------


CASES = [
    ("cross_entropy", {"target": [2, 1, 0]}),
    ("cross_entropy", {"target": [2, 1, 0], "weight": [1.0, 2.0, 0.5], "reduction": "sum"}),
    ("cross_entropy", {"target": [[0.25, 0.5, 0.25]] * 3, "label_smoothing": 0.125}),
    ("cross_entropy", {"target": [2, -100, 0], "label_smoothing": 0.25, "reduction": "none"}),
    ("softmax", {}),
    ("log_softmax", {}),
]


@pytest.mark.parametrize(("op", "options"), CASES)
def test_bound_is_shift_invariant(op: str, options: dict) -> None:
    rows = [[1.0, 2.0, 3.0], [0.5, -1.25, 2.0], [-3.0, 0.0, 0.25]]
    shifted = [[v + 1e4 for v in row] for row in rows]
    # every shifted value is a float32 (a multiple of 2**-10 below 2**14)
    assert all(round_to_float(v, "float32") == v for row in shifted for v in row)
    plain = error_bounds(op, rows, dtype="float32", **options)
    moved = error_bounds(op, shifted, dtype="float32", **options)
    assert np.array_equal(plain[0], moved[0])
    assert plain[1] is not None and moved[1] is not None
    assert np.array_equal(plain[1], moved[1])
    # and it does not grow with |x|: u * 1e4 would be 6e-4
    assert float(np.max(moved[0])) < 2e-5


def test_bound_is_absolute_near_zero() -> None:
    # logits [20, 0], target 0: the loss 2.06e-9 is far below u = 6e-8; a float evaluation
    # of logsumexp - x_t gives 0, an error of the whole loss.  The bound is absolute.
    loss = float(_independent_loss([20.0, 0.0], 0))
    output_bound, grad_bound = error_bounds("cross_entropy", [[20.0, 0.0]], target=[0],
                                            dtype="float32")
    assert float(output_bound) > 10 * loss
    assert float(output_bound) < 100 * U32  # yet of the order of u, not of the loss scale
    # gradient (p_0 - 1, p_1) = (-2.06e-9, 2.06e-9): p^_0 = 1 exactly is within its bound
    assert grad_bound is not None and float(grad_bound[0, 0]) > 10 * loss


# --- a correctly rounded result always passes ---------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
@pytest.mark.parametrize(("op", "options"), [
    *CASES, ("nll_loss", {"target": [2, 1, -100], "weight": [1.0, 3.0, 0.5]}),
])
def test_bound_covers_the_correct_rounding(dtype: str, op: str, options: dict) -> None:
    rng = np.random.default_rng(7)
    rows = rng.normal(scale=6.0, size=(3, 3))
    if op == "nll_loss":
        rows = -np.abs(rows)
    rows = [[round_to_float(v, dtype) for v in row] for row in rows]
    result = evaluate(op, rows, dtype=dtype, **options)
    assert result.output_bound is not None and result.grad_bound is not None
    for values, bounds in ((result.output, result.output_bound), (result.grad, result.grad_bound)):
        for index in np.ndindex(np.shape(values)):
            exact = values[index]
            with mpmath.workprec(300):
                error = abs(mpf(round_to_float(exact, dtype)) - exact)
            assert error <= bounds[index], (index, exact, bounds[index])


def test_bound_covers_float16_underflow() -> None:
    # softmax of [0, -12]: p_1 = 6.1e-6, a float16 subnormal (spacing 6e-8): its rounding
    # error is absolute, not relative to p_1
    rows = [[0.0, -12.0, -20.0]]
    result = evaluate("softmax", rows, dtype="float16")
    assert result.output_bound is not None
    smallest = FORMATS["float16"].smallest_subnormal
    for c in range(3):
        exact = result.output[0, c]
        with mpmath.workprec(300):
            error = abs(mpf(round_to_float(exact, "float16")) - exact)
        assert error <= result.output_bound[0, c]
        assert result.output_bound[0, c] >= smallest


def test_oracle_result_carries_the_bounds_of_error_bounds() -> None:
    rows = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]
    result = evaluate("cross_entropy", rows, target=[0, 1], dtype="bfloat16")
    output_bound, grad_bound = error_bounds("cross_entropy", rows, target=[0, 1],
                                            dtype="bfloat16")
    assert result.output_bound is not None and result.grad_bound is not None
    assert np.array_equal(result.output_bound, output_bound)
    assert grad_bound is not None and np.array_equal(result.grad_bound, grad_bound)


def test_bounds_of_undefined_and_infinite_elements() -> None:
    # a NaN row: NaN values, compared as special values (bound 0); a loss that puts weight on
    # a -inf logit is +inf (bound inf); its gradient stays finite, with a finite bound
    rows = [[0.0, "-inf"], [1.0, "nan"]]
    result = evaluate("cross_entropy", rows, target=[[0.5, 0.5], [1.0, 0.0]],
                      reduction="none", dtype="float16")
    assert result.output_bound is not None and result.grad_bound is not None
    assert math.isinf(result.output_bound[0]) and result.output_bound[1] == 0
    assert np.all(np.isfinite(result.grad_bound[0])) and np.all(result.grad_bound[1] == 0)


def test_empty_batch_with_a_probability_target() -> None:
    # an empty float array is a probability target (shaped like the input), not an index one
    result = evaluate("cross_entropy", np.zeros((0, 4)), target=np.zeros((0, 4)),
                      reduction="sum", dtype="float32")
    assert result.output[()] == 0 and result.grad is not None and result.grad.shape == (0, 4)
    assert result.output_bound is not None and result.output_bound.shape == ()
