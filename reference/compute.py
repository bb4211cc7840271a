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
from fractions import Fraction
from typing import Any

import mpmath
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


def transcendental_elements(problem: Problem, want_grad: bool
                            ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``definitions.transcendental`` by element, shaped like the output and the gradient
    (None where nothing is marked), at the working precision: the elements that can never be
    exactly 0 or a rounding boundary (``reference/certify.py``).  Nothing of nll_loss (or the
    probability inputs' op) is marked.  A reduced
    cross_entropy is marked when no coefficient is negative and some row's loss is
    transcendental: ``sum_r W_r log S_r`` is then positive, a non-zero linear form in
    logarithms of algebraic numbers, which Baker's theorem makes transcendental, and so is the
    sum (plus a rational) and the mean (over a rational).  Nothing is marked where ``where``
    masks classes (those elements are constants; plain agreement decides there, as before)."""
    rows, classes = problem.logits.shape
    if problem.op not in ("softmax", "log_softmax", "cross_entropy") or problem.mask is not None:
        return None, None
    by_class = np.zeros((rows, classes), dtype=object)
    log_type = np.zeros((rows, classes), dtype=object)
    losses = np.zeros(rows, dtype=object)
    signed = False
    for r in range(rows):
        logits = mpf_row(problem.logits, r)
        a = None
        if problem.op == "cross_entropy":
            a = list(definitions.target_weights(problem, r).values())
            signed = signed or any(ac < 0 for ac in a)
            if not a:  # a row that weighs nothing: exact zeros
                continue
        logs, ratios = definitions.transcendental(logits, a)
        finite = [bool(mpmath.isfinite(v)) for v in logits]
        losses[r] = logs
        log_type[r] = [logs and f for f in finite]
        by_class[r] = [ratios and f for f in finite]
    shape = (*problem.batch_shape, classes)
    ratio_marks = restore(by_class, shape, problem.class_axis).astype(bool)
    if problem.op == "softmax":
        return ratio_marks, None
    if problem.op == "log_softmax":
        return (restore(log_type, shape, problem.class_axis).astype(bool),
                ratio_marks if want_grad else None)
    if problem.reduction == "none":
        output = losses.reshape(problem.batch_shape).astype(bool)
    else:
        output = np.array(problem.op == "cross_entropy" and not signed and bool(losses.any()))
    return output, ratio_marks if want_grad else None


def rational(value: mpf) -> Fraction | None:
    """A finite mpf as a Fraction, exactly; None for inf and nan."""
    if not mpmath.isfinite(value):
        return None
    sign, man, exp, _bc = value._mpf_
    magnitude = Fraction(int(man)) * Fraction(2) ** int(exp)
    return -magnitude if sign else magnitude


def exact_coefficients(problem: Problem, r: int) -> list[Fraction] | None:
    """``definitions.target_weights`` of row ``r`` in exact rational arithmetic, by class
    (zeros included; ``where`` masks are not handled); None where an input is not finite."""
    a = _exact_class_coefficients(problem, r)
    if a is None or problem.sample_weight is None:
        return a
    s = rational(problem.sample_weight[r])
    return None if s is None else [s * ac for ac in a]


def _exact_class_coefficients(problem: Problem, r: int) -> list[Fraction] | None:
    """``exact_coefficients`` before the sample weight."""
    classes = problem.logits.shape[1]
    eps = rational(problem.label_smoothing)
    weight = ([Fraction(1)] * classes if problem.weight is None
              else [rational(w) for w in problem.weight])
    if eps is None or any(w is None for w in weight):
        return None
    share = eps / classes
    if problem.prob_target is not None:
        y = [rational(v) for v in mpf_row(problem.prob_target, r)]
        if any(v is None for v in y):
            return None
        return [w * ((1 - eps) * v + share) for w, v in zip(weight, y)]  # type: ignore[operator]
    assert problem.index_target is not None
    t = int(problem.index_target[r])
    if t == problem.ignore_index:
        return [Fraction(0)] * classes
    if not 0 <= t < classes:
        return None
    return [w * (share + (1 - eps) * (c == t)) for c, w in enumerate(weight)]


def rational_gradients(problem: Problem) -> np.ndarray | None:
    """The gradient's elements that are rational, exactly (Fractions; None elsewhere), shaped
    like the gradient: cross_entropy's ``W p_c - a_c`` at a masked logit (``-a_c``), where
    ``W = 0`` (``-a_c``) and in a row whose finite logits are all equal (``W / n - a_c``), and
    nll_loss's ``-a_c``, each times the mean's ``1 / D``; None for the other ops, where ``where``
    masks classes, or for a mean over ``D = 0``.  (Elsewhere the gradient is transcendental:
    ``definitions.transcendental``.)"""
    if problem.op not in ("cross_entropy", "nll_loss") or problem.mask is not None:
        return None
    rows, classes = problem.logits.shape
    scale = Fraction(1)
    if divides(problem.reduction):
        divisor = rational(definitions.mean_divisor(problem))
        if not divisor:
            return None
        scale = 1 / divisor
    exact = np.full((rows, classes), None, dtype=object)
    for r in range(rows):
        a = exact_coefficients(problem, r)
        logits = mpf_row(problem.logits, r)
        if a is None or any(mpmath.isnan(v) or v == mpmath.inf for v in logits):
            continue
        finite = [v for v in logits if mpmath.isfinite(v)]
        weight = sum(a, Fraction(0))
        uniform = bool(finite) and all(v == finite[0] for v in finite)
        for c, (ac, v) in enumerate(zip(a, logits)):
            if problem.op == "nll_loss" or not mpmath.isfinite(v) or weight == 0:
                exact[r, c] = -ac * scale
            elif uniform:
                exact[r, c] = (weight / len(finite) - ac) * scale
    return restore(exact, (*problem.batch_shape, classes), problem.class_axis)


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
