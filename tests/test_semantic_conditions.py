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
from conformance.cases.options import OPTIONS
from conformance.cases.problem import Problem
from conformance.judge.check import CONDITIONS, LABELS_NOT_A_DISTRIBUTION, check_case, problem_for
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
    from conformance.adapters import jax_adapter, tensorflow_adapter, torch_adapter

    known = {*OPTIONS, *CONDITIONS, "*"}
    keys = [key for module in (jax_adapter, tensorflow_adapter, torch_adapter)
            for api in module.APIS for key in api.semantics]
    assert f"grad:{LABELS_NOT_A_DISTRIBUTION}" in keys
    for key in keys:
        scope, _, name = key.rpartition(":")
        assert scope in ("", "output", "grad") and name in known, key
