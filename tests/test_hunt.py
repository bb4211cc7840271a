"""``conformance hunt``: it finds a bug that only some inputs show, shrinks it to a small case
file that validates and reproduces with ``conformance run``, writes one file per distinct
discrepancy, never overwrites one, and finds nothing in a framework without bugs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("hypothesis", reason="conformance hunt needs Hypothesis")

from conformance.adapters import load_adapter
from conformance.cases.loading import load_file
from conformance.cli import main
from conformance.hunt.hunter import SOURCE, hunt

pytestmark = pytest.mark.usefixtures("stand_ins")


def test_a_framework_without_bugs_gives_nothing(tmp_path: Path) -> None:
    summary = hunt(load_adapter("exact"), 300.0, tmp_path / "found", dtypes=("float32",),
                   max_problems=40)
    assert summary.tried == 40 and not summary.findings and not summary.own_errors
    assert not (tmp_path / "found").exists()
    assert "problems/s" in summary.report()


def test_a_bug_on_masked_classes_is_found_shrunk_and_reproduced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "found"
    # the seed fixes what Hypothesis draws; the budget is there only for a machine at a halt
    code = main(["hunt", "--framework", "masked", "--budget", "300", "--max-problems", "300",
                 "--out", str(out), "--dtype", "float64"])
    report = capsys.readouterr().out
    assert code == 1, report
    files = sorted(out.glob("*.yaml"))
    assert files and "distinct discrepancies" in report
    for path in files:
        (case,) = load_file(path)  # it validates
        assert case.source == SOURCE and "seed" in case.description
        assert "-inf" in json.dumps(case.raw["input"])  # the bug's trigger, kept by shrinking
    # it reproduces with conformance run, on the same framework
    results = tmp_path / "results.jsonl"
    assert main(["run", "--cases", str(files[0]), "--framework", "masked", "--out",
                 str(results)]) == 1
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert any(line.get("status") == "fail" for line in lines)
    capsys.readouterr()
    # a second hunt finds it again but leaves the file as it was
    before = {path: path.read_bytes() for path in files}
    assert main(["hunt", "--framework", "masked", "--budget", "300", "--max-problems", "100",
                 "--out", str(out), "--dtype", "float64", "--exit-zero"]) == 0
    assert "already in the output folder" in capsys.readouterr().out
    assert all(path.read_bytes() == data for path, data in before.items())


def test_bad_options_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hunt", "--framework", "exact", "--budget", "-1"]) == 2
    assert "--budget" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["hunt", "--framework", "exact", "--out", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
