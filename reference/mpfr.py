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
  ``|L^ - L| <= |T^ - T| / (1 + T) + u L <= u (L + 2 min(1, L))`` (``log1p`` is 1-Lipschitz
  on T >= 0, and ``T / (1 + T) <= min(1, log1p(T))``: relative to ``L`` when ``L`` is tiny, a
  dominant class, where an absolute ``2u`` would dwarf a loss of ``1e-304``);
* coefficients ``a_c`` (``definitions.target_weights``, at precision p):
  ``|a^_c - a_c| <= 4u |a_c|``, as long as the probability targets are non-negative (then
  ``(1 - eps) y + eps / C`` adds terms of one sign; weights of either sign only multiply);
  rows with a negative probability target are not certified (``bounded_coefficients``);
* loss term ``a_c (L - s_c)``: ``L^ - s_c`` adds non-negative numbers, so the term's error is
  at most ``u |a_c| (7 (L + |s_c|) + 2 min(1, L))``, and the correctly rounded sum adds
  ``u |l|``: ``E(l) = 16u sum_c |a_c| (L + |s_c| + 2 min(1, L))``;
* gradient, with the mean's scale ``s^ = RN(1/D)`` (D, a sum of floats, is exact; ``s = 1``
  for none and sum).  ``W p_c - a_c`` is never formed as written: where ``a_c`` dominates and
  ``p_c`` is near 1 (``x = [0, -446]``, target 0: ``p_0 - 1 = -2.0e-194``) the two terms agree
  to hundreds of bits and the difference is lost at any working precision below that.  With
  ``R_c = W - a_c = sum_{j != c} a_j`` and ``Q_c = S - e_c = sum_{k != c} e_k``,
  ``W p_c - a_c = (e_c R_c - a_c Q_c) / S`` exactly, and both products are small exactly where
  the gradient is: ``R^_c = RN(W* - a^_c)`` from the *exact* sum ``W*`` of the ``a^_j``
  (``exact_total``), so ``|R^_c - R_c| <= u |R_c| + 4u sum_{j != c} |a_j|``;
  ``Q^_c = T^`` for the row's maximum (``2u`` relative) and ``RN(S^ - e^_c)`` otherwise, where
  ``Q_c >= S / 2`` (the maximum's ``e = 1`` is in it and ``e_c <= 1``), ``8u`` relative.
  ``g_c = RN(RN(RN(RN(e^_c R^_c) - RN(a^_c Q^_c)) / S^) s^)``: the first product is off by
  ``<= 7u e_c sum_{j != c} |a_j|``, the second by ``<= 13u |a_c| Q_c``, the subtraction,
  the division by ``S^`` and the scale add ``<= 7u |g_c|``, so with ``q_c = Q_c / S``
  (``<= 1``, and ``T / S`` at the maximum): ``E(g_c) = 32u |s| p_c sum_{j != c} |a_j| +
  32u |s| |a_c| q_c + 16u |g_c|``.  The bound is relative to the two terms, so a gradient
  lost to cancellation before is now certified in one pass (``a_c = 0``: ``g_c = e_c W / S``);
* softmax ``RN(e^_c / S^)``: ``E = 10u p_c``; log_softmax ``RN(s_c - L^)``:
  ``E = 4u (L + |s_c| + 2 min(1, L))``; its gradient ``RN(1 - RN(C p^_c))``:
  ``E = 12u C p_c + 2u |g_c|``
  (``1 - C p_c`` can cancel too, but no cheaper exact form exists: its bound certifies only
  the gradients that it decides, and Ziv's loop never accepts a zero that is provably not one
  (``reference/certify.py``); a row of equal logits has the exact gradient 0);
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
    top: int  # the index of the maximum (the first one)
    tail: Any  # T = sum_{j != top} exp(s_j)
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
    return Exponentials(shifted, exps, top, tail, total, log_total, floats)


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
    # Past 1000 bits the row is not certifiable (the ledger has failed, its bounds are
    # unused); the cap keeps u a normal float64, so they compute without 0 * inf.
    u = 2.0 ** -min(mpmath.mp.prec, 1000)
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
        log_up = floats.log_total * LOOSE + ETA  # L^ is within 3u L of L
        ledger.add(log_probs, 4 * u * (log_up + floats.s * LOOSE + 2 * min(1.0, log_up))
                   + FLOOR)
        if not want_grad:
            return mpfs_of(log_probs), []
        if not floats.s.any():  # equal logits: p_c = 1 / C, the gradient is exactly 0
            ledger.exact(classes)
            return mpfs_of(log_probs), [ZERO] * classes
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
    # Past 1000 bits the row is not certifiable (the ledger has failed, its bounds are
    # unused); the cap keeps u a normal float64, so they compute without 0 * inf.
    u = 2.0 ** -min(mpmath.mp.prec, 1000)
    floats = found.floats
    classes = list(coefficients)
    a_up = np.abs(nearest_floats(list(coefficients.values()))) * LOOSE + ETA
    log_up = floats.log_total * LOOSE + ETA  # L^ is within 3u L of L
    terms_up = log_up + floats.s[classes] * LOOSE + 2 * min(1.0, log_up)
    loss_bound = 16 * u * float(np.sum(a_up * terms_up)) + FLOOR
    with gmpy2.context(precision=mpmath.mp.prec):
        loss = gmpy2.fsum([ac * (found.log_total - found.shifted[c])
                           for c, ac in coefficients.items()])
        if not want_grad:
            return loss, loss_bound, []
        exact_weight = exact_total(list(coefficients.values()))  # W*, exactly
        s = None if scale is None else mpfr_of(scale)
        factor = gmpy2.mpfr(exact_weight) / found.total
        if s is not None:
            factor = factor * s
        grads = [e * factor for e in found.exps]  # a_c = 0: e_c W / S, no subtraction
        for c, ac in coefficients.items():  # (e_c R_c - a_c Q_c) / S (module docstring)
            rest = found.tail if c == found.top else found.total - found.exps[c]
            terms = (found.exps[c] * (exact_weight - ac), ac * rest)
            grad = (terms[0] - terms[1]) / found.total
            grads[c] = grad if s is None else grad * s
    if ledger.complete:
        size = 1 if s is None else s
        p_up = floats.e / floats.total * LOOSE + ETA
        others_up, rest_up = _gradient_factors(found, coefficients)
        nearest = nearest_floats(grads)
        g_up = np.abs(nearest) * LOOSE + ETA
        bound = (round_up(32 * u, size) * (p_up * others_up + rest_up) + 16 * u * g_up
                 + FLOOR)
        with gmpy2.context(precision=mpmath.mp.prec):
            ledger.add(grads, bound, nearest)
    return loss, loss_bound, mpfs_of(grads)


def exact_total(values: list[Any]) -> Any:
    """The sum of MPFR numbers, exactly: at the precision that spans all their bits (plus the
    carries of ``len(values)`` additions), where MPFR's correctly rounded sum is exact."""
    if not values:
        return gmpy2.mpfr(0)
    parts = [v.as_mantissa_exp() for v in values if v]
    if not parts:
        return gmpy2.mpfr(0)
    high = max(int(exp) + int(abs(man)).bit_length() for man, exp in parts)
    low = min(int(exp) for _, exp in parts)
    with gmpy2.context(precision=high - low + len(parts).bit_length() + 2):
        return gmpy2.fsum(values)


def _gradient_factors(found: Exponentials, coefficients: dict[int, Any]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The bound's ingredients by class, rounded up: ``sum_{j != c} |a_j|`` and
    ``|a_c| q_c`` (``q_c = Q_c / S``: ``T / S`` at the maximum, 1 bounds it elsewhere)."""
    classes = len(found.exps)
    with gmpy2.context(precision=64, round=gmpy2.RoundUp):
        magnitude = exact_total([abs(ac) for ac in coefficients.values()])
        others = np.full(classes, float(magnitude + 0))
        rest = np.zeros(classes)
        top_share = found.tail / found.total
        for c, ac in coefficients.items():
            others[c] = float(magnitude - abs(ac))
            rest[c] = float(abs(ac) * (top_share if c == found.top else 1))
    return others * LOOSE + ETA, rest * LOOSE + ETA


def reduce_losses(problem: Problem, losses: list[Any], bounds: np.ndarray, denominator: mpf,
                  ledger: Ledger) -> np.ndarray:
    """The reduced loss on MPFR numbers (``losses``: MPFR numbers, and mpf zeros for the rows
    that weigh nothing; ``bounds``: their E(l_r)), its bound in the ledger; for a ledger that
    is complete and a mean whose divisor is not zero."""
    # Past 1000 bits the row is not certifiable (the ledger has failed, its bounds are
    # unused); the cap keeps u a normal float64, so they compute without 0 * inf.
    u = 2.0 ** -min(mpmath.mp.prec, 1000)
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
