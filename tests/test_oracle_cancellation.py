"""Gradients that cancel: the oracle computes them right, and never certifies a wrong zero.

With logits ``[0, -446]`` and target 0 the target-class gradient ``p_0 - 1 = -p_1`` is
``-2.0e-194``: as written, ``p_0`` is within ``2**-640`` of 1, so the subtraction loses every
digit at any working precision below that, and two precisions that both lose it agree on 0,
which Ziv's loop once certified.  Here every expected value is the textbook formula
(``W p - a``, ``1 - C p``) evaluated by mpmath at 4000 bits, where those cancellations still
leave thousands of bits, never the rewritten formulas of reference/ under test.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from mpmath import mpf

from reference import vectorised
from reference.formats import get_format, nearest_float64, round_float64_array
from reference.oracle import OracleResult, evaluate

HIGH = 4000
INF = float("inf")


def textbook_cross_entropy(x: list[float], target: int | list[float], weight: list[float] | None,
                           eps: float, reduction: str) -> tuple[mpf, list[mpf]]:
    """One row's cross_entropy and its gradient, by SPEC.md's formulas as written."""
    classes = len(x)
    with mpmath.workprec(HIGH):
        top = max(mpf(v) for v in x)
        exps = [mpmath.exp(mpf(v) - top) for v in x]
        p = [e / mpmath.fsum(exps) for e in exps]
        y = ([mpf(v) for v in target] if isinstance(target, list)
             else [mpf(int(c == target)) for c in range(classes)])
        w = [mpf(1)] * classes if weight is None else [mpf(v) for v in weight]
        a = [w[c] * ((1 - mpf(eps)) * y[c] + mpf(eps) / classes) for c in range(classes)]
        loss = mpmath.fsum(-a[c] * mpmath.log(p[c]) for c in range(classes) if a[c] != 0)
        grad = [mpmath.fsum(a) * p[c] - a[c] for c in range(classes)]
        divisor = mpf(1)
        if reduction == "mean" and not isinstance(target, list):
            divisor = w[target]
        return loss / divisor, [g / divisor for g in grad]


def rounded(values: object, dtype: str) -> list[tuple[float, float]]:
    """Each value's nearest float64 and its rounding to ``dtype``."""
    nearest = nearest_float64(values).reshape(-1)
    in_dtype, _midpoints = round_float64_array(nearest, get_format(dtype))
    return list(zip(nearest.tolist(), in_dtype.tolist()))


def assert_rounds_as(result: OracleResult, loss: mpf, grad: list[mpf], dtype: str) -> None:
    assert result.certified
    with mpmath.workprec(HIGH):
        assert rounded(result.output, dtype) == rounded([loss], dtype)
        assert result.grad is not None
        assert rounded(result.grad, dtype) == rounded(grad, dtype)


