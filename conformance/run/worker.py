"""A worker process: every job of one framework, streamed to the runner as JSON lines.

``python -m conformance.run.worker --framework torch --cases cases/ [--dtype ...] [--device ...]
[--skip-file FILE]`` runs a framework's jobs; ``python -m conformance.run.worker --oracle --cases
cases/ [--dtype ...]`` instead fills the oracle cache (``conformance.oracle.cache``) for the
cases, in parallel with its siblings.

Running each framework in its own process keeps one that is missing, fails to import,
crashes or hangs from touching the others (``conformance.run.runner`` restarts a worker that
dies).  The framework is imported once per worker.  The protocol, one JSON object per line
on the worker's *original* standard output (file descriptor 1 is pointed at stderr before
any framework is imported, so whatever a framework prints cannot corrupt the protocol):

* ``{"event": "adapter", "declaration": {...}}`` once, first (``adapter_declaration``; with
  ``--declare``, only that and the next, for the progress display's totals);
* ``{"event": "jobs", "total"}``: how many jobs it will run;
* ``{"event": "unavailable", "reason"}`` instead, when the framework cannot be imported;
* per job: ``{"event": "start", "job"}``, then one ``{"event": "record", "record"}`` per
  record, then ``{"event": "done", "job"}``; or, when the suite's own code raised (a bug, not
  the framework's verdict), ``{"event": "failed", "job", "error"}`` instead of ``done``;
* ``{"event": "finished", "oracle": {"hits", "computed", "bad"}}`` last: what the oracle
  cache did in this process.

A job is one case on one API, device and dtype; its key is ``case|api|device|dtype``.  An
oracle job is one case in one dtype, keyed ``oracle|case|dtype``; oracle workers take the
largest cases first and skip entries that are cached or being computed by a sibling.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import re
import sys
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import IO, Any

from conformance.adapters import AdapterUnavailable, load_adapter
from conformance.adapters.base import Adapter, Api, Device, adapter_declaration
from conformance.adapters.implementation import Implementation, WithImplementations, like_of
from conformance.cases.loading import Case, load_cases
from conformance.judge.check import check_case, problem_for
from conformance.oracle import cache as oracle_cache
from conformance.results.records import Record, jsonable
from conformance.run.shards import case_size, parse_shard, shard_cases


@dataclass(frozen=True)
class Job:
    case: Case
    api: Api
    device: Device
    dtype: str

    @property
    def key(self) -> str:
        return job_key(self.case.id, self.api.id, self.device.id, self.dtype)


def job_key(case_id: str, api_id: str, device_id: str, dtype: str) -> str:
    return f"{case_id}|{api_id}|{device_id}|{dtype}"


def oracle_job_key(case_id: str, dtype: str) -> str:
    return f"oracle|{case_id}|{dtype}"


def device_matches(device: Device, wanted: list[str] | None) -> bool:
    """``wanted`` holds device ids (``cuda:0``) or kinds (``cpu``, ``gpu``); None means all."""
    return not wanted or device.id in wanted or device.kind in wanted


def jobs(adapter: Adapter, cases: list[Case], dtypes: list[str] | None,
         devices: list[str] | None) -> Iterator[Job]:
    """Every case x API x device x dtype this adapter should run, in a stable order."""
    for case in cases:
        for api in adapter.apis_for(case.op):
            for device in adapter.devices():
                if not device_matches(device, devices):
                    continue
                for dtype in case.dtypes:
                    if dtypes is None or dtype in dtypes:
                        yield Job(case, api, device, dtype)


def oracle_entries(cases: list[Case], dtypes: list[str] | None) -> list[tuple[Case, str]]:
    """The (case, dtype) pairs whose oracle results a run may need, largest cases first
    (ties in case order): each case's dtypes (those selected) and float64 for the checks of
    documented values.  Cases that expect an error need none."""
    entries = []
    for position, case in enumerate(cases):
        if case.expect != "value":
            continue
        wanted = [d for d in case.dtypes if dtypes is None or d in dtypes]
        if (case.documented is not None or case.documented_grad is not None) \
                and "float64" not in wanted:
            wanted.append("float64")
        entries += [(-case_size(case), position, d, case) for d in wanted]
    return [(case, dtype) for _, _, dtype, case in sorted(entries, key=lambda e: e[:3])]


class _Channel:
    """The protocol stream: the process's original stdout, with fd 1 moved to stderr."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self.stream: IO[str] = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)  # prints, Python's or C's, now land on stderr

    def emit(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(jsonable(obj), allow_nan=False) + "\n")
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.run.worker")
    parser.add_argument("--framework")
    parser.add_argument("--oracle", action="store_true",
                        help="fill the oracle cache instead of running a framework")
    parser.add_argument("--cases", nargs="+", required=True)
    parser.add_argument("--dtype", nargs="*")
    parser.add_argument("--device", nargs="*")
    parser.add_argument("--skip-file", help="a file of job keys, one a line, not to run")
    parser.add_argument("--attempts", metavar="DIR",
                        help="(--oracle) where this run's oracle workers mark the results "
                             "they start, so that one that died is not tried again")
    parser.add_argument("--oracle-failed", metavar="FILE",
                        help="JSON lines {case, dtype, reason}: oracle results that the "
                             "oracle phase could not compute; jobs needing them are errors")
    parser.add_argument("--environment-id", default="")
    parser.add_argument("--shard", help="K/N: only that shard's cases (conformance.run.shards)")
    parser.add_argument("--declare", action="store_true",
                        help="(--framework) send the adapter's declaration, run nothing")
    parser.add_argument("--implementations", metavar="JSON",
                        help="a JSON list of implementations (Implementation.as_json) to run "
                             "beside the framework's APIs")
    parser.add_argument("--only-apis", nargs="*", metavar="ID",
                        help="run only these of the framework's own APIs (and the "
                             "implementations)")
    args = parser.parse_args(argv)
    if not args.oracle and not args.framework:
        parser.error("--framework or --oracle is required")
    channel = _Channel()
    faulthandler.enable()  # a crash's Python stack goes to the worker's log (its stderr)
    skip: set[str] = set()
    if args.skip_file:
        with open(args.skip_file, encoding="utf-8") as handle:
            skip = {line.strip() for line in handle if line.strip()}
    if args.oracle:
        _fill_oracle_cache(channel, _cases(args), args.dtype, skip, args.attempts)
    else:
        _run_framework(channel, args, skip)
    stats = oracle_cache.STATS
    channel.emit({"event": "finished",
                  "oracle": {"hits": stats.hits, "computed": stats.computed, "bad": stats.bad}})
    return 0


