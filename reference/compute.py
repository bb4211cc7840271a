"""One pass: a problem evaluated at the current working precision, row by row.

``compute`` evaluates every row of a ``Problem`` at ``mpmath.mp.prec`` (set by the caller,
``reference/certify.py``, with ``mpmath.workprec``): on MPFR numbers (``reference/mpfr.py``)
where gmpy2 is installed and the row's logits and coefficients are finite float64 values,
otherwise by the mpmath definitions (``reference/definitions.py``).  Both are correctly
rounded at the same precision, so the choice changes no rounded result.  The pass returns
the output and gradient (numpy arrays of ``mpf``, shaped like the input), its ledger (the
a-priori bounds of the MPFR rows, ``reference/ledger.py``; any mpmath row leaves it without
a certificate), and each MPFR row's exponentials rounded to float64 (``reference/tolerance.py``
reuses those of the first pass).  ``first_precision`` is where the precision loop starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mpmath import mpf

from reference import definitions, mpfr, probabilities
from reference.definitions import ZERO
from reference.ledger import Ledger
from reference.mpfr import Floats
from reference.problem import PROBS_OP, Problem, divides, mpf_row, restore


@dataclass
class Pass:
    """One evaluation at one precision."""

    output: np.ndarray
    grad: np.ndarray | None
    ledger: Ledger
    ingredients: dict[int, Floats] = field(default_factory=dict)  # row -> its exponentials


def first_precision(problem: Problem) -> int:
    """The working precision of the first pass: ``128 + bits(C)`` bits."""
    return 128 + int(problem.logits.shape[1]).bit_length()


def compute(problem: Problem, want_grad: bool) -> Pass:
    """``problem`` evaluated at the current working precision (the module docstring)."""
    ledger = Ledger()
    ingredients: dict[int, Floats] = {}
    with np.errstate(over="ignore"):  # a bound that overflows is inf: it certifies nothing
        if problem.op in ("softmax", "log_softmax"):
            output, grad = _normalize(problem, want_grad, ledger, ingredients)
        else:
            output, grad = _loss(problem, want_grad, ledger, ingredients)
    return Pass(output, grad, ledger, ingredients)


def _normalize(problem: Problem, want_grad: bool, ledger: Ledger,
               ingredients: dict[int, Floats]) -> tuple[np.ndarray, np.ndarray | None]:
    rows, classes = problem.logits.shape
    outputs = np.empty((rows, classes), dtype=object)
    grads = np.empty((rows, classes), dtype=object)
    for r in range(rows):
        found = mpfr.fast_row(problem, r) if problem.mask is None else None
        if found is not None:
            ingredients[r] = found.floats
            outputs[r], row_grad = mpfr.normalize_row(problem.op, found, ledger, want_grad)
            if want_grad:
                grads[r] = row_grad
            continue
        ledger.fail()
        outputs[r], grads[r] = definitions.normalize_row(
            problem.op, mpf_row(problem.logits, r),
            None if problem.mask is None else problem.mask[r].tolist())
    shape = (*problem.batch_shape, classes)
    output = restore(outputs, shape, problem.class_axis)
    grad = restore(grads, shape, problem.class_axis)
    return output, grad if want_grad else None


def _loss(problem: Problem, want_grad: bool, ledger: Ledger,
          ingredients: dict[int, Floats]) -> tuple[np.ndarray, np.ndarray | None]:
    rows, classes = problem.logits.shape
    denominator = definitions.mean_divisor(problem)
    # The mean's 1 / D is applied inside each row; a zero divisor follows IEEE division
    # (SPEC.md) afterwards, on the unscaled gradient.
    divided = divides(problem.reduction)
    scale = 1 / denominator if divided and denominator != 0 else None
    losses: list[Any] = []  # MPFR numbers from the fast rows, mpf from the others
    bounds = np.zeros(rows)  # E(l_r), where the row has one
    grads = np.empty((rows, classes), dtype=object) if want_grad else None
    weighed = np.zeros(rows, dtype=bool)
    for r in range(rows):
        a = definitions.target_weights(problem, r)
        weighed[r] = bool(a)
        if not a:
            # An ignored row (or one with nothing to weigh) does not depend on x at all:
            # loss 0 and gradient 0, whatever the reduction's divisor.
            losses.append(ZERO)
            if grads is not None:
                grads[r] = [ZERO] * classes
                ledger.exact(classes)
            continue
        found = mpfr.fast_row(problem, r) if problem.op == "cross_entropy" else None
        if problem.op == PROBS_OP:
            found = None
        fast = None if found is None else mpfr.row_loss(
            found, a, scale, ledger, want_grad, mpfr.bounded_coefficients(problem, r))
        if fast is not None:
            assert found is not None
            ingredients[r] = found.floats
            losses.append(fast[0])
            bounds[r] = fast[1]
            if grads is not None:
                grads[r] = fast[2]
            continue
        ledger.fail()
        dense = [a.get(c, ZERO) for c in range(classes)]
        if problem.op == PROBS_OP:
            assert problem.clip is not None
            loss, grad = probabilities.row_loss(mpf_row(problem.logits, r), dense, problem.clip,
                                                problem.prob_target is None)
        else:
            loss, grad = definitions.row_loss(problem.op, mpf_row(problem.logits, r), dense)
        losses.append(loss)
        if grads is not None:
            grads[r] = grad if scale is None else [g * scale for g in grad]
    output = _reduce(problem, losses, bounds, denominator, ledger)
    if grads is None:
        return output, None
    if divided and denominator == 0:  # rows that weigh nothing stay 0
        for row in np.flatnonzero(weighed):
            grads[row] = [definitions.divide(g, denominator) for g in grads[row]]
        ledger.fail()
    return output, restore(grads, (*problem.batch_shape, classes), problem.class_axis)


def _reduce(problem: Problem, losses: list[Any], bounds: np.ndarray, denominator: mpf,
            ledger: Ledger) -> np.ndarray:
    """The reduced loss; its bound goes to the ledger when every row had one."""
    if (mpfr.gmpy2 is None or not ledger.complete
            or (divides(problem.reduction) and denominator == 0)):
        ledger.fail()
        values = [v if isinstance(v, mpf) else mpfr.mpf_of(v) for v in losses]
        return definitions.reduce_losses(problem, values, denominator)
    return mpfr.reduce_losses(problem, losses, bounds, denominator, ledger)