@pytest.mark.parametrize("path", ["mpfr", "vectorised"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("x", [[0.0, -446.0], [0.0, -700.0], [0.0, -446.0, -INF]],
                         ids=["446", "700", "masked"])
@pytest.mark.parametrize("target", ["index", "probability"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1e-194], ids=["eps0", "eps0.1", "eps1e-194"])
def test_the_dominant_class_gradient_is_right(path: str, dtype: str, x: list[float],
                                               target: str, eps: float,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # eps 1e-194 puts the smoothing share against p_1 (2.0e-194 at -446): the target class's
    # gradient eps / C - p_1 cancels once more, now genuinely
    if path == "mpfr":
        monkeypatch.setattr(vectorised, "ENABLED", False)
    y: int | list[float] = 0 if target == "index" else [1.0] + [0.0] * (len(x) - 1)
    result = evaluate("cross_entropy", [x], target=[y], label_smoothing=eps, dtype=dtype)
    loss, grad = textbook_cross_entropy(x, y, None, eps, "mean")
    assert_rounds_as(result, loss, grad, dtype)
    assert nearest_float64(result.grad)[0, 0] != 0  # the very value a wrong zero used to hide


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_weighted_gradient_is_right(reduction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectorised, "ENABLED", False)
    x, weight = [0.0, -700.0, -3.0], [2.0, 0.5, 0.25]
    for y in (0, [1.0, 0.0, 0.0]):
        result = evaluate("cross_entropy", [x], target=[y], weight=weight, reduction=reduction,
                          label_smoothing=0.0)
        loss, grad = textbook_cross_entropy(x, y, weight, 0.0, reduction)
        assert_rounds_as(result, loss, grad, "float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("x", [[0.0, -1e-300], [0.0, -1e-300, -1e-300], [5.0, 5.0, -INF]],
                         ids=["two", "three", "masked"])
def test_log_softmax_gradients_that_cancel_are_right(dtype: str, x: list[float],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # 1 - C p_c, with p_c within 1e-300 of 1 / C: lost below 1000 bits; Ziv's loop must go on
    # until it is resolved (reference/certify.py), not take two zeros for agreement
    monkeypatch.setattr(vectorised, "ENABLED", False)
    result = evaluate("log_softmax", [x], dtype=dtype)
    with mpmath.workprec(HIGH):
        top = max(mpf(v) for v in x)
        exps = [mpmath.exp(mpf(v) - top) for v in x]
        p = [e / mpmath.fsum(exps) for e in exps]
        assert result.certified
        assert rounded(result.output, dtype) == rounded([mpmath.log(q) for q in p], dtype)
        assert rounded(result.grad, dtype) == rounded([1 - len(x) * q for q in p], dtype)


def test_softmax_gradient_is_exactly_zero() -> None:
    # d/dx sum(softmax(x)) = 0 exactly: a zero that is provably one, certified at once
    result = evaluate("softmax", [[0.0, -446.0, -1e-300]])
    assert result.certified and result.grad is not None
    assert all(g == 0 for g in result.grad.reshape(-1))


# Values whose float64 rounding is decided far below the working precision: the shift
# -446 + 71.74541247882925 is exactly a float64 midpoint, and the loss adds log1p(e^-374) to it;
# in a row of equal logits the gradient W / 3 - a_c is, without the smoothing of 1e-300 that a
# 130- or 260-bit coefficient absorbs, exactly a float64 midpoint too.  Two precisions that
# both round the tie agree; the oracle must go on until the tiny part decides.
ABSORBED = [
    ([[-446.0, -71.74541247882925]], [0], None, 0.0),
    ([[-1e-300, -1.110179395133879, 5.0], [-3.0, -1e-300, -3.0], [-446.0, -446.0, -446.0]],
     [[1.0, 0.0, 0.0], [0.709154314832619, 0.5316807981016207, 0.28535193546424775],
      [0.5710568927204642, 0.38261510877831373, 0.8164969778434581]], [0.5, 0.5, 2.0], 1e-300),
]


@pytest.mark.parametrize("x, y, weight, eps", ABSORBED, ids=["loss", "uniform-gradient"])
def test_a_value_absorbed_on_a_midpoint_is_resolved(x: list, y: list, weight: list | None,
                                                    eps: float,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectorised, "ENABLED", False)
    result = evaluate("cross_entropy", x, target=y, weight=weight, label_smoothing=eps,
                      reduction="sum")
    rows = [textbook_cross_entropy(row, target, weight, eps, "sum") for row, target in zip(x, y)]
    with mpmath.workprec(HIGH):
        loss = mpmath.fsum(row_loss for row_loss, _ in rows)
    assert_rounds_as(result, loss, [g for _, grad in rows for g in grad], "float64")


def test_boundaries_are_found_exactly() -> None:
    # float64 midpoints (normal, subnormal, at a binade's edge), a float32 midpoint that is a
    # float64, and 0 are boundaries; their neighbours 2**-200 away and plain floats are not
    from reference.certify import _on_a_boundary

    with mpmath.workprec(2000):  # holds v + 2**-1200 exactly
        midpoints = [mpf(1) + mpf(2) ** -53, mpf(2) ** -1074 * 3 / 2, mpf(2) ** -1075,
                     -(mpf(2) - mpf(2) ** -53), mpf(3) * 2 ** 600 + mpf(2) ** 548]
        boundaries = [*midpoints, mpf(1) + mpf(2) ** -24, mpf(0)]
        others = [v + mpf(2) ** -1200 for v in boundaries] + [mpf(1), mpf(2) ** -1074,
                                                              mpf(1) / 3]
        values = np.array(boundaries + others, dtype=object)
        landed = _on_a_boundary(values, get_format("float32"))
        assert landed.tolist() == [True] * len(boundaries) + [False] * len(others)
        assert not _on_a_boundary(np.array([mpf(1) + mpf(2) ** -24], dtype=object),
                                  get_format("float64")).any()  # no boundary of float64