def _cases(args: argparse.Namespace) -> list[Case]:
    """The cases of the run, of its shard only when it has one."""
    cases = load_cases(args.cases)
    return shard_cases(cases, parse_shard(args.shard)) if args.shard else cases


def _run_framework(channel: _Channel, args: argparse.Namespace, skip: set[str]) -> None:
    try:
        adapter = load_adapter(args.framework)
    except AdapterUnavailable as error:
        channel.emit({"event": "unavailable", "reason": str(error)})
        return
    channel.emit({"event": "adapter", "declaration": adapter_declaration(adapter)})
    if args.implementations or args.only_apis is not None:
        chosen = [Implementation(**entry) for entry in json.loads(args.implementations or "[]")]
        adapter = WithImplementations(adapter, chosen, args.only_apis)
    cases = _cases(args)
    total = sum(1 for job in jobs(adapter, cases, args.dtype, args.device) if job.key not in skip)
    channel.emit({"event": "jobs", "total": total})
    if args.declare:
        return
    if args.oracle_failed:
        _mark_oracle_failures(cases, args.oracle_failed)
    for job in jobs(adapter, cases, args.dtype, args.device):
        if job.key in skip:
            continue
        channel.emit({"event": "start", "job": job.key})
        try:
            records = check_case(job.case, adapter, job.api, job.device, job.dtype,
                                 args.environment_id)
        except oracle_cache.OracleUnavailable as error:
            records = [_no_oracle_record(job, adapter, str(error), args.environment_id)]
        except Exception as error:  # the suite's own failure, not the framework's verdict
            traceback.print_exc()
            channel.emit({"event": "failed", "job": job.key,
                          "error": _ADDRESS.sub("0x...", f"{type(error).__name__}: {error}")})
            continue
        for record in records:
            channel.emit({"event": "record", "record": asdict(stable(record))})
        channel.emit({"event": "done", "job": job.key})


