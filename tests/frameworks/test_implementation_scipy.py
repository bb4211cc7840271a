"""``conformance run --impl ... --like ...`` on SciPy: users' functions in place of
``scipy.special.logsumexp`` in the NumPy user's cross-entropy, and of
``scipy.special.softmax``."""

from __future__ import annotations

import pytest

pytest.importorskip("scipy", reason="SciPy is not installed (tox -e scipy installs it)")

from conformance.adapters.scipy_adapter import APIS, NO_GRAD
from tests.frameworks.implementation_checks import (
    Verdicts,
    assert_same_verdicts,
    run_implementations,
)

HELPERS = "tests.frameworks.scipy_implementations"
INDEX = next(api.name for api in APIS if api.id == "logsumexp-index")
PROBABILITY = next(api.name for api in APIS if api.id == "logsumexp-probability")
CASES = """\
defaults: {source: t, dtypes: [float32]}
cases:
  - {id: plain, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], target: [1, 2]}
  - {id: large, op: cross_entropy, input: [[100.0, 100.0, 0.0]], target: [0], reduction: none}
  - {id: weighted, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
     target: [1, 2], weight: [1.0, 2.0, 0.5]}
  - {id: k-dim, op: cross_entropy, input: [[[1.0, 2.0], [0.5, 0.0]]], target: [[1, 0]],
     reduction: none}
  - {id: probability, op: cross_entropy, input: [[1.0, 2.0, 0.5]], target: [[0.2, 0.3, 0.5]],
     label_smoothing: 0.1}
  - {id: softmax, op: softmax, input: [[1.0, 2.0, 0.5], [1000.0, 0.0, -1.0]]}
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdicts]:
    """One run (one worker start) of every function below."""
    return run_implementations(
        tmp_path_factory.mktemp("scipy"), CASES, "scipy",
        "--impl", f"index={HELPERS}:wrapped", "--like", INDEX,
        "--impl", f"probability={HELPERS}:wrapped", "--like", PROBABILITY,
        "--impl", f"softmax={HELPERS}:wrapped_softmax", "--like", "scipy.special.softmax",
        "--impl", f"naive={HELPERS}:naive", "--like", INDEX,
        "--impl", f"naive-probability={HELPERS}:naive", "--like", PROBABILITY)


def test_the_callees_are_scipys_public_functions() -> None:
    assert {api.id: api.callee for api in APIS} == {
        "softmax": "scipy.special.softmax", "log_softmax": "scipy.special.log_softmax",
        "logsumexp-index": "scipy.special.logsumexp",
        "logsumexp-probability": "scipy.special.logsumexp", "nll": ""}


def test_a_wrapper_of_scipy_gets_the_apis_own_verdicts(records: dict[str, Verdicts]) -> None:
    assert set(records) == {INDEX, PROBABILITY, "scipy.special.softmax", "index",
                            "probability", "softmax", "naive", "naive-probability"}
    assert_same_verdicts(records["index"], records[INDEX], INDEX)
    assert_same_verdicts(records["probability"], records[PROBABILITY], PROBABILITY)
    assert_same_verdicts(records["softmax"], records["scipy.special.softmax"],
                         "scipy.special.softmax")
    # not vacuous: the values were judged; the gradient is the API's no_grad, not missing
    for case in ("plain", "large", "weighted", "k-dim"):
        assert records["index"][(case, "output")].status == "pass", case
    assert records["probability"][("probability", "output")].status == "pass"
    grad = records["index"][("plain", "grad")]
    assert (grad.status, grad.message) == ("unsupported", NO_GRAD)


def test_a_naive_logsumexp_overflows_where_scipys_passes(records: dict[str, Verdicts]) -> None:
    naive = records["naive"]
    for case in ("plain", "weighted", "k-dim"):
        assert naive[(case, "output")].status == "pass", case
    large = naive[("large", "output")]
    assert (large.status, large.kind) == ("fail", "special-value")  # log(inf) = inf
    assert records[INDEX][("large", "output")].status == "pass"


def test_a_keyword_the_function_lacks_is_unsupported(records: dict[str, Verdicts]) -> None:
    refused = records["naive-probability"][("probability", "output")]
    assert refused.status == "unsupported"
    assert refused.message == "TypeError: naive() got an unexpected keyword argument 'keepdims'"
    assert records[PROBABILITY][("probability", "output")].status == "pass"
