"""The TensorFlow adapter: tf.nn and Keras losses (eager and tf.function, native and
composed) against the oracle."""

from __future__ import annotations

from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed "
                                              "(tox -e tensorflow installs it)")

from conformance.adapters import load_adapter  # noqa: E402
from conformance.cases.loading import load_cases, load_file  # noqa: E402
from conformance.judge.check import check_case  # noqa: E402
from tests.conftest import ROOT, write  # noqa: E402
from tests.frameworks.api_cases import api_cases, check_every_api  # noqa: E402

ADAPTER = load_adapter("tensorflow")
EAGER = tuple(api for api in ADAPTER.apis() if not api.id.startswith("function-"))
TRACED = tuple(api for api in ADAPTER.apis() if api.id.startswith("function-"))

# Keras 3.15 smooths with num_classes = shape[-1] whatever `axis` is
# (keras/src/losses/losses.py, categorical_crossentropy), so with the class axis at 1 of a
# (N, C, d) input it smooths over d classes instead of C.
KERAS_SMOOTHING_AXIS = ("keras.losses.categorical_crossentropy smooths over y_true.shape[-1] "
                        "classes, not the `axis` it is given")
KNOWN: dict[tuple[str, ...], str] = {
    (prefix + "CategoricalCrossentropy", "probability-k-dim-smoothed-none"):
    KERAS_SMOOTHING_AXIS for prefix in ("", "function-")}
# tf.compat.v1.losses.compute_weighted_loss (tensorflow/python/ops/losses/losses_impl.py)
# casts the losses and weights to float32 before it weighs and reduces them, so a float64
# run gets float32 precision (issue 20).
V1_FLOAT32 = "tf.compat.v1.losses reduce in float32 whatever the input dtype"
V1_CASES = ("index-none-unbatched", "index-sum", "index-channels-last-none",
            "index-sample-weight-sum-over-batch-size",
            "index-sample-weight-mean-with-sample-weight", "index-sample-weight-nonzero",
            "index-sample-weight-none", "index-sample-weight-sum")
KNOWN |= {(prefix + "v1-sparse_softmax_cross_entropy", case, "float64"): V1_FLOAT32
          for prefix in ("", "function-") for case in V1_CASES}
# -sum y log p differs from Keras' definition by definition: its records are checked by
# test_the_plain_probability_loss_differs_semantically, not against the oracle's values
PLAIN_CASES = ("probs-mean", "probs-unnormalised-clipped-none", "probs-k-dim-none",
               "probs-channels-last-none", "probs-axis-2-none")
PLAIN = ("plain-probs", "function-plain-probs")


def test_every_api_has_a_tf_function_twin_with_the_same_declaration() -> None:
    assert len(EAGER) == len(TRACED) == 18
    for eager, traced in zip(EAGER, TRACED, strict=True):
        assert traced.name == f"tf.function({eager.name})"
        assert (traced.op, traced.kind, traced.supports) == (eager.op, eager.kind, eager.supports)


def test_the_issues_apis_are_declared_and_glue_is_named_composed() -> None:
    native = {api.name for api in EAGER if api.kind == "native"}
    assert {"tf.nn.softmax", "tf.nn.log_softmax", "tf.nn.softmax_cross_entropy_with_logits",
            "tf.nn.sparse_softmax_cross_entropy_with_logits"} <= native
    assert any(name.startswith("keras.losses.CategoricalCrossentropy(") for name in native)
    assert any(name.startswith("keras.losses.SparseCategoricalCrossentropy(") for name in native)
    composed = [api for api in EAGER if api.kind == "composed"]
    assert composed and all("+" in api.name or "sample_weight" in api.name for api in composed)
    keras_sparse = next(api for api in EAGER if api.id == "SparseCategoricalCrossentropy")
    assert {"ignore_index", "reduction_mean"} <= keras_sparse.supports
    assert "sum_over_batch_size" in keras_sparse.unsupported_reason(["weight"])


def test_the_plain_probability_loss_differs_semantically(tmp_path: Path) -> None:
    """-sum y log p: its loss is Keras' where nothing is clipped or renormalised, and every
    difference (its gradient always; its loss where Keras clips) is recorded as semantic."""
    plain = next(api for api in EAGER if api.id == "plain-probs")
    cases = [c for c in api_cases(tmp_path) if c.id in PLAIN_CASES]
    cpu = ADAPTER.devices()[0]
    for case in cases:
        for dtype in ("float32", "float64"):
            records = check_case(case, ADAPTER, plain, cpu, dtype)
            assert all(r.status == "pass" or r.kind == "semantic" for r in records), records
            output = next(r for r in records if r.quantity == "output")
            if case.id == "probs-unnormalised-clipped-none":
                assert output.kind == "semantic"
            elif case.id == "probs-k-dim-none":
                assert output.status == "pass"


