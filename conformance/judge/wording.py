"""How far off a record is, in words a maintainer can act on.

``how_far_off(record)`` says what the worst element did, from the record's own fields (the
values at ``worst_index`` when the record kept them, else its message and figures):

* a wrong special value: ``returns inf where the exact value is 11.16``;
* a numeric error: ``relative error 2.1e-3 (17 ULP of float16), 5x its bound``;
* near zero, where the bound is absolute (the allowed error ``K * bound`` at the worst element
  is at least the exact value itself, so a relative figure means nothing):
  ``exact 1.9e-22, returned 0: within the absolute bound near zero`` (or ``40x ...``);
* an exact zero, or an error of half the value or more (not a rounding error): ``returns 0.5
  where the exact value is 0, 2.5e14x its bound``, ``returns 0 where the exact value is
  2.773, 37x its bound``;
* a raise: ``raises IndexError: ... where the exact value is 0``; a value where an error is
  expected: ``returns nan where an error is expected``.

An API judged by its own definition (kind ``semantic``) gets ``by its own definition:`` in
front.  The figures themselves (``max_rel_error``, ``max_ulp_error``, ``bound_use``, the
message) stay in the record; the words round them to two or four significant digits.
``bound_use`` and ``max_ulp_error`` are maxima over the elements; the relative error is the
worst element's (the one furthest past its bound) when the values are kept, else the record's
``max_rel_error``, also a maximum.
"""

from __future__ import annotations

import math
import re
from typing import Any

from conformance.results.records import Record

_RAISED = "raised where the oracle defines a value: "
_EXPECTED_GOT = re.compile(r"expected (\S+).*?, got (\S+?)(?: \(([^)]*)\))?$")


def number(value: float) -> str:
    """A value for people: four significant digits, ``2.1e-3`` style exponents, ``inf``."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return _compact(f"{value:.4g}")


def factor(value: float) -> str:
    """How many times its bound: ``5x``, ``1.3x``, ``2.5e14x``; ``0.2 of`` below 1 is said by
    the caller."""
    if math.isinf(value):
        return "infinitely many times"
    if value >= 10:
        text = f"{value:.2g}" if value >= 1e5 else f"{value:.0f}"
    else:
        text = f"{value:.2g}"
    return _compact(text) + "x"


def _compact(text: str) -> str:
    """``2.1e-03`` -> ``2.1e-3``, ``4.6e+18`` -> ``4.6e18``."""
    mantissa, sep, exponent = text.partition("e")
    if not sep:
        return text
    sign = "-" if exponent.startswith("-") else ""
    return f"{mantissa}e{sign}{int(exponent.lstrip('+-'))}"


def _element(values: Any, index: list[int] | None) -> float | None:
    """The element of nested lists ``values`` at ``index`` (a scalar at ``[]``) as a float, or
    None when the record did not keep it."""
    if values is None or index is None:
        return None
    item = values
    try:
        for i in index:
            item = item[i]
        return float(item)
    except (TypeError, IndexError, ValueError):
        return None


def how_far_off(record: Record) -> str:
    """A short sentence on how far ``record`` is from the exact value (see the module doc)."""
    if record.status in ("unsupported", "skip"):
        return record.message
    text = _behaviour(record) if record.kind == "behaviour" else (
        _special(record) if record.kind == "special-value" else _numeric(record))
    if record.kind == "semantic":
        return "by its own definition: " + text
    return text


def _exact_phrase(record: Record) -> str:
    exact = _element(record.reference, record.worst_index if record.worst_index is not None
                     else ([] if record.shape == [] else None))
    if exact is None and not isinstance(record.reference, list) and record.reference is not None:
        exact = _element(record.reference, [])
    return f"the exact value is {number(exact)}" if exact is not None else \
        "the oracle defines a value"


def _behaviour(record: Record) -> str:
    message = record.message
    if message.startswith(_RAISED):
        return f"raises {message[len(_RAISED):]} where {_exact_phrase(record)}"
    if message.startswith("returned a value where the inputs are invalid"):
        got = _element(record.actual, []) if not isinstance(record.actual, list) else None
        what = number(got) if got is not None else "a value"
        return f"returns {what} where an error is expected"
    return message


def _special(record: Record) -> str:
    exact = _element(record.reference, record.worst_index)
    got = _element(record.actual, record.worst_index)
    wrong_zero = "zero of the wrong sign" in record.message
    many = re.match(r"(\d+) special-value mismatch", record.message)
    count = int(many.group(1)) if many else 1
    if exact is None or got is None:  # values not kept: the message names the first one
        found = _EXPECTED_GOT.search(record.message)
        if not found:
            return record.message
        shown_exact, shown_got = found.group(1), found.group(2)
    else:
        shown_exact, shown_got = number(exact), number(got)
    text = f"returns {shown_got}" + (" (a zero of the wrong sign)" if wrong_zero else "") + \
        f" where the exact value is {shown_exact}"
    if count > 1:
        text += f" ({count} such elements)"
    return text


def _numeric(record: Record) -> str:
    use = record.bound_use
    exact = _element(record.reference, record.worst_index)
    got = _element(record.actual, record.worst_index)
    if use is None or math.isnan(use):
        return record.message
    against = "within its bound" if use <= 1 else f"{factor(use)} its bound"
    if use <= 1 and use > 0:
        against = f"{_compact(f'{use:.2g}')} of its bound"
    if exact is not None and got is not None and math.isfinite(exact) and use > 0:
        allowed = abs(got - exact) / use  # K * bound at the worst element
        if exact == 0:
            return f"returns {number(got)} where the exact value is 0, {against}"
        if allowed >= abs(exact):  # the bound is absolute here: a relative error means nothing
            near = ("within the absolute bound near zero" if use <= 1
                    else f"{factor(use)} the absolute bound near zero")
            return f"exact {number(exact)}, returned {number(got)}: {near}"
        if abs(got - exact) >= abs(exact) / 2:  # not a rounding error: say what it returned
            return f"returns {number(got)} where the exact value is {number(exact)}, {against}"
    rel = record.max_rel_error  # the largest over the elements, when the values are not kept
    if exact is not None and got is not None and math.isfinite(got) and exact != 0:
        rel = abs(got - exact) / abs(exact)  # at the element furthest past its bound
    ulp = record.max_ulp_error
    parts = []
    if rel is not None and not math.isnan(rel) and math.isfinite(rel):
        parts.append(f"relative error {_compact(f'{rel:.2g}')}")
    elif exact is not None and got is not None:
        parts.append(f"returns {number(got)} where the exact value is {number(exact)}")
    if ulp is not None and not math.isnan(ulp):
        figure = ("inf" if math.isinf(ulp) else _compact(f"{ulp:.2g}") if ulp >= 1e5
                  else f"{ulp:.0f}" if ulp >= 10 else f"{ulp:.2g}")
        parts.append(f"({figure} ULP of {record.dtype})" if parts else
                     f"{figure} ULP of {record.dtype}")
    if not parts:
        return f"{against}"
    return " ".join(parts) + f", {against}"
