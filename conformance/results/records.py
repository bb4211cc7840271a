"""Result records: one verdict each, and their JSON form (non-finite floats as the strings
``"inf"``, ``"-inf"``, ``"nan"``, so every line of a results file is strict JSON)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

LINE_TYPES = ("environment", "adapter", "result")

# The version of the results schema (conformance/results/schema.json) this suite writes, in
# every environment line.  Files of version 1 (before the field existed) hold no such field;
# every version still loads.  Bump it when a field is added to the schema.
RESULTS_SCHEMA_VERSION = 2


STATUSES = ("pass", "fail", "error", "unsupported", "skip")


QUANTITIES = ("output", "grad", "documented", "documented_grad", "grad_linear_weight",
              "grad_linear_bias")


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
    api_kind: str  # native | composed | implementation | reference
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
    # The verdict's yardstick (conformance/judge/compare.py): the largest error / (K * bound) over
    # the elements (at most 1 for a pass), and the tolerance used: {k, scale, source, reason}.
    bound_use: float | None = None
    tolerance: dict[str, Any] | None = None
    worst_index: list[int] | None = None
    message: str = ""
    case_file: str = ""
    oracle_precision: int | None = None
    environment_id: str = ""
    # The job (one case on one API, device and dtype of one framework) that wrote the record,
    # ``case|api-id|device|dtype`` (``conformance.run.worker.job_key``), and how many records it
    # wrote: ``conformance run --resume`` counts them to know which jobs are complete.
    job: str = ""
    job_records: int = 0
    # A known-discrepancy baseline's word on this record (conformance/judge/baseline.py), beside
    # the verdict, which it never changes: {outcome: xfail | xpass, reason, link, entry}.
    baseline: dict[str, str] | None = None
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
    # float() of each element (np.vectorize would warn "invalid value" on each NaN it casts)
    floats = np.array([float(v) for v in array.reshape(-1)], dtype=np.float64)
    return floats.reshape(array.shape).tolist() if array.size else []


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


_RECORD_FIELDS = {f.name for f in fields(Record)}


_FLOAT_FIELDS = ("max_abs_error", "max_rel_error", "max_ulp_error", "bound_use")


def record_from_json(obj: dict[str, Any]) -> Record:
    """Rebuild a ``Record`` from a result line (unknown keys go to ``extra``; ``read_lines``
    has already refused them in a file).  The strings ``"inf"``, ``"-inf"``, ``"nan"`` of the
    error fields become floats, and so do integers there; integer-valued floats of the
    integer fields (valid JSON Schema integers) become ints."""
    known = {k: v for k, v in obj.items() if k in _RECORD_FIELDS and k != "type"}
    extra = {k: v for k, v in obj.items() if k not in _RECORD_FIELDS and k != "type"}
    for name in _FLOAT_FIELDS:
        value = known.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            known[name] = float(value)
    for name in ("shape", "worst_index"):  # JSON Schema's integers include 2.0
        if isinstance(known.get(name), list):
            known[name] = [int(v) for v in known[name]]
    for name in ("oracle_precision", "job_records"):
        if isinstance(known.get(name), float):
            known[name] = int(known[name])
    known.setdefault("extra", {}).update(extra)
    return Record(**known)
