"""``conformance run``: every case on every selected framework, records appended as they come.

The runner loads and validates all cases first (a bad case file stops the run before anything
is computed) and writes the environment line.  Then:

1. **the oracle phase**: when the oracle cache (``conformance.oracle.cache``) lacks entries the run
   needs, up to ``jobs`` oracle workers (``python -m conformance.run.worker --oracle``) fill it,
   largest cases first, each entry computed once;
2. the cases' documented values are checked against the oracle, in this process;
3. **the framework phase**: one worker process per framework (``conformance.run.worker``), up to
   ``jobs`` frameworks at a time.  Each framework is imported once per worker.

Faults.  A worker that dies mid-job (a segfault, an abort) costs that job only: the job is
recorded as ``error`` with kind ``crash`` and the signal or exit code, and a fresh worker
continues with the jobs not yet done.  A job that outlives ``timeout`` seconds is killed with
its worker's whole process group and recorded likewise (kind ``timeout``, with the limit).
A worker that fails outside any job twice without completing one in between (a framework
that crashes on import) is recorded once, as a job ``*|*|*|*`` of that framework, and the
framework is given up.

Records.  A job's records are buffered until the worker says the job is ``done`` and then
appended together, each tagged with the job's key and their number (``Record.job``,
``Record.job_records``), with one flush and fsync.  So the file only ever holds whole jobs,
except after a kill during that one write; ``resume`` (and ``--append``) first cut such a
torn tail off (a final line that does not parse, then a last job with fewer records than it
announces), which never removes a completed job; a last line that parses but lacks its
newline is complete and kept, and given its newline.  Each framework's records appear in a
fixed order (its jobs' order); frameworks running at the same time interleave in the file.

Settings.  The environment line of a run holds the run's ``settings`` (``run_settings``:
what changes its records: the ``--cases`` paths, frameworks, dtypes, devices, time limits,
tolerance scale and the oracle's version) and ``case_digests`` (``case_digests``: a sha256
of each case's content).  A run that continues a file checks them first, under the file's
lock and before anything is written or cut: ``resume`` needs the settings and cases of the
last run of this environment in the file exactly; an append (a new run into a non-empty
file) needs the same tolerance scale and oracle, and the same content for every case id
an earlier run of this environment has.  A file whose run in this environment has no
settings (an older version) is neither resumed nor appended to.  ``overwrite`` empties the
file only once it holds the lock, so a file a live run is writing is never replaced.

Resume.  With ``resume`` the runner reads the existing file, keeps its environment and
adapter lines (writing them only if this environment has none yet), and hands each worker
the keys of the jobs already complete in this environment; they are not run again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from conformance.adapters.implementation import Implementation
from conformance.cases.loading import Case, find_case_files, load_cases
from conformance.judge.check import check_documented
from conformance.oracle import cache as oracle_cache
from conformance.results.environment import environment
from conformance.results.jsonl import ResultsWriter, parse_line
from conformance.results.paths import Named, check_outputs
from conformance.results.records import Record, jsonable, record_from_json
from conformance.run.logs import WorkerLogs, last_error, logs_directory
from conformance.run.shards import shard_cases
from conformance.run.summary import RunSummary
from conformance.run.worker import oracle_entries, oracle_job_key

if TYPE_CHECKING:
    from conformance.run.progress import Progress

DEFAULT_TIMEOUT = 600.0
DEFAULT_ORACLE_TIMEOUT = 3600.0
STARTUP_TIMEOUT = 600.0  # the least time a worker gets to start (import a framework, load cases)
FRAMEWORK_JOB = "*|*|*|*"  # the job key of a framework that could not run at all

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RunOptions:
    cases: list[str]
    frameworks: list[str]
    dtypes: list[str] | None = None
    devices: list[str] | None = None
    out: Path = Path("results/results.jsonl")
    timeout: float = DEFAULT_TIMEOUT
    jobs: int = 0  # workers at a time; 0: one per available core
    resume: bool = False
    overwrite: bool = False  # empty the file (once its lock is held) instead of appending
    cache: str | None = None  # a directory, or "off"; None: $CONFORMANCE_CACHE or the default
    oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT  # per oracle result, in the oracle phase
    shard: tuple[int, int] | None = None  # (K, N): only shard K of N (conformance.run.shards)
    # known discrepancies (conformance.judge.baseline.Baseline): records are written with its
    # word beside their verdict, and only new discrepancies count as failed
    baseline: Any = field(default=None, compare=False)
    keep_records: bool = False  # keep every record in the summary (for --junit-xml)
    # users' functions run like an API (--impl/--like), on that API's framework; a framework
    # they need that is not in ``frameworks`` runs only the APIs they mimic
    implementations: tuple[Implementation, ...] = ()

    def worker_frameworks(self) -> list[str]:
        """Every framework a worker runs: ``frameworks``, then the implementations'."""
        return list(dict.fromkeys([*self.frameworks,
                                   *(impl.framework for impl in self.implementations)]))


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run(options: RunOptions, log: Callable[[str], None] = print,
        progress: Progress | None = None) -> RunSummary:
    cases = shard_cases(load_cases(options.cases), options.shard)
    check_run_paths(options)
    if progress is not None:  # the terminal display: told of cases, declarations, records
        progress.start(cases)
    settings, digests = run_settings(options), case_digests(cases)
    info = environment(settings=settings, case_digests=digests)
    environment_id = info["environment_id"]
    summary = RunSummary(options.out, records=[] if options.keep_records else None)
    parallel = options.jobs or available_cores()
    with _cache_setting(options.cache), ResultsWriter(options.out) as writer, \
            _exclusive(writer, options.out):
        if options.overwrite:  # only now, under the lock: never a file a live run writes
            writer.truncate()
        logs = WorkerLogs(logs_directory(options.out), fresh=options.out.stat().st_size == 0)
        previous = _continue(options, environment_id, settings, digests, log)
        sink = _Sink(writer, summary, previous, log, progress, logs,
                     options.baseline)
        declarations = _declare_waiting(options, parallel, sink)
        if not previous.environment:
            writer.write_environment(info)
        for record in previous.records:
            summary.add(sink.annotated(record))
        summary.resumed_jobs = sum(map(len, previous.done.values()))
        stop = threading.Event()
        with _terminate_on_sigterm():
            oracle_cache.clear_unavailable()
            failures = _oracle_phase(cases, options, parallel, sink, stop)
            failed_file = _oracle_failures_file(cases, failures)
            before = oracle_cache.STATS.computed, oracle_cache.STATS.hits
            for case in cases:
                if not previous.complete("reference", documented_job(case)):
                    sink.batch("reference", documented_job(case),
                               _documented(case, environment_id))
            summary.oracle["computed"] += oracle_cache.STATS.computed - before[0]
            summary.oracle["hits"] += oracle_cache.STATS.hits - before[1]
            for thread in declarations:
                thread.join()
            try:
                _in_parallel(parallel, [
                    functools.partial(_run_framework, framework, cases, options,
                                      environment_id, sink, stop, failed_file)
                    for framework in options.worker_frameworks()], stop)
            finally:
                oracle_cache.clear_unavailable()
                if failed_file is not None:
                    os.unlink(failed_file)
            for line in logs.lines():
                sink.log(line)
    return summary


