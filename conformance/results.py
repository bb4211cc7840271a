"""Result records and the JSON Lines results file, the only meeting point of running and reporting.

A results file holds one JSON object per line, of three types:

* ``{"type": "environment", ...}``: where a run happened (``environment_id`` ties the other
  lines to it);
* ``{"type": "adapter", ...}``: what one framework declared in that environment: its version,
  devices, dtypes and APIs with the options each supports (``adapter_declaration``), so the
  support matrix can be rebuilt from the file alone;
* ``{"type": "result", ...}``: one ``Record``, one comparison of one quantity of one case on
  one framework API, device and dtype.  Non-finite floats are written as the strings ``"inf"``,
``"-inf"`` and ``"nan"`` so every line is strict JSON.

Writing appends and flushes record by record, so a run that is killed keeps every record it
completed; reading skips a final line cut short by such a kill.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

LINE_TYPES = ("environment", "adapter", "result")
STATUSES = ("pass", "fail", "error", "unsupported", "skip")
QUANTITIES = ("output", "grad", "documented", "documented_grad")
MAX_VALUES_KEPT = 256  # larger arrays are summarized by their worst element


@dataclass(frozen=True)
class Record:
    """One verdict.  ``reference`` and ``actual`` hold the values (as nested lists, rounded to
    float64) when they have at most ``MAX_VALUES_KEPT`` elements, else ``None``."""

    case_id: str
    op: str
    group: str
    framework: str
    framework_version: str
    api: str
    api_kind: str  # native | composed | reference
    device: str
    device_name: str
    dtype: str
    quantity: str  # output | grad | documented | documented_grad
    status: str  # pass | fail | error | unsupported | skip
    kind: str | None = None  # numeric | special-value | behaviour | semantic, for non-pass
    reference: Any = None
    actual: Any = None
    shape: list[int] | None = None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    max_ulp_error: float | None = None
    # The verdict's yardstick (conformance/compare.py): the largest error / (K * bound) over
    # the elements (at most 1 for a pass), and the tolerance used: {k, scale, source, reason}.
    bound_use: float | None = None
    tolerance: dict[str, Any] | None = None
    worst_index: list[int] | None = None
    message: str = ""
    case_file: str = ""
    oracle_precision: int | None = None
    environment_id: str = ""
    # The job (one case on one API, device and dtype of one framework) that wrote the record,
    # ``case|api-id|device|dtype`` (``conformance.worker.job_key``), and how many records it
    # wrote: ``conformance run --resume`` counts them to know which jobs are complete.
    job: str = ""
    job_records: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, ...]:
        """What identifies a comparison across runs (the environment included)."""
        return (self.environment_id, self.case_id, self.framework, self.api, self.device,
                self.dtype, self.quantity)


def values_for_record(values: Any) -> Any:
    """Nested float64 lists of ``values`` (mpf or floats) if small enough to keep, else None."""
    import numpy as np

    array = np.asarray(values, dtype=object)
    if array.size > MAX_VALUES_KEPT:
        return None
    return np.vectorize(lambda v: float(v), otypes=[float])(array).tolist() if array.size else []


def environment(settings: dict[str, Any] | None = None,
                case_digests: dict[str, str] | None = None) -> dict[str, Any]:
    """Where this process runs: Python, OS, CPU, host, the command line and the time; with
    ``settings`` (the run's, flat: ``conformance.runner.run_settings``) and ``case_digests``
    (case id -> sha256) when given, which a later ``--resume`` or ``--append`` checks.
    ``environment_id`` hashes the machine and Python only, so a resumed run finds it."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "host": platform.node(),
        "command": " ".join([_program_name(), *sys.argv[1:]]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    stable = {k: info[k] for k in ("python", "os", "machine", "cpu", "host")}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()
    info["environment_id"] = digest[:12]
    if settings is not None:
        info["settings"] = settings
    if case_digests is not None:
        info["case_digests"] = case_digests
    return info


def _program_name() -> str:
    """``conformance`` also when run as ``python -m conformance`` (argv[0] is __main__.py)."""
    name = Path(sys.argv[0]).name
    return "conformance" if name in ("__main__.py", "conformance") else name


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- JSON Lines -------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class ResultsWriter:
    """Appends lines to a results file, flushing and syncing each one."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def write_environment(self, info: dict[str, Any]) -> None:
        self._write({"type": "environment", **info})

    def write_adapter(self, declaration: dict[str, Any]) -> None:
        self._write({"type": "adapter", **declaration})

    def truncate(self) -> None:
        """Empty the file (``--overwrite``), keeping its inode and so its lock."""
        self._file.truncate(0)
        self._file.flush()
        os.fsync(self._file.fileno())

    def write(self, record: Record) -> None:
        self._write({"type": "result", **asdict(record)})

    def write_many(self, records: Iterable[Record]) -> None:
        """Write ``records`` (one job's) together: one flush and sync for the lot."""
        text = "".join(json.dumps(jsonable({"type": "result", **asdict(r)}), allow_nan=False)
                       + "\n" for r in records)
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _write(self, obj: dict[str, Any]) -> None:
        self._file.write(json.dumps(jsonable(obj), allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_RECORD_FIELDS = {f.name for f in fields(Record)}
_FLOAT_FIELDS = ("max_abs_error", "max_rel_error", "max_ulp_error", "bound_use")


def record_from_json(obj: dict[str, Any]) -> Record:
    """Rebuild a ``Record`` from a result line (unknown keys go to ``extra``)."""
    known = {k: v for k, v in obj.items() if k in _RECORD_FIELDS and k != "type"}
    extra = {k: v for k, v in obj.items() if k not in _RECORD_FIELDS and k != "type"}
    for name in _FLOAT_FIELDS:
        if isinstance(known.get(name), str):
            known[name] = float(known[name])
    known.setdefault("extra", {}).update(extra)
    return Record(**known)


@dataclass
class ResultsFile:
    environments: list[dict[str, Any]]
    adapters: list[dict[str, Any]]
    records: list[Record]


def read_lines(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Parsed lines of a results file with their line numbers; a torn last line is skipped,
    any other malformed line raises ``ValueError`` naming file and line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                continue  # the run was killed while writing its last line
            raise ValueError(f"{path}:{number}: not a JSON object: {error}") from None
        if not isinstance(obj, dict) or obj.get("type") not in LINE_TYPES:
            raise ValueError(f"{path}:{number}: expected a line with type "
                             f"{', '.join(LINE_TYPES)}")
        yield number, obj


def read_results(paths: Iterable[Path | str]) -> ResultsFile:
    environments: list[dict[str, Any]] = []
    adapters: list[dict[str, Any]] = []
    records: list[Record] = []
    for path in paths:
        for number, obj in read_lines(path):
            if obj["type"] == "environment":
                environments.append(obj)
                continue
            if obj["type"] == "adapter":
                adapters.append(obj)
                continue
            try:
                records.append(record_from_json(obj))
            except TypeError as error:
                raise ValueError(f"{path}:{number}: not a result record: {error}") from None
    return ResultsFile(environments, adapters, records)
