"""Double-double arithmetic on numpy arrays, with rigorous error bounds: the vectorised
oracle's number system (``reference/vectorised.py``).

A *double-double* (dd) is a pair of float64 arrays ``(hi, lo)`` standing for the exact sum
``hi + lo``, normalised so that ``hi = RN(hi + lo)`` (every result here leaves a Fast2Sum or
2Sum, which guarantees it).  The arithmetic is that of Joldes, Muller and Popescu, "Tight and
rigorous error bounds for basic building blocks of double-word arithmetic", ACM TOMS 44(2),
2017 (JMP below), with u = 2**-53, round to nearest, and no FMA:

* ``two_sum`` (Knuth) and ``fast_two_sum`` (Dekker, |a| >= |b| or a = 0) are error-free:
  ``s + t = a + b`` exactly, whatever the magnitudes (an addition that underflows is exact);
* ``two_prod`` (Dekker, with Veltkamp's split) is error-free, ``p + e = a b`` exactly, when
  ``|a|, |b| <= 2**996`` (the split does not overflow) and ``|a b| >= 2**-969`` (the error
  term, a multiple of 2**(e_a + e_b - 105), does not underflow);
* ``dd_add_fp`` (JMP Algorithm 4, DWPlusFP): relative error <= 2u**2;
* ``dd_add`` (JMP Algorithm 6, AccurateDWPlusDW): relative error <= 3u**2 + 13u**3;
* ``dd_mul_fp`` (JMP Algorithm 7, DWTimesFP1): relative error <= 1.5u**2 + 4u**3;
* ``dd_mul`` (JMP Algorithm 10, DWTimesDW1): relative error <= 7u**2.

``BOUND = 2**-100 = 64 u**2`` is used for every one of them: it is above each published
bound with room to spare for what underflow can add inside an algorithm whose *result* is
checked to be 0 or at least ``TINY = 2**-900`` in magnitude (a rounding below float64's
normal range costs at most 2**-1075 absolutely, under 2**-170 relatively), which is what
the callers check (``tiny``).  Inputs are kept below 2**600 in magnitude by the callers' gates,
far from overflow.

Error bounds travel as float64 arrays ``rad`` (absolute bounds of the distance between a dd
value and the exact quantity it approximates, *midpoint-radius* arithmetic).  ``radius_*``
add one operation's bound to its operands': for ``z = x op y``,
``|z^ - z| <= |x^ op y^ - x op y| + BOUND |x^ op y^|``, the first term from the operands'
radii (for a product ``|x^| r_y + |y^| r_x + r_x r_y``), the second with ``|x^ op y^|``
bounded by ``|hi_z| (1 + 2**-50)``.  Each radius is a sum of at most five products of
non-negative float64 numbers, so it is computed with at most eight roundings to nearest:
multiplying it by ``LOOSE = 1 + 2**-50`` and adding ``FLOOR`` (the underflow of those products)
makes it an upper bound of the exact expression.

``exp_dd`` evaluates exp on dd arguments in [-600, 0] with a relative error bound derived in
its docstring (table of 2**(j/1024) plus a degree-8 Taylor polynomial), never through
numpy's ``exp``; ``tests/test_oracle_vectorised.py`` checks every primitive's bound against
mpmath on random and hard arguments.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import mpmath
import numpy as np

U = 2.0 ** -53
BOUND = 2.0 ** -100  # one dd operation's relative error (module docstring)
LOOSE = 1 + 2.0 ** -50  # a float64 radius computed with at most eight roundings, times this
FLOOR = 2.0 ** -1070  # the underflow of a radius' own products
TINY = 2.0 ** -900  # below this (and not 0), a product's error terms may underflow
SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's split

Array = np.ndarray


def two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``s = RN(a + b)`` and ``t = a + b - s`` exactly (Knuth's 2Sum)."""
    s = a + b
    a1 = s - b
    b1 = s - a1
    return s, (a - a1) + (b - b1)


