"""The linear_cross_entropy oracle (reference/linear.py) and its error-free sums (reference/eft.py).

(a) On cases whose logits are exact float64 values, the oracle equals the plain
    cross_entropy oracle on those logits, and its gradients equal g W, g^T x and sum_n g
    computed from that oracle's gradient in mpmath.
(b) On float32/bfloat16 cases whose logits are not float64 values, every element lies within
    its certified bound of an independent evaluation (exact rational logits, then mpmath at
    400 bits), and rounds as it does.
(c) The sums and products of reference/eft.py are exact or within their bound (Fractions).
(d) Edge rows: all targets ignored, an empty batch, a zero hidden row; the domain errors.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import pytest

from reference import eft
from reference.formats import round_to_float
from reference.linear import evaluate_linear
from reference.oracle import OracleDomainError, evaluate

pytest.importorskip("gmpy2", reason="the linear_cross_entropy oracle needs gmpy2 (MPFR)")

RNG = np.random.default_rng(20261201)


def small_exact_problem(seed: int, batched: bool = True) -> dict[str, Any]:
    """Inputs on a coarse dyadic grid: every product and sum is exact in float64."""
    rng = np.random.default_rng(seed)
    rows, features, classes = 4, 5, 7
    x = rng.integers(-8, 8, (rows, features)) / 4.0
    w = rng.integers(-8, 8, (classes, features)) / 8.0
    b = rng.integers(-8, 8, classes) / 2.0
    target = [int(t) for t in rng.integers(0, classes, rows)]
    target[2] = -100
    if not batched:
        x, target = x[0], target[0]
    return {"x": x, "w": w, "b": b, "target": target}


CONFIGURATIONS = [
    {"reduction": "mean"},
    {"reduction": "sum", "label_smoothing": 0.1},
    {"reduction": "none", "weight": [0.5, 1.0, 2.0, 0.25, 1.5, 1.0, 3.0]},
    {"reduction": "mean", "weight": [0.5, 1.0, 2.0, 0.25, 1.5, 1.0, 3.0],
     "label_smoothing": 0.2},
    {"reduction": "mean", "probability": True},
    {"reduction": "sum", "probability": True, "label_smoothing": 0.3, "bias": False},
]


def _target(problem: dict[str, Any], probability: bool) -> Any:
    if not probability:
        target = problem["target"]
        return (np.asarray(target, dtype=object) if isinstance(target, list) else target)
    rows = np.atleast_2d(problem["x"]).shape[0]
    y = np.random.default_rng(7).dirichlet(np.ones(7), size=rows)
    y = np.vectorize(lambda v: round_to_float(v, "float32"))(y)
    return y if np.ndim(problem["x"]) == 2 else y[0]


def _mp_sum(values: Any) -> Any:
    return mpmath.fsum(values)


@pytest.mark.parametrize("batched", [True, False], ids=["NxD", "D"])
@pytest.mark.parametrize("options", CONFIGURATIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_on_exact_logits_it_is_the_cross_entropy_oracle(options: dict[str, Any],
                                                        batched: bool) -> None:
    problem = small_exact_problem(3, batched)
    options = dict(options)
    probability = options.pop("probability", False)
    with_bias = options.pop("bias", True)
    bias = problem["b"] if with_bias else None
    target = _target(problem, probability)
    x, w = problem["x"], problem["w"]
    z = x @ w.T + (bias if bias is not None else 0.0)  # exact: a coarse dyadic grid
    for dtype in ("float32", "bfloat16"):
        linear = evaluate_linear(x, linear_weight=w, linear_bias=bias, target=target,
                                 dtype=dtype, **options)
        plain = evaluate("cross_entropy", z, target=target, dtype=dtype, **options)
        assert linear.certified and plain.certified
        output = np.vectorize(float)(np.asarray(plain.output, dtype=object))
        np.testing.assert_array_equal(linear.quantities["output"].nearest, output)
        g = np.atleast_2d(np.asarray(plain.grad, dtype=object))
        xs = np.atleast_2d(x)
        with mpmath.workprec(400):
            grad_x = [[float(_mp_sum(g[n, c] * mpmath.mpf(w[c, d]) for c in range(w.shape[0])))
                       for d in range(w.shape[1])] for n in range(xs.shape[0])]
            grad_w = [[float(_mp_sum(g[n, c] * mpmath.mpf(xs[n, d]) for n in range(xs.shape[0])))
                       for d in range(w.shape[1])] for c in range(w.shape[0])]
            grad_b = [float(_mp_sum(g[n, c] for n in range(xs.shape[0])))
                      for c in range(w.shape[0])]
        np.testing.assert_array_equal(linear.quantities["grad"].nearest,
                                      np.asarray(grad_x).reshape(np.shape(x)))
        np.testing.assert_array_equal(linear.quantities["grad_linear_weight"].nearest, grad_w)
        if bias is None:
            assert "grad_linear_bias" not in linear.quantities
        else:
            np.testing.assert_array_equal(linear.quantities["grad_linear_bias"].nearest, grad_b)


def _exact_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, target: list[int]
                     ) -> dict[str, np.ndarray]:
    """The mean loss and its gradients from exact rational logits, in mpmath at 400 bits."""
    rows, classes = x.shape[0], w.shape[0]
    with mpmath.workprec(400):
        exact_z = [[Fraction(b[c]) + sum(Fraction(x[n, d]) * Fraction(w[c, d])
                                         for d in range(x.shape[1]))
                    for c in range(classes)] for n in range(rows)]
        # dyadic rationals of a few hundred bits: exact at 400 bits
        z = [[mpmath.mpf(v.numerator) / v.denominator for v in row] for row in exact_z]
        weighed = [n for n in range(rows) if target[n] != -100]
        loss, g = mpmath.mpf(0), [[mpmath.mpf(0)] * classes for _ in range(rows)]
        for n in weighed:
            top = max(z[n])
            total = mpmath.fsum(mpmath.exp(v - top) for v in z[n])
            loss += mpmath.log(total) + top - z[n][target[n]]
            g[n] = [mpmath.exp(v - top) / total - (c == target[n]) for c, v in enumerate(z[n])]
        scale = mpmath.mpf(1) / len(weighed)
        g = [[v * scale for v in row] for row in g]
        grad_x = [[mpmath.fsum(g[n][c] * w[c, d] for c in range(classes))
                   for d in range(x.shape[1])] for n in range(rows)]
        grad_w = [[mpmath.fsum(g[n][c] * x[n, d] for n in range(rows))
                   for d in range(x.shape[1])] for c in range(classes)]
        grad_b = [mpmath.fsum(g[n][c] for n in range(rows)) for c in range(classes)]
        return {"output": np.array(loss * scale, dtype=object),
                "grad": np.array(grad_x, dtype=object),
                "grad_linear_weight": np.array(grad_w, dtype=object),
                "grad_linear_bias": np.array(grad_b, dtype=object)}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_every_element_is_within_its_certified_bound_of_an_independent_evaluation(
        dtype: str) -> None:
    rng = np.random.default_rng({"float32": 1, "bfloat16": 2, "float64": 3}[dtype])
    rows, features, classes = 3, 6, 9

    def rounded(values: np.ndarray) -> np.ndarray:
        return np.vectorize(lambda v: round_to_float(v, dtype))(values)

    x = rounded(rng.standard_normal((rows, features)) * 3)
    w = rounded(rng.standard_normal((classes, features)))
    b = rounded(rng.standard_normal(classes) * 100)  # a common-ish offset through the bias
    target = [1, -100, 8]
    result = evaluate_linear(x, linear_weight=w, linear_bias=b,
                             target=np.asarray(target, dtype=object), dtype=dtype)
    assert result.certified
    exact = _exact_reference(x, w, b, target)
    with mpmath.workprec(400):
        for name, values in exact.items():
            quantity = result.quantities[name]
            flat = values.reshape(-1)
            nearest, residual = quantity.nearest.reshape(-1), quantity.residual.reshape(-1)
            for i, value in enumerate(flat):
                assert float(value) == nearest[i], (name, i)
                error = abs(mpmath.mpf(nearest[i]) + mpmath.mpf(residual[i]) - value)
                # far below float64's resolution: the enclosure is some 2**-90 wide
                assert error <= abs(value) * 2.0 ** -80 + 2.0 ** -1000, (name, i, error)


def test_sums_of_terms_are_within_their_bound_of_the_exact_sum() -> None:
    terms = RNG.standard_normal((1000, 50)) * np.exp2(RNG.integers(-60, 60, (1000, 50)))
    total = eft.SumOfTerms((50,))
    for start in range(0, 1000, 128):
        total.add(terms[start:start + 128])
    result = total.result()
    for j in range(50):
        exact = sum(Fraction(v) for v in terms[:, j])
        got = Fraction(result.high[j]) + Fraction(result.low[j])
        assert abs(got - exact) <= Fraction(result.bound[j])
        assert result.high[j] == float(exact)  # the TwoSum pair is normalised


def test_products_of_wide_floats_are_exact_sums_of_float64_products() -> None:
    a = RNG.standard_normal(200)
    b = RNG.standard_normal(200)
    for a_bits, b_bits, count in ((53, 53, 4), (53, 24, 2), (24, 53, 2), (24, 24, 1)):
        aa = a if a_bits == 53 else a.astype(np.float32).astype(np.float64)
        bb = b if b_bits == 53 else b.astype(np.float32).astype(np.float64)
        parts = eft.product_terms(aa, eft.significant_bits(aa), bb, eft.significant_bits(bb))
        assert len(parts) == count
        for i in range(200):
            assert sum(Fraction(p[i]) for p in parts) == Fraction(aa[i]) * Fraction(bb[i])


def test_significant_bits_reads_the_format() -> None:
    assert eft.significant_bits(np.array([1.0, 0.5, 0.0])) == 1
    assert eft.significant_bits(np.float32(RNG.standard_normal(100)).astype(np.float64)) == 24
    assert eft.significant_bits(RNG.standard_normal(100)) == 53


def test_all_ignored_targets_give_a_nan_mean_and_exact_zero_gradients() -> None:
    problem = small_exact_problem(5)
    result = evaluate_linear(problem["x"], linear_weight=problem["w"], linear_bias=problem["b"],
                             target=np.asarray([-100] * 4, dtype=object), dtype="float32")
    assert result.certified
    assert np.isnan(result.quantities["output"].nearest)
    for name in ("grad", "grad_linear_weight", "grad_linear_bias"):
        assert not result.quantities[name].nearest.any(), name
    summed = evaluate_linear(problem["x"], linear_weight=problem["w"], target=np.asarray(
        [-100] * 4, dtype=object), reduction="sum", dtype="float32")
    assert summed.quantities["output"].nearest == 0 and summed.certified


def test_an_empty_batch_and_a_zero_hidden_row() -> None:
    w = RNG.standard_normal((6, 3))
    empty = evaluate_linear(np.zeros((0, 3)), linear_weight=w, linear_bias=np.ones(6),
                            target=np.zeros(0, dtype=np.int64), reduction="sum")
    assert empty.certified and empty.quantities["output"].nearest == 0
    assert empty.quantities["grad"].nearest.shape == (0, 3)
    assert not empty.quantities["grad_linear_weight"].nearest.any()
    x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
    result = evaluate_linear(x, linear_weight=w, target=np.asarray([2, 4], dtype=object),
                             reduction="none")
    assert result.certified
    # a zero row's logits are 0: its loss is log C exactly... rounded
    assert result.quantities["output"].nearest[0] == float(mpmath.log(6))
    np.testing.assert_array_equal(result.quantities["grad_linear_weight"].nearest[:, :2] != 0,
                                  True)


@pytest.mark.parametrize(("arguments", "field"), [
    ({"input": [[np.inf, 1.0]], "linear_weight": [[1.0, 2.0]]}, "input"),
    ({"input": [[1.0, 1.0]], "linear_weight": [[1.0, 2.0, 3.0]]}, "linear_weight"),
    ({"input": [[1.0, 1.0]], "linear_weight": [[1.0, 2.0]], "linear_bias": [1.0, 2.0]},
     "linear_bias"),
    ({"input": [[1.0, 1.0]], "linear_weight": [[1.0, 2.0]], "target": [3]}, "target"),
    ({"input": [[1.0, 1.0]], "linear_weight": [[1e300, 2.0]]}, "linear_weight"),
])
def test_domain_errors_name_the_argument(arguments: dict[str, Any], field: str) -> None:
    arguments = {"target": np.asarray([0], dtype=object), **arguments}
    x = arguments.pop("input")
    with pytest.raises(OracleDomainError) as raised:
        evaluate_linear(x, **arguments)
    assert raised.value.field == field
