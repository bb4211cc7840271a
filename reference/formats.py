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

from dataclasses import dataclass

import mpmath
from mpmath import mpf
from mpmath.libmp import from_man_exp


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
        return float(mpmath.mp.make_mpf(from_man_exp((1 << self.precision) - 1, self.emax - self.precision + 1)))

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
    _sign, man, exp, bc = x._mpf_
    return int(exp) + int(bc) - 1


def exact(x: mpf | float | int) -> mpf:
    """``x`` as an mpf with no rounding, whatever the context precision."""
    if isinstance(x, mpf):
        return x
    if isinstance(x, int):
        return mpmath.mp.make_mpf(from_man_exp(x, 0))
    with mpmath.workprec(53):  # every Python float is exact in 53 bits
        return mpf(x)


def round_to_format(x: mpf | float | int, fmt: FloatFormat) -> mpf:
    """Round ``x`` to the nearest value of ``fmt`` (ties to even); returns that value exactly.

    Special values pass through: ``nan`` stays ``nan``, ``+-inf`` stay infinite.  Values whose
    magnitude rounds above the largest finite number become ``+-inf``.
    """
    x = exact(x)
    if mpmath.isnan(x) or mpmath.isinf(x) or x == 0:
        return x
    sign, man, exp, _bc = x._mpf_
    quantum = max(_exponent(x), fmt.emin) - (fmt.precision - 1)
    shift = quantum - int(exp)
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
