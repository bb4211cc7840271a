"""The oracle's gmpy2 (MPFR) fast path gives the results of its mpmath path."""

from __future__ import annotations

import random

import mpmath
import numpy as np
import pytest

from reference import mpfr
from reference.compute import compute, first_precision
from reference.formats import nearest_float64
from reference.oracle import evaluate
from reference.problem import prepare

# these test the MPFR/mpmath path; tests/test_oracle_vectorised.py tests the vectorised one
pytestmark = pytest.mark.usefixtures("mpfr_path")

gmpy2 = pytest.importorskip("gmpy2", reason="gmpy2 is not installed (the fast path needs it)")


def both_paths(monkeypatch: pytest.MonkeyPatch, *args, **kwargs):
    fast = evaluate(*args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(mpfr, "gmpy2", None)
        slow = evaluate(*args, **kwargs)
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
        target: list = [rng.randrange(classes) for _ in range(rows)]
    else:
        target = [[rng.random() for _ in range(classes)] for _ in range(rows)]
    fast, slow = both_paths(monkeypatch, "cross_entropy", x, target=target, **kwargs)
    assert same(fast.output, slow.output) and same(fast.grad, slow.grad)
    for op in ("softmax", "log_softmax"):
        fast, slow = both_paths(monkeypatch, op, x, dtype=kwargs["dtype"])
        assert same(fast.output, slow.output) and same(fast.grad, slow.grad)


def test_exact_shifts_use_floats_only_when_exact() -> None:
    assert mpfr._shift_precision([1.0, 0.5]) <= 53
    assert mpfr._shift_precision([1e300, 1e-300]) > 2000
    shifts = mpfr._exact_shifts([1e300, 1e-300], 1e300)
    with gmpy2.context(precision=4000):
        assert shifts[1] + gmpy2.mpfr(1e300) == gmpy2.mpfr(1e-300)  # nothing was lost


@pytest.mark.parametrize("op", ["softmax", "cross_entropy"])
def test_mpfr_gmpy2_is_the_one_switch_of_the_fast_path(monkeypatch: pytest.MonkeyPatch,
                                                       op: str) -> None:
    # both_paths above compares nothing if the switch leaves the MPFR rows running
    problem = prepare(op, [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], [0, 2], None, -100, "sum", 0.0)
    with mpmath.workprec(first_precision(problem)):
        fast = compute(problem, True)
        monkeypatch.setattr(mpfr, "gmpy2", None)
        slow = compute(problem, True)
    assert sorted(fast.ingredients) == [0, 1] and fast.ledger.complete
    assert slow.ingredients == {} and not slow.ledger.complete
