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
def mpfr_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle without its vectorised path (reference/vectorised.py): for the tests of the
    MPFR/mpmath path's own properties (its precisions, its passes, its accuracy)."""
    from reference import vectorised

    monkeypatch.setattr(vectorised, "ENABLED", False)


# name -> class in tests/stand_in_adapters.py; the faulty ones misbehave only on the case named
# by $STANDIN_FAULT_CASE (see that module).
STAND_INS = {
    "exact": "ExactAdapter", "offset": "OffsetAdapter", "segfault": "SegfaultAdapter",
    "abort": "AbortAdapter", "hang": "HangAdapter", "noisy": "NoisyAdapter",
    "import-crash": "ImportCrashAdapter", "missing": "MissingAdapter", "zeros": "ZerosAdapter",
    "masked": "MaskedAdapter",
    "tracing": "TracingAdapter", "raising": "RaisingAdapter",
}


@pytest.fixture(autouse=True)
def private_oracle_cache(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests (and the workers they start) use a cache of their own, never the user's
    ``.conformance-cache``; tests of the cache itself point it elsewhere again."""
    monkeypatch.setenv("CONFORMANCE_CACHE", str(_session_cache(tmp_path_factory)))


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "oracle-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the stand-in adapters of tests/stand_in_adapters.py, for workers too."""
    monkeypatch.setenv("CONFORMANCE_ADAPTERS", ",".join(
        f"{name}=stand_in_adapters:{cls}" for name, cls in STAND_INS.items()))
    path = os.pathsep.join(filter(None, [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.syspath_prepend(str(TESTS))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
