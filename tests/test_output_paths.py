"""Outputs that name inputs (issue 12, item 9) and tolerance scales that are no number
(item 3, the command line's half).

Every subcommand that writes refuses, with exit 2 and before it reads or writes anything, an
output that is one of its inputs or another of its outputs: the same path, the same file
through a symlink or a hard link, a case file found under a ``--cases`` directory, or a path
inside the oracle cache.  Nothing here starts a worker: each command is refused first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from conformance.cli import main
from tests.conftest import write
from tests.report_samples import small_run, write_results

CASES = """\
cases:
  - id: p-softmax
    source: test
    op: softmax
    dtypes: [float64]
    input: [1.0, 2.0, 3.0]
"""


@pytest.fixture
def cases(tmp_path: Path, stand_ins: None) -> Path:
    directory = tmp_path / "cases"
    directory.mkdir()
    return write(directory / "mine.yaml", CASES)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return write_results(tmp_path / "r.jsonl", small_run())


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *untouched: Path) -> str:
    """Run ``argv``; assert it exits 2 and leaves ``untouched`` as they were; its stderr."""
    before = {path: path.read_bytes() for path in untouched}
    capsys.readouterr()
    assert main(argv) == 2
    error = capsys.readouterr().err
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} was changed"
    assert "may not be an input or another output" in error, error
    return error


def run_argv(cases: Path | str, *extra: str) -> list[str]:
    return ["run", "--cases", str(cases), "--framework", "exact", *extra]


# --- conformance run ----------------------------------------------------------------------


def test_run_refuses_a_report_over_its_results(
        cases: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = refused(run_argv(cases, "--out", str(results), "--append", "--report",
                             str(results)), capsys, results)
    assert "--report" in error and "--out" in error


def test_run_refuses_to_overwrite_its_own_case_file(
        cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = refused(run_argv(cases, "--out", str(cases), "--overwrite"), capsys, cases)
    assert str(cases) in error


def test_run_refuses_a_report_over_a_case_file_under_a_cases_directory(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = refused(run_argv(cases.parent, "--out", str(tmp_path / "new.jsonl"),
                             "--report", str(cases)), capsys, cases)
    assert "a case file under --cases" in error
    assert not (tmp_path / "new.jsonl").exists()


@pytest.mark.parametrize("link", [os.symlink, os.link], ids=["symlink", "hard link"])
def test_run_refuses_an_output_that_is_a_case_file_under_another_name(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        link: Callable[[Path, Path], None]) -> None:
    other = tmp_path / "elsewhere.jsonl"
    link(cases, other)
    refused(run_argv(cases, "--out", str(other), "--overwrite"), capsys, cases)
    assert cases.read_text() == CASES


def test_run_refuses_an_output_inside_the_oracle_cache(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    (cache / "oracle-x").mkdir(parents=True)
    error = refused(run_argv(cases, "--cache", str(cache), "--out",
                             str(cache / "oracle-x" / "r.jsonl")), capsys)
    assert "the oracle cache" in error
    assert not (cache / "oracle-x" / "r.jsonl").exists()


def test_run_refuses_the_cache_directory_as_report_with_the_default_cache(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("CONFORMANCE_CACHE", str(cache))
    refused(run_argv(cases, "--out", str(tmp_path / "r.jsonl"), "--report",
                     str(cache / "report.html")), capsys)


def test_the_runner_refuses_results_over_a_case_file(cases: Path) -> None:
    from conformance.run.runner import RunOptions, run

    with pytest.raises(ValueError, match="may not be an input"):
        run(RunOptions(cases=[str(cases.parent)], frameworks=["exact"], out=cases,
                       overwrite=True), log=lambda line: None)
    assert cases.read_text() == CASES


# --- report, merge, pairwise --------------------------------------------------------------


def test_report_refuses_to_write_over_its_results(
        results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(["report", str(results), "-o", str(results)], capsys, results)
    alias = tmp_path / "alias.jsonl"
    alias.symlink_to(results)
    refused(["report", str(results), "-o", str(alias)], capsys, results)


def test_merge_refuses_to_write_over_an_input(
        results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = write_results(tmp_path / "other.jsonl", small_run("cccccccccccc"))
    refused(["merge", str(results), str(other), "-o", str(other)], capsys, results, other)
    os.link(other, tmp_path / "hard.jsonl")
    refused(["merge", str(results), str(other), "-o", str(tmp_path / "hard.jsonl")], capsys,
            results, other)


def test_pairwise_refuses_to_write_over_an_input(
        results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(["pairwise", str(results), "--out", str(results)], capsys, results)


def test_outputs_apart_from_inputs_are_written(
        results: Path, tmp_path: Path) -> None:
    assert main(["report", str(results), "-o", str(tmp_path / "report.html")]) == 0
    assert main(["merge", str(results), "-o", str(tmp_path / "merged.jsonl")]) == 0
    assert main(["pairwise", str(results), "--out", str(tmp_path / "pairs.jsonl")]) == 0
    assert all((tmp_path / name).is_file()
               for name in ("report.html", "merged.jsonl", "pairs.jsonl"))


# --- item 3: --tolerance-scale must be a finite positive number --------------------------


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400", "0", "-2"])
def test_a_tolerance_scale_that_is_not_finite_and_positive_is_refused(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    out = tmp_path / "r.jsonl"
    argv = [*run_argv(cases, "--out", str(out)), f"--tolerance-scale={value}"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"--tolerance-scale must be a finite number > 0, got {float(value)}" in error
    assert not out.exists()
