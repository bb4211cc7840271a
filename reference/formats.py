"""Binary floating-point formats, correct rounding into them, and units in the last place.

A format with precision ``p`` (significand bits, hidden bit included) and exponent range
``[emin, emax]`` represents ``0``, ``+-inf``, ``nan`` and the numbers ``n * 2**q`` with
``|n| < 2**p`` and ``q = max(e, emin) - (p - 1)`` where ``e = floor(log2 |x|)``.

:func:`round_to_format` rounds an exact mpmath value to the nearest representable number,
ties to even (IEEE 754 roundTiesToEven), with gradual underflow to subnormals and overflow
to infinity for values at or beyond ``(2 - 2**-p) * 2**emax``.  It works on the exact binary
significand of the ``mpf`` with integer arithmetic, so no floating-point rounding of its
own enters the result.  Every format here is a subset of float64, so a rounded value is
also returned as an exact Python ``float``.

:func:`ulp` is the spacing of the format at ``|x|``: ``2**(max(e, emin) - p + 1)``; for
``x = 0`` it is the smallest subnormal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf
from mpmath.libmp import from_float, from_man_exp, round_nearest

from reference.pairs import ExactPairs


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-style binary format: ``precision`` bits of significand, exponents emin..emax."""

    name: str
    precision: int
    emin: int
    emax: int

    @property
    def unit_roundoff(self) -> float:
        """``u = 2**-p``: the largest relative error of one correctly rounded operation."""
        return 2.0 ** -self.precision

    @property
    def max_finite(self) -> float:
        significand = (1 << self.precision) - 1
        return float(mpmath.mp.make_mpf(from_man_exp(significand, self.emax - self.precision + 1)))

    @property
    def smallest_subnormal(self) -> float:
        return float(_power_of_two(self.emin - self.precision + 1))


FORMATS: dict[str, FloatFormat] = {
    "float64": FloatFormat("float64", 53, -1022, 1023),
    "float32": FloatFormat("float32", 24, -126, 127),
    "float16": FloatFormat("float16", 11, -14, 15),
    "bfloat16": FloatFormat("bfloat16", 8, -126, 127),
}
DTYPES: tuple[str, ...] = tuple(FORMATS)


def get_format(dtype: str) -> FloatFormat:
    try:
        return FORMATS[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(FORMATS)}") from None


def _exponent(x: mpf) -> int:
    """``floor(log2 |x|)`` for a finite non-zero mpf, read off its exact binary form."""
    _sign, _man, exp, bc = x._mpf_
    return int(exp) + int(bc) - 1


def exact(x: mpf | float | int) -> mpf:
    """``x`` as an mpf with no rounding, whatever the context precision."""
    if isinstance(x, mpf):
        return x
    if isinstance(x, int):
        return mpmath.mp.make_mpf(from_man_exp(x, 0))
    return mpmath.mp.make_mpf(from_float(float(x), 53, round_nearest))  # 53 bits: exact


def round_to_format(x: mpf | float | int, fmt: FloatFormat) -> mpf:
    """Round ``x`` to the nearest value of ``fmt`` (ties to even); returns that value exactly.

    Special values pass through: ``nan`` stays ``nan``, ``+-inf`` stay infinite.  Values whose
    magnitude rounds above the largest finite number become ``+-inf``.
    """
    x = exact(x)
    if mpmath.isnan(x) or mpmath.isinf(x) or x == 0:
        return x
    sign, man, exp, bc = x._mpf_
    if _exponent(x) > fmt.emax + 1:  # far beyond the overflow threshold
        return mpf("-inf") if sign else mpf("inf")
    quantum = max(_exponent(x), fmt.emin) - (fmt.precision - 1)
    shift = quantum - int(exp)
    if shift > int(bc) + 1:  # |x| < 2**(quantum - 2), a quarter of the spacing: to zero
        return mpf(0)
    if shift <= 0:
        n = int(man) << -shift
    else:
        n, remainder = divmod(int(man), 1 << shift)
        half = 1 << (shift - 1)
        if remainder > half or (remainder == half and n % 2 == 1):
            n += 1
    magnitude = mpmath.mp.make_mpf(from_man_exp(n, quantum))
    if magnitude > fmt.max_finite:
        magnitude = mpf("inf")
    return -magnitude if sign else magnitude


def round_to_float(x: mpf | float | int, dtype: str) -> float:
    """``round_to_format`` into the named dtype, as an exact Python float."""
    return float(round_to_format(x, get_format(dtype)))


