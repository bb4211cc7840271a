"""Merging results files from several runs and machines into one, keyed by environment.

Contract:

* **Environments** are keyed by ``environment_id`` (a hash of Python, OS, machine, CPU and
  host).  Every distinct ``environment`` line of an id is kept as one *run* of it (two runs
  on one machine, e.g. with two versions of torch, differ in their command and start time);
  every distinct ``adapter`` line is kept as a declaration of that environment.
* **Records** are keyed by ``comparison_key``: the environment, case, framework *and its
  version*, API, device, dtype and quantity.  Two records with the same key are
  *duplicates* when every field but ``extra`` and ``baseline`` agrees (``extra`` holds
  annotations such as timings that may differ between identical runs; ``baseline`` a
  known-discrepancy file's word beside the verdict): the first is kept, the others dropped.
  Records with the same key that disagree are a *conflict*: all of them are kept, and
  ``Merged.conflicts`` names their keys.
* Merging is **idempotent**: merging a file with itself, or a merged file with any of its
  inputs, gives the same lines again (``write_merged`` writes environments, then adapters,
  then records, each in first-seen order, and nothing else).

A malformed line raises ``ValueError`` naming its file and line (``results.read_lines``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.results.jsonl import read_lines
from conformance.results.records import Record, jsonable, record_from_json

Key = tuple[str, ...]


@dataclass
class Environment:
    """One machine/software setup: its runs (environment lines) and adapter declarations."""

    environment_id: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    adapters: list[dict[str, Any]] = field(default_factory=list)

    @property
    def info(self) -> dict[str, Any]:
        """The first run's line (Python, OS, CPU, host are the same in every run of an id)."""
        return self.runs[0] if self.runs else {}

    @property
    def label(self) -> str:
        """A short human name: host and the start of the id."""
        host = str(self.info.get("host") or "unknown host")
        return f"{host} [{self.environment_id[:6] or '?'}]"


@dataclass
class Merged:
    """The union of results files (see the module docstring for the rules)."""

    environments: dict[str, Environment] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # file:line of each kept record
    files: list[str] = field(default_factory=list)
    duplicates: int = 0  # identical records dropped
    conflicts: dict[Key, list[int]] = field(default_factory=dict)  # key -> indices in records

    @property
    def adapters(self) -> list[dict[str, Any]]:
        return [a for env in self.environments.values() for a in env.adapters]

    def in_conflict(self, index: int) -> bool:
        return comparison_key(self.records[index]) in self.conflicts


def comparison_key(record: Record) -> Key:
    """What one comparison is, across files: ``Record.key`` plus the framework version."""
    return (*record.key, record.framework_version)


def _identity(obj: dict[str, Any]) -> str:
    return json.dumps(jsonable(obj), sort_keys=True, allow_nan=False)


# ``baseline`` is a known-discrepancy file's word beside the verdict, not part of it: the same
# run judged with and without a baseline holds the same comparisons.
_COMPARED = {f.name: None if f.default is dataclasses.MISSING else f.default
             for f in dataclasses.fields(Record) if f.name not in ("extra", "baseline")}


def _record_identity(obj: dict[str, Any]) -> str:
    """A result line's content for duplicate detection: every ``Record`` field but ``extra``
    (absent fields at their defaults, so a line from an older writer matches its rewrite)."""
    return _identity({name: obj.get(name, default) for name, default in _COMPARED.items()})


def merge_results(paths: Iterable[Path | str]) -> Merged:
    """Read and merge results files, in order; see the module docstring."""
    merged = Merged()
    seen_lines: set[str] = set()
    kept: dict[Key, dict[str, int]] = {}  # key -> identity -> index of the kept record
    for path in paths:
        merged.files.append(str(path))
        for number, obj in read_lines(path):
            where = f"{path}:{number}"
            if obj["type"] == "result":
                _add_record(merged, kept, obj, where)
                continue
            identity = _identity(obj)
            if identity in seen_lines:
                continue
            seen_lines.add(identity)
            env_id = str(obj.get("environment_id", ""))
            env = merged.environments.setdefault(env_id, Environment(env_id))
            (env.runs if obj["type"] == "environment" else env.adapters).append(obj)
    return merged


def _add_record(merged: Merged, kept: dict[Key, dict[str, int]], obj: dict[str, Any],
                where: str) -> None:
    try:
        record = record_from_json(obj)
    except TypeError as error:
        raise ValueError(f"{where}: not a result record: {error}") from None
    key = comparison_key(record)
    variants = kept.setdefault(key, {})
    identity = _record_identity(obj)
    if identity in variants:
        merged.duplicates += 1
        return
    variants[identity] = len(merged.records)
    merged.records.append(record)
    merged.sources.append(where)
    merged.environments.setdefault(record.environment_id, Environment(record.environment_id))
    if len(variants) > 1:
        merged.conflicts[key] = list(variants.values())


def write_merged(merged: Merged, path: Path | str) -> None:
    """Write ``merged`` as one results file (environments, adapters, then records)."""
    lines = []
    for env in merged.environments.values():
        lines += [_identity_line(run) for run in env.runs]
    for env in merged.environments.values():
        lines += [_identity_line(adapter) for adapter in env.adapters]
    lines += [_identity_line({"type": "result", **asdict(r)}) for r in merged.records]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _identity_line(obj: dict[str, Any]) -> str:
    return json.dumps(jsonable(obj), allow_nan=False)
