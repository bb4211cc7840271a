"""The terminal side of ``conformance run``: progress (a bar on a terminal, plain lines in
CI), the end-of-run summary, the exit code and ``--report``."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from conformance.cases.loading import load_file
from conformance.cli import main
from conformance.results.jsonl import read_results
from conformance.results.records import record_from_json
from conformance.run.progress import Progress, count_jobs, is_interactive, summary_lines
from conformance.run.summary import RunSummary
from tests.report_samples import adapter, result

CASES = """\
defaults:
  source: test
cases:
  - id: p-ce
    op: cross_entropy
    input: [[0.5, 1.5, -1.0]]
    target: [1]
    dtypes: [float32, float64]
  - id: p-softmax
    op: softmax
    input: [[0.5, 1.5, -1.0]]
    dtypes: [float32]
"""


@pytest.fixture
def case_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(CASES, encoding="utf-8")
    return path


def _job_records(framework: str, job: str, n: int) -> list:
    case_id, _, _, dtype = job.split("|")
    base = record_from_json(result(case_id, framework=framework, dtype=dtype))
    return [replace(base, job=job, job_records=n, quantity=q)
            for q in ("output", "grad")[:n]]


def test_count_jobs_follows_the_declaration(case_file: Path) -> None:
    cases = load_file(case_file)
    declaration = adapter()  # two cross_entropy APIs, one CPU device
    assert count_jobs(declaration, cases, None, None) == 2 * 2  # p-ce: 2 APIs x 2 dtypes
    assert count_jobs(declaration, cases, ["float32"], None) == 2
    assert count_jobs(declaration, cases, None, ["gpu"]) == 0
    gpu = adapter(devices=[{"id": "cpu", "kind": "cpu", "name": "c"},
                           {"id": "cuda:0", "kind": "gpu", "name": "g"}])
    assert count_jobs(gpu, cases, None, None) == 8 and count_jobs(gpu, cases, None, ["gpu"]) == 4


JOBS = ["p-ce|cross_entropy|cpu|float32", "p-ce|cross_entropy|cpu|float64",
        "p-ce|nll_loss-log_softmax|cpu|float32", "p-ce|nll_loss-log_softmax|cpu|float64"]


def test_plain_lines_in_ci(case_file: Path) -> None:
    out = io.StringIO()
    progress = Progress(out, interactive=False, interval=3600, frameworks=["torch", "jax"])
    progress.start(load_file(case_file))
    progress.adapter(adapter())
    for job in JOBS[:3]:
        for record in _job_records("torch", job, 2):
            progress.record(record)
    assert out.getvalue() == ""  # nothing before the interval
    assert progress.done["torch"] == 3
    first, second = _job_records("torch", JOBS[3], 2)
    progress.record(first)
    assert progress.done["torch"] == 3  # a job counts once all its records arrived
    progress.record(second)
    assert progress.total() is None  # jax has not declared itself: no overall total yet
    progress.adapter({**adapter(), "framework": "jax"})
    assert progress.total() == 8
    assert progress.plain_line().startswith(
        "progress [0:00]: 4/8 jobs, about ")
    assert progress.plain_line().endswith(
        "; torch 4/4 (8 pass, 0 fail, 0 error); jax 0/4 (0 pass, 0 fail, 0 error)")
    progress.log("torch 2.13.0+cpu: 4 jobs")
    assert out.getvalue() == "torch 2.13.0+cpu: 4 jobs\n"


def test_one_plain_line_an_interval(case_file: Path) -> None:
    out = io.StringIO()
    progress = Progress(out, interactive=False, interval=0.0, frameworks=["torch"])
    progress.start(load_file(case_file))
    progress.oracle(2)
    progress.oracle_done()
    assert out.getvalue().splitlines()[-1] == "progress [0:00]: oracle 1/2 results"
    progress.oracle_done()
    progress.adapter(adapter())
    for record in _job_records("torch", JOBS[0], 1):
        progress.record(record)
    assert out.getvalue().splitlines()[-1].startswith("progress [0:00]: 1/4 jobs, about ")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert len(out.getvalue().splitlines()) == 3  # one line per call, as the interval is 0


def test_a_framework_that_is_not_installed_ends_its_bar(case_file: Path) -> None:
    progress = Progress(io.StringIO(), interactive=False, frameworks=["jax"])
    progress.start(load_file(case_file))
    skip = replace(record_from_json(result("p-ce", "skip", framework="jax")),
                   job="p-ce|*|*|*", job_records=1)
    progress.record(skip)
    assert progress.total() == 0 and progress.framework_text("jax") == "jax skipped"


def test_bars_on_a_terminal(case_file: Path) -> None:
    out = io.StringIO()
    progress = Progress(out, interactive=True, frameworks=["torch", "jax"])
    progress.start(load_file(case_file))
    progress.adapter(adapter())
    progress.adapter({**adapter(), "framework": "jax"})
    for record in _job_records("torch", JOBS[0], 2):
        progress.record(record)
    progress.log("a message")
    progress.close()
    drawn = out.getvalue()
    assert "a message\n" in drawn and "\x1b[" in drawn  # rich's redrawn lines
    last = drawn[drawn.rindex("a message"):]
    assert "torch" in last and "1/4" in last and "2 pass, 0 fail, 0 error" in last
    assert "jax" in last and "0/4" in last and "1/8" in last  # the bar of all frameworks


def test_interactive_only_on_a_real_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert is_interactive(Tty()) and not is_interactive(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not is_interactive(Tty())


def test_summary_lines() -> None:
    summary = RunSummary(Path("results/r.jsonl"))
    for line in (result("a"), result("b", "fail", kind="numeric", max_ulp_error=3.0),
                 result("c", "fail", kind="numeric", max_ulp_error=300.0),
                 result("d", "error", kind="crash", max_ulp_error=None, message="signal SIGSEGV"),
                 result("e", "skip", framework="jax")):
        summary.add(record_from_json(line))
    lines = summary_lines(summary, limit=2, report="results/report.html")
    assert lines[0] == "summary:"
    assert lines[1].split() == ["jax", "1", "skip"]
    assert lines[2].split() == ["torch", "1", "error,", "2", "fail,", "1", "pass"]
    # by cause, in the report's order: the larger ULP error first, the error after the fails
    assert lines[3] == "worst discrepancies, by cause (1 more in the report):"
    assert lines[4].startswith("  c on torch.nn.functional.cross_entropy (torch): "
                               "fail numeric, 1 record(s) in float32: ")
    assert lines[5].startswith("  b on ")
    assert lines[-2:] == ["results: results/r.jsonl", "report:  results/report.html"]
    assert not any(line.startswith("report") for line in summary_lines(summary))


def test_run_exit_codes_and_report(stand_ins: None, case_file: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "r.jsonl", tmp_path / "report.html"
    argv = ["run", "--cases", str(case_file), "--framework", "exact", "--out", str(out),
            "--jobs", "1"]
    assert main(argv) == 0  # every record passes
    captured = capsys.readouterr()
    assert "exact 1.0: 3 jobs" in captured.err and "\nprogress" not in captured.err
    assert "oracle: 3 computed, 0 from the cache" in captured.out.splitlines()
    assert "\x1b" not in captured.err
    assert f"results: {out}" in captured.out and "report:" not in captured.out
    argv = ["run", "--cases", str(case_file), "--framework", "offset", "--out", str(out),
            "--overwrite", "--jobs", "1", "--report", str(report)]
    assert main(argv) == 1  # discrepancies
    captured = capsys.readouterr()
    assert "worst discrepancies" in captured.out and f"report:  {report}" in captured.out
    assert "oracle: 0 computed, 3 from the cache" in captured.out.splitlines()
    assert [line for line in (captured.out + captured.err).splitlines()
            if line.startswith("oracle")] == ["oracle: 0 computed, 3 from the cache"]
    statuses = Counter(r.status for r in read_results([out]).records)
    assert statuses["fail"] == 3 and report.is_file()
    assert "p-softmax" in report.read_text(encoding="utf-8")
    assert main([*argv, "--exit-zero"]) == 0  # audits that only want the report


def test_a_workers_job_count_sets_the_total(case_file: Path) -> None:
    """A worker's count of the jobs it will run replaces the declaration's estimate; a
    restarted worker counts only those left, so the jobs done before are added."""
    progress = Progress(io.StringIO(), interactive=False, frameworks=["torch"])
    progress.start(load_file(case_file))
    progress.adapter(adapter())
    assert progress.total() == 4
    progress.jobs("torch", 3)  # e.g. --impl left three
    assert progress.total() == 3
    for record in _job_records("torch", JOBS[0], 1):
        progress.record(record)
    progress.jobs("torch", 2)  # a fresh worker, after the first died
    assert progress.total() == 3 and progress.done["torch"] == 1


def test_time_left_waits_for_the_slowest_framework(case_file: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Once fast frameworks are done, the run lasts as long as the slow one's own jobs left
    at its own rate, which the run's overall rate would underestimate."""
    now = [0.0]
    monkeypatch.setattr("conformance.run.progress.time.monotonic", lambda: now[0])
    progress = Progress(io.StringIO(), interactive=False, interval=3600,
                        frameworks=["torch", "jax"])
    progress.start(load_file(case_file))
    progress.adapter(adapter())
    progress.adapter({**adapter(), "framework": "jax"})
    for record in _job_records("torch", JOBS[0], 1):
        progress.record(record)  # torch: 1 of 4 jobs at t=0
    now[0] = 1.0
    for job in JOBS:
        for record in _job_records("jax", job, 1):
            progress.record(record)  # jax: all 4 at t=1
    now[0] = 100.0
    # overall: 3 jobs left at 5 jobs per 100 s = 60 s; torch alone: 3 left at 1 per 100 s
    assert progress._time_left() == "5 min"
