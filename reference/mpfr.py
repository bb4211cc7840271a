"""The MPFR evaluation (the fast path): the formulas of SPEC.md on gmpy2's MPFR numbers,
with an a-priori error bound for every element.

When gmpy2 is installed, rows of finite logits (cross_entropy, softmax, log_softmax) run
the formulas of ``reference/definitions.py`` on MPFR numbers, correctly rounded at the same
working precision (``mpmath.mp.prec``, set by the caller), so the precision argument of that
module holds unchanged; about eight times faster than mpmath objects.
``tests/test_oracle_fast_path.py`` checks that both paths give the same rounded results.  The
path is taken when gmpy2 is installed (``gmpy2`` is None here otherwise, and callers test
that) and a row's logits and coefficients are all finite; otherwise the mpmath code runs.
The shifts ``x_j - m`` are exact: they are computed at the precision that spans the row's
exponents (at most SHIFT_PRECISION bits, where the difference of any two float64 values,
exponents -1074..1023, fits).  Every number is converted to MPFR exactly: floats at a
precision >= 53, mpf through its mantissa.

The a-priori bounds
-------------------
Every element ``v`` computed here goes to the ledger (``reference/ledger.py``, which decides
from them whether a pass is certified) with a bound ``E`` of ``|v - exact|``.  The bounds,
for a row with shifts ``s_j``, ``e_j = exp(s_j)``, ``S = 1 + T``, ``L = log S``,
``p_c = e_c / S`` (first order in ``u``; the constants used are about twice these, which
absorbs the second-order terms and the float64 rounding of the bookkeeping):

* ``|e^_j - e_j| <= u e_j`` (``e_m = 1`` exactly); ``|T^ - T| <= 2u T``; ``|S^ - S| <= 3u S``;
  ``|L^ - L| <= |T^ - T| / (1 + T) + u L <= u (L + 2)`` (``log1p`` is 1-Lipschitz on T >= 0);
* coefficients ``a_c`` (``definitions.target_weights``, at precision p):
  ``|a^_c - a_c| <= 4u |a_c|``, as long as the probability targets are non-negative (then
  ``(1 - eps) y + eps / C`` adds terms of one sign; weights of either sign only multiply);
  rows with a negative probability target are not certified (``bounded_coefficients``);
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
bound (``Exponentials.certifiable``).  ``tests/test_oracle_certified.py`` checks the bounds
against evaluations at far higher precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf
from mpmath.libmp import from_man_exp

from reference.definitions import ZERO
from reference.ledger import Ledger, nearest_floats
from reference.problem import Problem, divides

SHIFT_PRECISION = 2200
ETA = 2.0 ** -1074  # float64's smallest subnormal
FLOOR = 4 * ETA  # the underflow of a bound's own float64 products
LOOSE = 1 + 2.0 ** -50  # a float64 ingredient, rounded once or twice, times this bounds it
CERTIFIABLE_SHIFT = 2.0 ** 29  # exp(s) for s >= -2**29 lies far inside MPFR's exponent range

try:
    import gmpy2
except ImportError:  # pragma: no cover - the mpmath path covers it
    gmpy2 = None


def mpfr_of(value: mpf) -> Any:
    """An mpf as an MPFR number, exactly (at the mpf's own precision); None for inf, nan."""
    sign, man, exp, bc = value._mpf_
    if not man and exp:  # mpmath's inf and nan have a zero mantissa and a non-zero exponent
        return None
    number = gmpy2.mul_2exp(gmpy2.mpfr(int(man), max(int(bc), 1)), int(exp))
    return -number if sign else number


def mpf_of(number: Any) -> mpf:
    """A finite MPFR number as an mpf, exactly."""
    man, exp = number.as_mantissa_exp()
    return mpmath.mp.make_mpf(from_man_exp(man, int(exp)))


def mpfs_of(numbers: list[Any]) -> list[mpf]:
    """``mpf_of`` of each number (the same, without a call per number)."""
    make = mpmath.mp.make_mpf
    return [make(from_man_exp(man, int(exp)))
            for man, exp in map(gmpy2.mpfr.as_mantissa_exp, numbers)]


def round_up(*factors: Any) -> float:
    """The product of the magnitudes of ``factors`` (floats, MPFR numbers), rounded up to a
    float64: an upper bound, never an underflowed zero."""
    with gmpy2.context(precision=64, round=gmpy2.RoundUp):
        product = gmpy2.mpfr(1)
        for factor in factors:
            product = product * abs(gmpy2.mpfr(factor))
        return float(product)  # the conversion rounds up too


@dataclass(frozen=True)
class Floats:
    """A row's exponentials at the working precision, each rounded once to float64 (the
    error bounds' ingredients, and the certification's)."""

    s: np.ndarray  # |x_j - m| (exact when float64 holds it, else correctly rounded)
    e: np.ndarray  # exp(x_j - m)
    total: float  # S = sum_j exp(x_j - m)
    log_total: float  # L = log S


@dataclass(frozen=True)
class Exponentials:
    """A row of finite logits at the working precision (MPFR numbers)."""

    shifted: list[Any]  # s_j = x_j - m, exact (floats or MPFR numbers)
    exps: list[Any]  # exp(s_j); 1 at the maximum
    total: Any  # S = 1 + T
    log_total: Any  # L = log1p(T)
    floats: Floats

    @property
    def certifiable(self) -> bool:
        """Whether the module docstring's bounds hold for this row (MPFR's exponent range is
        far from every value, and u = 2**-p is a normal float64)."""
        return (mpmath.mp.prec <= 1000
                and not (self.floats.s.size and self.floats.s.max() > CERTIFIABLE_SHIFT))


def fast_row(problem: Problem, r: int) -> Exponentials | None:
    """``row_exponentials`` of row ``r`` when its logits are float64 values."""
    if problem.logits.dtype == object:  # values that are not float64: the mpmath path
        return None
    return row_exponentials(problem.logits[r])


def row_exponentials(logits: np.ndarray) -> Exponentials | None:
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
        floats = Floats(np.abs(logits - logits[top]), nearest_floats(exps), float(total),
                        float(log_total))
    return Exponentials(shifted, exps, total, log_total, floats)


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


def bounded_coefficients(problem: Problem, r: int) -> bool:
    """Whether ``|a^_c - a_c| <= 4u |a_c|`` holds in row ``r``: no negative probability."""
    return problem.prob_target is None or bool((problem.prob_target[r] >= 0).all())


def normalize_row(op: str, found: Exponentials, ledger: Ledger,
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
            return mpfs_of(probs), [ZERO] * classes
        log_probs = [s - found.log_total for s in found.shifted]
        log_up = floats.log_total * LOOSE + u
        ledger.add(log_probs, 4 * u * (log_up + floats.s * LOOSE + 2) + FLOOR)
        if not want_grad:
            return mpfs_of(log_probs), []
        grads = [1 - classes * p for p in probs]
        nearest = nearest_floats(grads)
        sizes = np.abs(nearest) * LOOSE + ETA
        ledger.add(grads, 12 * u * classes * p_up + 2 * u * sizes + FLOOR, nearest)
        return mpfs_of(log_probs), mpfs_of(grads)


def row_loss(found: Exponentials, a: dict[int, mpf], scale: mpf | None, ledger: Ledger,
             want_grad: bool, bounded: bool) -> tuple[Any, float, list[mpf]] | None:
    """cross_entropy of one row on MPFR numbers: ``l = sum_c a_c (L - s_c)`` and
    ``dl/dx_c = (W exp(s_c) / S - a_c) * scale`` (``scale``: the mean's 1 / D, None for 1),
    with ``E(l)`` and the gradient's bounds in the ledger (module docstring); None when a
    coefficient is not finite."""
    with gmpy2.context(precision=mpmath.mp.prec):
        coefficients = {c: mpfr_of(ac) for c, ac in a.items()}
    if any(ac is None for ac in coefficients.values()):
        return None
    if not (bounded and found.certifiable):
        ledger.fail()
    u = 2.0 ** -mpmath.mp.prec
    floats = found.floats
    classes = list(coefficients)
    a_up = np.abs(nearest_floats(list(coefficients.values()))) * LOOSE + ETA
    log_up = floats.log_total * LOOSE + u
    loss_bound = 16 * u * float(np.sum(a_up * (log_up + floats.s[classes] * LOOSE + 2))) + FLOOR
    with gmpy2.context(precision=mpmath.mp.prec):
        loss = gmpy2.fsum([ac * (found.log_total - found.shifted[c])
                           for c, ac in coefficients.items()])
        if not want_grad:
            return loss, loss_bound, []
        weight = gmpy2.fsum(list(coefficients.values()))
        s = None if scale is None else mpfr_of(scale)
        factor = weight / found.total if s is None else weight / found.total * s
        grads = [e * factor for e in found.exps]
        for c, ac in coefficients.items():
            grads[c] = grads[c] - (ac if s is None else ac * s)
    if ledger.complete:
        size = 1 if s is None else s
        with gmpy2.context(precision=64, round=gmpy2.RoundUp):
            weights = gmpy2.fsum([abs(ac) for ac in coefficients.values()])
        p_up = floats.e / floats.total * LOOSE + ETA
        nearest = nearest_floats(grads)
        g_up = np.abs(nearest) * LOOSE + ETA
        bound = round_up(32 * u, size, weights) * p_up + 2 * u * g_up + FLOOR
        bound[classes] += round_up(16 * u, size) * a_up
        with gmpy2.context(precision=mpmath.mp.prec):
            ledger.add(grads, bound, nearest)
    return loss, loss_bound, mpfs_of(grads)


def reduce_losses(problem: Problem, losses: list[Any], bounds: np.ndarray, denominator: mpf,
                  ledger: Ledger) -> np.ndarray:
    """The reduced loss on MPFR numbers (``losses``: MPFR numbers, and mpf zeros for the rows
    that weigh nothing; ``bounds``: their E(l_r)), its bound in the ledger; for a ledger that
    is complete and a mean whose divisor is not zero."""
    u = 2.0 ** -mpmath.mp.prec
    with gmpy2.context(precision=mpmath.mp.prec):
        values = [gmpy2.mpfr(0) if isinstance(v, mpf) else v for v in losses]  # mpf: exact 0
        nearest = nearest_floats(values)
        if problem.reduction == "none":
            ledger.add(values, bounds, nearest)
            return np.array(mpfs_of(values), dtype=object).reshape(
                problem.batch_shape)
        sizes = np.abs(nearest)
        total = gmpy2.fsum(values)
        bound = (math.fsum(bounds) + 2 * u * math.fsum(sizes)) * LOOSE
        if divides(problem.reduction):
            total = total / mpfr_of(denominator)
            bound = (bound * round_up(1, gmpy2.mpfr(1) / mpfr_of(abs(denominator))) * LOOSE
                     + 2 * u * abs(float(total)))
        ledger.add([total], np.array([bound + FLOOR]))
        return np.array(mpf_of(total), dtype=object)