def fill_oracle_cache(options: RunOptions, log: Callable[[str], None] = print
                      ) -> tuple[RunSummary, dict[tuple[str, str], str]]:
    """``conformance run --oracle-only``: the oracle phase alone (the cache filled for the
    run's cases, of its shard), no framework run and no results file written; returns what
    the cache did and the (case id, dtype) it could not compute, with the reason."""
    cases = shard_cases(load_cases(options.cases), options.shard)
    summary = RunSummary(options.out)
    with _cache_setting(options.cache):
        store = oracle_cache.default_cache()
        if store is None or not store.writable:
            raise ValueError("--oracle-only fills the oracle cache, and this run has none "
                             "it can write (--cache DIR, not --no-cache)")
        sink = _Sink(None, summary, _Previous(), log)  # type: ignore[arg-type]  # no file
        with _terminate_on_sigterm():
            failures = _oracle_phase(cases, options, options.jobs or available_cores(),
                                     sink, threading.Event())
        log(f"oracle: {len(cases)} cases; cache in {store.root}")
    return summary, failures


def _oracle_failures_file(cases: list[Case], failures: dict[tuple[str, str], str]) -> str | None:
    """Tell this process (for the documented checks) and, through a file, the framework
    workers which oracle results the oracle phase could not give."""
    if not failures:
        return None
    by_id = {case.id: case for case in cases}
    with tempfile.NamedTemporaryFile("w", suffix=".oracle-failed", delete=False,
                                     encoding="utf-8") as handle:
        for (case_id, dtype), reason in sorted(failures.items()):
            handle.write(json.dumps({"case": case_id, "dtype": dtype, "reason": reason}) + "\n")
            if case_id in by_id:
                oracle_cache.mark_unavailable(by_id[case_id], dtype, reason)
    return handle.name


def _in_parallel(count: int, calls: list[Callable[[], None]], stop: threading.Event) -> None:
    """Run ``calls`` on ``count`` threads; on any exception (Ctrl-C, SIGTERM, a bug) stop
    them, kill every worker process (whose threads then return) and re-raise."""
    pool = ThreadPoolExecutor(max_workers=max(1, count))
    try:
        for future in [pool.submit(call) for call in calls]:
            future.result()
    except BaseException:
        stop.set()
        _Worker.kill_all()
        raise
    finally:
        pool.shutdown(wait=True)


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM (a CI timeout, ``kill``) ends the run like Ctrl-C: workers are killed, the
    file keeps every complete job.  Only the main thread can set a signal handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _documented(case: Case, environment_id: str) -> list[Record]:
    """``check_documented``, with a failure of the suite's own code recorded, not raised."""
    try:
        return check_documented(case, environment_id)
    except Exception as error:
        return [Record(
            case_id=case.id, op=case.op, group=case.group, framework="reference",
            framework_version="", api="documented value", api_kind="reference", device="cpu",
            device_name="", dtype="float64", quantity="documented", status="error",
            kind="crash", message=f"the check raised {type(error).__name__}: {error}",
            case_file=case.file, environment_id=environment_id)]


def documented_job(case: Case) -> str:
    return f"{case.id}|documented"


# --- what a run is: its settings and cases, its paths -------------------------------------

# The settings of ``run_settings`` as the user names them, for messages.
SETTING_NAMES = {
    "cases": "--cases", "frameworks": "--framework", "dtypes": "--dtype",
    "devices": "--device", "timeout": "--timeout", "oracle_timeout": "--oracle-timeout",
    "tolerance_scale": "--tolerance-scale ($CONFORMANCE_TOLERANCE_SCALE)",
    "oracle_version": "the oracle's version (its code, mpmath and numpy)",
    "shard": "--shard",
    "implementations": "--impl/--like",
}
# The settings that decide verdicts rather than which jobs exist: an append must share them.
JUDGING_SETTINGS = ("tolerance_scale", "oracle_version")
# Fields of a case besides its semantic content (``cache.case_fingerprint``) that change its
# records: its jobs (dtypes), its verdicts (tolerance, expect, documented values) or the
# records' own fields (group).  Not the id (the digests' key), description, source or line.
_JUDGED_CASE_FIELDS = ("dtypes", "expect", "documented", "documented_grad",
                       "documented_tolerance", "tolerance", "group")


