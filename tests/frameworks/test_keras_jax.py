"""Keras 3 on the JAX backend: every API against the oracle, with jax.vjp gradients."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.frameworks.keras_checks import (
    SMOOTHING_ON_THE_LAST_AXIS,
    adapter,
    check_apis,
    check_seeds,
)

ADAPTER = adapter("keras-jax")
# keras.ops.sparse_categorical_crossentropy checks that the target's shape is the logits'
# "up until the last dimension" whatever `axis` says (keras/src/backend/jax/nn.py), so the
# class axis at 1 of K-dimensional logits is refused: a finding, on every sparse API.
AXIS_REFUSED = "ValueError: target and output must have the same shape up until the last dim"
KNOWN = {**SMOOTHING_ON_THE_LAST_AXIS,
         **{(api, case): AXIS_REFUSED
            for api in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy",
                        "SparseCategoricalCrossentropy-sample_weight")
            for case in ("index-k-dim-none", "index-k-dim-weighted-mean")
            if not (api != "SparseCategoricalCrossentropy-sample_weight"
                    and case == "index-k-dim-weighted-mean")}}


def test_keras_runs_on_jax() -> None:
    assert ADAPTER.keras.backend.backend() == "jax"
    assert "(jax " in ADAPTER.version()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_api_matches_the_oracle_or_is_a_known_finding(dtype: str, tmp_path: Path) -> None:
    check_apis(ADAPTER, tmp_path, (dtype,), KNOWN)


def test_every_seed_case_passes_in_float32_and_float64() -> None:
    check_seeds(ADAPTER, "float32")
    check_seeds(ADAPTER, "float64")
