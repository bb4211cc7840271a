"""The definitions of ``reference/SPEC.md``, row by row, in mpmath.

Each function evaluates one formula of SPEC.md literally on exact inputs (``mpf``), at the
current working precision (set by the caller with ``mpmath.workprec``; ``mp.prec`` is never
changed here).  ``reference/mpfr.py`` runs the same formulas on MPFR numbers where it can;
``reference/compute.py`` chooses between the two, row by row.

Why the results are right (the precision argument)
--------------------------------------------------
Each row is shifted by its maximum ``m`` with an *exact* subtraction, so ``s_j = x_j - m <= 0``
carries no error.  From there, at working precision ``p`` (``u = 2**-p``; every operation is
correctly rounded, so each adds a relative error of at most ``u``):

* ``T = sum_{j != argmax} exp(s_j)`` sums positive terms: relative error below ``2u``;
* ``log(sum_j exp(s_j)) = log1p(T)`` keeps that accuracy, even when ``T`` is tiny (a
  dominant target class), which is where ``log(1 + T)`` would lose every digit;
* ``-log p_c = log1p(T) - s_c`` adds two non-negative numbers: no cancellation;
* losses are sums of non-negative terms when weights and targets are non-negative.

The cross-entropy gradient ``W p_c - a_c`` (``W = sum_j a_j``) is evaluated as
``(e_c R_c - a_c Q_c) / S`` with ``R_c = sum_{j != c} a_j`` (from the exact sum of the
``a_j``, rounded once) and ``Q_c = S - e_c = sum_{k != c} exp(s_k)`` (the tail ``T`` at the
maximum, ``>= S / 2`` elsewhere): the same number, but without the subtraction ``p_c - 1``,
which loses every digit when ``p_c`` is within ``2**-p`` of 1 (``x = [0, -446]``, target 0:
``-2.0e-194``).  Each product then carries a few ``u`` of its own size, and they cancel only
where the gradient is genuinely small against them both.

What remains are cancellations (such gradients, ``1 - C p_c``, negative weights) and the
rounding of the result into float64 and the dtype under test, which can be arbitrarily
sensitive near a rounding boundary.  ``reference/ledger.py`` (a-priori bounds, one pass) and
``reference/certify.py`` (Ziv's strategy) decide that a result rounds correctly.
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath
import numpy as np
from mpmath import mpf

from reference.problem import Problem, divides, mpf_row

NAN = mpf("nan")
INF = mpf("inf")
ZERO = mpf(0)
ONE = mpf(1)


def log_softmax_row(row: Sequence[mpf]) -> list[mpf] | None:
    """log_softmax of one row, or None where it is undefined (a NaN or +inf logit, or no
    finite logit at all).  -inf logits are masked classes: log-probability -inf."""
    if any(mpmath.isnan(v) or v == INF for v in row):
        return None
    finite = [j for j, v in enumerate(row) if v != -INF]
    if not finite:
        return None
    top = max(finite, key=lambda j: row[j])
    shifted = [mpmath.fsub(v, row[top], exact=True) if v != -INF else -INF for v in row]
    tail = mpmath.fsum(mpmath.exp(shifted[j]) for j in finite if j != top)
    log_normalizer = mpmath.log1p(tail)
    return [s - log_normalizer if s != -INF else -INF for s in shifted]


def normalize_row(op: str, row: Sequence[mpf],
                  mask: Sequence[bool] | None = None) -> tuple[list[mpf], list[mpf]]:
    """softmax or log_softmax (``op``) of one row, and the gradient of the sum of its
    outputs; NaN throughout where log_softmax is undefined.  ``mask`` (where, SPEC.md): the
    classes that take part; the others (-inf in ``row``) give softmax 0, log_softmax -inf
    and gradient 0, and a row with no class left gives those everywhere."""
    if mask is not None:
        return _masked_normalize_row(op, row, mask)
    classes = len(row)
    log_probs = log_softmax_row(row)
    if log_probs is None:
        return [NAN] * classes, [NAN] * classes
    probs = [mpmath.exp(v) for v in log_probs]
    if op == "softmax":
        return probs, [ZERO] * classes  # d/dx sum(softmax(x)) = d/dx 1 = 0 exactly
    if equal_logits(row):  # p_c = 1 / C: the gradient is exactly 0
        return log_probs, [ZERO] * classes
    return log_probs, [1 - classes * p for p in probs]  # d/dx_k sum_c log p_c


def equal_logits(row: Sequence[mpf]) -> bool:
    """Whether every logit of the row is the same finite number."""
    return all(mpmath.isfinite(v) and v == row[0] for v in row)


def transcendental(row: Sequence[mpf], a: Sequence[mpf] | None = None) -> tuple[bool, bool]:
    """Whether the row's values at its finite logits are transcendental (so never 0, never a
    rounding boundary, which are dyadic rationals): ``(log-type, ratio-type)``.  The first
    covers log_softmax's output and cross_entropy's row loss (coefficients ``a``), the second
    softmax's output, log_softmax's gradient (``a`` None) and cross_entropy's gradient.

    The shifts ``s_j`` are rationals (differences of binary floats), the ``a_c`` rationals.
    By Lindemann-Weierstrass, ``sum_v b_v e^v = 0`` for distinct algebraic ``v`` and algebraic
    ``b_v`` only if every ``b_v`` is 0, and ``log S`` is transcendental for algebraic
    ``S != 1``.  So with two finite logits or more (``S > 1``): ``s_c - log S`` and the loss
    ``W log S - sum_c a_c s_c`` (``W = sum_c a_c != 0``) are transcendental.  Once the finite
    logits are not all equal: ``p_c = r`` would make ``e^{s_c} = r sum_j e^{s_j}``, with a
    non-zero coefficient at a shift other than ``s_c``; so would ``1 - C p_c = r``; and
    ``S (W p_c - a_c - r) = e^{s_c} (...) - (a_c + r) sum_{s_k != s_c} e^{s_k}`` vanishes only
    for ``r = -a_c``, which leaves ``W e^{s_c}``: the gradient is rational only for ``W = 0``.
    Elements at masked (-inf) logits are exact (0, -inf, 1 or ``-a_c``) and are not covered."""
    finite = [v for v in row if mpmath.isfinite(v)]
    weighs = a is None or mpmath.fsum(a) != 0
    spread = len(finite) > 1 and any(v != finite[0] for v in finite)
    return len(finite) > 1 and weighs, spread and weighs


def _masked_normalize_row(op: str, row: Sequence[mpf],
                          mask: Sequence[bool]) -> tuple[list[mpf], list[mpf]]:
    kept = [c for c, keep in enumerate(mask) if keep]
    classes = len(row)
    if not kept:  # no class takes part: JAX's where= gives 0 and -inf, both constants
        return [ZERO if op == "softmax" else -INF] * classes, [ZERO] * classes
    values, grads = normalize_row(op, [row[c] for c in kept])
    out = [ZERO if op == "softmax" else -INF] * classes
    grad = [ZERO] * classes
    for c, value, g in zip(kept, values, grads):
        out[c], grad[c] = value, g
    return out, grad


def target_weights(problem: Problem, r: int) -> dict[int, mpf]:
    """The non-zero ``a_c`` of row ``r`` (SPEC.md): ``w_c * q_c``, times the row's sample
    weight (exactly), and 0 for the classes ``where`` masks."""
    a = _class_target_weights(problem, r)
    if problem.mask is not None:
        a = {c: ac for c, ac in a.items() if problem.mask[r, c]}
    if problem.sample_weight is not None:
        s = problem.sample_weight[r]
        a = {c: mpmath.fmul(s, ac, exact=True) for c, ac in a.items()}
    return {c: ac for c, ac in a.items() if ac != 0}


def _class_target_weights(problem: Problem, r: int) -> dict[int, mpf]:
    """``a_c = w_c * q_c`` of row ``r``, before the sample weight and the mask."""
    classes = problem.logits.shape[1]
    weight = problem.weight
    eps = problem.label_smoothing
    if problem.prob_target is not None:
        keep, share = 1 - eps, eps / classes
        q = [keep * y + share for y in mpf_row(problem.prob_target, r)]
        products = q if weight is None else [w * qc for w, qc in zip(weight, q)]
        return {c: ac for c, ac in enumerate(products) if ac != 0}
    assert problem.index_target is not None
    t = problem.index_target[r]
    if t == problem.ignore_index:
        return {}
    if eps == 0:  # the common case, without C multiplications of zero
        a = {t: ONE if weight is None else weight[t]}
    else:
        share = eps / classes
        a = dict(enumerate([share] * classes if weight is None else [share * w for w in weight]))
        a[t] += (1 - eps) * (ONE if weight is None else weight[t])
    return {c: ac for c, ac in a.items() if ac != 0}


def mean_divisor(problem: Problem) -> mpf:
    """The divisor ``D = sum_r d_r`` of the reduction (SPEC.md), exactly."""
    total = ZERO
    for r in range(problem.logits.shape[0]):
        total = mpmath.fadd(total, divisor_share(problem, r), exact=True)
    return total


def divisor_share(problem: Problem, r: int) -> mpf:
    """Row ``r``'s share ``d_r`` of the reduction's divisor (SPEC.md, Reduction)."""
    kept = problem.prob_target is not None or (
        problem.index_target is not None and problem.index_target[r] != problem.ignore_index)
    if not kept:
        return ZERO
    reduction = problem.reduction
    if reduction == "mean":
        if problem.index_target is None:
            return ONE  # probability targets: the number of rows
        return ONE if problem.weight is None else problem.weight[problem.index_target[r]]
    s = ONE if problem.sample_weight is None else problem.sample_weight[r]
    if reduction == "mean_with_sample_weight":
        return s
    if reduction == "sum_by_nonzero_weights":
        return ONE if s != 0 else ZERO
    return ONE  # sum_over_batch_size: the kept rows (none and sum do not divide)


def row_loss(op: str, row: Sequence[mpf], a: list[mpf]) -> tuple[mpf, list[mpf]]:
    """``l = sum_c a_c * (-log p_c)`` with ``0 * log 0 = 0``, and ``dl/dx = A p - a``."""
    classes = len(row)
    if op == "nll_loss":  # the row already holds log-probabilities
        terms = [-ac * v for ac, v in zip(a, row) if ac != 0]
        return mpmath.fsum(terms), [-ac for ac in a]
    log_probs = log_softmax_row(row)
    if log_probs is None:
        return NAN, [NAN] * classes
    loss = mpmath.fsum(-ac * lp for ac, lp in zip(a, log_probs) if ac != 0)
    return loss, loss_gradient(row, a)


def loss_gradient(row: Sequence[mpf], a: Sequence[mpf]) -> list[mpf]:
    """``W p_c - a_c`` as ``(e_c R_c - a_c Q_c) / S`` (the module docstring), for a row where
    log_softmax is defined: ``R_c = W - a_c`` rounded once from the exact ``W``,
    ``Q_c = sum_{k != c} e_k`` (the tail at the maximum, ``S - e_c >= S / 2`` elsewhere)."""
    finite = [j for j, v in enumerate(row) if v != -INF]
    top = max(finite, key=lambda j: row[j])
    exps = [mpmath.exp(mpmath.fsub(v, row[top], exact=True)) if v != -INF else ZERO
            for v in row]
    exps[top] = ONE
    tail = mpmath.fsum(e for j, e in enumerate(exps) if j != top)
    total = 1 + tail
    weight = ZERO
    for ac in a:  # exactly
        weight = mpmath.fadd(weight, ac, exact=True)
    grad = []
    for c, ac in enumerate(a):
        if ac == 0:
            grad.append(exps[c] * weight / total)
            continue
        rest = tail if c == top else total - exps[c]
        grad.append((exps[c] * (weight - ac) - ac * rest) / total)
    return grad


def reduce_losses(problem: Problem, losses: list[mpf], denominator: mpf) -> np.ndarray:
    """The row losses reduced as ``problem.reduction`` says (``denominator``: the mean's D)."""
    if problem.reduction == "none":
        return np.array(losses, dtype=object).reshape(problem.batch_shape)
    total = mpmath.fsum(losses)
    if not divides(problem.reduction):
        return np.array(total, dtype=object)
    # A zero divisor follows IEEE division (SPEC.md): 0 / 0 is NaN, x / 0 is +-inf.
    return np.array(divide(total, denominator), dtype=object)


def divide(value: mpf, denominator: mpf) -> mpf:
    """``value / denominator`` with IEEE's rules for a zero divisor: NaN for 0 / 0 (or NaN),
    +-inf otherwise (the divisor is a sum of weights, taken as +0)."""
    if denominator != 0:
        return value / denominator
    if value == 0 or mpmath.isnan(value):
        return NAN
    return INF if value > 0 else -INF
