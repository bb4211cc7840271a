"""What a run may continue or replace: ``--resume`` and ``--append`` refuse a file whose run
had other settings or other cases (issue 12, item 6), ``--overwrite`` refuses a file a live
run holds (item 8), and a complete last line without its newline is kept (item 11).

Every run here is a real ``conformance run`` on the stand-in adapters of
``tests/stand_in_adapters.py``; a refused one must exit 2 before it starts any worker and
leave the file byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.results.jsonl import read_results
from conformance.run.runner import RunOptions, case_digests, repair_tail, run
from tests.conftest import write

CASES = """\
cases:
  - id: case-a
    source: test
    op: cross_entropy
    dtypes: [float64, float32]
    input: [[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]]
    target: [2, 0]
  - id: case-b
    source: test
    op: log_softmax
    dtypes: [float64]
    input: [1.0, 2.0, 3.0]
"""


@pytest.fixture
def cases(tmp_path: Path, stand_ins: None) -> Path:
    return write(tmp_path / "cases.yaml", CASES)


def run_cli(*args: str) -> int:
    return main(["run", *args])


def first_run(cases: Path, out: Path, *extra: str) -> bytes:
    """A complete run of the stand-in ``exact`` on ``cases`` into ``out``; its bytes."""
    assert run_cli("--cases", str(cases), "--framework", "exact", "--out", str(out),
                   "--jobs", "1", *extra) == 0
    return out.read_bytes()


def environment_lines(path: Path) -> list[dict[str, object]]:
    return read_results([path]).environments


# --- item 6: the run's settings and case digests are in the file --------------------------


def test_the_environment_line_holds_the_runs_settings_and_case_digests(
        cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first_run(cases, out, "--tolerance-scale", "2", "--dtype", "float64", "float32")
    (line,) = environment_lines(out)
    settings = line["settings"]
    assert isinstance(settings, dict)
    assert settings["cases"] == [str(cases)]
    assert settings["frameworks"] == ["exact"]
    assert settings["dtypes"] == ["float32", "float64"] and settings["devices"] is None
    assert settings["tolerance_scale"] == 2.0 and settings["timeout"] == 600.0
    digests = line["case_digests"]
    assert isinstance(digests, dict) and sorted(digests) == ["case-a", "case-b"]
    assert all(len(str(d)) == 64 and int(str(d), 16) >= 0 for d in digests.values())
    assert digests["case-a"] != digests["case-b"]


def test_a_case_digest_follows_what_changes_records_not_the_description(
        tmp_path: Path) -> None:
    from conformance.cases.loading import load_cases

    def digests(text: str) -> dict[str, str]:
        return case_digests(load_cases([write(tmp_path / "c.yaml", text)]))

    base = digests(CASES)
    described = digests(CASES.replace("op: log_softmax", "op: log_softmax\n    description: x"))
    assert described == base
    for edit in ("input: [1.0, 2.0, 4.0]", "input: [1.0, 2.0, 3.0]\n    tolerance: 2",
                 "input: [1.0, 2.0, 3.0]\n    documented: [-2.4076, -1.4076, -0.4076]"):
        edited = digests(CASES.replace("input: [1.0, 2.0, 3.0]", edit))
        assert edited["case-a"] == base["case-a"] and edited["case-b"] != base["case-b"], edit
    dtypes = digests(CASES.replace("dtypes: [float64]\n", "dtypes: [float64, float32]\n"))
    assert dtypes["case-b"] != base["case-b"]


# --- item 6: a resume with other settings is refused -------------------------------------


@pytest.mark.parametrize(("change", "named"), [
    (["--tolerance-scale", "2"], "--tolerance-scale"),
    (["--dtype", "float64"], "--dtype"),
    (["--framework", "exact", "offset"], "--framework"),
    (["--timeout", "30"], "--timeout"),
])
def test_resume_with_other_settings_is_refused_naming_them(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        change: list[str], named: str) -> None:
    out = tmp_path / "r.jsonl"
    before = first_run(cases, out)
    capsys.readouterr()
    args = ["--cases", str(cases), "--framework", "exact", "--out", str(out), "--resume"]
    # later options win in argparse, so ``change`` replaces the first run's option
    assert run_cli(*args, *change) == 2
    error = capsys.readouterr().err
    assert named in error and "cannot resume" in error, error
    assert out.read_bytes() == before


def test_resume_with_the_tolerance_scale_in_the_environment_is_refused(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.jsonl"
    before = first_run(cases, out)
    monkeypatch.setenv("CONFORMANCE_TOLERANCE_SCALE", "3")
    capsys.readouterr()
    assert run_cli("--cases", str(cases), "--framework", "exact", "--out", str(out),
                   "--resume") == 2
    error = capsys.readouterr().err
    assert "--tolerance-scale" in error and "none in the run of" in error
    assert "3.0 now" in error
    assert out.read_bytes() == before


@pytest.mark.parametrize("other", ["copy", "relative"])
def test_resume_with_other_case_files_is_refused(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, other: str) -> None:
    out = tmp_path / "r.jsonl"
    before = first_run(cases, out)
    if other == "copy":  # the same cases, from another file
        path = str(write(tmp_path / "copy.yaml", CASES))
    else:  # the same file by another name: the records' case_file would differ
        monkeypatch.chdir(tmp_path)
        path = cases.name
    capsys.readouterr()
    assert run_cli("--cases", path, "--framework", "exact", "--out", str(out),
                   "--resume") == 2
    error = capsys.readouterr().err
    assert f'--cases: ["{cases}"] in the run of {out}:1, ["{path}"] now' in error, error
    assert out.read_bytes() == before


def test_resume_after_a_case_was_edited_is_refused_naming_the_case(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    before = first_run(cases, out)
    cases.write_text(CASES.replace("input: [1.0, 2.0, 3.0]", "input: [1.0, 2.0, 4.0]") + """\
  - id: case-new
    source: test
    op: softmax
    input: [1.0, 2.0]
