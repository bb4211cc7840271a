#!/usr/bin/env python
"""The vectorised oracle path against the MPFR path, on every case of a library and dtype.

For each case (``expect: value``) and each of its dtypes, the oracle's result with its
vectorised path (``reference/vectorised.py``) is compared with the MPFR/mpmath path's: the
float64 nearest to every value, its rounding to the dtype (midpoints redone from the exact
values), the error bounds (``output_bound``, ``grad_bound``) and the certified flag must be
identical.  The MPFR path's results are computed here with the vectorised path switched off,
or read from an oracle cache written by a checkout whose oracle has only that path
(``--mpfr-cache DIR --mpfr-version V``: e.g. main's cache, whose version
``conformance.oracle.cache.source_version`` gives for that checkout).  Prints a Markdown
summary; exit 1 on any difference.

    python scripts/compare_oracle_paths.py cases --mpfr-cache /tmp/cache --mpfr-version 2ff6...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.cases.loading import load_cases  # noqa: E402
from conformance.cases.problem import make_problem  # noqa: E402
from conformance.oracle.cache import OracleCache  # noqa: E402
from reference import vectorised  # noqa: E402
from reference.formats import (  # noqa: E402
    get_format,
    nearest_float64,
    round_float64_array,
    round_to_format,
)


def rounded(values: object, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    nearest = nearest_float64(values).reshape(-1)
    fmt = get_format(dtype)
    in_dtype, midpoints = round_float64_array(nearest, fmt)
    if midpoints.any():
        exact = np.asarray(values, dtype=object).reshape(-1)
        for i in np.flatnonzero(midpoints):
            in_dtype[i] = float(round_to_format(exact[i], fmt))
    return nearest, in_dtype


def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--mpfr-cache", type=Path)
    parser.add_argument("--mpfr-version")
    args = parser.parse_args()
    store = (OracleCache(args.mpfr_cache, args.mpfr_version) if args.mpfr_cache else None)
    taken = [0]
    original = vectorised.evaluate

    def spy(*a: object, **k: object) -> object:
        result = original(*a, **k)  # type: ignore[arg-type]
        taken[0] += result is not None
        return result

    vectorised.evaluate = spy  # type: ignore[assignment]
    counts = {"compared": 0, "vectorised": 0, "differ": 0, "from cache": 0}
    seconds = {"vectorised": 0.0, "mpfr": 0.0}
    differences: list[str] = []
    for case in load_cases(args.paths):
        if case.expect != "value":
            continue
        for dtype in case.dtypes:
            problem = make_problem(case, dtype)
            before = taken[0]
            start = time.perf_counter()
            fast = problem.reference()
            seconds["vectorised"] += time.perf_counter() - start
            took = taken[0] > before
            slow = store.load(store.key(case, dtype)) if store is not None else None
            if slow is None:
                vectorised.ENABLED = False
                start = time.perf_counter()
                slow = problem.reference()
                seconds["mpfr"] += time.perf_counter() - start
                vectorised.ENABLED = True
            else:
                counts["from cache"] += 1
            counts["compared"] += 1
            counts["vectorised"] += took
            problems = []
            for name in ("output", "grad"):
                a, b = getattr(fast, name), getattr(slow, name)
                if (a is None) != (b is None):
                    problems.append(f"{name} present on one path only")
                elif a is not None and not all(
                        same(x, y) for x, y in zip(rounded(a, dtype), rounded(b, dtype))):
                    problems.append(f"{name} rounds differently")
            for name in ("output_bound", "grad_bound"):
                if not same(getattr(fast, name), getattr(slow, name)):
                    problems.append(f"{name} differs")
            if fast.certified != slow.certified:
                problems.append(f"certified {fast.certified} / {slow.certified}")
            if problems:
                counts["differ"] += 1
                differences.append(f"{case.id} {dtype}: {'; '.join(problems)}")
    print(f"- case x dtype results compared: {counts['compared']} "
          f"({counts['from cache']} MPFR results read from the cache)")
    print(f"- taken by the vectorised path (all elements decided): {counts['vectorised']}; "
          f"the others fell back to the MPFR path")
    print(f"- results that differ: {counts['differ']}")
    print(f"- oracle time with the vectorised path: {seconds['vectorised']:.1f} s; "
          f"MPFR path computed here: {seconds['mpfr']:.1f} s")
    for line in differences:
        print(f"  - {line}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
