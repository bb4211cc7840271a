"""The precision loop: a pass is accepted when its rounding is known to be the exact value's.

A value is accepted when its rounding to float64 **and** to the dtype under test is that of
the exact value.  First, a problem the vectorised path takes (``reference/vectorised.py``:
numpy double-double arithmetic with an error bound for every element) is returned from there
when every element is decided by its bound; anything else (a problem outside that path's
whitelist, or one undecided element) goes the MPFR/mpmath way below, unchanged.  Two ways
decide it there:

**An a-priori error bound (one pass).**  For rows of finite logits computed on MPFR numbers
(cross_entropy, softmax, log_softmax), every element comes with a bound of its error
(derived in ``reference/mpfr.py``); the pass's ledger certifies it when every element's
interval lies inside its rounding interval (``reference/ledger.py``).  Then the result of
that one pass is returned.

**Ziv's strategy (otherwise).**  The oracle evaluates at ``p`` and ``2p`` (then ``4p``, ...)
until every element, rounded to float64 *and* to the dtype under test, is identical at two
successive precisions, or a pass is certified by its bounds.  The precision of the accepted
evaluation is returned.  The first precision is ``128 + bits(C)`` bits
(``compute.first_precision``), so a pass normally suffices.  A mathematically exact zero
reached through cancellation can never be certified by a bound; after ``MAX_PRECISION`` the
result is returned with ``certified=False``.  nll_loss, rows with a non-finite logit or
coefficient, a mean over a zero divisor, and results that fall on (or within the bound of) a
rounding boundary take this way.

Each pass runs in ``mpmath.workprec`` (the global ``mp.prec`` is never changed).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass

import mpmath
import numpy as np

from reference import vectorised
from reference.compute import Pass, compute, first_precision
from reference.formats import FloatFormat, nearest_float64, round_float64_array, round_to_format
from reference.ledger import Ledger
from reference.mpfr import Floats
from reference.problem import Problem

MAX_PRECISION = 4096


@dataclass(frozen=True)
class Accepted:
    """The pass the loop accepts, at ``precision``, and whether its rounding is certified;
    ``ingredients``: the exponentials of the *first* pass (by row), which the tolerance's
    error bounds reuse (``reference/tolerance.py``)."""

    computed: Pass
    precision: int
    certified: bool
    ingredients: dict[int, Floats]


def accept(problem: Problem, fmt: FloatFormat, want_grad: bool) -> Accepted:
    """Evaluate ``problem`` at rising precisions until a pass is accepted (the module
    docstring); ``fmt``: the format whose rounding must be stable."""
    fast = vectorised.evaluate(problem, fmt, want_grad)
    if fast is not None:  # every element decided in double-double (reference/vectorised.py)
        return Accepted(Pass(fast.output, fast.grad, Ledger()), vectorised.PRECISION, True,
                        fast.ingredients)
    precision = first_precision(problem)
    previous_key = ingredients = None
    while True:
        with mpmath.workprec(precision), _collector_paused():
            computed = compute(problem, want_grad)
        if ingredients is None:  # the first pass's exponentials serve the error bounds
            ingredients = computed.ingredients
        certified = computed.ledger.certifies(fmt)
        key = None if certified else (_rounding_key(computed.output, fmt),
                                      _rounding_key(computed.grad, fmt))
        if certified or key == previous_key or precision >= MAX_PRECISION:
            return Accepted(computed, precision, certified or key == previous_key, ingredients)
        previous_key = key
        precision *= 2


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector: a pass allocates millions of mpf and MPFR
    objects, none of them in a reference cycle, which the collector would traverse again and
    again (a sixth of the time of a large problem) to free nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _rounding_key(values: np.ndarray | None, fmt: FloatFormat) -> tuple[bytes, ...]:
    """What must not change between two precisions: each value rounded to float64 and fmt.

    Rounding through the nearest float64 equals rounding once, except at exact midpoints of
    ``fmt`` (``round_float64_array`` flags them), which are redone from the exact value.
    """
    if values is None:
        return ()
    flat = np.asarray(values, dtype=object).reshape(-1)
    nearest = nearest_float64(flat)
    rounded, midpoints = round_float64_array(nearest, fmt)
    for i in np.flatnonzero(midpoints):
        rounded[i] = float(round_to_format(flat[i], fmt))
    nan = np.isnan(nearest)  # one spelling of NaN, whatever its payload
    return (np.where(nan, 0.0, nearest).tobytes(), np.where(nan, 0.0, rounded).tobytes(),
            nan.tobytes())
