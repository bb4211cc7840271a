"""The report's discrepancies, grouped by root cause, and their details.

The table has one row per case and API family of a framework (``conformance.judge.
grouping``): every ``fail`` and ``error`` record of that case on the API and its compiled
twins, over every dtype, device and quantity, plus every record of a comparison with
conflicting duplicates; worst group first, in the order the terminal's "worst" list uses.
Each row says how far off its worst record is in words (``conformance.judge.wording``).
Rows carry ``data-*`` lists (``|a|b|``) the inline script filters on, and ``data-sort`` keys.
Nothing is rendered per record until asked: clicking a row clones its inert ``<template>``,
the table of its records, worst first; clicking a record clones two more templates shared
by the records that need them:

* a **comparison** block per (case, dtype, quantity): the oracle's value and every
  framework's that ran, side by side (abbreviated to the first elements and each record's
  worst element when large), each record's verdict, errors and message, and the commands
  that reproduce it;
* a **case** block per case: its description, inputs (abbreviated) and the exact YAML,
  read from the case file named in the records when that file is present at report time.
  When it is not (or no longer holds the case), the block says so; everything else in the
  report comes from the results alone.

``unsupported`` and ``skip`` records are not rows: ``conformance.report.unsupported`` counts
them per API and reason.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import shlex
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from conformance.cases.loading import Case, CaseError, load_file
from conformance.judge.grouping import (
    DISCREPANCY,
    UNMEASURED,
    Group,
    api_family,
    framework_label,
    group_discrepancies,
    status_rank,
)
from conformance.judge.wording import how_far_off
from conformance.report.html import Node, Safe, fragment, h, join, node
from conformance.report.plots import format_ulp

if TYPE_CHECKING:
    from conformance.results.merge import Merged
    from conformance.results.records import Record

NUMERIC_COLUMNS = ("x bound", "max ULP", "max abs")
COLUMN_TITLES = {"x bound": "the largest error over the allowed one (K x bound): above 1 fails",
                 "max ULP": "the largest error in ULPs of the dtype under test"}
MAX_COLUMNS = 12  # value columns shown side by side before abbreviating
MAX_YAML_CHARS = 200_000  # a case's YAML beyond this is cut (the file and line are named)
MAX_DEPTH = 64  # nesting shown inline; results lines nest less (results.MAX_NESTING)


class CaseIndex:
    """Finds a record's case in its case file at report time.  Never required: ``lookup``
    returns ``(None, why)`` when the file is absent, unreadable, or lacks the case.

    A results file is not trusted to name what the report may read: a case file is read only
    when it resolves (symlinks followed) to a regular file inside ``root`` (``--cases-root``,
    default the current directory), and the text of a file that does not load as a case file
    is never quoted, not even in the reason (which says only what kind of failure it was,
    and the line), so a record naming ``/etc/shadow`` copies nothing of it into the page."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self._files: dict[str, tuple[dict[str, Case], str]] = {}

    def lookup(self, case_file: str, case_id: str) -> tuple[Case | None, str]:
        if not case_file:
            return None, "the record names no case file"
        cases, problem = self._load(case_file)
        if problem:
            return None, problem
        case = cases.get(case_id)
        return (case, "") if case else (None, f"{case_file} no longer holds case {case_id}")

    def _load(self, case_file: str) -> tuple[dict[str, Case], str]:
        if case_file not in self._files:
            self._files[case_file] = self._read(case_file)
        return self._files[case_file]

    def _read(self, case_file: str) -> tuple[dict[str, Case], str]:
        path, problem = self._locate(case_file)
        if path is None:
            return {}, problem
        try:
            return {c.id: c for c in load_file(path)}, ""
        except CaseError as error:  # its message may quote the file: only its line is kept
            line = f" (line {error.line})" if error.line is not None else ""
            return {}, self._invalid(case_file, line)
        except OSError as error:
            return {}, f"could not load case file {case_file}: {error.strerror or 'unreadable'}"
        except Exception:  # any failure of an optional input: never quoted
            return {}, self._invalid(case_file, "")

    def _locate(self, case_file: str) -> tuple[Path | None, str]:
        """The path to load ``case_file`` from, or None and why not."""
        root = self.root if self.root is not None else Path.cwd()
        given = Path(case_file)
        path = given if given.is_absolute() or self.root is None else root / given
        try:
            resolved, inside = (root / path).resolve(strict=True), root.resolve()
        except FileNotFoundError:
            return None, (f"could not load case file {case_file}: not found under the cases "
                          f"root {root} when this report was built")
        except (OSError, RuntimeError):  # a symlink loop, a path component not a directory
            return None, f"could not load case file {case_file}: its path does not resolve"
        if not resolved.is_relative_to(inside):
            return None, (f"case file {case_file} is outside the cases root {root} (see "
                          "--cases-root), so it was not read")
        if not resolved.is_file():  # a FIFO would block the report, a device never end
            return None, f"could not load case file {case_file}: not a regular file"
        return path, ""

    @staticmethod
    def _invalid(case_file: str, line: str) -> str:
        return (f"could not load case file {case_file}: not a valid case file{line} "
                f"(`conformance validate {case_file}` says why)")


