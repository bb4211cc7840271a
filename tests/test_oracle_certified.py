"""The oracle's one-pass certification: a-priori error bounds instead of Ziv's second pass.

Three properties (see the module docstrings of reference/certify.py, reference/ledger.py and
reference/mpfr.py):
(a) a pass certified by its bounds rounds exactly as Ziv's strategy does;
(b) what the bounds cannot decide (exact zeros, results on a rounding boundary, deep
    cancellation) falls back to Ziv's strategy;
(c) the bounds are bounds: |v_p - v| <= E against an evaluation at far higher precision.
"""

from __future__ import annotations

import random
from typing import Any

import mpmath
import numpy as np
import pytest
from mpmath import mpf

from reference import mpfr
from reference.compute import compute
from reference.formats import get_format, nearest_float64, round_to_float
from reference.ledger import Ledger
from reference.oracle import OracleResult, evaluate
from reference.problem import prepare

# these test the MPFR/mpmath path; tests/test_oracle_vectorised.py tests the vectorised one
pytestmark = pytest.mark.usefixtures("mpfr_path")

gmpy2 = pytest.importorskip("gmpy2", reason="gmpy2 is not installed (the fast path needs it)")

DTYPES = ["float64", "float32", "float16", "bfloat16"]


def random_problem(seed: int) -> tuple[str, list, dict[str, Any]]:
    """A random op, logits and options, every number a value of the dtype."""
    rng = random.Random(seed)
    dtype = rng.choice(DTYPES)

    def value(v: float) -> float:
        return round_to_float(v, dtype)

    classes, rows = rng.randint(1, 7), rng.randint(1, 4)
    scale = rng.choice([1.0, 3.0, 30.0, 1e4])
    x = [[value(rng.gauss(0, 1) * scale) for _ in range(classes)] for _ in range(rows)]
    if dtype == "float64" and rng.random() < 0.2:
        x[0][0] = 1e-300  # a row whose shifts need more than 53 bits
    op = rng.choice(["cross_entropy"] * 4 + ["softmax", "log_softmax"])
    kwargs: dict[str, Any] = {"dtype": dtype}
    if op != "cross_entropy":
        return op, x, kwargs
    weight = None
    if rng.random() < 0.5:
        low = -1.0 if rng.random() < 0.4 else 0.1  # negative weights too
        weight = [value(rng.uniform(low, 3)) for _ in range(classes)]
    if rng.random() < 0.5:
        target: list = [rng.randrange(classes) for _ in range(rows)]
        if rows > 1 and rng.random() < 0.3:
            target[0] = -100
    else:
        target = [[value(rng.random()) for _ in range(classes)] for _ in range(rows)]
    kwargs.update(target=target, weight=weight,
                  label_smoothing=value(rng.choice([0.0, 0.1, 1.0])),
                  reduction=rng.choice(["none", "mean", "sum"]))
    return op, x, kwargs


def rounded(values: np.ndarray | None, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    if values is None:
        return np.zeros(0), np.zeros(0)
    flat = np.asarray(values, dtype=object).reshape(-1)
    in_dtype = np.array([round_to_float(v, dtype) for v in flat])
    return nearest_float64(flat), in_dtype


def same(a: np.ndarray | None, b: np.ndarray | None, dtype: str) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) and
               np.array_equal(np.signbit(x), np.signbit(y))
               for x, y in zip(rounded(a, dtype), rounded(b, dtype)))


def ziv_only(monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any) -> OracleResult:
    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "certifies", lambda self, fmt: False)
        return evaluate(*args, **kwargs)


def first_precision(x: list) -> int:
    return 128 + len(x[0]).bit_length()


# --- (a) one pass rounds as Ziv's strategy does ------------------------------------------------


def test_one_pass_rounds_as_ziv(monkeypatch: pytest.MonkeyPatch) -> None:
    one_pass = 0
    for seed in range(150):
        op, x, kwargs = random_problem(seed)
        fast = evaluate(op, x, **kwargs)
        slow = ziv_only(monkeypatch, op, x, **kwargs)
        dtype = kwargs["dtype"]
        assert same(fast.output, slow.output, dtype), (seed, op, x, kwargs)
        assert same(fast.grad, slow.grad, dtype), (seed, op, x, kwargs)
        assert fast.certified == slow.certified
        one_pass += fast.precision == first_precision(x)
    assert one_pass >= 100  # most random problems need one pass


