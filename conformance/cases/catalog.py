"""The case library at a glance: ``conformance list`` and the generated ``docs/cases.md``.

Cases are shown by group (``seeds``, ``semantics``, ``edge``, ``half``, ``invalid``,
``large``, and any group of the user's own), with their op and the options they exercise
(``Case.options()``, the names the adapters' support matrix uses) plus three tags:
``generated`` (an input made by ``conformance.cases.generate``), ``expect-error`` and ``no-grad``.

Selecting works on groups, ops and options, and ``--files`` prints the case files of the
selection, so a run can leave a group out::

    conformance run --cases $(conformance list --files --exclude-group large)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from conformance.cases.generate import Spec
from conformance.cases.loading import Case
from conformance.cases.options import ALL_OPTIONS, OPTIONS
from reference.formats import DTYPES
from reference.linear import OP as LINEAR_OP
from reference.oracle import OPS

# The library's own groups, in the order the docs present them, with what each holds.
GROUPS: dict[str, str] = {
    "seeds": "the examples of the seed documents, with the values they printed",
    "semantics": "every combination of target kind, weights, ignore_index, label smoothing, "
                 "reduction and shape (cases/semantics/make_grid.py)",
    "edge": "edge values: huge, infinite and NaN logits, cancellation, ties, C = 1, N = 0, "
            "ignored targets, extreme weights, unnormalized probability targets",
    "half": "float16 and bfloat16: logits near overflow, underflowing probabilities and "
            "gradients, accumulation",
    "invalid": "invalid inputs (a framework must raise) and suspicious inputs that are "
               "well defined (a value is expected)",
    "usage": "what users' code says: the class axis last, per-example weights with Keras' "
             "and TF v1's reductions, where masks, Keras' probability inputs "
             "(from_logits=False), documented shapes and gradient conventions",
    "large": "large vocabularies (32k to 128k classes) and one 32 x 131072 batch: the oracle "
             "takes seconds to minutes per dtype; leave them out with --exclude-group large",
    "linear": "linear_cross_entropy (the fused LM-head loss): vocabularies of 32k, 128k and "
              "262144, a common offset through the bias, masks, smoothing, probability "
              "targets, empty and one-row batches; the oracle takes seconds per dtype",
    "found": "discrepancies found by conformance hunt that no other case showed, as the hunt "
             "shrank them (cases/found/)",
}
TAGS = ("generated", "expect-error", "no-grad")


def tags(case: Case) -> list[str]:
    """``Case.options()`` plus the catalog's own tags."""
    names = list(case.options())
    if any(isinstance(v, Spec) for v in (case.input, case.target, case.weight)):
        names.append("generated")
    if case.expect == "error":
        names.append("expect-error")
    if not case.grad:
        names.append("no-grad")
    return names


def group_order(cases: Iterable[Case]) -> list[str]:
    """The library's groups first, in their order, then any other group alphabetically."""
    present = {case.group for case in cases}
    return [g for g in GROUPS if g in present] + sorted(present - set(GROUPS))


def select(
    cases: Sequence[Case],
    groups: Sequence[str] | None = None,
    exclude_groups: Sequence[str] | None = None,
    ops: Sequence[str] | None = None,
    options: Sequence[str] | None = None,
) -> list[Case]:
    """The cases in ``groups`` (all if None), not in ``exclude_groups``, of one of ``ops``,
    exercising every one of ``options`` (option or tag names)."""
    chosen = []
    for case in cases:
        if groups and case.group not in groups:
            continue
        if exclude_groups and case.group in exclude_groups:
            continue
        if ops and case.op not in ops:
            continue
        if options and not set(options) <= set(tags(case)):
            continue
        chosen.append(case)
    return chosen


