"""What a run counted: statuses per framework, the worst records, the oracle cache's
hits; read by the terminal summary (``conformance.run.progress``) and the exit code.

``worst_groups`` groups the discrepancies by cause (``conformance.judge.grouping``, one per
case and API family) in the order of the report's first rows, so the terminal's "worst" list
and the report's table begin the same way."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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

    def add(self, record: Record) -> None:
        self.statuses[(record.framework, record.status)] += 1
        if record.status in ("fail", "error"):
            self.worst.append(record)

    def worst_groups(self) -> list[Group]:
        """The discrepancies (``worst``) by cause, worst first; members index ``worst``."""
        return group_discrepancies(self.worst)

    @property
    def failed(self) -> bool:
        return any(status in ("fail", "error") for _, status in self.statuses)