""")
    capsys.readouterr()
    assert run_cli("--cases", str(cases), "--framework", "exact", "--out", str(out),
                   "--resume") == 2
    error = capsys.readouterr().err
    assert f"edited since the run of {out}:1: case-b" in error
    assert f"not in the run of {out}:1: case-new" in error and "case-a," not in error
    assert out.read_bytes() == before


def test_resume_of_a_file_from_an_older_version_is_refused_and_report_still_reads_it(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    first_run(cases, out)
    lines = out.read_text().splitlines(keepends=True)
    old = {k: v for k, v in json.loads(lines[0]).items()
           if k not in ("settings", "case_digests")}
    out.write_text(json.dumps(old) + "\n" + "".join(lines[1:]))
    before = out.read_bytes()
    capsys.readouterr()
    assert run_cli("--cases", str(cases), "--framework", "exact", "--out", str(out),
                   "--resume") == 2
    error = capsys.readouterr().err
    assert f"{out}:1:" in error and "older conformance" in error
    assert out.read_bytes() == before
    assert main(["report", str(out), "-o", str(tmp_path / "report.html")]) == 0
    assert "case-b" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_resume_with_the_same_settings_runs_only_the_missing_jobs(
        cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first_run(cases, out)
    full = out.read_text()
    lines = full.splitlines(keepends=True)
    out.write_text("".join(lines[:-2]))  # the last job (two records) never written
    spelled = f"{cases.parent}/./{cases.name}"  # the same path, spelled another way
    summary = run(RunOptions(cases=[spelled], frameworks=["exact"], out=out, resume=True,
                             jobs=1), log=lambda line: None)
    assert summary.resumed_jobs == 2 and out.read_text() == full


# --- item 6: an --append into the same environment -------------------------------------


def test_append_with_another_tolerance_scale_is_refused(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    before = first_run(cases, out)
    capsys.readouterr()
    assert run_cli("--cases", str(cases), "--framework", "offset", "--out", str(out),
                   "--append", "--tolerance-scale", "4") == 2
    error = capsys.readouterr().err
    assert "cannot append" in error
    assert "--tolerance-scale ($CONFORMANCE_TOLERANCE_SCALE): none in the run of" in error
    assert out.read_bytes() == before


def test_append_with_an_edited_case_is_refused(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    before = first_run(cases, out)
    cases.write_text(CASES.replace("target: [2, 0]", "target: [1, 0]"))
    capsys.readouterr()
    assert run_cli("--cases", str(cases), "--framework", "offset", "--out", str(out),
                   "--append") == 2
    assert f"edited since the run of {out}:1: case-a" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_append_of_another_framework_with_the_same_cases_is_accepted(
        cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first_run(cases, out)
    assert run_cli("--cases", str(cases), "--framework", "offset", "--out", str(out),
                   "--append", "--exit-zero", "--jobs", "1") == 0
    results = read_results([out])
    assert len(results.environments) == 2
    assert {r.framework for r in results.records} == {"exact", "offset"}


# --- item 8: --overwrite takes the lock before it replaces anything ----------------------


def test_overwrite_of_a_file_a_live_run_holds_is_refused(
        cases: Path, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl", reason="advisory locks are POSIX-only")
    out = tmp_path / "r.jsonl"
    before = first_run(cases, out)
    inode = out.stat().st_ino
    with out.open("a", encoding="utf-8") as held:  # what a live run holds while it writes
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other = subprocess.run(
            [sys.executable, "-m", "conformance", "run", "--cases", str(cases), "--framework",
             "exact", "--out", str(out), "--overwrite"],
            capture_output=True, text=True, timeout=300, env=dict(os.environ))
        assert other.returncode == 2, other.stderr
        assert "another conformance run is writing this file" in other.stderr
        assert out.exists() and out.stat().st_ino == inode
        assert out.read_bytes() == before


def test_overwrite_replaces_the_contents_of_a_file_no_run_holds(
        cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first_run(cases, out)
    first_run(cases, out, "--overwrite")
    results = read_results([out])
    assert len(results.environments) == 1
    assert len(results.records) == len({(r.framework, r.job, r.quantity, r.dtype)
                                        for r in results.records})


# --- item 11: a complete last line without its newline is kept -------------------------


def test_append_keeps_a_complete_last_line_that_lacks_its_newline(
        cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first = first_run(cases, out)
    out.write_bytes(first.rstrip(b"\n"))  # e.g. written by another tool or machine
    first_records = read_results([out]).records
    assert run_cli("--cases", str(cases), "--framework", "offset", "--out", str(out),
                   "--append", "--exit-zero", "--jobs", "1") == 0
    assert out.read_bytes().startswith(first)
    records = read_results([out]).records
    assert records[:len(first_records)] == first_records


def test_repair_tail_cuts_only_a_line_that_does_not_parse(
        cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first = first_run(cases, out)
    lines = first.splitlines(keepends=True)
    logged: list[str] = []
    out.write_bytes(first.rstrip(b"\n"))
    repair_tail(out, logged.append)
    assert out.read_bytes() == first
    assert len(logged) == 1 and "newline" in logged[0] and "removed" not in logged[0]
    logged.clear()
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # torn: the last job is short
    repair_tail(out, logged.append)
    assert out.read_bytes() == b"".join(lines[:-2])
    assert any("torn last line" in line for line in logged)
