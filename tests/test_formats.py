"""Correct rounding into each format, checked on values worked out by hand."""

from __future__ import annotations

import math

import mpmath
import pytest
from mpmath import mpf

from reference.formats import FORMATS, round_to_float, round_to_format, ulp

F32, F16, BF16 = FORMATS["float32"], FORMATS["float16"], FORMATS["bfloat16"]


def test_format_limits_are_the_ieee_values() -> None:
    assert F32.max_finite == 3.4028234663852886e38
    assert F16.max_finite == 65504.0
    assert BF16.max_finite == 3.3895313892515355e38
    assert F32.smallest_subnormal == 2.0 ** -149
    assert F16.smallest_subnormal == 2.0 ** -24
    assert FORMATS["float64"].smallest_subnormal == 5e-324


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        # 1 + 2**-24 lies exactly halfway between 1 and 1 + 2**-23: ties go to the even 1.
        (1 + 2.0 ** -24, "float32", 1.0),
        # 1 + 3 * 2**-24 lies halfway between 1 + 2**-23 (odd) and 1 + 2**-22 (even).
        (1 + 3 * 2.0 ** -24, "float32", 1 + 2.0 ** -22),
        # just above the tie rounds up
        (1 + 2.0 ** -24 + 2.0 ** -40, "float32", 1 + 2.0 ** -23),
        # float16: 2049 is halfway between 2048 and 2050 -> 2048 (even)
        (2049.0, "float16", 2048.0),
        (2051.0, "float16", 2052.0),
        # bfloat16 keeps 8 bits: 1 + 2**-8 ties to 1, 1 + 3 * 2**-8 ties to 1 + 2**-6
        (1 + 2.0 ** -8, "bfloat16", 1.0),
        (1 + 3 * 2.0 ** -8, "bfloat16", 1 + 2.0 ** -6),
        # overflow: the float16 boundary is 65520 = (2 - 2**-11) * 2**15
        (65519.0, "float16", 65504.0),
        (65520.0, "float16", math.inf),
        (-1e6, "float16", -math.inf),
        (1e39, "float32", math.inf),
        # subnormals: half the smallest float32 subnormal ties to 0 (even), above it rounds up
        (2.0 ** -150, "float32", 0.0),
        (2.0 ** -150 + 2.0 ** -170, "float32", 2.0 ** -149),
        (3 * 2.0 ** -150, "float32", 2.0 ** -148),
        (2.0 ** -25, "float16", 0.0),
        (3 * 2.0 ** -26, "float16", 2.0 ** -24),
        # 0.1 in float32 is 13421773 * 2**-27
        (0.1, "float32", 13421773 * 2.0 ** -27),
    ],
)
def test_round_to_float(value: float, dtype: str, expected: float) -> None:
    assert round_to_float(value, dtype) == expected


def test_round_keeps_special_values() -> None:
    assert math.isnan(round_to_float(math.nan, "float16"))
    assert round_to_float(math.inf, "bfloat16") == math.inf
    assert round_to_float(-math.inf, "float32") == -math.inf


def test_rounding_uses_the_exact_value_not_a_double() -> None:
    # 1 + 2**-24 + 2**-80 is not a float64; a double rounding would give 1.0
    with mpmath.workprec(200):
        x = mpf(1) + mpf(2) ** -24 + mpf(2) ** -80
    assert round_to_format(x, F32) == 1 + 2.0 ** -23


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        (1.0, "float32", 2.0 ** -23),
        (1.5, "float16", 2.0 ** -10),
        (0.0, "float32", 2.0 ** -149),
        (2.0 ** -130, "float32", 2.0 ** -149),  # subnormal range: fixed spacing
        (3.0, "bfloat16", 2.0 ** -6),
        (1.0, "float64", 2.0 ** -52),
    ],
)
def test_ulp(value: float, dtype: str, expected: float) -> None:
    assert ulp(value, FORMATS[dtype]) == expected