def run_settings(options: RunOptions) -> dict[str, Any]:
    """The settings of a run that change its records, as flat JSON data (the environment
    line's ``settings``).  Case paths are kept as spelled (normalized by ``pathlib``, as the
    records' ``case_file`` are), selections sorted (their order changes no record)."""
    from conformance.judge.compare import run_scale

    def chosen(values: list[str] | None) -> list[str] | None:
        return sorted(set(values)) if values else None

    settings: dict[str, Any] = {
        "cases": sorted(str(Path(p)) for p in options.cases),
        "frameworks": sorted(set(options.frameworks)),
        "dtypes": chosen(options.dtypes),
        "devices": chosen(options.devices),
        "timeout": float(options.timeout),
        "oracle_timeout": float(options.oracle_timeout),
        "tolerance_scale": run_scale(),
        "oracle_version": oracle_cache.oracle_version(),
    }
    if options.implementations:  # absent otherwise: the settings of older runs still match
        settings["implementations"] = sorted(impl.spec() for impl in options.implementations)
    if options.shard is not None:  # likewise
        settings["shard"] = "{}/{}".format(*options.shard)
    return settings


def case_digest(case: Case) -> str:
    """The sha256 of what of ``case`` its records depend on: its semantic content (the
    oracle cache's fingerprint) and ``_JUDGED_CASE_FIELDS``."""
    judged = {name: jsonable(getattr(case, name)) for name in _JUDGED_CASE_FIELDS}
    if case.error is not None:  # only then: the digests of cases without it stay as they were
        judged["error"] = json.dumps(case.raw.get("error"), sort_keys=True)
    content = {"semantic": oracle_cache.case_fingerprint(case), "judged": judged}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def case_digests(cases: list[Case]) -> dict[str, str]:
    """``case_digest`` of each case, by id (the environment line's ``case_digests``)."""
    return {case.id: case_digest(case) for case in cases}


def check_run_paths(options: RunOptions, outputs: list[Named] | None = None) -> None:
    """Refuse (``ValueError``) a run whose ``--out`` or other ``outputs`` is a ``--cases``
    path, a case file under a ``--cases`` directory, lies in the oracle cache, or is
    another output (``conformance.results.paths``)."""
    inputs: list[Named] = []
    for given in options.cases:
        path = Path(given)
        inputs.append(("--cases", path))
        if path.is_dir():
            inputs += [(f"a case file under --cases {given}:", file)
                       for file in find_case_files([path])]
    cache = _cache_directory(options.cache)
    trees = [("the oracle cache", cache)] if cache is not None else []
    check_outputs([("--out", options.out), *(outputs or [])], inputs, trees)


def _cache_directory(value: str | None) -> Path | None:
    """The cache directory a run with ``--cache value`` uses (None: no cache)."""
    if value is None:
        return oracle_cache.cache_directory()
    return None if value.strip().lower() in oracle_cache.DISABLED else Path(value)


# --- continuing a file: --resume and --append -----------------------------------------------


def _continue(options: RunOptions, environment_id: str, settings: dict[str, Any],
              digests: dict[str, str], log: Callable[[str], None]) -> _Previous:
    """Check that ``options.out`` may be continued by this run, then repair its tail and
    (for ``resume``) read what it holds.  Everything that can refuse runs before the file
    is touched: a refused run leaves it byte for byte as it was."""
    path = options.out
    data = path.read_bytes()
    if not data:
        if options.resume:
            log(f"{path}: nothing to resume; starting a new run")
        return _Previous()
    check_continuation(path, data, environment_id, settings, digests, options.resume)
    keep, notes = _tail(path, data)
    previous = _Previous()
    if options.resume:
        previous = read_previous(path, environment_id, data[:keep])
    _repair(path, data, keep, notes, log)
    if options.resume:
        log(f"resuming {path}: {sum(map(len, previous.done.values()))} jobs already complete "
            "in this environment")
    return previous


def check_continuation(path: Path, data: bytes, environment_id: str,
                       settings: dict[str, Any], digests: dict[str, str],
                       resume: bool) -> None:
    """Refuse (``ValueError``, naming what differs) to continue ``path`` with a run of other
    settings or cases than its runs in this environment (the module docstring's rules)."""
    runs = _runs_of(data, environment_id)
    verb = "resume" if resume else "append to"
    for number, line in runs:
        if not (isinstance(line.get("settings"), dict)
                and isinstance(line.get("case_digests"), dict)):
            raise ValueError(
                f"{path}:{number}: cannot {verb} this file: its run in this environment was "
                "written by an older conformance, which did not record the run's settings "
                "and cases, so this run could mix other cases or tolerances into it unseen; "
                "write a new file (another --out, or --overwrite) and combine the two with "
                "'conformance merge'; the file was left as it was")
    problems: list[str] = []
    for index, (number, line) in enumerate(runs):
        where = f"{path}:{number}"
        exact = resume and index == len(runs) - 1  # the run a resume continues
        keys = list(dict.fromkeys([*settings, *line["settings"]])) if exact else \
            list(JUDGING_SETTINGS)
        problems += _setting_differences(line["settings"], settings, keys, where)
        problems += _case_differences(line["case_digests"], digests, where, exact)
    if problems:
        advice = ("resume with the options and cases of that run, or start a new file"
                  if resume else "use the same tolerance, oracle and cases, or a new file")
        raise ValueError(f"{path}: cannot {verb} it: {'; '.join(dict.fromkeys(problems))}. "
                         f"{advice.capitalize()}; the file was left as it was")


