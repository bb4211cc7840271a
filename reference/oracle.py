"""The mpmath oracle: softmax, log_softmax, nll_loss and cross_entropy, with their gradients.

The definitions are written out in ``reference/SPEC.md``; this module implements them
literally.  Nothing on the path to a value uses floating-point arithmetic: inputs are
converted *exactly* from the (already dtype-rounded) floats a framework sees, numpy is used
only to hold, reshape and index arrays, and every operation runs in mpmath, or in MPFR
(gmpy2), correctly rounded at a working precision set with ``mpmath.workprec`` (the global
``mp.prec`` is never changed).  float64 appears only in the bookkeeping that certifies a
result (below), where every quantity is an upper bound.

Why the results are right (the precision argument)
--------------------------------------------------
Each row is shifted by its maximum ``m`` with an *exact* subtraction, so ``s_j = x_j - m <= 0``
carries no error.  From there, at working precision ``p`` (``u = 2**-p``; every operation is
correctly rounded, so each adds a relative error of at most ``u``):

* ``T = sum_{j != argmax} exp(s_j)`` sums positive terms: relative error below ``2u``;
* ``log(sum_j exp(s_j)) = log1p(T)`` keeps that accuracy, even when ``T`` is tiny (a
  dominant target class), which is where ``log(1 + T)`` would lose every digit;
* ``-log p_c = log1p(T) - s_c`` adds two non-negative numbers: no cancellation;
* losses are sums of non-negative terms when weights and targets are non-negative.

What remains are cancellations (gradients ``A * p_c - a_c``, negative weights) and the
rounding of the result into float64 and the dtype under test, which can be arbitrarily
sensitive near a rounding boundary.  Two ways decide that a result rounds correctly:

**An a-priori error bound (one pass).**  For rows of finite logits computed on MPFR numbers
(cross_entropy, softmax, log_softmax), every element ``v`` comes with a bound ``E`` of
``|v - exact|`` derived below.  With ``f`` the float64 nearest to ``v`` and ``r = v - f``
(exact in MPFR), ``v`` is *certified* when ``[v - E, v + E]`` lies inside the open rounding
interval of ``f``: ``2 (max(+-r, 0) + E) (1 + 2**-50) < `` the gap from ``f`` to its
neighbour on either side (doubled values, so that no subnormal gap is halved), and ``f != 0``
(a value near zero could have either sign; an exact zero with ``E > 0`` is never certified).
Every boundary of the coarser formats (float32/16, bfloat16 midpoints, their overflow
threshold) is itself a float64, and that interval holds no float64 but ``f``, so the dtype
rounding is then stable too, unless ``f`` is such a boundary (``round_float64_array`` flags
them; the overflow threshold is the midpoint above ``max_finite``).  Elements known exactly
(the zeros of rows that weigh nothing, softmax's gradient) need no bound.  When every element
of a problem is certified, the result of one pass is returned.

The bounds, for a row with shifts ``s_j``, ``e_j = exp(s_j)``, ``S = 1 + T``, ``L = log S``,
``p_c = e_c / S`` (first order in ``u``; the constants used are about twice these, which
absorbs the second-order terms and the float64 rounding of the bookkeeping):

* ``|e^_j - e_j| <= u e_j`` (``e_m = 1`` exactly); ``|T^ - T| <= 2u T``; ``|S^ - S| <= 3u S``;
  ``|L^ - L| <= |T^ - T| / (1 + T) + u L <= u (L + 2)`` (``log1p`` is 1-Lipschitz on T >= 0);
* coefficients ``a_c`` (``_target_weights``, at precision p): ``|a^_c - a_c| <= 4u |a_c|``, as
  long as the probability targets are non-negative (then ``(1 - eps) y + eps / C`` adds
  terms of one sign; weights of either sign only multiply); rows with a negative
  probability target are not certified;
* loss term ``a_c (L - s_c)``: ``L^ - s_c`` adds non-negative numbers, so the term's error is
  at most ``u |a_c| (7 (L + |s_c|) + 2)``, and the correctly rounded sum adds ``u |l|``:
  ``E(l) = 16u sum_c |a_c| (L + |s_c| + 2)``;
* gradient, with the mean's scale ``s^ = RN(1/D)`` (D, a sum of floats, is exact; ``s = 1``
  for none and sum): ``g_c = RN(RN(e^_c K) - RN(a^_c s^))`` with ``K = RN(RN(W^ / S^) s^)``
  and ``W^ = sum_c a^_c`` (``|W^ - W| <= 5u sum|a|``).  ``e^_c K`` carries six relative
  roundings plus ``W``'s error: ``<= 13u |s| p_c sum|a|``; ``a^_c s^``: ``<= 6u |s| |a_c|``;
  the subtraction ``<= u |g_c|``, so ``E(g_c) = 32u |s| p_c sum|a| + 16u |s| |a_c| + 2u |g_c|``;
* softmax ``RN(e^_c / S^)``: ``E = 10u p_c``; log_softmax ``RN(s_c - L^)``:
  ``E = 4u (L + |s_c| + 2)``, its gradient ``RN(1 - RN(C p^_c))``: ``E = 12u C p_c + 2u |g_c|``;
* reductions: ``sum`` is one correctly rounded sum, ``E = sum_r E(l_r) + 2u sum_r |l_r|``;
  ``mean`` divides that by the exact ``D`` once more: ``E(sum) / |D| + 2u |mean|``.

Float64 ingredients (``p_c``, ``|a_c|``, ``L``, ...) enter as upper bounds (rounded values
times ``1 + 2**-50`` plus the smallest subnormal), per-row factors are rounded up in MPFR
(they never underflow), and each bound gets four smallest subnormals more for the underflow
of its own float64 products.  A row whose shifts reach below ``-2**29`` (MPFR's exponent range
is then no longer far away) or a precision with ``u`` below float64's normal range gives no
bound.  ``tests/test_oracle_certified.py`` checks the bounds against evaluations at far
higher precision.

**Ziv's strategy (otherwise).**  The oracle evaluates at ``p`` and ``2p`` (then ``4p``, ...)
until every element, rounded to float64 *and* to the dtype under test, is identical at two
successive precisions, or a pass is certified by its bounds.  The precision of the accepted
evaluation is returned.  The first precision is ``128 + bits(C)`` bits, so a pass normally
suffices.  A mathematically exact zero reached through cancellation can never be certified
by a bound; after ``MAX_PRECISION`` the result is returned with ``certified=False``.  nll_loss,
rows with a non-finite logit or coefficient, a mean over a zero divisor, and results that
fall on (or within the bound of) a rounding boundary take this way.

Speed: when gmpy2 is installed, rows of finite logits run the formulas on MPFR numbers
(correctly rounded at the same working precision, so the argument above is unchanged), about
eight times faster than mpmath objects; ``tests/test_oracle_fast_path.py`` checks that both
paths give the same rounded results.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf
from mpmath.libmp import from_man_exp

from reference.formats import (
    FloatFormat,
    exact,
    get_format,
    nearest_float64,
    round_float64_array,
    round_to_format,
)

OPS = ("softmax", "log_softmax", "nll_loss", "cross_entropy")
REDUCTIONS = ("none", "mean", "sum")
MAX_PRECISION = 4096

NAN = mpf("nan")
INF = mpf("inf")
ZERO = mpf(0)
ONE = mpf(1)


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
    # Error bounds of a max-shifted evaluation in the dtype (see ``error_bounds``): float64
    # arrays shaped like ``output`` and ``grad``, before the tolerance policy's factor K.
    output_bound: np.ndarray | None = None
    grad_bound: np.ndarray | None = None


@dataclass(frozen=True)
class _Problem:
    op: str
    # rows x C: float64 when every input is exactly a float64 (the usual case: the floats of
    # the dtype under test, 'inf' and 'nan' included), else mpf; likewise prob_target
    logits: np.ndarray
    batch_shape: tuple[int, ...]
    class_axis: int
    index_target: np.ndarray | None  # rows, int
    prob_target: np.ndarray | None  # rows x C
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
    """Evaluate ``op`` on exact inputs, certified by a-priori bounds or by Ziv's strategy
    (see the module docstring).

    ``input`` holds floats shaped ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; ``target`` is
    integer class indices shaped like the input without its class axis, or floats shaped like
    the input (probabilities).  ``dtype`` names the format whose rounding must be stable.
    """
    problem = _prepare(op, input, target, weight, ignore_index, reduction, label_smoothing)
    fmt = get_format(dtype)
    precision = _first_precision(problem)
    previous_key = ingredients = None
    while True:
        with mpmath.workprec(precision), _collector_paused():
            computed = _compute(problem, grad)
        if ingredients is None:  # the first pass's exponentials serve the error bounds
            ingredients = computed.ingredients
        certified = computed.ledger.certifies(fmt)
        key = None if certified else (_rounding_key(computed.output, fmt),
                                      _rounding_key(computed.grad, fmt))
        if certified or key == previous_key or precision >= MAX_PRECISION:
            output_bound, grad_bound = _error_bounds(problem, fmt, grad, ingredients)
            return OracleResult(computed.output, computed.grad, precision,
                                certified=certified or key == previous_key,
                                output_bound=output_bound, grad_bound=grad_bound)
        previous_key = key
        precision *= 2


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector: a pass allocates millions of mpf and MPFR
    objects, none of them in a reference cycle, which the collector would traverse again and
    again (a sixth of the time of a large problem) to free nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _first_precision(problem: _Problem) -> int:
    return 128 + int(problem.logits.shape[1]).bit_length()


def _rounding_key(values: np.ndarray | None, fmt: FloatFormat) -> tuple[bytes, ...]:
    """What must not change between two precisions: each value rounded to float64 and fmt.

    Rounding through the nearest float64 equals rounding once, except at exact midpoints of
    ``fmt`` (``round_float64_array`` flags them), which are redone from the exact value.
    """
    if values is None:
        return ()
    flat = np.asarray(values, dtype=object).reshape(-1)
    nearest = nearest_float64(flat)
    rounded, midpoints = round_float64_array(nearest, fmt)
    for i in np.flatnonzero(midpoints):
        rounded[i] = float(round_to_format(flat[i], fmt))
    nan = np.isnan(nearest)  # one spelling of NaN, whatever its payload
    return (np.where(nan, 0.0, nearest).tobytes(), np.where(nan, 0.0, rounded).tobytes(),
            nan.tobytes())


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


def _as_value_array(values: Any) -> np.ndarray:
    """``values`` as float64 when each is exactly a float64 (what ``_to_mpf`` would make of it
    is then that float), otherwise as mpf."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64)
    mpfs = _as_mpf_array(values)
    floats = np.array([float(v) for v in mpfs.reshape(-1)], dtype=np.float64)
    if all(f == v or (math.isnan(f) and mpmath.isnan(v)) for f, v in zip(floats, mpfs.flat)):
        return floats.reshape(mpfs.shape)
    return mpfs


