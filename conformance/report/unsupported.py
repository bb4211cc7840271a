"""What did not run: a count per API and reason, not a row per record.

``unsupported`` records (the adapter declares the API cannot take the case's options or
dtype) and ``skip`` records (the framework is not installed, say) are half of a full audit;
listing each would bury the discrepancies.  One row per framework, API, status and reason,
with how many records and distinct cases share it, most first within a framework.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from conformance.judge.grouping import NOT_RUN, framework_label
from conformance.report.html import Safe, h, join

if TYPE_CHECKING:
    from conformance.results.merge import Merged

def unsupported_section(merged: Merged) -> Safe:
    """The ``Not run`` section."""
    counts: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for r in merged.records:
        if r.status in NOT_RUN:
            counts[(framework_label(r), r.api, r.status, r.message)].append(r.case_id)
    title = h("h2", "Not run")
    if not counts:
        return join([title, h("p", "Every combination ran.", class_="muted")])
    frameworks = list(dict.fromkeys(key[0] for key in counts))
    order = sorted(counts, key=lambda k: (frameworks.index(k[0]), -len(counts[k]), k[1], k[3]))
    head = h("tr", *(h("th", c) for c in ("framework", "API", "status", "reason", "records",
                                          "cases")))
    rows = [h("tr", h("td", fw), h("td", api), h("td", h("span", status,
                                                         class_=f"badge s-{status}")),
              h("td", reason), h("td", str(len(counts[key])), class_="num"),
              h("td", str(len(set(counts[key]))), class_="num"))
            for key in order for fw, api, status, reason in [key]]
    total = sum(len(v) for v in counts.values())
    return join([
        title,
        h("p", f"{total} records did not run: the adapter declares the combination unsupported "
               "(with its reason), or the framework was skipped. One row per API and reason.",
          class_="note"),
        h("div", h("table", h("thead", head), h("tbody", rows), class_="notrun"),
          class_="scroll tall"),
    ])
