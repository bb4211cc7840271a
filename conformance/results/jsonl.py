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
completed; reading skips a final line cut short by such a kill, and checks every other line
against the closed schema ``schema.json`` beside this module (``read_lines``): a forged or
mistyped field is an error naming the file, the line and the field, before anything uses the line.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

from conformance.files import open_regular
from conformance.results.line_schema import Check, Failure, compile_def
from conformance.results.records import (
    LINE_TYPES,
    RESULTS_SCHEMA_VERSION,
    Record,
    jsonable,
    record_from_json,
)


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


@dataclass
class ResultsFile:
    environments: list[dict[str, Any]]
    adapters: list[dict[str, Any]]
    records: list[Record]


SCHEMA_PATH = Path(__file__).with_name("schema.json")


# Containers (objects and lists) one line may nest: a record's values have at most the 32
# dimensions a case may have, inside the line's own object.  Checked (without recursion)
# before the schema or the report recurses into a line.
MAX_NESTING = 40


_NO_FLOAT = 2**1024  # an integer this large has no float64: the report could not plot it


_NOUNS = {"environment": "not an environment line", "adapter": "not an adapter line",
          "result": "not a result record"}


@cache
def results_schema() -> dict[str, Any]:
    """The closed JSON Schema of a results file's lines (``conformance/results/schema.json``)."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@cache
def _checker(line_type: str) -> Check:
    """The compiled check of one line type's schema (its ``$defs`` entry)."""
    return compile_def(results_schema()["$defs"], line_type)


