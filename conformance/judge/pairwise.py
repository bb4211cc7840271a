"""Framework against framework: how far two frameworks' values are from each other.

Besides each framework against the oracle, a user porting a model asks whether torch and JAX
*agree*, even where both are within tolerance.  This module answers it as a post-pass over
results files (data flows one way: the records are already there, no framework is run
again): records of different frameworks on the same case, API kind (``native`` or
``composed``), device kind and dtype, for the same quantity and in the same environment, are
compared elementwise, and for every pair of frameworks the largest disagreement over their
APIs is kept.  A user's implementation (``api_kind`` ``implementation``, ``conformance run
--impl``) is also paired with the API it mimics (``extra.like``) on the same device: a pair of
one framework with itself, the implementation's figures beside the framework's own.

For two values ``a`` and ``b`` of one element:

* the special-value pattern (NaN, +inf, -inf) is compared on its own: elements where it
  differs are counted, never folded into an error figure;
* where both are finite, ``|a - b|``, ``|a - b| / max(|a|, |b|)`` and the ULP distance, the
  number of values of the dtype between them (``reference.formats.ulp_distance``).

**Exact and bounded figures.**  A record keeps its values only when they have at most
``MAX_VALUES_KEPT`` (256) elements.  With both values kept the figures are exact
(``exact: true``).  Otherwise they are bounded through the oracle, from each record's own
largest errors: at the element where ``a`` is furthest from the exact value ``e``,
``|a - b| >= |a - e| - |b - e|``, and everywhere ``|a - b| <= |a - e| + |b - e|``, so the
largest disagreement lies in ``[|E_a - E_b|, E_a + E_b]`` (``E`` a record's
``max_abs_error``), and likewise for ULP distances (positions on the format's grid obey the
same triangle inequality).  Such a pair is written with ``exact: false``, ``max_abs_error``
set to the upper end and ``lower_abs_error`` the lower one.  The special-value pattern of a
large pair is known only when neither record is a ``special-value`` failure (then both
match the oracle's pattern, hence each other's).

``conformance pairwise RESULTS... [--out FILE]`` prints the pairs, largest first, and writes
them as JSON Lines of ``{"type": "pairwise", ...}`` (a separate file: results files hold
environment, adapter and result lines only).

**Versions.**  Where some framework has records of more than one version (results files of
the pinned and of the latest audit), every framework is named with its version
(``jax 0.10.2 (...)``, ``jax 0.12.0 (...)``) and records pair across environments, so two
versions of one framework are compared like two frameworks, each API with itself (not with
the framework's other APIs of its kind); ``environment_id`` is then empty.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from conformance.results.jsonl import read_results
from conformance.results.records import Record, jsonable
from reference.formats import get_format, ulp_distance_array

COMPARED_STATUSES = ("pass", "fail")
COMPARED_QUANTITIES = ("output", "grad")


@dataclass(frozen=True)
class ValueDisagreement:
    """How far two arrays of one dtype are apart, elementwise."""

    max_abs_error: float
    max_rel_error: float
    max_ulp_error: float
    special_mismatches: int
    worst_index: tuple[int, ...] | None


def compare_values(a: Any, b: Any, dtype: str) -> ValueDisagreement:
    """The largest disagreement between two framework values (nested lists or arrays; the
    strings ``"nan"``, ``"inf"``, ``"-inf"`` of a results file are read as numbers)."""
    x = np.asarray(_numbers(a), dtype=np.float64)
    y = np.asarray(_numbers(b), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} and {y.shape}")
    x_nan, y_nan = np.isnan(x), np.isnan(y)
    x_inf, y_inf = np.isinf(x), np.isinf(y)
    special = (x_nan != y_nan) | ((x_inf | y_inf) & ~(x_nan | y_nan) & (x != y))
    finite = np.isfinite(x) & np.isfinite(y)
    with np.errstate(invalid="ignore"):
        difference = np.where(finite, np.abs(x - y), 0.0)
        scale = np.maximum(np.abs(x), np.abs(y))
        relative = np.where(scale > 0, difference / np.where(scale > 0, scale, 1.0), 0.0)
    ulps = np.zeros(x.shape)
    ulps[finite] = ulp_distance_array(x[finite], y[finite], get_format(dtype))
    worst = None
    if special.any():
        worst = tuple(int(i) for i in np.argwhere(special)[0])
    elif finite.any():
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ulps)), ulps.shape))
    return ValueDisagreement(
        max_abs_error=float(difference.max()) if finite.any() else 0.0,
        max_rel_error=float(relative.max()) if finite.any() else 0.0,
        max_ulp_error=float(ulps.max()) if finite.any() else 0.0,
        special_mismatches=int(special.sum()), worst_index=worst,
    )


def _numbers(values: Any) -> Any:
    if isinstance(values, str):
        return float(values)
    if isinstance(values, (list, tuple)):
        return [_numbers(v) for v in values]
    return values


@dataclass(frozen=True)
class Pair:
    """The largest disagreement between two frameworks on one case, API kind, device kind,
    dtype and quantity (over every API of each framework of that kind)."""

    case_id: str
    op: str
    group: str
    dtype: str
    quantity: str
    api_kind: str
    device: str  # device kind (cpu, gpu), or the device id when no adapter line names it
    environment_id: str
    framework_a: str
    api_a: str
    framework_b: str
    api_b: str
    exact: bool  # False: bounded through the oracle (values not kept, > 256 elements)
    max_abs_error: float
    max_ulp_error: float
    max_rel_error: float | None = None  # exact pairs only
    lower_abs_error: float | None = None  # bounded pairs: the largest disagreement is >= this
    lower_ulp_error: float | None = None
    special_mismatches: int | None = None  # None: unknown (a bounded pair with a mismatch)
    worst_index: list[int] | None = None
    api_pairs: int = 1  # API pairs compared; the figures are the largest over them

    def as_json(self) -> dict[str, Any]:
        return {"type": "pairwise", **jsonable(asdict(self))}

    @property
    def severity(self) -> tuple[float, float, float]:
        specials = self.special_mismatches if self.special_mismatches is not None else 0
        return (float(specials), self.max_ulp_error, self.max_abs_error)


def _device_kinds(adapters: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    kinds: dict[tuple[str, str, str], str] = {}
    for adapter in adapters:
        for device in adapter.get("devices", []):
            kinds[(adapter.get("environment_id", ""), adapter.get("framework", ""),
                   device.get("id", ""))] = device.get("kind", device.get("id", ""))
    return kinds


def _device_kind(record: Record, kinds: dict[tuple[str, str, str], str]) -> str:
    for environment in (record.environment_id, ""):
        kind = kinds.get((environment, record.framework, record.device))
        if kind:
            return kind
    if record.device == "cpu" or record.device.startswith("cpu"):
        return "cpu"
    return record.device


class _GroupKey(NamedTuple):
    environment_id: str
    case_id: str
    dtype: str
    quantity: str
    api_kind: str
    device: str


def pairs_from_records(records: Iterable[Record],
                       adapters: Iterable[dict[str, Any]] = ()) -> list[Pair]:
    """Every pair of frameworks that ran the same case, API kind, device kind, dtype and
    quantity in one environment, with their largest disagreement; largest first."""
    kinds = _device_kinds(adapters)
    records = [record for record in records
               if record.status in COMPARED_STATUSES and record.quantity in COMPARED_QUANTITIES
               and record.framework != "reference"]
    versioned = _several_versions(records)
    groups: dict[_GroupKey, list[Record]] = defaultdict(list)
    for record in records:
        key = _GroupKey("" if versioned else record.environment_id, record.case_id, record.dtype,
                        record.quantity, record.api_kind, _device_kind(record, kinds))
        groups[key].append(record)
    pairs = _implementation_pairs([r for members in groups.values() for r in members], kinds)
    for key, members in groups.items():
        by_framework: dict[str, list[Record]] = defaultdict(list)
        for record in members:
            name = (f"{record.framework} {record.framework_version}".strip() if versioned
                    else record.framework)
            by_framework[name].append(record)
        for fa, fb in itertools.combinations(sorted(by_framework), 2):
            # two versions of one framework: each API against itself, so a change is its own
            candidates = [replace(pair, framework_a=fa, framework_b=fb)
                          for ra in by_framework[fa] for rb in by_framework[fb]
                          if (ra.framework != rb.framework or ra.api == rb.api)
                          and (pair := _pair(key, ra, rb)) is not None]
            if candidates:
                worst = max(candidates, key=lambda p: p.severity)
                pairs.append(replace(worst, api_pairs=len(candidates)))
    return sorted(pairs, key=lambda p: p.severity, reverse=True)


def _several_versions(records: list[Record]) -> bool:
    """Whether some framework has records of more than one version (then every framework is
    named with its version, and records pair across environments: two audits, e.g. the
    pinned and the latest, run in environments of their own)."""
    versions: dict[str, set[str]] = defaultdict(set)
    for record in records:
        versions[record.framework].add(record.framework_version)
    return any(len(found) > 1 for found in versions.values())


def _implementation_pairs(records: list[Record],
                          kinds: dict[tuple[str, str, str], str]) -> list[Pair]:
    """Each implementation (``conformance run --impl``) against the API it mimics
    (``extra.like``), on the same case, dtype, quantity and device, in one environment: a
    pair of one framework with itself, the implementation first."""
    mimicked: dict[tuple[str, ...], Record] = {}
    for record in records:
        mimicked[(record.environment_id, record.case_id, record.dtype, record.quantity,
                  record.framework, record.device, record.api)] = record
    pairs = []
    for record in records:
        like = record.extra.get("like") if record.api_kind == "implementation" else None
        theirs = mimicked.get((record.environment_id, record.case_id, record.dtype,
                               record.quantity, record.framework, record.device, str(like)))
        if like is None or theirs is None:
            continue
        key = _GroupKey(record.environment_id, record.case_id, record.dtype, record.quantity,
                        record.api_kind, _device_kind(record, kinds))
        pair = _pair(key, record, theirs)
        if pair is not None:
            pairs.append(pair)
    return pairs


def _pair(key: _GroupKey, ra: Record, rb: Record) -> Pair | None:
    base = Pair(case_id=key.case_id, op=ra.op, group=ra.group, dtype=key.dtype,
                quantity=key.quantity, api_kind=key.api_kind, device=key.device,
                environment_id=key.environment_id, framework_a=ra.framework, api_a=ra.api,
                framework_b=rb.framework, api_b=rb.api, exact=True, max_abs_error=0.0,
                max_ulp_error=0.0)
    if ra.actual is not None and rb.actual is not None:
        try:
            values = compare_values(ra.actual, rb.actual, key.dtype)
        except ValueError:
            return None  # shapes differ: each record already says so against the oracle
        return replace(base, max_abs_error=values.max_abs_error,
                       max_ulp_error=values.max_ulp_error, max_rel_error=values.max_rel_error,
                       special_mismatches=values.special_mismatches,
                       worst_index=None if values.worst_index is None
                       else list(values.worst_index))
    abs_a, abs_b, ulp_a, ulp_b = (ra.max_abs_error, rb.max_abs_error, ra.max_ulp_error,
                                  rb.max_ulp_error)
    if abs_a is None or abs_b is None or ulp_a is None or ulp_b is None or not all(
            math.isfinite(v) for v in (abs_a, abs_b, ulp_a, ulp_b)):
        return None
    specials = None if "special-value" in (ra.kind, rb.kind) else 0
    return replace(base, exact=False, max_abs_error=abs_a + abs_b,
                   max_ulp_error=ulp_a + ulp_b, lower_abs_error=abs(abs_a - abs_b),
                   lower_ulp_error=abs(ulp_a - ulp_b), special_mismatches=specials)


def pairs_from_results(paths: Sequence[Path | str]) -> list[Pair]:
    """``pairs_from_records`` over the result lines of results files."""
    results = read_results(paths)
    return pairs_from_records(results.records, results.adapters)


def write_pairs(pairs: Iterable[Pair], path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(pair.as_json(), allow_nan=False) + "\n")


def pair_lines(pairs: Sequence[Pair], limit: int | None = None) -> list[str]:
    """One line per pair, for the terminal."""
    lines = []
    for pair in pairs[:limit] if limit else pairs:
        if pair.exact:
            figure = f"{pair.max_ulp_error:.4g} ulp ({pair.max_abs_error:.3g} abs)"
        else:
            figure = (f"{pair.lower_ulp_error:.4g}..{pair.max_ulp_error:.4g} ulp "
                      f"({pair.lower_abs_error:.3g}..{pair.max_abs_error:.3g} abs, bounded)")
        specials = ("" if not pair.special_mismatches else
                    f", {pair.special_mismatches} special-value mismatch(es)")
        if pair.special_mismatches is None:
            specials = ", special-value pattern unknown"
        lines.append(f"{pair.case_id} [{pair.dtype} {pair.device} {pair.api_kind}] "
                     f"{pair.quantity}: {pair.framework_a} vs {pair.framework_b}: {figure}"
                     f"{specials}; {pair.api_a} | {pair.api_b}")
    return lines
