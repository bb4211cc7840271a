"""Known discrepancies: a baseline file, matching records against it, and writing one.

A baseline (``known.yaml``, schema ``baseline_schema.json`` beside this module) is a list of
entries ``{match: {framework, version, api, device, dtype, case, quantity}, kind, reason,
link}``.  Every ``match`` field is optional; each is a glob (``fnmatch.fnmatchcase``) or a list
of globs, except ``version``, a PEP 440 specifier set (``packaging``) that the record's
``framework_version`` must satisfy (pre-releases included, local labels such as ``+cpu``
ignored, as PEP 440 says).  ``kind`` (optional, one or a list) restricts a non-pass record's
kind, so a known numeric error that turns into a NaN is a new discrepancy.

The contract of ``Baseline.apply``: the record's own verdict (``status``, ``kind``) is kept as
judged, and the first matching entry (in file order) is written beside it in
``Record.baseline``: ``{"outcome": "xfail" | "xpass", "reason", "link", "entry": "file:line"}``
-- ``xfail`` for a ``fail`` or ``error``, ``xpass`` for a ``pass``.  ``unsupported`` and
``skip`` records are never matched (a framework that did not run has fixed nothing).  So a
results file written with a baseline still holds every verdict, and one written without can
be judged against a baseline later.  ``Baseline.stale`` lists the entries that matched no
record (fixed, or not run here), the way array-api-tests warns about stale xfails.
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from conformance.cases.loading import CaseError, _brief, _dotted, _explain, _load_yaml
from conformance.judge import grouping
from conformance.results.records import Record

SCHEMA_PATH = Path(__file__).with_name("baseline_schema.json")
MATCH_FIELDS = ("framework", "version", "api", "device", "dtype", "case", "quantity")
DISCREPANCY = ("fail", "error")
NOT_REPORTED = "not reported upstream yet"


class BaselineError(CaseError):
    """A problem in a baseline file, located by file, line and field (exit 2)."""


@dataclass(frozen=True)
class Entry:
    """One known discrepancy; ``where`` is ``file:line`` of its entry."""

    where: str
    globs: dict[str, tuple[str, ...]]  # match field (not version) -> globs, any may match
    version: SpecifierSet | None
    kinds: tuple[str, ...] | None
    reason: str
    link: str
    raw: dict[str, Any] = field(compare=False, repr=False)

    def matches(self, record: Record) -> bool:
        values = {"framework": record.framework, "api": record.api, "device": record.device,
                  "dtype": record.dtype, "case": record.case_id, "quantity": record.quantity}
        for name, globs in self.globs.items():
            if not any(value_matches(values[name], glob) for glob in globs):
                return False
        if self.version is not None and not _version_in(record.framework_version,
                                                        self.version):
            return False
        return not (record.status != "pass" and self.kinds is not None
                    and record.kind not in self.kinds)

    def could_match(self, framework: str, version: str, api: str, device: str, dtype: str,
                    case: str) -> bool:
        """Whether some record of this job might match (quantity and kind not yet known)."""
        probe = Record(case_id=case, op="", group="", framework=framework,
                       framework_version=version, api=api, api_kind="native", device=device,
                       device_name="", dtype=dtype, quantity="output", status="pass")
        narrowed = replace(self, globs={k: v for k, v in self.globs.items() if k != "quantity"})
        return narrowed.matches(probe)


def value_matches(value: str, glob: str) -> bool:
    """A literal name (API names hold parentheses and brackets) or a glob."""
    return value == glob or fnmatch.fnmatchcase(value, glob)


def release_of(version: str) -> str:
    """The framework's own version in a record's ``framework_version``, whose adapters may
    add what they run with: ``0.10.2 (jaxlib 0.10.2, optax 0.2.8)`` -> ``0.10.2``."""
    return version.split(" ", 1)[0]


@lru_cache(maxsize=4096)  # a run has few versions and entries, and many records
def _version_in(version: str, specifiers: SpecifierSet) -> bool:
    try:
        return specifiers.contains(Version(release_of(version)), prereleases=True)
    except InvalidVersion:
        return False  # "unknown": no range can say it holds


@dataclass
class Baseline:
    """The entries of one or more baseline files, and which of them matched a record."""

    entries: list[Entry]
    used: set[int] = field(default_factory=set)
    seen: set[tuple[str, str]] = field(default_factory=set)  # (framework, case) that ran

    def entry_for(self, record: Record) -> int | None:
        if record.status != "pass" and record.status not in DISCREPANCY:
            return None
        for index, entry in enumerate(self.entries):
            if entry.matches(record):
                return index
        return None

    def apply(self, record: Record) -> Record:
        """``record`` with ``baseline`` set when an entry matches (its verdict unchanged)."""
        if record.status == "pass" or record.status in DISCREPANCY:
            self.seen.add((record.framework, record.case_id))
        index = self.entry_for(record)
        if index is None:
            return record if record.baseline is None else replace(record, baseline=None)
        self.used.add(index)
        entry = self.entries[index]
        outcome = "xpass" if record.status == "pass" else "xfail"
        return replace(record, baseline={"outcome": outcome, "reason": entry.reason,
                                         "link": entry.link, "entry": entry.where})

    def stale(self) -> list[Entry]:
        """The entries that matched no record; see ``not_run`` for those this run could not
        have matched."""
        return [e for i, e in enumerate(self.entries) if i not in self.used]

    def not_run(self, entry: Entry) -> bool:
        """Whether no framework and case of ``entry`` ran (among the records applied)."""
        frameworks, cases = entry.globs.get("framework", ("*",)), entry.globs.get("case", ("*",))
        return not any(any(value_matches(f, g) for g in frameworks)
                       and any(value_matches(c, g) for g in cases) for f, c in self.seen)


def is_new_discrepancy(record: Record) -> bool:
    """A fail or error that no baseline entry covers: what makes a run exit 1."""
    return record.status in DISCREPANCY and not (
        record.baseline is not None and record.baseline.get("outcome") == "xfail")


def is_xpass(record: Record) -> bool:
    return record.baseline is not None and record.baseline.get("outcome") == "xpass"


# --- reading -------------------------------------------------------------------------------


@cache
def baseline_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def load_baseline(paths: Iterable[Path | str]) -> Baseline:
    """The entries of every file in ``paths``, in order; a bad file raises ``BaselineError``
    naming the file, the line and the field."""
    entries: list[Entry] = []
    for path in map(Path, paths):
        entries += _load_file(path)
    return Baseline(entries)


def _load_file(path: Path) -> list[Entry]:
    try:
        located = _load_yaml(path)
    except CaseError as error:
        raise BaselineError(error.file, error.line, error.field,
                            error.message.replace("case file", "baseline file")) from None
    if located.data is None:
        return []  # an empty file: no known discrepancies
    validator = jsonschema.Draft202012Validator(baseline_schema())
    errors = sorted(validator.iter_errors(located.data), key=lambda e: list(e.absolute_path))
    if errors:
        worst = jsonschema.exceptions.best_match(errors)
        where = list(worst.absolute_path)
        if worst.validator == "additionalProperties" and isinstance(worst.instance, dict):
            allowed = worst.schema.get("properties", {})
            unknown = next(k for k in worst.instance if k not in allowed)
            raise BaselineError(path, located.line_of([*where, unknown]),
                                _dotted([*where, unknown]),
                                f"unknown key {_brief(repr(unknown))}; allowed keys: "
                                f"{', '.join(sorted(allowed))}")
        raise BaselineError(path, located.line_of(where), _dotted(where), _explain(worst))
    entries = []
    for index, raw in enumerate(located.data):
        line = located.line_of([index]) or 0
        match = raw["match"]
        version = None
        if "version" in match:
            try:
                version = SpecifierSet(match["version"])
            except InvalidSpecifier:
                raise BaselineError(path, located.line_of([index, "match", "version"]),
                                    f"[{index}].match.version",
                                    f"{match['version']!r} is not a PEP 440 specifier set "
                                    "(e.g. '<2.14', '>=0.9,<0.11', '==2.13.*')") from None
        kinds = raw.get("kind")
        entries.append(Entry(
            where=f"{path}:{line}",
            globs={k: _tuple(v) for k, v in match.items() if k != "version"},
            version=version, kinds=None if kinds is None else _tuple(kinds),
            reason=raw["reason"], link=raw["link"], raw=raw))
    return entries


def _tuple(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


# --- writing -------------------------------------------------------------------------------


# Module classes that call a functional API: one root cause for both.
MODULE_FUNCTIONS = {"torch.nn.CrossEntropyLoss": "torch.nn.functional.cross_entropy",
                    "torch.nn.NLLLoss": "torch.nn.functional.nll_loss"}


def api_family(api: str) -> str:
    """The API a compiled twin wraps (``jax.jit(f)`` -> ``f``, as the report groups them:
    ``conformance.judge.grouping``), and the functional API a module class calls: one root
    cause for all of them."""
    family = grouping.api_family(api)
    return MODULE_FUNCTIONS.get(family, family)


@dataclass
class Draft:
    """What ``conformance baseline`` writes: entries kept from an earlier baseline (verbatim,
    with their reason and link), new entries (reason and link left empty for a person), and
    the earlier entries that no longer match anything (dropped)."""

    kept: list[Entry]
    new: list[dict[str, Any]]
    dropped: list[Entry]


def draft_baseline(records: Iterable[Record], existing: Baseline | None = None) -> Draft:
    """One entry per root cause -- a case on one framework's API family (an API and its
    compiled twins) -- of every fail or error that ``existing`` does not cover, listing the
    exact APIs, dtypes, quantities and kinds seen and the framework's minor version
    (``==2.13.*``)."""
    existing = existing or Baseline([])
    groups: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        if record.status not in DISCREPANCY:
            if record.status == "pass":
                existing.entry_for(record)  # an xpass does not keep an entry alive
            continue
        index = existing.entry_for(record)
        if index is not None:
            existing.used.add(index)
            continue
        groups[(record.framework, api_family(record.api), record.case_id)].append(record)
    new = [_entry(group) for _, group in sorted(groups.items())]
    kept = [e for i, e in enumerate(existing.entries) if i in existing.used]
    return Draft(kept, new, existing.stale())


def _entry(records: list[Record]) -> dict[str, Any]:
    first = records[0]

    def seen(name: str) -> list[str]:
        return sorted({str(getattr(r, name)) for r in records})

    match: dict[str, Any] = {"framework": first.framework}
    version = _minor_series(first.framework_version)
    if version is not None:
        match["version"] = version
    match |= {"api": seen("api"), "case": first.case_id, "dtype": seen("dtype"),
              "quantity": seen("quantity")}
    return {"match": match, "kind": seen("kind"), "reason": "", "link": "",
            "example": records[0].message}


def _minor_series(version: str) -> str | None:
    try:
        release = Version(release_of(version)).release
    except InvalidVersion:
        return None
    return f"=={'.'.join(map(str, release[:2]))}.*" if len(release) >= 2 else f"=={version}"


def write_draft(draft: Draft, path: Path | str, header: str = "") -> None:
    """The baseline as YAML: kept entries first (as they were), then the new ones, each with a
    comment giving an example message.  Strings are JSON-quoted (valid YAML)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for entry in draft.kept:
        lines += _entry_lines(entry.raw)
    for raw in draft.new:
        lines += _entry_lines(raw)
    Path(path).write_text("\n".join(lines) + "\n" if lines else "[]\n", encoding="utf-8")


def _entry_lines(raw: dict[str, Any]) -> list[str]:
    q = _quoted
    lines = [""]
    if raw.get("example"):
        lines.append(f"# e.g. {raw['example'][:200]}")
    match = raw["match"]
    lines.append("- match:")
    lines += [f"    {k}: {q(match[k])}" for k in MATCH_FIELDS if k in match]
    if raw.get("kind") is not None:
        lines.append(f"  kind: {q(raw['kind'])}")
    lines.append(f"  reason: {q(raw['reason'])}")
    lines.append(f"  link: {q(raw['link'])}")
    return lines


def _quoted(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return _quoted(value[0])
        return "[" + ", ".join(_quoted(v) for v in value) + "]"
    return json.dumps(str(value))