def discrepancy_section(merged: Merged, cases_root: Path | None = None) -> Safe:
    """The ``Discrepancies`` section: one row per case and API family (``conformance.judge.
    grouping``), the filters, and the data the script builds what a row opens from (its
    records, and each record's comparison and case blocks: ``pack``)."""
    listed = {i for i, r in enumerate(merged.records)
              if r.status in DISCREPANCY or merged.in_conflict(i) or _known(r) == "xpass"}
    groups = group_discrepancies(merged.records, include=listed.__contains__)
    title = h("h2", "Discrepancies")
    if not groups:
        return join([title, h("p", "No discrepancy: every record that ran passes.",
                              class_="muted")])
    details: dict[tuple[str, str, str], str] = {}
    cases: dict[tuple[str, str], str] = {}
    for group in groups:
        for i in group.members:
            r = merged.records[i]
            details.setdefault((r.case_id, r.dtype, r.quantity), str(len(details)))
            cases.setdefault((r.case_file, r.case_id), str(len(cases)))
    show_env = len(merged.environments) > 1
    rows = [_group_row(merged, n, group) for n, group in enumerate(groups)]
    head = h("tr", *(h("th", c, data_type="num" if c in NUMERIC_COLUMNS else None,
                       title=COLUMN_TITLES.get(c)) for c in GROUP_COLUMNS))
    index = CaseIndex(cases_root)
    members: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(merged.records):
        if (r.case_id, r.dtype, r.quantity) in details and (
                r.status not in ("unsupported", "skip") or i in listed):
            members[(r.case_id, r.dtype, r.quantity)].append(i)
    data = {
        "groups": [_group_template(merged, n, group, details, cases, show_env)
                   for n, group in enumerate(groups)],
        "comparisons": [_comparison_block(merged, key, members[key]) for key in details],
        "cases": [_case_block(index, file, case_id) for file, case_id in cases],
    }
    n_records = sum(len(g.members) for g in groups)
    return join([
        title,
        h("p", f"{len(groups)} causes behind {n_records} records, worst first: one row per "
               "case and API family (an API and its compiled twins), over every dtype, device "
               "and quantity it fails in. Click a row for its records, and a record for the "
               "oracle's and each framework's values side by side, the case and how to "
               "reproduce it; click a column title to sort.", class_="note"),
        h("div", _filters(merged, groups, show_env), class_="controls"),
        # a box of its own (scrolling both ways, so the sticky header still sticks): a
        # record of long names cannot widen the page
        h("div", h("table", h("thead", head), h("tbody", rows), id="disc-table",
                   class_="disc"), class_="scroll tall"),
        h("div", id="report-data", hidden=True, data_gzip=pack(data)),
    ])


GROUP_COLUMNS = ("status", "framework", "API family", "case", "group", "dtypes", "devices",
                 "records", "how far off (worst record)", "x bound")
RECORD_COLUMNS = ("status", "kind", "API", "quantity", "dtype", "device", "how far off",
                  "x bound", "max ULP", "max abs", "message")


