"""``conformance run --impl ... --like ...`` on MLX: users' functions in place of
``mlx.nn.losses.cross_entropy`` and ``mlx.core.softmax``, through the APIs' own recipes."""

from __future__ import annotations

import pytest

pytest.importorskip("mlx.core", reason="MLX is not installed (tox -e mlx installs it)")

from conformance.adapters.mlx_adapter import APIS, CLASS_WEIGHTS
from tests.frameworks.implementation_checks import (
    Verdicts,
    assert_same_verdicts,
    run_implementations,
)

HELPERS = "tests.frameworks.mlx_implementations"
LIKE = "mlx.nn.losses.cross_entropy"
COMPOSED = next(api.name for api in APIS if api.id == "cross_entropy-class_weights")
CASES = """\
defaults: {source: t, dtypes: [float32]}
cases:
  - {id: plain, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], target: [1, 2]}
  - {id: per-row, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
     target: [1, 2], reduction: none}
  - {id: large, op: cross_entropy, input: [[100.0, 100.0, 0.0]], target: [0], reduction: none}
  - {id: smoothed, op: cross_entropy, input: [[1.0, 2.0, 0.5]], target: [0],
     label_smoothing: 0.1}
  - {id: k-dim, op: cross_entropy, input: [[[1.0, 2.0], [0.5, 0.0]]], target: [[1, 0]],
     reduction: none}
  - {id: probability, op: cross_entropy, input: [[1.0, 2.0, 0.5]], target: [[0.2, 0.3, 0.5]]}
  - {id: weighted, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
     target: [1, 2], weight: [1.0, 2.0, 0.5]}
  - {id: softmax, op: softmax, input: [[1.0, 2.0, 0.5], [1000.0, 0.0, -1.0]]}
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdicts]:
    """One run (one worker start) of every function below."""
    return run_implementations(
        tmp_path_factory.mktemp("mlx"), CASES, "mlx",
        "--impl", f"wrapped={HELPERS}:wrapped", "--like", LIKE,
        "--impl", f"weighted={HELPERS}:wrapped", "--like", COMPOSED,
        "--impl", f"softmax={HELPERS}:wrapped_softmax", "--like", "mlx.core.softmax",
        "--impl", f"naive={HELPERS}:naive", "--like", LIKE)


def test_the_callees_are_mlxs_public_functions() -> None:
    assert {api.id: api.callee for api in APIS} == {
        "softmax": "mlx.core.softmax", "log_softmax": "mlx.nn.log_softmax",
        "cross_entropy": LIKE, "cross_entropy-class_weights": LIKE,
        "nll_loss": "mlx.nn.losses.nll_loss",
        "nll_loss-class_weights": "mlx.nn.losses.nll_loss"}


def test_a_wrapper_of_mlx_gets_the_apis_own_verdicts(records: dict[str, Verdicts]) -> None:
    assert set(records) == {LIKE, COMPOSED, "mlx.core.softmax", "wrapped", "weighted",
                            "softmax", "naive"}
    assert_same_verdicts(records["wrapped"], records[LIKE], LIKE)
    assert_same_verdicts(records["weighted"], records[COMPOSED], COMPOSED)
    assert_same_verdicts(records["softmax"], records["mlx.core.softmax"], "mlx.core.softmax")
    # not vacuous: values were judged, and the glue passed the function its class weights
    wrapped = records["wrapped"]
    assert wrapped[("probability", "grad")].status == "pass"
    assert wrapped[("weighted", "output")].message.endswith(CLASS_WEIGHTS)
    assert records["weighted"][("weighted", "output")].status == "pass"
    assert records["softmax"][("softmax", "output")].status == "pass"


def test_a_naive_loss_overflows_where_mlxs_passes(records: dict[str, Verdicts]) -> None:
    naive, builtin = records["naive"], records[LIKE]
    for case in ("plain", "per-row", "k-dim"):
        assert naive[(case, "output")].status == "pass", case
        assert naive[(case, "grad")].status == "pass", case
    large = naive[("large", "output")]
    assert (large.status, large.kind) == ("fail", "special-value")  # exp(100) is inf: NaN
    assert builtin[("large", "output")].status == "pass"


def test_a_keyword_the_function_lacks_is_unsupported(records: dict[str, Verdicts]) -> None:
    smoothed = records["naive"][("smoothed", "output")]
    assert smoothed.status == "unsupported"
    assert smoothed.message == ("TypeError: naive() got an unexpected keyword argument "
                                "'label_smoothing'")
    assert records[LIKE][("smoothed", "output")].status == "pass"
