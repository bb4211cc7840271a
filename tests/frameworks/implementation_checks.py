"""What the ``--impl``/``--like`` tests of the MLX, SciPy and Keras adapters share: one
``conformance run`` of users' functions (the workers import them from ``tests.frameworks``)
and the check that a function which only calls the public callee gets the API's verdicts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance import cli
from conformance.results.jsonl import read_results
from conformance.results.records import Record
from tests.conftest import ROOT, write

Verdicts = dict[tuple[str, str], Record]  # (case id, quantity) -> record


def run_implementations(tmp_path: Path, cases: str, framework: str,
                        *arguments: str) -> dict[str, Verdicts]:
    """One run of ``arguments`` (``--impl``s with their ``--like``s) on ``cases`` in float32:
    ``framework``'s records by api, then by (case, quantity)."""
    out = tmp_path / "results.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        code = cli.main(["run", "--cases", str(write(tmp_path / "cases.yaml", cases)),
                         "--out", str(out), "--exit-zero", "--dtype", "float32", *arguments])
    assert code == 0
    found: dict[str, Verdicts] = {}
    for record in read_results([out]).records:
        assert record.framework == framework, record
        found.setdefault(record.api, {})[(record.case_id, record.quantity)] = record
    return found


def assert_same_verdicts(mine: Verdicts, theirs: Verdicts, like: str) -> None:
    """Every record of the implementation is the API's: status, kind, error and values."""
    assert mine.keys() == theirs.keys() and mine
    for key, record in mine.items():
        builtin = theirs[key]
        assert (record.status, record.kind, record.max_ulp_error, record.actual) == \
            (builtin.status, builtin.kind, builtin.max_ulp_error, builtin.actual), key
        assert record.api_kind == "implementation" and record.extra == {"like": like}
