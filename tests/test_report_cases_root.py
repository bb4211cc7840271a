"""The report reads case files only from inside ``--cases-root`` (issue 12, item 14).

A results file is not trusted to name what the report may read: a case file is read only when
it resolves (symlinks followed) to a regular file inside the root (default: the current
directory), and the text of a file that fails to load as a case file is never quoted, so a
results line naming ``/etc/shadow`` cannot copy any of it into the page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.report.page import write_report
from tests.report_samples import adapter, environment, result, with_details, write_results

SECRET = "SECRET-7f3a9c-do-not-copy"
VALID_CASES = """\
cases:
  - {id: c-pass, source: test, op: cross_entropy, input: [[0.5, 1.5, -1.0]], target: [0],
     dtypes: [float32]}
"""


def _report(tmp_path: Path, lines: list[dict[str, Any]], root: Path | None) -> str:
    results = write_results(tmp_path / "results.jsonl", lines)
    info = write_report([results], tmp_path / "report.html", cases_root=root)
    # the page and the (compressed) data its details are built from, decompressed
    return with_details(info.path.read_text(encoding="utf-8"))


def _failing_run(case_file: str) -> list[dict[str, Any]]:
    """An environment, an adapter and one failing record naming ``case_file``."""
    return [environment(), adapter(),
            result("c-pass", "fail", kind="numeric", case_file=case_file, max_ulp_error=9.0)]



@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A cases root holding one valid case file; a secret file lies outside it."""
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "cases.yaml").write_text(VALID_CASES, encoding="utf-8")
    (tmp_path / "secret.txt").write_text(f"root:{SECRET}:19000:0:99999:7:::\n",
                                         encoding="utf-8")
    return tmp_path / "root"


def test_a_case_file_inside_the_root_is_shown(tmp_path: Path, root: Path) -> None:
    text = _report(tmp_path, _failing_run("cases.yaml"), root)
    assert "YAML (save as repro.yaml)" in text and "id: c-pass" in text


@pytest.mark.parametrize("name", ["absolute", "dotdot", "symlink"])
def test_a_case_file_outside_the_root_is_never_read(tmp_path: Path, root: Path,
                                                    name: str) -> None:
    secret = tmp_path / "secret.txt"
    if name == "symlink":
        (root / "link.yaml").symlink_to(secret)
    case_file = {"absolute": str(secret), "dotdot": "../secret.txt", "symlink": "link.yaml"}[name]
    text = _report(tmp_path, _failing_run(case_file), root)
    assert SECRET not in text
    assert f"case file {case_file} is outside the cases root {root}" in text


def test_the_default_root_is_the_current_directory(tmp_path: Path, root: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    secret = str(tmp_path / "secret.txt")
    lines = [*_failing_run("cases.yaml"),
             result("c-other", "fail", kind="numeric", case_file=secret, max_ulp_error=8.0)]
    text = _report(tmp_path, lines, None)
    assert "id: c-pass" in text  # cases.yaml, relative to the current directory
    assert SECRET not in text
    assert f"case file {secret} is outside the cases root {root}" in text


@pytest.mark.parametrize("content", [
    f"root:{SECRET}:19000:0:99999:7:::\n",  # not a mapping: the error used to quote it
    f"cases:\n  - {{id: x, {SECRET}: 1}}\n",  # an unknown key: the error used to name it
    f"{SECRET}: [unclosed\n",  # not YAML: PyYAML's error shows the line
    f"cases: []\n# {SECRET}\n\xff\n",  # not UTF-8
])
def test_a_file_that_is_not_a_case_file_is_never_quoted(tmp_path: Path, root: Path,
                                                        content: str) -> None:
    (root / "bad.yaml").write_bytes(content.encode("utf-8").replace(b"\xc3\xbf", b"\xff"))
    text = _report(tmp_path, _failing_run("bad.yaml"), root)
    assert SECRET not in text
    assert "could not load case file bad.yaml: " in text
    assert "conformance validate bad.yaml" in text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_case_file_that_is_not_a_regular_file_is_not_opened(tmp_path: Path,
                                                              root: Path) -> None:
    os.mkfifo(root / "fifo.yaml")  # opening it would block the report forever
    (root / "dir.yaml").mkdir()
    lines = [*_failing_run("fifo.yaml"),
             result("c-other", "fail", kind="numeric", case_file="dir.yaml", max_ulp_error=8.0)]
    text = _report(tmp_path, lines, root)
    assert "could not load case file fifo.yaml: not a regular file" in text
    assert "could not load case file dir.yaml: not a regular file" in text


def test_the_cli_reads_case_files_from_cases_root(tmp_path: Path, root: Path) -> None:
    results = write_results(tmp_path / "r.jsonl",
                            _failing_run(str(tmp_path / "secret.txt")))
    out = tmp_path / "report.html"
    assert main(["report", str(results), "-o", str(out), "--cases-root", str(root)]) == 0
    assert SECRET not in with_details(out.read_text(encoding="utf-8"))
