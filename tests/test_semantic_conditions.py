"""Semantic discrepancies declared on a condition of the case's data (issue 12, item 4).

An API may declare (``Api.semantics``) that it follows its own definition where the case's
data meets a condition, not only where the case uses an option: TensorFlow's
``softmax_cross_entropy_with_logits`` computes the gradient ``softmax(x) - labels``, which it
documents as incorrect unless each label row is a probability distribution.  The stand-in
below computes exactly that gradient, with no framework installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conformance.adapters.base import Api, Device, Outcome
from conformance.cases.loading import Case, load_cases
from conformance.cases.options import ALL_OPTIONS, OPTIONS
from conformance.cases.problem import Problem
from conformance.judge.check import (
    CLASS_WEIGHTS_IN_SAMPLE_WEIGHT_MEAN,
    CONDITIONS,
    LABELS_NOT_A_DISTRIBUTION,
    UNBATCHED_MEAN,
    ZERO_DIVISOR,
    check_case,
    problem_for,
)
from conformance.results.records import Record
from tests.conftest import write
from tests.stand_in_adapters import ExactAdapter

DECLARED = "the gradient is softmax - labels (declared)"
KEY = f"grad:{LABELS_NOT_A_DISTRIBUTION}"
API = Api("softmax_xent", "standin.softmax_xent", "cross_entropy", frozenset(OPTIONS),
          semantics={KEY: DECLARED})


class SoftmaxMinusLabels(ExactAdapter):
    """The exact loss, and the gradient ``softmax(x) - labels`` of each row (right only when
    the row sums to 1), rounded to float32; ``grad_offset``/``output_offset`` add a wrong
    part that no declaration covers."""

    name = "softmax-minus-labels"

    def __init__(self, output_offset: float = 0.0, grad_offset: float = 0.0) -> None:
        self.output_offset, self.grad_offset = output_offset, grad_offset

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        exact = super().run(api, problem, device)
        assert exact.output is not None and problem.target is not None
        x, axis = problem.input, problem.class_axis
        shifted = np.exp(x - x.max(axis=axis, keepdims=True))
        p = shifted / shifted.sum(axis=axis, keepdims=True)
        grad = (p - problem.target).astype(np.float32).astype(np.float64)
        return Outcome("ok", exact.output + self.output_offset, grad + self.grad_offset)


CASES = """\
defaults: {source: test, op: cross_entropy, reduction: none, dtypes: [float32]}
cases:
  - {id: all-zero-row, input: [[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]],
     target: [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}
  - {id: sum-two, input: [[0.1, 0.2, 0.3]], target: [[1.0, 0.5, 0.5]]}
  - {id: negative, input: [[0.1, 0.2, 0.3]], target: [[0.5, -0.2, 0.0]]}
  - {id: distributions, input: [[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]],
     target: [[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]]}
  - {id: generated-distributions, input: {generate: normal, shape: [8, 300], seed: 1},
     target: {generate: dirichlet, seed: 2}}
  - {id: generated-total-three, input: {generate: normal, shape: [4, 5], seed: 3},
     target: {generate: dirichlet, seed: 4, total: 3.0}}
  - {id: index-target, input: [[0.1, 0.2, 0.3]], target: [2]}
"""


@pytest.fixture
def cases(tmp_path: Path) -> dict[str, Case]:
    return {case.id: case for case in load_cases([write(tmp_path / "c.yaml", CASES)])}


def run(case: Case, adapter: ExactAdapter, api: Api = API) -> tuple[Record, Record]:
    output, grad = check_case(case, adapter, api, adapter.devices()[0], "float32")
    return output, grad


@pytest.mark.parametrize("case_id", ["all-zero-row", "sum-two", "negative",
                                     "generated-total-three"])
def test_the_declared_gradient_off_a_distribution_is_semantic(
        cases: dict[str, Case], case_id: str) -> None:
    output, grad = run(cases[case_id], SoftmaxMinusLabels())
    assert output.status == "pass", output.message
    assert (grad.status, grad.kind) == ("fail", "semantic"), grad.message
    assert DECLARED in grad.message and "outside the bound" in grad.message


@pytest.mark.parametrize("case_id", ["distributions", "generated-distributions"])
def test_on_distributions_the_same_gradient_is_right(cases: dict[str, Case],
                                                      case_id: str) -> None:
    assert [r.status for r in run(cases[case_id], SoftmaxMinusLabels())] == ["pass", "pass"]


def test_a_wrong_gradient_on_distributions_stays_numeric(cases: dict[str, Case]) -> None:
    _, grad = run(cases["distributions"], SoftmaxMinusLabels(grad_offset=0.01))
    assert (grad.status, grad.kind) == ("fail", "numeric"), grad.message


def test_a_declaration_for_the_gradient_leaves_the_output_numeric(
        cases: dict[str, Case]) -> None:
    output, grad = run(cases["all-zero-row"], SoftmaxMinusLabels(output_offset=0.01))
    assert (output.status, output.kind) == ("fail", "numeric"), output.message
    assert grad.kind == "semantic"


def test_an_unscoped_condition_covers_both_quantities(cases: dict[str, Case]) -> None:
    api = Api("softmax_xent", "standin.softmax_xent", "cross_entropy", frozenset(OPTIONS),
              semantics={LABELS_NOT_A_DISTRIBUTION: DECLARED})
    output, grad = run(cases["all-zero-row"], SoftmaxMinusLabels(output_offset=0.01), api)
    assert (output.kind, grad.kind) == ("semantic", "semantic")


class WrongShape(SoftmaxMinusLabels):
    """The gradient as ``SoftmaxMinusLabels``, and an unreduced loss with an extra axis."""

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        outcome = super().run(api, problem, device)
        assert outcome.output is not None
        return Outcome("ok", outcome.output[..., None], outcome.grad)


def test_a_wrong_shape_stays_a_behaviour_discrepancy_whatever_the_api_declares(
        cases: dict[str, Case]) -> None:
    api = Api("softmax_xent", "standin.softmax_xent", "cross_entropy", frozenset(OPTIONS),
              semantics={"*": DECLARED})
    output, grad = run(cases["all-zero-row"], WrongShape(), api)
    assert (output.status, output.kind) == ("fail", "behaviour"), output.message
    assert "shape" in output.message and DECLARED not in output.message
    assert grad.kind == "semantic"


@pytest.mark.parametrize("case_id, dtype, expected", [
    ("all-zero-row", "float32", True), ("sum-two", "float64", True),
    ("negative", "bfloat16", True), ("generated-total-three", "float16", True),
    ("distributions", "float64", False), ("index-target", "float32", False),
    # a float64 Dirichlet row rounded to each dtype is still a distribution
    *[("generated-distributions", dtype, False)
      for dtype in ("float64", "float32", "float16", "bfloat16")],
])
def test_the_condition_holds_exactly_for_rows_off_a_distribution(
        cases: dict[str, Case], case_id: str, dtype: str, expected: bool) -> None:
    problem = problem_for(cases[case_id], dtype)
    assert CONDITIONS[LABELS_NOT_A_DISTRIBUTION](problem) is expected


def test_every_adapters_semantics_name_an_option_a_condition_or_everything() -> None:
    """A misspelt key would silently never apply; each adapter module declares its APIs
    without importing its framework."""
    from conformance.adapters import jax_adapter, keras_adapter, tensorflow_adapter, torch_adapter

    known = {*ALL_OPTIONS, *CONDITIONS, "*"}
    keys = [key for module in (jax_adapter, keras_adapter, tensorflow_adapter, torch_adapter)
            for api in module.APIS for key in api.semantics]
    assert f"grad:{LABELS_NOT_A_DISTRIBUTION}" in keys
    for key in keys:
        scope, _, name = key.rpartition(":")
        assert scope in ("", "output", "grad") and name in known, key


# --- Keras' means: declared on the conditions where they differ, not on the options ---------
#
# conformance/adapters/keras_adapter.py declares what Keras 3.15's reductions
# (keras/src/losses/loss.py) do beside reference/SPEC.md's: divide_no_nan on a zero divisor
# (``zero_divisor``) and a scalar (unbatched) loss returned unreduced (``unbatched_mean``).
# ``KerasMeans`` computes what Keras computes, with no framework: on a case that uses
# ignore_index or class weights elsewhere (under none or sum, or a mean whose divisor is
# neither 0 nor 1 for a batch) a discrepancy is the framework's own, never its definition.

KERAS_CASES = """\
defaults: {source: test, op: cross_entropy, grad: false, dtypes: [float32]}
cases:
  # a row whose class weight is 0 with a +inf logit weighs nothing (SPEC: loss 0); Keras
  # multiplies its NaN loss by the sample weight w[t] = 0
  - {id: zero-weight-inf-row-none, reduction: none, weight: [0.0, 1.0, 2.0],
     input: [[.inf, 0.0, 1.0], [0.5, 0.2, -0.1], [1.0, 2.0, 3.0]], target: [0, 1, -100]}
  - {id: zero-weight-inf-row-sum, reduction: sum, weight: [0.0, 1.0, 2.0],
     input: [[.inf, 0.0, 1.0], [0.5, 0.2, -0.1], [1.0, 2.0, 3.0]], target: [0, 1, -100]}
  - {id: zero-weight-inf-row-mean, reduction: mean, weight: [0.0, 1.0, 2.0],
     input: [[.inf, 0.0, 1.0], [0.5, 0.2, -0.1], [1.0, 2.0, 3.0]], target: [0, 1, -100]}
  - {id: ignored-row-none, reduction: none,
     input: [[0.5, 0.2, -0.1], [1.0, 2.0, 3.0]], target: [1, -100]}
  - {id: all-ignored-mean, reduction: mean,
     input: [[0.5, 0.2, -0.1], [1.0, 2.0, 3.0]], target: [-100, -100]}
  - {id: weights-zero-total-mean, reduction: mean, weight: [0.0, 0.0, 1.0],
     input: [[0.5, 0.2, -0.1], [1.0, 2.0, 3.0]], target: [0, 1]}
  - {id: unbatched-weighted-mean, reduction: mean, weight: [1.0, 1.0, 3.0],
     input: [0.5, 0.2, -0.1], target: 2}
  - {id: unbatched-weight-one-mean, reduction: mean, weight: [3.0, 1.0, 3.0],
     input: [0.5, 0.2, -0.1], target: 1}
  - {id: unbatched-mean, reduction: mean, input: [0.5, 0.2, -0.1], target: 2}
  - {id: unbatched-ignored-mean, reduction: mean, input: [0.5, 0.2, -0.1], target: -100}
  - {id: unbatched-weighted-sum, reduction: sum, weight: [1.0, 1.0, 3.0],
     input: [0.5, 0.2, -0.1], target: 2}
  - {id: unbatched-weighted-none, reduction: none, weight: [1.0, 1.0, 3.0],
     input: [0.5, 0.2, -0.1], target: 2}
  - {id: batched-weighted-mean, reduction: mean, weight: [1.0, 1.0, 3.0],
     input: [[0.5, 0.2, -0.1], [1.0, 2.0, 3.0]], target: [2, 0]}
  - {id: unbatched-sample-weight-mean, reduction: mean_with_sample_weight, sample_weight: 2.0,
     input: [0.5, 0.2, -0.1], target: 2}
  - {id: unbatched-sample-weight-batch-size, reduction: sum_over_batch_size,
     sample_weight: 2.0, input: [0.5, 0.2, -0.1], target: 2}
  - {id: unbatched-probabilities-mean, reduction: mean, input: [0.5, 0.2, -0.1],
     target: [0.2, 0.3, 0.5]}
  - {id: unbatched-linear-mean, op: linear_cross_entropy, reduction: mean, weight: [1.0, 3.0],
     input: [0.5, -1.0], linear_weight: [[1.0, 0.0], [0.0, 1.0]], target: 1}
  - {id: linear-all-ignored-mean, op: linear_cross_entropy, reduction: mean,
     input: [[0.5, -1.0], [1.0, 2.0]], linear_weight: [[1.0, 0.0], [0.0, 1.0]],
     target: [-100, -100]}
  - {id: class-and-sample-weights, reduction: mean_with_sample_weight, weight: [1.0, 2.0, 1.0],
     sample_weight: [1.0, 0.5], input: [[0.5, 0.2, -0.1], [1.0, 2.0, 3.0]], target: [0, 1]}
  - {id: class-weights-cancelling-sample-weights, reduction: mean_with_sample_weight,
     weight: [2.0, 0.0, 1.0], sample_weight: [1.0, 1.0], input: [[0.5, 0.2, -0.1],
     [1.0, 2.0, 3.0]], target: [0, 1]}
  - {id: class-and-sample-weights-batch-size, reduction: sum_over_batch_size,
     weight: [1.0, 2.0, 1.0], sample_weight: [1.0, 0.5], input: [[0.5, 0.2, -0.1],
     [1.0, 2.0, 3.0]], target: [0, 1]}
  - {id: class-and-sample-weights-out-of-range, reduction: mean_with_sample_weight,
     weight: [1.0, 2.0, 1.0], sample_weight: [1.0, 0.5], input: [[0.5, 0.2, -0.1],
     [1.0, 2.0, 3.0]], target: [0, 7], expect: error}
"""


@pytest.fixture
def keras_cases(tmp_path: Path) -> dict[str, Case]:
    return {case.id: case for case in load_cases([write(tmp_path / "k.yaml", KERAS_CASES)])}


def _keras_apis() -> dict[str, Api]:
    from conformance.adapters import keras_adapter  # declarations only: Keras is not imported

    return {api.id: api for api in keras_adapter.APIS}


class KerasMeans(ExactAdapter):
    """Keras' SparseCategoricalCrossentropy(from_logits=True) as Keras 3.15 computes it
    (keras/src/losses/loss.py), in float64 numpy: each row's ``logsumexp(x) - x[t]`` taken
    literally (NaN for a row with a +inf logit), times the sample weight ``w[t]`` and the
    ignore mask (``0 * NaN = NaN``); ``none``: those, ``sum``: their sum, ``mean``: the sum
    divided with divide_no_nan by the total weight of the kept rows; a scalar loss unreduced."""

    name = "keras-means"

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        x, target = problem.input, problem.target
        assert target is not None
        rows, targets = x.reshape(-1, x.shape[-1]), target.reshape(-1)
        kept = targets != problem.case.ignore_index
        safe = np.where(kept, targets, 0)
        with np.errstate(invalid="ignore", over="ignore"):
            top = rows.max(axis=-1, keepdims=True)
            lse = top[:, 0] + np.log(np.exp(rows - top).sum(axis=-1))
            losses = np.where(kept, lse - rows[np.arange(len(safe)), safe], 0.0)
            weights = kept * (1.0 if problem.weight is None else problem.weight[safe])
            values = losses * weights
        reduction = problem.case.reduction
        if reduction == "none" or x.ndim == 1:
            output = values.reshape(target.shape)
        elif reduction == "sum":
            output = np.asarray(values.sum())
        else:
            total = weights.sum()
            output = np.asarray(0.0 if total == 0 else values.sum() / total)
        return Outcome("ok", output.astype(np.float32).astype(np.float64))


def keras_output(case: Case, api_id: str, dtype: str = "float32") -> Record:
    api = _keras_apis()[api_id]
    adapter = KerasMeans()
    (output,) = check_case(case, adapter, api, adapter.devices()[0], dtype)
    return output


SAMPLE_WEIGHT = "SparseCategoricalCrossentropy-sample_weight"


@pytest.mark.parametrize("case_id", ["zero-weight-inf-row-none", "zero-weight-inf-row-sum",
                                     "zero-weight-inf-row-mean"])
def test_a_nan_from_a_zero_weight_row_stays_special_value(keras_cases: dict[str, Case],
                                                          case_id: str) -> None:
    """0 x NaN on a row that weighs nothing, on a case with class weights and an ignored
    target: no mean definition of Keras' makes it (the divisor, 1, is neither 0 nor an
    unbatched row's weight); it was ``semantic`` while the key was the option itself."""
    case = keras_cases[case_id]
    assert {"weight", "ignore_index"} <= set(case.options())
    output = keras_output(case, SAMPLE_WEIGHT)
    assert (output.status, output.kind) == ("fail", "special-value"), output.message
    assert "own definition" not in output.message and "got nan" in output.message


def test_a_wrong_value_on_an_ignored_row_case_stays_numeric(keras_cases: dict[str, Case]) -> None:
    class Off(KerasMeans):
        def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
            outcome = super().run(api, problem, device)
            assert outcome.output is not None
            return Outcome("ok", outcome.output + 0.01)

    case = keras_cases["ignored-row-none"]
    api = _keras_apis()["SparseCategoricalCrossentropy"]
    (output,) = check_case(case, Off(), api, Off().devices()[0], "float32")
    assert (output.status, output.kind) == ("fail", "numeric"), output.message
    # the same API's right answer passes: Keras' none is SPEC.md's there
    assert keras_output(case, "SparseCategoricalCrossentropy").status == "pass"


@pytest.mark.parametrize("api_id", ["SparseCategoricalCrossentropy", SAMPLE_WEIGHT])
def test_keras_mean_over_all_ignored_targets_is_semantic(keras_cases: dict[str, Case],
                                                        api_id: str) -> None:
    output = keras_output(keras_cases["all-ignored-mean"], api_id)
    assert (output.status, output.kind) == ("fail", "semantic"), output.message
    assert "divide_no_nan" in output.message and "expected nan, got 0.0" in output.message


def test_keras_mean_over_a_zero_total_weight_is_semantic(keras_cases: dict[str, Case]) -> None:
    output = keras_output(keras_cases["weights-zero-total-mean"], SAMPLE_WEIGHT)
    assert (output.status, output.kind) == ("fail", "semantic"), output.message


def test_keras_mean_of_an_unbatched_weighted_row_is_semantic(
        keras_cases: dict[str, Case]) -> None:
    """Keras returns w[t] * loss (3 x 1.2019...), the mean is the loss."""
    output = keras_output(keras_cases["unbatched-weighted-mean"], SAMPLE_WEIGHT)
    assert (output.status, output.kind) == ("fail", "semantic"), output.message
    assert "unreduced" in output.message
    assert output.actual == pytest.approx(3 * output.reference, rel=1e-6)


@pytest.mark.parametrize("case_id", ["unbatched-weight-one-mean", "unbatched-mean",
                                     "unbatched-weighted-sum", "unbatched-weighted-none",
                                     "batched-weighted-mean"])
def test_keras_means_equal_to_specs_pass(keras_cases: dict[str, Case], case_id: str) -> None:
    assert keras_output(keras_cases[case_id], SAMPLE_WEIGHT).status == "pass"


@pytest.mark.parametrize("case_id, dtype, expected", [
    ("unbatched-weighted-mean", "float32", True),       # D = w[2] = 3
    ("unbatched-ignored-mean", "float32", True),        # D = 0 (zero_divisor too)
    ("unbatched-sample-weight-mean", "float64", True),  # mean_with_sample_weight: D = s = 2
    ("unbatched-linear-mean", "bfloat16", True),        # (D,) hidden states, D = w[1] = 3
    ("unbatched-weight-one-mean", "float32", False),    # D = w[1] = 1: the mean is the loss
    ("unbatched-mean", "float16", False),               # D = 1
    ("unbatched-sample-weight-batch-size", "float32", False),  # D = the kept rows, 1
    ("unbatched-probabilities-mean", "float32", False),        # D = 1 row
    ("unbatched-weighted-sum", "float32", False),       # sum and none do not divide
    ("unbatched-weighted-none", "float32", False),
    ("batched-weighted-mean", "float32", False),        # (N, C): Keras divides
])
def test_the_unbatched_mean_condition(keras_cases: dict[str, Case], case_id: str, dtype: str,
                                      expected: bool) -> None:
    assert CONDITIONS[UNBATCHED_MEAN](problem_for(keras_cases[case_id], dtype)) is expected


@pytest.mark.parametrize("case_id, expected", [
    ("all-ignored-mean", True), ("weights-zero-total-mean", True),
    ("unbatched-ignored-mean", True), ("zero-weight-inf-row-mean", False),
    ("zero-weight-inf-row-none", False), ("zero-weight-inf-row-sum", False),
    ("unbatched-weighted-mean", False), ("linear-all-ignored-mean", True),
    ("unbatched-linear-mean", False),
])
def test_the_zero_divisor_condition(keras_cases: dict[str, Case], case_id: str,
                                    expected: bool) -> None:
    assert CONDITIONS[ZERO_DIVISOR](problem_for(keras_cases[case_id], "float32")) is expected


@pytest.mark.parametrize("case_id, expected", [
    ("class-and-sample-weights", True),                  # 1 * 1 + 0.5 * 2 = 2 != 1.5
    ("class-weights-cancelling-sample-weights", False),  # 1 * 2 + 1 * 0 = 2 = 1 + 1
    ("class-and-sample-weights-batch-size", False),      # Keras' sum_over_batch_size is SPEC's
    ("unbatched-sample-weight-mean", False),             # no class weights
    ("class-and-sample-weights-out-of-range", False),    # target 7 has no class weight
])
def test_the_class_weights_in_sample_weight_mean_condition(
        keras_cases: dict[str, Case], case_id: str, expected: bool) -> None:
    problem = problem_for(keras_cases[case_id], "float32")
    assert CONDITIONS[CLASS_WEIGHTS_IN_SAMPLE_WEIGHT_MEAN](problem) is expected


def test_keras_declares_its_means_on_conditions_not_on_options() -> None:
    """A key that is an option (ignore_index, weight) would label every failure of every case
    using it ``semantic``, under none and sum too."""
    from conformance.adapters import keras_adapter, tensorflow_adapter

    for module in (keras_adapter, tensorflow_adapter):
        for api in module.APIS:
            if "keras" in api.name:
                assert not set(api.semantics) & set(ALL_OPTIONS), (api.name, api.semantics)
