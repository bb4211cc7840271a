"""What ``conformance run`` shows on the terminal: progress while it runs, a summary at the end.

``Progress`` is the observer ``conformance.run.runner.run`` calls: ``start(cases)`` once the cases
are loaded, ``adapter(declaration)`` when a framework's worker declares itself (which tells how
many jobs that framework has), and ``record(record)`` for every record written.  On a terminal
it redraws one bar line (at most ten times a second); elsewhere (CI, a pipe, ``TERM=dumb``) it
prints a plain line per framework at most every ``interval`` seconds and when a framework
completes.  ``log`` prints a message without tearing the bar.  Calls may come from several
threads.

``summary_lines`` ends the run: counts per framework and status, the worst discrepancies, and
the paths of the results and of the report.
"""

from __future__ import annotations

import os
import shutil
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

BAR_REDRAW_SECONDS = 0.1
PLAIN_INTERVAL_SECONDS = 10.0


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
    """A terminal that can redraw a line (not CI, not a pipe, not ``TERM=dumb``)."""
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Progress of one run (see the module docstring)."""

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None,
                 dtypes: list[str] | None = None, devices: list[str] | None = None,
                 interval: float = PLAIN_INTERVAL_SECONDS) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = is_interactive(self.stream) if interactive is None else interactive
        self.dtypes, self.devices, self.interval = dtypes, devices, interval
        self.cases: list[Case] = []
        self.totals: dict[str, int] = {}  # framework -> jobs it will run
        self.done: Counter[str] = Counter()  # framework -> jobs completed
        self.statuses: Counter[str] = Counter()
        self.started = time.monotonic()
        self._seen: Counter[str] = Counter()  # job -> records seen so far
        self._announced: set[str] = set()  # frameworks whose completion was printed
        self._last_print: dict[str, float] = {}
        self._last_draw = 0.0
        self._bar_shown = False
        self._lock = threading.Lock()

    # --- the observer interface ---------------------------------------------------------

    def start(self, cases: list[Case]) -> None:
        with self._lock:
            self.cases = list(cases)

    def adapter(self, declaration: dict[str, Any]) -> None:
        framework = str(declaration.get("framework", "?"))
        with self._lock:
            self.totals[framework] = count_jobs(declaration, self.cases, self.dtypes,
                                                self.devices)

    def record(self, record: Record) -> None:
        """Count ``record``; its job is complete once ``job_records`` records were seen."""
        with self._lock:
            self.statuses[record.status] += 1
            job = f"{record.framework}|{record.job}" if record.job else None
            if job is None:
                self.done[record.framework] += 1
            else:
                self._seen[job] += 1
                if self._seen[job] >= max(1, record.job_records):
                    self.done[record.framework] += 1
                    del self._seen[job]
            self._show(record.framework)

    def log(self, line: str) -> None:
        """Print ``line`` (the runner's messages) without tearing the bar."""
        with self._lock:
            self._clear()
            print(line, file=self.stream, flush=True)
            if self.interactive:
                self._draw(force=True)

    def close(self) -> None:
        """Remove the bar; call once the run is over."""
        with self._lock:
            self._clear()

    # --- text -----------------------------------------------------------------------------

    def framework_text(self, framework: str) -> str:
        total = self.totals.get(framework)
        return f"{framework} {self.done[framework]}" + (f"/{total}" if total else "")

    def counts_text(self) -> str:
        return ", ".join(f"{self.statuses[s]} {s}" for s in ("pass", "fail", "error",
                                                             "unsupported", "skip")
                         if self.statuses[s])

    def _finished(self, framework: str) -> bool:
        total = self.totals.get(framework)
        return total is not None and self.done[framework] >= total

    # --- plain lines (CI) and the bar (a terminal) ------------------------------------------

    def _show(self, framework: str) -> None:
        if self.interactive:
            self._draw()
            return
        now = time.monotonic()
        if self._finished(framework):
            if framework in self._announced:
                return
            self._announced.add(framework)
        elif now - self._last_print.get(framework, self.started) < self.interval:
            return
        self._last_print[framework] = now
        print(f"progress: {self.framework_text(framework)} jobs; {self.counts_text()} "
              f"[{self._elapsed()}]", file=self.stream, flush=True)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.done or (not force and now - self._last_draw < BAR_REDRAW_SECONDS):
            return
        self._last_draw = now
        done = sum(min(self.done[f], t) for f, t in self.totals.items())
        total = sum(self.totals.values())
        frameworks = " · ".join(self.framework_text(f) for f in self.done
                                if f in self.totals and not self._finished(f))
        text = f"{done}/{total} jobs  {frameworks}  {self.counts_text()}  [{self._elapsed()}]"
        width = shutil.get_terminal_size((100, 20)).columns
        bar_width = max(10, min(30, width - len(text) - 4))
        filled = int(bar_width * done / total) if total else 0
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {text}"[: width - 1]
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._bar_shown = True

    def _clear(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._bar_shown = False

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"


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
    oracle = getattr(summary, "oracle", None)
    if oracle:
        lines.append("oracle: " + ", ".join(f"{n} {what}" for what, n in sorted(oracle.items())
                                            if n))
    if getattr(summary, "resumed_jobs", 0):
        lines.append(f"resumed: {summary.resumed_jobs} jobs were already complete")
    lines.append(f"results: {summary.out}")
    if report is not None:
        lines.append(f"report:  {report}")
    return lines


def describe_group(group: Group, records: list[Record]) -> str:
    """One line per cause, as the report's row says it: the case, the API family and the
    framework, how many records over which dtypes, and how far off the worst one is."""
    members = group.records(records)
    dtypes = ", ".join(group.dtypes(records))
    return (f"{group.case_id} on {group.family} ({members[0].framework}): {group.status} "
            f"{group.kind or ''}, {len(members)} record(s) in {dtypes}: "
            f"{how_far_off(members[0])[:160]}")