def pack(data: dict[str, Any]) -> str:
    """``data`` (``Node`` trees) as compact JSON, gzip-compressed, in base64: what the
    ``data-gzip`` attribute of ``#report-data`` holds and the page's script decompresses
    (``DecompressionStream``, built into the browser: nothing is fetched).  Base64 has no
    character HTML treats specially, so the attribute needs no escaping."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9,
                                          mtime=0)).decode("ascii")


def unpack(encoded: str) -> dict[str, Any]:
    """``pack``'s inverse (for tests and tools reading a report)."""
    return dict(json.loads(gzip.decompress(base64.b64decode(encoded)).decode("utf-8")))


def _tokens(values: Iterable[str]) -> str:
    """A ``data-*`` list the script matches a filter's value against: ``|a|b|``."""
    return "|" + "|".join(dict.fromkeys(values)) + "|"


def _fw(record: Record) -> str:
    return framework_label(record)


def _env(merged: Merged, record: Record) -> str:
    env = merged.environments.get(record.environment_id)
    return env.label if env else record.environment_id


def _known(record: Record) -> str:
    """``xfail`` or ``xpass`` where a baseline matched the record (``Record.baseline``)."""
    return (record.baseline or {}).get("outcome", "")


def _known_badge(records: list[Record], make: Any) -> list[Any]:
    """An xfail / xpass badge (linking the upstream issue) for records a baseline covers:
    xfail when it covers every fail and error, xpass when a covered record passes."""
    failing = [r for r in records if r.status in DISCREPANCY]
    xpass = [r for r in records if _known(r) == "xpass"]
    if not xpass and not (failing and all(_known(r) == "xfail" for r in failing)):
        return []
    word = (xpass or failing)[0].baseline or {}
    outcome = "xpass" if xpass else "xfail"
    link = word.get("link", "")
    title = f"{word.get('reason', '')} ({link}; {word.get('entry', '')})"
    badge = make("a" if link.startswith("https://") else "span", outcome,
                 class_=f"badge s-{outcome}", title=title,
                 href=link if link.startswith("https://") else None)
    return [" ", badge]


def _status_cell(status: str, kind: str | None, conflict: bool, sort: str,
                 make: Any = h, known: list[Record] | None = None) -> Any:
    """A status badge (and the kind, a conflict badge, and the baseline's xfail / xpass):
    ``make`` is ``h`` for the page, ``node`` for the data its script builds from."""
    badges: list[Any] = [make("span", status, class_=f"badge s-{status}")]
    badges += _known_badge(known or [], make)
    if kind:
        badges += [" ", make("span", kind, class_="kind")]
    if conflict:
        badges += [" ", make("span", "conflict", class_="badge s-conflict",
                             title="another record of this comparison disagrees")]
    return make("td", badges, data_sort=sort)


def _group_row(merged: Merged, n: int, group: Group) -> Safe:
    records = group.records(merged.records)
    worst = records[0]
    conflict = any(merged.in_conflict(i) for i in group.members)
    apis = list(dict.fromkeys(r.api for r in records))
    twins = [a for a in apis if a != group.family]
    dtypes = group.dtypes(merged.records)
    devices = sorted({r.device for r in records})
    use = max((r.bound_use for r in records if r.bound_use is not None
               and not math.isnan(r.bound_use) and r.kind not in UNMEASURED), default=None)
    family = [h("div", group.family)]
    if twins:
        family.append(h("div", "also " + ", ".join(_wrapper(a) for a in twins),
                        class_="muted"))
    cells = [_status_cell(group.status, group.kind, conflict, str(n), known=records),
             h("td", group.framework),
             h("td", family, class_="api"), h("td", h("code", group.case_id)),
             h("td", worst.group),
             h("td", " ".join(dtypes)), h("td", " ".join(devices)),
             h("td", str(len(records)), class_="num", data_sort=str(len(records))),
             h("td", how_far_off(worst), class_="off"), _number_cell(use, _short(use))]
    return h("tr", *cells, id=f"grp-{n}", class_="grow", data_group_id=str(n),
             data_status=_tokens(r.status for r in records),
             data_kind=_tokens(r.kind or "" for r in records), data_fw=_tokens([group.framework]),
             data_api=_tokens(apis), data_dtype=_tokens(dtypes), data_device=_tokens(devices),
             data_env=_tokens(r.environment_id for r in records),
             data_group=_tokens(r.group for r in records),
             data_conflict="1" if conflict else "0",
             data_records=" ".join(map(str, group.members)))