def test_a_typical_large_row_needs_one_pass() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2000)).astype(np.float32).astype(np.float64)
    for kwargs in ({"target": rng.integers(0, 2000, 3)},
                   {"target": rng.integers(0, 2000, 3), "label_smoothing": 0.25,
                    "weight": rng.uniform(-1, 2, 2000).astype(np.float32).tolist()},
                   {"target": rng.dirichlet(np.ones(2000), 3).astype(np.float32)
                    .astype(np.float64), "reduction": "sum"}):
        result = evaluate("cross_entropy", x, dtype="float32", **kwargs)
        assert result.certified and result.precision == first_precision(x.tolist())


# --- (b) what the bounds cannot decide goes to Ziv's strategy ----------------------------------


def test_an_exact_zero_gradient_falls_back_to_ziv() -> None:
    # p = (1/2, 1/2) = the target: the gradient W p_c - a_c is exactly 0
    x = [[0.0, 0.0]]
    result = evaluate("cross_entropy", x, target=[[0.5, 0.5]], dtype="float32")
    assert result.precision > first_precision(x)
    assert result.grad is not None and all(g == 0 for g in result.grad.reshape(-1))


def test_a_dominant_class_gradient_needs_one_pass() -> None:
    # logits (120, 0), target 0: dl/dx_0 = -exp(-120) / (1 + exp(-120)) ~ 2**-173.  As
    # p_0 - 1 it cancels below what a 130-bit pass can bound; as -a_0 T / S (reference/mpfr.py)
    # it carries a few units of its own last place, so one pass certifies it
    x = [[120.0, 0.0]]
    result = evaluate("cross_entropy", x, target=[0], reduction="sum", dtype="float64")
    assert result.certified and result.precision == first_precision(x)
    with mpmath.workprec(800):
        exact = -mpmath.exp(-120) / (1 + mpmath.exp(-120))
        assert result.grad is not None
        assert abs(result.grad[0, 0] - exact) < abs(exact) * mpf(2) ** -120
        assert float(result.grad[0, 0]) == float(exact)


def test_deep_cancellation_falls_back_to_ziv_and_stays_right() -> None:
    # log_softmax of (0, -1e-300): dl/dx_0 = 1 - 2 p_0 = expm1(s) / (1 + e^s) ~ -5e-301 ~ 2**-998,
    # lost to cancellation below 1000 bits.  A pass that computes it as 0 says so
    # (reference/certify.py), so two such passes never agree: Ziv's strategy goes on to a
    # precision that resolves it
    x = [[0.0, -1e-300]]
    result = evaluate("log_softmax", x, dtype="float64")
    assert result.certified and result.precision > 1000
    with mpmath.workprec(4000):
        shift = mpf(x[0][1])
        exact = mpmath.expm1(shift) / (1 + mpmath.exp(shift))  # 1 - 2 / (1 + e^shift)
        assert result.grad is not None
        assert float(result.grad[0, 0]) == float(exact) != 0
        assert float(result.grad[0, 1]) == -float(exact)


def _ledger(value: float | tuple[float, ...], bound: float) -> Ledger:
    """A ledger of one value (a sum of floats, exact at 200 bits) with the bound given."""
    ledger = Ledger()
    with gmpy2.context(precision=200):
        terms = value if isinstance(value, tuple) else (value,)
        number = sum((gmpy2.mpfr(t) for t in terms), gmpy2.mpfr(0))
        ledger.add([number], np.array([bound]))
    return ledger


def test_ledger_on_rounding_boundaries() -> None:
    # 1 + 2**-24 is a float64, and the float32 midpoint between 1 and 1 + 2**-23
    midpoint = 1 + 2.0 ** -24
    assert _ledger(midpoint, 2.0 ** -150).certifies(get_format("float64"))
    assert not _ledger(midpoint, 2.0 ** -150).certifies(get_format("float32"))
    # the float32 overflow threshold (2 - 2**-24) * 2**127 is a midpoint too
    threshold = (2 - 2.0 ** -24) * 2.0 ** 127
    assert not _ledger(threshold, 2.0 ** -100).certifies(get_format("float32"))
    # a value near a float64 midpoint: certified only when its bound keeps it off
    near = (1.0, 2.0 ** -53, 2.0 ** -90)  # just above the midpoint between 1 and 1 + 2**-52
    assert not _ledger(near, 2.0 ** -85).certifies(get_format("float64"))
    assert _ledger(near, 2.0 ** -150).certifies(get_format("float64"))
    # zero with a non-zero bound: its sign is unknown; known zeros are fine
    assert not _ledger(0.0, 2.0 ** -150).certifies(get_format("float64"))
    exact = Ledger()
    exact.exact(3)
    assert exact.certifies(get_format("bfloat16"))


