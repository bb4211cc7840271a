"""The report's discrepancy table and its details.

The table lists every record that is not a pass, plus every record of a comparison with
conflicting duplicates, worst first (fail, error, unsupported, skip; then the largest ULP
error).  Rows carry ``data-*`` attributes the inline script filters and sorts on.  Clicking a
row opens two inert ``<template>`` blocks shared by the rows that need them:

* a **comparison** block per (case, dtype, quantity): the oracle's value and every
  framework's, side by side (abbreviated to the first elements and each record's worst
  element when large), each record's verdict, errors and message, and the commands that
  reproduce it;
* a **case** block per case: its description, inputs (abbreviated) and the exact YAML,
  read from the case file named in the records when that file is present at report time.
  When it is not (or no longer holds the case), the block says so; everything else in the
  report comes from the results alone.
"""

from __future__ import annotations

import math
import shlex
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from conformance.cases.loading import Case, CaseError, load_file
from conformance.report.html import Safe, h, join
from conformance.report.plots import format_ulp

if TYPE_CHECKING:
    from conformance.results.merge import Merged
    from conformance.results.records import Record

SEVERITY = {"fail": 0, "error": 1, "unsupported": 2, "skip": 3, "pass": 4}
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
    """The ``Discrepancies`` section: filters, the table, and the detail templates."""
    listed = [i for i, r in enumerate(merged.records)
              if r.status != "pass" or merged.in_conflict(i)]
    listed.sort(key=lambda i: _severity(merged.records[i]))
    title = h("h2", "Discrepancies")
    if not listed:
        return join([title, h("p", "Every record passes.", class_="muted")])
    details: dict[tuple[str, str, str], str] = {}
    cases: dict[tuple[str, str], str] = {}
    for i in listed:
        r = merged.records[i]
        details.setdefault((r.case_id, r.dtype, r.quantity), f"d-{len(details)}")
        cases.setdefault((r.case_file, r.case_id), f"c-{len(cases)}")
    show_env = len(merged.environments) > 1
    rows = [_row(merged, i, details, cases, show_env) for i in listed]
    heads = ["status", "kind", "framework", "API", "case", "group", "quantity", "dtype",
             "device"] + (["environment"] if show_env else []) + [
                 "x bound", "max ULP", "max abs", "message"]
    head = h("tr", *(h("th", c, data_type="num" if c in NUMERIC_COLUMNS else None,
                       title=COLUMN_TITLES.get(c)) for c in heads))
    index = CaseIndex(cases_root)
    members: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(merged.records):
        if (r.case_id, r.dtype, r.quantity) in details:
            members[(r.case_id, r.dtype, r.quantity)].append(i)
    templates = [_comparison_template(merged, key, members[key], tid)
                 for key, tid in details.items()]
    templates += [_case_template(index, file, case_id, tid)
                  for (file, case_id), tid in cases.items()]
    return join([
        title,
        h("p", "Every record that is not a pass, worst first. Click a row for the inputs, the "
               "oracle's and each framework's values side by side, and how to reproduce it; "
               "click a column title to sort.", class_="note"),
        h("div", _filters(merged, listed, show_env), class_="controls"),
        # a box of its own (scrolling both ways, so the sticky header still sticks): a
        # record of long names cannot widen the page
        h("div", h("table", h("thead", head), h("tbody", rows), id="disc-table",
                   class_="disc"), class_="scroll tall"),
        join(templates),
    ])


def _severity(record: Record) -> tuple[int, float, float, str]:
    """Worst first: by status, then how far past its bound, then the ULP error."""
    def figure(value: float | None) -> float:
        return -1.0 if value is None or math.isnan(value) else value

    return (SEVERITY.get(record.status, 5), -figure(record.bound_use),
            -figure(record.max_ulp_error), record.case_id)


# --- table and filters --------------------------------------------------------------------


def _fw(record: Record) -> str:
    return f"{record.framework} {record.framework_version}".strip()


def _env(merged: Merged, record: Record) -> str:
    env = merged.environments.get(record.environment_id)
    return env.label if env else record.environment_id


