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

Speed: when gmpy2 is installed, rows of finite logits run the same formulas on MPFR numbers
(correctly rounded at the same working precision, so the argument above is unchanged), about
eight times faster than mpmath objects; ``tests/test_oracle_fast_path.py`` checks that both
paths give the same rounded results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
        if key == previous_key or precision >= MAX_PRECISION:
            output_bound, grad_bound = _error_bounds(problem, fmt, grad)
            return OracleResult(output, gradient, precision, certified=key == previous_key,
                                output_bound=output_bound, grad_bound=grad_bound)
        previous_key = key
        precision *= 2


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
    # a float array is a probability target even when empty (no element says so)
    is_float_array = isinstance(target, np.ndarray) and target.dtype.kind == "f"
    is_index = not is_float_array and all(
        isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in flat)
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
        fast = _normalize_row_mpfr(problem.op, row)
        if fast is not None:
            outputs.append(fast[0])
            grads.append(fast[1])
            continue
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
    if eps == 0:  # the common case, without C multiplications of zero
        a = [ZERO] * classes
        a[t] = weight[t]
        return a, weight[t]
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
    fast = _row_loss_mpfr(row, a)
    if fast is not None:
        return fast
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
        # A zero divisor follows IEEE division (SPEC.md): 0 / 0 is NaN, x / 0 is +-inf.
        scale = 1 / denominator if denominator != 0 else NAN
        output = np.array(_divide(mpmath.fsum(losses), denominator), dtype=object)
    if not want_grad:
        return output, None
    zeros = [mpf(0)] * classes
    scaled = np.array(
        [zeros if row is None else row if scale == 1
         else [_divide(g, denominator) for g in row] if denominator == 0
         else [g * scale for g in row]
         for row in grads], dtype=object
    ).reshape(-1, classes)
    grad = _restore(scaled, (*problem.batch_shape, classes), problem.class_axis)
    return output, grad


# --- the same row math on gmpy2's MPFR numbers (the fast path) -------------------------------
#
# MPFR rounds every operation correctly to the working precision, exactly the error model of
# the mpmath code above, so the precision argument of the module docstring and Ziv's check
# hold unchanged; only the constant factor differs (about ten times faster per element).
# The path is taken when gmpy2 is installed and a row's logits and coefficients are all
# finite; otherwise the mpmath code runs.  The shifts x_j - m are exact: they are computed at
# the precision that spans the row's exponents (at most SHIFT_PRECISION bits, where the
# difference of any two float64 values, exponents -1074..1023, fits).

SHIFT_PRECISION = 2200

try:
    import gmpy2
except ImportError:  # pragma: no cover - the mpmath path covers it
    gmpy2 = None


def _mpfr_of(value: mpf) -> Any:
    """An mpf as an MPFR number, exactly if the active MPFR precision is at least the mpf's
    (an mpf computed under ``workprec(p)`` has at most p bits); None for inf and nan."""
    sign, man, exp, bc = value._mpf_
    if not man and exp:  # mpmath's inf and nan have a zero mantissa and a non-zero exponent
        return None
    number = gmpy2.mul_2exp(gmpy2.mpfr(int(man), max(int(bc), 1)), int(exp))
    return -number if sign else number


def _mpf_of(number: Any) -> mpf:
    """An MPFR number as an mpf, exactly."""
    man, exp = number.as_mantissa_exp()
    return mpmath.mp.make_mpf(from_man_exp(int(man), int(exp)))


def _row_exponentials(row: Sequence[mpf]) -> tuple[list[Any], list[Any], Any, Any] | None:
    """For a row of finite logits: the exact shifts s_j, exp(s_j), S = sum_j exp(s_j) and
    L = log1p(S - 1), at the working precision; None when the row is not all finite."""
    if gmpy2 is None:
        return None
    logits = [float(v) for v in row]  # exact: the inputs are floats of the dtype under test
    if not all(np.isfinite(logits)):
        return None
    top = int(np.argmax(logits))
    shifted = _exact_shifts(logits, logits[top])
    with gmpy2.context(precision=mpmath.mp.prec):
        exps = [gmpy2.exp(s) for s in shifted]
        exps[top] = gmpy2.mpfr(1)
        tail = gmpy2.fsum(exps[:top] + exps[top + 1:])
        return shifted, exps, tail + 1, gmpy2.log1p(tail)


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


