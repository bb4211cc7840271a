"""Faults: frameworks that segfault, abort, hang or chatter; runs killed with SIGKILL; resume.

The faulty frameworks are the stand-ins of ``tests/stand_in_adapters.py``, exact everywhere
except on the case named by ``$STANDIN_FAULT_CASE``.  Every run here is a real
``conformance run`` with worker subprocesses, on three tiny cases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from conformance.cases.loading import CaseError, load_cases
from conformance.cli import main
from conformance.results.jsonl import read_results
from conformance.results.records import Record
from conformance.run.runner import RunOptions, repair_tail, run
from conformance.run.summary import RunSummary
from tests.conftest import write

CASES = """\
defaults:
  dtypes: [float64, float32]
cases:
  - id: case-a
    source: test
    op: cross_entropy
    input: [[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]]
    target: [2, 0]
  - id: case-b
    source: test
    op: log_softmax
    input: [1.0, 2.0, 3.0]
  - id: case-c
    source: test
    op: cross_entropy
    input: [[3.0, 1.0]]
    target: [1]
    documented: 2.126928
"""
JOBS = {f"{case}|{api}|cpu|{dtype}" for case, api in
        (("case-a", "cross_entropy"), ("case-b", "log_softmax"), ("case-c", "cross_entropy"))
        for dtype in ("float64", "float32")}


@pytest.fixture
def cases(tmp_path: Path, stand_ins: None) -> Path:
    return write(tmp_path / "cases.yaml", CASES)


def audit(cases: Path, out: Path, frameworks: list[str], **options: object
          ) -> tuple[RunSummary, list[Record], list[str]]:
    lines: list[str] = []
    summary = run(RunOptions(cases=[str(cases)], frameworks=frameworks, out=out,
                             **options),  # type: ignore[arg-type]
                  log=lines.append)
    return summary, read_results([out]).records, lines


def of(records: list[Record], framework: str) -> list[Record]:
    return [r for r in records if r.framework == framework]


def as_exact(records: list[Record]) -> list[Record]:
    return [replace(r, framework="exact") for r in records]


def assert_whole_jobs(records: list[Record]) -> None:
    """Every job's records are there exactly once: as many as each announces."""
    counts = Counter((r.framework, r.job) for r in records)
    for record in records:
        assert record.job and counts[(record.framework, record.job)] == record.job_records, record


# --- a framework's own faults cost one job --------------------------------------------------


@pytest.mark.parametrize(("framework", "signal_name"),
                         [("segfault", "SIGSEGV"), ("abort", "SIGABRT")])
def test_a_crashing_framework_costs_only_the_crashing_jobs(
        cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, framework: str,
        signal_name: str) -> None:
    monkeypatch.setenv("STANDIN_FAULT_CASE", "case-b")
    summary, records, log = audit(cases, tmp_path / "r.jsonl", [framework, "exact"])
    faulty, exact = of(records, framework), of(records, "exact")
    crashed = [r for r in faulty if r.case_id == "case-b"]
    assert [(r.dtype, r.status, r.kind) for r in crashed] == [
        ("float64", "error", "crash"), ("float32", "error", "crash")]
    for record in crashed:
        assert f"signal {signal_name}" in record.message
        assert record.api == "standin.log_softmax" and record.device_name == "stand-in CPU"
        assert record.job_records == 1
    # every other job ran, on fresh workers, and gave exactly what a healthy framework gives
    healthy = [r for r in faulty if r.case_id != "case-b"]
    assert as_exact(healthy) == [r for r in exact if r.case_id != "case-b"]
    assert {r.job for r in faulty} == JOBS and len(exact) == 12
    assert_whole_jobs(records)
    assert sum("restarting the worker" in line for line in log) == 2
    assert summary.failed


