"""pytest plugin: case files become test items, one per case x framework x API x device x dtype.

``pytest cases/`` runs the audit as a test session; an item's id reads
``seed-000-randn-1x5[torch-cross_entropy-cpu-float32]`` and its failure message reads like a
bug report (where the case is, its inputs, the oracle's value, the framework's, the error in
ULP).  Each case with documented values also gets a ``[documented]`` item that checks them
against the oracle.  YAML files are collected when named on the command line or when they
lie under a directory listed in the ``conformance_cases`` ini option (default ``cases``).
Options: ``--conformance-framework``, ``--conformance-dtype``, ``--conformance-device``, and
``--conformance-impl [NAME=]MODULE:FUNCTION`` with ``--conformance-like API`` (a user's function
called like that API: ``conformance.adapters.implementation``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.adapters import AdapterUnavailable, frameworks, load_adapter
from conformance.adapters.base import Adapter
from conformance.adapters.implementation import (
    Implementation,
    ImplementationError,
    WithImplementations,
    pair_likes,
    resolve,
)
from conformance.cases.loading import CASE_FILE_SUFFIXES, Case, CaseError, load_file
from conformance.judge.baseline import Baseline, is_new_discrepancy, load_baseline
from conformance.judge.check import check_case, check_documented
from conformance.results.records import Record
from conformance.run.worker import Job, jobs


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "crossentropy-conformance case files")
    group.addoption("--conformance-framework", action="append",
                    help="framework to run (repeatable; default: every one, skipped if missing)")
    group.addoption("--conformance-dtype", action="append", help="only this dtype (repeatable)")
    group.addoption("--conformance-device", action="append",
                    help="only this device id or kind, e.g. cpu, gpu, cuda:0 (repeatable)")
    group.addoption("--conformance-baseline", action="append", metavar="YAML",
                    help="known discrepancies (repeatable): a job whose every discrepancy "
                         "an entry covers is an xfail; a covered job that passes an xpass")
    group.addoption("--conformance-strict-baseline", action="store_true",
                    help="an xpass (a known discrepancy that now passes) fails the item")
    group.addoption("--conformance-impl", action="append", default=[],
                    metavar="[NAME=]MODULE:FUNCTION",
                    help="audit your own function, called like --conformance-like (repeatable; "
                         "without --conformance-framework only the implementations run)")
    group.addoption("--conformance-like", action="append", default=[], metavar="API",
                    help="the API whose calling convention --conformance-impl follows: one for "
                         "all, or one per --conformance-impl")
    parser.addini("conformance_cases", type="paths", default=["cases"],
                  help="directories whose YAML files are collected as conformance cases")


# Loggers whose records say nothing to a reader of a failure: TorchDynamo's structured trace
# (``torch.__trace``, DEBUG records with empty messages, hundreds per compilation, meant for
# TORCH_TRACE files; torch hands that logger the root's handlers, so pytest captures them)
# would fill most of a compiled item's "Captured log" section.
QUIET_LOGGERS = re.compile(r"\btorch\.__trace\b")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    """A case item's report without the captured log lines of ``QUIET_LOGGERS`` (only the
    report: TORCH_TRACE and other handlers get every record)."""
    outcome = yield
    if not isinstance(item, _CaseItemBase):
        return
    report = outcome.get_result()  # type: ignore[attr-defined]
    sections = []
    for title, text in report.sections:
        if title.startswith("Captured log"):
            text = "\n".join(line for line in text.splitlines()
                             if not QUIET_LOGGERS.search(line))
            if not text.strip():
                continue
        sections.append((title, text))
    report.sections = sections


def pytest_configure(config: pytest.Config) -> None:
    _implemented(config)  # a bad --conformance-impl is a usage error before collection
    _baseline(config)  # so is a bad baseline, named by its file and line


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in CASE_FILE_SUFFIXES:
        return None
    config = parent.config
    named = any(Path(arg.split("::")[0]).resolve() == file_path.resolve() for arg in config.args)
    roots = [Path(p).resolve() for p in config.getini("conformance_cases")]
    if named or any(file_path.resolve().is_relative_to(root) for root in roots):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            cases = load_file(self.path)
        except CaseError as error:
            raise self.CollectError(str(error)) from None
        chosen = self.config.getoption("conformance_framework")
        implemented = _implemented(self.config)
        names = chosen or ([] if implemented else list(frameworks()))
        names = list(dict.fromkeys([*names, *implemented]))
        dtypes = self.config.getoption("conformance_dtype")
        devices = self.config.getoption("conformance_device")
        for case in cases:
            if case.documented is not None or case.documented_grad is not None:
                yield DocumentedItem.from_parent(self, name=f"{case.id}[documented]", case=case)
        for framework in names:
            try:
                adapter = _adapter(self.config, framework, chosen)
            except AdapterUnavailable as error:
                for case in cases:
                    yield SkippedItem.from_parent(self, name=f"{case.id}[{framework}]",
                                                  case=case, reason=str(error))
                continue
            for job in jobs(adapter, cases, dtypes, devices):
                item = CaseItem.from_parent(self, name=_item_name(framework, job), job=job,
                                            framework=framework)
                _mark_known(item, framework, adapter.version(), job)
                yield item


_IMPLEMENTATIONS = pytest.StashKey[list[Implementation]]()
_ADAPTERS = pytest.StashKey[dict[str, Adapter]]()


def _implemented(config: pytest.Config) -> list[str]:
    """The frameworks of ``--conformance-impl``, resolved once per session (a bad one is a
    usage error naming it)."""
    if _IMPLEMENTATIONS not in config.stash:
        try:
            pairs = pair_likes(config.getoption("conformance_impl"),
                               config.getoption("conformance_like"))
            config.stash[_IMPLEMENTATIONS] = resolve(pairs, list(frameworks()))
        except ImplementationError as error:
            raise pytest.UsageError(str(error).replace("--impl", "--conformance-impl")
                                    .replace("--like", "--conformance-like")) from None
    return list(dict.fromkeys(i.framework for i in config.stash[_IMPLEMENTATIONS]))


def _adapter(config: pytest.Config, framework: str, chosen: list[str] | None) -> Adapter:
    """The framework's adapter, with the session's implementations of it (and, where the
    framework was not chosen with --conformance-framework, none of its own APIs)."""
    adapters = config.stash.setdefault(_ADAPTERS, {})
    if framework not in adapters:
        adapter = load_adapter(framework)
        mine = [i for i in config.stash.get(_IMPLEMENTATIONS, []) if i.framework == framework]
        if mine:
            adapter = WithImplementations(
                adapter, mine, None if chosen and framework in chosen else [])
        adapters[framework] = adapter
    return adapters[framework]


def _item_name(framework: str, job: Job) -> str:
    return f"{job.case.id}[{framework}-{job.api.id}-{job.device.id}-{job.dtype}]"


class ConformanceFailure(Exception):
    """Raised by an item whose records include a fail or an error."""

    def __init__(self, records: list[Record]) -> None:
        super().__init__(records)
        self.records = records


class KnownDiscrepancy(ConformanceFailure):
    """Raised by an item whose every fail and error a baseline entry covers: the item's
    ``xfail(raises=KnownDiscrepancy)`` marker makes it an xfail (any other failure stays a
    failure; a pass is an xpass, failing under ``--conformance-strict-baseline``)."""


_BASELINE = pytest.StashKey["Baseline | None"]()


def _baseline(config: pytest.Config) -> Baseline | None:
    if _BASELINE not in config.stash:
        paths = config.getoption("conformance_baseline")
        try:
            config.stash[_BASELINE] = load_baseline(paths) if paths else None
        except CaseError as error:
            raise pytest.UsageError(f"--conformance-baseline: {error}") from None
    return config.stash[_BASELINE]


def _mark_known(item: pytest.Item, framework: str, version: str, job: Job) -> None:
    baseline = _baseline(item.config)
    if baseline is None:
        return
    for entry in baseline.entries:
        if entry.could_match(framework, version, job.api.name, job.device.id, job.dtype,
                             job.case.id):
            item.add_marker(pytest.mark.xfail(
                reason=f"{entry.reason or 'known discrepancy'} ({entry.link}; {entry.where})",
                raises=KnownDiscrepancy,
                strict=item.config.getoption("conformance_strict_baseline")))
            return


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    baseline = config.stash.get(_BASELINE, None)
    if baseline is None:
        return
    stale = [entry for entry in baseline.stale() if not baseline.not_run(entry)]
    if stale:  # those of frameworks and cases not run in this session are not listed
        terminalreporter.write_sep("-", f"{len(stale)} baseline entries matched no record "
                                        "although their framework and case ran")
        for entry in stale:
            terminalreporter.write_line(entry.where)


class _CaseItemBase(pytest.Item):
    case: Case

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"case {self.case.id}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        if isinstance(excinfo.value, ConformanceFailure):
            return bug_report(self.case, excinfo.value.records)
        return super().repr_failure(excinfo)

    def _judge(self, records: list[Record]) -> None:
        baseline = _baseline(self.config)
        if baseline is not None:
            records = [baseline.apply(r) for r in records]
        if any(is_new_discrepancy(r) for r in records):
            raise ConformanceFailure(records)
        if any(r.status in ("fail", "error") for r in records):
            raise KnownDiscrepancy(records)
        unsupported = [r for r in records if r.status == "unsupported"]
        if unsupported:
            pytest.skip(f"unsupported: {unsupported[0].message}")


class CaseItem(_CaseItemBase):
    def __init__(self, *, job: Job, framework: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job, self.case, self.framework = job, job.case, framework

    def reportinfo(self) -> tuple[Path, int, str]:
        """The failure's header: the case, and the API, device and dtype it failed on."""
        job = self.job
        return (self.path, self.case.line - 1,
                f"{self.case.id}: {self.framework} {job.api.name} on {job.device.id}, "
                f"{job.dtype}")

    def runtest(self) -> None:
        adapter = _adapter(self.config, self.framework, self.config.getoption(
            "conformance_framework"))
        job = self.job
        self._judge(check_case(job.case, adapter, job.api, job.device, job.dtype))