def read_lines(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Checked lines of a results file with their line numbers.

    Only a regular file is read (a FIFO or device would block or never end).  A last line
    without its newline that does not parse is a line torn by a killed run, and skipped; any
    other line that is not strict JSON, nests deeper than ``MAX_NESTING``, or is not valid
    against ``schema.json`` raises ``ValueError`` naming the file, the line and the
    field (``results.jsonl:3: not a result record: worst_index[0]: expected ...``).  The
    first such line stops the reading: a report or merge is never silently short of one."""
    path = Path(path)
    with open_regular(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                obj = parse_line(raw)
            except _Unparsable as error:
                if not raw.endswith(b"\n"):
                    continue  # the run was killed while writing its last line
                raise ValueError(f"{path}:{number}: {error}") from None
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
            if obj is not None:
                yield number, obj


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """One line of a results file, parsed (strict JSON, nesting bounded) and checked against
    the schema; None for a blank line.  Raises ``ValueError`` saying why, without the file and
    line, which the caller adds (``read_lines``, and ``--resume`` reading the file it
    continues)."""
    obj = _parse(raw)
    if obj is _BLANK:
        return None
    problem = check_line(obj)
    if problem is not None:
        raise ValueError(problem)
    result: dict[str, Any] = obj
    return result


def check_line(obj: Any) -> str | None:
    """Why ``obj`` (a parsed line) is not a valid results line, naming the field; None if it
    is.  Nesting and integer sizes are checked first, iteratively, so nothing recurses into a
    forged 100,000-deep array."""
    if not isinstance(obj, dict) or obj.get("type") not in LINE_TYPES:
        got = obj.get("type") if isinstance(obj, dict) else obj
        shown = "a list" if isinstance(got, list) else "an object" if isinstance(
            got, dict) else _short(got)  # not dumped: it may nest deeper than json allows
        return f"type: expected a line with type {', '.join(LINE_TYPES)}, got {shown}"
    problem = _shape_problem(obj)
    if problem is None:
        failure = _checker(obj["type"])(obj)
        problem = None if failure is None else _explain(failure)
    if problem is None and obj["type"] == "environment":
        problem = _newer_version(obj.get("schema_version", 1))
    return None if problem is None else f"{_NOUNS[obj['type']]}: {problem}"


def _newer_version(version: Any) -> str | None:
    """A file written by a newer suite may hold fields this one would misread: refused."""
    if isinstance(version, (int, float)) and version > RESULTS_SCHEMA_VERSION:
        return (f"schema_version: the file was written with results schema version "
                f"{int(version)}; this version of the suite reads versions 1 to "
                f"{RESULTS_SCHEMA_VERSION} (upgrade crossentropy-conformance)")
    return None


class _Unparsable(ValueError):
    """A line that is not strict JSON (its message says why, without quoting the line)."""


_BLANK: Any = object()


def _parse(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Unparsable(f"not UTF-8 text (byte {error.start + 1} of the line)") from None
    if not text.strip():
        return _BLANK
    try:
        return json.loads(text, parse_constant=_constant)
    except json.JSONDecodeError as error:
        raise _Unparsable(f"not a JSON object: {error}") from None
    except RecursionError:
        raise _Unparsable(f"not a JSON object: nested too deeply to parse (a results line "
                          f"nests at most {MAX_NESTING} levels)") from None
    except ValueError as error:  # NaN, or an integer of more digits than Python converts
        reason = str(error).split(";")[0]  # not the advice to raise Python's limit
        raise _Unparsable(f"not strict JSON: {reason}") from None


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (results files write non-finite numbers as the "
                     "strings \"nan\", \"inf\", \"-inf\")")


def _shape_problem(line: dict[str, Any]) -> str | None:
    """The first container nested past ``MAX_NESTING``, or integer with no float64, in
    ``line``; walked with a stack of containers (lists of plain numbers and strings, the
    values of most lines, are passed over whole), and the field's path is rebuilt only when
    there is a problem."""
    stack: list[tuple[Any, int]] = [(line, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            return f"{_dotted(_path_to(line, value))}: nested more than {MAX_NESTING} levels"
        children = value.values() if isinstance(value, dict) else value
        kinds = {type(child) for child in children}
        if kinds <= _PLAIN:
            continue
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif type(child) is int and abs(child) >= _NO_FLOAT:
                return (f"{_dotted(_path_to(line, child))}: expected a number a float64 "
                        f"holds, got an integer of {len(str(abs(child)))} digits")
    return None


_PLAIN = frozenset({float, str, bool, type(None)})  # nothing to look into or to bound


def _path_to(line: dict[str, Any], target: Any) -> list[str | int]:
    """The keys and indices leading from ``line`` to the object ``target`` (by identity)."""
    stack: list[tuple[Any, list[str | int]]] = [(line, [])]
    while stack:
        value, path = stack.pop()
        if value is target:
            return path
        if isinstance(value, dict):
            stack.extend((child, [*path, key]) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((child, [*path, index]) for index, child in enumerate(value))
    return []


def _dotted(path: Iterable[Any]) -> str:
    """``worst_index[0]``, ``tolerance.k``, ``settings."odd key"``; ``line`` for the whole;
    a path of more than 8 steps is shortened in its middle."""
    path = list(path)
    if len(path) > 8:
        return f"{_dotted(path[:3])}…({len(path)} steps)…{_dotted(path[-2:])}"
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if part.isidentifier() and part.isascii() else _short(part, 40)
            text += f".{name}" if text else name
    return text or "line"


def _short(value: Any, limit: int = 60) -> str:
    """``value`` as JSON (ASCII: control and bidi characters escaped), cut to ``limit``."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _explain(failure: Failure) -> str:
    """``field: what was expected, got what`` for a line's first schema failure."""
    if failure.rule == "required":
        return f"{_dotted([*failure.path, failure.name])}: required"
    if failure.rule == "unknown":
        allowed = list(failure.schema.get("properties", {}))
        close = difflib.get_close_matches(failure.name, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"{_dotted([*failure.path, failure.name])}: unknown field{hint}; "
                "conformance/results/schema.json lists the fields of each line")
    expected = failure.schema.get("description", "a value its schema allows")
    return f"{_dotted(failure.path)}: expected {expected}, got {_short(failure.instance)}"


def read_results(paths: Iterable[Path | str]) -> ResultsFile:
    """Every line of ``paths`` (checked by ``read_lines``), sorted by type."""
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
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: not a result record: {error}") from None
    return ResultsFile(environments, adapters, records)
