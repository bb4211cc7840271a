"""The ONNX Runtime adapter: every API (one-node graphs and their expanded function bodies)
against the oracle; forward only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (tox -e onnxruntime)")
pytest.importorskip("onnx", reason="onnx is not installed (tox -e onnxruntime installs it)")

from conformance.adapters import load_adapter
from conformance.adapters.onnxruntime_adapter import NO_GRAD, OPSET
from conformance.cases.loading import load_cases, load_file
from conformance.cases.problem import make_problem
from conformance.judge.check import check_case
from tests.conftest import ROOT, write
from tests.frameworks.api_cases import api_cases, check_every_api

ADAPTER = load_adapter("onnxruntime")
# ONNX's losses (and the log_prob output of SoftmaxCrossEntropyLoss) need a batch axis.
BATCHED_ONLY = {"SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss",
                "SoftmaxCrossEntropyLoss-log_prob", "SoftmaxCrossEntropyLoss-expanded",
                "NegativeLogLikelihoodLoss-expanded"}


def test_the_issues_ops_are_declared_native_and_expanded_with_the_opset() -> None:
    names = {api.id: api for api in ADAPTER.apis()}
    for op in ("Softmax", "LogSoftmax", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"):
        assert names[op].kind == "native" and f"opset {OPSET}" in names[op].name
        assert names[f"{op}-expanded"].kind == "composed"
        assert names[f"{op}-expanded"].supports == names[op].supports
    assert all(api.no_grad == NO_GRAD for api in ADAPTER.apis())
    assert f"opset {OPSET}" in ADAPTER.version()


@pytest.mark.parametrize("api", ADAPTER.apis(), ids=lambda api: api.id)
def test_api_matches_the_oracle_or_is_unsupported(api, tmp_path: Path) -> None:
    cases = api_cases(tmp_path)
    if api.id in BATCHED_ONLY:
        unbatched = [c for c in cases if c.op == api.op and len(np.shape(c.input)) == 1
                     and api.unsupported_reason(c.options()) is None]
        assert unbatched
        for case in unbatched:
            (record, *_) = check_case(case, ADAPTER, api, ADAPTER.devices()[0], "float32")
            assert record.status == "unsupported" and "(N, C)" in record.message, record
        cases = [c for c in cases if c not in unbatched]
    check_every_api(ADAPTER, cases, apis=(api,))


def test_every_seed_case_passes_its_output_in_float32_and_float64() -> None:
    cpu = ADAPTER.devices()[0]
    for case in load_cases([ROOT / "cases" / "seeds.yaml"]):
        for dtype in ("float32", "float64"):
            passed, runnable = False, False
            for api in ADAPTER.apis_for(case.op):
                runnable |= api.unsupported_reason(case.options()) is None
                records = check_case(case, ADAPTER, api, cpu, dtype)
                if records[0].status == "unsupported":
                    continue
                assert records[0].status == "pass", (case.id, api.name, records)
                assert [r.status for r in records[1:]] == ["unsupported"] * (len(records) - 1)
                passed = True
            assert passed == runnable, (case.id, dtype)
            # only probability targets and smoothing, which no ONNX op has, keep a case out
            assert runnable or {"probability_target", "label_smoothing"} & set(case.options())


def test_float16_runs_and_bfloat16_is_unsupported_with_orts_message(tmp_path: Path) -> None:
    (case,) = [c for c in api_cases(tmp_path) if c.id == "index-mean"]
    cpu = ADAPTER.devices()[0]
    api = next(a for a in ADAPTER.apis() if a.id == "SoftmaxCrossEntropyLoss")
    half = ADAPTER.run(api, make_problem(case, "float16"), cpu)
    assert half.status == "ok" and half.dtype == "float16"
    (record,) = check_case(case, ADAPTER, api, cpu, "bfloat16")
    assert record.status == "unsupported" and "NOT_IMPLEMENTED" in record.message


INVALID = """\
defaults: {source: tests/frameworks/test_onnxruntime.py, dtypes: [float32], expect: error,
           reduction: none}
cases:
  - {id: above-range, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [3]}
  - {id: negative, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [-1]}
"""


def test_invalid_labels_give_records_of_orts_behaviour(tmp_path: Path) -> None:
    cpu = ADAPTER.devices()[0]
    seen = {}
    for case in load_file(write(tmp_path / "invalid.yaml", INVALID)):
        for api in ADAPTER.apis_for(case.op):
            (record, *_) = check_case(case, ADAPTER, api, cpu, "float32")
            assert record.status in ("pass", "fail"), record
            if record.status == "fail":
                assert record.kind == "behaviour" and "returned a value" in record.message
            seen[(case.id, api.id)] = record.status
    assert ("above-range", "SoftmaxCrossEntropyLoss") in seen


def test_outputs_are_float64_arrays_of_the_expected_shape(tmp_path: Path) -> None:
    (case,) = [c for c in api_cases(tmp_path) if c.id == "index-k-dim-none"]
    api = next(a for a in ADAPTER.apis() if a.id == "SoftmaxCrossEntropyLoss-expanded")
    outcome = ADAPTER.run(api, make_problem(case, "float32"), ADAPTER.devices()[0])
    assert outcome.status == "ok" and outcome.grad is None and outcome.dtype == "float32"
    assert outcome.output.dtype == np.float64 and outcome.output.shape == (1, 2)
