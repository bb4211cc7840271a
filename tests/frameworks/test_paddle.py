"""The PaddlePaddle adapter: every API against the oracle, with gradients; Paddle's findings
kept as strict expectations so the test notices a fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("paddle", reason="PaddlePaddle is not installed (tox -e paddle installs it)")

from conformance.adapters import load_adapter
from conformance.adapters.paddle_adapter import NLL_UNBATCHED, SOFT_LABEL_WEIGHTS
from conformance.cases.loading import load_cases
from conformance.cases.problem import make_problem
from conformance.judge.check import check_case
from tests.conftest import ROOT
from tests.frameworks.api_cases import api_cases, check_every_api

ADAPTER = load_adapter("paddle")
HARD = ("cross_entropy", "cross_entropy-use_softmax_false")
SOFT = "cross_entropy-soft_label"
# Findings of Paddle 3.3.1 on CPU, in float32 and float64:
KNOWN = {
    # a mean over index targets with an ignored one and no weights is off by ~0.47
    **{(api, "index-ignored-mean"): "mean counts the ignored target" for api in HARD},
    # soft labels: an unbatched or K-dimensional unreduced loss keeps the class axis (size 1)
    (SOFT, "probability-none-unbatched"): "shape (1,), not ()",
    (SOFT, "probability-k-dim-none"): "shape (1, 1, 2), not (1, 2)",
    (SOFT, "probability-k-dim-smoothed-none"): "shape (1, 1, 2), not (1, 2)",
    # class weights with K-dimensional soft labels raise in a matmul
    (SOFT, "probability-k-dim-weighted-mean"): "InvalidArgument in matmul",
    # Paddle's own soft-label weighting (declared as semantics)
    (SOFT, "probability-weighted-smoothed-sum"): SOFT_LABEL_WEIGHTS,
}
# ...and in float64 only: smoothing is float32-accurate (about 1e-7 off)
KNOWN_FLOAT64 = {**KNOWN, **{(api, "index-smoothed"): "smoothing in float32" for api in HARD},
                 (SOFT, "probability-smoothed-sum"): "smoothing in float32"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_api_matches_the_oracle_or_is_a_known_finding(dtype: str, tmp_path: Path) -> None:
    cases = [c for c in api_cases(tmp_path) if not (c.op == "nll_loss" and np.ndim(c.input) < 2)]
    known = KNOWN if dtype == "float32" else KNOWN_FLOAT64
    check_every_api(ADAPTER, cases, dtypes=(dtype,), known=known)


def test_the_soft_label_weighting_is_declared_and_failures_under_it_are_semantic(
        tmp_path: Path) -> None:
    (case,) = [c for c in api_cases(tmp_path) if c.id == "probability-weighted-smoothed-sum"]
    soft = next(a for a in ADAPTER.apis() if a.id == SOFT)
    assert soft.semantics == {"weight": SOFT_LABEL_WEIGHTS}
    records = check_case(case, ADAPTER, soft, ADAPTER.devices()[0], "float32")
    assert {(r.status, r.kind) for r in records} == {("fail", "semantic")}


def test_an_unbatched_nll_input_is_unsupported(tmp_path: Path) -> None:
    (case,) = [c for c in api_cases(tmp_path) if c.id == "nll-none-unbatched"]
    (record,) = check_case(case, ADAPTER, ADAPTER.apis_for("nll_loss")[0],
                           ADAPTER.devices()[0], "float32")
    assert (record.status, record.message) == ("unsupported", NLL_UNBATCHED)


def test_seed_cases_pass_or_fail_only_where_known() -> None:
    cpu = ADAPTER.devices()[0]
    passed = 0
    for case in load_cases([ROOT / "cases" / "seeds.yaml"]):
        for api in ADAPTER.apis_for(case.op):
            records = check_case(case, ADAPTER, api, cpu, "float32")
            assert {r.status for r in records} <= {"pass", "fail", "unsupported"}, records
            passed += all(r.status == "pass" for r in records)
    assert passed >= 12


def test_outputs_are_float64_arrays_with_their_dtype(tmp_path: Path) -> None:
    (case,) = [c for c in api_cases(tmp_path) if c.id == "index-k-dim-none"]
    outcome = ADAPTER.run(ADAPTER.apis_for("cross_entropy")[0], make_problem(case, "float32"),
                          ADAPTER.devices()[0])
    assert outcome.status == "ok" and outcome.dtype == "float32"
    assert outcome.output.dtype == np.float64 and outcome.output.shape == (1, 2)
    assert outcome.grad is not None and outcome.grad.shape == (1, 3, 2)
