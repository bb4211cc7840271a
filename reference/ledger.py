"""The one-pass certificate: a-priori error bounds checked against rounding intervals.

A pass (``reference/compute.py``) hands the ledger, for each element it computes on MPFR
numbers, the value ``v`` and a bound ``E`` of ``|v - exact|`` (derived in
``reference/mpfr.py``), or says that an element is known exactly, or that some element has
no bound (then the ledger certifies nothing).  ``Ledger.certifies`` decides whether every
element, rounded to float64 and to the dtype under test, rounds as its exact value does:

With ``f`` the float64 nearest to ``v`` and ``r = v - f`` (exact in MPFR), ``v`` is
*certified* when ``[v - E, v + E]`` lies inside the open rounding interval of ``f``:
``2 (max(+-r, 0) + E) (1 + 2**-50) < `` the gap from ``f`` to its neighbour on either side
(doubled values, so that no subnormal gap is halved), and ``f != 0`` (a value near zero could
have either sign; an exact zero with ``E > 0`` is never certified).  Every boundary of the
coarser formats (float32/16, bfloat16 midpoints, their overflow threshold) is itself a
float64, and that interval holds no float64 but ``f``, so the dtype rounding is then stable
too, unless ``f`` is such a boundary (``round_float64_array`` flags them; the overflow
threshold is the midpoint above ``max_finite``).  Elements known exactly (the zeros of rows
that weigh nothing, softmax's gradient) need no bound.  When every element of a problem is
certified, the result of one pass is returned (``reference/certify.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.formats import FloatFormat, round_float64_array


def nearest_floats(values: list[Any]) -> np.ndarray:
    """MPFR numbers rounded to the nearest float64 (MPFR rounds subnormals correctly)."""
    return np.fromiter((float(v) for v in values), dtype=np.float64, count=len(values))


class Ledger:
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
        """MPFR values, their bounds and (when known) ``nearest_floats(values)``; call within the
        working precision's context, where ``v - f`` is exact (it fits in the bits of ``v``
        below float64's)."""
        if not self.complete:
            return
        if nearest is None:
            nearest = nearest_floats(values)
        remainders = np.fromiter((float(v - f) for v, f in zip(values, nearest.tolist())),
                                 dtype=np.float64, count=len(values))
        self._parts.append((nearest, remainders, np.asarray(bounds, dtype=np.float64)))

    def certifies(self, fmt: FloatFormat) -> bool:
        """Whether every element rounds, to float64 and to ``fmt``, as its exact value does
        (the module docstring's rule)."""
        if not self.complete:
            return False
        if not self._parts:
            return True
        f, r, e = (np.concatenate(part) for part in zip(*self._parts))
        return decided(f, r, e, fmt)


def decided_mask(f: np.ndarray, r: np.ndarray, e: np.ndarray, fmt: FloatFormat,
                 sided: bool = False) -> np.ndarray:
    """Elementwise, the module docstring's rule: whether the value ``f + r`` (``f`` its
    nearest float64, ``r`` the rest, rounded to float64) with error bound ``e`` rounds, to
    float64 and to ``fmt``, as the exact value does (``e == 0``: known exactly).

    ``sided``: also accept an ``f`` that is a rounding boundary of ``fmt`` when the exact
    value is known to lie strictly on one side of it (``|r| > e``): its rounding into ``fmt``
    is then that of every number between ``f`` and its float64 neighbour on that side, which
    a reader of the exact value finds (``round_float64_array``'s midpoints are redone from
    it)."""
    slack = 1 + 2.0 ** -50  # r and the sums, each rounded to float64
    with np.errstate(over="ignore", invalid="ignore"):
        up = np.nextafter(f, np.inf) - f
        down = f - np.nextafter(f, -np.inf)
        inside = ((2 * (np.maximum(r, 0) + e) * slack < up)
                  & (2 * (np.maximum(-r, 0) + e) * slack < down)
                  & (f != 0) & (np.abs(f) < np.finfo(np.float64).max))
    _rounded, boundary = round_float64_array(f, fmt)
    if sided:
        boundary &= ~(np.abs(r) > e * slack)
    return (e == 0) | (inside & ~boundary)


def decided(f: np.ndarray, r: np.ndarray, e: np.ndarray, fmt: FloatFormat,
            sided: bool = False) -> bool:
    """Whether ``decided_mask`` holds for every element."""
    return bool(np.all(decided_mask(f, r, e, fmt, sided)))
