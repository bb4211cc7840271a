"""Do two results files hold the same records, line for line, apart from times and environment ids?

    python scripts/same_records.py A.jsonl B.jsonl
    python scripts/same_records.py --unordered ONE-RUN.jsonl MERGED-SHARDS.jsonl

Each file's lines are read as JSON and each framework's lines are compared in their order
(frameworks running at the same time interleave theirs in the file).  Dropped first, as they
say when and from where a run happened, not what it computed: the environment line's
``started``, ``command``, ``environment_id`` and ``settings.oracle_version`` (a hash of the
oracle's source files, paths included), every line's ``environment_id``, and in messages the
Python source locations a framework quotes from its traceback (``File "PATH", line N``: the
checkout's folder and the line of the suite's code that called it).  Prints the first
differences and exits 1 if any, else 0.

``--unordered`` compares each framework's records as sets (sorted), without the environment
lines: for shards of one run merged with ``conformance merge`` (one environment line per
shard, each shard's records together), against the run itself.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

VOLATILE = ("started", "command", "environment_id")
SOURCE_LOCATION = re.compile(r'File "[^"]*", line \d+')


def comparable_lines(path: Path) -> dict[str, list[dict]]:
    """Each framework's lines (environment lines under ``""``), without volatile fields."""
    by_framework: dict[str, list[dict]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        for key in VOLATILE:
            obj.pop(key, None)
        obj.get("settings", {}).pop("oracle_version", None)
        if isinstance(obj.get("message"), str):
            obj["message"] = SOURCE_LOCATION.sub('File "...", line ...', obj["message"])
        by_framework[obj.get("framework", obj.get("name", ""))].append(obj)
    return by_framework


def main(argv: list[str]) -> int:
    unordered = "--unordered" in argv
    argv = [a for a in argv if a != "--unordered"]
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a, b = (comparable_lines(Path(p)) for p in argv)
    if unordered:
        for side in (a, b):
            side.pop("", None)
            for lines in side.values():
                lines.sort(key=lambda obj: json.dumps(obj, sort_keys=True))
    differences = 0
    for framework in sorted(set(a) | set(b)):
        left, right = a.get(framework, []), b.get(framework, [])
        if len(left) != len(right):
            print(f"{framework or 'environment'}: {len(left)} lines against {len(right)}")
            differences += 1
        for n, (x, y) in enumerate(zip(left, right), 1):
            if x != y:
                differences += 1
                if differences <= 10:
                    keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
                    job = x.get("job", "")
                    print(f"{framework}: line {n} ({job}) differs in {', '.join(keys)}")
    total = sum(len(v) for v in a.values())
    print(f"{total} lines compared: {'the same' if not differences else f'{differences} differ'}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