def _wrapper(api: str) -> str:
    """``torch.compile(…)`` for a compiled twin, the API's name otherwise."""
    family = api_family(api)
    return api[: len(api) - len(family) - 2] + "(…)" if family != api else api


def _group_template(merged: Merged, n: int, group: Group,
                    details: dict[tuple[str, str, str], str],
                    cases: dict[tuple[str, str], str], show_env: bool) -> Node:
    """The records of one group, worst first; each opens its comparison and case blocks."""
    columns = [*RECORD_COLUMNS[:6], *(["environment"] if show_env else []), *RECORD_COLUMNS[6:]]
    head = node("tr", *(node("th", c) for c in columns))
    rows = []
    for i in group.members:
        r = merged.records[i]
        # a special value's figures cover only its other elements: not shown as its own
        use, ulp = (None, None) if r.kind in UNMEASURED else (r.bound_use, r.max_ulp_error)
        cells = [_status_cell(r.status, None, merged.in_conflict(i),
                              str(status_rank(r.status)), node, [r]), node("td", r.kind or ""),
                 node("td", r.api, class_="api"), node("td", r.quantity), node("td", r.dtype),
                 node("td", r.device)]
        if show_env:
            cells.append(node("td", _env(merged, r)))
        cells += [node("td", how_far_off(r), class_="off"),
                  _number_cell(use, _short(use), node),
                  _number_cell(ulp, format_ulp(ulp), node),
                  _number_cell(r.max_abs_error, _short(r.max_abs_error), node),
                  node("td", node("div", r.message, class_="clip"), class_="msg")]
        rows.append(node("tr", *cells, id=f"rec-{i}", class_="row", data_status=r.status,
                         data_kind=r.kind or "", data_record=str(i),
                         data_detail=details[(r.case_id, r.dtype, r.quantity)],
                         data_case=cases[(r.case_file, r.case_id)]))
    table = node("table", node("thead", head), node("tbody", rows), class_="disc records")
    return node("div", table, class_="scroll")


def _number_cell(value: float | None, text: str, make: Any = h) -> Any:
    if value is None or math.isnan(value):
        key = "-1"
    else:
        key = "1e999" if math.isinf(value) else repr(value)
    return make("td", text, class_="num", data_sort=key)


def _short(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3g}"


def _filters(merged: Merged, groups: list[Group], show_env: bool) -> Safe:
    records = [merged.records[i] for g in groups for i in g.members]
    statuses = sorted({r.status for r in records}, key=status_rank)
    status_options = [("", "every listed record"), *((s, s) for s in statuses)]
    if merged.conflicts:
        status_options.append(("conflict", "conflicting duplicates"))
    parts = [_filter("status", "status", status_options)]
    dims = [("framework", "fw", _fw), ("API", "api", lambda r: r.api),
            ("kind", "kind", lambda r: r.kind or ""), ("dtype", "dtype", lambda r: r.dtype),
            ("device", "device", lambda r: r.device), ("group", "group", lambda r: r.group)]
    for label, name, get in dims:
        values = sorted({get(r) for r in records})
        parts.append(_filter(label, name, [("", "all"), *((v, v or "(none)") for v in values)]))
    if show_env:
        envs = {r.environment_id: _env(merged, r) for r in records}
        parts.append(_filter("environment", "env", [("", "all"), *envs.items()]))
    parts.append(h("label", "search ", h("input", type="search", id="disc-search",
                                         placeholder="case, API, message...")))
    parts.append(h("span", f"{len(groups)} listed", id="disc-count", class_="muted"))
    return join(parts)


def _filter(label: str, name: str, options: list[tuple[str, str]]) -> Safe:
    return h("label", f"{label} ", h("select", *(h("option", text, value=value)
                                                 for value, text in options),
                                     data_filter=name))