def _mpf_row(values: np.ndarray, r: int) -> list[mpf]:
    """Row ``r`` of a float64 or mpf array, as mpf (exactly)."""
    if values.dtype == object:
        return list(values[r])
    return [exact(v) for v in values[r].tolist()]


def _float_row(values: np.ndarray, r: int) -> np.ndarray:
    """Row ``r`` as float64 (exact for a float64 array; rounded for mpf)."""
    if values.dtype == object:
        return np.array([float(v) for v in values[r]], dtype=np.float64)
    return np.asarray(values[r])


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
    x = _as_value_array(input)
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
    # a float array is a probability target even when empty (no element says so)
    is_float_array = isinstance(target, np.ndarray) and target.dtype.kind == "f"
    is_integer_array = isinstance(target, np.ndarray) and target.dtype.kind in "iu"
    is_index = is_integer_array or (not is_float_array and all(
        isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in array.flat))
    if is_index:
        if array.shape != batch_shape:
            raise OracleDomainError(
                f"class-index target has shape {array.shape}; expected {batch_shape}", "target"
            )
        return np.asarray([int(t) for t in array.flat], dtype=object), None
    if op == "nll_loss":
        raise OracleDomainError("nll_loss takes class-index targets only", "target")
    if array.shape != input_shape:
        raise OracleDomainError(
            f"probability target has shape {array.shape}; expected the input shape {input_shape}",
            "target",
        )
    probabilities = np.moveaxis(_as_value_array(target), class_axis, -1)
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