def _row(merged: Merged, i: int, details: dict[tuple[str, str, str], str],
         cases: dict[tuple[str, str], str], show_env: bool) -> Safe:
    r = merged.records[i]
    conflict = merged.in_conflict(i)
    status: list[str] = [h("span", r.status, class_=f"badge s-{r.status}")]
    if conflict:
        status += [" ", h("span", "conflict", class_="badge s-conflict",
                          title="another record of this comparison disagrees")]
    cells = [h("td", status, data_sort=str(SEVERITY.get(r.status, 5))), h("td", r.kind or ""),
             h("td", _fw(r)), h("td", r.api), h("td", h("code", r.case_id)), h("td", r.group),
             h("td", r.quantity), h("td", r.dtype), h("td", r.device)]
    if show_env:
        cells.append(h("td", _env(merged, r)))
    ulp = None if r.kind == "special-value" else r.max_ulp_error  # it covers other elements
    cells += [_number_cell(r.bound_use, _short(r.bound_use)),
              _number_cell(ulp, format_ulp(ulp)),
              _number_cell(r.max_abs_error, _short(r.max_abs_error)),
              h("td", h("div", r.message, class_="clip"), class_="msg", title=r.message)]
    return h("tr", *cells, id=f"rec-{i}", class_="row", data_status=r.status,
             data_kind=r.kind or "", data_fw=_fw(r), data_api=r.api, data_dtype=r.dtype,
             data_device=r.device, data_env=r.environment_id, data_group=r.group,
             data_conflict="1" if conflict else "0", data_record=str(i),
             data_detail=details[(r.case_id, r.dtype, r.quantity)],
             data_case=cases[(r.case_file, r.case_id)])


def _number_cell(value: float | None, text: str) -> Safe:
    if value is None or math.isnan(value):
        key = "-1"
    else:
        key = "1e999" if math.isinf(value) else repr(value)
    return h("td", text, class_="num", data_sort=key)


def _short(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3g}"


def _filters(merged: Merged, listed: list[int], show_env: bool) -> Safe:
    records = [merged.records[i] for i in listed]
    statuses = sorted({r.status for r in records}, key=lambda s: SEVERITY.get(s, 5))
    any_bad = any(r.status in ("fail", "error") for r in records)
    status_options = ([("discrepancy", "fail + error")] if any_bad else []) + [
        ("", "every listed record")] + [(s, s) for s in statuses]
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
                                         placeholder="case, message...")))
    parts.append(h("span", f"{len(listed)} listed", id="disc-count", class_="muted"))
    return join(parts)


def _filter(label: str, name: str, options: list[tuple[str, str]]) -> Safe:
    return h("label", f"{label} ", h("select", *(h("option", text, value=value)
                                                 for value, text in options),
                                     data_filter=name))


# --- the comparison block: values side by side, verdicts, reproduction ---------------------


def _comparison_template(merged: Merged, key: tuple[str, str, str], members: list[int],
                         tid: str) -> Safe:
    case_id, dtype, quantity = key
    records = [merged.records[i] for i in members]
    first = records[0]
    blocks = [h("h4", f"{case_id} · {first.op} · {dtype} · {quantity}"),
              _verdicts(merged, members), _values(merged, members)]
    conflicted = [i for i in members if merged.in_conflict(i)]
    if conflicted:
        blocks.append(h("p", f"{len(conflicted)} records of this comparison disagree although "
                             "they share environment, framework version, API, device and "
                             "dtype: from " + ", ".join(merged.sources[i] for i in conflicted),
                        class_="note"))
    blocks.append(_reproduce(merged, records))
    return h("template", *blocks, id=tid)


def _who(merged: Merged, r: Record) -> str:
    parts = [_fw(r), r.api, r.device]
    if len(merged.environments) > 1:
        parts.append(_env(merged, r))
    return " · ".join(parts)


def _verdicts(merged: Merged, members: list[int]) -> Safe:
    head = h("tr", *(h("th", c) for c in ("who", "status", "kind", "x bound", "max ULP",
                                          "max abs", "max rel", "worst at", "tolerance",
                                          "message")))
    rows = []
    for i in members:
        r = merged.records[i]
        worst = "" if r.worst_index is None else "(" + ", ".join(map(str, r.worst_index)) + ")"
        rows.append(h("tr", h("td", _who(merged, r)),
                      h("td", h("span", r.status, class_=f"badge s-{r.status}")),
                      h("td", r.kind or ""), h("td", _short(r.bound_use), class_="num"),
                      h("td", format_ulp(r.max_ulp_error), class_="num"),
                      h("td", _short(r.max_abs_error), class_="num"),
                      h("td", _short(r.max_rel_error), class_="num"), h("td", worst),
                      h("td", _tolerance(r.tolerance)), h("td", r.message),
                      data_record=str(i)))
    return join([h("h4", "Verdicts"),
                 h("div", h("table", h("thead", head), h("tbody", rows)), class_="scroll")])


