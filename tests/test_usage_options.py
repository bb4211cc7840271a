"""Issue 20: class axis, sample weights with named reductions, where masks, Keras'
probability inputs, documented values of any shape, documented gradient conventions.

Validation errors name file, line and field; oracle values are checked against values
computed here independently (float64 math on the formulas of reference/SPEC.md, or a
source's printed values); an API that does not name an opt-in option refuses it."""

from __future__ import annotations

import math
from pathlib import Path

import mpmath
import numpy as np
import pytest

from conformance.adapters.base import Api
from conformance.cases.loading import CaseError, load_file
from conformance.cases.options import OPTIONS
from conformance.judge.check import check_documented
from reference.conventions import documented_gradient
from reference.oracle import OracleDomainError, evaluate
from tests.conftest import write

HEAD = "cases:\n  - id: c\n    source: a test\n"


def _loss(row: list[float], t: int) -> float:
    m = max(row)
    return -(row[t] - m - math.log(math.fsum(math.exp(v - m) for v in row)))


# --- validation: file, line, field -------------------------------------------------------

@pytest.mark.parametrize(("body", "line", "field", "words"), [
    ("    op: softmax\n    input: [[1.0, 2.0]]\n    axis: 2\n", 6, "cases[0].axis",
     "not an axis"),
    ("    op: softmax\n    input: [[1.0, 2.0]]\n    axis: one\n", 6, "cases[0].axis",
     "not of type 'integer'"),
    ("    op: cross_entropy\n    input: [[1.0, 2.0]]\n    target: [1]\n"
     "    sample_weight: [1.0, 2.0]\n    reduction: sum\n", 7, "cases[0].sample_weight",
     "one weight per example"),
    ("    op: cross_entropy\n    input: [[1.0, 2.0]]\n    target: [1]\n"
     "    sample_weight: [1.0]\n", 2, "cases[0].reduction", "name the divisor"),
    ("    op: cross_entropy\n    input: [[1.0, 2.0]]\n    target: [1]\n"
     "    reduction: mean_with_sampel_weight\n", 7, "cases[0].reduction",
     "did you mean 'mean_with_sample_weight'"),
    ("    op: softmax\n    input: [[1.0, 2.0]]\n    where: [[1, 0]]\n", 6, "cases[0].where[0][0]",
     "not valid here"),
    ("    op: softmax\n    input: [[1.0, 2.0]]\n    where: [[true]]\n", 6, "cases[0].where",
     "booleans shaped like the input"),
    ("    op: nll_loss\n    input: [[-1.0, -2.0]]\n    target: [0]\n"
     "    where: [[true, false]]\n", 7, "cases[0].where", "no class mask"),
    ("    op: nll_loss\n    input: [[-1.0, -2.0]]\n    target: [0]\n    reduction: none\n"
     "    documented: {shape: [2], values: [1.0]}\n", 8, "cases[0].documented.values",
     "holds 2 values"),
    ("    op: softmax\n    input: [[1.0, 2.0]]\n    documented: {shape: [2]}\n", 6,
     "cases[0].documented", "not valid here"),
    ("    op: softmax\n    input: [[1.0, 2.0]]\n"
     "    documented_grad_convention: softmax_minus_target\n", 6,
     "cases[0].documented_grad_convention", "the case does not have"),
    ("    op: softmax\n    input: [[1.0, 2.0]]\n    documented_grad: [[0.0, 0.0]]\n"
     "    documented_grad_convention: softmax_plus_target\n", 7,
     "cases[0].documented_grad_convention", "is not one of"),
    ("    op: softmax\n    input: {generate: normal, shape: [2, 3, 4], seed: 1}\n"
     "    axis: -1\n", 6, "cases[0].axis", "needs literal values"),
    ("    op: categorical_crossentropy_probs\n    input: [[0.5, -0.5]]\n"
     "    target: [[1.0, 0.0]]\n", 5, "cases[0].input", "finite and >= 0"),
    ("    op: categorical_crossentropy_probs\n"
     "    input: {generate: uniform, shape: [2, 3], seed: 1}\n    target: [0, 1]\n", 5,
     "cases[0].input", "write them out"),
])
def test_the_usage_option_keys_are_validated_with_file_line_and_field(
        tmp_path: Path, body: str, line: int, field: str, words: str) -> None:
    path = write(tmp_path / "bad.yaml", HEAD + body)
    with pytest.raises(CaseError) as caught:
        load_file(path)
    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), line, field), str(error)
    assert words in error.message, error.message


# --- the oracle, against independent values -------------------------------------------------

LOGITS = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.25, 0.0, -2.0]]
TARGETS = [2, 0, 1]