def test_keras_probabilities_give_the_classic_16_118(tmp_path: Path) -> None:
    """Keras' from_logits=False clips a zero probability to epsilon() = 1e-7: -log(1e-7) in
    float32 is 16.118095 (the epsilon rounded to float32), and the oracle says so."""
    case = next(c for c in api_cases(tmp_path) if c.id == "probs-unnormalised-clipped-none")
    keras_api = next(api for api in EAGER if api.id == "categorical_crossentropy-probs")
    [output, grad] = check_case(case, ADAPTER, keras_api, ADAPTER.devices()[0], "float32")
    assert output.status == grad.status == "pass"
    assert output.actual[0] == pytest.approx(16.118095, abs=1e-6)


@pytest.mark.parametrize("api", [a for a in EAGER if a.id not in PLAIN], ids=lambda api: api.id)
def test_eager_api_matches_the_oracle_or_is_unsupported(api, tmp_path: Path) -> None:
    check_every_api(ADAPTER, api_cases(tmp_path), apis=(api,), known=KNOWN)


@pytest.mark.parametrize("api", [a for a in TRACED if a.id not in PLAIN],
                         ids=lambda api: api.id)
def test_tf_function_api_matches_the_oracle_or_is_unsupported(api, tmp_path: Path) -> None:
    check_every_api(ADAPTER, api_cases(tmp_path), apis=(api,), known=KNOWN)


def test_every_seed_case_passes_on_tensorflow_in_float32_and_float64() -> None:
    """Each seed case passes (with its gradient) on at least one eager and one tf.function
    API, and on every API that supports it."""
    cpu = ADAPTER.devices()[0]
    for case in load_cases([ROOT / "cases" / "seeds.yaml"]):
        for dtype in ("float32", "float64"):
            passed = set()
            for api in ADAPTER.apis_for(case.op):
                records = check_case(case, ADAPTER, api, cpu, dtype)
                statuses = {r.status for r in records}
                assert statuses in ({"pass"}, {"unsupported"}), (case.id, api.name, records)
                if statuses == {"pass"}:
                    assert [r.quantity for r in records] == (
                        ["output", "grad"] if case.grad else ["output"])
                    passed.add(api.id.startswith("function-"))
            assert passed == {False, True}, (case.id, dtype)


KERAS_DEFAULT_MEAN = """\
defaults: {source: tests/frameworks/test_tensorflow.py, dtypes: [float32, float64]}
cases:
  - id: keras-mean-over-kept-targets
    description: Keras' sum_over_batch_size with ignore_class divides by the kept targets
    op: cross_entropy
    input: [[2.5, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 1.0], [0.0, 0.0, 0.0]]
    target: [2, 7, 7, 0]
    ignore_index: 7
"""


def test_keras_default_reduction_with_ignore_class_is_the_mean_over_kept_targets(
    tmp_path: Path,
) -> None:
    (case,) = load_file(write(tmp_path / "keras.yaml", KERAS_DEFAULT_MEAN))
    api = next(a for a in EAGER if a.id == "SparseCategoricalCrossentropy")
    for dtype in ("float32", "float64"):
        records = check_case(case, ADAPTER, api, ADAPTER.devices()[0], dtype)
        assert [r.status for r in records] == ["pass", "pass"], records


ALL_IGNORED = """\
defaults: {source: tests/frameworks/test_tensorflow.py, dtypes: [float32]}
cases:
  - {id: all-ignored, op: cross_entropy, input: [[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]],
     target: [-100, -100]}
"""


def test_keras_mean_over_no_kept_target_is_its_own_definition(tmp_path: Path) -> None:
    """The oracle's mean over no target is 0/0 = NaN; Keras divides with divide_no_nan and
    says 0.  The adapter declares that (Api.semantics), so the record is 'semantic'."""
    (case,) = load_file(write(tmp_path / "ignored.yaml", ALL_IGNORED))
    api = next(a for a in EAGER if a.id == "SparseCategoricalCrossentropy")
    output = check_case(case, ADAPTER, api, ADAPTER.devices()[0], "float32")[0]
    assert (output.status, output.kind, output.actual) == ("fail", "semantic", 0.0)
    assert "divide_no_nan" in output.message
    plain = next(a for a in EAGER if a.id == "sparse_softmax_cross_entropy_with_logits-composed")
    assert check_case(case, ADAPTER, plain, ADAPTER.devices()[0], "float32")[0].status == "pass"


INVALID = """\
defaults: {source: tests/frameworks/test_tensorflow.py, dtypes: [float32], expect: error,
           reduction: none}
cases:
  - {id: above-range, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [3]}
  - {id: negative, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [-1]}
  - {id: wrong-probability-shape, op: cross_entropy, input: [[1.0, 2.0, 3.0]],
     target: [[0.5, 0.5]]}
"""


def test_invalid_inputs_raise_on_cpu_with_tensorflows_message(tmp_path: Path) -> None:
    """tf.nn.sparse_softmax_cross_entropy_with_logits documents that a label outside
    [0, C) raises on CPU (and gives NaN on GPU); the record carries TensorFlow's message."""
    cpu = ADAPTER.devices()[0]
    cases = {c.id: c for c in load_file(write(tmp_path / "invalid.yaml", INVALID))}
    for case_id in ("above-range", "negative"):
        for api_id in ("sparse_softmax_cross_entropy_with_logits",
                       "function-sparse_softmax_cross_entropy_with_logits",
                       "SparseCategoricalCrossentropy"):
            api = next(a for a in ADAPTER.apis() if a.id == api_id)
            (record,) = check_case(cases[case_id], ADAPTER, api, cpu, "float32")
            assert record.status == "pass", record
            assert "outside the valid range" in record.message
            assert "\n" not in record.message and "File " not in record.message
    api = next(a for a in EAGER if a.id == "softmax_cross_entropy_with_logits")
    (record,) = check_case(cases["wrong-probability-shape"], ADAPTER, api, cpu, "float32")
    assert record.status == "pass" and "InvalidArgumentError" in record.message


