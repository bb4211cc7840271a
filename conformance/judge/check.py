"""One case on one framework API, device and dtype -> result records.

This is the single place where a case, the oracle, an adapter and the comparison rules
meet; ``conformance run`` (through its workers) and the pytest plugin both call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from typing import Any

import mpmath
import numpy as np

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.adapters.implementation import like_of
from conformance.cases.generate import LINEAR_OP
from conformance.cases.loading import Case, ExpectedError, documented_array, expected_error
from conformance.cases.problem import Problem, make_problem
from conformance.judge.compare import (
    BEHAVIOUR,
    NUMERIC,
    SEMANTIC,
    SPECIAL_VALUE,
    Comparison,
    Expected,
    Tolerance,
    compare,
    run_scale,
    tolerance_for,
)
from conformance.judge.linear import check_linear
from conformance.oracle import cache as oracle_cache
from conformance.results.records import Record, values_for_record
from reference.conventions import documented_gradient
from reference.formats import get_format
from reference.oracle import OracleResult, error_bounds
from reference.pairs import ExactPairs


@lru_cache(maxsize=256)
def problem_for(case: Case, dtype: str) -> Problem:
    return make_problem(case, dtype)


@lru_cache(maxsize=256)
def reference_for(case: Case, dtype: str) -> OracleResult:
    """The oracle's result for ``case`` in ``dtype``: from the on-disk cache when it holds it
    (``conformance.oracle.cache``), else computed (and stored there); once per process either
    way."""
    def compute() -> OracleResult:
        result = problem_for(case, dtype).reference()
        assert isinstance(result, OracleResult), "linear_cross_entropy: see judge/linear.py"
        return result

    return oracle_cache.reference(case, dtype, compute)


@dataclass(frozen=True)
class Reference:
    """What judging a run needs of the oracle's result for a case in a dtype: the values
    (float64 views, the exact values fetched only when needed), the bounds, the precision."""

    precision: int
    output: Expected
    grad: Expected | None
    output_bound: np.ndarray
    grad_bound: np.ndarray | None


@lru_cache(maxsize=256)
def expected_for(case: Case, dtype: str) -> Reference:
    """``Reference`` for ``case`` in ``dtype``, read from the oracle cache's float64 views when
    it has them (no exact value is rebuilt unless a comparison asks), else from the full
    result (``reference_for``); once per process, then shared by every API and device."""
    found = oracle_cache.summary(case, dtype)
    if found is not None and found.output_bound is not None and (
            found.grad_nearest is None or found.grad_bound is not None):
        grad = None if found.grad_nearest is None else Expected(
            found.grad_nearest, lambda: _exact(case, dtype, "grad"))
        return Reference(found.precision,
                         Expected(found.output_nearest, lambda: _exact(case, dtype, "output")),
                         grad, found.output_bound, found.grad_bound)
    result = reference_for(case, dtype)
    output_bound, grad_bound = bounds_for(case, dtype, result)
    return Reference(result.precision, Expected.of(result.output),
                     None if result.grad is None else Expected.of(result.grad),
                     output_bound, grad_bound)


def _exact(case: Case, dtype: str, quantity: str) -> np.ndarray:
    """The exact values of ``quantity`` (output or grad), read from the full result."""
    values: np.ndarray | None = getattr(reference_for(case, dtype), quantity)
    if values is None:  # the summary had this quantity, so the full entry has it too
        raise ValueError(f"{case.id}: the oracle's result in {dtype} lacks its {quantity}")
    return values


def check_case(
    case: Case, adapter: Adapter, api: Api, device: Device, dtype: str, environment_id: str = ""
) -> list[Record]:
    """Run ``case`` through ``api`` and judge the output (and the gradient, if asked)."""
    base = Record(
        case_id=case.id, op=case.op, group=case.group, framework=adapter.name,
        framework_version=adapter.version(), api=api.name, api_kind=api.kind,
        device=device.id, device_name=device.name, dtype=dtype, quantity="output",
        status="skip", case_file=case.file, environment_id=environment_id,
        extra={"like": like_of(api)} if like_of(api) else {},
    )
    reason = api.unsupported_reason(case.options())
    if reason is None and dtype not in adapter.dtypes():
        reason = f"{adapter.name} has no {dtype}"
    if reason is not None:
        return [replace(base, status="unsupported", message=reason)]
    problem = problem_for(case, dtype)
    outcome = adapter.run(api, problem, device)
    if outcome.status == "unsupported":
        return [replace(base, status="unsupported", message=_raised(outcome),
                        extra=dict(outcome.extra))]
    if case.expect == "error":
        return [_judge_expected_error(base, outcome, expected_error(case, adapter.name))]
    if case.op == LINEAR_OP:  # four quantities, judged from the oracle's float64 pairs
        return [_semantic(record, api, case, problem)
                for record in check_linear(base, case, api, problem, outcome)]
    reference = expected_for(case, dtype)
    base = replace(base, oracle_precision=reference.precision)
    if outcome.status == "error":
        return [replace(base, status="error", kind=BEHAVIOUR,
                        reference=values_for_record(reference.output.nearest),
                        message=f"raised where the oracle defines a value: {_raised(outcome)}")]
    output_bound, grad_bound = reference.output_bound, reference.grad_bound
    # the case's own override, not problem.case's: cases that differ only in their tolerance
    # compare equal, so the cached problem may hold another of them
    override = getattr(case, "tolerance", None)
    records = [_judge(base, "output", reference.output, outcome.output, problem,
                      output_bound, override)]
    if case.grad and reference.grad is not None and grad_bound is not None:
        if getattr(api, "no_grad", ""):
            records.append(replace(base, quantity="grad", status="unsupported",
                                   message=api.no_grad))
        else:
            records.append(_judge(base, "grad", reference.grad, outcome.grad, problem,
                                  grad_bound, override))
    judged = [_semantic(record, api, case, problem) for record in records]
    # after _semantic: an output in the wrong dtype is that, whatever definition the API follows
    return [_dtype_kept(judged[0], outcome, dtype), *judged[1:]]


def _dtype_kept(record: Record, outcome: Outcome, dtype: str) -> Record:
    """``record`` of the output, failed as a ``behaviour`` discrepancy when the adapter says
    the framework returned another dtype than its inputs' (``Outcome.dtype``): a float64
    run that computes in float32 is not a float64 result, whatever its values."""
    if not outcome.dtype or outcome.dtype == dtype or record.status not in ("pass", "fail"):
        return record
    note = f"returned {outcome.dtype} for {dtype} inputs"
    return replace(record, status="fail", kind=BEHAVIOUR,
                   message=f"{note}; {record.message}" if record.message else note)


def bounds_for(case: Case, dtype: str,
               reference: OracleResult) -> tuple[np.ndarray, np.ndarray | None]:
    """The oracle's error bounds for ``case`` in ``dtype``: those its result carries, else
    computed here (a result read from a cache that does not store them lacks them)."""
    if reference.output_bound is not None and (reference.grad is None
                                               or reference.grad_bound is not None):
        return reference.output_bound, reference.grad_bound
    return _computed_bounds(case, dtype)


@lru_cache(maxsize=256)
def _computed_bounds(case: Case, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    problem = problem_for(case, dtype)
    target: Any = problem.target
    if target is not None and target.dtype.kind == "i":
        target = np.asarray([int(t) for t in target.reshape(-1)],
                            dtype=object).reshape(target.shape)
    weight = None if problem.weight is None else [float(w) for w in problem.weight]
    return error_bounds(case.op, problem.input, target=target, weight=weight,
                        ignore_index=case.ignore_index, reduction=case.reduction,
                        label_smoothing=case.label_smoothing, grad=case.grad, dtype=dtype,
                        **problem.oracle_options())


# Conditions on a case's data, beyond ``Case.options()``, that an API's ``semantics`` may name
# (conformance/adapters/base.py): probability labels with a row that is not a probability
# distribution (a negative entry, or a sum other than 1).
LABELS_NOT_A_DISTRIBUTION = "labels_not_a_distribution"


def _semantic(record: Record, api: Api, case: Case, problem: Problem) -> Record:
    """A discrepancy where the API declares that it follows its own definition of something
    the case exercises is ``semantic``, with that definition named.  ``api.semantics`` maps
    a key to the definition it follows; a key is an option of ``Case.options()``, a data
    condition (``CONDITIONS``) or ``*`` (everything), and ``QUANTITY:KEY`` (``grad:...``)
    limits it to that quantity's records."""
    # A definition says what values an API computes, never what shape it returns: a wrong
    # shape (kind behaviour) stays a behaviour discrepancy whatever the API declares.
    if record.status != "fail" or record.kind == BEHAVIOUR:
        return record
    notes: dict[str, str] = dict(getattr(api, "semantics", None) or {})
    if not notes:
        return record
    used = [notes[key] for name in _exercised(case, problem, notes)
            for key in (name, f"{record.quantity}:{name}") if key in notes]
    if not used:
        return record
    return replace(record, kind=SEMANTIC,
                   message=f"{api.name} follows its own definition ({'; '.join(used)}); "
                           f"{record.message}")


