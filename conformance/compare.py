"""Comparison rules: how a framework's value is measured against the oracle and judged.

For every element, with ``e`` the oracle's (high-precision) value and ``a`` the framework's:

* **special values** are compared first and on their own: ``a`` must be NaN exactly where
  ``e`` is NaN and the same infinity where ``e`` is infinite.  A mismatch is a
  ``special-value`` discrepancy and never enters an error figure.
* **errors** of the other elements, computed exactly in mpmath:
  ``abs = |a - e|``, ``rel = abs / |e|`` and ``ulp = abs / ulp_dtype(e)``, the distance in
  units in the last place of the dtype under test (``reference.formats.ulp``).
* **the verdict**: every element must satisfy ``abs <= bound`` with

      bound = K * u * (log2(C) + 1) * (1 + |e|)

  where ``u = 2**-p`` is the unit roundoff of the dtype and ``C`` the number of classes.
  ``log2(C) + 1`` is the growth of rounding errors in a blocked or pairwise sum of ``C``
  exponentials; ``1 + |e|`` makes the bound absolute near zero (where a stable evaluation
  of ``logsumexp - x_t`` legitimately returns 0 for a loss far below ``u``) and relative for
  large values.  The bound depends on the *result*, never on the size of the logits, so
  adding a constant to every logit does not loosen it.  ``K = 4`` leaves room for the few
  roundings outside the sum (exp, log, the subtraction, the reduction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from reference.formats import exact, get_format, ulp

K = 4
NUMERIC = "numeric"
SPECIAL_VALUE = "special-value"
BEHAVIOUR = "behaviour"


@dataclass(frozen=True)
class Comparison:
    """The verdict on one quantity (output or gradient) of one run."""

    passed: bool
    kind: str | None  # None when passed; NUMERIC or SPECIAL_VALUE otherwise
    max_abs_error: float
    max_rel_error: float
    max_ulp_error: float
    worst_index: tuple[int, ...] | None
    message: str


def bound(exact_value: mpf, dtype: str, classes: int) -> mpf:
    """The largest absolute error allowed for an element whose exact value is ``exact_value``."""
    unit_roundoff = mpf(get_format(dtype).unit_roundoff)
    return K * unit_roundoff * (mpmath.log(max(classes, 1), 2) + 1) * (1 + abs(exact_value))


def compare(expected: np.ndarray, actual: np.ndarray, dtype: str, classes: int) -> Comparison:
    """Judge ``actual`` (floats) against ``expected`` (mpf) elementwise; see the module doc."""
    if tuple(np.shape(actual)) != tuple(np.shape(expected)):
        return Comparison(False, NUMERIC, math.inf, math.inf, math.inf, None,
                          f"shape {tuple(np.shape(actual))}, expected {tuple(np.shape(expected))}")
    fmt = get_format(dtype)
    worst: tuple[float, tuple[int, ...] | None] = (-1.0, None)
    max_abs = max_rel = max_ulp = 0.0
    specials, outside = [], 0
    with mpmath.workprec(256):
        for index in np.ndindex(np.shape(expected)):
            e, a = expected[index], float(actual[index])
            if _special(e) or _special(a):
                if not _same_special(e, a):
                    specials.append((index, e, a))
                continue
            error = abs(exact(a) - e)
            max_abs = max(max_abs, float(error))
            max_rel = max(max_rel, _relative(error, e))
            ulps = float(error / ulp(e, fmt))
            max_ulp = max(max_ulp, ulps)
            excess = float(error / bound(e, dtype, classes))
            outside += excess > 1
            if excess > worst[0]:
                worst = (excess, index)
    if specials:
        index, e, a = specials[0]
        message = (f"{len(specials)} special-value mismatch(es); first at {index}: "
                   f"expected {_show(e)}, got {_show(a)}")
        return Comparison(False, SPECIAL_VALUE, max_abs, max_rel, max_ulp, index, message)
    passed = outside == 0
    message = (
        f"max error {max_ulp:.3g} ulp ({max_abs:.3g} abs); worst element at {worst[1]} uses "
        f"{max(worst[0], 0):.3g} of its bound"
    )
    if not passed:
        message = f"{outside} element(s) outside the bound; {message}"
    return Comparison(passed, None if passed else NUMERIC, max_abs, max_rel, max_ulp,
                      worst[1], message)


def _special(value: Any) -> bool:
    return bool(mpmath.isnan(value) or mpmath.isinf(value))


def _same_special(e: Any, a: Any) -> bool:
    if mpmath.isnan(e) or mpmath.isnan(a):
        return bool(mpmath.isnan(e) and mpmath.isnan(a))
    return bool(e == a)


def _relative(error: mpf, e: mpf) -> float:
    if e == 0:
        return 0.0 if error == 0 else math.inf
    return float(error / abs(e))


def _show(value: Any) -> str:
    return repr(float(value))
