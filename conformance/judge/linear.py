"""linear_cross_entropy records: one case on one API, device and dtype -> up to four records.

The oracle (``reference.linear``) gives each quantity as float64 pairs (the nearest float64
and the exact remainder, certified), not as ``mpf``: ``PairExpected`` hands them to
``conformance.judge.compare`` as its ``Expected``, building an exact ``mpf`` only for the few
elements the comparison asks about.  The quantities are ``output``, ``grad`` (w.r.t. input),
``grad_linear_weight`` and, with a bias, ``grad_linear_bias``.  Each record is judged with
the fused bound, or with the bound that allows logits rounded to the dtype when the API
declares it materialises them (``Api.materialises_logits``); the record's ``extra`` names
the bound used and carries what the adapter reported besides the values (``Outcome.extra``,
e.g. torch's warning that it fell back to its reference path).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property, lru_cache
from typing import Any

import mpmath
import numpy as np

from conformance.adapters.base import Api, Outcome
from conformance.cases.loading import Case
from conformance.cases.problem import Problem, make_problem
from conformance.judge.compare import BEHAVIOUR, Expected, compare, run_scale, tolerance_for
from conformance.oracle import cache as oracle_cache
from conformance.results.records import Record, values_for_record
from reference.formats import exact
from reference.linear import LinearResult, Quantity

GRADIENTS = ("grad", "grad_linear_weight", "grad_linear_bias")
FUSED, MATERIALISED = "fused", "materialised logits"


class _ExactView:
    """The exact values ``nearest + residual`` of a flat pair of arrays, one ``mpf`` at a
    time (indexed like a flat array, by ``i`` or ``(i,)``)."""

    def __init__(self, nearest: np.ndarray, residual: np.ndarray) -> None:
        self._nearest, self._residual = nearest.reshape(-1), residual.reshape(-1)

    def __getitem__(self, key: Any) -> mpmath.mpf:
        i = int(key[0]) if isinstance(key, tuple) else int(key)
        value = float(self._nearest[i])
        if not np.isfinite(value):
            return mpmath.mpf(value)
        return mpmath.fadd(exact(value), exact(float(self._residual[i])), exact=True)


class PairExpected(Expected):
    """An ``Expected`` read from a ``reference.linear.Quantity``: the float64 nearest values,
    their residuals as computed (within the oracle's certified bound of the exact ones, far
    below float64's resolution) and exact values built on demand."""

    def __init__(self, quantity: Quantity) -> None:
        super().__init__(quantity.nearest, lambda: quantity.nearest)
        self._pair_residual = np.asarray(quantity.residual, dtype=np.float64)

    @cached_property
    def values(self) -> Any:
        return _ExactView(self.nearest, self._pair_residual)

    @cached_property
    def residual(self) -> np.ndarray:
        flat = self.nearest.reshape(-1)
        return np.where(np.isfinite(flat), self._pair_residual.reshape(-1), 0.0)


@lru_cache(maxsize=32)
def linear_problem_for(case: Case, dtype: str) -> Problem:
    return make_problem(case, dtype)


@lru_cache(maxsize=8)
def linear_reference_for(case: Case, dtype: str) -> LinearResult:
    """The oracle's ``LinearResult`` for ``case`` in ``dtype``, through the on-disk cache."""
    def compute() -> LinearResult:
        result = linear_problem_for(case, dtype).reference()
        assert isinstance(result, LinearResult)
        return result

    return oracle_cache.linear_reference(case, dtype, compute)


def actual_values(outcome: Outcome, quantity: str) -> np.ndarray | None:
    if quantity == "output":
        return outcome.output
    if quantity == "grad":
        return outcome.grad
    return outcome.grads.get(quantity)


def check_linear(base: Record, case: Case, api: Api, problem: Problem,
                 outcome: Outcome) -> list[Record]:
    """The records of one run of a linear_cross_entropy case (module docstring)."""
    result = linear_reference_for(case, problem.dtype)
    bound_name = MATERIALISED if api.materialises_logits else FUSED
    base = replace(base, oracle_precision=result.precision,
                   extra={"bound": bound_name, **outcome.extra,
                          **({} if result.certified
                             else {"oracle_undecided": result.undecided})})
    output = result.quantities["output"]
    if outcome.status == "error":
        return [replace(base, status="error", kind=BEHAVIOUR,
                        reference=values_for_record(output.nearest),
                        message="raised where the oracle defines a value: "
                                f"{outcome.error_type}: {outcome.message}".rstrip(": "))]
    wanted = ["output", *(q for q in GRADIENTS if case.grad and q in result.quantities)]
    override = getattr(case, "tolerance", None)
    records = []
    for quantity in wanted:
        values = result.quantities[quantity]
        actual = actual_values(outcome, quantity)
        if actual is None:
            records.append(replace(base, quantity=quantity, status="error", kind=BEHAVIOUR,
                                   message=f"the framework returned no {quantity}"))
            continue
        bound = values.materialised_bound if api.materialises_logits else values.bound
        tolerance = tolerance_for(case.op, _policy_quantity(quantity), problem.dtype,
                                  override, run_scale())
        expected = PairExpected(values)
        comparison = compare(expected, actual, problem.dtype, bound, tolerance)
        records.append(replace(
            base, quantity=quantity, status="pass" if comparison.passed else "fail",
            kind=comparison.kind, reference=values_for_record(expected.nearest),
            actual=values_for_record(actual), shape=list(expected.shape),
            max_abs_error=comparison.max_abs_error, max_rel_error=comparison.max_rel_error,
            max_ulp_error=comparison.max_ulp_error, bound_use=comparison.bound_use,
            tolerance=None if comparison.tolerance is None else comparison.tolerance.as_dict(),
            worst_index=None if comparison.worst_index is None
            else list(comparison.worst_index),
            message=comparison.message))
    return records


def _policy_quantity(quantity: str) -> str:
    """The tolerance policy's quantity: ``output``, or ``grad`` for every gradient (a case's
    ``tolerance.k.grad`` covers the three)."""
    return "output" if quantity == "output" else "grad"
