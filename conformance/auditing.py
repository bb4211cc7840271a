"""``conformance.audit``: a user's function audited from Python (a kernel's own test suite, a
notebook), in this process, without the runner's workers or a results file.

It is ``conformance run --impl ... --like API`` for one function object: the function is
called exactly as ``like`` is (``conformance.adapters.implementation``), on every case of
``cases`` whose op ``like`` has, in each dtype (``dtypes``) and on each device of the
framework (``devices``), eagerly, and judged against the oracle (its cache is used and
filled as ``conformance run`` does).  The framework is imported here, as the function's own
code imports it anyway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.adapters import frameworks as known_frameworks
from conformance.adapters import load_adapter
from conformance.adapters.implementation import (
    Implementation,
    ImplementationError,
    WithImplementations,
    declared_apis,
    find_like,
    no_callee,
)
from conformance.cases.loading import load_cases
from conformance.judge.check import check_case
from conformance.results.records import Record
from conformance.run.worker import jobs

FAILING = ("fail", "error")


@dataclass(frozen=True)
class AuditResult:
    """The records of one audit (the implementation's, then the API's when ``compare``) and
    a summary: ``counts`` of the implementation's records by status."""

    records: list[Record]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No record of the implementation failed or raised where a value was expected."""
        return not any(self.counts.get(status) for status in FAILING)

    @property
    def failures(self) -> list[Record]:
        return [r for r in self.records if r.api_kind == "implementation"
                and r.status in FAILING]

    def summary(self) -> str:
        """One line: the counts, then the worst failures' one-line messages."""
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items()))
        lines = [f"{counts or 'no records'}"]
        lines += [f"  {r.case_id} [{r.dtype} {r.device}] {r.quantity}: {r.status} "
                  f"{r.kind or ''} {r.message[:160]}" for r in self.failures[:10]]
        return "\n".join(lines)


def audit(function: Callable[..., Any], like: str,
          cases: Iterable[str | Path] = ("cases",), dtypes: Iterable[str] | None = None,
          devices: Iterable[str] | None = None, name: str | None = None,
          compare: bool = False) -> AuditResult:
    """Audit ``function`` called like the API ``like`` (a name of ``conformance support``'s
    API column, or ``FRAMEWORK:NAME`` where several frameworks have it) on ``cases`` (case
    files or folders).  ``compare`` also runs ``like`` itself,
    for its records beside the function's.  ``ImplementationError`` for an unknown ``like``."""
    if not callable(function):
        raise ImplementationError(f"audit: {function!r} is not callable")
    apis, problems = declared_apis(list(known_frameworks()))
    api = find_like(like, apis, f"audit: like={like!r}")
    if api is None:
        missing = "".join(f"; {f} gave none: {p}" for f, p in problems.items())
        raise ImplementationError(f"audit: like={like!r}: no such API in the support "
                                  f"matrix{missing}")
    if not api.eager:
        raise ImplementationError(f"audit: like={like!r} is a compiled twin; the function "
                                  "runs eagerly (compile it yourself)")
    if not api.callee:
        raise ImplementationError(f"audit: like={like!r}: {no_callee(api)}")
    label = name or f"{getattr(function, '__module__', '?')}:" \
                    f"{getattr(function, '__qualname__', repr(function))}"
    impl = Implementation(label, label, api.name, api.framework, api.id)
    adapter = WithImplementations(load_adapter(api.framework), [impl],
                                  only=[api.id] if compare else [],
                                  functions={impl.name: function})
    loaded = load_cases([str(path) for path in cases])
    chosen_dtypes = None if dtypes is None else list(dtypes)
    chosen_devices = None if devices is None else list(devices)
    records: list[Record] = []
    for job in jobs(adapter, loaded, chosen_dtypes, chosen_devices):
        records += check_case(job.case, adapter, job.api, job.device, job.dtype)
    counts = Counter(r.status for r in records if r.api_kind == "implementation")
    return AuditResult(records, dict(counts))