def _exercised(case: Case, problem: Problem, notes: dict[str, str]) -> list[str]:
    """The keys ``case`` exercises: its options, the data conditions that hold (evaluated
    only where ``notes`` names them), then ``*``."""
    named = {key.split(":", 1)[-1] for key in notes}
    conditions = [name for name, holds in CONDITIONS.items() if name in named and holds(problem)]
    return [*case.options(), *conditions, "*"]


def _labels_not_a_distribution(problem: Problem) -> bool:
    """Probability labels with a row (along the class axis) that has a negative entry or a
    sum off 1 by more than rounding a distribution into the dtype can make it: ``u`` for
    rounding each entry of a float64 row (relative error ``u`` each, plus ``eta / 2``
    absolute where it is subnormal), plus ``C * 2**-52`` for that float64 row's own
    rounding (a generated one is normalised in float64)."""
    target = problem.target
    if target is None or problem.index_target:
        return False
    rows = np.moveaxis(np.asarray(target, dtype=np.float64), problem.class_axis, -1)
    rows = rows.reshape(-1, problem.classes)
    if not rows.size:
        return False
    if not np.isfinite(rows).all() or (rows < 0).any():
        return True
    fmt = get_format(problem.dtype)
    slack = fmt.unit_roundoff + problem.classes * (2.0 ** -52 + fmt.smallest_subnormal / 2)
    return any(abs(math.fsum(row) - 1.0) > slack for row in rows.tolist())


