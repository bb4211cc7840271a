"""The report's support matrix: API x option, dtype and device, from the ``adapter`` lines.

The matrix is ``conformance.adapters.support.from_declarations`` of the results' adapter lines (one
framework version's declarations from several environments are united); compiled twins
(``torch.compile(f)`` with the same options as ``f``) share their API's row.  A cell is

* ``native`` / ``composed``: the API supports the option (the word is the API's kind);
* ``unsupported``: it does not (the hover text gives the adapter's reason), or, for a dtype,
  the adapter lacks it or every record of this API in it is ``unsupported`` for a reason
  naming the dtype;
* ``–``: the option does not apply to the op (e.g. weights for softmax), or the device was
  never seen with this framework.

The ``grad`` column says whether the API's gradient is judged: ``unsupported`` for a
forward-only API (``Api.no_grad``, e.g. ONNX Runtime and SciPy), with the reason on hover.

Frameworks that were only skipped (not installed) are listed under the table.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from conformance.adapters.support import (
    HEADERS,
    NOT_APPLICABLE,
    ApiSupport,
    FrameworkSupport,
    compiled_twins,
    from_declarations,
)
from conformance.cases.options import OPTIONS
from conformance.report.html import Safe, h, join
from reference.formats import DTYPES

if TYPE_CHECKING:
    from conformance.results.merge import Merged


def support_section(merged: Merged) -> Safe:
    """The ``Support`` section of the report."""
    matrix = from_declarations(merged.adapters)
    title = h("h2", "Support")
    if not matrix.frameworks:
        return join([title, h("p", "No adapter declarations in these results.", class_="muted"),
                      _skipped(merged)])
    options = list(OPTIONS) + sorted(
        {o for f in matrix.frameworks for a in f.apis for o in a.supports} - set(OPTIONS))
    dtypes = sorted({d for f in matrix.frameworks for d in f.dtypes},
                    key=lambda d: DTYPES.index(d) if d in DTYPES else len(DTYPES))
    devices = sorted({str(d.get("id")) for f in matrix.frameworks for d in f.devices})
    only_unsupported = _unsupported_dtypes(merged)
    head = h("tr", h("th", "framework"), h("th", "API"), h("th", "op"),
             *(h("th", HEADERS.get(o, o)) for o in options), h("th", "grad"),
             *(h("th", d) for d in dtypes), *(h("th", d) for d in devices))
    rows = []
    for framework in matrix.frameworks:
        label = f"{framework.framework} {framework.version}".strip()
        twins = compiled_twins(framework.apis)
        folded = {f"{w}({name})" for name, wrappers in twins.items() for w in wrappers}
        for api in framework.apis:
            if api.name in folded:
                continue
            also = [h("div", f"also as {w}(…)", class_="muted") for w in twins.get(api.name, [])]
            cells = [_option_cell(api, o) for o in options] + [_grad_cell(api)]
            cells += [_dtype_cell(api, d, framework, only_unsupported.get((label, api.name, d)))
                      for d in dtypes]
            device_names = {str(d.get("id")): str(d.get("name", "")) for d in framework.devices}
            cells += [_device_cell(api, device_names.get(d)) for d in devices]
            rows.append(h("tr", h("th", label), h("td", api.name, also), h("td", api.op),
                          *cells))
    note = h("p", "native: the API does it in one public call; composed: built from public "
                  "calls the way a user would; *: by the API's own definition, which the "
                  "comparison judges as semantic (hover for it); unsupported: the adapter "
                  "declares it cannot (hover for the reason); –: does not apply to the op, or "
                  "not seen.",
             class_="note")
    table = h("table", h("thead", head), h("tbody", rows), class_="support")
    return join([title, note, h("div", table, class_="scroll"), _skipped(merged)])


def _cell(state: str, title: str = "", text: str | None = None) -> Safe:
    shown = text if text is not None else "–" if state == "na" else state
    return h("td", shown, class_=f"sup {state}", title=title or None)


def _option_cell(api: ApiSupport, option: str) -> Safe:
    state = api.cell(option)
    if state == NOT_APPLICABLE:
        return _cell("na", f"{option} does not apply to {api.name}")
    if option in api.supports:
        # "native*": by the API's own definition (Api.semantics), as in the README's matrix
        definition = api.semantics.get(option) or api.semantics.get("*")
        if definition:
            return _cell(api.kind, f"by {api.name}'s own definition: {definition}", state)
        return _cell(api.kind)
    return _cell("unsupported", api.reason(option))


def _grad_cell(api: ApiSupport) -> Safe:
    if api.no_grad:
        return _cell("unsupported", f"no gradient: {api.no_grad}")
    return _cell(api.kind)


def _dtype_cell(api: ApiSupport, dtype: str, framework: FrameworkSupport,
                reason: str | None) -> Safe:
    if dtype not in framework.dtypes:
        return _cell("unsupported", f"the adapter does not declare {dtype}")
    if reason is not None:
        return _cell("unsupported", reason)
    return _cell(api.kind)


def _device_cell(api: ApiSupport, device_name: str | None) -> Safe:
    if device_name is None:
        return _cell("na", "not seen with this framework")
    return _cell(api.kind, device_name)


def _unsupported_dtypes(merged: Merged) -> dict[tuple[str, str, str], str]:
    """(framework label, API, dtype) -> a reason, where every record there is unsupported
    for a reason that names the dtype."""
    statuses: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    reasons: dict[tuple[str, str, str], str] = {}
    for r in merged.records:
        key = (f"{r.framework} {r.framework_version}".strip(), r.api, r.dtype)
        statuses[key].add(r.status)
        if r.status == "unsupported":
            reasons.setdefault(key, r.message)
    return {k: reasons[k] for k, s in statuses.items()
            if s == {"unsupported"} and _names_dtype(reasons[k], k[2])}


def _names_dtype(message: str, dtype: str) -> bool:
    """Whether an unsupported record's message blames the dtype (not an option)."""
    aliases = {"float16": ("half",), "bfloat16": ("bf16",), "float64": ("double",),
               "float32": ("'float'",)}
    text = message.lower()
    return dtype in text or any(a in text for a in aliases.get(dtype, ()))


def _skipped(merged: Merged) -> Safe:
    declared = {(str(a.get("framework")), str(a.get("environment_id", "")))
                for a in merged.adapters}
    lines: dict[tuple[str, str], str] = {}
    for r in merged.records:
        if r.status == "skip" and (r.framework, r.environment_id) not in declared:
            env = merged.environments.get(r.environment_id)
            where = env.label if env else r.environment_id
            lines.setdefault((r.framework, where), r.message)
    if not lines:
        return Safe("")
    return h("ul", *(h("li", h("b", fw), f" was skipped on {where}: {message}")
                     for (fw, where), message in lines.items()))