def _tolerance(tolerance: dict[str, Any] | None) -> str:
    """``K=4 (policy)``, from a record's ``tolerance`` (``{k, scale, source, reason}``)."""
    if not tolerance:
        return ""
    text = f"K={tolerance.get('k', '?')}"
    if tolerance.get("scale") not in (None, 1, 1.0):
        text += f" x{tolerance['scale']}"
    extra = ", ".join(str(tolerance[k]) for k in ("source", "reason") if tolerance.get(k))
    return f"{text} ({extra})" if extra else text


def _values(merged: Merged, members: list[int]) -> Safe:
    records = [merged.records[i] for i in members]
    reference = next((r.reference for r in records if r.reference is not None), None)
    source = reference if reference is not None else next(
        (r.actual for r in records if r.actual is not None), None)
    if source is None:
        return join([h("h4", "Values"), h("p", _not_kept(records), class_="muted")])
    shape, flat = _flatten(source)
    worst = {i: _flat_index(merged.records[i].worst_index, shape) for i in members}
    columns = _columns(len(flat), [w for w in worst.values() if w is not None])
    head = h("tr", h("th", "values" + (f" (shape {tuple(shape)})" if shape else "")),
             *(h("th", _index_label(c, shape) if c >= 0 else "…") for c in columns))
    precision = next((r.oracle_precision for r in records if r.oracle_precision), None)
    oracle = "oracle" + (f" ({precision} bits" if precision else " (") + ", rounded to float64)"
    rows = [_value_row(oracle, _flatten(reference)[1] if reference is not None else None,
                       columns, None, None)]
    for i in members:
        actual = merged.records[i].actual
        rows.append(_value_row(_who(merged, merged.records[i]),
                               None if actual is None else _flatten(actual)[1],
                               columns, worst[i], str(i)))
    note = None if len(flat) <= MAX_COLUMNS else h("p", (
        f"{len(flat)} elements: the first ones, each record's worst element and the last are "
        "shown."), class_="note")
    return join([h("h4", "Values side by side"), note,
                 h("div", h("table", h("thead", head), h("tbody", rows), class_="values"),
                   class_="scroll")])


def _value_row(who: str, flat: list[Any] | None, columns: list[int], worst: int | None,
               record: str | None) -> Safe:
    cells = []
    for c in columns:
        if c < 0:
            cells.append(h("td", "…"))
        elif flat is None or c >= len(flat):
            cells.append(h("td", "–", class_="muted"))
        else:
            cells.append(h("td", _number(flat[c]), class_="worst" if c == worst else None))
    return h("tr", h("th", who), *cells, data_record=record)


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


def _reproduce(merged: Merged, records: list[Record]) -> Safe:
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
    return join([h("h4", "Reproduce"), h("pre", "\n".join(lines))])


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


def _case_template(index: CaseIndex, case_file: str, case_id: str, tid: str) -> Safe:
    case, problem = index.lookup(case_file, case_id)
    if case is None:
        return h("template", h("h4", "Case"),
                 h("p", f"Inputs and YAML unavailable: {problem}. The case is {case_id} in "
                        f"{case_file or '(unknown file)'}.", class_="note"), id=tid)
    inputs = [("input", case.raw.get("input")), ("linear_weight", case.raw.get("linear_weight")),
              ("linear_bias", case.raw.get("linear_bias")), ("target", case.raw.get("target")),
              ("weight", case.raw.get("weight"))]
    options = {k: case.raw[k] for k in ("ignore_index", "reduction", "label_smoothing", "grad",
                                        "expect") if k in case.raw}
    rows = [h("tr", h("th", name), h("td", h("code", _abbreviate(value))))
            for name, value in inputs if value is not None]
    rows += [h("tr", h("th", k), h("td", h("code", str(v)))) for k, v in options.items()]
    text = _case_yaml(case)
    return h("template",
             h("h4", "Case"),
             h("p", case.description or "(no description)", " — source: ", case.source,
               " — ", h("code", f"{case.file}:{case.line}")),
             h("div", h("table", h("tbody", rows)), class_="scroll"),
             h("h4", "YAML (save as repro.yaml)"), h("pre", text), id=tid)


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
