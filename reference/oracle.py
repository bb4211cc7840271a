"""The mpmath oracle: softmax, log_softmax, nll_loss and cross_entropy, with their gradients.

The definitions are written out in ``reference/SPEC.md``; this module implements them
literally.  Nothing on the path to a value uses floating-point arithmetic: inputs are
converted *exactly* from the (already dtype-rounded) floats a framework sees, numpy is used
only to hold, reshape and index arrays of ``mpf``, and every operation runs in mpmath at a
working precision set with ``mpmath.workprec`` (the global ``mp.prec`` is never changed).

Why the results are right (the precision argument)
--------------------------------------------------
Each row is shifted by its maximum ``m`` with an *exact* subtraction (``fsub(exact=True)``),
so ``s_j = x_j - m <= 0`` carries no error.  From there, at working precision ``p``:

* ``T = sum_{j != argmax} exp(s_j)`` sums positive terms: relative error below ``C * 2**-p``;
* ``log(sum_j exp(s_j)) = log1p(T)`` keeps that relative error, even when ``T`` is tiny
  (a dominant target class), which is where ``log(1 + T)`` would lose every digit;
* ``-log p_c = log1p(T) - s_c`` adds two non-negative numbers: no cancellation;
* losses are sums of non-negative terms when weights and targets are non-negative.

The remaining cancellations (gradients ``A * p_c - a_c``, negative weights or targets) are
not bounded a priori.  So the oracle uses Ziv's strategy: it evaluates at ``p`` and ``2p``
(then ``4p``, ...) until every element, rounded to float64 *and* to the dtype under test,
is identical at two successive precisions.  The precision of the accepted evaluation is
returned.  The first precision is ``128 + bits(C)`` bits, so a first pair of passes
normally suffices.  A mathematically exact zero reached through cancellation can never be
"stable"; after ``MAX_PRECISION`` the result is returned with ``certified=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from reference.formats import FloatFormat, exact, get_format, round_to_format

OPS = ("softmax", "log_softmax", "nll_loss", "cross_entropy")
REDUCTIONS = ("none", "mean", "sum")
MAX_PRECISION = 4096

NAN = mpf("nan")
INF = mpf("inf")


class OracleDomainError(ValueError):
    """The inputs lie outside the domain where the op is defined (e.g. a target out of range).

    ``field`` names the offending argument (``input``, ``target``, ``weight``, ...).
    """

    def __init__(self, message: str, field: str = "input") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class OracleResult:
    """Exact-enough values of one op: ``output`` and ``grad`` are numpy arrays of ``mpf``.

    ``grad`` is d(scalar)/d(input), where the scalar is the op's output, or the sum of its
    elements when the output is not a scalar (reduction ``none``, softmax, log_softmax).
    """

    output: np.ndarray
    grad: np.ndarray | None
    precision: int
    certified: bool


@dataclass(frozen=True)
class _Problem:
    op: str
    logits: np.ndarray  # rows x C, mpf
    batch_shape: tuple[int, ...]
    class_axis: int
    index_target: np.ndarray | None  # rows, int
    prob_target: np.ndarray | None  # rows x C, mpf
    weight: list[mpf] | None
    ignore_index: int
    reduction: str
    label_smoothing: mpf


def evaluate(
    op: str,
    input: Any,
    *,
    target: Any = None,
    weight: Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad: bool = True,
    dtype: str = "float64",
) -> OracleResult:
    """Evaluate ``op`` on exact inputs, certified by Ziv's strategy (see the module docstring).

    ``input`` holds floats shaped ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; ``target`` is
    integer class indices shaped like the input without its class axis, or floats shaped like
    the input (probabilities).  ``dtype`` names the format whose rounding must be stable.
    """
    problem = _prepare(op, input, target, weight, ignore_index, reduction, label_smoothing)
    fmt = get_format(dtype)
    precision = 128 + int(problem.logits.shape[1]).bit_length()
    previous_key = None
    while True:
        with mpmath.workprec(precision):
            output, gradient = _compute(problem, grad)
        key = _rounding_key(output, fmt), _rounding_key(gradient, fmt)
        if key == previous_key:
            return OracleResult(output, gradient, precision, certified=True)
        if precision >= MAX_PRECISION:
            return OracleResult(output, gradient, precision, certified=False)
        previous_key = key
        precision *= 2


def _rounding_key(values: np.ndarray | None, fmt: FloatFormat) -> tuple[str, ...]:
    """What must not change between two precisions: each value rounded to float64 and fmt."""
    if values is None:
        return ()
    float64 = get_format("float64")
    return tuple(
        f"{float(round_to_format(v, fmt))!r}/{float(round_to_format(v, float64))!r}"
        for v in values.reshape(-1)
    )


def check_inputs(
    op: str,
    input: Any,
    *,
    target: Any = None,
    weight: Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> None:
    """Raise ``OracleDomainError`` where ``evaluate`` would, without computing anything."""
    _prepare(op, input, target, weight, ignore_index, reduction, label_smoothing)


# --- preparing the inputs ------------------------------------------------------------------


def _as_mpf_array(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    return np.vectorize(_to_mpf, otypes=[object])(array) if array.size else array


def _to_mpf(value: Any) -> mpf:
    if isinstance(value, str):
        return mpf(value)  # 'inf', '-inf', 'nan'
    return exact(float(value)) if not isinstance(value, mpf) else value


def _prepare(
    op: str,
    input: Any,
    target: Any,
    weight: Sequence[float] | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> _Problem:
    if op not in OPS:
        raise OracleDomainError(f"unknown op {op!r}; expected one of {', '.join(OPS)}", "op")
    if reduction not in REDUCTIONS:
        raise OracleDomainError(f"unknown reduction {reduction!r}", "reduction")
    x = _as_mpf_array(input)
    if x.ndim == 0:
        raise OracleDomainError("input must have at least one dimension (the classes)")
    class_axis = 0 if x.ndim == 1 else 1
    moved = np.moveaxis(x, class_axis, -1)
    batch_shape = tuple(moved.shape[:-1])
    classes = moved.shape[-1]
    rows = moved.reshape(-1, classes)
    index_target = prob_target = None
    if op in ("nll_loss", "cross_entropy"):
        index_target, prob_target = _prepare_target(op, target, x.shape, class_axis, batch_shape)
        if index_target is not None:
            _check_indices(index_target, classes, ignore_index)
    weights = None
    if weight is not None:
        weights = [_to_mpf(w) for w in weight]
        if len(weights) != classes:
            raise OracleDomainError(
                f"weight has {len(weights)} entries for {classes} classes", "weight"
            )
    smoothing = exact(float(label_smoothing))
    if not 0 <= smoothing <= 1:
        raise OracleDomainError(
            f"label_smoothing must lie in [0, 1], got {label_smoothing}", "label_smoothing"
        )
    if op == "nll_loss" and smoothing != 0:
        raise OracleDomainError("nll_loss has no label_smoothing", "label_smoothing")
    return _Problem(
        op, rows, batch_shape, class_axis, index_target, prob_target, weights,
        int(ignore_index), reduction, smoothing,
    )


def _prepare_target(
    op: str, target: Any, input_shape: tuple[int, ...], class_axis: int,
    batch_shape: tuple[int, ...],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if target is None:
        raise OracleDomainError(f"{op} needs a target", "target")
    array = np.asarray(target, dtype=object)
    flat = list(array.reshape(-1))
    is_index = all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in flat)
    if is_index:
        if array.shape != batch_shape:
            raise OracleDomainError(
                f"class-index target has shape {array.shape}; expected {batch_shape}", "target"
            )
        return np.asarray([int(t) for t in flat], dtype=object), None
    if op == "nll_loss":
        raise OracleDomainError("nll_loss takes class-index targets only", "target")
    if array.shape != input_shape:
        raise OracleDomainError(
            f"probability target has shape {array.shape}; expected the input shape {input_shape}",
            "target",
        )
    probabilities = np.moveaxis(_as_mpf_array(array), class_axis, -1)
    return None, probabilities.reshape(-1, input_shape[class_axis])


def _check_indices(targets: np.ndarray, classes: int, ignore_index: int) -> None:
    for position, t in enumerate(targets):
        if t != ignore_index and not 0 <= t < classes:
            raise OracleDomainError(
                f"target {t} at flat position {position} is outside [0, {classes}) "
                f"and is not ignore_index ({ignore_index})",
                "target",
            )


# --- the math, at the current working precision ------------------------------------------


def _compute(problem: _Problem, want_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if problem.op in ("softmax", "log_softmax"):
        return _normalize(problem, want_grad)
    return _loss(problem, want_grad)


def _log_softmax_row(row: Sequence[mpf]) -> list[mpf] | None:
    """log_softmax of one row, or None where it is undefined (a NaN or +inf logit, or no
    finite logit at all).  -inf logits are masked classes: log-probability -inf."""
    if any(mpmath.isnan(v) or v == INF for v in row):
        return None
    finite = [j for j, v in enumerate(row) if v != -INF]
    if not finite:
        return None
    top = max(finite, key=lambda j: row[j])
    shifted = [mpmath.fsub(v, row[top], exact=True) if v != -INF else -INF for v in row]
    tail = mpmath.fsum(mpmath.exp(shifted[j]) for j in finite if j != top)
    log_normalizer = mpmath.log1p(tail)
    return [s - log_normalizer if s != -INF else -INF for s in shifted]


def _normalize(problem: _Problem, want_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    classes = problem.logits.shape[1]
    outputs, grads = [], []
    for row in problem.logits:
        log_probs = _log_softmax_row(row)
        if log_probs is None:
            outputs.append([NAN] * classes)
            grads.append([NAN] * classes)
            continue
        probs = [mpmath.exp(v) for v in log_probs]
        if problem.op == "softmax":
            outputs.append(probs)
            grads.append([mpf(0)] * classes)  # d/dx sum(softmax(x)) = d/dx 1 = 0 exactly
        else:
            outputs.append(log_probs)
            grads.append([1 - classes * p for p in probs])  # d/dx_k sum_c log p_c
    shape = (*problem.batch_shape, classes)
    output = _restore(np.array(outputs, dtype=object), shape, problem.class_axis)
    grad = _restore(np.array(grads, dtype=object), shape, problem.class_axis)
    return output, grad if want_grad else None


def _target_weights(problem: _Problem, r: int) -> tuple[list[mpf], mpf]:
    """``a_c = w_c * q_c`` for row ``r`` and the row's share of the mean's denominator."""
    classes = problem.logits.shape[1]
    weight = problem.weight or [mpf(1)] * classes
    eps = problem.label_smoothing
    if problem.prob_target is not None:
        q = [(1 - eps) * y + eps / classes for y in problem.prob_target[r]]
        return [w * qc for w, qc in zip(weight, q)], mpf(1)
    assert problem.index_target is not None
    t = problem.index_target[r]
    if t == problem.ignore_index:
        return [mpf(0)] * classes, mpf(0)
    a = [eps / classes * w for w in weight]
    a[t] += (1 - eps) * weight[t]
    return a, weight[t]


def _loss(problem: _Problem, want_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    losses: list[mpf] = []
    grads: list[list[mpf] | None] = []
    denominator = mpf(0)
    for r, row in enumerate(problem.logits):
        a, share = _target_weights(problem, r)
        denominator += share
        if all(ac == 0 for ac in a):
            # An ignored row (or one with nothing to weigh) does not depend on x at all:
            # loss 0 and gradient 0, whatever the reduction's divisor.
            losses.append(mpf(0))
            grads.append(None)
            continue
        loss, grad = _row_loss(problem.op, row, a)
        losses.append(loss)
        grads.append(grad)
    return _reduce(problem, losses, grads, denominator, want_grad)


def _row_loss(op: str, row: Sequence[mpf], a: list[mpf]) -> tuple[mpf, list[mpf]]:
    """``l = sum_c a_c * (-log p_c)`` with ``0 * log 0 = 0``, and ``dl/dx = A p - a``."""
    classes = len(row)
    if op == "nll_loss":  # the row already holds log-probabilities
        terms = [-ac * v for ac, v in zip(a, row) if ac != 0]
        return mpmath.fsum(terms), [-ac for ac in a]
    log_probs = _log_softmax_row(row)
    if log_probs is None:
        return NAN, [NAN] * classes
    loss = mpmath.fsum(-ac * lp for ac, lp in zip(a, log_probs) if ac != 0)
    total = mpmath.fsum(a)
    grad = [total * mpmath.exp(lp) - ac for ac, lp in zip(a, log_probs)]
    return loss, grad


def _reduce(
    problem: _Problem, losses: list[mpf], grads: list[list[mpf] | None], denominator: mpf,
    want_grad: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    classes = problem.logits.shape[1]
    if problem.prob_target is not None:
        denominator = mpf(len(losses))  # probability targets: mean over the loss elements
    if problem.reduction == "none":
        output = np.array(losses, dtype=object).reshape(problem.batch_shape)
        scale = mpf(1)
    elif problem.reduction == "sum":
        output = np.array(mpmath.fsum(losses), dtype=object)
        scale = mpf(1)
    else:
        # 0 / 0 (every target ignored, or zero total weight) is NaN, value and gradient.
        scale = 1 / denominator if denominator != 0 else NAN
        output = np.array(mpmath.fsum(losses) * scale if denominator != 0 else NAN, dtype=object)
    if not want_grad:
        return output, None
    zeros = [mpf(0)] * classes
    scaled = np.array(
        [zeros if row is None else [g * scale for g in row] for row in grads], dtype=object
    ).reshape(-1, classes)
    grad = _restore(scaled, (*problem.batch_shape, classes), problem.class_axis)
    return output, grad


def _restore(rows: np.ndarray, moved_shape: tuple[int, ...], class_axis: int) -> np.ndarray:
    """Undo the rows-by-classes layout: back to the input's shape and axis order."""
    return np.moveaxis(rows.reshape(moved_shape), -1, class_axis)
