"""The mpmath oracle: softmax, log_softmax, nll_loss and cross_entropy, with their gradients.

This is the oracle's public entry: ``evaluate``, ``check_inputs``, ``error_bounds`` and the
names the rest of the suite uses.  The definitions are written out in ``reference/SPEC.md``
and implemented literally.  Nothing on the path to a value uses floating-point arithmetic:
inputs are converted *exactly* from the (already dtype-rounded) floats a framework sees, numpy
is used only to hold, reshape and index arrays, and every operation runs in mpmath, or in MPFR
(gmpy2), correctly rounded at a working precision set with ``mpmath.workprec`` (the global
``mp.prec`` is never changed).  float64 appears only in the bookkeeping that certifies a
result, where every quantity is an upper bound.

Where each part lives (each module's docstring states its contract; imports run down this
list, never up, and never into ``conformance``):

* ``reference/oracle.py`` (here): the doors, with their keyword arguments: ``evaluate``
  (prepare, accept a certified pass, attach the tolerance's error bounds), ``check_inputs``,
  ``error_bounds``; ``OracleResult``.
* ``reference/tolerance.py``: the per-element error bounds of a max-shifted evaluation in the
  dtype under test (``conformance/judge/compare.py``'s ingredients), ``INFLATION``.
* ``reference/certify.py``: the precision loop (Ziv's strategy, or one pass certified by its
  a-priori bounds), ``MAX_PRECISION``.
* ``reference/compute.py``: one pass at one working precision, row by row on MPFR or mpmath.
* ``reference/mpfr.py``: the MPFR fast path and the derivation of its a-priori bounds.
* ``reference/ledger.py``: the one-pass certificate (a bound inside a rounding interval).
* ``reference/definitions.py``: the formulas of SPEC.md in mpmath, and why they are accurate
  (the precision argument).
* ``reference/problem.py``: inputs converted exactly, the domain (``OracleDomainError``),
  ``OPS`` and ``REDUCTIONS``.
* ``reference/formats.py``: the float formats, correct rounding into them, ULPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.certify import MAX_PRECISION, accept
from reference.formats import get_format
from reference.pairs import ExactPairs
from reference.problem import OPS, REDUCTIONS, OracleDomainError, prepare
from reference.tolerance import INFLATION, problem_bounds

__all__ = [
    "INFLATION", "MAX_PRECISION", "OPS", "REDUCTIONS", "OracleDomainError", "OracleResult",
    "check_inputs", "error_bounds", "evaluate",
]


@dataclass(frozen=True)
class OracleResult:
    """Exact-enough values of one op: ``output`` and ``grad`` are numpy arrays of ``mpf``, or
    for the vectorised path's large results ``reference.pairs.ExactPairs`` (the same values
    as float64 pairs; ``numpy.asarray(values, dtype=object)`` gives the mpf array).

    ``grad`` is d(scalar)/d(input), where the scalar is the op's output, or the sum of its
    elements when the output is not a scalar (reduction ``none``, softmax, log_softmax).
    """

    output: np.ndarray | ExactPairs
    grad: np.ndarray | ExactPairs | None
    precision: int
    certified: bool
    # Error bounds of a max-shifted evaluation in the dtype (see ``error_bounds``): float64
    # arrays shaped like ``output`` and ``grad``, before the tolerance policy's factor K.
    output_bound: np.ndarray | None = None
    grad_bound: np.ndarray | None = None


def evaluate(
    op: str,
    input: Any,
    *,
    target: Any = None,
    weight: Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad: bool = True,
    dtype: str = "float64",
    axis: int | None = None,
    sample_weight: Any = None,
    where: Any = None,
) -> OracleResult:
    """Evaluate ``op`` on exact inputs, certified by a-priori bounds or by Ziv's strategy
    (``reference/certify.py``), with the tolerance's error bounds in ``dtype``.

    ``input`` holds floats shaped ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; ``target`` is
    integer class indices shaped like the input without its class axis, or floats shaped like
    the input (probabilities).  ``dtype`` names the format whose rounding must be stable.
    ``axis`` is the class axis (default 1, or 0 for ``(C,)``); ``sample_weight`` one weight per
    example, shaped like the input without its class axis; ``where`` a boolean mask shaped
    like the input (SPEC.md).
    """
    problem = prepare(op, input, target, weight, ignore_index, reduction, label_smoothing,
                      axis=axis, sample_weight=sample_weight, where=where, dtype=dtype)
    fmt = get_format(dtype)
    accepted = accept(problem, fmt, grad)
    output_bound, grad_bound = problem_bounds(problem, fmt, grad, accepted.ingredients)
    computed = accepted.computed
    return OracleResult(computed.output, computed.grad, accepted.precision,
                        certified=accepted.certified,
                        output_bound=output_bound, grad_bound=grad_bound)


def check_inputs(
    op: str,
    input: Any,
    *,
    target: Any = None,
    weight: Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    axis: int | None = None,
    sample_weight: Any = None,
    where: Any = None,
) -> None:
    """Raise ``OracleDomainError`` where ``evaluate`` would, without computing anything."""
    prepare(op, input, target, weight, ignore_index, reduction, label_smoothing,
            axis=axis, sample_weight=sample_weight, where=where)


def error_bounds(
    op: str,
    input: Any,
    *,
    target: Any = None,
    weight: Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad: bool = True,
    dtype: str = "float64",
    axis: int | None = None,
    sample_weight: Any = None,
    where: Any = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-element error bounds (factor K = 1) of a max-shifted evaluation of ``op`` in
    ``dtype``, float64 arrays shaped like ``evaluate``'s output and grad (NaN bounds are 0:
    those elements are compared as special values); see ``conformance/judge/compare.py`` and
    ``reference/tolerance.py``."""
    problem = prepare(op, input, target, weight, ignore_index, reduction, label_smoothing,
                      axis=axis, sample_weight=sample_weight, where=where, dtype=dtype)
    return problem_bounds(problem, get_format(dtype), grad, {})