# --- the comparison block: values side by side, verdicts, reproduction ---------------------


def _comparison_block(merged: Merged, key: tuple[str, str, str], members: list[int]) -> Node:
    case_id, dtype, quantity = key
    records = [merged.records[i] for i in members]
    first = records[0]
    blocks = [node("h4", f"{case_id} · {first.op} · {dtype} · {quantity}"),
              _verdicts(merged, members), _values(merged, members)]
    conflicted = [i for i in members if merged.in_conflict(i)]
    if conflicted:
        blocks.append(node("p", f"{len(conflicted)} records of this comparison disagree "
                                "although they share environment, framework version, API, "
                                "device and dtype: from "
                                + ", ".join(merged.sources[i] for i in conflicted),
                           class_="note"))
    blocks.append(_reproduce(merged, records))
    return node("div", blocks)


def _who(merged: Merged, r: Record) -> str:
    parts = [_fw(r), r.api, r.device]
    if len(merged.environments) > 1:
        parts.append(_env(merged, r))
    return " · ".join(parts)


def _verdicts(merged: Merged, members: list[int]) -> list[Any]:
    head = node("tr", *(node("th", c) for c in ("who", "status", "kind", "x bound", "max ULP",
                                                "max abs", "max rel", "worst at", "tolerance",
                                                "message")))
    rows = []
    for i in members:
        r = merged.records[i]
        worst = "" if r.worst_index is None else "(" + ", ".join(map(str, r.worst_index)) + ")"
        rows.append(node("tr", node("td", _who(merged, r)),
                         node("td", node("span", r.status, class_=f"badge s-{r.status}")),
                         node("td", r.kind or ""),
                         node("td", _short(r.bound_use), class_="num"),
                         node("td", format_ulp(r.max_ulp_error), class_="num"),
                         node("td", _short(r.max_abs_error), class_="num"),
                         node("td", _short(r.max_rel_error), class_="num"), node("td", worst),
                         node("td", _tolerance(r.tolerance)), node("td", r.message),
                         data_record=str(i)))
    table = node("table", node("thead", head), node("tbody", rows))
    return fragment([node("h4", "Verdicts"), node("div", table, class_="scroll")])


def _tolerance(tolerance: dict[str, Any] | None) -> str:
    """``K=4 (policy)``, from a record's ``tolerance`` (``{k, scale, source, reason}``)."""
    if not tolerance:
        return ""
    text = f"K={tolerance.get('k', '?')}"
    if tolerance.get("scale") not in (None, 1, 1.0):
        text += f" x{tolerance['scale']}"
    extra = ", ".join(str(tolerance[k]) for k in ("source", "reason") if tolerance.get(k))
    return f"{text} ({extra})" if extra else text


def _values(merged: Merged, members: list[int]) -> list[Any]:
    records = [merged.records[i] for i in members]
    reference = next((r.reference for r in records if r.reference is not None), None)
    source = reference if reference is not None else next(
        (r.actual for r in records if r.actual is not None), None)
    if source is None:
        return fragment([node("h4", "Values"), node("p", _not_kept(records), class_="muted")])
    shape, flat = _flatten(source)
    worst = {i: _flat_index(merged.records[i].worst_index, shape) for i in members}
    columns = _columns(len(flat), [w for w in worst.values() if w is not None])
    head = node("tr", node("th", "values" + (f" (shape {tuple(shape)})" if shape else "")),
                *(node("th", _index_label(c, shape) if c >= 0 else "…") for c in columns))
    precision = next((r.oracle_precision for r in records if r.oracle_precision), None)
    oracle = "oracle" + (f" ({precision} bits" if precision else " (") + ", rounded to float64)"
    rows = [_value_row(oracle, _flatten(reference)[1] if reference is not None else None,
                       columns, None, None)]
    for i in members:
        actual = merged.records[i].actual
        rows.append(_value_row(_who(merged, merged.records[i]),
                               None if actual is None else _flatten(actual)[1],
                               columns, worst[i], str(i)))
    note = None if len(flat) <= MAX_COLUMNS else node("p", (
        f"{len(flat)} elements: the first ones, each record's worst element and the last are "
        "shown."), class_="note")
    table = node("table", node("thead", head), node("tbody", rows), class_="values")
    return fragment([node("h4", "Values side by side"), note,
                     node("div", table, class_="scroll")])