def _runs_of(data: bytes, environment_id: str) -> list[tuple[int, dict[str, Any]]]:
    """The environment lines of ``environment_id``, with their line numbers.  A line that
    does not parse is passed over here: the tail repair or ``read_previous`` names it."""
    runs = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if b'"environment"' not in raw:  # quick: only such lines can be environment lines
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if (isinstance(obj, dict) and obj.get("type") == "environment"
                and obj.get("environment_id") == environment_id):
            runs.append((number, obj))
    return runs


def _setting_differences(old: dict[str, Any], new: dict[str, Any], keys: list[str],
                         where: str) -> list[str]:
    return [f"{SETTING_NAMES.get(key, key)}: {_shown(old.get(key))} in the run of {where}, "
            f"{_shown(new.get(key))} now" for key in keys if old.get(key) != new.get(key)]


def _case_differences(old: dict[str, Any], new: dict[str, str], where: str,
                      exact: bool) -> list[str]:
    """Case ids whose content differs; with ``exact`` also those added or removed."""
    found = [("edited since the run of", sorted(k for k in new.keys() & old.keys()
                                                 if old[k] != new[k]))]
    if exact:
        found += [("not in the run of", sorted(new.keys() - old.keys())),
                  ("missing now, of the run of", sorted(old.keys() - new.keys()))]
    return [f"case(s) {what} {where}: {_names(ids)}" for what, ids in found if ids]


def _shown(value: Any) -> str:
    return "none" if value is None else json.dumps(value)


def _names(ids: list[str], shown: int = 10) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more



# --- writing --------------------------------------------------------------------------------


class _Sink:
    """Where workers' results go: the file (whole jobs at a time) and the summary."""

    # Jobs of a framework whose check raised (a bug of the suite) told on the terminal; the
    # others are in the records and in the worker's log.
    CRASHES_SHOWN = 3

    def __init__(self, writer: ResultsWriter, summary: RunSummary, previous: _Previous,
                 log: Callable[[str], None], progress: Progress | None = None,
                 logs: WorkerLogs | None = None,
                 baseline: Any = None) -> None:
        self.writer, self.summary, self.previous = writer, summary, previous
        self.baseline = baseline
        self.progress = progress
        self.logs = logs
        self._log = log
        self.lock = threading.Lock()
        self.declared = set(previous.declared)
        self._crashes: dict[str, int] = {}

    def batch(self, framework: str, job: str, records: list[Record]) -> None:
        if not records:
            return
        tagged = [self.annotated(replace(r, job=job, job_records=len(records)))
                  for r in records]
        with self.lock:
            self.writer.write_many(tagged)
            for record in tagged:
                self.summary.add(record)
                if self.progress is not None:
                    self.progress.record(record)

    def annotated(self, record: Record) -> Record:
        """``record`` with the baseline's word on it (``Record.baseline``), if any."""
        baseline = self.baseline
        return record if baseline is None else baseline.apply(record)

    def declare(self, declaration: dict[str, Any],
                running: dict[str, Any] | None = None) -> None:
        """Write an adapter line, once per framework and version in this environment
        (``running``: the declaration with the APIs the worker runs, for the progress)."""
        key = (declaration["framework"], declaration["version"])
        with self.lock:
            if self.progress is not None:
                self.progress.adapter(running or declaration)
            if key not in self.declared:
                self.declared.add(key)
                self.writer.write_adapter(declaration)

    def log(self, line: str) -> None:
        with self.lock:
            self._log(line)

    def crash(self, framework: str, job: str, error: str, log: Path | None) -> None:
        """A job whose check raised: the suite's own failure, shown (the first few)."""
        with self.lock:
            shown = self._crashes[framework] = self._crashes.get(framework, 0) + 1
            if shown > self.CRASHES_SHOWN:
                return
            where = f"; traceback in {log}" if log is not None else ""
            more = (" (further ones only in the records and the logs)"
                    if shown == self.CRASHES_SHOWN else "")
            self._log(f"{framework}: job {job}: the suite's own code raised {error}{where}"
                      f"{more}")

    def new_log(self, name: str) -> Path | None:
        return None if self.logs is None else self.logs.new_path(name)

    def job_total(self, framework: str, total: int) -> None:
        """A framework's worker will run ``total`` jobs (more exact than its declaration:
        --impl changes its APIs, a resumed run skips jobs already complete)."""
        with self.lock:
            if self.progress is not None:
                self.progress.jobs(framework, total)

    def estimate(self, declaration: dict[str, Any]) -> None:
        """A framework's declaration known before its worker runs: its jobs' total."""
        with self.lock:
            if self.progress is not None:
                self.progress.adapter(declaration)

    def oracle_stats(self, stats: dict[str, int]) -> None:
        with self.lock:
            self.summary.oracle.update({k: int(v) for k, v in stats.items()})


@contextlib.contextmanager
def _exclusive(writer: ResultsWriter, path: Path) -> Iterator[None]:
    """Refuse to write a results file another run is writing (POSIX advisory lock)."""
    handle = writer._file
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{path}: another conformance run is writing this file; it was "
                             "left as it is (wait for that run, or write elsewhere)") from None
    yield


@contextlib.contextmanager
def _cache_setting(value: str | None) -> Iterator[None]:
    """Point this process and its workers at the cache ``value`` for the run."""
    if value is None:
        yield
        return
    before = os.environ.get(oracle_cache.CACHE_VARIABLE)
    os.environ[oracle_cache.CACHE_VARIABLE] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[oracle_cache.CACHE_VARIABLE]
        else:
            os.environ[oracle_cache.CACHE_VARIABLE] = before


# --- reading a previous run -----------------------------------------------------------------