# A memory address in a framework's message ("<function f at 0x7f92f9d213a0>") differs from
# run to run; it is masked so that two runs of an audit write the same records.
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,16}\b")


def stable(record: Record) -> Record:
    """``record`` without what would differ between two identical runs (see ``_ADDRESS``)."""
    if "0x" not in record.message:
        return record
    return replace(record, message=_ADDRESS.sub("0x...", record.message))


def _mark_oracle_failures(cases: list[Case], path: str) -> None:
    by_id = {case.id: case for case in cases}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                failure = json.loads(line)
                case = by_id.get(failure["case"])
                if case is not None:
                    oracle_cache.mark_unavailable(case, failure["dtype"], failure["reason"])


def _no_oracle_record(job: Job, adapter: Adapter, reason: str, environment_id: str) -> Record:
    """A job whose framework ran but whose oracle result the oracle phase could not give."""
    case = job.case
    return Record(
        case_id=case.id, op=case.op, group=case.group, framework=adapter.name,
        framework_version=adapter.version(), api=job.api.name, api_kind=job.api.kind,
        device=job.device.id, device_name=job.device.name, dtype=job.dtype,
        quantity="output", status="error",
        kind="timeout" if reason.startswith("timeout") else "crash",
        message=f"no oracle result to compare with ({reason})",
        case_file=case.file, environment_id=environment_id,
        extra={"like": like_of(job.api)} if like_of(job.api) else {},
    )


def _fill_oracle_cache(channel: _Channel, cases: list[Case], dtypes: list[str] | None,
                       skip: set[str], attempts: str | None) -> None:
    store = oracle_cache.default_cache()
    if store is None:
        return
    for case, dtype in oracle_entries(cases, dtypes):
        key = oracle_job_key(case.id, dtype)
        if key in skip:
            continue
        entry = store.key(case, dtype)
        if store.contains(entry):
            continue
        with store.claim(entry) as mine:
            if not mine:  # cached meanwhile, or a sibling is computing it
                continue
            attempt = None if attempts is None else os.path.join(attempts, entry)
            if attempt is not None and os.path.exists(attempt):
                continue  # a sibling started it and died (killed at the time limit, crashed)
            if attempt is not None:
                open(attempt, "w").close()
            channel.emit({"event": "start", "job": key})
            try:
                result = problem_for(case, dtype).reference()
                oracle_cache.STATS.computed += 1
                store.store(entry, result)
            except Exception as error:
                traceback.print_exc()
                channel.emit({"event": "failed", "job": key,
                              "error": _ADDRESS.sub("0x...", f"{type(error).__name__}: {error}")})
                continue
            if attempt is not None:
                os.unlink(attempt)
            channel.emit({"event": "done", "job": key})


PROFILE_VARIABLE = "CONFORMANCE_PROFILE"


def _profiled_main() -> int:
    """``main`` under cProfile when ``$CONFORMANCE_PROFILE`` names a directory: each worker
    writes ``DIR/worker-NAME-PID.prof`` there (for ``benchmarks/``; ``pstats`` reads it)."""
    directory = os.environ.get(PROFILE_VARIABLE)
    if not directory:
        return main()
    import cProfile

    name = "oracle" if "--oracle" in sys.argv else (
        sys.argv[sys.argv.index("--framework") + 1] if "--framework" in sys.argv else "worker")
    profile = cProfile.Profile()
    try:
        return profile.runcall(main)
    finally:
        os.makedirs(directory, exist_ok=True)
        profile.dump_stats(os.path.join(directory, f"worker-{name}-{os.getpid()}.prof"))


if __name__ == "__main__":
    sys.exit(_profiled_main())