# Issue 20's conditions (reference/SPEC.md): an index target on a class ``where`` masks; a
# reduction whose divisor D is 0; probabilities that Keras' renormalisation or clip changes.
TARGET_MASKED = "target_masked"
ZERO_DIVISOR = "zero_divisor"
PROBS_CLIPPED = "probs_clipped"
# Keras' means (keras/src/losses/loss.py, reduce_values) beside SPEC.md's: an unbatched input
# under a mean whose divisor is not 1; class weights folded into Keras' sample weights under
# mean_with_sample_weight, which then divides by their total too.
UNBATCHED_MEAN = "unbatched_mean"
CLASS_WEIGHTS_IN_SAMPLE_WEIGHT_MEAN = "class_weights_in_sample_weight_mean"


def _target_masked(problem: Problem) -> bool:
    if problem.where is None or not problem.index_target or problem.target is None:
        return False
    mask = np.moveaxis(problem.where, problem.class_axis, -1).reshape(-1, problem.classes)
    targets = problem.target.reshape(-1)
    ignore = problem.case.ignore_index
    return any(t != ignore and 0 <= t < problem.classes and not mask[r, t]
               for r, t in enumerate(targets.tolist()))


def _mean_divisor(problem: Problem) -> Any:
    """The divisor ``D`` of the case's reduction (reference/SPEC.md, Reduction), exactly (an
    mpf), or None where the reduction does not divide (none, sum) or the op is no loss.  It
    depends on the targets, the weights and the reduction only: linear_cross_entropy's is
    that of cross_entropy on its logits' shape."""
    case = problem.case
    if case.reduction in ("none", "sum") or not case.is_loss:
        return None
    from reference.definitions import mean_divisor
    from reference.problem import prepare

    target: Any = problem.target
    op, values = case.op, problem.input
    if op == LINEAR_OP:  # the logits' values do not enter D: zeros of the logits' shape
        assert target is not None
        op = "cross_entropy"
        values = np.zeros(target.shape if not problem.index_target
                          else (*target.shape, problem.classes))
    if target is not None and target.dtype.kind == "i":
        target = np.asarray([int(t) for t in target.reshape(-1)],
                            dtype=object).reshape(target.shape)
    prepared = prepare(op, values, target,
                       None if problem.weight is None else [float(w) for w in problem.weight],
                       case.ignore_index, case.reduction, case.label_smoothing,
                       **problem.oracle_options(), dtype=problem.dtype)
    return mean_divisor(prepared)


def _zero_divisor(problem: Problem) -> bool:
    """A reduction that divides, by a divisor of 0: every target ignored, class or sample
    weights that sum to 0 (or cancel), an empty batch."""
    divisor = _mean_divisor(problem)
    return divisor is not None and bool(divisor == 0)