@dataclass
class _Previous:
    environment: bool = False  # the file has this environment's line
    declared: set[tuple[str, str]] = field(default_factory=set)  # (framework, version)
    done: dict[str, set[str]] = field(default_factory=dict)  # framework -> complete job keys
    records: list[Record] = field(default_factory=list)  # this environment's, complete jobs

    def complete(self, framework: str, job: str) -> bool:
        return job in self.done.get(framework, ())


def _parse_lines(path: Path, data: bytes) -> Iterator[tuple[int, int, int, dict[str, Any]]]:
    """(line number, start offset, end offset, object) of each non-blank line of ``data``
    (the bytes of ``path``); a line that is not a results-file object raises ``ValueError``
    naming the file and line."""
    offset = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            obj = parse_line(raw)  # as every reader of results files does
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from None
        if obj is not None:
            yield number, start, min(offset, len(data)), obj


@dataclass
class _Batch:
    """One job's records as written together: consecutive result lines with one identity."""

    ident: tuple[Any, ...]  # (environment id, framework, job)
    announced: int  # job_records
    first: int  # line number of the first record
    start: int  # byte offset of the first record
    objects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.objects) == self.announced


def _batches(path: Path, data: bytes | None = None
             ) -> Iterator[tuple[int, dict[str, Any], _Batch | None]]:
    """Each line's number and object, with the batch of a result line (None for others and
    for records without a job key).  A batch ends at its announced count, at a line of
    another identity or at a line that is not a record: the runner writes a job's records in
    one go, so nothing else can come between them."""
    current: _Batch | None = None
    for number, start, _end, obj in _parse_lines(path, path.read_bytes() if data is None
                                                 else data):
        if obj["type"] != "result" or not obj.get("job"):
            current = None
            yield number, obj, None
            continue
        ident = (obj.get("environment_id"), obj.get("framework"), obj["job"])
        if current is None or current.ident != ident or current.complete:
            current = _Batch(ident, _announced(obj), number, start)
        current.objects.append(obj)
        yield number, obj, current


def _announced(obj: dict[str, Any]) -> int:
    value = obj.get("job_records")
    return value if isinstance(value, int) and value > 0 else 0


def repair_tail(path: Path, log: Callable[[str], None]) -> None:
    """Cut off what a killed run left half-written at the end of ``path``: a last line that
    does not parse, then a last job with fewer records than its ``job_records``.  A last line
    that parses is complete (another tool or machine may have written it without its
    newline): it is kept and given its newline.  A malformed line elsewhere raises
    ``ValueError`` before anything is cut."""
    data = path.read_bytes()
    keep, notes = _tail(path, data)
    _repair(path, data, keep, notes, log)


def _tail(path: Path, data: bytes) -> tuple[int, list[str]]:
    """How many bytes of ``data`` (the bytes of ``path``) ``repair_tail`` keeps, and what it
    says of the rest; computed without touching the file."""
    keep, notes = len(data), []
    if data and not data.endswith(b"\n"):
        start = data.rfind(b"\n") + 1
        if not _parses(data[start:]):
            keep = start
            notes.append(f"{path}:{_line_at(data, start)}: removed a torn last line "
                         f"({len(data) - start} bytes) left by a killed run")
    last: _Batch | None = None
    for _number, _obj, batch in _batches(path, data[:keep]):
        last = batch
    if last is not None and not last.complete:
        keep = last.start
        notes.append(f"{path}:{last.first}: removed {len(last.objects)} record(s) of job "
                     f"{last.ident[2]} ({last.ident[1]}), which a killed run left incomplete")
    if keep and not data[:keep].endswith(b"\n"):
        notes.append(f"{path}:{_line_at(data, keep)}: its last line is complete but lacked "
                     "its newline; added it")
    return keep, notes


def _line_at(data: bytes, offset: int) -> int:
    """The number of the line of ``data`` that holds (or ends at) byte ``offset``."""
    return data.count(b"\n", 0, offset) + 1


def _parses(line: bytes) -> bool:
    """Whether ``line`` is whole JSON: a prefix of a results line never is (an object ends
    at its last byte), so only a line that does not parse can be torn."""
    if not line.strip():
        return True
    try:
        json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError (cut inside a character)
        return False
    return True


def _repair(path: Path, data: bytes, keep: int, notes: list[str],
            log: Callable[[str], None]) -> None:
    """Apply what ``_tail`` found: cut ``path`` to ``keep`` bytes, end it with a newline."""
    if keep < len(data):
        with path.open("r+b") as handle:
            handle.truncate(keep)
    if keep and not data[:keep].endswith(b"\n"):
        with path.open("ab") as handle:
            handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    for note in notes:
        log(note)


def read_previous(path: Path, environment_id: str, data: bytes | None = None) -> _Previous:
    """What ``path`` (or ``data``, its bytes) already holds for ``environment_id``: its
    complete jobs (after ``repair_tail``, or without the tail it would cut).  Raises
    ``ValueError`` naming the file and line for what cannot be resumed: a malformed line, a
    record without a job key, an incomplete job mid-file."""
    previous = _Previous()
    batches: list[_Batch] = []
    for number, obj, batch in _batches(path, data):
        if obj.get("environment_id") != environment_id:
            continue
        if obj["type"] == "environment":
            previous.environment = True
        elif obj["type"] == "adapter":
            previous.declared.add((str(obj.get("framework")), str(obj.get("version"))))
        elif batch is None or batch.announced < 1:
            raise ValueError(f"{path}:{number}: a record without a job key (written by an "
                             "older conformance); this file cannot be resumed")
        elif not batches or batches[-1] is not batch:
            batches.append(batch)
    for batch in batches:
        if not batch.complete:
            raise ValueError(f"{path}:{batch.first}: job {batch.ident[2]} of {batch.ident[1]} "
                             f"has {len(batch.objects)} record(s) where it announces "
                             f"{batch.announced}; the file was edited or written by two runs "
                             "at once")
        framework, job = str(batch.ident[1]), str(batch.ident[2])
        for number, obj in enumerate(batch.objects, start=batch.first):
            try:
                previous.records.append(record_from_json(obj))
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: not a result record: {error}") from None
        previous.done.setdefault(framework, set()).add(job)
    return previous


