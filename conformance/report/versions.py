"""Several versions of one framework in one report: each version's counts side by side, and
the comparisons that changed between versions.

Results files of two audits (``tox -e audit`` with the pinned versions, ``tox -e audit-latest``
with the newest ones) merge into one report; a framework with records of more than one
version gets a table here.  A *comparison* is one case on one API, device kind, dtype and
quantity; it *changed* where two versions both judged it (pass, fail or error) with different
verdicts: it passes in one and fails or raises in the other, or it fails in one and raises in
the other (SciPy 1.17 returns float64 for bfloat16 where 1.18 raises).  ``unsupported`` and
``skip`` records say nothing about the values and are left out of the changes (they are
counted in the table, with the number of comparisons both versions judged).

The device is compared by kind (``cpu``, ``gpu``) where the adapter lines name it, else by
id, since two audits may run on machines whose devices have other names.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conformance.report.html import Safe, h, join
from conformance.results.records import Record

if TYPE_CHECKING:
    from conformance.results.merge import Merged

JUDGED = ("pass", "fail", "error")
SHOWN_STATUSES = ("pass", "fail", "error", "unsupported", "skip")


@dataclass(frozen=True)
class Change:
    """One comparison whose verdict differs between two versions of a framework."""

    framework: str
    case_id: str
    api: str
    device: str
    dtype: str
    quantity: str
    old_version: str
    old_status: str
    new_version: str
    new_status: str
    old_message: str = ""
    new_message: str = ""


def framework_versions(records: Iterable[Record]) -> dict[str, list[str]]:
    """framework -> its versions in the records, in order of first appearance (records
    without a version, e.g. a framework skipped as not installed, are left out)."""
    found: dict[str, list[str]] = {}
    for record in records:
        if record.framework == "reference" or not record.framework_version:
            continue
        versions = found.setdefault(record.framework, [])
        if record.framework_version not in versions:
            versions.append(record.framework_version)
    return found


def _device_kinds(adapters: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    kinds: dict[tuple[str, str], str] = {}
    for adapter in adapters:
        for device in adapter.get("devices", []):
            kinds[(str(adapter.get("framework", "")), str(device.get("id", "")))] = str(
                device.get("kind", device.get("id", "")))
    return kinds


def changes_between_versions(records: Iterable[Record],
                             adapters: Iterable[dict[str, Any]] = ()) -> list[Change]:
    """Every comparison whose verdict (pass, fail, error) differs between two versions of its
    framework; by framework, case, API, device, dtype and quantity."""
    kinds = _device_kinds(adapters)
    verdicts: dict[tuple[str, str, str, str, str, str], dict[str, Record]] = defaultdict(dict)
    for record in records:
        if record.status not in JUDGED or record.framework == "reference":
            continue
        device = kinds.get((record.framework, record.device), record.device)
        key = (record.framework, record.case_id, record.api, device, record.dtype,
               record.quantity)
        # several environments of one version: a non-pass wins, so no failure is hidden
        kept = verdicts[key].get(record.framework_version)
        if kept is None or (kept.status == "pass" and record.status != "pass"):
            verdicts[key][record.framework_version] = record
    changes = []
    for comparison, by_version in sorted(verdicts.items()):
        versions = list(by_version)
        for i, old in enumerate(versions):
            for new in versions[i + 1:]:
                a, b = by_version[old], by_version[new]
                if a.status != b.status:
                    framework, case_id, api, device, dtype, quantity = comparison
                    changes.append(Change(
                        framework, case_id, api, device, dtype, quantity, old_version=old,
                        old_status=a.status, new_version=new, new_status=b.status,
                        old_message=a.message, new_message=b.message))
    return changes


def judged_by_both(records: Iterable[Record]) -> dict[str, int]:
    """framework -> the comparisons that at least two of its versions judged."""
    seen: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for record in records:
        if record.status in JUDGED and record.framework != "reference":
            seen[(record.framework, record.case_id, record.api, record.device, record.dtype,
                  record.quantity)].add(record.framework_version)
    found: Counter[str] = Counter(key[0] for key, versions in seen.items() if len(versions) > 1)
    return dict(found)


def version_counts(records: Iterable[Record]) -> dict[tuple[str, str], Counter[str]]:
    """(framework, version) -> records per status."""
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for record in records:
        if record.framework != "reference" and record.framework_version:
            counts[(record.framework, record.framework_version)][record.status] += 1
    return counts


def versions_section(merged: Merged) -> Safe:
    """The ``Versions`` section (a one-line note where no framework has several versions)."""
    versions = {name: found for name, found in framework_versions(merged.records).items()
                if len(found) > 1}
    if not versions:
        return join([h("h2", "Versions"),
                     h("p", "Every framework has records of one version: merge the results "
                            "of two audits (say tox -e audit and tox -e audit-latest) to see "
                            "versions side by side.", class_="note")])
    counts = version_counts(merged.records)
    shared = judged_by_both(merged.records)
    changes = changes_between_versions(merged.records, merged.adapters)
    tables = []
    for framework, found in versions.items():
        tables.append(h("p", f"{framework}: {shared.get(framework, 0)} comparisons judged in "
                             "more than one version (the audits may have run other cases)"))
        head = h("tr", h("th", "status"), *(h("th", f"{framework} {v}") for v in found))
        rows = [h("tr", h("th", status), *(h("td", str(counts[(framework, v)][status]))
                                            for v in found))
                for status in SHOWN_STATUSES]
        tables.append(h("div", h("table", h("thead", head), h("tbody", *rows)),
                        class_="scroll"))
    return join([h("h2", "Versions side by side"),
                 h("p", "Frameworks with records of more than one version; the counts are "
                        "records per status."),
                 *tables, _changes_table(changes)])


def _changes_table(changes: list[Change]) -> Safe:
    title = h("h3", f"Changed between versions ({len(changes)})")
    if not changes:
        return join([title, h("p", "No comparison judged in two versions has another verdict "
                                   "in one than in the other.")])
    head = h("tr", *(h("th", name) for name in (
        "framework", "case", "API", "device", "dtype", "quantity", "from", "to", "message")))
    rows = [h("tr", h("td", c.framework), h("td", c.case_id), h("td", c.api), h("td", c.device),
              h("td", c.dtype), h("td", c.quantity),
              h("td", f"{c.old_version}: {c.old_status}"),
              h("td", f"{c.new_version}: {c.new_status}"),
              h("td", c.new_message if c.new_status != "pass" else c.old_message))
            for c in changes]
    return join([title, h("div", h("table", h("thead", head), h("tbody", *rows)),
                          class_="scroll")])


def change_lines(changes: list[Change]) -> list[str]:
    """One line per change, for the terminal."""
    return [f"{c.framework} {c.case_id} [{c.dtype} {c.device}] {c.quantity} {c.api}: "
            f"{c.old_version} {c.old_status} -> {c.new_version} {c.new_status}"
            for c in changes]
