"""What a run counted: statuses per framework, the worst records, the oracle cache's
hits; read by the terminal summary (``conformance.run.progress``) and the exit code.

``worst_groups`` groups the discrepancies by cause (``conformance.judge.grouping``, one per
case and API family) in the order of the report's first rows, so the terminal's "worst" list
and the report's table begin the same way."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from conformance.judge.baseline import is_new_discrepancy
from conformance.judge.grouping import Group, group_discrepancies
from conformance.results.records import Record


@dataclass
class RunSummary:
    """Counts of a run, for the terminal and the exit code."""

    out: Path
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)  # (framework, status)
    worst: list[Record] = field(default_factory=list)
    oracle: Counter[str] = field(default_factory=Counter)  # hits, computed, bad
    resumed_jobs: int = 0
    records: list[Record] | None = None  # every record, when kept (RunOptions.keep_records)
    known: Counter[str] = field(default_factory=Counter)  # baseline outcome: xfail, xpass
    new_discrepancies: int = 0  # fails and errors that no baseline entry covers
    xpasses: list[Record] = field(default_factory=list)

    def add(self, record: Record) -> None:
        self.statuses[(record.framework, record.status)] += 1
        if record.baseline is not None:
            self.known[record.baseline["outcome"]] += 1
            if record.baseline["outcome"] == "xpass":
                self.xpasses.append(record)
        if is_new_discrepancy(record):
            self.new_discrepancies += 1
            self.worst.append(record)
        if self.records is not None:
            self.records.append(record)

    def worst_groups(self) -> list[Group]:
        """The discrepancies (``worst``) by cause, worst first; members index ``worst``."""
        return group_discrepancies(self.worst)

    @property
    def failed(self) -> bool:
        """Whether any fail or error is new: a baseline's xfails do not count."""
        return self.new_discrepancies > 0