def _unbatched_mean(problem: Problem) -> bool:
    """An unbatched input (one row: ``(C,)`` logits, or ``(D,)`` hidden states for
    linear_cross_entropy) under a reduction that divides, by a divisor ``D`` other than 1.
    Keras' ``reduce_values`` returns a scalar loss unreduced: the row's weighted loss, the
    mean's numerator, which is the mean exactly where ``D = 1`` (an unweighted kept row, or
    sum_over_batch_size) and differs elsewhere (a class or sample weight other than 1 under
    mean or mean_with_sample_weight; ``D = 0`` is also ``zero_divisor``)."""
    if problem.input.ndim != 1:
        return False
    divisor = _mean_divisor(problem)
    return divisor is not None and bool(divisor != 1)


def _class_weights_in_sample_weight_mean(problem: Problem) -> bool:
    """Index targets with class weights under mean_with_sample_weight, where the total weight
    of the kept rows, ``sum s_r w_{t_r}``, is not their total sample weight ``sum s_r``
    (``s_r`` = 1 without sample weights): an API that folds the class weights into Keras'
    ``sample_weight`` (``s * w[t]``) has ``mean_with_sample_weight`` divide by the former,
    reference/SPEC.md by the latter."""
    case = problem.case
    if (case.reduction != "mean_with_sample_weight" or problem.weight is None
            or not problem.index_target or problem.target is None):
        return False
    targets = problem.target.reshape(-1).tolist()
    samples = ([1.0] * len(targets) if problem.sample_weight is None
               else np.asarray(problem.sample_weight, dtype=np.float64).reshape(-1).tolist())
    weights = [float(w) for w in problem.weight]
    kept = [(s, weights[t]) for s, t in zip(samples, targets)
            if t != case.ignore_index and 0 <= t < len(weights)]  # out of range: no weight
    if not all(math.isfinite(w) for _, w in kept):  # a NaN or infinite total: not sum s_r
        return True
    return (sum(Fraction(s) * Fraction(w) for s, w in kept)
            != sum(Fraction(s) for s, _ in kept))


def _probs_clipped(problem: Problem) -> bool:
    """Probabilities whose row does not sum to 1 exactly, or with a value outside Keras'
    clip [epsilon, 1 - epsilon] in the dtype: where Keras' definition and -sum y log p part."""
    if problem.case.op != "categorical_crossentropy_probs":
        return False
    from reference.formats import round_to_float
    from reference.problem import KERAS_EPSILON

    lo = round_to_float(KERAS_EPSILON, problem.dtype)
    hi = round_to_float(1.0 - KERAS_EPSILON, problem.dtype)
    rows = np.moveaxis(problem.input, problem.class_axis, -1).reshape(-1, problem.classes)
    return any(math.fsum(row) != 1.0 or min(row) < lo or max(row) > hi
               for row in rows.tolist())


CONDITIONS: dict[str, Callable[[Problem], bool]] = {
    LABELS_NOT_A_DISTRIBUTION: _labels_not_a_distribution,
    TARGET_MASKED: _target_masked,
    ZERO_DIVISOR: _zero_divisor,
    PROBS_CLIPPED: _probs_clipped,
    UNBATCHED_MEAN: _unbatched_mean,
    CLASS_WEIGHTS_IN_SAMPLE_WEIGHT_MEAN: _class_weights_in_sample_weight_mean,
}


def _raised(outcome: Outcome) -> str:
    return f"{outcome.error_type}: {outcome.message}".strip(": ")


def _judge_expected_error(base: Record, outcome: Outcome,
                          wanted: ExpectedError | None = None) -> Record:
    """An expected error: raised (and, when the case names it, the error it names), or a
    ``behaviour`` discrepancy saying what happened instead."""
    if outcome.status == "error" and (wanted is None or wanted.accepts(outcome.error_type,
                                                                      outcome.message)):
        return replace(base, status="pass", message=f"raised as expected: {_raised(outcome)}")
    if outcome.status == "error":
        return replace(base, status="fail", kind=BEHAVIOUR,
                       message=f"raised {_raised(outcome)}; expected {wanted}")
    return replace(base, status="fail", kind=BEHAVIOUR, actual=values_for_record(outcome.output),
                   message="returned a value where the inputs are invalid and an error is expected")


def _judge(base: Record, quantity: str, expected: Expected, actual: np.ndarray | None,
           problem: Problem, bound: np.ndarray, override: Any = None) -> Record:
    if actual is None:
        return replace(base, quantity=quantity, status="error", kind=BEHAVIOUR,
                       message=f"the framework returned no {quantity}")
    tolerance = tolerance_for(problem.case.op, quantity, problem.dtype, override, run_scale())
    comparison = compare(expected, actual, problem.dtype, bound, tolerance)
    return _record(base, quantity, expected, actual, comparison)


