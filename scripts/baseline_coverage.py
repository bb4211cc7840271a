"""How well a baseline covers a results file: per framework, the fails and errors it covers
(xfail), the passes it matches (xpass) and the discrepancies it does not (new); then its
entries that matched nothing, and each new discrepancy, one line per record.

    python scripts/baseline_coverage.py results/results.jsonl --baseline baselines/pinned.yaml
    python scripts/baseline_coverage.py results/*.jsonl --baseline a.yaml b.yaml --framework mlx

It exits 1 when a discrepancy is new or an entry is stale (matched no record although its
framework and case ran), so it can guard a regenerated baseline before it is committed.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from conformance.cases.loading import CaseError
from conformance.judge.baseline import is_new_discrepancy, is_xpass, load_baseline
from conformance.results.jsonl import read_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--baseline", nargs="+", type=Path, required=True)
    parser.add_argument("--framework", nargs="+", default=None,
                        help="only these frameworks' records (default: all)")
    parser.add_argument("--max-lines", type=int, default=200,
                        help="new discrepancies listed at most (default: 200)")
    args = parser.parse_args(argv)
    try:
        baseline = load_baseline(args.baseline)
        records = read_results(args.results).records
    except (CaseError, OSError) as error:
        print(f"baseline_coverage: {error}", file=sys.stderr)
        return 2
    if args.framework:
        records = [r for r in records if r.framework in args.framework]
    applied = [baseline.apply(r) for r in records]
    counts: Counter[tuple[str, str]] = Counter()
    new = []
    for record in applied:
        if is_xpass(record):
            counts[record.framework, "xpass"] += 1
        elif is_new_discrepancy(record):
            counts[record.framework, "new"] += 1
            new.append(record)
        elif record.baseline is not None:
            counts[record.framework, "xfail"] += 1
    for framework in sorted({r.framework for r in applied}):
        print(f"{framework}: {counts[framework, 'xfail']} xfail, "
              f"{counts[framework, 'xpass']} xpass, {counts[framework, 'new']} new")
    stale = [e for e in baseline.stale() if not baseline.not_run(e)]
    for entry in stale:
        print(f"stale: {entry.where}: {entry.reason[:80]}")
    for record in new[:args.max_lines]:
        print(f"new: {record.framework} | {record.case_id} | {record.api} | {record.dtype} | "
              f"{record.quantity} | {record.status} {record.kind} | {record.message[:160]}")
    if len(new) > args.max_lines:
        print(f"... and {len(new) - args.max_lines} more new")
    xpass = any(outcome == "xpass" for _, outcome in counts)
    return 1 if new or stale or xpass else 0


if __name__ == "__main__":
    raise SystemExit(main())
