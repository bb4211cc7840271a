"""A case made concrete for one dtype: the exact numbers a framework is handed.

Every number of the case (logits, probability targets, weights) is rounded once to the dtype
under test by ``reference.formats`` (round to nearest, ties to even).  The arrays are float64
holding those exactly representable values, so a framework's cast to the dtype is exact and
the oracle converts the very same values to mpmath without error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.cases.generate import LINEAR_OP, materialize, materialize_linear, round_array
from conformance.cases.loading import Case
from reference.formats import round_to_float
from reference.linear import LinearResult, evaluate_linear
from reference.oracle import OracleResult, evaluate
from reference.problem import class_axis_of


@dataclass(frozen=True, eq=False)
class Problem:
    """The inputs of ``case`` rounded to ``dtype``; targets are int64 (indices) or float64."""

    case: Case
    dtype: str
    input: np.ndarray
    target: np.ndarray | None
    weight: np.ndarray | None
    # linear_cross_entropy: the linear layer (C, D) and its bias (C,), rounded like the rest
    linear_weight: np.ndarray | None = None
    linear_bias: np.ndarray | None = None
    # issue 20: per-example weights rounded to the dtype (shaped like the input without its
    # class axis) and the class mask (booleans shaped like the input), None when unused
    sample_weight: np.ndarray | None = None
    where: np.ndarray | None = None

    @property
    def class_axis(self) -> int:
        return class_axis_of(self.input.ndim, self.case.axis)

    def oracle_options(self) -> dict[str, Any]:
        """The oracle's keyword arguments for issue 20's keys, only those the case uses (so
        an oracle that does not know one is never handed it by a case without it)."""
        options: dict[str, Any] = {}
        if self.case.axis is not None:
            options["axis"] = self.case.axis
        if self.sample_weight is not None:
            options["sample_weight"] = self.sample_weight
        if self.where is not None:
            options["where"] = self.where
        return options

    @property
    def classes(self) -> int:
        if self.linear_weight is not None:
            return int(self.linear_weight.shape[0])
        return int(self.input.shape[self.class_axis])

    @property
    def index_target(self) -> bool:
        return self.target is not None and self.target.dtype.kind == "i"

    def reference(self, grad: bool | None = None) -> OracleResult | LinearResult:
        """The oracle's result on exactly these inputs (raises ``OracleDomainError``):
        ``reference.linear.evaluate_linear``'s for linear_cross_entropy."""
        case = self.case
        if case.op == LINEAR_OP:
            return evaluate_linear(
                self.input, linear_weight=self.linear_weight, linear_bias=self.linear_bias,
                target=_target_for_oracle(self.target), weight=_list(self.weight),
                ignore_index=case.ignore_index, reduction=case.reduction,
                label_smoothing=case.label_smoothing,
                grad=case.grad if grad is None else grad, dtype=self.dtype)
        return evaluate(
            case.op, self.input, target=_target_for_oracle(self.target), weight=_list(self.weight),
            ignore_index=case.ignore_index, reduction=case.reduction,
            label_smoothing=case.label_smoothing,
            grad=case.grad if grad is None else grad, dtype=self.dtype,
            **self.oracle_options(),
        )


def make_problem(case: Case, dtype: str) -> Problem:
    """Round ``case``'s inputs to ``dtype`` (generated ones are generated first, in float64,
    identically for every dtype and framework: ``conformance.cases.generate``)."""
    if case.op == LINEAR_OP:
        return _linear_problem(case, dtype)
    values = materialize(case.input, case.target, case.weight, case.ignore_index)
    target = None
    if values.target is not None:
        target = (
            _rounded(values.target, dtype) if case.has_probability_target
            else np.asarray(values.target, dtype=np.int64)
        )
    weight = None if values.weight is None else _rounded(values.weight, dtype)
    sample_weight = None if case.sample_weight is None else _rounded(case.sample_weight, dtype)
    where = None if case.where is None else np.asarray(case.where, dtype=bool)
    return Problem(case, dtype, _rounded(values.input, dtype), target, weight,
                   sample_weight=sample_weight, where=where)


def _linear_problem(case: Case, dtype: str) -> Problem:
    values = materialize_linear(case.input, case.linear_weight, case.linear_bias, case.target,
                                case.weight, case.ignore_index)
    target = None
    if values.target is not None:
        target = (_rounded(values.target, dtype) if case.has_probability_target
                  else np.asarray(values.target, dtype=np.int64))
    weight = None if values.weight is None else _rounded(values.weight, dtype)
    bias = None if values.linear_bias is None else _rounded(values.linear_bias, dtype)
    return Problem(case, dtype, _rounded(values.input, dtype), target, weight,
                   linear_weight=_rounded(values.linear_weight, dtype), linear_bias=bias)


def _rounded(values: Any, dtype: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return round_array(values, dtype)  # generated: vectorized, the same rounding
    array = np.asarray(values, dtype=object)
    rounded = [round_to_float(_number(v), dtype) for v in array.reshape(-1)]
    return np.asarray(rounded, dtype=np.float64).reshape(array.shape)


def _number(value: Any) -> float:
    return float(value)  # also turns 'inf', '-inf', 'nan' into floats


def _list(array: np.ndarray | None) -> list[float] | None:
    return None if array is None else [float(v) for v in array]


def _target_for_oracle(target: np.ndarray | None) -> Any:
    if target is None:
        return None
    if target.dtype.kind == "i":
        return np.asarray([int(t) for t in target.reshape(-1)], dtype=object).reshape(target.shape)
    return target
