"""Discrepancies grouped by root cause, worst first: what the report's first rows and the
terminal's "worst" list both show, in the same order.

A **group** is one case on one API family of one framework: every record of that case on
the API and its compiled twins (``torch.compile(f)``, ``jax.jit(f)``, ``tf.function(f)``
fold into ``f``), over every dtype, device, quantity and environment.  A framework failing
one case in float16, bfloat16 and float32, eagerly and compiled, is one cause, not twelve
rows.

Order (``record_severity``, ``group_severity``): status first (``fail``, then ``error``, then
the rest as in ``STATUS_ORDER``), then the kind (``KIND_ORDER``: a wrong special value before a
numeric error before a behaviour before an API's own definition), then how far past its
bound (``bound_use``, largest first; none counts as unknown, below any figure; a special
value's figures, which cover only its other elements, count as none), then the ULP error,
then more records first, then names (and dtypes, widest first), so the order is total and
reproducible.

A new status or kind is one entry in ``STATUS_ORDER`` / ``KIND_ORDER``; unknown ones sort
after the known ones, never raise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conformance.results.records import Record
from reference.formats import DTYPES

STATUS_ORDER = ("fail", "error", "unsupported", "skip", "pass")
KIND_ORDER = ("special-value", "numeric", "behaviour", "crash", "timeout", "semantic")
DISCREPANCY = ("fail", "error")  # the statuses grouped into causes
NOT_RUN = ("unsupported", "skip")  # a record of these did not run; every other status ran
UNMEASURED = ("special-value",)  # kinds whose error figures do not describe the verdict

# a compiler wrapping an API as a separate API: ``torch.compile(name)`` (as in
# conformance.adapters.support.compiled_twins, which also checks the declarations)
_COMPILED = re.compile(r"^(torch\.compile|jax\.jit|tf\.function)\((.+)\)$")


def api_family(api: str) -> str:
    """The API a compiled twin wraps (``torch.compile(f)`` -> ``f``); any other API is its own
    family."""
    match = _COMPILED.match(api)
    return match.group(2) if match else api


def status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def kind_rank(kind: str | None) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def _figure(value: float | None) -> float:
    """A figure for ordering, larger is worse; an absent one (None, NaN) below every figure."""
    return -1.0 if value is None or math.isnan(value) else value


def record_severity(record: Record) -> tuple[int, int, float, float, str, str, bool, int,
                                             str]:
    """Sort key of one record, worst first (see the module doc); between equals, an API before
    its compiled twin, and the wider dtype first (a float64 record failing says more than a
    bfloat16 one)."""
    # a special-value mismatch's figures cover only its other elements: they do not rank it
    measured = record.kind not in UNMEASURED
    return (status_rank(record.status), kind_rank(record.kind),
            -_figure(record.bound_use if measured else None),
            -_figure(record.max_ulp_error if measured else None), record.case_id,
            api_family(record.api), record.api != api_family(record.api),
            dtype_order(record.dtype), record.quantity)


def framework_label(record: Record) -> str:
    """``torch 2.13.0+cpu``; just the name when the version is unknown (a skipped one)."""
    return f"{record.framework} {record.framework_version}".strip()


@dataclass(frozen=True)
class Group:
    """One case on one API family of one framework (version): ``members`` index the records
    given to ``group_discrepancies``, worst first, so ``members[0]`` is the worst record."""

    framework: str  # framework_label
    family: str
    case_id: str
    members: tuple[int, ...]
    status: str  # the worst record's
    kind: str | None

    def records(self, records: Sequence[Record]) -> list[Record]:
        return [records[i] for i in self.members]

    def dtypes(self, records: Sequence[Record]) -> list[str]:
        """The dtypes of the group's records, widest first (``reference.formats.DTYPES``)."""
        return sorted({records[i].dtype for i in self.members}, key=dtype_order)


def dtype_order(dtype: str) -> int:
    return DTYPES.index(dtype) if dtype in DTYPES else len(DTYPES)


def group_discrepancies(records: Sequence[Record],
                        include: Callable[[int], bool] | None = None) -> list[Group]:
    """The groups of ``records`` that are a discrepancy (``fail``/``error``; or, with
    ``include``, every index it accepts), worst group first."""
    wanted = include or (lambda i: records[i].status in DISCREPANCY)
    by_key: dict[tuple[str, str, str], list[int]] = {}
    for i, record in enumerate(records):
        if wanted(i):
            key = (framework_label(record), api_family(record.api), record.case_id)
            by_key.setdefault(key, []).append(i)
    groups = []
    for (framework, family, case_id), members in by_key.items():
        members.sort(key=lambda i: record_severity(records[i]))
        worst = records[members[0]]
        groups.append(Group(framework, family, case_id, tuple(members), worst.status,
                            worst.kind))
    groups.sort(key=lambda g: group_severity(g, records))
    return groups


def group_severity(group: Group, records: Sequence[Record]) -> tuple[object, ...]:
    """Sort key of a group, worst first: its worst record's, then more records first."""
    return (record_severity(records[group.members[0]])[:4], -len(group.members),
            group.framework, group.family, group.case_id)
