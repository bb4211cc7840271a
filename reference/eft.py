"""Error-free transformations on numpy arrays: exact products and certified sums of float64s.

``reference/linear.py`` needs sums of millions of products (the logits ``x . W_c``, the
gradients ``dz @ W`` and ``dz^T @ x``) far more accurately than float64 arithmetic gives, and
too many of them for MPFR one number at a time.  Two classical error-free transformations
(Dekker 1971; Knuth, TAOCP vol. 2, 4.2.2; Ogita, Rump and Oishi, "Accurate sum and dot
product", SIAM J. Sci. Comput. 26(6), 2005) do it with vectorised float64 operations, and
every step below is either exact or carries a rigorous bound.  ``u = 2**-53``, ``eta =
2**-1074`` (float64's smallest subnormal); no step overflows for the inputs admitted
(``MAX_MAGNITUDE``).

* **Exact products** (``product_terms``).  The product of two floats with ``a`` and ``b``
  significant bits is a float64 when ``a + b <= 53`` (and it does not underflow).  A float of
  more bits is cut by Veltkamp's split (``split``: ``c = (2**27 + 1) x``, ``hi = c - (c - x)``,
  ``lo = x - hi``) into ``hi`` of at most 26 bits and ``lo`` of at most 26 bits, exactly
  (``hi + lo = x``; Dekker's theorem for ``p = 53, s = 27``).  So ``x * y`` is the exact sum
  of one, two or four float64 products; an underflowing product errs by at most ``eta / 2``,
  which the bounds below add for every product (``ETA`` per term).
* **Certified sums** (``SumOfTerms``).  Terms are added pairwise in a tree, each addition by
  TwoSum (``s = a + b``, ``b' = s - a``, ``e = (a - (s - b')) + (b - b')``), which returns the
  rounded sum ``s`` and its exact error ``e`` (``s + e = a + b`` exactly, for any floats,
  subnormal ones included).  So ``sum(terms) = s_root + sum(e)`` exactly.  The ``K - 1``
  errors of ``K`` terms are then added in floating point, in whatever order numpy uses.
  With ``L`` levels, node sums at one level add up in magnitude to at most
  ``(1 + u)**L sum|terms|`` and each ``|e| <= u |s|``, so ``sum|e| <= u L (1 + u)**L
  sum|terms|``; any order of adding ``K - 1`` numbers errs by at most ``gamma_{K-2} sum|e|``
  (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 4.2), ``gamma_n =
  n u / (1 - n u)``.  The value ``high + low`` (``TwoSum(s_root, fl(sum e))``, exact) is
  therefore within

      bound = 1.02 K L u**2 fl(sum|terms|) + K eta

  of the exact sum, for ``K u <= 2**-20`` (the factor 1.02 covers ``gamma``'s denominator,
  ``(1 + u)**L``, the rounding of ``fl(sum|terms|)`` and of the bound's own product; ``K eta``
  the underflow of the products that made the terms).  About ``2**-106 K L`` relative to
  ``sum|terms|``: some 30 bits below float64's own rounding for the sizes used here.

Terms come in chunks (``SumOfTerms.add``, arrays shaped ``(k, *shape)``) so that memory stays
bounded; the chunks' trees are joined by one more tree, counted in ``K`` and ``L``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

U = 2.0 ** -53
ETA = 2.0 ** -1074
SPLITTER = 2.0 ** 27 + 1
HALF_BITS = 26  # the bits of each half of a split float64
# Veltkamp's split multiplies by 2**27 + 1: values below this never overflow there, and the
# products of two of them stay far from float64's overflow.
MAX_MAGNITUDE = 2.0 ** 480


def significant_bits(values: np.ndarray) -> int:
    """The most significant bits any finite non-zero element of ``values`` uses (1 for none):
    24 for float32 values, 8 for bfloat16, 53 at most."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    flat = flat[np.isfinite(flat) & (flat != 0)]
    if not flat.size:
        return 1
    mantissas = np.ldexp(np.abs(np.frexp(flat)[0]), 53).astype(np.int64)  # exact integers
    lowest = (mantissas & -mantissas).astype(np.float64)  # each one's lowest set bit
    return 53 - int(np.frexp(lowest)[1].min()) + 1


def split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split: ``hi + lo == values`` exactly, each half of at most 26 bits
    (for ``|values| < MAX_MAGNITUDE``)."""
    scaled = values * SPLITTER
    high = scaled - (scaled - values)
    return high, values - high


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: ``s = fl(a + b)`` and ``e`` with ``s + e == a + b`` exactly."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def product_terms(a: np.ndarray, a_bits: int, b: np.ndarray, b_bits: int) -> list[np.ndarray]:
    """Float64 arrays whose sum is ``a * b`` exactly (broadcast; each product exact unless it
    underflows): one product when ``a_bits + b_bits <= 53``, else two or four after
    ``split``."""
    if a_bits + b_bits <= 53:
        return [a * b]
    if a_bits + HALF_BITS <= 53:  # a is narrow: split b
        return [a * part for part in split(b)]
    if b_bits + HALF_BITS <= 53:  # b is narrow: split a
        return [part * b for part in split(a)]
    a_parts, b_parts = split(a), split(b)
    return [pa * pb for pa in a_parts for pb in b_parts]


@dataclass
class CertifiedSum:
    """``high + low`` is within ``bound`` of the exact sum (module docstring); ``magnitude``
    is ``fl(sum |terms|)``."""

    high: np.ndarray
    low: np.ndarray
    bound: np.ndarray
    magnitude: np.ndarray


class SumOfTerms:
    """The exact sums of terms handed in chunks, one sum per element of ``shape``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self._roots: list[np.ndarray] = []
        self._errors = np.zeros(shape)
        self._magnitude = np.zeros(shape)
        self._terms = 0
        self._levels = 0

    def add(self, terms: np.ndarray) -> None:
        """Terms shaped ``(k, *shape)`` (float64), added to every element's sum."""
        if not terms.shape[0]:
            return
        self._terms += terms.shape[0]
        self._magnitude += np.abs(terms).sum(axis=0)
        root, levels = self._tree(terms)
        self._levels = max(self._levels, levels)
        self._roots.append(root)

    def _tree(self, terms: np.ndarray) -> tuple[np.ndarray, int]:
        levels = 0
        while terms.shape[0] > 1:
            pairs = terms.shape[0] // 2
            s, e = two_sum(terms[0:2 * pairs:2], terms[1:2 * pairs:2])
            self._errors += e.sum(axis=0)
            terms = s if terms.shape[0] % 2 == 0 else np.concatenate([s, terms[-1:]])
            levels += 1
        return terms[0], levels

    def result(self) -> CertifiedSum:
        """The sums, their bounds (module docstring) and magnitudes."""
        if not self._roots:
            zeros = np.zeros(self.shape)
            return CertifiedSum(zeros, zeros.copy(), zeros.copy(), zeros.copy())
        root, joining = self._tree(np.stack(self._roots))
        levels = self._levels + joining
        total = self._terms
        assert total * U <= 2.0 ** -20, "too many terms for the bound's first-order form"
        high, low = two_sum(root, self._errors)
        bound = (1.02 * total * max(levels, 1) * U * U) * self._magnitude + total * ETA
        return CertifiedSum(high, low, bound, self._magnitude)