# --- the oracle phase -----------------------------------------------------------------------


def _oracle_phase(cases: list[Case], options: RunOptions, parallel: int, sink: _Sink,
                  stop: threading.Event) -> dict[tuple[str, str], str]:
    """Fill the cache; returns the (case id, dtype) it could not, with the reason."""
    failures: dict[tuple[str, str], str] = {}
    store = oracle_cache.default_cache()
    if store is None:
        return failures
    needed = oracle_entries(cases, options.dtypes)
    missing = [(c, d) for c, d in needed if not store.contains(store.key(c, d))]
    with sink.lock:
        sink.summary.oracle["cached"] += len(needed) - len(missing)
    if not missing or not store.writable:
        return failures
    count = min(parallel, len(missing))
    workers = "1 worker" if count == 1 else f"{count} workers"
    sink.log(f"computing the {len(missing)} oracle results the cache lacks, with {workers} "
             f"(cache: {store.root})")
    if sink.progress is not None:
        sink.progress.oracle(len(missing))
    import mpmath

    if mpmath.libmp.BACKEND != "gmpy":
        sink.log("the oracle's mpmath runs on its pure-Python integers; installing gmpy2 "
                 "(pip install -c constraints.txt gmpy2, or the 'fast' extra) makes it several "
                 "times faster")
    with tempfile.TemporaryDirectory(prefix="conformance-oracle-") as attempts:
        _in_parallel(count, [functools.partial(_run_oracle_worker, options, sink, stop,
                                               failures, attempts)
                             for _ in range(count)], stop)
    return failures


def _run_oracle_worker(options: RunOptions, sink: _Sink, stop: threading.Event,
                       failures: dict[tuple[str, str], str], attempts: str) -> None:
    done: set[str] = set()

    def failed(job: str, reason: str) -> None:
        _, case_id, dtype = [*job.split("|"), "", ""][:3]
        with sink.lock:
            failures[(case_id, dtype)] = f"{reason} in the oracle phase"

    def on_done(job: str, records: list[Record]) -> None:
        done.add(job)
        if sink.progress is not None:
            sink.progress.oracle_done()
        for record in records:  # only a failed computation sends one
            sink.log(f"oracle: {job} {record.message}")
            failed(job, record.message.removeprefix("the check "))

    while not stop.is_set():
        with sink.lock:  # what a sibling failed on is not worth a second try either
            skip = done | {oracle_job_key(c, d) for c, d in failures}
        worker = _Worker(["--oracle", "--attempts", attempts], options, "", skip, {}, stop,
                         sink.new_log("oracle"))
        outcome = worker.run(sink, on_done)
        if stop.is_set() or (outcome.failed_job is None and not outcome.failure):
            return
        if outcome.failed_job is None and not outcome.progress:
            sink.log(f"oracle worker: {outcome.failure}; leaving the rest to the frameworks"
                     f"{worker.last_error()}")
            return
        if outcome.failed_job is not None:
            sink.log(f"oracle: {outcome.failed_job} {outcome.failure}; the jobs that need it "
                     f"are recorded as errors{worker.last_error()}")
            done.add(outcome.failed_job)
            failed(outcome.failed_job, outcome.failure)


# --- the framework phase --------------------------------------------------------------------


def _declare_waiting(options: RunOptions, parallel: int,
                     sink: _Sink) -> list[threading.Thread]:
    """Ask each framework that waits for a free worker slot (those after the first
    ``parallel``) for its declaration now, in a short process of its own, so that the
    progress display knows every framework's job total from the start.  Nothing is written:
    the framework's real worker declares it again.  Returns the threads to join."""
    if sink.progress is None:
        return []
    threads = []
    for framework in options.frameworks[parallel:]:
        thread = threading.Thread(target=_declare, args=(framework, options, sink),
                                  daemon=True, name=f"declare-{framework}")
        thread.start()
        threads.append(thread)
    return threads


def _declare(framework: str, options: RunOptions, sink: _Sink) -> None:
    # Its standard error is dropped: the framework's real worker prints the same on import,
    # into its log.
    command = [sys.executable, "-m", "conformance.run.worker", "--framework", framework,
               *_implementation_arguments(options, framework), "--declare",
               "--cases", *options.cases]
    command += ["--dtype", *options.dtypes] if options.dtypes else []
    command += ["--device", *options.devices] if options.devices else []
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=worker_environment(), timeout=STARTUP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return  # the framework's worker will tell
    for line in done.stdout.splitlines():
        try:
            event = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict) and event.get("event") == "adapter":
            sink.estimate(event["declaration"])
        elif isinstance(event, dict) and event.get("event") == "jobs":
            sink.job_total(framework, int(event["total"]))


