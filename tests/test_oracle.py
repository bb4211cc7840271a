"""The oracle against values derived by hand, by the seed documents, and by a naive
high-precision evaluation written independently here (no shift, no log1p, 120 digits)."""

from __future__ import annotations

import math
import random

import mpmath
import numpy as np
import pytest
from mpmath import mpf

from reference import vectorised
from reference.oracle import OracleDomainError, evaluate


def naive_cross_entropy(rows, targets, weight=None, eps=0.0, reduction="mean", ignore=-100):
    """The textbook definition, straight from SPEC.md, at 120 digits: independent of the oracle."""
    with mpmath.workdps(120):
        classes = len(rows[0])
        w = [mpf(v) for v in weight] if weight else [mpf(1)] * classes
        losses, denominator = [], mpf(0)
        for row, t in zip(rows, targets):
            log_z = mpmath.log(mpmath.fsum(mpmath.exp(mpf(v)) for v in row))
            log_p = [mpf(v) - log_z for v in row]
            if isinstance(t, list):  # probabilities
                q = [(1 - mpf(eps)) * mpf(y) + mpf(eps) / classes for y in t]
                losses.append(-mpmath.fsum(wc * qc * lp for wc, qc, lp in zip(w, q, log_p)))
                denominator += 1
            elif t == ignore:
                losses.append(mpf(0))
            else:
                smooth = -mpmath.fsum(wc * lp for wc, lp in zip(w, log_p)) * mpf(eps) / classes
                losses.append(-(1 - mpf(eps)) * w[t] * log_p[t] + smooth)
                denominator += w[t]
        if reduction == "none":
            return losses
        total = mpmath.fsum(losses)
        return total if reduction == "sum" else total / denominator


def scalar(value):
    """The mpf inside a 0-d result array."""
    return value.item() if isinstance(value, np.ndarray) else value


def close(a, b, rel=None) -> bool:
    a, b = scalar(a), scalar(b)
    rel = mpf(2) ** -70 if rel is None else rel
    with mpmath.workdps(60):
        return abs(mpf(a) - mpf(b)) <= rel * max(abs(mpf(b)), mpf(2) ** -1000)


# --- the seed documents ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input", "target", "kwargs", "printed"),
    [
        ([[0.3367, 0.1288, 0.2345, 0.2303, -1.1229]], [0], {}, 1.3472),  # seed 000
        ([0.6, 0.4], [1.0, 0.0], {}, 0.5981),  # seed 002
        ([0.6, 0.4], [0.5, 0.5], {"weight": [1.0, 2.0]}, 1.0972),  # seed 002
        ([[0.6, 0.4]] * 3, [[1.0, 0.0]] * 3, {"reduction": "sum"}, 1.7944),  # seed 002
        ([[1.0, 2.0, 3.0]] * 3, [2, 1, 0], {}, 1.4076),  # seed 003
        ([[0.0, 0.0, 0.0, 1.0]], [3], {}, 0.7437),  # seed 004
    ],
)
def test_seed_documents(input, target, kwargs, printed) -> None:
    result = evaluate("cross_entropy", input, target=target, **kwargs)
    assert abs(float(result.output) - printed) < 1e-4


def test_seed_003_gradient_rows() -> None:
    result = evaluate("cross_entropy", [[1.0, 2.0, 3.0]] * 3, target=[2, 1, 0])
    printed = [[0.0300, 0.0816, -0.1116], [0.0300, -0.2518, 0.2217], [-0.3033, 0.0816, 0.2217]]
    for r in range(3):
        for c in range(3):
            assert abs(float(result.grad[r, c]) - printed[r][c]) < 1e-4


# --- values derived by hand ------------------------------------------------------------------


def test_uniform_logits_give_log_of_the_class_count() -> None:
    result = evaluate("cross_entropy", [[7.0] * 5], target=[3], dtype="float64")
    assert float(result.output) == math.log(5)
    # gradient: softmax - onehot = 1/5 everywhere, -4/5 at the target
    assert [float(g) for g in result.grad[0]] == [0.2, 0.2, 0.2, -0.8, 0.2]


def test_two_classes_is_softplus_of_the_margin() -> None:
    # l = log(1 + exp(x1 - x0)) for target 0; at x = [20, 0] that is log1p(exp(-20))
    result = evaluate("cross_entropy", [[20.0, 0.0]], target=[0])
    assert float(result.output) == math.log1p(math.exp(-20.0))


def test_tiny_loss_far_below_the_unit_roundoff_is_exact() -> None:
    # log1p(exp(-60)) = 8.75e-27: a naive float evaluation returns 0
    result = evaluate("cross_entropy", [[60.0, 0.0]], target=[0])
    with mpmath.workdps(50):
        exact = mpmath.log1p(mpmath.exp(-60))
    assert float(result.output) == float(exact)


