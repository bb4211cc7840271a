from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mpmath
import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parent
ROOT = TESTS.parent


@pytest.fixture(autouse=True)
def mpmath_global_precision_untouched() -> Iterator[None]:
    """Every computation sets its precision with workprec; the global must never move."""
    before = (mpmath.mp.prec, mpmath.mp.dps)
    yield
    assert (mpmath.mp.prec, mpmath.mp.dps) == before, "a test changed mpmath's global precision"


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the stand-in adapters of tests/stand_in_adapters.py, for workers too."""
    monkeypatch.setenv("CONFORMANCE_ADAPTERS", "exact=stand_in_adapters:ExactAdapter,"
                                               "offset=stand_in_adapters:OffsetAdapter")
    path = os.pathsep.join(filter(None, [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.syspath_prepend(str(TESTS))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
