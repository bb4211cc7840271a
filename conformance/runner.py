"""``conformance run``: every case on every selected framework, records appended as they come.

The runner loads and validates all cases first (a bad case file stops the run before anything
is computed), writes the environment line, checks the cases' documented values against the
oracle, then runs one worker process per framework (``conformance.worker``) and appends each
record it streams to the results file at once.  A worker that dies mid-job costs that job
only: the job is recorded as ``error`` (kind ``crash``) and a fresh worker continues with the
jobs not yet done.  A job that outlives ``timeout`` seconds is killed and recorded likewise
(kind ``timeout``).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from conformance.cases import Case, load_cases
from conformance.check import check_documented
from conformance.results import Record, ResultsWriter, environment, record_from_json

DEFAULT_TIMEOUT = 600.0


@dataclass
class RunSummary:
    """Counts of a run, for the terminal and the exit code."""

    out: Path
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)  # (framework, status)
    worst: list[Record] = field(default_factory=list)

    def add(self, record: Record) -> None:
        self.statuses[(record.framework, record.status)] += 1
        if record.status in ("fail", "error"):
            self.worst.append(record)

    @property
    def failed(self) -> bool:
        return any(status in ("fail", "error") for _, status in self.statuses)


@dataclass(frozen=True)
class RunOptions:
    cases: list[str]
    frameworks: list[str]
    dtypes: list[str] | None = None
    devices: list[str] | None = None
    out: Path = Path("results/results.jsonl")
    timeout: float = DEFAULT_TIMEOUT


def run(options: RunOptions, log: Callable[[str], None] = print) -> RunSummary:
    cases = load_cases(options.cases)
    info = environment()
    summary = RunSummary(options.out)
    with ResultsWriter(options.out) as writer:
        writer.write_environment(info)

        def keep(record: Record) -> None:
            writer.write(record)
            summary.add(record)

        for case in cases:
            for record in check_documented(case, info["environment_id"]):
                keep(record)
        for framework in options.frameworks:
            _run_framework(framework, cases, options, info["environment_id"], keep,
                           writer.write_adapter, log)
    return summary


def _run_framework(framework: str, cases: list[Case], options: RunOptions,
                   environment_id: str, keep: Callable[[Record], None],
                   declare: Callable[[dict[str, Any]], None],
                   log: Callable[[str], None]) -> None:
    done: set[str] = set()
    while True:
        worker = _Worker(framework, options, environment_id, done)
        outcome = worker.run(keep, declare)
        if outcome.unavailable is not None:
            log(f"{framework}: skipped, {outcome.unavailable}")
            for case in cases:
                keep(_skip_record(case, framework, outcome.unavailable, environment_id))
            return
        if outcome.failed_job is None:
            log(f"{framework} {outcome.version}: {len(done)} jobs")
            return
        log(f"{framework}: job {outcome.failed_job} {outcome.failure}; restarting the worker")
        keep(_failure_record(outcome, framework, cases, environment_id))
        done.add(outcome.failed_job)


@dataclass
class _WorkerOutcome:
    version: str = ""
    unavailable: str | None = None
    failed_job: str | None = None
    failure: str = ""  # "crash: ..." or "timeout: ..."
    kind: str = ""


class _Worker:
    """One worker subprocess, read line by line with a per-job time limit."""

    def __init__(self, framework: str, options: RunOptions, environment_id: str,
                 done: set[str]) -> None:
        self.done = done
        self.options = options
        self.environment_id = environment_id
        self.skip_file = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
        self.skip_file.write("\n".join(sorted(done)))
        self.skip_file.close()
        command = [sys.executable, "-m", "conformance.worker", "--framework", framework,
                   "--cases", *options.cases, "--skip-file", self.skip_file.name,
                   "--environment-id", environment_id]
        if options.dtypes:
            command += ["--dtype", *options.dtypes]
        if options.devices:
            command += ["--device", *options.devices]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    def run(self, keep: Callable[[Record], None],
            declare: Callable[[dict[str, Any]], None]) -> _WorkerOutcome:
        outcome, current = _WorkerOutcome(), None
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        selector = selectors.DefaultSelector()
        selector.register(stdout, selectors.EVENT_READ)
        started = time.monotonic()
        try:
            while True:
                if not selector.select(timeout=max(0.0, started + self.options.timeout - time.monotonic())):
                    self.process.kill()
                    outcome.failed_job, outcome.kind = current or "(starting)", "timeout"
                    outcome.failure = f"timeout: no result after {self.options.timeout:g} s"
                    return outcome
                line = stdout.readline()
                if not line:
                    break
                event = json.loads(line)
                kind = event["event"]
                if kind == "adapter":
                    outcome.version = event["declaration"]["version"]
                    declare({**event["declaration"], "environment_id": self.environment_id})
                elif kind == "unavailable":
                    outcome.unavailable = event["reason"]
                elif kind == "start":
                    current, started = event["job"], time.monotonic()
                elif kind == "record":
                    keep(record_from_json(event["record"]))
                elif kind == "done":
                    self.done.add(event["job"])
                    current, started = None, time.monotonic()
            code = self.process.wait()
            if current is not None or code != 0:
                outcome.failed_job, outcome.kind = current or "(between jobs)", "crash"
                outcome.failure = f"crash: worker exited with {_describe_exit(code)}"
            return outcome
        finally:
            selector.close()
            self.process.wait()
            os.unlink(self.skip_file.name)


def _describe_exit(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _failure_record(outcome: _WorkerOutcome, framework: str, cases: list[Case],
                    environment_id: str) -> Record:
    key = outcome.failed_job or ""
    case_id, api, device, dtype = (key.split("|") + ["", "", "", ""])[:4]
    case = next((c for c in cases if c.id == case_id), None)
    return Record(
        case_id=case_id, op=case.op if case else "", group=case.group if case else "",
        framework=framework, framework_version=outcome.version, api=api, api_kind="native",
        device=device, device_name="", dtype=dtype, quantity="output", status="error",
        kind=outcome.kind, message=outcome.failure, case_file=case.file if case else "",
        environment_id=environment_id,
    )


def _skip_record(case: Case, framework: str, reason: str, environment_id: str) -> Record:
    return Record(
        case_id=case.id, op=case.op, group=case.group, framework=framework,
        framework_version="", api="*", api_kind="native", device="*", device_name="",
        dtype="*", quantity="output", status="skip", message=reason, case_file=case.file,
        environment_id=environment_id,
    )


def summary_lines(summary: RunSummary, limit: int = 5) -> list[str]:
    frameworks = sorted({f for f, _ in summary.statuses})
    lines = []
    for framework in frameworks:
        counts = {s: n for (f, s), n in summary.statuses.items() if f == framework}
        lines.append(f"  {framework:12s} " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    worst = sorted(summary.worst, key=_severity, reverse=True)[:limit]
    if worst:
        lines.append("worst discrepancies:")
        lines += [f"  {r.case_id}[{r.framework}-{r.api}-{r.device}-{r.dtype}] {r.quantity}: "
                  f"{r.status} {r.kind or ''} {r.message[:120]}" for r in worst]
    lines.append(f"results: {summary.out}")
    return lines


def _severity(record: Record) -> Any:
    return (record.status == "fail", record.max_ulp_error or 0.0)
