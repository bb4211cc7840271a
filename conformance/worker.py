"""A worker process: every job of one framework, streamed to stdout as JSON lines.

``python -m conformance.worker --framework torch --cases cases/ [--dtype ...] [--device ...]
[--skip-file FILE]``

Running each framework in its own process keeps one that is missing, fails to import or
crashes from touching the others (``conformance.runner`` restarts a worker that dies).  The
protocol, one JSON object per line on stdout:

* ``{"event": "adapter", "declaration": {...}}`` once, first (``adapter_declaration``);
* ``{"event": "unavailable", "reason"}`` instead, when the framework cannot be imported;
* per job: ``{"event": "start", "job"}``, then one ``{"event": "record", "record"}`` per
  record, then ``{"event": "done", "job"}``.

A job is one case on one API, device and dtype; its key is ``case|api|device|dtype``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from conformance.adapters import AdapterUnavailable, load_adapter
from conformance.adapters.base import Adapter, Api, Device, adapter_declaration
from conformance.cases import Case, load_cases
from conformance.check import check_case
from conformance.results import jsonable


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


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(jsonable(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.worker")
    parser.add_argument("--framework", required=True)
    parser.add_argument("--cases", nargs="+", required=True)
    parser.add_argument("--dtype", nargs="*")
    parser.add_argument("--device", nargs="*")
    parser.add_argument("--skip-file", help="a file of job keys, one a line, not to run")
    parser.add_argument("--environment-id", default="")
    args = parser.parse_args(argv)
    try:
        adapter = load_adapter(args.framework)
    except AdapterUnavailable as error:
        _emit({"event": "unavailable", "reason": str(error)})
        return 0
    _emit({"event": "adapter", "declaration": adapter_declaration(adapter)})
    skip: set[str] = set()
    if args.skip_file:
        with open(args.skip_file, encoding="utf-8") as handle:
            skip = {line.strip() for line in handle if line.strip()}
    for job in jobs(adapter, load_cases(args.cases), args.dtype, args.device):
        if job.key in skip:
            continue
        _emit({"event": "start", "job": job.key})
        for record in check_case(job.case, adapter, job.api, job.device, job.dtype,
                                 args.environment_id):
            _emit({"event": "record", "record": asdict(record)})
        _emit({"event": "done", "job": job.key})
    return 0


if __name__ == "__main__":
    sys.exit(main())
