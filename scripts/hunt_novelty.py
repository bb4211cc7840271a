#!/usr/bin/env python
"""Which of ``conformance hunt``'s findings the case library already shows.

A finding (a case file of ``found/``) is *covered* when some case of the library has a
``fail`` or ``error`` record, in a results file of the library (``conformance run``'s output),
with the same signature (``conformance.hunt.hunter``: API, kind, quantity, op, options, special
values, empty batch) on the same framework.  Prints one line per finding.

    python scripts/hunt_novelty.py found/ --results full.jsonl --cases cases --framework torch
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.adapters import load_adapter  # noqa: E402
from conformance.cases.loading import Case, load_cases, load_file  # noqa: E402
from conformance.hunt.hunter import DISCREPANCIES, _run, _shape, _specials  # noqa: E402


def case_signature(api: str, kind: str, quantity: str, case: Case) -> tuple[str, ...]:
    raw = case.raw.get("input")
    empty = "empty" if 0 in _shape(raw) else ""
    return (api, kind, quantity, case.op, ",".join(case.options()),
            ",".join(sorted(_specials(raw))), empty)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("found", type=Path)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--cases", nargs="+", default=["cases"])
    parser.add_argument("--framework", required=True)
    args = parser.parse_args()
    cases = {case.id: case for case in load_cases(args.cases)}
    known = set()
    for line in args.results.read_text().splitlines():
        record = json.loads(line)
        if (record.get("framework") != args.framework
                or record.get("status") not in DISCREPANCIES or record.get("case_id") not in cases):
            continue
        known.add(case_signature(record["api"], record.get("kind") or record["status"],
                                 record["quantity"], cases[record["case_id"]]))
    adapter = load_adapter(args.framework)
    apis = {api.name: api for api in adapter.apis()}
    device = adapter.devices()[0]
    for path in sorted(args.found.glob(f"found-{args.framework}-*.yaml")):
        (case,) = load_file(path)
        shown = set()
        for api in apis.values():
            if api.op != case.op:
                continue
            for record in _run(adapter, api, device, case, case.dtypes[0]):
                shown.add(case_signature(api.name, record.kind or record.status,
                                         record.quantity, case))
        covered = shown & known
        print(f"{path.name}: {'covered by the library' if covered == shown else 'NEW'} "
              f"({len(shown - known)} of {len(shown)} signatures new)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