def _normalize_row_mpfr(op: str, row: Sequence[mpf]) -> tuple[list[mpf], list[mpf]] | None:
    """softmax or log_softmax of one row, and the gradient of the sum of its outputs."""
    found = _row_exponentials(row)
    if found is None:
        return None
    shifted, exps, total, log_total = found
    classes = len(shifted)
    with gmpy2.context(precision=mpmath.mp.prec):
        probs = [e / total for e in exps]
        if op == "softmax":
            return [_mpf_of(p) for p in probs], [mpf(0)] * classes
        log_probs = [_mpf_of(s - log_total) for s in shifted]
        return log_probs, [_mpf_of(1 - classes * p) for p in probs]


def _row_loss_mpfr(row: Sequence[mpf], a: list[mpf]) -> tuple[mpf, list[mpf]] | None:
    """``_row_loss`` of cross_entropy on MPFR numbers: ``l = sum_c a_c (L - s_c)`` and
    ``dl/dx_c = A * exp(s_c) / S - a_c``."""
    found = _row_exponentials(row)
    if found is None:
        return None
    with gmpy2.context(precision=mpmath.mp.prec):
        zero = gmpy2.mpfr(0)
        coefficients = [_mpfr_of(ac) if ac else zero for ac in a]
    if any(c is None for c in coefficients):
        return None
    shifted, exps, total, log_total = found
    with gmpy2.context(precision=mpmath.mp.prec):
        loss = gmpy2.fsum([c * (log_total - s) for c, s in zip(coefficients, shifted) if c])
        weight = gmpy2.fsum(coefficients)
        grad = [_mpf_of(weight * e / total - c) for e, c in zip(exps, coefficients)]
        return _mpf_of(loss), grad


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
# for one problem in one dtype.  The ingredients come from mpmath on the exact inputs: the
# shifts s_j = x_j - m are exact, exp(s_j), their sum S and L = log S are computed at
# BOUND_PRECISION bits, never in a float format, so an element's bound does not inherit the
# errors it is meant to judge.  Each ingredient is then rounded once to float64 (relative
# error 2**-53) and the bound, a sum of products of non-negative terms (about twenty float64
# operations, each adding at most 2**-53 relative error), is assembled with numpy and
# finally multiplied by INFLATION = 1 + 2**-40, so the float64 bound is never below the
# formula evaluated exactly on the exact ingredients.  Units: u is the dtype's unit roundoff
# 2**-p and eta its smallest subnormal (the absolute error of one rounding that underflows).

BOUND_PRECISION = 64
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
    return _error_bounds(problem, get_format(dtype), grad)


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


def _row_terms(row: Sequence[mpf], u: float, eta: float) -> _RowTerms | None:
    from mpmath.libmp import from_float, mpf_exp, mpf_log, mpf_sub, mpf_sum, round_nearest

    x = np.fromiter((float(v) for v in row), dtype=np.float64, count=len(row))  # exact
    if np.isnan(x).any() or (x == np.inf).any():
        return None
    masked = x == -np.inf
    if masked.all():
        return None
    top = int(np.argmax(np.where(masked, -np.inf, x)))
    # |x_j - m| to float64 (an IEEE subtraction is the exact difference, correctly rounded)
    s = np.where(masked, 0.0, np.abs(x - x[top]))
    # exp(x_j - m) of the exact shift, at the working precision
    p = np.zeros(len(row))
    if gmpy2 is not None:  # the same, on MPFR numbers (see the fast path above)
        p[~masked], total_f, log_total = _exponentials_mpfr(x[~masked], float(x[top]))
    else:
        prec = mpmath.mp.prec
        m = from_float(x[top])
        exps = [mpf_exp(mpf_sub(from_float(x[j]), m), prec, round_nearest)
                for j in np.flatnonzero(~masked)]
        total = mpf_sum(exps, prec, round_nearest)
        total_f = float(mpmath.mp.make_mpf(total))
        log_total = float(mpmath.mp.make_mpf(mpf_log(total, prec, round_nearest)))
        p[~masked] = [float(mpmath.mp.make_mpf(e)) for e in exps]
    p /= total_f
    lp = np.where(masked, 0.0, s + log_total)  # |s_j - L| = |s_j| + L (s_j <= 0 <= L)
    sigma = float(np.sum(p * s))
    count = int((~masked).sum())
    lam = log_total + sigma + _sum_depth(count, count) + 1 + count * eta / (2 * u * total_f)
    pi = np.where(masked, 0.0, s + lam + lp + 1)
    return _RowTerms(s, p, lp, masked, lam, pi)


