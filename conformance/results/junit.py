"""Records as JUnit XML (``conformance run --junit-xml FILE``), the format CI systems read.

One ``testsuite`` (``conformance``) of one ``testcase`` per job, named as the pytest plugin
names its items: ``CASE[FRAMEWORK-API-DEVICE-DTYPE]`` (``CASE[documented]`` for the checks of
documented values, ``CASE[FRAMEWORK]`` for a framework that is not installed), with the case
file as its ``classname``.  A job with a new ``fail`` has a ``failure`` element, one with a
new ``error`` an ``error`` element, each carrying its records' messages; a job whose
discrepancies a baseline covers is ``skipped`` with ``xfail: reason (link)``, as pytest writes
an xfail; ``unsupported`` and ``skip`` are ``skipped`` with the reason; an ``xpass`` passes,
and fails under ``strict`` (pytest's ``XPASS(strict)``).  The document follows the schema
that Jenkins' xUnit plugin and pytest's own tests use (``tests/data/junit-10.xsd``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from conformance.results.records import Record

# Characters XML 1.0 cannot hold even escaped (C0 controls but tab, newline, return).
_ILLEGAL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))}


def item_name(record: Record) -> str:
    """The pytest plugin's item name of the job that wrote ``record``."""
    parts = record.job.split("|")
    if len(parts) == 4 and parts[1:] == ["*", "*", "*"]:
        return f"{record.case_id}[{record.framework}]"
    if len(parts) == 4:
        return f"{parts[0]}[{record.framework}-{parts[1]}-{parts[2]}-{parts[3]}]"
    if len(parts) == 2 and parts[1] == "documented":
        return f"{parts[0]}[documented]"
    return f"{record.case_id}[{record.framework}-{record.api}-{record.device}-{record.dtype}]"


def _clean(text: str) -> str:
    return text.translate(_ILLEGAL)


def _line(record: Record) -> str:
    kind = f" ({record.kind})" if record.kind else ""
    ulp = "" if record.max_ulp_error is None else f", {record.max_ulp_error:.4g} ULP"
    return f"{record.quantity}: {record.status}{kind}{ulp}: {record.message}"


def junit_tree(records: Iterable[Record], strict_baseline: bool = False) -> ET.ElementTree:
    jobs: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        jobs[(record.framework, record.job or item_name(record))].append(record)
    suite = ET.Element("testsuite", name="conformance")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for job_records in jobs.values():
        counts["tests"] += 1
        first = job_records[0]
        case = ET.SubElement(suite, "testcase", classname=_clean(first.case_file or "cases"),
                             name=_clean(item_name(first)), time="0")
        outcome = _outcome(job_records, strict_baseline)
        if outcome is None:
            continue
        tag, message, text = outcome
        counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[tag]] += 1
        element = ET.SubElement(case, tag, message=_clean(message[:1000]))
        if text:
            element.text = _clean(text)
    for name, value in counts.items():
        suite.set(name, str(value))
    return ET.ElementTree(suite)


def _outcome(records: list[Record], strict: bool) -> tuple[str, str, str] | None:
    """(element, message, text) of a job, or None for a pass."""
    known = [r for r in records if r.baseline is not None]
    new = [r for r in records if r.status in ("fail", "error")
           and (r.baseline is None or r.baseline.get("outcome") != "xfail")]
    details = "\n".join(_line(r) for r in records)
    if new:
        tag = "failure" if any(r.status == "fail" for r in new) else "error"
        return tag, _line(new[0]), details
    xfails = [r for r in known if r.baseline and r.baseline.get("outcome") == "xfail"]
    if xfails:
        word = xfails[0].baseline or {}
        return "skipped", f"xfail: {word.get('reason') or 'known'} ({word.get('link')})", details
    xpasses = [r for r in known if r.baseline and r.baseline.get("outcome") == "xpass"]
    if xpasses and strict:
        word = xpasses[0].baseline or {}
        return "failure", f"XPASS(strict): {word.get('entry')} expected a discrepancy " \
                          f"({word.get('reason')})", details
    skipped = [r for r in records if r.status in ("unsupported", "skip")]
    if skipped and len(skipped) == len(records):
        return "skipped", f"{skipped[0].status}: {skipped[0].message}", ""
    return None


def write_junit(records: Iterable[Record], path: Path | str, strict_baseline: bool = False
                ) -> None:
    tree = junit_tree(records, strict_baseline)
    ET.indent(tree)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