# --- (c) the bounds are bounds -------------------------------------------------------------------


def _recorded(monkeypatch: pytest.MonkeyPatch, problem: Any, precision: int) -> list:
    """Every (value, bound) the ledger receives in one pass at ``precision``."""
    records: list[tuple[mpf, float]] = []
    add = Ledger.add

    def recording(self: Ledger, values: list, bounds: np.ndarray,
                  nearest: np.ndarray | None = None) -> None:
        records.extend(zip([mpfr.mpf_of(v) for v in values], np.asarray(bounds).tolist()))
        add(self, values, bounds, nearest)

    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "add", recording)
        with mpmath.workprec(precision):
            computed = compute(problem, True)
    assert computed.ledger.complete
    return records


@pytest.mark.parametrize("seed", range(60))
def test_bounds_hold_against_a_far_more_precise_pass(monkeypatch: pytest.MonkeyPatch,
                                                     seed: int) -> None:
    op, x, kwargs = random_problem(seed + 1000)
    kwargs.pop("dtype")
    if kwargs.get("target") and not isinstance(kwargs["target"][0], list) and \
            kwargs.get("reduction") == "mean":
        kwargs["weight"] = None  # no zero divisor: a mean over weights that cancel
    problem = prepare(op, x, kwargs.get("target"), kwargs.get("weight"), -100,
                      kwargs.get("reduction", "mean"), kwargs.get("label_smoothing", 0.0))
    low = _recorded(monkeypatch, problem, first_precision(x))
    high = _recorded(monkeypatch, problem, 960)
    assert len(low) == len(high) and low
    with mpmath.workprec(1200):
        for (value, bound), (reference, _) in zip(low, high):
            assert abs(value - reference) <= bound, (value, reference, bound)


def test_bounds_are_not_vacuous(monkeypatch: pytest.MonkeyPatch) -> None:
    # large logits spread, negative weights, smoothing: the worst element uses a fair share of
    # its bound (a bound many orders too loose would certify less, not wrongly)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((4, 50)) * 20).tolist()
    weight = rng.uniform(-1, 2, 50).tolist()
    problem = prepare("cross_entropy", x, [3, 7, 11, 19], weight, -100, "none", 0.1)
    low = _recorded(monkeypatch, problem, first_precision(x))
    high = _recorded(monkeypatch, problem, 960)
    with mpmath.workprec(1200):
        ratios = [float(abs(v - r) / mpf(b)) for (v, b), (r, _) in zip(low, high)]
    assert max(ratios) <= 1
    assert max(ratios) > 2.0 ** -12


def test_inputs_that_are_not_float64_keep_every_bit() -> None:
    # an mpf logit with more bits than a float64 takes the mpmath path, exactly
    with mpmath.workprec(200):
        logit = mpf(1) / 3
        exact = logit - mpmath.log(mpmath.exp(logit) + 1)
    value = evaluate("log_softmax", [[logit, 0.0]], dtype="float64").output[0, 0]
    rounded = evaluate("log_softmax", [[1 / 3, 0.0]], dtype="float64").output[0, 0]
    with mpmath.workprec(200):
        assert abs(value - exact) < mpf(2) ** -120
        assert abs(rounded - exact) > mpf(2) ** -70  # what 1/3 rounded to a float64 gives


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_rows_that_weigh_nothing_without_gmpy2(monkeypatch: pytest.MonkeyPatch,
                                               reduction: str) -> None:
    monkeypatch.setattr(mpfr, "gmpy2", None)
    result = evaluate("cross_entropy", [[1.0, 2.0], [0.5, 0.0]], target=[-100, -100],
                      reduction=reduction)
    assert result.grad is not None and all(g == 0 for g in result.grad.reshape(-1))
    values = np.asarray(result.output, dtype=object).reshape(-1)
    assert all(mpmath.isnan(v) if reduction == "mean" else v == 0 for v in values)