def ulp(x: mpf | float, fmt: FloatFormat) -> mpf:
    """Spacing of ``fmt`` at ``|x|`` (for finite ``x``); the smallest subnormal at zero."""
    x = exact(x)
    if x == 0:
        return _power_of_two(fmt.emin - fmt.precision + 1)
    exponent = min(max(_exponent(x), fmt.emin), fmt.emax)
    return _power_of_two(exponent - fmt.precision + 1)


def _power_of_two(k: int) -> mpf:
    return mpmath.mp.make_mpf(from_man_exp(1, k))


# --- positions on a format's grid, ULP distances -------------------------------------------
#
# The ULP distance between two values of a format is the number of steps between them along
# the format's ordered set of values, where one step joins two neighbours:
#
#     ... -> -min_subnormal -> 0 -> min_subnormal -> ... -> max_finite -> inf
#
# +0 and -0 are the same point (distance 0: they compare equal and are the same number);
# subnormals are steps of the fixed spacing 2**(emin - p + 1); crossing a binade counts each
# representable value once, whatever the spacing on either side; +inf is one step above the
# largest finite value (it is what the next value up rounds to); NaN has no position (the
# distance to or from NaN is NaN: special values are compared separately, never counted).
# ``ordinal`` gives each value its signed position (an integer for values of the format).
# A finite value that is not in the format lies between two neighbours and gets the
# fractional position in between, linearly; beyond max_finite the top spacing continues.


def ordinal(x: mpf | float | int, fmt: FloatFormat) -> mpf:
    """Signed position of ``x`` on ``fmt``'s grid: 0 for +-0, 1 for the smallest subnormal,
    ``2**(p-1)`` for the smallest normal, ``max_finite`` -> M, +inf -> M + 1 (negatives
    mirrored); fractional for finite values between two values of the format; NaN for NaN."""
    x = exact(x)
    if mpmath.isnan(x):
        return mpf("nan")
    if mpmath.isinf(x):
        top = _ordinal_of_magnitude(exact(fmt.max_finite), fmt)
        magnitude = mpmath.fadd(top, 1, exact=True)
    elif x == 0:
        return mpf(0)
    else:
        magnitude = _ordinal_of_magnitude(abs(x), fmt)
    return -magnitude if x < 0 else magnitude


def _ordinal_of_magnitude(m: mpf, fmt: FloatFormat) -> mpf:
    """Position of ``m > 0``, computed exactly (``ldexp`` and the sum are exact here)."""
    half = 1 << (fmt.precision - 1)
    exponent = min(max(_exponent(m), fmt.emin), fmt.emax)
    quantum = exponent - (fmt.precision - 1)
    scaled = mpmath.ldexp(m, -quantum)  # m in units of the spacing of its binade
    if _exponent(m) < fmt.emin:
        return scaled  # subnormal: the position is m / min_subnormal
    # the binade of 2**exponent starts at position (exponent - emin + 1) * 2**(p-1)
    with mpmath.workprec(int(m._mpf_[3]) + 2 * (fmt.emax - fmt.emin) + 2 * fmt.precision):
        return (exponent - fmt.emin + 1) * half + (scaled - half)


def ulp_distance(a: mpf | float | int, b: mpf | float | int, fmt: FloatFormat) -> float:
    """Number of steps of ``fmt``'s grid between ``a`` and ``b`` (see ``ordinal``); NaN when
    either is NaN.  ``ulp_distance(RN(e), actual)`` is the ULP error against the correctly
    rounded result: 0 when the value is correctly rounded."""
    oa, ob = ordinal(a, fmt), ordinal(b, fmt)
    if mpmath.isnan(oa) or mpmath.isnan(ob):
        return math.nan
    with mpmath.workprec(256):
        return float(abs(oa - ob))


# --- the same, vectorised over float64 arrays -------------------------------------------------

# numpy dtypes whose bit patterns are the format's own (sign-magnitude) encodings
_NUMPY_TYPES = {"float64": ("float64", "uint64"), "float32": ("float32", "uint32"),
                "float16": ("float16", "uint16"), "bfloat16": ("bfloat16", "uint16")}