@dataclass(frozen=True)
class _Floats:
    """A row's exponentials at the working precision, each rounded once to float64 (the
    error bounds' ingredients, and the certification's)."""

    s: np.ndarray  # |x_j - m| (exact when float64 holds it, else correctly rounded)
    e: np.ndarray  # exp(x_j - m)
    total: float  # S = sum_j exp(x_j - m)
    log_total: float  # L = log S


@dataclass
class _Pass:
    """One evaluation at one precision."""

    output: np.ndarray
    grad: np.ndarray | None
    ledger: _Ledger
    ingredients: dict[int, _Floats] = field(default_factory=dict)  # row -> its exponentials


def _compute(problem: _Problem, want_grad: bool) -> _Pass:
    ledger = _Ledger()
    ingredients: dict[int, _Floats] = {}
    with np.errstate(over="ignore"):  # a bound that overflows is inf: it certifies nothing
        if problem.op in ("softmax", "log_softmax"):
            output, grad = _normalize(problem, want_grad, ledger, ingredients)
        else:
            output, grad = _loss(problem, want_grad, ledger, ingredients)
    return _Pass(output, grad, ledger, ingredients)


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


def _normalize(problem: _Problem, want_grad: bool, ledger: _Ledger,
               ingredients: dict[int, _Floats]) -> tuple[np.ndarray, np.ndarray | None]:
    rows, classes = problem.logits.shape
    outputs = np.empty((rows, classes), dtype=object)
    grads = np.empty((rows, classes), dtype=object)
    for r in range(rows):
        found = _fast_row(problem, r)
        if found is not None:
            ingredients[r] = found.floats
            outputs[r], row_grad = _normalize_row_mpfr(problem.op, found, ledger, want_grad)
            if want_grad:
                grads[r] = row_grad
            continue
        ledger.fail()
        log_probs = _log_softmax_row(_mpf_row(problem.logits, r))
        if log_probs is None:
            outputs[r] = grads[r] = [NAN] * classes
            continue
        probs = [mpmath.exp(v) for v in log_probs]
        if problem.op == "softmax":
            outputs[r] = probs
            grads[r] = [ZERO] * classes  # d/dx sum(softmax(x)) = d/dx 1 = 0 exactly
        else:
            outputs[r] = log_probs
            grads[r] = [1 - classes * p for p in probs]  # d/dx_k sum_c log p_c
    shape = (*problem.batch_shape, classes)
    output = _restore(outputs, shape, problem.class_axis)
    grad = _restore(grads, shape, problem.class_axis)
    return output, grad if want_grad else None


def _target_weights(problem: _Problem, r: int) -> dict[int, mpf]:
    """The non-zero ``a_c = w_c * q_c`` of row ``r`` (SPEC.md), by class."""
    classes = problem.logits.shape[1]
    weight = problem.weight
    eps = problem.label_smoothing
    if problem.prob_target is not None:
        keep, share = 1 - eps, eps / classes
        q = [keep * y + share for y in _mpf_row(problem.prob_target, r)]
        products = q if weight is None else [w * qc for w, qc in zip(weight, q)]
        return {c: ac for c, ac in enumerate(products) if ac != 0}
    assert problem.index_target is not None
    t = problem.index_target[r]
    if t == problem.ignore_index:
        return {}
    if eps == 0:  # the common case, without C multiplications of zero
        a = {t: ONE if weight is None else weight[t]}
    else:
        share = eps / classes
        a = dict(enumerate([share] * classes if weight is None else [share * w for w in weight]))
        a[t] += (1 - eps) * (ONE if weight is None else weight[t])
    return {c: ac for c, ac in a.items() if ac != 0}


def _denominator(problem: _Problem) -> mpf:
    """The mean's divisor ``D = sum_r d_r`` (SPEC.md), exactly."""
    if problem.prob_target is not None:
        return mpf(problem.logits.shape[0])  # probability targets: the number of rows
    assert problem.index_target is not None
    total = ZERO
    for t in problem.index_target:
        if t != problem.ignore_index:
            share = ONE if problem.weight is None else problem.weight[t]
            total = mpmath.fadd(total, share, exact=True)
    return total


