"""The oracle's gmpy2 (MPFR) fast path gives the results of its mpmath path."""

from __future__ import annotations

import random

import numpy as np
import pytest

import reference.oracle as oracle
from reference.formats import nearest_float64

gmpy2 = pytest.importorskip("gmpy2", reason="gmpy2 is not installed (the fast path needs it)")


def both_paths(monkeypatch: pytest.MonkeyPatch, *args, **kwargs):
    fast = oracle.evaluate(*args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(oracle, "gmpy2", None)
        slow = oracle.evaluate(*args, **kwargs)
    return fast, slow


def same(a, b) -> bool:
    return np.array_equal(nearest_float64(a), nearest_float64(b), equal_nan=True)


@pytest.mark.parametrize("seed", range(12))
def test_fast_and_mpmath_paths_agree(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = random.Random(seed)
    classes, rows = rng.randint(1, 6), rng.randint(1, 3)
    scale = rng.choice([1.0, 30.0, 1e4, 1e30])
    x = [[rng.gauss(0, 1) * scale for _ in range(classes)] for _ in range(rows)]
    if rng.random() < 0.3:
        x[0][0] = 1e-300  # a row whose shifts need more than 53 bits
    weight = [rng.uniform(0.1, 3) for _ in range(classes)] if rng.random() < 0.5 else None
    kwargs = {"weight": weight, "label_smoothing": rng.choice([0.0, 0.1, 1.0]),
              "reduction": rng.choice(["none", "mean", "sum"]),
              "dtype": rng.choice(["float64", "float32", "bfloat16"])}
    if rng.random() < 0.5:
        target = [rng.randrange(classes) for _ in range(rows)]
    else:
        target = [[rng.random() for _ in range(classes)] for _ in range(rows)]
    fast, slow = both_paths(monkeypatch, "cross_entropy", x, target=target, **kwargs)
    assert same(fast.output, slow.output) and same(fast.grad, slow.grad)
    for op in ("softmax", "log_softmax"):
        fast, slow = both_paths(monkeypatch, op, x, dtype=kwargs["dtype"])
        assert same(fast.output, slow.output) and same(fast.grad, slow.grad)


def test_exact_shifts_use_floats_only_when_exact() -> None:
    assert oracle._shift_precision([1.0, 0.5]) <= 53
    assert oracle._shift_precision([1e300, 1e-300]) > 2000
    shifts = oracle._exact_shifts([1e300, 1e-300], 1e300)
    with gmpy2.context(precision=4000):
        assert shifts[1] + gmpy2.mpfr(1e300) == gmpy2.mpfr(1e-300)  # nothing was lost
