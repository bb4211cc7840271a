"""The ``--impl``/``--like`` tests of Keras, the same on each backend: users' functions and
classes (tests/frameworks/keras_implementations.py) in place of
``keras.ops.sparse_categorical_crossentropy`` and ``keras.losses.SparseCategoricalCrossentropy``.
The APIs have the same names on both backends (and on TensorFlow): ``--like`` names them
``FRAMEWORK:NAME``.  Imported by test_implementation_keras.py, which runs them on each
backend installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conformance.adapters.keras_adapter import APIS
from tests.frameworks.implementation_checks import (
    Verdicts,
    assert_same_verdicts,
    run_implementations,
)

HELPERS = "tests.frameworks.keras_implementations"
NAMES = {api.id: api.name for api in APIS}
OPS = NAMES["sparse_categorical_crossentropy"]
LOSS = NAMES["SparseCategoricalCrossentropy"]
WEIGHTED = NAMES["SparseCategoricalCrossentropy-sample_weight"]
CASES = """\
defaults: {source: t, dtypes: [float32]}
cases:
  - {id: plain, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], target: [1, 2]}
  - {id: per-row, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
     target: [1, 2], reduction: none}
  - {id: large, op: cross_entropy, input: [[100.0, 100.0, 0.0]], target: [0], reduction: none}
  - {id: ignored, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
     target: [1, -100]}
  - {id: weighted, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
     target: [1, 2], weight: [1.0, 2.0, 0.5], reduction: sum}
  - {id: k-dim, op: cross_entropy, input: [[[1.0, 2.0], [0.5, 0.0]]], target: [[1, 0]],
     reduction: none}
"""


def needs_keras() -> None:
    """Skip the module unless Keras is installed (looked up, not imported: importing Keras
    here would pick its backend)."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed (tox -e keras-jax or keras-torch installs it)",
                    allow_module_level=True)


def run(tmp_path: Path, framework: str) -> dict[str, Verdicts]:
    """One run (one worker start) of every function and class of the helpers."""
    return run_implementations(
        tmp_path, CASES, framework,
        "--impl", f"ops={HELPERS}:wrapped", "--like", f"{framework}:{OPS}",
        "--impl", f"loss={HELPERS}:Sparse", "--like", f"{framework}:{LOSS}",
        "--impl", f"weighted={HELPERS}:Sparse", "--like", f"{framework}:{WEIGHTED}",
        "--impl", f"no-ignore={HELPERS}:SparseWithoutIgnore", "--like", f"{framework}:{LOSS}",
        "--impl", f"naive={HELPERS}:naive", "--like", f"{framework}:{OPS}")


def check_the_callees() -> None:
    assert {api.id: api.callee for api in APIS} == {
        "softmax": "keras.ops.softmax", "log_softmax": "keras.ops.log_softmax",
        "categorical_crossentropy": "keras.ops.categorical_crossentropy",
        "sparse_categorical_crossentropy": "keras.ops.sparse_categorical_crossentropy",
        "CategoricalCrossentropy": "keras.losses.CategoricalCrossentropy",
        "SparseCategoricalCrossentropy": "keras.losses.SparseCategoricalCrossentropy",
        "SparseCategoricalCrossentropy-sample_weight":
            "keras.losses.SparseCategoricalCrossentropy"}


def check_a_wrapper_gets_the_apis_own_verdicts(records: dict[str, Verdicts]) -> None:
    assert set(records) == {OPS, LOSS, WEIGHTED, "ops", "loss", "weighted", "no-ignore",
                            "naive"}
    assert_same_verdicts(records["ops"], records[OPS], OPS)
    assert_same_verdicts(records["loss"], records[LOSS], LOSS)
    assert_same_verdicts(records["weighted"], records[WEIGHTED], WEIGHTED)
    # not vacuous: values judged, ignore_class and the sample weights reached the class
    assert records["ops"][("per-row", "grad")].status == "pass"
    for case in ("plain", "ignored"):
        assert records["loss"][(case, "grad")].status == "pass", case
    assert records["weighted"][("weighted", "output")].status == "pass"


def check_a_naive_loss_overflows_where_keras_passes(records: dict[str, Verdicts]) -> None:
    naive = records["naive"]
    assert naive[("per-row", "output")].status == "pass"
    assert naive[("per-row", "grad")].status == "pass"
    large = naive[("large", "output")]
    assert (large.status, large.kind) == ("fail", "special-value")  # exp(100) is inf: NaN
    assert records[OPS][("large", "output")].status == "pass"


def check_a_keyword_the_function_lacks_is_unsupported(records: dict[str, Verdicts]) -> None:
    mine = records["no-ignore"]
    # the call's sample_weight=None (Keras' default) is not passed to a __call__ without it
    assert mine[("plain", "output")].status == "pass"
    ignored = mine[("ignored", "output")]
    assert ignored.status == "unsupported"
    assert ignored.message == ("TypeError: SparseWithoutIgnore.__init__() got an unexpected "
                               "keyword argument 'ignore_class'")
    assert records[LOSS][("ignored", "output")].status == "pass"
    # the class axis at 1: the naive function's own NotImplementedError
    k_dim = records["naive"][("k-dim", "output")]
    assert (k_dim.status, k_dim.message) == (
        "unsupported", "NotImplementedError: logits with the class axis last only")
