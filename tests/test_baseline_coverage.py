"""``scripts/baseline_coverage.py``: the check run on a regenerated baseline before it is
committed (0 new, no xpass, no stale entry, or exit 1 naming what is off)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT, write
from tests.report_samples import adapter, environment, result, write_results


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "baseline_coverage", ROOT / "scripts" / "baseline_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ENTRY = """\
- match: {framework: torch, case: c-fail, quantity: output}
  kind: numeric
  reason: float16 sum
  link: not reported upstream yet
"""
STALE = """\
- match: {framework: torch, case: c-pass, dtype: float64}
  reason: fixed long ago
  link: not reported upstream yet
"""


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return write_results(tmp_path / "r.jsonl", [
        environment(), adapter(), result("c-pass"),
        result("c-fail", "fail", kind="numeric", message="3 ulp past the bound"),
        result("c-nan", "fail", kind="special-value", message="nan where 0.5")])


def test_a_baseline_that_covers_everything_exits_0(
        tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nan = ENTRY.replace("c-fail", "c-nan").replace("numeric", "special-value")
    assert _script().main([str(results), "--baseline",
                           str(write(tmp_path / "k.yaml", ENTRY + nan))]) == 0
    assert capsys.readouterr().out == "torch: 2 xfail, 0 xpass, 0 new\n"


def test_new_discrepancies_and_stale_entries_are_listed_and_exit_1(
        tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known = write(tmp_path / "k.yaml", ENTRY + STALE)
    assert _script().main([str(results), "--baseline", str(known)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "torch: 1 xfail, 0 xpass, 1 new"
    assert out[1] == f"stale: {known}:5: fixed long ago"
    assert out[2].startswith("new: torch | c-nan | torch.nn.functional.cross_entropy | "
                             "float32 | output | fail special-value | nan where 0.5")


def test_an_xpass_exits_1(tmp_path: Path, results: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    everything = write(tmp_path / "k.yaml", """\
- match: {framework: torch}
  reason: all of it
  link: not reported upstream yet
""")
    assert _script().main([str(results), "--baseline", str(everything)]) == 1
    assert capsys.readouterr().out == "torch: 2 xfail, 1 xpass, 0 new\n"


def test_a_bad_baseline_exits_2_naming_it(tmp_path: Path, results: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "k.yaml", "- match: {case: c}\n  why: x\n")
    assert _script().main([str(results), "--baseline", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