def _run_framework(framework: str, cases: list[Case], options: RunOptions,
                   environment_id: str, sink: _Sink, stop: threading.Event,
                   oracle_failed: str | None = None) -> None:
    previous = sink.previous
    if previous.complete(framework, FRAMEWORK_JOB):
        sink.log(f"{framework}: could not run in the resumed run; not retried")
        return
    done = set(previous.done.get(framework, ()))
    start_count = len(done)
    by_id = {case.id: case for case in cases}

    def on_done(job: str, records: list[Record]) -> None:
        sink.batch(framework, job, records)
        done.add(job)

    stalled = False
    while not stop.is_set():
        mode = ["--framework", framework, *_implementation_arguments(options, framework)]
        if oracle_failed is not None:
            mode += ["--oracle-failed", oracle_failed]
        worker = _Worker(mode, options, environment_id, done, by_id, stop,
                         sink.new_log(framework))
        outcome = worker.run(sink, on_done)
        if stop.is_set():
            return
        if outcome.unavailable is not None:
            sink.log(f"{framework}: skipped, {outcome.unavailable}")
            for case in cases:
                job = _skip_job(case)
                if not previous.complete(framework, job):
                    sink.batch(framework, job, [_skip_record(case, framework,
                                                             outcome.unavailable,
                                                             environment_id)])
            return
        if outcome.failed_job is None and not outcome.failure:
            sink.log(f"{framework} {outcome.version}: {len(done) - start_count} jobs")
            return
        if outcome.failed_job is not None:
            sink.log(f"{framework}: job {outcome.failed_job} {outcome.failure}; "
                     f"restarting the worker{worker.last_error()}")
            on_done(outcome.failed_job, [worker.error_record(
                outcome.failed_job, outcome.kind, outcome.failure)])
            stalled = False
            continue
        # A failure outside any job: retry once unless the worker got nothing done.
        if outcome.progress or not stalled:
            stalled = not outcome.progress
            sink.log(f"{framework}: worker {outcome.failure} outside a job; restarting it"
                     f"{worker.last_error()}")
            continue
        sink.log(f"{framework}: worker {outcome.failure} twice outside a job; giving up"
                 f"{worker.last_error()}")
        on_done(FRAMEWORK_JOB, [worker.error_record(
            FRAMEWORK_JOB, outcome.kind, f"the worker could not run any job: {outcome.failure}")])
        return


def _implementation_arguments(options: RunOptions, framework: str) -> list[str]:
    """The worker's ``--implementations`` (and ``--only-apis``, the APIs mimicked, where the
    framework runs only for implementations)."""
    mine = [impl for impl in options.implementations if impl.framework == framework]
    if not mine:
        return []
    arguments = ["--implementations", json.dumps([impl.as_json() for impl in mine])]
    if framework not in options.frameworks:
        arguments += ["--only-apis", *dict.fromkeys(impl.like_id for impl in mine)]
    return arguments


