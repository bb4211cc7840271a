"""``conformance report RESULTS... -o report.html``: one self-contained HTML page.

The page is built from results files alone (merged by ``conformance.results.merge``: one report,
keyed by environment) and works offline: its stylesheet, script and SVG charts are inline,
and it fetches nothing.  Sections, in order (``SECTIONS``; a new view is one entry there):

* **header**: counts per status, the files merged, links to the sections;
* **grid** (the first screen, ``conformance.report.grid``): framework x case group or dtype,
  each cell the number of distinct failing cases and the worst kind among them;
* **discrepancies**: one row per cause (case x API family), worst first, opening into its
  records and their details (``conformance.report.discrepancies``);
* **unsupported**: records that did not run, a count per API and reason
  (``conformance.report.unsupported``);
* **overview**: rows framework (with version) x API, columns the case groups; each cell
  shows passes/total and is coloured by its worst status (fail, error, unsupported, skip,
  pass, in that order); dtype, device and environment are selectable;
* **versions**: where a framework has records of several versions, their counts side by side
  and the comparisons that changed between them (``conformance.report.versions``);
* **accuracy**: per framework, API, dtype (and device/environment when there are several),
  a histogram of each record's maximum ULP error against the oracle, with median and max;
* **support**: API x option/dtype/device, native / composed / unsupported, from the
  ``adapter`` lines (``conformance.report.support``);
* **environments**: Python, OS, CPU, host, framework versions, devices, and every run's
  date and command.

Every string taken from results or case files reaches the page through
``conformance.report.html`` (escaped, control and bidirectional-override characters shown as
``\\uXXXX``, long words given places to wrap); the script inserts text only as text.  Wide
tables scroll in boxes of their own, so no content widens the page.  The results files are
read through ``conformance.results.records.read_lines``, which checks every line against
``conformance/results/schema.json`` first.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from conformance.report.assets import CSS, JS
from conformance.report.discrepancies import discrepancy_section
from conformance.report.grid import grid_section
from conformance.report.html import Safe, escape, h, join, json_attribute
from conformance.report.plots import UlpAxis, format_ulp, median, ulp_axis_svg, ulp_histogram
from conformance.report.support import support_section
from conformance.report.unsupported import unsupported_section
from conformance.report.versions import versions_section
from conformance.results.merge import Merged, merge_results
from conformance.results.records import STATUSES, Record
from reference.formats import DTYPES

DEFAULT_TITLE = "Softmax cross-entropy conformance report"
WORST_FIRST = ("fail", "error", "unsupported", "skip", "pass")


@dataclass(frozen=True)
class ReportInfo:
    """What ``write_report`` wrote."""

    path: Path
    size: int  # bytes
    records: int
    discrepancies: int  # fail + error records
    conflicts: int  # comparisons with conflicting duplicates
    seconds: float


def write_report(paths: Sequence[Path | str], out: Path | str, *,
                 cases_root: Path | str | None = None, title: str = DEFAULT_TITLE) -> ReportInfo:
    """Merge ``paths`` and write the report to ``out``.  The first results line that is not
    valid (not strict JSON, nested too deep, or against ``conformance/results/schema.json``)
    stops it with a ``ValueError`` naming its file, line and field, and nothing is written: a
    report never leaves a record out without a word.  Case files are optional, and read only
    from inside ``cases_root`` (default: the current directory; see
    ``conformance.report.discrepancies.CaseIndex``)."""
    started = time.perf_counter()
    merged = merge_results(paths)
    page = render_report(merged, cases_root=cases_root, title=title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return ReportInfo(
        path=out, size=len(page.encode("utf-8")), records=len(merged.records),
        discrepancies=sum(r.status in ("fail", "error") for r in merged.records),
        conflicts=len(merged.conflicts), seconds=time.perf_counter() - started,
    )


# The page's sections, in order: (id, title in the navigation, builder).  A new view (say,
# what changed between two versions) is one entry here and one function returning ``Safe``.
Builder = Callable[[Merged, Path | str | None], Safe]
SECTIONS: list[tuple[str, str, Builder]] = [
    ("grid", "Who is wrong where", lambda m, _: grid_section(m)),
    ("discrepancies", "Discrepancies",
     lambda m, root: discrepancy_section(m, Path(root) if root else None)),
    ("unsupported", "Not run", lambda m, _: unsupported_section(m)),
    ("overview", "Per API", lambda m, _: _overview(m)),
    ("versions", "Versions", lambda m, _: versions_section(m)),
    ("accuracy", "Accuracy", lambda m, _: _accuracy(m)),
    ("support", "Support", lambda m, _: support_section(m)),
    ("environments", "Environments", lambda m, _: _environments(m)),
]


def render_report(merged: Merged, *, cases_root: Path | str | None = None,
                  title: str = DEFAULT_TITLE) -> str:
    """The whole page for ``merged``."""
    sections = [(name, build(merged, cases_root)) for name, _, build in SECTIONS]
    body = join([_header(merged, title),
                 *(h("section", content, id=name) for name, content in sections)])
    return ("<!DOCTYPE html>\n" + h(
        "html",
        h("head", Safe('<meta charset="utf-8">'),
          Safe('<meta name="viewport" content="width=device-width, initial-scale=1">'),
          h("title", Safe(escape(title))), h("style", Safe(CSS))),  # text only: no <wbr>
        h("body", body, h("script", Safe(JS))),
        lang="en",
    ) + "\n")


# --- labels shared by the sections --------------------------------------------------------


def framework_label(record: Record) -> str:
    """``torch 2.13.0+cpu``; just the name when the version is unknown (a skipped one)."""
    return f"{record.framework} {record.framework_version}".strip()


def environment_label(merged: Merged, environment_id: str) -> str:
    env = merged.environments.get(environment_id)
    return env.label if env else environment_id


def status_badge(status: str) -> Safe:
    return h("span", status, class_=f"badge s-{status}")


def kind_badge(kind: str) -> Safe:
    return h("span", kind, class_=f"badge k-{kind}")


def _scroll(table: Safe) -> Safe:
    """A wide table in a box of its own that scrolls sideways, so the page never does."""
    return h("div", table, class_="scroll")


def _dtype_order(dtype: str) -> int:
    return DTYPES.index(dtype) if dtype in DTYPES else len(DTYPES)


def _first_seen(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# --- header and environments --------------------------------------------------------------


def _header(merged: Merged, title: str) -> Safe:
    counts = Counter(r.status for r in merged.records)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    notes = [f"{len(merged.records)} records from {len(merged.files)} file(s): "
             + ", ".join(merged.files)]
    if merged.duplicates:
        notes.append(f"{merged.duplicates} identical duplicate record(s) merged into one")
    if merged.conflicts:
        notes.append(f"{len(merged.conflicts)} comparison(s) have conflicting duplicates: "
                     "every variant is kept and marked 'conflict' below")
    return join([
        h("h1", title),
        h("p", "Generated " + generated + ". ",
          join(h("span", f"{counts.get(s, 0)} {s}", class_=f"badge s-{s}") for s in STATUSES),
          class_="legend"),
        join(h("p", note, class_="note") for note in notes),
        h("nav", *(h("a", label, href=f"#{name}") for name, label, _ in SECTIONS)),
    ])


def _environments(merged: Merged) -> Safe:
    head = h("tr", *(h("th", c) for c in ("environment", "Python", "OS", "CPU",
                                          "frameworks", "devices", "runs (date, command)")))
    rows = []
    for env_id, env in merged.environments.items():
        info = env.info
        records = [r for r in merged.records if r.environment_id == env_id]
        frameworks = _first_seen(
            [f"{a.get('framework', '?')} {a.get('version', '')}".strip() for a in env.adapters]
            + [framework_label(r) for r in records])
        devices = _first_seen(
            [f"{d.get('id', '?')}: {d.get('name', '')}" for a in env.adapters
             for d in a.get("devices", []) if isinstance(d, dict)]
            + [f"{r.device}: {r.device_name}" for r in records if r.device_name])
        runs = [h("div", f"{run.get('started', '?')}  ", h("code", run.get("command", "")))
                for run in env.runs] or [h("span", "no environment line (records only)",
                                           class_="muted")]
        rows.append(h(
            "tr", h("td", h("b", env.label), h("div", env_id, class_="muted mono")),
            h("td", f"{info.get('implementation', '')} {info.get('python', '?')}".strip()),
            h("td", info.get("os", "?")),
            h("td", f"{info.get('cpu', '?')} ({info.get('machine', '?')})"),
            h("td", join(h("div", f) for f in frameworks)),
            h("td", join(h("div", d) for d in devices)), h("td", runs)))
    return join([h("h2", "Environments"),
                 _scroll(h("table", h("thead", head), h("tbody", rows), class_="env-table"))])


# --- overview matrix -----------------------------------------------------------------------


def _overview(merged: Merged) -> Safe:
    groups = _first_seen(r.group for r in merged.records)
    cells: dict[tuple[str, str], dict[str, dict[str, list[int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: [0] * len(STATUSES))))
    rows: dict[tuple[str, str], str] = {}
    likes: dict[tuple[str, str], str] = {}  # an implementation's row -> the API it mimics
    for record in merged.records:
        row = (framework_label(record), record.api)
        rows.setdefault(row, record.api_kind)
        if record.api_kind == "implementation" and record.extra.get("like"):
            likes.setdefault(row, str(record.extra["like"]))
        combo = f"{record.dtype}|{record.device}|{record.environment_id}"
        if record.status in STATUSES:
            cells[row][record.group][combo][STATUSES.index(record.status)] += 1
    head = h("tr", h("th", "framework"), h("th", "API"), *(h("th", g) for g in groups),
             h("th", "all groups"))
    frameworks = _first_seen(fw for fw, _ in rows)
    ordered = sorted(rows, key=lambda row: frameworks.index(row[0]))  # stable: APIs keep order
    ordered = _beside_what_they_mimic(ordered, likes)
    body = []
    for n, row in enumerate(ordered):
        row_cells = [_overview_cell(row, group, cells[row].get(group, {})) for group in groups]
        total: dict[str, list[int]] = defaultdict(lambda: [0] * len(STATUSES))
        for by_combo in cells[row].values():
            for combo, counts in by_combo.items():
                total[combo] = [a + b for a, b in zip(total[combo], counts)]
        span = sum(1 for other in ordered if other[0] == row[0])
        first = n == 0 or ordered[n - 1][0] != row[0]
        body.append(h("tr", h("th", row[0], rowspan=str(span)) if first else None,
                      h("td", row[1], " ", kind_badge(rows[row]),
                        h("div", f"like {likes[row]}", class_="muted") if row in likes else None),
                      *row_cells, _overview_cell(row, "", total)))
    return join([
        h("h2", "Per API"),
        h("p", "Each cell: passes / records for that framework API and case group, coloured by "
               "its worst status (fail, error, unsupported, skip, pass). Click a cell to list its "
               "causes under Discrepancies.", class_="note"),
        h("div", _selectors(merged), class_="controls"),
        _scroll(h("table", h("thead", head), h("tbody", body), class_="overview")),
    ])


def _beside_what_they_mimic(rows: list[tuple[str, str]],
                            likes: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
    """``rows`` with each implementation's row moved right after its framework's row of the
    API it mimics (``extra.like``), where that row is there."""
    moved = [row for row in rows if (row[0], likes.get(row)) in rows]
    ordered = [row for row in rows if row not in moved]
    for row in moved:  # after the API and the implementations of it placed before
        at = ordered.index((row[0], likes[row])) + 1
        while at < len(ordered) and ordered[at] in moved and likes[ordered[at]] == likes[row]:
            at += 1
        ordered.insert(at, row)
    return ordered


def _overview_cell(row: tuple[str, str], group: str, counts: dict[str, list[int]]) -> Safe:
    summed = [sum(c[i] for c in counts.values()) for i in range(len(STATUSES))]
    total = sum(summed)
    attrs = {"data_counts": json_attribute(counts), "data_fw": row[0], "data_api": row[1],
             "data_group": group}
    if not total:
        return h("td", "–", class_="cell empty", **attrs)
    worst = next(s for s in WORST_FIRST if summed[STATUSES.index(s)])
    n_worst = summed[STATUSES.index(worst)]
    return h("td", f"{summed[0]}/{total}",
             h("span", "pass" if worst == "pass" else f"{n_worst} {worst}", class_="sub"),
             class_=f"cell s-{worst}",
             title=", ".join(f"{n} {s}" for s, n in zip(STATUSES, summed)), **attrs)


def _selectors(merged: Merged) -> Safe:
    records = merged.records
    dtypes = sorted({r.dtype for r in records} - {"*"}, key=_dtype_order)
    devices = sorted({r.device for r in records} - {"*"})
    envs = {r.environment_id: environment_label(merged, r.environment_id) for r in records}
    parts = [_select("dtype", "dtype", [(d, d) for d in dtypes]),
             _select("device", "device", [(d, d) for d in devices])]
    if len(envs) > 1:
        parts.append(_select("environment", "env", list(envs.items())))
    return join(parts)


def _select(label: str, dim: str, options: list[tuple[str, str]]) -> Safe:
    return h("label", f"{label} ", h("select", h("option", "all", value=""),
                                     *(h("option", text, value=value) for value, text in options),
                                     data_dim=dim))


# --- accuracy view -------------------------------------------------------------------------


def _accuracy(merged: Merged) -> Safe:
    measured = [r for r in merged.records if _measured(r)]
    intro = h("p", "Each row: how many records (outputs and gradients) have their largest "
                   "element error in each power-of-two band of ULPs of the dtype under test. "
                   "Blue: passing records, red: failing ones; dashed lines at 0.5 ULP (correct "
                   "rounding) and 1 ULP; black tick: median, red tick: maximum. Special-value "
                   "mismatches and errors carry no ULP figure and are listed under "
                   "Discrepancies.", class_="note")
    if not measured:
        return join([h("h2", "Accuracy"), intro,
                     h("p", "No record carries a ULP error.", class_="muted")])
    axis = UlpAxis.covering([r.max_ulp_error or 0.0 for r in measured])
    rows: dict[tuple[str, ...], list[Record]] = defaultdict(list)
    for r in measured:
        rows[(framework_label(r), r.api, r.dtype, r.device, r.environment_id)].append(r)
    show_device = len({k[3] for k in rows}) > 1
    show_env = len({k[4] for k in rows}) > 1
    extra_heads = (["device"] if show_device else []) + (["environment"] if show_env else [])
    head = h("tr", *(h("th", c) for c in ["framework", "API", "dtype", *extra_heads]),
             h("th", ulp_axis_svg(axis), class_="plot"),
             *(h("th", c) for c in ("records", "fail", "median ULP", "max ULP", "worst case")))
    frameworks = _first_seen(k[0] for k in rows)
    apis = _first_seen(k[1] for k in rows)
    order = sorted(rows, key=lambda k: (frameworks.index(k[0]), apis.index(k[1]),
                                        _dtype_order(k[2]), k[3], k[4]))
    body = [_accuracy_row(merged, axis, key, rows[key], show_device, show_env) for key in order]
    controls = h("div", _accuracy_filter("framework", "fw", frameworks),
                 _accuracy_filter("dtype", "dtype", sorted({k[2] for k in rows},
                                                          key=_dtype_order)),
                 class_="controls", id="accuracy-controls")
    return join([h("h2", "Accuracy"), intro, controls,
                 _scroll(h("table", h("thead", head), h("tbody", body), class_="acc",
                           id="accuracy-table"))])


def _accuracy_filter(label: str, name: str, values: list[str]) -> Safe:
    return h("label", f"{label} ", h("select", h("option", "all", value=""),
                                     *(h("option", v, value=v) for v in values),
                                     data_filter=name))


def _measured(record: Record) -> bool:
    """Whether a record's ULP figure describes it: a pass, or a numeric fail (a special-value
    mismatch's figure covers only its other elements)."""
    ulp = record.max_ulp_error
    return (ulp is not None and not math.isnan(ulp) and record.api_kind != "reference"
            and (record.status == "pass" or record.kind == "numeric"))


def _accuracy_row(merged: Merged, axis: UlpAxis, key: tuple[str, ...], records: list[Record],
                  show_device: bool, show_env: bool) -> Safe:
    framework, api, dtype, device, env_id = key
    errors = [r.max_ulp_error or 0.0 for r in records]
    passed = [r.max_ulp_error or 0.0 for r in records if r.status == "pass"]
    failed = [r.max_ulp_error or 0.0 for r in records if r.status != "pass"]
    worst = max(records, key=lambda r: r.max_ulp_error or 0.0)
    label = " ".join([framework, api, dtype] + ([device] if show_device else []))
    cells = [h("td", framework), h("td", api), h("td", dtype)]
    if show_device:
        cells.append(h("td", device))
    if show_env:
        cells.append(h("td", environment_label(merged, env_id)))
    return h("tr", *cells, h("td", ulp_histogram(axis, passed, failed, label), class_="plot"),
             h("td", str(len(records)), class_="num"),
             h("td", str(len(failed)), class_="num"),
             h("td", format_ulp(median(errors)), class_="num"),
             h("td", format_ulp(max(errors)), class_="num"),
             h("td", h("code", worst.case_id), f" ({worst.quantity})"),
             data_fw=framework, data_dtype=dtype, class_="arow")

