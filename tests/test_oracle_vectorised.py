"""The vectorised oracle (reference/vectorised.py, reference/double_double.py): its primitives
keep their stated error bounds, it rounds exactly as the MPFR path does (values, dtype
roundings, tolerance bounds, certified flags), and whatever it cannot decide goes to the MPFR
path.  Independent values come from mpmath at 400 bits, never from the code under test.
"""

from __future__ import annotations

import dataclasses
import random

import mpmath
import numpy as np
import pytest
from mpmath import mpf

from conformance.oracle.cache import decode, encode
from reference import double_double as dd
from reference import ledger, vectorised
from reference.formats import get_format, nearest_float64, round_float64_array, round_to_format
from reference.oracle import evaluate
from reference.pairs import ExactPairs
from reference.problem import prepare

HIGH = 400


def exact_sum(h: float, lo: float) -> mpf:
    return mpf(h) + mpf(lo)


def hard_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random magnitudes over many binades, with signs, ties of exponents and exact values."""
    values = rng.standard_normal(n) * np.exp2(rng.integers(-60, 60, n).astype(float))
    values[: n // 8] = np.round(values[: n // 8])  # integers: many trailing zeros
    return values


# --- the primitives ---------------------------------------------------------------------------


def test_error_free_transformations_are_exact() -> None:
    rng = np.random.default_rng(1)
    a, b = hard_floats(rng, 400), hard_floats(rng, 400)
    with mpmath.workprec(HIGH):
        for (s, t), op in ((dd.two_sum(a, b), "sum"), (dd.two_prod(a, b), "prod")):
            for i in range(len(a)):
                want = mpf(a[i]) + mpf(b[i]) if op == "sum" else mpf(a[i]) * mpf(b[i])
                assert exact_sum(s[i], t[i]) == want
                assert s[i] == float(want)  # hi = RN(hi + lo): the nearest float64


@pytest.mark.parametrize("operation", ["add", "add_fp", "mul", "mul_fp"])
def test_double_double_operations_keep_their_bound(operation: str) -> None:
    rng = np.random.default_rng(2)
    n = 300
    xh = hard_floats(rng, n)
    xl = xh * rng.uniform(-1, 1, n) * 2.0 ** -54
    xh, xl = dd.fast_two_sum(xh, xl)
    yh = hard_floats(rng, n)
    yl = yh * rng.uniform(-1, 1, n) * 2.0 ** -54
    yh, yl = dd.fast_two_sum(yh, yl)
    if operation == "add":
        zh, zl = dd.dd_add(xh, xl, yh, yl)
    elif operation == "add_fp":
        zh, zl = dd.dd_add_fp(xh, xl, yh)
    elif operation == "mul":
        zh, zl = dd.dd_mul(xh, xl, yh, yl)
    else:
        zh, zl = dd.dd_mul_fp(xh, xl, yh)
    worst = 0.0
    with mpmath.workprec(HIGH):
        for i in range(n):
            x, y = exact_sum(xh[i], xl[i]), exact_sum(yh[i], yl[i])
            if operation in ("add_fp", "mul_fp"):
                y = mpf(yh[i])
            want = x + y if operation.startswith("add") else x * y
            if want == 0:
                continue
            worst = max(worst, float(abs(exact_sum(zh[i], zl[i]) - want) / abs(want)))
            assert zh[i] == float(exact_sum(zh[i], zl[i]))  # normalised
    assert worst <= 7 * 2.0 ** -106  # the published bounds (7u**2 at most), well inside BOUND
    assert dd.BOUND >= 16 * 2.0 ** -106


def exp_arguments() -> tuple[np.ndarray, np.ndarray]:
    """Random shifts in [-600, 0] and hard ones: 0, tiny, the ends, table boundaries."""
    rng = np.random.default_rng(3)
    random_part = -np.abs(rng.standard_normal(200) * 40)
    step = np.log(2) / 1024
    hard = [0.0, -1e-300, -2.0 ** -60, -1e-8, -600.0, -599.999999, -np.log(2), -1.0,
            -step / 2, -step * 1.5, -step * 1000.5, -np.log(2) / 32768, -745.0 / 2]
    sh = np.concatenate([random_part, hard])
    sl = np.zeros_like(sh)
    sl[:50] = sh[:50] * rng.uniform(-1, 1, 50) * 2.0 ** -54  # arguments with a low part
    sh, sl = dd.fast_two_sum(sh, sl)
    sh = np.minimum(sh, 0.0)
    sl = np.where(sh == 0, 0.0, sl)
    return sh, sl


@pytest.mark.parametrize("quick", [False, True])
def test_exp_keeps_its_stated_bound(quick: bool) -> None:
    sh, sl = exp_arguments()
    eh, el, rel = (dd.exp_quick if quick else dd.exp_dd)(sh, sl)
    assert rel < (2.0 ** -79 if quick else 2.0 ** -95)
    with mpmath.workprec(HIGH):
        for i in range(len(sh)):
            want = mpmath.exp(exact_sum(sh[i], sl[i]))
            assert abs(exact_sum(eh[i], el[i]) - want) <= want * rel
            assert eh[i] == float(exact_sum(eh[i], el[i]))


def test_exp_outside_its_domain_gives_no_bound() -> None:
    assert dd.exp_relative_bound(0.01) == np.inf
    assert dd.exp_quick_relative_bound(0.01, 0.0) == np.inf


# --- the path against the MPFR path -----------------------------------------------------------


def both(op: str, x: object, **kwargs: object) -> tuple[object, object, bool]:
    """The oracle's result with and without the vectorised path, and whether it was taken."""
    problem = prepare(op, x, kwargs.get("target"), kwargs.get("weight"),
                      kwargs.get("ignore_index", -100), kwargs.get("reduction", "mean"),
                      kwargs.get("label_smoothing", 0.0))
    fmt = get_format(str(kwargs.get("dtype", "float64")))
    took = vectorised.evaluate(problem, fmt, bool(kwargs.get("grad", True))) is not None
    fast = evaluate(op, x, **kwargs)  # type: ignore[arg-type]
    vectorised.ENABLED = False
    try:
        slow = evaluate(op, x, **kwargs)  # type: ignore[arg-type]
    finally:
        vectorised.ENABLED = True
    return fast, slow, took