def _relative(file: str, root: Path | None) -> str:
    if root is None:
        return Path(file).as_posix()
    try:
        return Path(os.path.relpath(Path(file).resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(file).as_posix()


def files(cases: Sequence[Case], root: Path | None = None) -> list[str]:
    """The case files holding ``cases``, each once, in the order first met.  A file holding
    cases that were not selected is still listed (a run takes whole files)."""
    seen: dict[str, None] = {}
    for case in cases:
        seen.setdefault(_relative(case.file, root), None)
    return list(seen)


def text(cases: Sequence[Case], root: Path | None = None) -> str:
    """One line per case, under a heading per group."""
    if not cases:
        return "no cases selected\n"
    width = max(len(c.id) for c in cases)
    op_width = max(len(c.op) for c in cases)
    lines = []
    for group in group_order(cases):
        members = [c for c in cases if c.group == group]
        where = ", ".join(files(members, root))
        lines.append(f"{group} ({len(members)} cases; {where})")
        if group in GROUPS:
            lines.append(f"  {GROUPS[group]}")
        for case in members:
            dtypes = ",".join(case.dtypes)
            lines.append(f"  {case.id:<{width}}  {case.op:<{op_width}}  "
                         f"{' '.join(tags(case)) or '-'}  [{dtypes}]")
        lines.append("")
    lines.append(f"{len(cases)} cases in {len(group_order(cases))} groups")
    return "\n".join(lines) + "\n"


def counts(cases: Sequence[Case]) -> str:
    """Cases per group, one line each."""
    total = Counter(c.group for c in cases)
    lines = [f"{group:<12} {total[group]:>5}" for group in group_order(cases)]
    lines.append(f"{'total':<12} {len(cases):>5}")
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A Markdown table; columns of numbers are right-aligned."""
    numeric = [all(isinstance(row[i], int) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def markdown(cases: Sequence[Case], root: Path | None = None) -> str:
    """``docs/cases.md``: cases per group and op, option, tag and dtype."""
    order = group_order(cases)
    by_group = {g: [c for c in cases if c.group == g] for g in order}
    out = [
        "<!-- GENERATED by `conformance list --markdown > docs/cases.md` (run from the "
        "repository root); do not edit by hand. tests/test_case_library.py checks it is "
        "up to date. -->",
        "",
        "# The case library",
        "",
        f"{len(cases)} cases in {len(order)} groups. A case counts once per op, and once in "
        "every option, tag and dtype column that applies to it. The options are those of "
        "`Case.options()` (the names of the adapters' support matrix); see "
        "[add-a-case.md](add-a-case.md) to add your own, and `conformance list` to see every "
        "case.",
        "",
        "## Groups",
        "",
    ]
    out += _table(["group", "cases", "files", "what"], [
        [f"`{g}`", len(by_group[g]), "<br>".join(f"`{f}`" for f in files(by_group[g], root)),
         GROUPS.get(g, "")]
        for g in order
    ])
    out += ["", "## Cases per group and op", ""]
    ops = [op for op in (*OPS, LINEAR_OP) if any(c.op == op for c in cases)]
    out += _table(["group", *ops, "total"], [
        [f"`{g}`", *(sum(c.op == op for c in by_group[g]) for op in ops), len(by_group[g])]
        for g in order
    ] + [["**total**", *(sum(c.op == op for c in cases) for op in ops), len(cases)]])
    out += ["", "## Cases per group and option", ""]
    names = [*(o for o in ALL_OPTIONS if any(o in tags(c) for c in cases) or o in OPTIONS),
             *TAGS]
    tag_sets = {id(c): set(tags(c)) for c in cases}
    out += _table(["group", *names], [
        [f"`{g}`", *(sum(n in tag_sets[id(c)] for c in by_group[g]) for n in names)]
        for g in order
    ] + [["**total**", *(sum(n in tag_sets[id(c)] for c in cases) for n in names)]])
    out += ["", "## Cases per group and dtype", ""]
    out += _table(["group", *DTYPES], [
        [f"`{g}`", *(sum(d in c.dtypes for c in by_group[g]) for d in DTYPES)] for g in order
    ] + [["**total**", *(sum(d in c.dtypes for c in cases) for d in DTYPES)]])
    return "\n".join(out) + "\n"