def running_declaration(declaration: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    """``declaration`` with the APIs a worker of ``options`` runs (for counting its jobs):
    the framework's own (only those mimicked, where it runs only for implementations), then
    its implementations."""
    framework = declaration.get("framework")
    mine = [impl for impl in options.implementations if impl.framework == framework]
    if not mine:
        return declaration
    apis: list[dict[str, Any]] = list(declaration.get("apis", []))
    by_id = {api.get("id"): api for api in apis}
    if framework not in options.frameworks:
        apis = [api for api in apis if any(api.get("id") == i.like_id for i in mine)]
    added = [{**by_id.get(impl.like_id, {}), "id": impl.api_id, "name": impl.name,
              "kind": "implementation"} for impl in mine]
    return {**declaration, "apis": apis + added}


@dataclass
class _WorkerOutcome:
    version: str = ""
    unavailable: str | None = None
    failed_job: str | None = None
    failure: str = ""  # "crash: ..." or "timeout: ..."; empty when the worker finished
    kind: str = ""  # crash | timeout
    progress: bool = False  # completed at least one job
    finished: bool = False  # sent its last event


class _Worker:
    """One worker subprocess, read line by line with a time limit per job."""

    _live: ClassVar[set[_Worker]] = set()
    _live_lock = threading.Lock()

    def __init__(self, mode: list[str], options: RunOptions, environment_id: str,
                 skip: set[str], cases: dict[str, Case], stop: threading.Event,
                 log: Path | None = None) -> None:
        self.options = options
        self.log = log  # the worker's standard error (its framework's warnings and logs)
        self.timeout = options.oracle_timeout if mode[0] == "--oracle" else options.timeout
        self.environment_id = environment_id
        self.framework = mode[1] if mode[0] == "--framework" else "oracle"
        self.cases = cases
        self.declaration: dict[str, Any] = {}
        with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False) as handle:
            handle.write("\n".join(sorted(skip)))
            self.skip_path = handle.name
        command = [sys.executable, "-m", "conformance.run.worker", *mode,
                   "--cases", *options.cases, "--skip-file", self.skip_path,
                   "--environment-id", environment_id]
        if options.dtypes:
            command += ["--dtype", *options.dtypes]
        if options.devices:
            command += ["--device", *options.devices]
        if options.shard is not None:
            command += ["--shard", "{}/{}".format(*options.shard)]
        self.process = _start(command, log)
        with self._live_lock:
            self._live.add(self)
        if stop.is_set():  # stopped while this one started: kill_all may have missed it
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            if os.name == "posix":
                os.killpg(self.process.pid, signal.SIGKILL)  # the worker and its children
            else:  # pragma: no cover
                self.process.kill()
        except (ProcessLookupError, PermissionError):
            pass

    def error_record(self, job: str, kind: str, message: str) -> Record:
        """The one record of a job that did not complete: ``kind`` crash or timeout."""
        case_id, api_id, device_id, dtype = [*job.split("|"), "", "", ""][:4]
        case = self.cases.get(case_id)
        apis: list[dict[str, Any]] = self.declaration.get("apis", [])
        devices: list[dict[str, Any]] = self.declaration.get("devices", [])
        api = next((a for a in apis if a.get("id") == api_id), {})
        impl = next((i for i in self.options.implementations if i.api_id == api_id), None)
        if impl is not None:
            api = {"name": impl.name, "kind": "implementation"}
        device = next((d for d in devices if d.get("id") == device_id), {})
        return Record(
            case_id=case_id, op=case.op if case else "", group=case.group if case else "",
            framework=self.framework, framework_version=self.declaration.get("version", ""),
            api=api.get("name", api_id), api_kind=api.get("kind", "native"),
            device=device_id, device_name=device.get("name", ""), dtype=dtype,
            quantity="output", status="error", kind=kind, message=message,
            case_file=case.file if case else "", environment_id=self.environment_id,
            extra={"like": impl.like} if impl is not None else {},
        )

    @classmethod
    def kill_all(cls) -> None:
        with cls._live_lock:
            live = list(cls._live)
        for worker in live:
            worker.kill()

    def run(self, sink: _Sink, on_done: Callable[[str, list[Record]], None]) -> _WorkerOutcome:
        outcome = _WorkerOutcome()
        current: str | None = None
        buffered: list[Record] = []
        stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        selector = selectors.DefaultSelector()
        selector.register(stdout, selectors.EVENT_READ)
        limit = max(self.timeout, STARTUP_TIMEOUT)
        deadline = time.monotonic() + limit
        pending = b""
        try:
            while True:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    self.kill()
                    outcome.failed_job, outcome.kind = current, "timeout"
                    outcome.failure = (f"timeout: no result after {self.timeout:g} s"
                                       if current else f"timeout: silent for {limit:g} s")
                    return outcome
                chunk = os.read(stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    event = _parse_event(line, sink)
                    kind = event.get("event")
                    if kind == "adapter":
                        self.declaration = event["declaration"]
                        outcome.version = self.declaration["version"]
                        sink.declare({**self.declaration, "environment_id": self.environment_id},
                                     running_declaration(self.declaration, self.options))
                    elif kind == "unavailable":
                        outcome.unavailable = event["reason"]
                    elif kind == "start":
                        current, buffered = event["job"], []
                        deadline = time.monotonic() + self.timeout
                    elif kind == "record":
                        buffered.append(record_from_json(event["record"]))
                    elif kind in ("done", "failed"):
                        if kind == "failed" and self.framework != "oracle":  # it says so
                            sink.crash(self.framework, event["job"], str(event.get("error")),
                                       self.log)
                            buffered = [self.error_record(
                                event["job"], "crash", f"the check raised {event.get('error')}")]
                        on_done(event["job"], buffered)
                        outcome.progress = True
                        current, buffered = None, []
                        deadline = time.monotonic() + limit
                    elif kind == "jobs":
                        sink.job_total(self.framework, int(event["total"]))
                    elif kind == "finished":
                        outcome.finished = True
                        sink.oracle_stats(event.get("oracle", {}))
            code = self.process.wait()
            if outcome.finished and code != 0:
                sink.log(f"{self.framework}: worker exited with {_describe_exit(code)} after "
                         "its last job; its records are complete")
            elif current is not None or code != 0:
                outcome.failed_job, outcome.kind = current, "crash"
                outcome.failure = f"crash: worker exited with {_describe_exit(code)}"
            return outcome
        finally:
            selector.close()
            if self.process.poll() is None:  # leaving on an exception: take the worker along
                self.kill()
            self.process.wait()
            stdout.close()
            with self._live_lock:
                self._live.discard(self)
            os.unlink(self.skip_path)
            if sink.logs is not None and self.log is not None:
                sink.logs.finished(self.log)

    def last_error(self) -> str:
        """`` (its log: ...)``: where the worker's output is and the last Python error in
        it, for the message of a worker that crashed; empty without a log."""
        if self.log is None or not self.log.exists():  # an empty log is removed
            return ""
        error = last_error(self.log)
        return f" (last error: {error}; see {self.log})" if error else f" (see {self.log})"


def _start(command: list[str], log: Path | None) -> subprocess.Popen[bytes]:
    """A worker process, its standard error in ``log`` (appended) when given."""
    stderr = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child's
    try:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, bufsize=0,
                                env=worker_environment(),
                                start_new_session=os.name == "posix")
    finally:
        if stderr is not None:
            stderr.close()  # the child holds its own descriptor


# The frameworks' own compilation caches, kept beside the oracle's (when the user has not
# placed them): a warm run then skips XLA's and TorchInductor's compilations too.  The same
# compiled code gives the same results, so the records do not change.
FRAMEWORK_CACHES = {
    "JAX_COMPILATION_CACHE_DIR": "jax",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
}
FRAMEWORK_CACHE_SETTINGS = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def worker_environment() -> dict[str, str]:
    """The workers' environment: this process's, plus the frameworks' compilation caches
    under the oracle cache's directory (none when the cache is off)."""
    env = dict(os.environ)
    # An unwritable oracle cache would make every compilation cache under it fail to write.
    directory = oracle_cache.writable_directory()
    if directory is None:
        return env
    root = directory.resolve() / "frameworks"
    for variable, name in FRAMEWORK_CACHES.items():
        env.setdefault(variable, str(root / name))
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        for variable, value in FRAMEWORK_CACHE_SETTINGS.items():
            env.setdefault(variable, value)
    return env


def _parse_event(line: bytes, sink: _Sink) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        event = None
    if not isinstance(event, dict):
        sink.log(f"worker wrote a line outside the protocol, ignored: {line[:200]!r}")
        return {}
    return event


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _skip_job(case: Case) -> str:
    return f"{case.id}|*|*|*"


def _skip_record(case: Case, framework: str, reason: str, environment_id: str) -> Record:
    return Record(
        case_id=case.id, op=case.op, group=case.group, framework=framework,
        framework_version="", api="*", api_kind="native", device="*", device_name="",
        dtype="*", quantity="output", status="skip", message=reason, case_file=case.file,
        environment_id=environment_id,
    )