def _record(base: Record, quantity: str, expected: Expected, actual: Any,
            comparison: Comparison) -> Record:
    return replace(
        base, quantity=quantity, status="pass" if comparison.passed else "fail",
        kind=comparison.kind, reference=values_for_record(expected.nearest),
        actual=values_for_record(actual), shape=list(expected.shape),
        max_abs_error=comparison.max_abs_error, max_rel_error=comparison.max_rel_error,
        max_ulp_error=comparison.max_ulp_error, bound_use=comparison.bound_use,
        tolerance=None if comparison.tolerance is None else comparison.tolerance.as_dict(),
        worst_index=None if comparison.worst_index is None else list(comparison.worst_index),
        message=comparison.message,
    )


# --- the case's own documented values --------------------------------------------------------


def check_documented(case: Case, environment_id: str = "") -> list[Record]:
    """Check the values the case's source printed against the float64 oracle, within
    ``documented_tolerance``: a mistyped case fails here, before any framework is blamed."""
    wanted = [(q, v) for q, v in (("documented", case.documented),
                                  ("documented_grad", case.documented_grad)) if v is not None]
    if not wanted:
        return []
    reference = reference_for(case, "float64") if case.expect == "value" else None
    base = Record(
        case_id=case.id, op=case.op, group=case.group, framework="reference",
        framework_version=f"mpmath {mpmath.__version__}", api="documented value",
        api_kind="reference", device="cpu", device_name="", dtype="float64",
        quantity="documented", status="skip", case_file=case.file,
        environment_id=environment_id,
    )
    records = []
    for quantity, documented in wanted:
        exact = None if reference is None else (
            reference.output if quantity == "documented" else reference.grad)
        convention = getattr(case, "documented_grad_convention", None)
        if quantity == "documented_grad" and convention is not None and exact is not None:
            exact = _conventional_gradient(case, convention)
        records.append(_documented_record(replace(base, quantity=quantity), exact, documented,
                                          case.documented_tolerance))
    return records


def _conventional_gradient(case: Case, convention: str) -> np.ndarray:
    """The float64 oracle's gradient under the convention the case's source documents
    (``reference/conventions.py``)."""
    problem = problem_for(case, "float64")
    target: Any = problem.target
    if target is not None and target.dtype.kind == "i":
        target = np.asarray([int(t) for t in target.reshape(-1)],
                            dtype=object).reshape(target.shape)
    return documented_gradient(
        convention, case.op, problem.input, target=target,
        weight=None if problem.weight is None else [float(w) for w in problem.weight],
        ignore_index=case.ignore_index, reduction=case.reduction,
        label_smoothing=case.label_smoothing, **problem.oracle_options())


def _documented_record(base: Record, exact: np.ndarray | ExactPairs | None, documented: Any,
                       tolerance: float) -> Record:
    """The verdict on a printed value, by ``conformance.judge.compare``'s element-wise rules with
    ``tolerance`` as every element's absolute bound: NaN matches NaN, an infinity only
    itself, a special value facing a finite one is a ``special-value`` mismatch wherever it
    lies, and the tolerance applies where both are finite (never ``max`` over errors, which
    drops a NaN that is not first and makes ``inf - inf`` a NaN)."""
    if exact is None:
        return replace(base, status="fail", kind=NUMERIC,
                       message="the case documents a value the oracle does not compute")
    printed = documented_array(documented)
    if printed.shape != np.shape(exact):
        return replace(base, status="fail", kind=NUMERIC, message=(
            f"documented value has shape {printed.shape}, the oracle's {np.shape(exact)}"))
    # float64 with K = 1: the bound is the tolerance itself, decided exactly
    comparison = compare(exact, printed, "float64", np.full(printed.shape, float(tolerance)),
                         Tolerance(k=1.0, scale=1.0, source="case"))
    worst = comparison.max_abs_error
    if comparison.kind == SPECIAL_VALUE:
        message = f"documented value: {comparison.message}"
    elif worst is None:
        message = "documented special values match the oracle's; no finite element to measure"
    else:
        message = (f"documented value differs from the oracle by {worst:.3g} "
                   f"(tolerance {tolerance:g})")
    return replace(
        base, status="pass" if comparison.passed else "fail", kind=comparison.kind,
        reference=values_for_record(exact), actual=printed.tolist(),
        shape=list(printed.shape), max_abs_error=worst,
        worst_index=None if comparison.passed or comparison.worst_index is None
        else list(comparison.worst_index),
        message=message,
    )
