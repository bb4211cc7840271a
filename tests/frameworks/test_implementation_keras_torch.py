"""``conformance run --impl ... --like keras-torch:...``: users' functions and classes in place of
Keras' on the PyTorch backend (tests/frameworks/implementation_keras.py)."""

from __future__ import annotations

import pytest

from tests.frameworks import implementation_keras as checks
from tests.frameworks.implementation_checks import Verdicts

checks.needs("torch")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdicts]:
    return checks.run(tmp_path_factory.mktemp("keras-torch"), "keras-torch")


def test_the_callees_are_keras_public_functions_and_classes() -> None:
    checks.check_the_callees()


def test_a_wrapper_of_keras_gets_the_apis_own_verdicts(records: dict[str, Verdicts]) -> None:
    checks.check_a_wrapper_gets_the_apis_own_verdicts(records)


def test_a_naive_loss_overflows_where_keras_passes(records: dict[str, Verdicts]) -> None:
    checks.check_a_naive_loss_overflows_where_keras_passes(records)


def test_a_keyword_the_function_lacks_is_unsupported(records: dict[str, Verdicts]) -> None:
    checks.check_a_keyword_the_function_lacks_is_unsupported(records)