def _value_row(who: str, flat: list[Any] | None, columns: list[int], worst: int | None,
               record: str | None) -> Node:
    cells = []
    for c in columns:
        if c < 0:
            cells.append(node("td", "…"))
        elif flat is None or c >= len(flat):
            cells.append(node("td", "–", class_="muted"))
        else:
            cells.append(node("td", _number(flat[c]), class_="worst" if c == worst else None))
    return node("tr", node("th", who), *cells, data_record=record)


def _not_kept(records: list[Record]) -> str:
    if any(r.shape for r in records):
        shape = next(r.shape for r in records if r.shape)
        return (f"Values not kept in the results (shape {tuple(shape)}: results keep at most "
                "256 elements); the errors above are measured on every element.")
    return "No values recorded (the framework raised, or the record carries none)."


def _flatten(value: Any) -> tuple[list[int], list[Any]]:
    """Shape and row-major elements of a nested list; a scalar has shape []."""
    if not isinstance(value, list):
        return [], [value]
    shape: list[int] = []
    probe: Any = value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat: list[Any] = []
    _collect(value, flat)
    return shape, flat


def _collect(value: Any, into: list[Any]) -> None:
    """The elements of nested lists, row-major, without recursion (whatever the depth)."""
    stack = [iter(value)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            into.append(item)


_END = object()


def _flat_index(index: list[int] | None, shape: list[int]) -> int | None:
    """The row-major position of ``index`` in ``shape`` (None when it does not fit)."""
    if index is None or len(index) != len(shape):
        return None
    flat = 0
    for i, n in zip(index, shape):
        flat = flat * n + i
    return flat


def _index_label(flat: int, shape: list[int]) -> str:
    if not shape:
        return "value"
    index = []
    for n in reversed(shape):
        index.append(flat % n if n else 0)
        flat //= n or 1
    return "(" + ", ".join(map(str, reversed(index))) + ")"


def _columns(size: int, worst: Iterable[int]) -> list[int]:
    """Element positions to show; -1 marks a gap."""
    if size <= MAX_COLUMNS:
        return list(range(size))
    wanted = sorted({0, 1, 2, 3, size - 1, *(w for w in worst if 0 <= w < size)})[:MAX_COLUMNS]
    columns: list[int] = []
    for w in wanted:
        if columns and w != columns[-1] + 1:
            columns.append(-1)
        columns.append(w)
    return columns


def _number(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _reproduce(merged: Merged, records: list[Record]) -> list[Any]:
    """Commands per (framework, device) among the non-passing records (all, if none)."""
    lines = []
    wanted = [r for r in records if r.status != "pass"] or records
    chosen: dict[tuple[str, str], Record] = {}
    for r in wanted:
        chosen.setdefault((r.framework, r.device), r)
    for r in chosen.values():
        select = _selection(r.framework, r.dtype, r.device)
        lines.append(f"# {r.framework} on {r.device}, {r.dtype}: save the case's YAML below as "
                     "repro.yaml, then")
        lines.append(shlex.join(["conformance", "run", "--cases", "repro.yaml", *select,
                                 "--out", "repro.jsonl", "--overwrite"]))
        if r.case_file:
            lines.append("# or, in a checkout holding the case file (runs the whole file):")
            lines.append(shlex.join(["conformance", "run", "--cases", r.case_file, *select,
                                     "--out", "repro.jsonl", "--overwrite"]))
            lines.append(_pytest_command(merged, r))
        if r.framework != "reference" and r.job.count("|") == 3:
            lines.append("# a standalone script (the framework and numpy only), from the results:")
            lines.append(shlex.join(["conformance", "repro", "RESULTS.jsonl", "--case", r.case_id,
                                     "--framework", r.framework, "--api", r.job.split("|")[1],
                                     "--dtype", r.dtype, "--device", r.device,
                                     "--quantity", r.quantity, "-o", "repro.py"]))
    return fragment([node("h4", "Reproduce"), node("pre", "\n".join(lines))])


def _selection(framework: str, dtype: str, device: str) -> list[str]:
    if framework == "reference":  # the documented-value check runs in every `run`
        return ["--dtype", "float64"]
    args = ["--framework", framework]
    if dtype != "*":
        args += ["--dtype", dtype]
    if device != "*":
        args += ["--device", device]
    return args


def _pytest_command(merged: Merged, record: Record) -> str:
    framework, device = record.framework, record.device
    if framework == "reference":
        return shlex.join(["pytest", f"{record.case_file}::{record.case_id}[documented]"])
    job = record.job.split("|")  # case|api-id|device|dtype, in newer results
    api_id = job[1] if len(job) == 4 else next(
        (str(api.get("id")) for a in merged.adapters if a.get("framework") == framework
         for api in a.get("apis", []) if api.get("name") == record.api), None)
    if api_id and "*" not in (device, record.dtype):
        node = f"{record.case_file}::{record.case_id}[{framework}-{api_id}-{device}-{record.dtype}]"
        return shlex.join(["pytest", node, "--conformance-framework", framework])
    return shlex.join(["pytest", record.case_file, "--conformance-framework", framework,
                       "-k", record.case_id])


# --- the case block: description, inputs, YAML ---------------------------------------------


def _case_block(index: CaseIndex, case_file: str, case_id: str) -> Node:
    case, problem = index.lookup(case_file, case_id)
    if case is None:
        return node("div", node("h4", "Case"),
                    node("p", f"Inputs and YAML unavailable: {problem}. The case is {case_id} "
                              f"in {case_file or '(unknown file)'}.", class_="note"))
    inputs = [("input", case.raw.get("input")), ("linear_weight", case.raw.get("linear_weight")),
              ("linear_bias", case.raw.get("linear_bias")), ("target", case.raw.get("target")),
              ("weight", case.raw.get("weight"))]
    options = {k: case.raw[k] for k in ("ignore_index", "reduction", "label_smoothing", "grad",
                                        "expect") if k in case.raw}
    rows = [node("tr", node("th", name), node("td", node("code", _abbreviate(value))))
            for name, value in inputs if value is not None]
    rows += [node("tr", node("th", k), node("td", node("code", str(v))))
             for k, v in options.items()]
    text = _case_yaml(case)
    return node("div",
                node("h4", "Case"),
                node("p", case.description or "(no description)", " — source: ", case.source,
                     " — ", node("code", f"{case.file}:{case.line}")),
                node("div", node("table", node("tbody", rows)), class_="scroll"),
                node("h4", "YAML (save as repro.yaml)"), node("pre", text))


def _case_yaml(case: Case) -> str:
    try:
        body = yaml.safe_dump({"cases": [case.raw]}, sort_keys=False,
                              default_flow_style=None, width=100, allow_unicode=True)
    except RecursionError:  # PyYAML's emitter recurses; case files bound their nesting
        return f"# {case.id} nests too deeply to show here; it is at {case.file}:{case.line}\n"
    text = f"# {case.id} from {case.file}:{case.line}\n{body}"
    if len(text) > MAX_YAML_CHARS:
        return (text[:MAX_YAML_CHARS] + f"\n# ... cut at {MAX_YAML_CHARS} characters; the "
                f"whole case is at {case.file}:{case.line}\n")
    return text


def _abbreviate(value: Any, limit: int = 16) -> str:
    """A nested list as text, cut to its first and last elements when large."""
    shape, flat = _flatten(value)
    if len(flat) <= limit:
        return _inline(value)
    head = ", ".join(_number(v) for v in flat[: limit - 4])
    tail = ", ".join(_number(v) for v in flat[-3:])
    return f"shape {tuple(shape)}, {len(flat)} values: [{head}, …, {tail}]"


def _inline(value: Any, depth: int = 0) -> str:
    """A nested list as text; past ``MAX_DEPTH`` levels, ``[…]``."""
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return "[…]"
        return "[" + ", ".join(_inline(v, depth + 1) for v in value) + "]"
    return _number(value)
