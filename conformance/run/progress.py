"""What ``conformance run`` shows on the terminal: progress while it runs, a summary at the end.

``Progress`` is the observer ``conformance.run.runner.run`` calls: ``start(cases)`` once the cases
are loaded, ``oracle(total)`` and ``oracle_done()`` while the oracle phase fills the cache,
``adapter(declaration)`` when a framework declares itself (which tells how many jobs that
framework has: the runner asks the frameworks that wait for a worker at once, so every total
is known from the start), and ``record(record)`` for every record written.

On a terminal it draws a live bar per framework with `rich`_: jobs done out of its total, its
own pass, fail and error counts, and an estimate of the time left; and one bar for all
frameworks together.  Elsewhere (CI, a pipe, ``TERM=dumb``) it prints one plain line every
``interval`` seconds (a minute), so a log stays short.  ``log`` prints a message above the
bars.  Calls may come from several threads.

``summary_lines`` ends the run: counts per framework and status, the worst discrepancies, the
oracle's line, and the paths of the results and of the report.

.. _rich: https://rich.readthedocs.io
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from conformance.judge.grouping import Group
from conformance.judge.wording import how_far_off
from conformance.results.records import Record

if TYPE_CHECKING:
    from conformance.cases.loading import Case
    from conformance.run.summary import RunSummary

PLAIN_INTERVAL_SECONDS = 60.0
ALL = "all"  # the bar of every framework together
ORACLE = "oracle"  # the bar of the oracle phase
REFERENCE = "reference"  # the documented values' checks: counted in the summary, not shown
SHOWN_STATUSES = ("pass", "fail", "error")


def count_jobs(declaration: dict[str, Any], cases: Iterable[Case], dtypes: list[str] | None,
               devices: list[str] | None) -> int:
    """How many jobs a worker with this declaration runs (``conformance.run.worker.jobs``)."""
    ops = Counter(str(api.get("op")) for api in declaration.get("apis", []))
    kept = [d for d in declaration.get("devices", []) if isinstance(d, dict) and (
        not devices or d.get("id") in devices or d.get("kind") in devices)]
    return sum(ops[case.op] * len(kept) * sum(1 for d in case.dtypes
                                              if dtypes is None or d in dtypes)
               for case in cases)


def is_interactive(stream: TextIO) -> bool:
    """A terminal that can redraw lines (not CI, not a pipe, not ``TERM=dumb``)."""
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Progress of one run (see the module docstring)."""

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None,
                 dtypes: list[str] | None = None, devices: list[str] | None = None,
                 frameworks: Iterable[str] = (),
                 interval: float = PLAIN_INTERVAL_SECONDS) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = is_interactive(self.stream) if interactive is None else interactive
        self.dtypes, self.devices, self.interval = dtypes, devices, interval
        self.frameworks: list[str] = list(dict.fromkeys(frameworks))
        self.cases: list[Case] = []
        self.totals: dict[str, int] = {}  # framework -> jobs it will run
        self.done: Counter[str] = Counter()  # framework -> jobs completed
        self.statuses: Counter[tuple[str, str]] = Counter()  # (framework, status) -> records
        self.oracle_total: int | None = None
        self.oracle_count = 0
        self.started = time.monotonic()
        self._first_job: float | None = None  # when the first framework job completed
        self._first_of: dict[str, float] = {}  # framework -> when its first job completed
        self._seen: Counter[str] = Counter()  # job -> records seen so far
        self._last_print = self.started
        self._lock = threading.RLock()
        self._bars: _Bars | None = None

    # --- the observer interface ---------------------------------------------------------

    def start(self, cases: list[Case]) -> None:
        with self._lock:
            self.cases = list(cases)
            if self.interactive and self._bars is None:
                self._bars = _Bars(self.stream, self.frameworks)
                self._refresh()

    def oracle(self, total: int) -> None:
        """The oracle phase computes ``total`` results."""
        with self._lock:
            self.oracle_total, self.oracle_count = total, 0
            self._refresh()

    def oracle_done(self) -> None:
        with self._lock:
            self.oracle_count += 1
            self._show()

    def adapter(self, declaration: dict[str, Any]) -> None:
        framework = str(declaration.get("framework", "?"))
        with self._lock:
            if framework not in self.frameworks:
                self.frameworks.append(framework)
            self.totals[framework] = count_jobs(declaration, self.cases, self.dtypes,
                                                self.devices)
            self._refresh()

    def jobs(self, framework: str, remaining: int) -> None:
        """A worker of ``framework`` is to run ``remaining`` jobs (after those it skips: done
        by an earlier worker of this run, or by the run a resume continues)."""
        with self._lock:
            if framework not in self.frameworks:
                self.frameworks.append(framework)
            self.totals[framework] = self.done[framework] + remaining
            self._refresh()

    def record(self, record: Record) -> None:
        """Count ``record``; its job is complete once ``job_records`` records were seen."""
        with self._lock:
            framework = record.framework
            self.statuses[(framework, record.status)] += 1
            if framework == REFERENCE:
                return
            if framework not in self.frameworks:
                self.frameworks.append(framework)
            job = f"{framework}|{record.job}" if record.job else None
            if job is not None:
                self._seen[job] += 1
                if self._seen[job] < max(1, record.job_records):
                    return
                del self._seen[job]
            self.done[framework] += 1
            if record.status == "skip" and framework not in self.totals:
                self.totals[framework] = 0  # not installed: its bar is over
            now = time.monotonic()
            if self._first_job is None:
                self._first_job = now
            self._first_of.setdefault(framework, now)
            self._show()

    def log(self, line: str) -> None:
        """Print ``line`` (the runner's messages) above the bars."""
        with self._lock:
            if self._bars is not None:
                self._bars.print(line)
            else:
                print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Stop the bars (their last state stays on the screen); call once the run is over."""
        with self._lock:
            if self._bars is not None:
                self._refresh()
                self._bars.stop()
                self._bars = None

    # --- text -----------------------------------------------------------------------------

    def total(self) -> int | None:
        """Jobs of every framework, once each has declared itself (None before)."""
        if any(f not in self.totals for f in self.frameworks) or not self.totals:
            return None
        return sum(self.totals.values())

    def counts_text(self, framework: str | None = None) -> str:
        """``12 pass, 1 fail, 0 error`` of one framework (or of all)."""
        def count(status: str) -> int:
            return sum(n for (f, s), n in self.statuses.items()
                       if s == status and f != REFERENCE and framework in (None, f))
        return ", ".join(f"{count(s)} {s}" for s in SHOWN_STATUSES)

    def framework_text(self, framework: str) -> str:
        total = self.totals.get(framework)
        done = f"{self.done[framework]}/{'?' if total is None else total}"
        if total == 0 and self.done[framework]:
            return f"{framework} skipped"
        return f"{framework} {done} ({self.counts_text(framework)})"

    def plain_line(self) -> str:
        """The line printed every ``interval`` without a terminal."""
        parts = []
        if self.oracle_total is not None and self.oracle_count < self.oracle_total:
            parts.append(f"oracle {self.oracle_count}/{self.oracle_total} results")
        total, done = self.total(), sum(self.done[f] for f in self.frameworks)
        if done or not parts:
            overall = f"{done}/{'?' if total is None else total} jobs"
            left = self._time_left()
            parts.append(overall + (f", about {left} left" if left else ""))
            parts += [self.framework_text(f) for f in self.frameworks]
        return f"progress [{self._elapsed()}]: " + "; ".join(parts)

    def _time_left(self) -> str | None:
        """The larger of two estimates: every job left at the run's rate so far, and each
        started framework's jobs left at its own rate.  One worker runs a framework's jobs one
        after another, so a slow framework finishing alone (torch.compile, while the others
        are done) takes at least its own estimate, which the overall rate would hide."""
        total = self.total()
        done = sum(self.done[f] for f in self.frameworks)
        if total is None or self._first_job is None or not done:
            return None
        now = time.monotonic()
        seconds = (total - done) * (now - self._first_job) / done
        for framework, first in self._first_of.items():
            left = self.totals.get(framework, 0) - self.done[framework]
            if left > 0 and self.done[framework]:
                seconds = max(seconds, left * (now - first) / self.done[framework])
        return _duration(int(seconds))

    # --- plain lines (CI) and the bars (a terminal) ----------------------------------------

    def _show(self) -> None:
        if self._bars is not None:
            self._refresh()
            return
        now = time.monotonic()
        if now - self._last_print < self.interval:
            return
        self._last_print = now
        print(self.plain_line(), file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._bars is None:
            return
        if self.oracle_total is not None:
            self._bars.update(ORACLE, self.oracle_count, self.oracle_total, "results")
        for framework in self.frameworks:
            self._bars.update(framework, self.done[framework], self.totals.get(framework),
                              self.counts_text(framework))
        if len(self.frameworks) > 1:
            self._bars.update(ALL, sum(self.done[f] for f in self.frameworks), self.total(),
                              self.counts_text())

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"


class _Bars:
    """rich's live progress bars: a row per framework (and the oracle, and all)."""

    def __init__(self, stream: TextIO, frameworks: list[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        console = Console(file=stream, force_terminal=True, highlight=False)
        self._progress = Progress(
            TextColumn("{task.description:<12}"), BarColumn(bar_width=30),
            MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
            TextColumn("eta"), TimeRemainingColumn(),
            console=console, refresh_per_second=4, redirect_stdout=False,
            redirect_stderr=False)
        self._tasks: dict[str, Any] = {}
        for name in [ORACLE, *frameworks, ALL]:  # shown from their first update, in this order
            self._tasks[name] = self._progress.add_task(name, total=None, counts="",
                                                        visible=False)
        self._progress.start()

    def update(self, name: str, done: int, total: int | None, counts: str) -> None:
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total, counts=counts)
        self._progress.update(self._tasks[name], completed=done, total=total, counts=counts,
                              visible=True)

    def print(self, line: str) -> None:
        self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self._progress.stop()


# --- the end-of-run summary -----------------------------------------------------------------


def summary_lines(summary: RunSummary, limit: int = 5,
                  report: Path | str | None = None) -> list[str]:
    """Counts per framework and status, the ``limit`` worst discrepancies, and the paths of
    the results file and (when one was written) the report."""
    frameworks = sorted({f for f, _ in summary.statuses})
    lines = ["summary:"]
    for framework in frameworks:
        counts = {s: n for (f, s), n in summary.statuses.items() if f == framework}
        figures = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        lines.append(f"  {framework:12s} {figures}")
    groups = summary.worst_groups()
    if groups:
        more = len(groups) - limit
        lines.append("worst discrepancies, by cause" + (
            f" ({more} more in the report):" if more > 0 else ":"))
        lines += [f"  {describe_group(g, summary.worst)}" for g in groups[:limit]]
    oracle = oracle_line(getattr(summary, "oracle", None) or {})
    if oracle:
        lines.append(oracle)
    if getattr(summary, "resumed_jobs", 0):
        lines.append(f"resumed: {summary.resumed_jobs} jobs were already complete")
    lines.append(f"results: {summary.out}")
    if report is not None:
        lines.append(f"report:  {report}")
    return lines


def oracle_line(counts: dict[str, int]) -> str | None:
    """``oracle: 32 computed, 159 from the cache``: the oracle results this run computed and
    those it found cached (``RunSummary.oracle``), and bad cache entries if any."""
    computed, cached, bad = (int(counts.get(k, 0)) for k in ("computed", "cached", "bad"))
    if not (computed or cached or bad):
        return None
    line = f"oracle: {computed} computed, {cached} from the cache"
    return line + (f", {bad} bad cache entries recomputed" if bad else "")


def describe_group(group: Group, records: list[Record]) -> str:
    """One line per cause, as the report's row says it: the case, the API family and the
    framework, how many records over which dtypes, and how far off the worst one is."""
    members = group.records(records)
    dtypes = ", ".join(group.dtypes(records))
    return (f"{group.case_id} on {group.family} ({members[0].framework}): {group.status} "
            f"{group.kind or ''}, {len(members)} record(s) in {dtypes}: "
            f"{how_far_off(members[0])[:160]}")


def _duration(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"