def _loss(problem: _Problem, want_grad: bool, ledger: _Ledger,
          ingredients: dict[int, _Floats]) -> tuple[np.ndarray, np.ndarray | None]:
    rows, classes = problem.logits.shape
    denominator = _denominator(problem)
    # The mean's 1 / D is applied inside each row; a zero divisor follows IEEE division
    # (SPEC.md) afterwards, on the unscaled gradient.
    scale = 1 / denominator if problem.reduction == "mean" and denominator != 0 else None
    losses: list[Any] = []  # MPFR numbers from the fast rows, mpf from the others
    bounds = np.zeros(rows)  # E(l_r), where the row has one
    grads = np.empty((rows, classes), dtype=object) if want_grad else None
    weighed = np.zeros(rows, dtype=bool)
    for r in range(rows):
        a = _target_weights(problem, r)
        weighed[r] = bool(a)
        if not a:
            # An ignored row (or one with nothing to weigh) does not depend on x at all:
            # loss 0 and gradient 0, whatever the reduction's divisor.
            losses.append(ZERO)
            if grads is not None:
                grads[r] = [ZERO] * classes
                ledger.exact(classes)
            continue
        found = _fast_row(problem, r) if problem.op == "cross_entropy" else None
        fast = None if found is None else _row_loss_mpfr(
            found, a, scale, ledger, want_grad, _bounded_coefficients(problem, r))
        if fast is not None:
            assert found is not None
            ingredients[r] = found.floats
            losses.append(fast[0])
            bounds[r] = fast[1]
            if grads is not None:
                grads[r] = fast[2]
            continue
        ledger.fail()
        dense = [a.get(c, ZERO) for c in range(classes)]
        loss, grad = _row_loss(problem.op, _mpf_row(problem.logits, r), dense)
        losses.append(loss)
        if grads is not None:
            grads[r] = grad if scale is None else [g * scale for g in grad]
    output = _reduce(problem, losses, bounds, denominator, ledger)
    if grads is None:
        return output, None
    if problem.reduction == "mean" and denominator == 0:  # rows that weigh nothing stay 0
        for row in np.flatnonzero(weighed):
            grads[row] = [_divide(g, denominator) for g in grads[row]]
        ledger.fail()
    return output, _restore(grads, (*problem.batch_shape, classes), problem.class_axis)


def _bounded_coefficients(problem: _Problem, r: int) -> bool:
    """Whether ``|a^_c - a_c| <= 4u |a_c|`` holds in row ``r``: no negative probability."""
    return problem.prob_target is None or bool((problem.prob_target[r] >= 0).all())


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


def _reduce(problem: _Problem, losses: list[Any], bounds: np.ndarray, denominator: mpf,
            ledger: _Ledger) -> np.ndarray:
    """The reduced loss; its bound goes to the ledger when every row had one."""
    if (gmpy2 is None or not ledger.complete
            or (problem.reduction == "mean" and denominator == 0)):
        ledger.fail()
        values = [v if isinstance(v, mpf) else _mpf_of(v) for v in losses]
        if problem.reduction == "none":
            return np.array(values, dtype=object).reshape(problem.batch_shape)
        total = mpmath.fsum(values)
        if problem.reduction == "sum":
            return np.array(total, dtype=object)
        # A zero divisor follows IEEE division (SPEC.md): 0 / 0 is NaN, x / 0 is +-inf.
        return np.array(_divide(total, denominator), dtype=object)
    u = 2.0 ** -mpmath.mp.prec
    with gmpy2.context(precision=mpmath.mp.prec):
        values = [gmpy2.mpfr(0) if isinstance(v, mpf) else v for v in losses]  # mpf: exact 0
        nearest = _floats(values)
        if problem.reduction == "none":
            ledger.add(values, bounds, nearest)
            return np.array(_mpfs_of(values), dtype=object).reshape(
                problem.batch_shape)
        sizes = np.abs(nearest)
        total = gmpy2.fsum(values)
        bound = (math.fsum(bounds) + 2 * u * math.fsum(sizes)) * LOOSE
        if problem.reduction == "mean":
            total = total / _mpfr_of(denominator)
            bound = (bound * _round_up(1, gmpy2.mpfr(1) / _mpfr_of(abs(denominator))) * LOOSE
                     + 2 * u * abs(float(total)))
        ledger.add([total], np.array([bound + FLOOR]))
        return np.array(_mpf_of(total), dtype=object)


# --- the same row math on gmpy2's MPFR numbers (the fast path) -------------------------------
#
# MPFR rounds every operation correctly to the working precision, exactly the error model of
# the mpmath code above, so the precision argument of the module docstring holds unchanged.
# The path is taken when gmpy2 is installed and a row's logits and coefficients are all
# finite; otherwise the mpmath code runs.  The shifts x_j - m are exact: they are computed at
# the precision that spans the row's exponents (at most SHIFT_PRECISION bits, where the
# difference of any two float64 values, exponents -1074..1023, fits).  Every number is
# converted to MPFR exactly: floats at a precision >= 53, mpf through its mantissa.

SHIFT_PRECISION = 2200
ETA = 2.0 ** -1074  # float64's smallest subnormal
FLOOR = 4 * ETA  # the underflow of a bound's own float64 products
LOOSE = 1 + 2.0 ** -50  # a float64 ingredient, rounded once or twice, times this bounds it
CERTIFIABLE_SHIFT = 2.0 ** 29  # exp(s) for s >= -2**29 lies far inside MPFR's exponent range

try:
    import gmpy2
except ImportError:  # pragma: no cover - the mpmath path covers it
    gmpy2 = None


def _mpfr_of(value: mpf) -> Any:
    """An mpf as an MPFR number, exactly (at the mpf's own precision); None for inf, nan."""
    sign, man, exp, bc = value._mpf_
    if not man and exp:  # mpmath's inf and nan have a zero mantissa and a non-zero exponent
        return None
    number = gmpy2.mul_2exp(gmpy2.mpfr(int(man), max(int(bc), 1)), int(exp))
    return -number if sign else number


def _mpf_of(number: Any) -> mpf:
    """A finite MPFR number as an mpf, exactly."""
    man, exp = number.as_mantissa_exp()
    return mpmath.mp.make_mpf(from_man_exp(man, int(exp)))


def _mpfs_of(numbers: list[Any]) -> list[mpf]:
    """``_mpf_of`` of each number (the same, without a call per number)."""
    make = mpmath.mp.make_mpf
    return [make(from_man_exp(man, int(exp)))
            for man, exp in map(gmpy2.mpfr.as_mantissa_exp, numbers)]


def _floats(values: list[Any]) -> np.ndarray:
    """MPFR numbers rounded to the nearest float64 (MPFR rounds subnormals correctly)."""
    return np.fromiter((float(v) for v in values), dtype=np.float64, count=len(values))