def fast_two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``s = RN(a + b)`` and ``t = a + b - s`` exactly, for ``|a| >= |b|`` (Dekker)."""
    s = a + b
    return s, b - (s - a)


def _split(a: Array) -> tuple[Array, Array]:
    c = SPLITTER * a
    high = c - (c - a)
    return high, a - high


def two_prod(a: Array, b: Array) -> tuple[Array, Array]:
    """``p = RN(a b)`` and ``e = a b - p`` exactly (Dekker; the module docstring's range)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def dd_add_fp(xh: Array, xl: Array, y: Array) -> tuple[Array, Array]:
    """``(xh + xl) + y`` (JMP Algorithm 4)."""
    sh, sl = two_sum(xh, y)
    return fast_two_sum(sh, xl + sl)


def dd_add(xh: Array, xl: Array, yh: Array, yl: Array) -> tuple[Array, Array]:
    """``(xh + xl) + (yh + yl)`` (JMP Algorithm 6)."""
    sh, sl = two_sum(xh, yh)
    th, tl = two_sum(xl, yl)
    vh, vl = fast_two_sum(sh, sl + th)
    return fast_two_sum(vh, tl + vl)


def dd_mul_fp(xh: Array, xl: Array, y: Array) -> tuple[Array, Array]:
    """``(xh + xl) y`` (JMP Algorithm 7)."""
    ch, cl1 = two_prod(xh, y)
    th, tl1 = fast_two_sum(ch, xl * y)
    return fast_two_sum(th, tl1 + cl1)


def dd_mul(xh: Array, xl: Array, yh: Array, yl: Array) -> tuple[Array, Array]:
    """``(xh + xl) (yh + yl)`` (JMP Algorithm 10)."""
    ch, cl1 = two_prod(xh, yh)
    return fast_two_sum(ch, cl1 + (xh * yl + xl * yh))


def tiny(h: Array) -> bool:
    """Whether some non-zero value lies below ``TINY`` (a product's bound may not hold)."""
    magnitude = np.abs(h)
    return bool(np.any((magnitude < TINY) & (magnitude != 0)))


def radius_sum(rx: Array | float, ry: Array | float, zh: Array) -> Array:
    """The radius of ``z = x + y`` from the operands' radii (module docstring)."""
    return (rx + ry + BOUND * LOOSE * np.abs(zh)) * LOOSE + FLOOR


def radius_product(xh: Array | float, rx: Array | float, yh: Array | float, ry: Array | float,
                   zh: Array) -> Array:
    """The radius of ``z = x y`` (``xh``, ``yh``: the operands' high parts; their low parts
    are at most 2**-53 of them, which ``LOOSE``'s 2**-50 covers once more)."""
    ax, ay = np.abs(xh) * LOOSE, np.abs(yh) * LOOSE
    return (ax * ry + ay * rx + rx * ry + BOUND * LOOSE * np.abs(zh)) * LOOSE + FLOOR


# --- exp -----------------------------------------------------------------------------------

TABLE_BITS = 10  # 2**(j / 1024), j = 0 .. 1023
EXP_MIN = -600.0  # exp_dd's domain is [EXP_MIN, 0]: results stay above 2**-866


@cache
def _constants() -> dict[str, Any]:
    """The table and constants of ``exp_dd``, from mpmath at 256 bits, each rounded to the
    nearest dd (``hi = RN(v)``, ``lo = RN(v - hi)``: ``|hi + lo - v| <= 2**-106 |v|``)."""
    with mpmath.workprec(256):
        size = 1 << TABLE_BITS
        values = [mpmath.power(2, mpmath.mpf(j) / size) for j in range(size)]
        table_hi = np.array([float(v) for v in values])
        table_lo = np.array([float(v - mpmath.mpf(float(v))) for v in values])
        step = mpmath.ln2 / size  # n * step is removed from the argument
        # step = c1 + c2 + c3: c1 keeps 32 bits, so n c1 is exact for |n| < 2**21
        c1 = float(mpmath.ldexp(mpmath.floor(mpmath.ldexp(step, 40)), -40))
        c2 = float(step - c1)
        c3 = float(step - c1 - c2)
        c3_error = float(abs(step - c1 - c2 - c3))
        inverse = [mpmath.mpf(1) / mpmath.factorial(k) for k in range(9)]
        coefficients_hi = np.array([float(c) for c in inverse])
        coefficients_lo = np.array([float(c - mpmath.mpf(float(c))) for c in inverse])
        return {"table_hi": table_hi, "table_lo": table_lo, "c1": c1, "c2": c2, "c3": c3,
                "c3_error": c3_error, "inv_step": float(size / mpmath.ln2),
                "k_hi": coefficients_hi, "k_lo": coefficients_lo}


def exp_relative_bound(r_max: float) -> float:
    """The relative error bound of ``exp_dd`` when every reduced argument has |r| <= r_max
    (``exp_dd``'s docstring derives each term)."""
    if not r_max <= 2.0 ** -11:
        return np.inf
    truncation = r_max ** 9 / 362880 * 1.001  # |r|**9 / 9! e**|r|
    tail = r_max ** 5 * 2.0 ** -55  # the float64 tail's error, times r**5
    horner = 11 * BOUND * 1.001  # gamma_11 * sum |c_k| |r|**k <= 11 BOUND e**|r|, / exp(r)
    reduction = 2.0 ** -105  # the reduced argument's error, and r_lo**2 / 2
    table = 2.0 ** -105  # the table entry's rounding, and the last product's
    return (truncation + tail + horner + reduction + table + 2 * BOUND) * 1.01


def exp_dd(sh: Array, sl: Array) -> tuple[Array, Array, float]:
    """exp(sh + sl) for dd arguments in [EXP_MIN, 0]; returns ``(hi, lo, rel)`` with
    ``|hi + lo - exp(s)| <= rel exp(s)`` (and ``<= rel (1 + 2**-50) |hi|``).

    Derivation.  ``n = rint(sh 1024 / ln 2)`` (any integer would do: the bound below uses the
    reduced arguments as computed), ``n = 1024 k + j``, and ``r = s - n step`` with
    ``step = ln2 / 1024 = c1 + c2 + c3 (+ 2**-160 or so)``: ``sh - n c1`` is computed exactly
    (``n c1`` is exact, 2Sum), then ``sl`` and ``-n c2`` (exact, 2Prod) are added in dd, and
    ``-RN(n c3)``; so ``r^ = r + d`` with ``|d| <= 3 BOUND |r| + 2**-53 |n c3| + |n| c3_error``,
    below 2**-106 |r| + 2**-125 for |n| < 2**20.  ``r^ = rh + rl`` with ``|rl| <= 2**-53 |rh|``.
    Then ``exp(s) = 2**k 2**(j/1024) exp(rh) exp(rl)`` exactly, and:

    * ``exp(rh) = P(rh) + R``, P the degree-8 Taylor polynomial, ``|R| <= |rh|**9 / 9! e**|rh|``
      (Lagrange's remainder), below 2**-118 for |rh| <= 2**-11 (here |rh| <= ln2/2048 + 2**-50);
    * P is evaluated by Horner's rule: ``q = c5 + c6 rh + c7 rh**2 + c8 rh**3`` in float64
      (error below 2**-55 |q|... times rh**5: 2**-55 |rh|**5 overall, since q <= 1/119), then
      five dd steps ``t <- c_k + rh t`` (k = 4 .. 0), each of two dd operations with relative
      error <= BOUND and constants within 2**-106 of 1/k!: by Higham's Horner analysis the
      result is within gamma_11 sum_k |c_k| |rh|**k <= 11 BOUND e**|rh| (1 + 11 BOUND) of P(rh);
    * ``exp(rl) = 1 + rl + rl**2/2 e**|rl|``: ``t (1 + rl)`` is computed as ``t + RN(th rl)``
      (one DWPlusFP), errors below 2**-106 |t|;
    * the table entry is within 2**-106 of 2**(j/1024); the dd product adds BOUND, the
      DWPlusFP above another; the power of two is exact for ``hi`` (results stay above
      2**-866) and costs ``lo`` at most 2**-1075 (2**-209 relatively).

    The relative errors add up (to first order; the factor 1.01 covers the second-order
    products) to ``exp_relative_bound(max |rh|)``.  That the reduction's error ``d`` enters
    relatively follows from ``exp(r + d) = exp(r) e**d``, |d| < 2**-100.
    """
    k_ = _constants()
    n = np.rint(sh * k_["inv_step"])
    high, low = two_sum(sh, -n * k_["c1"])  # n c1: exact (c1 has 32 bits, |n| < 2**20)
    rh, rl = dd_add_fp(high, low, sl)
    p2, e2 = two_prod(n, np.full_like(n, k_["c2"]))
    rh, rl = dd_add(rh, rl, -p2, -e2)
    rh, rl = dd_add_fp(rh, rl, -(n * k_["c3"]))
    r_max = float(np.max(np.abs(rh))) * LOOSE if rh.size else 0.0
    ch, cl = k_["k_hi"], k_["k_lo"]
    q = ch[5] + rh * (ch[6] + rh * (ch[7] + rh * ch[8]))
    th, tl = dd_mul_fp(q, np.zeros_like(q), rh)
    th, tl = dd_add(th, tl, np.full_like(th, ch[4]), np.full_like(th, cl[4]))
    for c in (3, 2, 1, 0):
        th, tl = dd_mul_fp(th, tl, rh)
        if cl[c] == 0:  # 1/2, 1, 1: exact float64 constants
            th, tl = dd_add_fp(th, tl, np.full_like(th, ch[c]))
        else:
            th, tl = dd_add(th, tl, np.full_like(th, ch[c]), np.full_like(th, cl[c]))
    th, tl = dd_add_fp(th, tl, th * rl)
    j = (n.astype(np.int64) % (1 << TABLE_BITS))
    k = (n.astype(np.int64) - j) >> TABLE_BITS
    eh, el = dd_mul(th, tl, k_["table_hi"][j], k_["table_lo"][j])
    return np.ldexp(eh, k), np.ldexp(el, k), exp_relative_bound(r_max)


# --- exp, the quick tier ---------------------------------------------------------------------

QUICK_BITS = 14  # 2**(j / 16384), j = 0 .. 16383


@cache
def _quick_constants() -> dict[str, Any]:
    """The table and constants of ``exp_quick``.  ``ln2 / 16384 = c1 + c2 + c3`` (mpmath at
    256 bits) with 29-bit c1 and c2 (``n c1``, ``n c2`` exact for |n| < 2**24, which
    |s| <= 600 gives) and c3 its float64 rest (below 2**-72).  The table
    ``2**(j/16384) = 2 exp((j - 16384) ln2 / 16384)`` comes from ``exp_dd`` itself (a few
    milliseconds, against half a second for mpmath), on arguments ``m c1 + m c2 + m c3``
    summed in dd (within 2**-104 absolutely, so relatively for the exponential), so each entry
    is within ``table_rel = exp_dd's bound + 2**-104`` of its value."""
    size = 1 << QUICK_BITS
    with mpmath.workprec(256):
        step = mpmath.ln2 / size
        c1 = mpmath.ldexp(mpmath.floor(mpmath.ldexp(step, 43)), -43)
        c2 = mpmath.ldexp(mpmath.floor(mpmath.ldexp(step - c1, 72)), -72)
        c3 = float(step - c1 - c2)
    m = np.arange(size, dtype=np.float64) - size
    high, low = two_sum(m * float(c1), m * float(c2))
    high, low = dd_add_fp(high, low, m * c3)
    th, tl, rel = exp_dd(high, low)
    return {"table_hi": 2 * th, "table_lo": 2 * tl, "table_rel": rel + 2.0 ** -104,
            "c1": float(c1), "c2": float(c2), "c3": c3, "inv_step": float(size / mpmath.ln2)}


def exp_quick_relative_bound(r_max: float, rl_max: float) -> float:
    """The relative error bound of ``exp_quick`` when its reduced arguments have
    ``|rh| <= r_max`` and ``|rl| <= rl_max`` (``exp_quick``'s docstring); about 2**-80."""
    if not r_max <= 2.0 ** -14:
        return np.inf
    reduction = 2.0 ** -93  # the float64 sum of the reduction's small terms
    polynomial = 8 * U * r_max ** 2 + 2 * r_max * rl_max + 2.0 ** -104
    truncation = r_max ** 6 / 720 * 1.001
    table = float(_quick_constants()["table_rel"]) + 2 * BOUND
    return (reduction + polynomial + truncation + table) * 1.01


def exp_quick(sh: Array, sl: Array) -> tuple[Array, Array, float]:
    """exp(sh + sl) for dd arguments in [EXP_MIN, 0], to about 2**-80 (the first tier:
    elements it leaves undecided are redone with ``exp_dd``); returns ``(hi, lo, rel)``
    with ``|hi + lo - exp(s)| <= rel exp(s)``.

    Derivation.  ``n = rint(sh 16384 / ln 2)``, ``n = 16384 k + j``; ``sh - n c1 - n c2`` is
    exact (two 2Sums; ``n c1``, ``n c2`` exact), the small rest ``low + low2 + sl - RN(n c3)``
    (each term below 2**-43) is summed in float64 with an error below 2**-93, and
    ``r^ = rh + rl`` (Fast2Sum) is ``r + d``, |d| <= 2**-93, |rh| <= ln2/32768 + 2**-60.
    ``exp(r) = 1 + r + r**2/2 + r**3/6 + r**4/24 + r**5/120 + R``, ``|R| <= |r|**6/720 e**|r|``;
    ``1 + rh`` is a 2Sum (exact), ``q = rl + rh**2 (1/2 + rh (1/6 + rh (1/24 + rh/120)))``
    in float64 errs by at most ``8u rh**2`` (seven roundings and the coefficients'), and using
    ``rh`` for ``r`` in the powers costs at most ``2 |rh| |rl|``; one Fast2Sum is exact; the
    table entry (``_quick_constants``) and the dd product add ``table_rel + 2 BOUND``.
    """
    k_ = _quick_constants()
    n = np.rint(sh * k_["inv_step"])
    high, low = two_sum(sh, -n * k_["c1"])
    high, low2 = two_sum(high, -n * k_["c2"])
    rest = (low + low2) + (sl - n * k_["c3"])
    rh, rl = fast_two_sum(high, rest)
    if rh.size:
        r_max = float(np.max(np.abs(rh))) * LOOSE
        rl_max = float(np.max(np.abs(rl))) * LOOSE
    else:
        r_max = rl_max = 0.0
    q = rl + rh * rh * (0.5 + rh * (1 / 6 + rh * (1 / 24 + rh * (1 / 120))))
    ph, pl = two_sum(np.ones_like(rh), rh)
    ph, pl = fast_two_sum(ph, pl + q)
    index = n.astype(np.int64)
    j = index & ((1 << QUICK_BITS) - 1)
    k = (index - j) >> QUICK_BITS
    eh, el = dd_mul(ph, pl, k_["table_hi"][j], k_["table_lo"][j])
    return np.ldexp(eh, k), np.ldexp(el, k), exp_quick_relative_bound(r_max, rl_max)