def test_weighted_mean_divides_by_the_weights_of_the_targets() -> None:
    rows, weight = [[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]], [0.5, 2.0, 4.0]
    result = evaluate("cross_entropy", rows, target=[2, 0], weight=weight)
    lse = [math.log(sum(math.exp(v) for v in row)) for row in rows]
    expected = (4.0 * (lse[0] - 3.0) + 0.5 * (lse[1] - 3.0)) / (4.0 + 0.5)
    assert float(result.output) == pytest.approx(expected, rel=1e-14)


def test_ignored_rows_cost_nothing_and_leave_the_denominator() -> None:
    rows = [[1.0, 2.0, 3.0], [9.0, 9.0, 9.0]]
    result = evaluate("cross_entropy", rows, target=[0, 5], ignore_index=5)
    assert float(result.output) == pytest.approx(math.log(sum(math.exp(v) for v in rows[0])) - 1.0,
                                                 rel=1e-15)
    assert all(g == 0 for g in result.grad[1])


def test_label_smoothing_one_is_the_mean_negative_log_probability() -> None:
    row = [0.5, -1.0, 2.0]
    result = evaluate("cross_entropy", [row], target=[0], label_smoothing=1.0)
    lse = math.log(sum(math.exp(v) for v in row))
    assert float(result.output) == pytest.approx(sum(lse - v for v in row) / 3, rel=1e-15)


def test_probability_targets_mean_over_rows_whatever_the_weights() -> None:
    rows, targets, weight = [[0.6, 0.4], [0.1, 0.9]], [[1.0, 0.0], [0.25, 0.75]], [1.0, 3.0]
    result = evaluate("cross_entropy", rows, target=targets, weight=weight)
    assert close(result.output, naive_cross_entropy(rows, targets, weight))
    losses = [sum(-w * y * (v - math.log(sum(math.exp(u) for u in row)))
                  for w, y, v in zip(weight, t, row)) for row, t in zip(rows, targets)]
    assert float(result.output) == pytest.approx(sum(losses) / 2, rel=1e-14)


def test_k_dimensional_input_equals_its_flattened_rows() -> None:
    # input (N=2, C=3, d1=2): row (n, d) is input[n, :, d]
    x = [[[1.0, -1.0], [0.5, 2.0], [0.0, 0.25]], [[3.0, 1.0], [-2.0, 0.0], [1.5, 1.0]]]
    t = [[2, 0], [1, 1]]
    result = evaluate("cross_entropy", x, target=t, reduction="none")
    assert result.output.shape == (2, 2)
    for n in range(2):
        for d in range(2):
            row = [x[n][c][d] for c in range(3)]
            flat = evaluate("cross_entropy", [row], target=[t[n][d]], reduction="none")
            assert result.output[n, d] == flat.output[0]
    assert result.grad.shape == (2, 3, 2)


def test_softmax_and_log_softmax() -> None:
    result = evaluate("softmax", [1.0, 2.0, 3.0])
    total = math.exp(1) + math.exp(2) + math.exp(3)
    assert [float(v) for v in result.output] == pytest.approx(
        [math.exp(1) / total, math.exp(2) / total, math.exp(3) / total], rel=1e-15)
    assert all(g == 0 for g in result.grad)  # d/dx sum(softmax) = 0
    log_result = evaluate("log_softmax", [[1.0, 2.0, 3.0]])
    assert float(log_result.output[0, 2]) == pytest.approx(3 - math.log(total), rel=1e-15)
    # d/dx_k sum_c log p_c = 1 - C p_k
    assert float(log_result.grad[0, 0]) == pytest.approx(1 - 3 * math.exp(1) / total, rel=1e-14)


def test_nll_loss_reads_the_target_log_probability() -> None:
    result = evaluate("nll_loss", [[-1.0, -2.0], [-0.5, -3.0]], target=[1, 0],
                      weight=[2.0, 3.0], reduction="sum")
    assert float(result.output) == 3.0 * 2.0 + 2.0 * 0.5
    assert [[float(g) for g in row] for row in result.grad] == [[0.0, -3.0], [-2.0, 0.0]]