def _round_up(*factors: Any) -> float:
    """The product of the magnitudes of ``factors`` (floats, MPFR numbers), rounded up to a
    float64: an upper bound, never an underflowed zero."""
    with gmpy2.context(precision=64, round=gmpy2.RoundUp):
        product = gmpy2.mpfr(1)
        for factor in factors:
            product = product * abs(gmpy2.mpfr(factor))
        return float(product)  # the conversion rounds up too


@dataclass(frozen=True)
class _Exponentials:
    """A row of finite logits at the working precision (MPFR numbers)."""

    shifted: list[Any]  # s_j = x_j - m, exact (floats or MPFR numbers)
    exps: list[Any]  # exp(s_j); 1 at the maximum
    total: Any  # S = 1 + T
    log_total: Any  # L = log1p(T)
    floats: _Floats

    @property
    def certifiable(self) -> bool:
        """Whether the module docstring's bounds hold for this row (MPFR's exponent range is
        far from every value, and u = 2**-p is a normal float64)."""
        return (mpmath.mp.prec <= 1000
                and not (self.floats.s.size and self.floats.s.max() > CERTIFIABLE_SHIFT))


def _fast_row(problem: _Problem, r: int) -> _Exponentials | None:
    if problem.logits.dtype == object:  # values that are not float64: the mpmath path
        return None
    return _row_exponentials(problem.logits[r])


def _row_exponentials(logits: np.ndarray) -> _Exponentials | None:
    """For a row of finite float64 logits: the exact shifts s_j, exp(s_j), S = 1 + T and
    L = log1p(T) (T the sum without the maximum), at the working precision; None when the
    row is not all finite or gmpy2 is missing."""
    if gmpy2 is None or not logits.size or not np.isfinite(logits).all():
        return None
    values = logits.tolist()
    top = int(np.argmax(logits))
    shifted = _exact_shifts(values, values[top])
    with gmpy2.context(precision=mpmath.mp.prec):
        exps = [gmpy2.exp(s) for s in shifted]
        exps[top] = gmpy2.mpfr(1)
        tail = gmpy2.fsum(exps[:top] + exps[top + 1:])
        total, log_total = tail + 1, gmpy2.log1p(tail)
        floats = _Floats(np.abs(logits - logits[top]), _floats(exps), float(total),
                         float(log_total))
    return _Exponentials(shifted, exps, total, log_total, floats)


def _exact_shifts(logits: list[float], peak: float) -> list[Any]:
    """x_j - m for every logit, exactly, as floats when float64 holds them all (a row whose
    exponents span at most 53 bits: the usual float32/16 row) and as MPFR numbers otherwise."""
    precision = _shift_precision([*logits, peak])
    if precision <= 53:  # each difference fits in 53 bits: the IEEE subtraction is exact
        return (np.asarray(logits, dtype=np.float64) - peak).tolist()
    with gmpy2.context(precision=precision):
        top = gmpy2.mpfr(peak)
        return [gmpy2.mpfr(v) - top for v in logits]


def _shift_precision(logits: list[float]) -> int:
    """Bits that hold every x_j - m exactly: from the row's largest exponent down to the
    lowest bit of its finest value, plus a carry bit (SHIFT_PRECISION at most)."""
    exponents = np.frexp(np.asarray(logits, dtype=np.float64))[1]
    nonzero = np.asarray(logits) != 0
    if not nonzero.any():
        return 53
    span = int(exponents.max()) - int(exponents[nonzero].min()) + _mantissa_bits(logits) + 1
    return min(span, SHIFT_PRECISION)


def _mantissa_bits(logits: list[float]) -> int:
    """The most significant bits any of the logits uses (24 for float32 values, ...)."""
    mantissas = np.abs(np.frexp(np.asarray(logits, dtype=np.float64))[0])
    scaled = np.ldexp(mantissas, 53).astype(np.int64)  # exact: 53-bit integers
    nonzero = scaled[scaled != 0]
    if not nonzero.size:
        return 1
    trailing = (nonzero & -nonzero).astype(np.float64)  # lowest set bit, a power of two
    return 53 - int(np.frexp(trailing)[1].min()) + 1


def _normalize_row_mpfr(op: str, found: _Exponentials, ledger: _Ledger,
                        want_grad: bool) -> tuple[list[mpf], list[mpf]]:
    """softmax or log_softmax of one row, and the gradient of the sum of its outputs (empty
    when not wanted), with their bounds (module docstring) in the ledger."""
    if not found.certifiable:
        ledger.fail()
    classes = len(found.exps)
    u = 2.0 ** -mpmath.mp.prec
    floats = found.floats
    p_up = floats.e / floats.total * LOOSE + ETA
    with gmpy2.context(precision=mpmath.mp.prec):
        probs = [e / found.total for e in found.exps]
        if op == "softmax":
            ledger.add(probs, 10 * u * p_up + FLOOR)
            if want_grad:
                ledger.exact(classes)
            return _mpfs_of(probs), [ZERO] * classes
        log_probs = [s - found.log_total for s in found.shifted]
        log_up = floats.log_total * LOOSE + u
        ledger.add(log_probs, 4 * u * (log_up + floats.s * LOOSE + 2) + FLOOR)
        if not want_grad:
            return _mpfs_of(log_probs), []
        grads = [1 - classes * p for p in probs]
        nearest = _floats(grads)
        sizes = np.abs(nearest) * LOOSE + ETA
        ledger.add(grads, 12 * u * classes * p_up + 2 * u * sizes + FLOOR, nearest)
        return _mpfs_of(log_probs), _mpfs_of(grads)