def test_a_hanging_framework_is_killed_at_the_time_limit(
        cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_FAULT_CASE", "case-a")
    monkeypatch.setenv("STANDIN_HANG_SECONDS", "120")
    _, records, _ = audit(cases, tmp_path / "r.jsonl", ["hang", "exact"], timeout=1.5)
    hung = [r for r in of(records, "hang") if r.case_id == "case-a"]
    assert [(r.status, r.kind, r.message) for r in hung] == [
        ("error", "timeout", "timeout: no result after 1.5 s")] * 2
    healthy = [r for r in of(records, "hang") if r.case_id != "case-a"]
    assert as_exact(healthy) == [r for r in of(records, "exact") if r.case_id != "case-a"]
    assert_whole_jobs(records)


def test_a_framework_crashing_on_import_is_recorded_once(cases: Path, tmp_path: Path) -> None:
    _, records, log = audit(cases, tmp_path / "r.jsonl", ["import-crash", "exact"])
    (failure,) = of(records, "import-crash")
    assert (failure.status, failure.kind, failure.job) == ("error", "crash", "*|*|*|*")
    assert "could not run any job" in failure.message and "SIGSEGV" in failure.message
    assert len(of(records, "exact")) == 12
    assert any("giving up" in line for line in log)


def test_framework_chatter_on_stdout_does_not_corrupt_the_protocol(
        cases: Path, tmp_path: Path) -> None:
    _, records, log = audit(cases, tmp_path / "r.jsonl", ["noisy", "exact"])
    assert as_exact(of(records, "noisy")) == of(records, "exact")
    assert not any("outside the protocol" in line for line in log)


def test_a_missing_framework_is_skipped_once_even_when_resumed(
        cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    audit(cases, out, ["missing"])
    _, records, _ = audit(cases, out, ["missing"], resume=True)
    skipped = of(records, "missing")
    assert [(r.case_id, r.status) for r in skipped] == [
        ("case-a", "skip"), ("case-b", "skip"), ("case-c", "skip")]


def test_an_oracle_result_past_its_time_limit_costs_one_timeout(
        cases: Path, tmp_path: Path) -> None:
    # Two million elements through the MPFR path: tens of seconds of oracle on any machine we
    # know of, so no result can arrive within the 1 s limit however fast the machine (2 x 30000
    # elements once finished in time on a fast CI machine). Logits of about 1e160 are past the
    # vectorised path's range (reference/vectorised.py LOGIT_LIMIT, 2**500), which would
    # otherwise finish this case in about a second; in float32 they would round to infinity,
    # so the case is float64 only.
    slow = write(tmp_path / "slow.yaml", """\
cases:
  - id: slow
    source: test
    op: cross_entropy
    dtypes: [float64]
    input: {generate: normal, shape: [16, 131072], seed: 1, scale: 1.0e160}
    target: {generate: classes, seed: 2}
""")
    lines: list[str] = []
    run(RunOptions(cases=[str(cases), str(slow)], frameworks=["zeros"], out=tmp_path / "r.jsonl",
                   oracle_timeout=1.0, cache=str(tmp_path / "cache")), log=lines.append)
    records = read_results([tmp_path / "r.jsonl"]).records
    slow_records = [r for r in records if r.case_id == "slow"]
    assert [(r.dtype, r.status, r.kind) for r in slow_records] == [
        ("float64", "error", "timeout")]
    for record in slow_records:
        assert record.message == ("no oracle result to compare with (timeout: no result after "
                                  "1 s in the oracle phase)")
    assert sum("oracle: oracle|slow|" in line for line in lines) == 1
    assert {r.job for r in records if r.case_id != "slow"} == JOBS | {"case-c|documented"}


# --- the same audit twice gives the same records ------------------------------------------


def test_two_runs_write_the_same_records(cases: Path, tmp_path: Path) -> None:
    first = audit(cases, tmp_path / "1.jsonl", ["exact", "offset"], jobs=2)[1]
    second = audit(cases, tmp_path / "2.jsonl", ["exact", "offset"], jobs=2)[1]
    for framework in ("reference", "exact", "offset"):
        assert of(first, framework) == of(second, framework)
        assert of(first, framework)
    one, two = (read_results([tmp_path / f"{n}.jsonl"]) for n in (1, 2))
    unstable = ("started", "command")
    assert [{k: v for k, v in e.items() if k not in unstable} for e in one.environments] == \
        [{k: v for k, v in e.items() if k not in unstable} for e in two.environments]
    assert sorted(map(json.dumps, one.adapters)) == sorted(map(json.dumps, two.adapters))


# --- killed runs and --resume ------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STANDIN_")}
    return {**env, **extra}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance", "run", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_run_killed_with_sigkill_is_completed_by_resume_without_duplicates(
        cases: Path, tmp_path: Path) -> None:
    out, marker = tmp_path / "r.jsonl", tmp_path / "hanging.pid"
    args = ["--cases", str(cases), "--framework", "hang", "exact", "--jobs", "1",
            "--exit-zero", "--out", str(out)]
    runner = subprocess.Popen(
        [sys.executable, "-m", "conformance", "run", *args],
        env=cli_env(STANDIN_FAULT_CASE="case-c", STANDIN_HANG_MARKER=str(marker)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before_c = JOBS - {j for j in JOBS if "case-c" in j}

    def jobs_written() -> set[str]:
        return {r.job for r in of(read_results([out]).records, "hang")} if out.exists() else set()

    try:
        wait_for(lambda: marker.exists() and bool(marker.read_text()), "the worker hangs")
        wait_for(lambda: jobs_written() == before_c, "the jobs before case-c are written")
        runner.send_signal(signal.SIGKILL)  # the whole run dies mid-case, at once
        runner.wait()
    finally:
        runner.kill()
        with_pid = int(marker.read_text() or 0) if marker.exists() else 0
        if with_pid:
            os.killpg(with_pid, signal.SIGKILL)  # the orphaned worker, in its own group
    killed = read_results([out]).records
    assert {r.job for r in of(killed, "hang")} == before_c
    assert not of(killed, "exact")

    resumed = cli("--resume", *args, env=cli_env())
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    full = tmp_path / "full.jsonl"
    fresh = cli(*args[:-1], str(full), env=cli_env())
    assert fresh.returncode == 0, fresh.stderr

    after, expected = read_results([out]), read_results([full])
    assert_whole_jobs(after.records)
    for framework in ("reference", "hang", "exact"):
        assert of(after.records, framework) == of(expected.records, framework)
    assert len(after.environments) == 1  # the same environment: its line is not repeated
    assert sorted(a["framework"] for a in after.adapters) == ["exact", "hang"]


def test_sigterm_stops_the_run_and_its_workers(cases: Path, tmp_path: Path) -> None:
    out, marker = tmp_path / "r.jsonl", tmp_path / "hanging.pid"
    runner = subprocess.Popen(
        [sys.executable, "-m", "conformance", "run", "--cases", str(cases), "--framework",
         "hang", "--out", str(out)],
        env=cli_env(STANDIN_FAULT_CASE="case-b", STANDIN_HANG_MARKER=str(marker)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: marker.exists() and bool(marker.read_text()), "the worker hangs")
        worker = int(marker.read_text())
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 128 + signal.SIGTERM
        wait_for(lambda: not alive(worker), "the hanging worker is gone", 30)
    finally:
        runner.kill()
    records = read_results([out]).records
    assert {r.job for r in records} == {j for j in JOBS if "case-a" in j} | {"case-c|documented"}
    assert_whole_jobs(records)


def test_resume_cuts_a_torn_tail_and_redoes_only_the_incomplete_job(
        cases: Path, tmp_path: Path) -> None:
    full = tmp_path / "full.jsonl"
    _, expected, _ = audit(cases, full, ["exact"])
    lines = full.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["job_records"] == 2
    out = tmp_path / "r.jsonl"
    # killed while writing the last job: its first record whole, the second torn mid-line
    out.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    summary, records, log = audit(cases, out, ["exact"], resume=True)
    assert any("torn last line" in line for line in log)
    assert any("left incomplete" in line for line in log)
    assert records == expected
    assert_whole_jobs(records)
    assert summary.resumed_jobs == 1 + 5  # the documented check and five whole jobs


def test_resume_of_a_complete_run_adds_nothing(cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    audit(cases, out, ["exact"])
    before = out.read_bytes()
    summary, _, _ = audit(cases, out, ["exact"], resume=True)
    assert out.read_bytes() == before
    assert summary.statuses[("exact", "pass")] == 12  # the summary covers the whole file


def test_repair_tail_keeps_every_complete_job(tmp_path: Path, cases: Path) -> None:
    out = tmp_path / "r.jsonl"
    audit(cases, out, ["exact"])
    before = out.read_bytes()
    repair_tail(out, pytest.fail)  # nothing to repair: nothing logged, nothing cut
    assert out.read_bytes() == before


def test_resume_names_the_line_of_a_corrupt_results_file(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    audit(cases, out, ["exact"])
    lines = out.read_text().splitlines(keepends=True)
    lines[3] = "{this is not json\n"
    out.write_text("".join(lines))
    code = main(["run", "--cases", str(cases), "--framework", "exact", "--resume",
                 "--out", str(out)])
    assert code == 2
    assert f"{out}:4: not a JSON object" in capsys.readouterr().err
    assert out.read_text() == "".join(lines)  # nothing written, nothing cut


def test_resume_refuses_a_forged_field_naming_file_line_and_field(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --resume reads the file it continues through the same results schema as the report.
    out = tmp_path / "r.jsonl"
    audit(cases, out, ["exact"])
    lines = out.read_text().splitlines(keepends=True)
    record = json.loads(lines[3])
    record["max_ulp_error"] = [1, 2]
    lines[3] = json.dumps(record) + "\n"
    out.write_text("".join(lines))
    code = main(["run", "--cases", str(cases), "--framework", "exact", "--resume",
                 "--out", str(out)])
    assert code == 2
    assert f"{out}:4: not a result record: max_ulp_error" in capsys.readouterr().err
    assert out.read_text() == "".join(lines)


def test_resume_takes_a_job_complete_twice_with_different_counts(
        cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    audit(cases, out, ["exact"])
    lines = out.read_text().splitlines(keepends=True)
    # the same job again, appended by a later run in which it crashed: one record
    crashed = {**json.loads(lines[-1]), "job_records": 1, "status": "error", "kind": "crash"}
    out.write_text("".join(lines) + json.dumps(crashed) + "\n")
    before = out.read_bytes()
    summary, _, _ = audit(cases, out, ["exact"], resume=True)
    assert out.read_bytes() == before
    assert summary.statuses[("exact", "error")] == 1


def test_resume_names_an_incomplete_job_in_the_middle(cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    audit(cases, out, ["exact"])
    lines = out.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines)
                 if json.loads(line).get("job_records") == 2)
    del lines[first + 1]  # a job in the middle loses its second record
    out.write_text("".join(lines))
    with pytest.raises(ValueError, match=rf"{out}:{first + 1}: job .* has 1 record\(s\) "
                                         "where it announces 2"):
        audit(cases, out, ["exact"], resume=True)


def test_resume_refuses_records_without_job_keys(cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    audit(cases, out, ["exact"])
    lines = out.read_text().splitlines(keepends=True)
    old = {k: v for k, v in json.loads(lines[-1]).items() if k not in ("job", "job_records")}
    out.write_text("".join(lines) + json.dumps(old) + "\n")
    with pytest.raises(ValueError, match=rf"{out}:{len(lines) + 1}: a record without a job"):
        audit(cases, out, ["exact"], resume=True)


# --- safe loading ---------------------------------------------------------------------------


def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = write(tmp_path / "evil.yaml", f"""\
cases:
  - id: evil
    source: !!python/object/apply:os.system ["touch {canary}"]
    op: softmax
    input: [1.0, 2.0]
""")
    with pytest.raises(CaseError, match=r"evil\.yaml:3"):
        load_cases([path])
    assert not canary.exists()


def test_memory_addresses_in_framework_messages_are_masked() -> None:
    from conformance.run.worker import stable

    record = Record(case_id="c", op="cross_entropy", group="g", framework="torch",
                    framework_version="2", api="f", api_kind="native", device="cpu",
                    device_name="", dtype="float32", quantity="output", status="error",
                    message="call_function <function cross_entropy at 0x7f7cfee293a0>: 0x10")
    assert stable(record).message == "call_function <function cross_entropy at 0x...>: 0x10"
    clean = replace(record, message="no address here")
    assert stable(clean) is clean
