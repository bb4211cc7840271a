"""The comparison rules (conformance/judge/compare.py) on values worked out independently.

Exact values come from mpmath at high precision in the test; positions on a format's grid
from the IEEE encodings (``struct``); simulated frameworks are numpy evaluations in the
dtype under test, stable (max-shifted) or deliberately not.
"""

from __future__ import annotations

import argparse
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import mpmath
import numpy as np
import pytest
from mpmath import mpf

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.cases.loading import load_file
from conformance.cases.problem import Problem
from conformance.judge.check import check_case
from conformance.judge.compare import (
    BEHAVIOUR,
    NUMERIC,
    RUN_SCALE_VARIABLE,
    SEMANTIC,
    SPECIAL_VALUE,
    Tolerance,
    compare,
    policy_k,
    tolerance_for,
)
from reference.formats import round_to_float
from reference.oracle import evaluate

NUMPY_TYPES: dict[str, Any] = {"float64": np.float64, "float32": np.float32,
                               "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def float32_position(value: float) -> int:
    """The position of a float32 on its grid: its encoding read as an integer (sign apart)."""
    (bits,) = struct.unpack("<I", struct.pack("<f", value))
    return bits & 0x7FFFFFFF


def exact_loss(row: list[float], target: int) -> mpf:
    with mpmath.workprec(600):
        return mpmath.log(mpmath.fsum(mpmath.exp(mpf(v)) for v in row)) - mpf(row[target])


# --- the "done means" items ---------------------------------------------------------------------


@pytest.mark.parametrize("returned", [0.0, -0.0])
def test_tiny_loss_returned_as_zero_passes_with_its_ulp_error_shown(returned: float) -> None:
    # logits [20, 0], target 0: the float32 loss is about 2.06e-9; a float evaluation of
    # logsumexp - x_t returns 0 (or -0.0 through -(0 - 0)).  Within the bound; its ULP error
    # is the number of float32 values between 0 and RN(2.06e-9).
    result = evaluate("cross_entropy", [[20.0, 0.0]], target=[0], dtype="float32")
    assert result.output_bound is not None
    comparison = compare(result.output, np.array(returned), "float32", result.output_bound)
    assert comparison.passed and comparison.kind is None
    loss = exact_loss([20.0, 0.0], 0)
    assert 2.0611e-9 < loss < 2.0612e-9
    assert comparison.max_ulp_error == float32_position(round_to_float(loss, "float32"))
    assert comparison.max_ulp_error > 8e8
    assert comparison.max_abs_error == pytest.approx(float(loss), rel=1e-12)
    assert comparison.max_rel_error == 1.0


def test_offset_of_1e4_leaves_the_bound_unchanged_and_0004_off_fails() -> None:
    rows = [[1.0, 2.0, 3.0]]
    shifted = [[10001.0, 10002.0, 10003.0]]
    plain = evaluate("cross_entropy", rows, target=[0], dtype="float32")
    moved = evaluate("cross_entropy", shifted, target=[0], dtype="float32")
    assert plain.output_bound is not None and moved.output_bound is not None
    assert float(plain.output_bound) == float(moved.output_bound)
    loss = exact_loss([10001.0, 10002.0, 10003.0], 0)
    assert abs(loss - exact_loss([1.0, 2.0, 3.0], 0)) < mpf(10) ** -100
    # float32 spacing at 1e4 is 2**-10 ~ 0.001: a bound scaling with |x| would admit 0.004
    off = float(loss) + 0.004
    comparison = compare(moved.output, np.array(off), "float32", moved.output_bound)
    assert not comparison.passed and comparison.kind == NUMERIC
    assert comparison.max_abs_error == pytest.approx(0.004, rel=1e-9)
    # while the correctly rounded loss passes with 0 ULP
    good = compare(moved.output, np.array(round_to_float(loss, "float32")), "float32",
                   moved.output_bound)
    assert good.passed and good.max_ulp_error == 0


def test_nan_where_the_oracle_is_finite_is_a_special_value_discrepancy() -> None:
    result = evaluate("cross_entropy", [[1.0, 2.0, 3.0]] * 3, target=[2, 1, 0],
                      dtype="float32")
    assert result.output_bound is not None
    comparison = compare(result.output, np.array(math.nan), "float32", result.output_bound)
    assert not comparison.passed and comparison.kind == SPECIAL_VALUE
    assert comparison.special_mismatches == 1
    assert "nan" in comparison.message


# --- special values -------------------------------------------------------------------------


def _exact(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = [mpf(v) for v in values]
    return array


@pytest.mark.parametrize(
    ("expected", "actual", "dtype", "mismatch"),
    [
        ("nan", math.nan, "float32", False),
        ("nan", 1.0, "float32", True),
        ("inf", math.inf, "float32", False),
        ("inf", -math.inf, "float32", True),
        ("inf", 3.4028234663852886e38, "float32", True),
        ("-inf", math.nan, "float16", True),
        (1.5, math.inf, "float32", True),
        (1.5, math.nan, "bfloat16", True),
        # 65519 rounds to 65504 in float16; with a bound of 100 a stable evaluation may
        # reach 65520, the overflow threshold: inf is then a value it can return
        (65519.0, math.inf, "float16", False),
        (65400.0, math.inf, "float16", True),
        (-65519.0, math.inf, "float16", True),  # the wrong infinity
    ],
)
def test_special_value_pattern(expected: Any, actual: float, dtype: str, mismatch: bool) -> None:
    comparison = compare(_exact([expected]), np.array([actual]), dtype, np.array([100.0]),
                         Tolerance(k=1.0))
    assert (comparison.kind == SPECIAL_VALUE) is mismatch
    assert comparison.passed is not mismatch


@pytest.mark.parametrize(
    ("expected", "actual", "bound", "kind"),
    [
        (0, -0.0, 0.0, None),  # an exact zero has no sign
        (0, 0.0, 0.0, None),
        ("1e-30", -0.0, 1e-20, None),  # within the bound: either zero is a stable result
        ("-1e-30", 0.0, 1e-20, None),
        ("1e-3", -0.0, 1e-20, SPECIAL_VALUE),  # a sure positive returned as -0
        ("-1e-3", 0.0, 1e-20, SPECIAL_VALUE),
        ("1e-3", 0.0, 1e-20, NUMERIC),  # right sign, wrong value
    ],
)
def test_sign_of_zero(expected: Any, actual: float, bound: float, kind: str | None) -> None:
    comparison = compare(_exact([expected]), np.array([actual]), "float32", np.array([bound]),
                         Tolerance(k=1.0))
    assert comparison.kind == kind
    assert comparison.max_ulp_error >= 0


def test_shape_mismatch_is_behaviour() -> None:
    comparison = compare(_exact([1, 2]), np.array([1.0, 2.0, 3.0]), "float32", np.ones(2))
    assert not comparison.passed and comparison.kind == BEHAVIOUR


# --- errors and ULPs -----------------------------------------------------------------------------


def test_errors_and_ulps_on_hand_values() -> None:
    with mpmath.workprec(200):
        third = mpf(1) / 3
    expected = np.empty(3, dtype=object)
    expected[:] = [third, mpf(1), mpf(-2)]
    rn = round_to_float(third, "float32")  # 11184811 * 2**-25, above 1/3
    actual = np.array([rn, 1 - 2.0 ** -24, -2.0 - 2 * 2.0 ** -22])
    comparison = compare(expected, actual, "float32", np.full(3, 1.0))
    # third: correctly rounded (0 ULP); 1: one value below; -2: two values below (spacing
    # 2**-22 above 2 in magnitude)
    assert comparison.max_ulp_error == 2
    assert comparison.max_abs_error == 2 * 2.0 ** -22
    with mpmath.workprec(200):
        third_error = float(abs(mpf(rn) - third))
    assert third_error == pytest.approx(1 / 3 * 2.0 ** -24 / (1 + 2.0 ** -24) * 1, rel=0.5)
    assert comparison.max_rel_error == pytest.approx(2.0 ** -22, rel=1e-12)


def test_float64_errors_include_the_exact_residual() -> None:
    # RN64(1/3) is 1/3 - 1/3 * 2**-54: a float64 figure against float64(1/3) would be 0
    with mpmath.workprec(200):
        third = mpf(1) / 3
        error = abs(mpf(1 / 3) - third)
    expected = np.empty(1, dtype=object)
    expected[0] = third
    comparison = compare(expected, np.array([1 / 3]), "float64", np.ones(1))
    assert comparison.max_ulp_error == 0
    assert comparison.max_abs_error == pytest.approx(float(error), rel=1e-12)
    assert comparison.max_abs_error > 0


@pytest.mark.parametrize("side", [-1, 1])
def test_verdict_is_exact_at_the_bound(side: int) -> None:
    # the error |0.3 - 1/3| is not a float64; a bound one float64 step below it fails and
    # one step above it passes, decided in mpmath (the float64 figures cannot tell)
    with mpmath.workprec(300):
        third = mpf(1) / 3
        error = abs(mpf(0.3) - third)
    nearest = float(error)
    bound = float(np.nextafter(nearest, math.inf if side > 0 else 0.0))
    if side < 0 and bound >= error:
        bound = float(np.nextafter(bound, 0.0))
    if side > 0 and bound < error:
        bound = float(np.nextafter(bound, math.inf))
    expected = np.empty(1, dtype=object)
    expected[0] = third
    comparison = compare(expected, np.array([0.3]), "float64", np.array([bound]),
                         Tolerance(k=1.0))
    assert comparison.passed is (side > 0)


# --- tolerance: the policy, a case's override, a run's ----------------------------------------


def test_tolerance_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    k = policy_k("cross_entropy", "grad", "bfloat16")
    assert tolerance_for("cross_entropy", "grad", "bfloat16") == Tolerance(k, 1.0, "policy")
    assert tolerance_for("cross_entropy", "grad", "float32", 3).factor == 3 * k
    case = {"k": {"output": 8}, "scale": 2, "reason": "blocked sums"}
    output = tolerance_for("softmax", "output", "float16", case)
    grad = tolerance_for("softmax", "grad", "float16", case)
    assert (output.k, output.scale, output.source, output.reason) == (8, 2, "case",
                                                                        "blocked sums")
    assert (grad.k, grad.factor) == (k, 2 * k)
    both = tolerance_for("softmax", "grad", "float16", case, scale=0.5)
    assert both.factor == k and both.source == "case+run"
    assert tolerance_for("softmax", "grad", "float16", {"k": 5}).k == 5


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "0", "-1", "abc", "NaN"])
def test_the_run_scale_variable_must_be_finite_and_positive(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from conformance.judge.compare import run_scale

    monkeypatch.setenv(RUN_SCALE_VARIABLE, value)
    with pytest.raises(ValueError) as caught:
        run_scale()
    assert f"${RUN_SCALE_VARIABLE} must be a finite number > 0, got {value!r}" == str(caught.value)
    monkeypatch.setenv(RUN_SCALE_VARIABLE, " 2.5 ")
    assert run_scale() == 2.5


@pytest.mark.parametrize("override", [
    math.nan, math.inf, {"k": math.nan}, {"scale": math.inf}, {"scale": math.nan},
    {"k": {"grad": math.inf}}, (("k", (("grad", math.nan),)),), {"k": 0}, -2.0,
])
def test_a_case_tolerance_that_is_not_finite_and_positive_is_refused(override: Any) -> None:
    """Cases are checked at load; a Case built in code is refused where the tolerance is read,
    never turned into a bound that passes everything."""
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        tolerance_for("cross_entropy", "grad", "float32", override)


def test_a_run_scale_that_is_not_finite_is_refused_where_it_is_read() -> None:
    for scale in (math.nan, math.inf, 0.0):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            tolerance_for("cross_entropy", "grad", "float32", None, scale=scale)


def test_a_tolerance_factor_scales_the_verdict() -> None:
    expected = _exact([1])
    actual = np.array([1.0 + 3 * 2.0 ** -23])  # error 3 * 2**-23
    bound = np.array(2.0 ** -23)
    assert not compare(expected, actual, "float32", bound, Tolerance(k=2.0)).passed
    assert compare(expected, actual, "float32", bound, Tolerance(k=2.0, scale=2.0)).passed


# --- simulated frameworks: stable evaluations pass, an unstable one fails -------------------------


def _stable_loss_and_grad(x: np.ndarray, t: np.ndarray,
                          dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """cross_entropy (mean) and its gradient in numpy arithmetic of ``dtype``."""
    kind = NUMPY_TYPES[dtype]
    x = x.astype(kind)
    n = x.shape[0]
    m = x.max(axis=1, keepdims=True)
    s = x - m
    total = np.exp(s).sum(axis=1, keepdims=True, dtype=kind)
    log_total = np.log(total)
    rows = np.arange(n)
    losses = -(s - log_total)[rows, t]
    loss = losses.astype(kind).sum(dtype=kind) / kind(n)
    p = np.exp(s - log_total)
    onehot = np.zeros(x.shape, dtype=kind)
    onehot[rows, t] = 1
    grad = (p - onehot) / kind(n)
    return np.asarray(loss, dtype=np.float64), grad.astype(np.float64)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("offset", [0.0, 96.0])
def test_a_stable_evaluation_in_the_dtype_passes(dtype: str, offset: float) -> None:
    rng = np.random.default_rng(11)
    for _ in range(4):
        x = rng.normal(scale=3.0, size=(8, 33)) + offset
        x = np.vectorize(lambda v: round_to_float(v, dtype))(x)
        t = rng.integers(0, 33, size=8)
        result = evaluate("cross_entropy", x, target=[int(v) for v in t], dtype=dtype)
        assert result.output_bound is not None and result.grad_bound is not None
        loss, grad = _stable_loss_and_grad(x, t, dtype)
        output = compare(result.output, loss, dtype, result.output_bound)
        gradient = compare(result.grad, grad, dtype, result.grad_bound)
        assert output.passed, output.message
        assert gradient.passed, gradient.message


def test_an_evaluation_that_adds_the_maximum_back_fails_at_an_offset() -> None:
    rng = np.random.default_rng(5)
    x = np.vectorize(lambda v: round_to_float(v, "float32"))(
        rng.normal(size=(8, 33)) + 1e4)
    t = rng.integers(0, 33, size=8)
    result = evaluate("cross_entropy", x, target=[int(v) for v in t], reduction="none",
                      dtype="float32")
    assert result.output_bound is not None
    kind = np.float32
    xs = x.astype(kind)
    m = xs.max(axis=1)
    lse = m + np.log(np.exp(xs - m[:, None]).sum(axis=1))
    unstable = (lse - xs[np.arange(8), t]).astype(np.float64)
    comparison = compare(result.output, unstable, "float32", result.output_bound)
    assert not comparison.passed and comparison.kind == NUMERIC
    assert comparison.outside >= 4


# --- through check_case: kinds and tolerance sources in the records ----------------------------


@dataclass(frozen=True)
class DeclaringApi(Api):
    semantics: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


class FixedAdapter(Adapter):
    """Returns the correctly rounded oracle values, with its output replaced by ``value``."""

    name = "fixed"

    def __init__(self, value: float | None = None, api: Api | None = None) -> None:
        self.value = value
        self.api = api or Api("cross_entropy", "fixed.cross_entropy", "cross_entropy",
                              frozenset({"reduction_mean", "index_target"}))

    def version(self) -> str:
        return "1"

    def apis(self) -> tuple[Api, ...]:
        return (self.api,)

    def devices(self) -> tuple[Device, ...]:
        return (Device("cpu", "cpu", "test"),)

    def dtypes(self) -> tuple[str, ...]:
        return ("float32",)

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        result = problem.reference()
        output = np.vectorize(lambda v: round_to_float(v, problem.dtype), otypes=[float])(
            result.output)
        grad = np.vectorize(lambda v: round_to_float(v, problem.dtype), otypes=[float])(
            result.grad)
        if self.value is not None:
            output = np.full(np.shape(output), self.value)
        return Outcome("ok", output, grad)


def _case(tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "cases.yaml"
    path.write_text(
        "cases:\n"
        "  - id: three-rows\n"
        "    source: test\n"
        "    op: cross_entropy\n"
        "    input: [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]\n"
        "    target: [2, 1, 0]\n"
        "    dtypes: [float32]\n" + extra, encoding="utf-8")
    return load_file(path)[0]


def _check(case: Any, adapter: FixedAdapter) -> list[Any]:
    return check_case(case, adapter, adapter.api, adapter.devices()[0], "float32")


def test_records_carry_the_yardsticks(tmp_path: Path) -> None:
    records = _check(_case(tmp_path), FixedAdapter())
    assert [r.quantity for r in records] == ["output", "grad"]
    for record in records:
        assert record.status == "pass" and record.max_ulp_error == 0
        assert record.bound_use is not None and 0 <= record.bound_use < 1
        assert record.tolerance == {"k": policy_k("cross_entropy", record.quantity, "float32"),
                                    "scale": 1.0, "source": "policy"}


def test_nan_record_is_special_value(tmp_path: Path) -> None:
    output = _check(_case(tmp_path), FixedAdapter(math.nan))[0]
    assert (output.status, output.kind) == ("fail", SPECIAL_VALUE)


def test_declared_definition_makes_a_discrepancy_semantic(tmp_path: Path) -> None:
    api = DeclaringApi("cross_entropy", "declaring.cross_entropy", "cross_entropy",
                       frozenset({"reduction_mean", "index_target"}),
                       semantics={"reduction_mean": "mean over all rows, unweighted"})
    output = _check(_case(tmp_path), FixedAdapter(1.5, api))[0]
    assert (output.status, output.kind) == ("fail", SEMANTIC)
    assert "mean over all rows, unweighted" in output.message
    plain = _check(_case(tmp_path), FixedAdapter(1.5))[0]
    assert plain.kind == NUMERIC


def test_case_and_run_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loss = float(exact_loss([1.0, 2.0, 3.0], 2) + exact_loss([1.0, 2.0, 3.0], 1)
                 + exact_loss([1.0, 2.0, 3.0], 0)) / 3
    off = loss + 4e-5  # about 40 times the policy's bound
    assert _check(_case(tmp_path), FixedAdapter(off))[0].status == "fail"
    case = _case(tmp_path, "    tolerance: {scale: 100, reason: widened for the test}\n")
    record = _check(case, FixedAdapter(off))[0]
    assert record.status == "pass"
    assert record.tolerance == {"k": policy_k("cross_entropy", "output", "float32"),
                                "scale": 100.0, "source": "case",
                                "reason": "widened for the test"}
    monkeypatch.setenv(RUN_SCALE_VARIABLE, "100")
    record = _check(_case(tmp_path), FixedAdapter(off))[0]
    assert record.status == "pass" and record.tolerance["source"] == "run"


@pytest.mark.parametrize(("expected", "actual", "kind"), [
    ("inf", math.inf, None), ("inf", 1.0, SPECIAL_VALUE), ("nan", math.nan, None),
    (2.5, 2.5, None), ("1e-3", -0.0, SPECIAL_VALUE),
])
def test_scalars_compare_like_arrays(expected: Any, actual: float, kind: str | None) -> None:
    # a reduced loss is a 0-d array
    value = np.empty((), dtype=object)
    value[()] = mpf(expected)
    comparison = compare(value, np.array(actual), "float32", np.array(1e-9))
    assert comparison.kind == kind


def test_run_option_sets_the_scale_for_the_run_only(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    from conformance import cli

    monkeypatch.delenv(RUN_SCALE_VARIABLE, raising=False)
    seen: list[str | None] = []

    def fake_run(args: argparse.Namespace) -> int:  # what the workers would inherit
        seen.append(os.environ.get(RUN_SCALE_VARIABLE))
        return 0

    out = str(tmp_path / "r.jsonl")
    assert cli.main(["run", "--cases", "none.yaml", "--out", out,
                     "--tolerance-scale", "-1"]) == 2
    monkeypatch.setattr(cli, "cmd_run", fake_run)
    assert cli.main(["run", "--cases", "none.yaml", "--out", out,
                     "--tolerance-scale", "2.5"]) == 0
    assert seen == ["2.5"]
    assert RUN_SCALE_VARIABLE not in os.environ