def _row_loss_mpfr(found: _Exponentials, a: dict[int, mpf], scale: mpf | None, ledger: _Ledger,
                   want_grad: bool, bounded: bool) -> tuple[Any, float, list[mpf]] | None:
    """cross_entropy of one row on MPFR numbers: ``l = sum_c a_c (L - s_c)`` and
    ``dl/dx_c = (W exp(s_c) / S - a_c) * scale`` (``scale``: the mean's 1 / D, None for 1),
    with ``E(l)`` and the gradient's bounds in the ledger (module docstring); None when a
    coefficient is not finite."""
    with gmpy2.context(precision=mpmath.mp.prec):
        coefficients = {c: _mpfr_of(ac) for c, ac in a.items()}
    if any(ac is None for ac in coefficients.values()):
        return None
    if not (bounded and found.certifiable):
        ledger.fail()
    u = 2.0 ** -mpmath.mp.prec
    floats = found.floats
    classes = list(coefficients)
    a_up = np.abs(_floats(list(coefficients.values()))) * LOOSE + ETA
    log_up = floats.log_total * LOOSE + u
    loss_bound = 16 * u * float(np.sum(a_up * (log_up + floats.s[classes] * LOOSE + 2))) + FLOOR
    with gmpy2.context(precision=mpmath.mp.prec):
        loss = gmpy2.fsum([ac * (found.log_total - found.shifted[c])
                           for c, ac in coefficients.items()])
        if not want_grad:
            return loss, loss_bound, []
        weight = gmpy2.fsum(list(coefficients.values()))
        s = None if scale is None else _mpfr_of(scale)
        factor = weight / found.total if s is None else weight / found.total * s
        grads = [e * factor for e in found.exps]
        for c, ac in coefficients.items():
            grads[c] = grads[c] - (ac if s is None else ac * s)
    if ledger.complete:
        size = 1 if s is None else s
        with gmpy2.context(precision=64, round=gmpy2.RoundUp):
            weights = gmpy2.fsum([abs(ac) for ac in coefficients.values()])
        p_up = floats.e / floats.total * LOOSE + ETA
        nearest = _floats(grads)
        g_up = np.abs(nearest) * LOOSE + ETA
        bound = _round_up(32 * u, size, weights) * p_up + 2 * u * g_up + FLOOR
        bound[classes] += _round_up(16 * u, size) * a_up
        with gmpy2.context(precision=mpmath.mp.prec):
            ledger.add(grads, bound, nearest)
    return loss, loss_bound, _mpfs_of(grads)


class _Ledger:
    """What certifies a pass on its own: for every element of the output and the gradient,
    the float64 ``f`` nearest to the computed value ``v``, ``r = v - f`` rounded to float64,
    and the bound ``E`` of ``|v - exact|`` (0: known exactly).  ``complete`` turns False for
    good as soon as one element has no bound."""

    def __init__(self) -> None:
        self.complete = True
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def fail(self) -> None:
        self.complete = False
        self._parts = []

    def exact(self, count: int) -> None:
        """``count`` elements known exactly (zeros)."""
        if self.complete:
            zeros = np.zeros(count)
            self._parts.append((zeros, zeros, zeros))

    def add(self, values: list[Any], bounds: np.ndarray,
            nearest: np.ndarray | None = None) -> None:
        """MPFR values, their bounds and (when known) ``_floats(values)``; call within the
        working precision's context, where ``v - f`` is exact (it fits in the bits of ``v``
        below float64's)."""
        if not self.complete:
            return
        if nearest is None:
            nearest = _floats(values)
        remainders = np.fromiter((float(v - f) for v, f in zip(values, nearest.tolist())),
                                 dtype=np.float64, count=len(values))
        self._parts.append((nearest, remainders, np.asarray(bounds, dtype=np.float64)))

    def certifies(self, fmt: FloatFormat) -> bool:
        """Whether every element rounds, to float64 and to ``fmt``, as its exact value does
        (module docstring)."""
        if not self.complete:
            return False
        if not self._parts:
            return True
        f, r, e = (np.concatenate(part) for part in zip(*self._parts))
        slack = 1 + 2.0 ** -50  # r and the sums, each rounded to float64
        with np.errstate(over="ignore", invalid="ignore"):
            up = np.nextafter(f, np.inf) - f
            down = f - np.nextafter(f, -np.inf)
            inside = ((2 * (np.maximum(r, 0) + e) * slack < up)
                      & (2 * (np.maximum(-r, 0) + e) * slack < down)
                      & (f != 0) & (np.abs(f) < np.finfo(np.float64).max))
        _rounded, boundary = round_float64_array(f, fmt)
        return bool(np.all((e == 0) | (inside & ~boundary)))


def _divide(value: mpf, denominator: mpf) -> mpf:
    """``value / denominator`` with IEEE's rules for a zero divisor: NaN for 0 / 0 (or NaN),
    +-inf otherwise (the divisor is a sum of weights, taken as +0)."""
    if denominator != 0:
        return value / denominator
    if value == 0 or mpmath.isnan(value):
        return NAN
    return INF if value > 0 else -INF


def _restore(rows: np.ndarray, moved_shape: tuple[int, ...], class_axis: int) -> np.ndarray:
    """Undo the rows-by-classes layout: back to the input's shape and axis order."""
    return np.moveaxis(rows.reshape(moved_shape), -1, class_axis)


# --- error bounds of a max-shifted evaluation (the tolerance policy's ingredients) --------------
#
# ``conformance/compare.py`` derives the bound and documents it; this section evaluates it
# for one problem in one dtype.  The ingredients come from the exact inputs: the shifts
# s_j = x_j - m are exact, exp(s_j), their sum S and L = log S are computed at the oracle's
# first working precision (``_row_exponentials``: ``evaluate`` passes its first pass's values
# on), never in a float format, so an element's bound does not inherit the errors it is
# meant to judge.  Each ingredient is then rounded once to float64 (relative
# error 2**-53) and the bound, a sum of products of non-negative terms (about twenty float64
# operations, each adding at most 2**-53 relative error), is assembled with numpy and
# finally multiplied by INFLATION = 1 + 2**-40, so the float64 bound is never below the
# formula evaluated exactly on the exact ingredients.  Units: u is the dtype's unit roundoff
# 2**-p and eta its smallest subnormal (the absolute error of one rounding that underflows).