def test_gradient_matches_numerical_differentiation_of_the_textbook_formula() -> None:
    rows, targets = [[0.3, -1.2, 2.0], [1.0, 1.5, -0.5]], [[0.2, 0.5, 0.3], [0.0, 1.0, 0.0]]
    weight, eps = [1.0, 0.5, 2.0], 0.1
    result = evaluate("cross_entropy", rows, target=targets, weight=weight, label_smoothing=eps)
    for r in range(2):
        for c in range(3):
            def f(v, r=r, c=c):
                changed = [list(map(mpf, row)) for row in rows]
                changed[r][c] = v
                return naive_cross_entropy(changed, targets, weight, eps)
            with mpmath.workdps(60):
                numeric = mpmath.diff(f, mpf(rows[r][c]))
            assert close(result.grad[r, c], numeric, rel=mpf(10) ** -25)


# --- precision -------------------------------------------------------------------------------


def test_results_agree_with_a_naive_120_digit_evaluation_on_random_configurations() -> None:
    rng = random.Random(20261128)
    for _ in range(25):
        classes, rows = rng.randint(1, 6), rng.randint(1, 4)
        x = [[rng.gauss(0, 10) for _ in range(classes)] for _ in range(rows)]
        weight = [rng.uniform(0.1, 3) for _ in range(classes)] if rng.random() < 0.5 else None
        eps = rng.choice([0.0, 0.1, 1.0])
        reduction = rng.choice(["none", "mean", "sum"])
        if rng.random() < 0.5:
            t = [rng.randrange(classes) for _ in range(rows)]
        else:
            t = [[rng.random() for _ in range(classes)] for _ in range(rows)]
        result = evaluate("cross_entropy", x, target=t, weight=weight, label_smoothing=eps,
                          reduction=reduction)
        expected = naive_cross_entropy(x, t, weight, eps, reduction)
        if reduction == "none":
            assert all(close(a, b) for a, b in zip(result.output, expected))
        else:
            assert close(result.output, expected)
        assert result.certified


def test_precision_is_recorded_and_independent_of_the_global_context() -> None:
    reference = evaluate("cross_entropy", [[0.1, 0.2, 0.3]], target=[1])
    with mpmath.workprec(12):  # a user's low global precision must not leak in
        low = evaluate("cross_entropy", [[0.1, 0.2, 0.3]], target=[1])
    assert low.output == reference.output
    # the vectorised path (double-double, reference/vectorised.py) took it; the MPFR path
    # starts at 128 + bits(C) bits (nll_loss never takes the vectorised path)
    assert reference.precision == vectorised.PRECISION == 106
    slow = evaluate("nll_loss", [[-0.1, -0.2, -0.3]], target=[1])
    assert slow.precision >= 128


def test_rounding_to_the_dtype_under_test_is_stable_too() -> None:
    result = evaluate("cross_entropy", [[1.0, 2.0, 3.0]], target=[0], dtype="bfloat16")
    assert result.certified


# --- edge-value conventions (SPEC.md) --------------------------------------------------------


def test_zero_probability_on_a_masked_class_contributes_nothing() -> None:
    result = evaluate("cross_entropy", [[1.0, -math.inf, 3.0]], target=[[0.5, 0.0, 0.5]])
    lse = math.log(math.exp(1) + math.exp(3))
    assert float(result.output) == pytest.approx(0.5 * (lse - 1) + 0.5 * (lse - 3), rel=1e-15)
    assert float(result.grad[0, 1]) == 0.0


def test_weight_on_a_masked_class_gives_infinity() -> None:
    result = evaluate("cross_entropy", [[1.0, -math.inf, 3.0]], target=[1])
    assert scalar(result.output) == mpf("inf")
    assert float(result.grad[0, 1]) == -1.0


@pytest.mark.parametrize("row", [[math.inf, 0.0], [math.nan, 0.0], [-math.inf, -math.inf]])
def test_undefined_rows_are_nan(row) -> None:
    result = evaluate("cross_entropy", [row], target=[0])
    assert mpmath.isnan(scalar(result.output))


def test_all_targets_ignored_under_mean_is_nan_with_zero_gradient() -> None:
    result = evaluate("cross_entropy", [[1.0, 2.0]] * 2, target=[-100, -100])
    assert mpmath.isnan(scalar(result.output))
    assert all(g == 0 for g in result.grad.reshape(-1))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target": [5]}, "target"),
        ({"target": [-1]}, "target"),
        ({"target": [[0.5, 0.5]]}, "target"),
        ({"target": [0], "weight": [1.0]}, "weight"),
        ({"target": [0], "label_smoothing": 1.5}, "label_smoothing"),
        ({"target": [0], "reduction": "avg"}, "reduction"),
    ],
)
def test_domain_errors_name_the_field(kwargs, field) -> None:
    with pytest.raises(OracleDomainError) as error:
        evaluate("cross_entropy", [[1.0, 2.0, 3.0]], **kwargs)
    assert error.value.field == field