UNNORMALISED = """\
defaults: {source: tests/frameworks/test_tensorflow.py, dtypes: [float64, float32],
           op: cross_entropy, reduction: none}
cases:
  - {id: labels-sum-to-one-and-a-half, input: [[0.6, 0.4]], target: [[0.5, 1.0]]}
  - {id: an-all-zero-label-row, input: [[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]],
     target: [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}
  - {id: a-negative-label, input: [[0.1, 0.2, 0.3]], target: [[0.5, -0.2, 0.0]]}
  - {id: generated-labels-summing-to-three, input: {generate: normal, shape: [6, 5], seed: 7},
     target: {generate: dirichlet, seed: 8, total: 3.0}}
"""
# Every API whose gradient is tf.nn.softmax_cross_entropy_with_logits' (Keras'
# CategoricalCrossentropy(from_logits=True) calls it on the TensorFlow backend).
SOFTMAX_XENT_GRADIENT = ("softmax_cross_entropy_with_logits",
                         "softmax_cross_entropy_with_logits-composed", "CategoricalCrossentropy")


@pytest.mark.parametrize("prefix", ["", "function-"])
def test_labels_off_a_distribution_give_the_documented_gradient_as_a_semantic_discrepancy(
    tmp_path: Path, prefix: str,
) -> None:
    """tf.nn.softmax_cross_entropy_with_logits: "each row of labels is a valid probability
    distribution. If they are not, the computation of the gradient will be incorrect" (its
    gradient is softmax - labels).  The loss is right; the gradient of a row that is not a
    distribution (all zeros, a sum of 1.5 or 3, a negative label) is TensorFlow's declared
    definition: 'semantic', never 'numeric'.  The log_softmax formulation gets both right."""
    cpu = ADAPTER.devices()[0]
    apis = {a.id: a for a in ADAPTER.apis()}
    for case in load_file(write(tmp_path / "unnormalised.yaml", UNNORMALISED)):
        for dtype in ("float64", "float32"):
            for api_id in SOFTMAX_XENT_GRADIENT:
                output, grad = check_case(case, ADAPTER, apis[prefix + api_id], cpu, dtype)
                assert output.status == "pass", (case.id, api_id, output.message)
                assert (grad.status, grad.kind) == ("fail", "semantic"), (case.id, api_id, grad)
                assert "valid probability distribution" in grad.message
            composed = apis[prefix + "log_softmax-composed"]
            assert [r.status for r in check_case(case, ADAPTER, composed, cpu, dtype)] == [
                "pass", "pass"], (case.id, dtype)


def test_devices_are_discovered_cpu_first() -> None:
    devices = ADAPTER.devices()
    assert devices[0].id == "cpu" and devices[0].kind == "cpu" and devices[0].name
    assert all(d.id.startswith("cuda:") and d.name for d in devices if d.kind == "gpu")


@pytest.mark.skipif(not any(d.kind == "gpu" for d in ADAPTER.devices()),
                    reason="no GPU visible to TensorFlow on this machine")
def test_gpu_devices_run_the_seed_cases() -> None:
    gpu = next(d for d in ADAPTER.devices() if d.kind == "gpu")
    (case,) = [c for c in load_cases([ROOT / "cases" / "seeds.yaml"])
               if c.id == "seed-003-batch-of-three"]
    for api in ADAPTER.apis_for(case.op):
        for record in check_case(case, ADAPTER, api, gpu, "float32"):
            assert record.status in ("pass", "unsupported"), record
            assert record.device == gpu.id and record.device_name == gpu.name


DETERMINISM_SCRIPT = """
import json, sys
import tensorflow as tf
from conformance.adapters import load_adapter
from conformance.cases.loading import load_cases
from conformance.cases.problem import make_problem
adapter = load_adapter("tensorflow")
case = next(c for c in load_cases(["cases/invalid"])
            if c.id == "invalid-target-out-of-range-nll")
api = next(a for a in adapter.apis() if a.id.startswith("function-") and a.op == case.op)
messages = {adapter.run(api, make_problem(case, "float32"), adapter.devices()[0]).message
            for _ in range(6)}
print(json.dumps({"threads": tf.config.threading.get_inter_op_parallelism_threads(),
                  "messages": sorted(messages)}))
"""


def test_a_graph_with_two_invalid_ops_raises_the_same_error_every_time() -> None:
    """The gather and the segment sum of the traced NLL both see the out-of-range target;
    with TensorFlow's default inter-op threads either raised (both messages seen across
    processes and within one), so two audits wrote different records."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["threads"] == 1
    assert len(found["messages"]) == 1
