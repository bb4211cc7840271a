"""Where the worker processes' own output goes: one log file per worker process.

A framework prints warnings and logs of its own (TorchDynamo's ``W1201`` lines, TensorFlow's
and Keras' notices, absl, Python warnings): thousands in an audit.  They go to the worker's
standard error, which the runner points at a file per worker process, in a folder beside the
results file named after it: ``results/results.jsonl`` -> ``results/results.logs/``, with
``torch-worker-1.log``, ``torch-worker-2.log`` (a worker restarted after a crash),
``oracle-worker-1.log`` and so on.  The terminal gets one line per framework: how many
messages, and where.

Only files named ``NAME-worker-N.log`` in that folder are written or removed: a run that
starts a results file afresh (a new file, ``--overwrite``) removes those of the run before;
one that continues a file (``--append``, ``--resume``) keeps them and numbers on.  An empty
log is removed when its worker ends, and the folder when it is left empty.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

LOG_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)-worker-(?P<number>[0-9]+)\.log$")
_TAIL_BYTES = 1 << 16


def logs_directory(results: Path) -> Path:
    """``results/results.jsonl`` -> ``results/results.logs``."""
    return results.with_name(f"{results.stem}.logs")


class WorkerLogs:
    """The log files of one run's workers (see the module docstring); thread-safe."""

    def __init__(self, directory: Path, *, fresh: bool) -> None:
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"{directory}: the workers' log folder of this results file is "
                             "a file; move it, or write the results elsewhere")
        self.directory = directory
        self._numbers: Counter[str] = Counter()
        self._paths: dict[str, list[Path]] = {}
        self._lock = threading.Lock()
        for path in directory.iterdir() if directory.is_dir() else ():
            match = LOG_NAME.match(path.name)
            if match is None or not path.is_file():
                continue
            if fresh:
                path.unlink()
            else:
                name = match["name"]
                self._numbers[name] = max(self._numbers[name], int(match["number"]))

    def new_path(self, name: str) -> Path:
        """The log file of the next worker process of ``name`` (a framework, or oracle)."""
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._numbers[name] += 1
            path = self.directory / f"{name}-worker-{self._numbers[name]}.log"
            path.write_bytes(b"")  # now, under the lock: the folder is never left empty here
            self._paths.setdefault(name, []).append(path)
        return path

    def finished(self, path: Path) -> None:
        """A worker is over: an empty log is removed (nothing to look at), and the folder
        too once it holds nothing."""
        with self._lock:
            try:
                if path.stat().st_size == 0:
                    path.unlink()
                    self.directory.rmdir()  # only if empty
            except OSError:  # gone already, or the folder holds other logs
                pass

    def lines(self) -> list[str]:
        """One line per name whose workers wrote anything: the count of messages, where."""
        out = []
        with self._lock:
            paths = {name: [p for p in found if p.exists()] for name, found in self._paths.items()}
        for name, found in sorted(paths.items()):
            count = sum(count_messages(p) for p in found)
            if not found or not count:
                continue
            where = str(found[0]) if len(found) == 1 else \
                f"{self.directory / (name + '-worker-*.log')} ({len(found)} files)"
            out.append(f"{name}: {count} warning and log messages, in {where}")
        return out


def count_messages(path: Path) -> int:
    """Messages in a log: lines that start a message, not an indented continuation (a
    traceback's frames, the source line a Python warning quotes) nor an empty line."""
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip() and not line[:1].isspace():
                count += 1
    return count


def last_error(path: Path) -> str | None:
    """The final line of the last Python traceback in a log (``ImportError: ...``), if any:
    what a crashed worker of the suite's own code said."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    start = tail.rfind("Traceback (most recent call last):")
    if start < 0:
        return None
    for line in tail[start:].splitlines()[1:]:
        if line.strip() and not line[:1].isspace():
            return line.strip()[:300]
    return None