INFLATION = 1 + 2.0 ** -40


def error_bounds(
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
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-element error bounds (factor K = 1) of a max-shifted evaluation of ``op`` in
    ``dtype``, float64 arrays shaped like ``evaluate``'s output and grad (NaN bounds are 0:
    those elements are compared as special values); see ``conformance/compare.py``."""
    problem = _prepare(op, input, target, weight, ignore_index, reduction, label_smoothing)
    return _error_bounds(problem, get_format(dtype), grad, {})


@dataclass(frozen=True)
class _RowTerms:
    """One row's ingredients as float64 arrays (``masked``: -inf logits, where p = 0 and
    log p = -inf exactly) and the error bound of the computed log-normalizer."""

    s: np.ndarray  # |x_j - m|
    p: np.ndarray  # softmax
    lp: np.ndarray  # |log softmax|
    masked: np.ndarray
    lam: float  # |L^ - L| <= lam * u
    pi: np.ndarray  # |p^_j - p_j| <= pi_j * u * p_j (+ eta / 2)


def _sum_depth(terms: int, nonzero: int) -> int:
    """``c``: the most roundings one term meets in a pairwise (or blocked) sum of ``terms``
    numbers of which ``nonzero`` are not zero: ceil(log2 terms), and no more than
    ``nonzero - 1`` (adding an exact zero does not round)."""
    if nonzero <= 1:
        return 0
    return min((terms - 1).bit_length(), nonzero - 1)


def _row_terms(x: np.ndarray, u: float, eta: float, found: _Floats | None) -> _RowTerms | None:
    """The ingredients of row ``x`` (float64 logits); ``found``: its exponentials, when the
    oracle's first pass has them."""
    if np.isnan(x).any() or (x == np.inf).any():
        return None
    masked = x == -np.inf
    if masked.all():
        return None
    top = int(np.argmax(np.where(masked, -np.inf, x)))
    # |x_j - m| to float64 (an IEEE subtraction is the exact difference, correctly rounded)
    s = np.where(masked, 0.0, np.abs(x - x[top]))
    if found is None:
        found = _bound_exponentials(x[~masked])
    p = np.zeros(len(x))
    p[~masked] = found.e
    total_f, log_total = found.total, found.log_total
    p /= total_f
    lp = np.where(masked, 0.0, s + log_total)  # |s_j - L| = |s_j| + L (s_j <= 0 <= L)
    sigma = float(np.sum(p * s))
    count = int((~masked).sum())
    lam = log_total + sigma + _sum_depth(count, count) + 1 + count * eta / (2 * u * total_f)
    pi = np.where(masked, 0.0, s + lam + lp + 1)
    return _RowTerms(s, p, lp, masked, lam, pi)


def _bound_exponentials(logits: np.ndarray) -> _Floats:
    """exp(x_j - m) of finite logits (exact shifts), their sum S and L = log S at the working
    precision, each rounded once to float64: those of the oracle's MPFR rows, or mpmath's."""
    found = _row_exponentials(logits)
    if found is not None:
        return found.floats
    from mpmath.libmp import from_float, mpf_exp, mpf_log, mpf_sub, mpf_sum, round_nearest

    prec = mpmath.mp.prec
    peak = from_float(float(np.max(logits)))
    exps = [mpf_exp(mpf_sub(from_float(v), peak), prec, round_nearest) for v in logits.tolist()]
    total = mpf_sum(exps, prec, round_nearest)
    e = np.array([float(mpmath.mp.make_mpf(v)) for v in exps], dtype=np.float64)
    return _Floats(np.abs(logits - np.max(logits)), e, float(mpmath.mp.make_mpf(total)),
                   float(mpmath.mp.make_mpf(mpf_log(total, prec, round_nearest))))