def rounds_alike(a: object, b: object, dtype: str) -> bool:
    fmt = get_format(dtype)
    views = []
    for values in (a, b):
        nearest = nearest_float64(values).reshape(-1)
        rounded, midpoints = round_float64_array(nearest, fmt)
        exact = np.asarray(values, dtype=object).reshape(-1) if midpoints.any() else None
        for i in np.flatnonzero(midpoints):
            assert exact is not None
            rounded[i] = float(round_to_format(exact[i], fmt))
        views.append((nearest, rounded))
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(*views))


def assert_same(fast: object, slow: object, dtype: str) -> None:
    for name in ("output", "grad"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert rounds_alike(a, b, dtype), name
    for name in ("output_bound", "grad_bound"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.array_equal(a, b, equal_nan=True), name  # the very same bounds
    assert fast.certified == slow.certified  # type: ignore[attr-defined]


def random_problem(rng: random.Random) -> tuple[str, list, dict]:
    op = rng.choice(["cross_entropy"] * 3 + ["softmax", "log_softmax"])
    classes, rows = rng.randint(1, 9), rng.randint(1, 4)
    scale = rng.choice([1.0, 3.0, 30.0, 300.0])
    dtype = rng.choice(["float64", "float32", "float16", "bfloat16"])
    fmt = get_format(dtype)
    x = [[float(round_to_format(rng.gauss(0, 1) * scale, fmt)) for _ in range(classes)]
         for _ in range(rows)]
    if rng.random() < 0.1 and classes > 1:
        x[0][1] = x[0][0]  # a tie
    kwargs: dict = {"dtype": dtype}
    if op == "cross_entropy":
        if rng.random() < 0.5:
            target: list = [rng.randrange(classes) for _ in range(rows)]
            if rng.random() < 0.2:
                target[0] = -100
        else:
            target = [[float(round_to_format(rng.random(), fmt)) for _ in range(classes)]
                      for _ in range(rows)]
        kwargs["target"] = target
        if rng.random() < 0.5:
            kwargs["weight"] = [float(round_to_format(rng.uniform(0, 3), fmt))
                                for _ in range(classes)]
        kwargs["label_smoothing"] = rng.choice([0.0, 0.0, 0.1, 1.0])
        kwargs["reduction"] = rng.choice(["none", "mean", "sum"])
    return op, x, kwargs


def independent(op: str, x: list, kwargs: dict) -> object:
    """The problem at 4000 bits by the mpmath definitions (reference/definitions.py, the
    formulas of SPEC.md), nothing else: a referee where the two paths disagree."""
    from reference import compute, mpfr

    problem = prepare(op, x, kwargs.get("target"), kwargs.get("weight"), -100,
                      kwargs.get("reduction", "mean"), kwargs.get("label_smoothing", 0.0))
    saved = mpfr.gmpy2
    mpfr.gmpy2 = None  # the mpmath definitions only
    try:
        with mpmath.workprec(4000):
            return compute.compute(problem, True)
    finally:
        mpfr.gmpy2 = saved


def test_a_thousand_random_problems_round_as_on_the_mpfr_path() -> None:
    rng = random.Random(19)
    taken = 0
    disagreements = []
    for _ in range(1000):
        op, x, kwargs = random_problem(rng)
        fast, slow, took = both(op, x, **kwargs)
        taken += took
        try:
            assert_same(fast, slow, kwargs["dtype"])
        except AssertionError:
            # where they disagree, 4000 bits say which is right (for the failure's message)
            referee = independent(op, x, kwargs)
            sides = [name for name, result in (("vectorised", fast), ("mpfr", slow))
                     if rounds_alike(result.grad, referee.grad, kwargs["dtype"])
                     and rounds_alike(result.output, referee.output, kwargs["dtype"])]
            disagreements.append((op, x, kwargs, sides))
    # none: the MPFR path once took gradients lost to cancellation (p_c - 1 with p_c within
    # 2**-p of 1) for zeros, certified by Ziv's loop; it now computes them without the
    # cancelling subtraction (reference/mpfr.py)
    assert not disagreements
    # most of them take the vectorised path (the rest: shifts below -600, exact zeros, ...),
    # so the comparison compares it
    assert taken >= 700


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("target", ["index", "probability"])
def test_large_rows_with_weights_and_smoothing(reduction: str, target: str) -> None:
    rng = np.random.default_rng(4)
    x = np.round(rng.standard_normal((3, 3000)) * 3, 3).astype(np.float32).astype(np.float64)
    y: object = rng.integers(0, 3000, 3)
    if target == "probability":
        y = rng.dirichlet(np.ones(3000), 3).astype(np.float32).astype(np.float64)
    weight = rng.uniform(0.5, 2, 3000).astype(np.float32).astype(np.float64)
    fast, slow, took = both("cross_entropy", x, target=y, weight=list(weight),
                            label_smoothing=0.1, reduction=reduction, dtype="float32")
    assert took
    assert_same(fast, slow, "float32")


# --- what the path does not decide goes to the MPFR path ---------------------------------------


def test_an_exact_zero_by_cancellation_falls_back() -> None:
    # equal logits: log_softmax's gradient 1 - C p is exactly 0, which no bound can certify
    problem = prepare("log_softmax", [[1.0, 1.0, 1.0, 1.0]], None, None, -100, "mean", 0.0)
    assert vectorised.ineligible(problem) is None
    assert vectorised.evaluate(problem, get_format("float32"), True) is None
    result = evaluate("log_softmax", [[1.0, 1.0, 1.0, 1.0]], dtype="float32")
    assert result.precision >= 128 and result.certified  # the MPFR path's, Ziv's way
    assert all(g == 0 for g in result.grad.reshape(-1))


def test_one_undecided_element_sends_the_problem_to_the_mpfr_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    x, target = [[0.5, -1.25, 2.0], [0.25, 0.0, 1.0]], [2, 0]
    assert evaluate("cross_entropy", x, target=target).precision == vectorised.PRECISION
    real = ledger.decided_mask
    seen = []

    def one_undecided(f, r, e, fmt, sided=False):  # type: ignore[no-untyped-def]
        mask = real(f, r, e, fmt, sided)
        if sided and mask.size > 1:  # the vectorised path's gradient block
            seen.append(mask.size)
            mask = mask.copy()
            mask.flat[1] = False
        return mask

    monkeypatch.setattr(ledger, "decided_mask", one_undecided)
    result = evaluate("cross_entropy", x, target=target)
    assert seen  # the vectorised path ran, twice (quick, then exp_dd), and gave up
    assert result.precision >= 128 and result.certified
    monkeypatch.undo()
    assert_same(result, evaluate("cross_entropy", x, target=target), "float64")


@pytest.mark.parametrize("op, kwargs, why", [
    ("nll_loss", {"target": [0]}, "op"),
    ("cross_entropy", {"target": [0], "weight": [-1.0, 1.0]}, "weight"),
    ("cross_entropy", {"target": [[-0.5, 1.5]]}, "probability"),
    ("softmax", {"input": [[1.0, float("inf")]]}, "logit"),
    ("softmax", {"input": [[1e300, 0.0]]}, "logit"),
])
def test_the_whitelist_sends_the_rest_to_the_mpfr_path(op: str, kwargs: dict,
                                                       why: str) -> None:
    x = kwargs.pop("input", [[-0.5, 1.0]])
    problem = prepare(op, x, kwargs.get("target"), kwargs.get("weight"), -100, "mean", 0.0)
    reason = vectorised.ineligible(problem)
    assert reason is not None and why in reason


def test_a_problem_with_a_field_it_does_not_know_is_not_taken() -> None:
    problem = prepare("softmax", [[1.0, 2.0]], None, None, -100, "mean", 0.0)

    @dataclasses.dataclass(frozen=True)
    class Wider(type(problem)):  # type: ignore[misc]
        sample_weight: object = None
        temperature: object = None

    same = {f.name: getattr(problem, f.name) for f in dataclasses.fields(problem)}
    unknown = Wider(**same)  # a field it has never heard of, even unset: not taken
    assert vectorised.ineligible(unknown) is not None
    assert vectorised.evaluate(unknown, get_format("float64"), True) is None

    @dataclasses.dataclass(frozen=True)
    class Known(type(problem)):  # type: ignore[misc]
        sample_weight: object = None

    assert vectorised.ineligible(Known(**same)) is None  # an option left unused
    assert vectorised.ineligible(Known(**{**same, "sample_weight": [2.0]})) is not None


def test_shifts_below_its_exp_domain_fall_back() -> None:
    fast, slow, took = both("cross_entropy", [[0.0, -700.0, 1.0]], target=[1])
    assert not took
    assert_same(fast, slow, "float64")


# --- large results as pairs ---------------------------------------------------------------------


def test_large_results_are_exact_pairs_that_the_cache_keeps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from reference import pairs

    monkeypatch.setattr(pairs, "MATERIALIZE", 4)
    x = [[0.5, -1.25, 2.0], [0.25, 0.0, 1.0]]
    result = evaluate("cross_entropy", x, target=[2, 0], reduction="none")
    assert isinstance(result.grad, ExactPairs) and not isinstance(result.output, ExactPairs)
    monkeypatch.setattr(pairs, "MATERIALIZE", 1 << 14)
    reference = evaluate("cross_entropy", x, target=[2, 0], reduction="none")
    assert np.array_equal(nearest_float64(result.grad), nearest_float64(reference.grad))
    exact = np.asarray(result.grad, dtype=object)
    assert all(isinstance(v, mpf) for v in exact.reshape(-1))
    with mpmath.workprec(HIGH):
        assert all(v == mpf(h) + mpf(lo) for v, h, lo in zip(
            exact.reshape(-1), result.grad.hi.reshape(-1), result.grad.lo.reshape(-1)))
    back = decode(encode(result, "k", "v"), "k", "v")
    assert back.grad == result.grad  # the same pairs, exactly
    assert back.output.tolist() == result.output.tolist()
