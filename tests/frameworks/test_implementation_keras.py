"""``conformance run --impl ... --like keras-jax:...`` and ``keras-torch:...``: users' functions
and classes in place of Keras' on the JAX and the PyTorch backend
(tests/frameworks/implementation_keras.py); each backend's tests skip where it is not installed
(``tox -e keras-jax`` and ``tox -e keras-torch`` each run one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.frameworks import implementation_keras as checks
from tests.frameworks.implementation_checks import Verdicts

checks.needs_keras()


@pytest.fixture(scope="module", params=["jax", "torch"])
def records(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdicts]:
    backend = request.param
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (tox -e keras-{backend} installs it)")
    folder: Path = tmp_path_factory.mktemp(f"keras-{backend}")
    return checks.run(folder, f"keras-{backend}")


def test_the_callees_are_keras_public_functions_and_classes() -> None:
    checks.check_the_callees()


def test_a_wrapper_of_keras_gets_the_apis_own_verdicts(records: dict[str, Verdicts]) -> None:
    checks.check_a_wrapper_gets_the_apis_own_verdicts(records)


def test_a_naive_loss_overflows_where_keras_passes(records: dict[str, Verdicts]) -> None:
    checks.check_a_naive_loss_overflows_where_keras_passes(records)


def test_a_keyword_the_function_lacks_is_unsupported(records: dict[str, Verdicts]) -> None:
    checks.check_a_keyword_the_function_lacks_is_unsupported(records)