def _coefficients(problem: _Problem, r: int, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """``_target_weights`` in float64 (``weight``: the class weights, ones when there are
    none): ``a_c`` to within a few float64 roundings (exact for index targets without
    smoothing), and the row's share of the mean's divisor."""
    classes = problem.logits.shape[1]
    eps = float(problem.label_smoothing)
    if problem.prob_target is not None:
        y = _float_row(problem.prob_target, r)
        return weight * ((1 - eps) * y + eps / classes), 1.0
    assert problem.index_target is not None
    t = int(problem.index_target[r])
    if t == problem.ignore_index:
        return np.zeros(classes), 0.0
    a = weight * (eps / classes) if eps else np.zeros(classes)
    a[t] += (1 - eps) * weight[t]
    return a, float(weight[t])


def _error_bounds(problem: _Problem, fmt: FloatFormat, want_grad: bool,
                  found: dict[int, _Floats]) -> tuple[np.ndarray, np.ndarray | None]:
    """The bounds; ``found``: the exponentials of the rows the first pass has (by row)."""
    u, eta = fmt.unit_roundoff, fmt.smallest_subnormal
    with mpmath.workprec(_first_precision(problem)), np.errstate(over="ignore"):
        if problem.op in ("softmax", "log_softmax"):
            output, grad = _normalize_bounds(problem, u, eta, found)
        else:
            output, grad = _loss_bounds(problem, u, eta, found)
    output = np.nan_to_num(output * INFLATION, nan=0.0, posinf=np.inf)
    grad = np.nan_to_num(grad * INFLATION, nan=0.0, posinf=np.inf)
    return output, grad if want_grad else None


def _normalize_bounds(problem: _Problem, u: float, eta: float,
                      found: dict[int, _Floats]) -> tuple[np.ndarray, np.ndarray]:
    rows, classes = problem.logits.shape
    outputs = np.zeros((rows, classes))
    grads = np.zeros((rows, classes))
    for r in range(rows):
        terms = _row_terms(_float_row(problem.logits, r), u, eta, found.get(r))
        if terms is None:  # NaN outputs: compared as special values, no bound needed
            continue
        p, pi = terms.p, terms.pi
        if problem.op == "softmax":
            outputs[r] = u * p * pi + eta
            # sum_c softmax = 1: the backward's p_k * (1 - sum_j p^_j) is all rounding error
            spread = float(np.sum(p * pi)) + _sum_depth(classes, classes) + 1
            grads[r] = u * p * spread + p * classes * eta / 2 + eta
        else:
            outputs[r] = np.where(terms.masked, eta, u * (terms.s + terms.lam + terms.lp) + eta)
            grads[r] = u * (classes * p * (pi + 2) + np.abs(1 - classes * p)) \
                + classes * eta / 2 + eta
    shape = (*problem.batch_shape, classes)
    return (_restore(outputs, shape, problem.class_axis),
            _restore(grads, shape, problem.class_axis))


def _loss_bounds(problem: _Problem, u: float, eta: float,
                 found: dict[int, _Floats]) -> tuple[np.ndarray, np.ndarray]:
    rows, classes = problem.logits.shape
    weight = (np.ones(classes) if problem.weight is None
              else np.array([float(w) for w in problem.weight]))
    losses = np.zeros(rows)  # sum_c |a_c| |log p_c|  (= |l_r| for non-negative a)
    row_bounds = np.zeros(rows)  # beta_r
    shares = np.zeros(rows)  # d_r
    row_data: list[tuple[np.ndarray, _RowTerms | None] | None] = []
    for r in range(rows):
        a, shares[r] = _coefficients(problem, r, weight)
        row = _float_row(problem.logits, r)
        if not a.any():  # an ignored row: exactly 0, value and gradient
            row_data.append(None)
            continue
        nonzero = a != 0
        if problem.op == "nll_loss":  # l = -w_t * L_t: one product
            with np.errstate(invalid="ignore"):
                values = np.abs(row)
                losses[r] = float(np.sum(np.abs(a[nonzero]) * values[nonzero]))
            row_bounds[r] = u * losses[r] + eta
            row_data.append((a, None))
            continue
        terms = _row_terms(row, u, eta, found.get(r))
        if terms is None:
            losses[r] = row_bounds[r] = np.nan
            row_data.append((a, None))
            continue
        weights = np.abs(a[nonzero])
        with np.errstate(invalid="ignore"):
            losses[r] = float(np.sum(weights * np.where(terms.masked, np.inf, terms.lp)[nonzero]))
            shifted = float(np.sum(weights * (np.where(terms.masked, np.inf, terms.s)
                                              + terms.lam + terms.lp)[nonzero]))
        depth = _sum_depth(classes, int(nonzero.sum()))
        row_bounds[r] = u * (shifted + (depth + 3) * losses[r]) + eta * (nonzero.sum() + 1)
        row_data.append((a, terms))
    output, divisor, divisor_error = _reduce_bounds(problem, losses, row_bounds, shares, u, eta)
    grads = np.zeros((rows, classes))
    for r, data in enumerate(row_data):
        if data is None:
            grads[r] = eta
            continue
        a, terms = data
        if divisor == 0:  # mean over nothing: NaN gradients, compared as special values
            continue
        if problem.op == "nll_loss":  # g_k = -a_k / D: one division, and D's own error
            grads[r] = u * (1 + divisor_error) * np.abs(a) / abs(divisor) + eta
            continue
        if terms is None:  # an undefined row: NaN gradients
            continue
        total, total_abs = float(np.sum(a)), float(np.sum(np.abs(a)))
        depth = _sum_depth(classes, int((a != 0).sum()))
        scale = 1 / abs(divisor)
        p = terms.p
        g = np.abs(total * p - a) * scale
        b = (abs(total) * p * (terms.pi + 1)
             + (depth + 2 + divisor_error) * (total_abs * p + np.abs(a))) * scale + g
        grads[r] = u * b + eta * (total_abs * scale / 2 + 1)
    shape = (*problem.batch_shape, classes)
    return output, _restore(grads, shape, problem.class_axis)


def _reduce_bounds(problem: _Problem, losses: np.ndarray, row_bounds: np.ndarray,
                   shares: np.ndarray, u: float, eta: float) -> tuple[np.ndarray, float, float]:
    """The reduced output's bound, the mean's divisor D (1 for none and sum) and the error of
    D plus that of the division, in units of u (0 for none and sum)."""
    rows = len(losses)
    if problem.reduction == "none":
        return row_bounds.reshape(problem.batch_shape), 1.0, 0.0
    nonzero = int(np.count_nonzero(losses))
    summed = float(np.sum(row_bounds)) + u * _sum_depth(rows, nonzero) * float(np.sum(losses))
    if problem.reduction == "sum":
        return np.array(summed + eta), 1.0, 0.0
    if rows == 0:
        return np.array(0.0), 0.0, 0.0
    if problem.prob_target is not None:
        divisor, divisor_error = float(rows), 1.0
    else:
        divisor = float(mpmath.fsum(exact(float(d)) for d in shares))  # exact sum, rounded
        if divisor == 0:
            return np.array(0.0), 0.0, 0.0
        counted = int(np.count_nonzero(shares))
        divisor_error = (_sum_depth(rows, counted) * float(np.sum(np.abs(shares)))
                         / abs(divisor) + 1)
    # the mean's own rounding, with |mean| <= sum_r |l_r| / |D|
    mean_abs = float(np.sum(losses)) / abs(divisor)
    bound = summed / abs(divisor) + u * divisor_error * mean_abs + eta
    return np.array(bound), divisor, divisor_error