def _numpy_dtype(fmt: FloatFormat) -> np.dtype[Any]:
    name = _NUMPY_TYPES[fmt.name][0]
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def nearest_float64(values: np.ndarray | ExactPairs) -> np.ndarray:
    """The float64 nearest to each mpf of ``values`` (ties to even, subnormals included);
    for ``reference.pairs.ExactPairs``, their ``hi`` (which is that float64)."""
    if isinstance(values, ExactPairs):
        return values.hi.copy()
    flat = np.asarray(values, dtype=object).reshape(-1)
    out = np.fromiter((float(v) for v in flat), dtype=np.float64, count=flat.size)
    # mpmath's float() rounds to 53 bits, then ldexp rounds again below 2**-1022: redo those
    tiny = np.flatnonzero((out != 0) & (np.abs(out) < 2.0 ** -1021) | (out == 0))
    float64 = FORMATS["float64"]
    for i in tiny:
        if flat[i] != 0 and not mpmath.isnan(flat[i]):
            out[i] = float(round_to_format(flat[i], float64))
    return out.reshape(np.shape(values))


def round_float64_array(x: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """Round float64 values to ``fmt`` (ties to even, subnormals, overflow to inf), exactly.

    Returns the rounded values (as float64) and a mask of the elements that lay exactly
    halfway between two values of ``fmt``: when ``x`` is itself the float64 nearest to an
    exact value, those are the only elements where rounding twice (exact -> float64 ->
    ``fmt``) can differ from rounding once, so the caller redoes them from the exact value.
    """
    x = np.asarray(x, dtype=np.float64)
    if fmt.name == "float64":
        return x.copy(), np.zeros(x.shape, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(x) & (x != 0)
        _mantissa, e = np.frexp(np.where(finite, x, 1.0))
        exponent = np.maximum(e - 1, fmt.emin)
        quantum = exponent - (fmt.precision - 1)
        scaled = np.ldexp(x, -quantum)  # exact: a power-of-two scaling of a float64
        integral = np.rint(scaled)  # ties to even
        midpoint = finite & (np.abs(scaled - np.trunc(scaled)) == 0.5)
        rounded = np.ldexp(integral, quantum)
        rounded = np.where(np.abs(rounded) > fmt.max_finite, np.copysign(np.inf, x), rounded)
        rounded = np.where(finite, rounded, x)
    return rounded, midpoint


def ordinal_array(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """``ordinal`` of float64 values that are values of ``fmt`` (NaN excluded), as int64,
    read off the format's bit patterns: for a binary IEEE format the encoding of ``|x|``,
    read as an integer, is exactly its position."""
    _name, unsigned = _NUMPY_TYPES[fmt.name]
    x = np.asarray(x, dtype=np.float64)
    bits = x.astype(_numpy_dtype(fmt)).view(unsigned)
    mask = np.array((1 << (np.dtype(unsigned).itemsize * 8 - 1)) - 1, dtype=unsigned)
    magnitude = (bits & mask).astype(np.int64)
    return np.where(np.signbit(x), -magnitude, magnitude)


def ulp_distance_array(a: np.ndarray, b: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Elementwise ``ulp_distance`` of float64 arrays, as float64 (exact below 2**53 steps).

    Elements that are NaN give NaN; elements not representable in ``fmt`` fall back to the
    exact scalar ``ulp_distance``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = np.broadcast_arrays(a, b)
    out = np.full(a.shape, np.nan)
    valid = ~(np.isnan(a) | np.isnan(b))
    in_format = valid & _representable(a, fmt) & _representable(b, fmt)
    oa = ordinal_array(np.where(in_format, a, 0.0), fmt)
    ob = ordinal_array(np.where(in_format, b, 0.0), fmt)
    same_sign = (oa >= 0) == (ob >= 0)
    # same sign: an exact int64 difference; opposite signs: |oa| + |ob| (large, or exact)
    with np.errstate(over="ignore"):
        difference = np.where(same_sign, np.abs(oa - np.where(same_sign, ob, 0)), 0)
    across = np.abs(oa).astype(np.float64) + np.abs(ob).astype(np.float64)
    out[in_format] = np.where(same_sign, difference.astype(np.float64), across)[in_format]
    for index in _positions(valid & ~in_format):
        out[index] = ulp_distance(float(a[index]), float(b[index]), fmt)
    return out


def _representable(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    if fmt.name == "float64":
        return np.ones(x.shape, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded, _ = round_float64_array(x, fmt)
    return (rounded == x) | np.isnan(x)


def _positions(mask: np.ndarray) -> list[tuple[int, ...]]:
    """The indices where ``mask`` holds (0-d arrays included)."""
    return [tuple(int(i) for i in row) for row in np.argwhere(mask)]