def test_axis_minus_one_on_channels_last_is_the_transposed_problem() -> None:
    x = np.array([[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], [[0.25, 0.0, -2.0], [1.5, 1.0, 0.0]]])
    t = np.array([[2, 0], [1, 1]], dtype=object)
    last = evaluate("cross_entropy", x, target=t, axis=-1, reduction="none")
    expected = [[_loss(list(row), int(k)) for row, k in zip(batch, ts)] for batch, ts in
                zip(x.tolist(), t.tolist())]
    assert np.allclose(np.asarray(last.output, dtype=float), expected, rtol=1e-15)
    moved = evaluate("cross_entropy", np.moveaxis(x, -1, 1), target=t, reduction="none")
    assert float(np.max(np.abs(np.asarray(moved.grad, dtype=float).transpose(0, 2, 1)
                               - np.asarray(last.grad, dtype=float)))) == 0.0
    with pytest.raises(OracleDomainError, match="not an axis"):
        evaluate("softmax", x, axis=3)


@pytest.mark.parametrize(("reduction", "weights", "divisor"), [
    ("sum_over_batch_size", [0.5, 2.0, 0.0], 3.0),
    ("mean_with_sample_weight", [0.5, 2.0, 0.0], 2.5),
    ("sum_by_nonzero_weights", [0.5, 2.0, 0.0], 2.0),
    ("sum", [0.5, 2.0, 0.0], 1.0),
])
def test_sample_weights_and_named_reductions(reduction: str, weights: list[float],
                                             divisor: float) -> None:
    result = evaluate("cross_entropy", LOGITS, target=TARGETS, sample_weight=weights,
                      reduction=reduction)
    total = math.fsum(s * _loss(row, t) for s, row, t in zip(weights, LOGITS, TARGETS))
    assert float(result.output) == pytest.approx(total / divisor, rel=1e-15)
    assert result.certified


def test_sample_weights_combine_with_class_weights_and_ignored_rows() -> None:
    weight, sample = [1.0, 2.0, 0.5], [3.0, 0.25, 1.0]
    result = evaluate("cross_entropy", LOGITS, target=[2, 0, -100], weight=weight,
                      sample_weight=sample, reduction="sum_over_batch_size")
    total = 3.0 * 0.5 * _loss(LOGITS[0], 2) + 0.25 * 1.0 * _loss(LOGITS[1], 0)
    assert float(result.output) == pytest.approx(total / 2, rel=1e-15)  # two kept rows