def _exponentials_mpfr(logits: np.ndarray, peak: float) -> tuple[list[float], float, float]:
    """exp(x_j - m) (exact shifts), their sum and its log at the working precision, each
    rounded once to float64."""
    shifts = _exact_shifts(logits.tolist(), peak)
    with gmpy2.context(precision=mpmath.mp.prec):
        exps = [gmpy2.exp(s) for s in shifts]
        total = gmpy2.fsum(exps)
        return [float(e) for e in exps], float(total), float(gmpy2.log(total))


def _coefficients(problem: _Problem, r: int) -> tuple[np.ndarray, float]:
    """``_target_weights`` in float64: ``a_c`` to within a few float64 roundings (exact for
    index targets without smoothing), and the row's share of the mean's divisor."""
    classes = problem.logits.shape[1]
    weight = (np.ones(classes) if problem.weight is None
              else np.array([float(w) for w in problem.weight]))
    eps = float(problem.label_smoothing)
    if problem.prob_target is not None:
        y = np.fromiter((float(v) for v in problem.prob_target[r]), dtype=np.float64,
                        count=classes)
        return weight * ((1 - eps) * y + eps / classes), 1.0
    assert problem.index_target is not None
    t = int(problem.index_target[r])
    if t == problem.ignore_index:
        return np.zeros(classes), 0.0
    a = weight * (eps / classes) if eps else np.zeros(classes)
    a[t] += (1 - eps) * weight[t]
    return a, float(weight[t])


def _error_bounds(problem: _Problem, fmt: FloatFormat,
                  want_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    u, eta = fmt.unit_roundoff, fmt.smallest_subnormal
    with mpmath.workprec(BOUND_PRECISION + int(problem.logits.shape[1]).bit_length()), \
            np.errstate(over="ignore"):
        if problem.op in ("softmax", "log_softmax"):
            output, grad = _normalize_bounds(problem, u, eta)
        else:
            output, grad = _loss_bounds(problem, u, eta)
    output = np.nan_to_num(output * INFLATION, nan=0.0, posinf=np.inf)
    grad = np.nan_to_num(grad * INFLATION, nan=0.0, posinf=np.inf)
    return output, grad if want_grad else None


def _normalize_bounds(problem: _Problem, u: float, eta: float) -> tuple[np.ndarray, np.ndarray]:
    rows, classes = problem.logits.shape
    outputs = np.zeros((rows, classes))
    grads = np.zeros((rows, classes))
    for r, row in enumerate(problem.logits):
        terms = _row_terms(row, u, eta)
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


def _loss_bounds(problem: _Problem, u: float, eta: float) -> tuple[np.ndarray, np.ndarray]:
    rows, classes = problem.logits.shape
    losses = np.zeros(rows)  # sum_c |a_c| |log p_c|  (= |l_r| for non-negative a)
    row_bounds = np.zeros(rows)  # beta_r
    shares = np.zeros(rows)  # d_r
    row_data: list[tuple[np.ndarray, _RowTerms | None] | None] = []
    for r, row in enumerate(problem.logits):
        a, shares[r] = _coefficients(problem, r)
        if not a.any():  # an ignored row: exactly 0, value and gradient
            row_data.append(None)
            continue
        nonzero = a != 0
        if problem.op == "nll_loss":  # l = -w_t * L_t: one product
            with np.errstate(invalid="ignore"):
                values = np.fromiter((abs(float(v)) for v in row), dtype=np.float64,
                                     count=classes)
                losses[r] = float(np.sum(np.abs(a[nonzero]) * values[nonzero]))
            row_bounds[r] = u * losses[r] + eta
            row_data.append((a, None))
            continue
        terms = _row_terms(row, u, eta)
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
