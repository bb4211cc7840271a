"""The report's first screen: who is wrong where, and how badly.

A grid of framework x case group (or x dtype, chosen in the page): each cell is the number of
distinct cases with a discrepancy (``fail`` or ``error``) there, coloured by and labelled with
the worst kind among them (``conformance.judge.grouping``'s order).  A cell whose records all
passed says ``ok``; one without any record that ran, ``–``.  Clicking a cell lists its cases:
the discrepancy table below, filtered to that framework and group (or dtype).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from conformance.judge.grouping import (
    DISCREPANCY,
    NOT_RUN,
    framework_label,
    kind_rank,
    record_severity,
    status_rank,
)
from conformance.report.html import Safe, h, join
from reference.formats import DTYPES

if TYPE_CHECKING:
    from conformance.results.merge import Merged
    from conformance.results.records import Record

def grid_section(merged: Merged) -> Safe:
    """The ``Who is wrong where`` section: one table by case group, one by dtype."""
    ran = [r for r in merged.records if r.status not in NOT_RUN]
    title = h("h2", "Who is wrong where")
    if not ran:
        return join([title, h("p", "No record ran.", class_="muted")])
    bad = [r for r in ran if r.status in DISCREPANCY]
    cases = len({r.case_id for r in bad})
    frameworks = len({framework_label(r) for r in bad})
    summary = (f"{cases} case(s) with a discrepancy, on {frameworks} framework(s)." if bad
               else "Every record that ran passes.")
    groups = list(dict.fromkeys(r.group for r in ran))
    dtypes = sorted({r.dtype for r in ran}, key=lambda d: DTYPES.index(d) if d in DTYPES
                    else len(DTYPES))
    chooser = h("label", "columns ", h("select", h("option", "case group", value="group"),
                                        h("option", "dtype", value="dtype"),
                                        id="grid-columns"))
    return join([
        title,
        h("p", summary, " Each cell: how many distinct cases fail or raise there, and the worst "
                        "kind among them; ok: every record there passed. Click a cell to list "
                        "its cases below.", class_="note"),
        h("div", chooser, class_="controls"),
        h("div", _table(ran, "group", groups), class_="scroll", id="grid-group"),
        h("div", _table(ran, "dtype", dtypes), class_="scroll hidden", id="grid-dtype"),
    ])


def _table(records: list[Record], dim: str, columns: list[str]) -> Safe:
    worst: dict[tuple[str, str], dict[str, Record]] = defaultdict(dict)  # cell -> case -> worst
    seen: set[tuple[str, str]] = set()
    frameworks = list(dict.fromkeys(framework_label(r) for r in records))
    for r in records:
        fw, column = framework_label(r), getattr(r, dim)
        for cell in ((fw, column), (fw, "")):
            seen.add(cell)
            if r.status in DISCREPANCY:
                cases = worst[cell]
                if r.case_id not in cases or record_severity(r) < record_severity(
                        cases[r.case_id]):
                    cases[r.case_id] = r
    head = h("tr", h("th", "framework"), *(h("th", c) for c in columns), h("th", "all"))
    rows = [h("tr", h("th", fw), *(_cell(fw, dim, c, worst.get((fw, c), {}), (fw, c) in seen)
                                   for c in [*columns, ""]))
            for fw in frameworks]
    return h("table", h("thead", head), h("tbody", rows), class_="grid", data_dim=dim)


def _cell(fw: str, dim: str, column: str, cases: dict[str, Record], ran: bool) -> Safe:
    attrs = {"data_fw": fw, f"data_{dim}": column}
    if not cases:
        return h("td", "ok" if ran else "–", class_="gcell ok" if ran else "gcell empty",
                 **attrs)
    records = sorted(cases.values(), key=lambda r: (status_rank(r.status), kind_rank(r.kind)))
    top = records[0]
    label = top.kind or top.status
    tip = ", ".join(sorted(cases))
    return h("td", str(len(cases)), h("span", label if top.status == "fail"
                                       else f"{top.status}: {label}", class_="sub"),
             class_=f"gcell s-{top.status} w-{label}", title=tip, data_cases=str(len(cases)),
             **attrs)