def test_where_masks_classes_as_jax_does() -> None:
    x = [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    mask = [[True, False, True], [False, False, False]]
    log_p = evaluate("log_softmax", x, where=mask)
    kept = -math.log1p(math.exp(-2.0))
    out = np.asarray(log_p.output, dtype=float)
    assert out[0, 2] == pytest.approx(kept, rel=1e-15)
    assert out[0, 0] == pytest.approx(kept - 2.0, rel=1e-15)
    assert out[0, 1] == out[1, 0] == -math.inf and (out[1] == -math.inf).all()
    grad = np.asarray(log_p.grad, dtype=float)
    p2 = math.exp(kept)
    assert grad[0, 2] == pytest.approx(1 - 2 * p2, rel=1e-14)  # C' = 2 kept classes
    assert grad[0, 1] == 0.0 and (grad[1] == 0.0).all()
    soft = np.asarray(evaluate("softmax", x, where=mask).output, dtype=float)
    assert soft[0, 1] == 0.0 and (soft[1] == 0.0).all()
    # a target on a masked class contributes nothing; a row with no class kept weighs nothing
    loss = evaluate("cross_entropy", x, target=np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
                    where=mask, reduction="none")
    assert (np.asarray(loss.output, dtype=float) == 0.0).all()


def test_probabilities_follow_keras_documented_values() -> None:
    # keras/src/backend/tensorflow/nn.py, categorical_crossentropy docstring
    y = np.eye(3)
    p = np.array([[0.9, 0.05, 0.05], [0.05, 0.89, 0.06], [0.05, 0.01, 0.94]])
    result = evaluate("categorical_crossentropy_probs", p, target=y, reduction="none")
    assert np.allclose(np.asarray(result.output, dtype=float), [0.10536, 0.11653, 0.06188],
                       atol=5e-6)
    # the classic 16.118: -log(epsilon()) with epsilon rounded to float32
    clipped = evaluate("categorical_crossentropy_probs", np.array([[0.0, 1.0]]),
                       target=np.array([[1.0, 0.0]]), reduction="none", dtype="float32")
    assert float(clipped.output[0]) == pytest.approx(-math.log(float(np.float32(1e-7))),
                                                     rel=1e-15)


def test_sparse_probabilities_clip_then_renormalise() -> None:
    p = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    result = evaluate("categorical_crossentropy_probs", p, target=[1, 2], reduction="none")
    lo, hi = 1e-7, 1.0 - 1e-7
    z = [[min(max(v, lo), hi) for v in row] for row in p]
    expected = [math.log(math.fsum(z[0])) - math.log(z[0][1]),
                math.log(math.fsum(z[1])) - math.log(z[1][2])]
    assert np.allclose(np.asarray(result.output, dtype=float), expected, rtol=1e-14)


@pytest.mark.parametrize("target", [[[0.2, 0.5, 0.3]], [1]])
def test_probability_gradients_match_numerical_differentiation(target) -> None:
    p = [[0.3, 0.6, 0.1]]
    result = evaluate("categorical_crossentropy_probs", p, target=target, reduction="sum")
    for k in range(3):
        def f(v: mpmath.mpf, k: int = k) -> mpmath.mpf:
            moved = [[v if j == k else mpmath.mpf(x) for j, x in enumerate(p[0])]]
            return evaluate("categorical_crossentropy_probs", moved, target=target,
                            reduction="sum", grad=False).output[()]
        with mpmath.workprec(200):
            numeric = mpmath.diff(f, mpmath.mpf(p[0][k]))
        assert float(result.grad[0, k]) == pytest.approx(float(numeric), rel=1e-10)


def test_tf_single_class_gradient_convention() -> None:
    # tensorflow/python/kernel_tests/nn_ops/xent_op_test_base.py, testSingleClass
    grad = documented_gradient("softmax_minus_target", "cross_entropy",
                               [[1.0], [-1.0], [0.0], [1.0]],
                               target=np.array([[-1.0], [0.0], [1.0], [1.0]]), reduction="none")
    assert np.asarray(grad, dtype=float).tolist() == [[2.0], [1.0], [0.0], [0.0]]
    exact = evaluate("cross_entropy", [[1.0], [-1.0], [0.0], [1.0]],
                     target=np.array([[-1.0], [0.0], [1.0], [1.0]]), reduction="none")
    assert np.asarray(exact.grad, dtype=float).tolist() == [[0.0], [0.0], [0.0], [0.0]]


def test_documented_values_of_an_empty_shape_and_a_convention(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", """cases:
  - id: empty
    source: torch nll_loss on a [0, 3, 5, 7] input
    op: nll_loss
    input: {generate: normal, shape: [0, 3, 5, 7], seed: 1}
    target: {generate: classes, seed: 2}
    reduction: none
    documented: {shape: [0, 5, 7], values: []}
  - id: wrong-shape
    source: a test
    op: nll_loss
    input: {generate: normal, shape: [0, 3, 5, 7], seed: 1}
    target: {generate: classes, seed: 2}
    reduction: none
    documented: {shape: [0, 5], values: []}
  - id: single
    source: TF testSingleClass
    op: cross_entropy
    input: [[1.0], [-1.0], [0.0], [1.0]]
    target: [[-1.0], [0.0], [1.0], [1.0]]
    reduction: none
    documented_grad: [[2.0], [1.0], [0.0], [0.0]]
    documented_grad_convention: softmax_minus_target
""")
    empty, wrong, single = load_file(path)
    assert [r.status for r in check_documented(empty)] == ["pass"]
    [record] = check_documented(wrong)
    assert record.status == "fail" and "(0, 5)" in record.message
    assert [r.status for r in check_documented(single)] == ["pass"]


# --- safe by default ------------------------------------------------------------------------

def test_an_api_declaring_every_option_still_refuses_the_opt_in_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", """cases:
  - {id: a, source: s, op: softmax, axis: -1, input: [[[1.0, 2.0], [3.0, 4.0]]]}
  - {id: b, source: s, op: cross_entropy, input: [[1.0, 2.0]], target: [1],
     sample_weight: [2.0], reduction: sum}
  - {id: c, source: s, op: softmax, input: [[1.0, 2.0]], where: [[true, false]]}
  - {id: d, source: s, op: cross_entropy, input: [[1.0, 2.0]], target: [1],
     reduction: sum_over_batch_size}
  - {id: e, source: s, op: softmax, axis: -1, input: [[1.0, 2.0]]}
  - {id: f, source: s, op: softmax, axis: 2, input: [[[[1.0], [2.0]]]]}
""")
    every = Api("f", "standin.f", "softmax", frozenset(OPTIONS))
    a, b, c, d, e, f = load_file(path)
    assert a.options() == ["k_dim_class_last"]
    assert f.options() == ["k_dim", "class_axis"]  # (1, 1, 2, 1): classes neither at 1 nor last
    assert "class_axis" in (every.unsupported_reason(f.options()) or "")
    assert "k_dim_class_last" in (every.unsupported_reason(a.options()) or "")
    assert "sample_weight" in (every.unsupported_reason(b.options()) or "")
    assert "where" in (every.unsupported_reason(c.options()) or "")
    assert "sum_over_batch_size" in (every.unsupported_reason(d.options()) or "")
    assert every.unsupported_reason(e.options()) is None  # -1 of (N, C) is the default axis
    only = Api("g", "standin.g", "softmax", frozenset(OPTIONS) | {"k_dim_class_last"},
               only_for=frozenset({"k_dim_class_last"}))
    assert only.unsupported_reason(a.options()) is None
    assert "runs only cases with k_dim_class_last" in (only.unsupported_reason(e.options())
                                                       or "")