class DocumentedItem(_CaseItemBase):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"{self.case.id}: documented values, float64"

    def runtest(self) -> None:
        self._judge(check_documented(self.case))


class SkippedItem(_CaseItemBase):
    def __init__(self, *, case: Case, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case, self.reason = case, reason

    def runtest(self) -> None:
        pytest.skip(self.reason)


def bug_report(case: Case, records: list[Record]) -> str:
    """A failure message a framework maintainer can act on without opening the case file."""
    first = records[0]
    lines = [
        f"{case.id}: {first.framework} {first.framework_version}, {first.api} "
        f"({first.api_kind}), device {first.device} ({first.device_name}), {first.dtype}",
        f"  case:   {case.file}:{case.line}  source: {case.source}",
        f"  op:     {case.op}  reduction={case.reduction} ignore_index={case.ignore_index} "
        f"label_smoothing={case.label_smoothing} weight={_short(case.weight)}",
        f"  input:  {_short(case.input)}",
    ]
    if case.target is not None:
        lines.append(f"  target: {_short(case.target)}")
    for record in records:
        lines.append(f"  {record.quantity}: {record.status.upper()}"
                     + (f" ({record.kind})" if record.kind else ""))
        if record.reference is not None:
            lines.append(f"    oracle:    {_short(record.reference)}")
        if record.actual is not None:
            lines.append(f"    framework: {_short(record.actual)}")
        figures = [f"{value:.4g} {name}" for value, name in (
            (record.max_ulp_error, "ulp"), (record.max_abs_error, "abs"),
            (record.max_rel_error, "rel")) if value is not None]
        if figures:
            lines.append(f"    error:     {', '.join(figures)}")
        lines.append(f"    {record.message}")
    return "\n".join(lines)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."
