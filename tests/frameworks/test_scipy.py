"""The SciPy adapter: every API (scipy.special and the NumPy user's logsumexp cross-entropy)
against the oracle; gradients unsupported with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy", reason="SciPy is not installed (tox -e scipy installs it)")

from conformance.adapters import load_adapter
from conformance.adapters.scipy_adapter import NO_GRAD
from conformance.cases.loading import load_cases, load_file
from conformance.cases.problem import make_problem
from conformance.judge.check import check_case
from tests.conftest import ROOT, write
from tests.frameworks.api_cases import api_cases, check_every_api

ADAPTER = load_adapter("scipy")


def test_the_issues_apis_are_declared_and_none_has_a_gradient() -> None:
    names = {api.name: api for api in ADAPTER.apis()}
    assert names["scipy.special.softmax"].kind == "native"
    assert names["scipy.special.log_softmax"].kind == "native"
    composed = [api for api in ADAPTER.apis() if api.kind == "composed"]
    assert {api.op for api in composed} == {"cross_entropy", "nll_loss"}
    assert all("logsumexp" in api.name for api in composed if api.op == "cross_entropy")
    assert all(api.no_grad == NO_GRAD for api in ADAPTER.apis())


@pytest.mark.parametrize("api", ADAPTER.apis(), ids=lambda api: api.id)
def test_api_matches_the_oracle_or_is_unsupported(api, tmp_path: Path) -> None:
    check_every_api(ADAPTER, api_cases(tmp_path), apis=(api,))


def test_every_seed_case_passes_its_output_in_float32_and_float64() -> None:
    cpu = ADAPTER.devices()[0]
    for case in load_cases([ROOT / "cases" / "seeds.yaml"]):
        for dtype in ("float32", "float64"):
            passed = False
            for api in ADAPTER.apis_for(case.op):
                records = check_case(case, ADAPTER, api, cpu, dtype)
                if records[0].status == "unsupported":
                    continue
                assert records[0].status == "pass", (case.id, api.name, records)
                assert all(r.status == "unsupported" for r in records[1:])
                passed = True
            assert passed, (case.id, dtype)


def test_float16_keeps_its_dtype_and_bfloat16_logsumexp_does_not(tmp_path: Path) -> None:
    """scipy.special.logsumexp returns float64 for a bfloat16 array (SciPy 1.17): the composed
    loss is then float64, which the record must show as a discrepancy, not a pass."""
    (case,) = [c for c in api_cases(tmp_path) if c.id == "index-mean"]
    api = next(a for a in ADAPTER.apis() if a.id == "logsumexp-index")
    cpu = ADAPTER.devices()[0]
    half = ADAPTER.run(api, make_problem(case, "float16"), cpu)
    assert half.status == "ok" and half.dtype == "float16"
    brain = ADAPTER.run(api, make_problem(case, "bfloat16"), cpu)
    assert brain.status == "ok" and brain.dtype == "float64"
    (output, _) = check_case(case, ADAPTER, api, cpu, "bfloat16")
    assert output.status == "fail" and output.kind == "behaviour"
    assert output.message.startswith("returned float64 for bfloat16 inputs")


INVALID = """\
defaults: {source: tests/frameworks/test_scipy.py, dtypes: [float64], expect: error,
           reduction: none}
cases:
  - {id: above-range, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [3]}
  - {id: negative, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [-1]}
"""


def test_numpy_raises_above_the_range_and_wraps_a_negative_index(tmp_path: Path) -> None:
    """np.take_along_axis raises IndexError for index C, but index -1 picks the last class
    (NumPy's negative indexing): a value where an error is expected."""
    cpu = ADAPTER.devices()[0]
    api = next(a for a in ADAPTER.apis() if a.id == "logsumexp-index")
    by_id = {}
    for case in load_file(write(tmp_path / "invalid.yaml", INVALID)):
        (record,) = check_case(case, ADAPTER, api, cpu, "float64")
        by_id[case.id] = record
    assert by_id["above-range"].status == "pass"
    assert "IndexError" in by_id["above-range"].message
    assert by_id["negative"].status == "fail" and by_id["negative"].kind == "behaviour"


def test_outputs_are_float64_arrays_of_the_expected_shape(tmp_path: Path) -> None:
    (case,) = [c for c in api_cases(tmp_path) if c.id == "index-k-dim-none"]
    api = next(a for a in ADAPTER.apis() if a.id == "logsumexp-index")
    outcome = ADAPTER.run(api, make_problem(case, "float32"), ADAPTER.devices()[0])
    assert outcome.status == "ok" and outcome.grad is None and outcome.dtype == "float32"
    assert outcome.output.dtype == np.float64 and outcome.output.shape == (1, 2)
