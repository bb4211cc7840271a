"""Keras 3 on the PyTorch backend: every API against the oracle, with autograd gradients."""

from __future__ import annotations

from pathlib import Path

from conformance.judge.check import check_case
from tests.frameworks.api_cases import api_cases
from tests.frameworks.keras_checks import (
    SMOOTHING_ON_THE_LAST_AXIS,
    adapter,
    check_apis,
    check_seeds,
)

ADAPTER = adapter("keras-torch")


def test_keras_runs_on_torch() -> None:
    assert ADAPTER.keras.backend.backend() == "torch"
    assert "(torch " in ADAPTER.version()


def test_every_api_matches_the_oracle_in_float32_or_is_a_known_finding(tmp_path: Path) -> None:
    check_apis(ADAPTER, tmp_path, ("float32",), SMOOTHING_ON_THE_LAST_AXIS)


def test_float64_mean_losses_come_back_in_float32(tmp_path: Path) -> None:
    """A finding: on the torch backend a keras.losses loss with reduction mean
    (sum_over_batch_size) returns float32 for float64 inputs; none and sum keep float64."""
    cpu = ADAPTER.devices()[0]
    cases = {c.id: c for c in api_cases(tmp_path)}
    for api_id, case_id in (("CategoricalCrossentropy", "probability-mean"),
                            ("SparseCategoricalCrossentropy", "index-mean"),
                            ("SparseCategoricalCrossentropy-sample_weight", "index-mean")):
        api = next(a for a in ADAPTER.apis() if a.id == api_id)
        output = check_case(cases[case_id], ADAPTER, api, cpu, "float64")[0]
        assert output.status == "fail" and output.kind == "behaviour", output
        assert output.message.startswith("returned float32 for float64 inputs")
    sparse = next(a for a in ADAPTER.apis() if a.id == "SparseCategoricalCrossentropy")
    for case_id in ("index-sum", "index-ignored-none"):
        records = check_case(cases[case_id], ADAPTER, sparse, cpu, "float64")
        assert {r.status for r in records} == {"pass"}, records


def test_every_seed_case_passes_in_float32() -> None:
    check_seeds(ADAPTER, "float32")
