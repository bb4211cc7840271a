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
reached through cancellation can never be certified by a bound.

Agreement alone is not enough where a value is lost *below* the working precision: two
precisions that both lose a tiny gradient to cancellation (``1 - C p_c`` with ``p_c`` within
``2**-p`` of ``1 / C``) agree on a wrong 0, and two that both absorb a tiny ``log S`` into a
shift ``s_c`` lying exactly on a float64 midpoint agree on the tie's rounding.  Such a value
is exactly 0 or exactly a rounding boundary (a dyadic rational), which the elements that
``compute.transcendental_elements`` marks provably never are (Lindemann-Weierstrass,
``definitions.transcendental``).  So a pass where a marked element is exactly 0, a float64
midpoint or a boundary of the dtype's rounding is never accepted by agreement: the loop goes on
until the precision resolves the value.  Where a gradient is rational instead (a row of equal
logits, a masked class, nll_loss: ``compute.rational_gradients``), a value on such a boundary
is accepted only when it is that rational exactly (coefficients rounded at the working
precision can absorb a label smoothing of ``1e-300``).  What is left to plain agreement: a
loss that is rational (weights that cancel, nll_loss) landing exactly on a boundary.  After
``MAX_PRECISION`` the result is returned with ``certified=False``.

nll_loss, rows with a non-finite logit or coefficient, a mean over a zero divisor, and results
that fall on (or within the bound of) a rounding boundary take this way.

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
from reference.compute import (
    Pass,
    compute,
    first_precision,
    rational,
    rational_gradients,
    transcendental_elements,
)
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
        agreed = key == previous_key and not _unresolved(problem, computed, fmt, precision,
                                                         want_grad)
        if certified or agreed or precision >= MAX_PRECISION:
            return Accepted(computed, precision, certified or agreed, ingredients)
        previous_key = key
        precision *= 2


def _unresolved(problem: Problem, computed: Pass, fmt: FloatFormat, precision: int,
                want_grad: bool) -> bool:
    """Whether an element that is provably transcendental came out as a dyadic value it can
    never be: exactly 0, a float64 midpoint or a rounding boundary of ``fmt`` (module
    docstring)."""
    with mpmath.workprec(precision):
        marks = transcendental_elements(problem, want_grad)
    if any(mask is not None and values is not None
           and _on_a_boundary(values, fmt)[np.asarray(mask, dtype=bool).reshape(-1)].any()
           for values, mask in zip((computed.output, computed.grad), marks)):
        return True
    if computed.grad is None:
        return False
    landed = np.flatnonzero(_on_a_boundary(computed.grad, fmt))
    if not landed.size:
        return False
    # a rational gradient on a boundary must be it exactly (its coefficients, rounded at the
    # working precision, may have absorbed a label smoothing of 1e-300)
    exact = rational_gradients(problem)
    if exact is None:
        return False
    flat, exact = np.asarray(computed.grad, dtype=object).reshape(-1), exact.reshape(-1)
    return any(exact[i] is not None and rational(flat[i]) != exact[i] for i in landed)


def _on_a_boundary(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """By element, whether the value is exactly 0, a float64 midpoint or a boundary of
    ``fmt`` (``round_float64_array``'s, each a float64)."""
    flat = np.asarray(values, dtype=object).reshape(-1)
    nearest = nearest_float64(flat)
    _rounded, boundary = round_float64_array(nearest, fmt)
    landed = np.zeros(flat.size, dtype=bool)
    for i, (value, f, on_boundary) in enumerate(zip(flat, nearest.tolist(), boundary.tolist())):
        _sign, man, exp, bc = value._mpf_
        if not man:
            landed[i] = not exp  # an exact 0 (inf and nan have a zero mantissa, an exponent)
            continue
        # man is odd: the value's lowest bit is 2**exp; a float64 midpoint has it half an ulp
        # below the float64 grid at its magnitude (2**max(top - 52, -1074))
        landed[i] = exp == max(exp + bc - 53, -1074) - 1 or (on_boundary and value == f)
    return landed


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
