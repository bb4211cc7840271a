"""The workers' own output (a framework's warnings and logs) goes to a log file per worker
beside the results file; the terminal gets one line per framework, and a crash of the
suite's own code stays visible."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.cli import main
from conformance.run.logs import WorkerLogs, count_messages, last_error, logs_directory
from conformance.run.runner import RunOptions, run
from tests.conftest import write

CASES = """\
cases:
  - id: log-a
    source: test
    op: cross_entropy
    input: [[0.5, -1.0, 2.0]]
    target: [2]
    dtypes: [float64, float32]
  - id: log-b
    source: test
    op: softmax
    input: [1.0, 2.0]
    dtypes: [float32]
"""
CHATTER = "noisy: a framework's chatter"  # what tests/stand_in_adapters.NoisyAdapter prints


def test_a_frameworks_chatter_goes_to_its_log(stand_ins: None, tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    cases = write(tmp_path / "cases.yaml", CASES)
    out = tmp_path / "results" / "r.jsonl"
    assert main(["run", "--cases", str(cases), "--framework", "noisy", "exact",
                 "--out", str(out), "--jobs", "1"]) == 0
    captured = capfd.readouterr()
    terminal = captured.out + captured.err
    assert CHATTER not in terminal and "C-level chatter" not in terminal
    log = tmp_path / "results" / "r.logs" / "noisy-worker-1.log"
    text = log.read_text(encoding="utf-8")
    assert text.count(CHATTER) == 3  # one per job: log-a twice, log-b once
    messages = [line for line in text.splitlines() if line.strip() and line[0] != " "]
    assert f"noisy: {len(messages)} warning and log messages, in {log}" in terminal
    # the exact framework printed nothing: no line, no file
    assert "exact:" not in terminal and not (log.parent / "exact-worker-1.log").exists()


def test_an_overwrite_replaces_the_logs_and_an_append_numbers_on(tmp_path: Path) -> None:
    directory = logs_directory(tmp_path / "r.jsonl")
    assert directory == tmp_path / "r.logs"
    first = WorkerLogs(directory, fresh=True).new_path("torch")
    first.write_text("W1201 a warning\n", encoding="utf-8")
    mine = directory / "notes.txt"  # not a worker log: never touched
    mine.write_text("mine", encoding="utf-8")
    assert WorkerLogs(directory, fresh=False).new_path("torch").name == "torch-worker-2.log"
    assert first.exists()
    assert WorkerLogs(directory, fresh=True).new_path("torch").name == "torch-worker-1.log"
    assert first.read_bytes() == b""  # the earlier run's log is gone, this one is new
    assert not (directory / "torch-worker-2.log").exists()
    assert mine.read_text(encoding="utf-8") == "mine"


def test_a_log_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.logs").write_text("a file of the user's", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r\.logs: the workers. log folder"):
        WorkerLogs(tmp_path / "r.logs", fresh=True)
    assert (tmp_path / "r.logs").read_text(encoding="utf-8") == "a file of the user's"


def test_messages_and_the_last_error_of_a_log(tmp_path: Path) -> None:
    log = write(tmp_path / "x-worker-1.log", (
        "W1201 12:00:00 dynamo warning\n"
        "/site/tf.py:3: UserWarning: deprecated\n  warnings.warn(x)\n\n"
        "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n"
        "ImportError: cannot import name 'x'\n"))
    assert count_messages(log) == 4
    assert last_error(log) == "ImportError: cannot import name 'x'"


def test_a_worker_crash_is_told_with_its_log(stand_ins: None, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that dies outside any job (here: on import) is said on the terminal, with
    the path of its log."""
    cases = write(tmp_path / "cases.yaml", CASES)
    out = tmp_path / "r.jsonl"
    lines: list[str] = []
    run(RunOptions(cases=[str(cases)], frameworks=["import-crash"], out=out), log=lines.append)
    crashes = [line for line in lines if line.startswith("import-crash: worker crash")]
    assert len(crashes) == 2 and "giving up" in crashes[-1]
    log = tmp_path / "r.logs" / "import-crash-worker-2.log"
    assert crashes[-1].endswith(f"(see {log})")
    assert "Segmentation fault" in log.read_text(encoding="utf-8")  # faulthandler's stack


def test_a_crash_of_the_suites_own_code_is_on_the_terminal(
        stand_ins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job whose check raised is said on the terminal, with where its traceback is."""
    monkeypatch.setenv("STANDIN_FAULT_CASE", "log-a")
    cases = write(tmp_path / "cases.yaml", CASES)
    lines: list[str] = []
    run(RunOptions(cases=[str(cases)], frameworks=["raising"], out=tmp_path / "r.jsonl"),
        log=lines.append)
    log = tmp_path / "r.logs" / "raising-worker-1.log"
    raised = [line for line in lines if "the suite's own code raised" in line]
    assert len(raised) == 2  # log-a in float64 and float32
    assert raised[0].startswith("raising: job log-a|cross_entropy|cpu|float64: the suite's own "
                                "code raised AssertionError: a bug of the suite's own code; "
                                f"traceback in {log}")
    assert "Traceback (most recent call last)" in log.read_text(encoding="utf-8")
