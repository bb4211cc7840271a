"""Exact values held as unevaluated sums of two float64 arrays, for the vectorised oracle's
large results.

``ExactPairs(hi, lo)`` stands for the exact values ``hi + lo`` (each element's exact sum, not
its float64 rounding), with ``hi = RN(hi + lo)`` elementwise, so ``hi`` *is* the float64
nearest to each value (``reference.formats.nearest_float64`` returns it without a loop).  It
stands in for a numpy array of ``mpf`` where building millions of ``mpf`` objects would cost
more than computing them: ``numpy.asarray(pairs, dtype=object)`` (and ``mpf()``) builds them,
exactly, on demand.  ``reference/vectorised.py`` returns them for quantities of more than
``MATERIALIZE`` elements; smaller ones are plain ``mpf`` arrays as elsewhere.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import mpmath
import numpy as np
from mpmath.libmp import from_float, round_nearest

MATERIALIZE = 1 << 14  # quantities up to this many elements are returned as mpf arrays


class ExactPairs:
    """The exact values ``hi + lo`` (float64 arrays of one shape, ``hi = RN(hi + lo)``)."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray) -> None:
        if hi.shape != lo.shape:
            raise ValueError(f"hi shaped {hi.shape}, lo {lo.shape}")
        self.hi = np.asarray(hi, dtype=np.float64)
        self.lo = np.asarray(lo, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.hi.shape)

    @property
    def ndim(self) -> int:
        return self.hi.ndim

    @property
    def size(self) -> int:
        return int(self.hi.size)

    def __len__(self) -> int:
        return len(self.hi)

    def reshape(self, *shape: Any) -> ExactPairs:
        return ExactPairs(self.hi.reshape(*shape), self.lo.reshape(*shape))

    @cached_property
    def _mpf(self) -> np.ndarray:
        flat = np.empty(self.size, dtype=object)
        add, make = mpmath.fadd, mpmath.mp.make_mpf

        def exact(value: float) -> mpmath.mpf:
            return make(from_float(value, 53, round_nearest))  # 53 bits: exact

        for i, (h, low) in enumerate(zip(self.hi.reshape(-1).tolist(),
                                         self.lo.reshape(-1).tolist())):
            flat[i] = exact(h) if low == 0 else add(exact(h), exact(low), exact=True)
        return flat.reshape(self.shape)

    def mpf(self) -> np.ndarray:
        """The exact values as a numpy array of ``mpf`` (built once)."""
        return self._mpf

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if dtype is not None and np.dtype(dtype) != np.dtype(object):
            raise TypeError("ExactPairs converts to an object array of mpf only "
                            "(its float64 view is .hi)")
        return self._mpf

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ExactPairs) and np.array_equal(self.hi, other.hi)
                and np.array_equal(self.lo, other.lo))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ExactPairs(shape={self.shape})"


def exact_values(hi: np.ndarray, lo: np.ndarray) -> np.ndarray | ExactPairs:
    """``hi + lo`` as an mpf array when small (``MATERIALIZE``), else as ``ExactPairs``."""
    pairs = ExactPairs(hi, lo)
    return pairs if pairs.size > MATERIALIZE else pairs.mpf()
