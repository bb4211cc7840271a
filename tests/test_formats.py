"""Correct rounding into each format, checked on values worked out by hand."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from mpmath import mpf

from reference.formats import (
    FORMATS,
    nearest_float64,
    ordinal,
    ordinal_array,
    round_float64_array,
    round_to_float,
    round_to_format,
    ulp,
    ulp_distance,
    ulp_distance_array,
)

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


# --- positions on the grid and ULP distances, on hand-checked values -----------------------

F64 = FORMATS["float64"]


@pytest.mark.parametrize(
    ("value", "dtype", "position"),
    [
        # a binary IEEE format's encoding of |x|, read as an integer, is its position:
        (1.0, "float32", 0x3F800000),
        (1.0, "float16", 0x3C00),
        (1.0, "bfloat16", 0x3F80),
        (1.0, "float64", 0x3FF0000000000000),
        (-1.0, "float16", -0x3C00),
        (0.0, "float32", 0),
        (-0.0, "float32", 0),
        (2.0 ** -149, "float32", 1),  # smallest subnormal
        (2.0 ** -126, "float32", 2 ** 23),  # smallest normal: after 2**23 subnormals and 0
        (65504.0, "float16", 0x7BFF),  # max finite
        (math.inf, "float16", 0x7C00),  # one step above it
        (-math.inf, "bfloat16", -0x7F80),
        (3.3895313892515355e38, "bfloat16", 0x7F7F),
        (5e-324, "float64", 1),
        (1.7976931348623157e308, "float64", 0x7FEFFFFFFFFFFFFF),
    ],
)
def test_ordinal_is_the_position_on_the_grid(value: float, dtype: str, position: int) -> None:
    assert ordinal(value, FORMATS[dtype]) == position
    assert ordinal_array(np.array([value]), FORMATS[dtype])[0] == position


@pytest.mark.parametrize(
    ("a", "b", "dtype", "distance"),
    [
        (1.0, 1 + 2.0 ** -23, "float32", 1),
        (1.0, 1 - 2.0 ** -24, "float32", 1),  # below 1 the spacing halves: still one value
        (1 - 2.0 ** -24, 1 + 2.0 ** -23, "float32", 2),
        (0.0, -0.0, "float32", 0),  # one number
        (-0.0, 2.0 ** -149, "float32", 1),
        (-(2.0 ** -149), 2.0 ** -149, "float32", 2),  # across zero: -s, 0, +s
        (2.0 ** -126 - 2.0 ** -149, 2.0 ** -126, "float32", 1),  # subnormal -> normal
        (3.4028234663852886e38, math.inf, "float32", 1),
        (-math.inf, math.inf, "float32", 2 * 0x7F800000),
        (math.inf, math.inf, "float32", 0),
        (65504.0, math.inf, "float16", 1),
        (2.0 ** -14 - 2.0 ** -24, 2.0 ** -14, "float16", 1),
        (2.0 ** -24, 0.0, "float16", 1),
        (2048.0, 2050.0, "float16", 1),  # spacing 2 in [2048, 4096)
        (1.0, 1.0078125, "bfloat16", 1),
        (1.0, 2.0, "bfloat16", 128),
        (3.3895313892515355e38, math.inf, "bfloat16", 1),
        (1.0, 1 + 2.0 ** -52, "float64", 1),
        (5e-324, -5e-324, "float64", 2),
        (1.7976931348623157e308, math.inf, "float64", 1),
        # values outside the format sit between its values: half a step here
        (1.0, 1 + 2.0 ** -24, "float32", 0.5),
    ],
)
def test_ulp_distance(a: float, b: float, dtype: str, distance: float) -> None:
    fmt = FORMATS[dtype]
    assert ulp_distance(a, b, fmt) == distance
    assert ulp_distance(b, a, fmt) == distance
    assert ulp_distance_array(np.array([a]), np.array([b]), fmt)[0] == distance


def test_ulp_distance_of_nan_is_nan() -> None:
    assert math.isnan(ulp_distance(math.nan, 1.0, F32))
    assert math.isnan(ulp_distance_array(np.array([1.0]), np.array([math.nan]), F16)[0])


def test_large_float64_distances_stay_exact() -> None:
    # positions near 2**62 are not float64-exact; their difference must still be
    big = 1.7976931348623157e308
    below = float(np.nextafter(big, 0.0))
    assert ulp_distance_array(np.array([big]), np.array([below]), F64)[0] == 1


@pytest.mark.parametrize(
    ("value", "dtype", "expected", "halfway"),
    [
        (1 + 2.0 ** -24, "float32", 1.0, True),
        (1 + 3 * 2.0 ** -24, "float32", 1 + 2.0 ** -22, True),
        (1 + 2.0 ** -24 + 2.0 ** -40, "float32", 1 + 2.0 ** -23, False),
        (2049.0, "float16", 2048.0, True),
        (65519.0, "float16", 65504.0, False),
        (65520.0, "float16", math.inf, True),  # the overflow threshold is a tie: to inf
        (-1e6, "float16", -math.inf, False),
        (2.0 ** -150, "float32", 0.0, True),
        (3 * 2.0 ** -150, "float32", 2.0 ** -148, True),
        (3 * 2.0 ** -26, "float16", 2.0 ** -24, False),  # 0.75 of the spacing
        (3 * 2.0 ** -25, "float16", 2.0 ** -23, True),  # 1.5 spacings: ties to 2 (even)
        (1 + 3 * 2.0 ** -8, "bfloat16", 1 + 2.0 ** -6, True),
        (0.1, "float32", 13421773 * 2.0 ** -27, False),
        (-0.0, "float32", -0.0, False),
    ],
)
def test_round_float64_array(value: float, dtype: str, expected: float, halfway: bool) -> None:
    rounded, midpoint = round_float64_array(np.array([value]), FORMATS[dtype])
    assert rounded[0] == expected and math.copysign(1, rounded[0]) == math.copysign(1, expected)
    assert bool(midpoint[0]) is halfway


def test_nearest_float64_rounds_once_in_the_subnormal_range() -> None:
    # (1 + 2**-60) * 2**-1075 lies just above half the smallest subnormal: it rounds to
    # 2**-1074.  Rounding to 53 bits first gives exactly 2**-1075, a tie that goes to 0.
    with mpmath.workprec(200):
        value = mpmath.ldexp(1 + mpf(2) ** -60, -1075)
    assert nearest_float64(np.array([value], dtype=object))[0] == 5e-324


def test_rounding_values_far_outside_every_format() -> None:
    # exp(-1e30) and exp(1e12) have exponents of about -1.4e30 and 1.4e12: no shifting by
    # that many bits; they round to 0 and to infinity
    with mpmath.workprec(100):
        tiny = mpmath.exp(-mpf(10) ** 30)
        huge = mpmath.exp(mpf(10) ** 12)
    for dtype in FORMATS:
        assert round_to_float(tiny, dtype) == 0.0
        assert round_to_float(-huge, dtype) == -math.inf
        assert math.copysign(1, round_to_float(-tiny, dtype)) == 1.0  # an mpf zero is +0
