"""The error bounds of a max-shifted evaluation in the dtype under test: the ingredients of
the tolerance policy.

``conformance/judge/compare.py`` derives the bound and documents it; this module evaluates it for
one prepared problem in one dtype (``problem_bounds``; ``reference.oracle.error_bounds`` is
its public door).  The ingredients come from the exact inputs: the shifts s_j = x_j - m are
exact, exp(s_j), their sum S and L = log S are computed at the oracle's first working
precision (``mpfr.row_exponentials``: ``reference.oracle.evaluate`` passes its first pass's
values on), never in a float format, so an element's bound does not inherit the errors it is
meant to judge.  Each ingredient is then rounded once to float64 (relative error 2**-53) and
the bound, a sum of products of non-negative terms (about twenty float64 operations, each
adding at most 2**-53 relative error), is assembled with numpy and finally multiplied by
INFLATION = 1 + 2**-40, so the float64 bound is never below the formula evaluated exactly on
the exact ingredients.  Units: u is the dtype's unit roundoff 2**-p and eta its smallest
subnormal (the absolute error of one rounding that underflows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from reference import probabilities
from reference.compute import first_precision
from reference.definitions import divisor_share
from reference.formats import FloatFormat, exact
from reference.mpfr import Floats, row_exponentials
from reference.problem import PROBS_OP, Problem, divides, float_row, restore, weight_floats

INFLATION = 1 + 2.0 ** -40


@dataclass(frozen=True)
class _RowTerms:
    """One row's ingredients as float64 arrays (``masked``: -inf logits, where p = 0 and
    log p = -inf exactly) and the error bound of the computed log-normalizer."""

    s: np.ndarray  # |x_j - m|
    p: np.ndarray  # softmax
    lp: np.ndarray  # |log softmax|
    masked: np.ndarray
    lam: float  # |L^ - L| <= lam * u
    pi: np.ndarray  # |p^_j - p_j| <= pi_j * u * p_j (+ eta / 2)


def _sum_depth(terms: int, nonzero: int) -> int:
    """``c``: the most roundings one term meets in a pairwise (or blocked) sum of ``terms``
    numbers of which ``nonzero`` are not zero: ceil(log2 terms), and no more than
    ``nonzero - 1`` (adding an exact zero does not round)."""
    if nonzero <= 1:
        return 0
    return min((terms - 1).bit_length(), nonzero - 1)


def _row_terms(x: np.ndarray, u: float, eta: float, found: Floats | None) -> _RowTerms | None:
    """The ingredients of row ``x`` (float64 logits); ``found``: its exponentials, when the
    oracle's first pass has them."""
    if np.isnan(x).any() or (x == np.inf).any():
        return None
    masked = x == -np.inf
    if masked.all():
        return None
    top = int(np.argmax(np.where(masked, -np.inf, x)))
    # |x_j - m| to float64 (an IEEE subtraction is the exact difference, correctly rounded)
    s = np.where(masked, 0.0, np.abs(x - x[top]))
    if found is None:
        found = _bound_exponentials(x[~masked])
    p = np.zeros(len(x))
    p[~masked] = found.e
    total_f, log_total = found.total, found.log_total
    p /= total_f
    lp = np.where(masked, 0.0, s + log_total)  # |s_j - L| = |s_j| + L (s_j <= 0 <= L)
    sigma = float(np.sum(_times_probability(p, s)))
    count = int((~masked).sum())
    lam = log_total + sigma + _sum_depth(count, count) + 1 + count * eta / (2 * u * total_f)
    pi = np.where(masked, 0.0, s + lam + lp + 1)
    return _RowTerms(s, p, lp, masked, lam, pi)


def _times_probability(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``p * q`` where ``p > 0``, and 0 where ``p == 0``: where ``q`` (a shift ``s_j``, or a
    term that contains it) is inf, ``0 * inf`` would be NaN.

    A float64 ``p_j = e_j / S`` (S >= 1) is 0 only where it underflowed, so the exact
    ``p_j = exp(-s_j) / S`` is below 2**-1073 and ``s_j > 700`` (or ``s_j`` overflowed
    float64: the shift of two logits near the float64 maximum). Every ``q_j`` here is at most
    ``2 s_j + lam + 3``, and ``s exp(-s)`` decreases, so the exact ``p_j q_j`` is below
    2**-1050: the term dropped is far below the bound's absolute ``eta`` (times u) and below
    the ``INFLATION`` margin (2**-40 of ``lam >= 1`` in sigma), as it already was where a
    finite ``s_j``'s float64 product is 0. Dropping it keeps the bound rigorous."""
    out = np.zeros(np.broadcast_shapes(np.shape(p), np.shape(q)))
    np.multiply(p, q, out=out, where=p > 0)
    return out


def _bound_exponentials(logits: np.ndarray) -> Floats:
    """exp(x_j - m) of finite logits (exact shifts), their sum S and L = log S at the working
    precision, each rounded once to float64: those of the oracle's MPFR rows, or mpmath's."""
    found = row_exponentials(logits)
    if found is not None:
        return found.floats
    from mpmath.libmp import from_float, mpf_exp, mpf_log, mpf_sub, mpf_sum, round_nearest

    prec = mpmath.mp.prec
    peak = from_float(float(np.max(logits)))
    exps = [mpf_exp(mpf_sub(from_float(v), peak), prec, round_nearest) for v in logits.tolist()]
    total = mpf_sum(exps, prec, round_nearest)
    e = np.array([float(mpmath.mp.make_mpf(v)) for v in exps], dtype=np.float64)
    return Floats(np.abs(logits - np.max(logits)), e, float(mpmath.mp.make_mpf(total)),
                   float(mpmath.mp.make_mpf(mpf_log(total, prec, round_nearest))))


def _coefficients(problem: Problem, r: int, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """``definitions.target_weights`` in float64 (``weight``: the class weights, ones when
    there are none): ``a_c`` to within a few float64 roundings (exact for index targets
    without smoothing), and the row's share of the mean's divisor."""
    a, share = _class_coefficients(problem, r, weight)
    if problem.mask is not None:
        a = np.where(problem.mask[r], a, 0.0)
    if problem.sample_weight is not None:
        a = a * float(problem.sample_weight[r])
    if problem.reduction != "mean":  # the named reductions' shares (SPEC.md, Reduction)
        share = float(divisor_share(problem, r))
    return a, share


def _class_coefficients(problem: Problem, r: int, weight: np.ndarray) -> tuple[np.ndarray, float]:
    classes = problem.logits.shape[1]
    eps = float(problem.label_smoothing)
    if problem.prob_target is not None:
        y = float_row(problem.prob_target, r)
        return weight * ((1 - eps) * y + eps / classes), 1.0
    assert problem.index_target is not None
    t = int(problem.index_target[r])
    if t == problem.ignore_index:
        return np.zeros(classes), 0.0
    a = weight * (eps / classes) if eps else np.zeros(classes)
    a[t] += (1 - eps) * weight[t]
    return a, float(weight[t])


def problem_bounds(problem: Problem, fmt: FloatFormat, want_grad: bool,
                   found: dict[int, Floats]) -> tuple[np.ndarray, np.ndarray | None]:
    """The bounds of ``reference.oracle.error_bounds`` for a prepared problem; ``found``: the
    exponentials of the rows the first pass has (by row), the others are computed here."""
    u, eta = fmt.unit_roundoff, fmt.smallest_subnormal
    with mpmath.workprec(first_precision(problem)), np.errstate(over="ignore"):
        if problem.op in ("softmax", "log_softmax"):
            output, grad = _normalize_bounds(problem, u, eta, found)
        else:
            output, grad = _loss_bounds(problem, u, eta, found)
    output = np.nan_to_num(output * INFLATION, nan=0.0, posinf=np.inf)
    grad = np.nan_to_num(grad * INFLATION, nan=0.0, posinf=np.inf)
    return output, grad if want_grad else None


def _normalize_bounds(problem: Problem, u: float, eta: float,
                      found: dict[int, Floats]) -> tuple[np.ndarray, np.ndarray]:
    rows, classes = problem.logits.shape
    outputs = np.zeros((rows, classes))
    grads = np.zeros((rows, classes))
    for r in range(rows):
        terms = _row_terms(float_row(problem.logits, r), u, eta, found.get(r))
        if terms is None:  # NaN outputs: compared as special values, no bound needed
            continue
        p, pi = terms.p, terms.pi
        if problem.op == "softmax":
            p_pi = _times_probability(p, pi)
            outputs[r] = u * p_pi + eta
            # sum_c softmax = 1: the backward's p_k * (1 - sum_j p^_j) is all rounding error
            spread = float(np.sum(p_pi)) + _sum_depth(classes, classes) + 1
            grads[r] = u * p * spread + p * classes * eta / 2 + eta
        else:
            outputs[r] = np.where(terms.masked, eta, u * (terms.s + terms.lam + terms.lp) + eta)
            # with a class mask (where) only the kept classes enter the sum: C' of them
            count = classes if problem.mask is None else int(problem.mask[r].sum())
            grads[r] = u * (count * _times_probability(p, pi + 2) + np.abs(1 - count * p)) \
                + count * eta / 2 + eta
            if problem.mask is not None:
                grads[r] = np.where(problem.mask[r], grads[r], eta)
    shape = (*problem.batch_shape, classes)
    return (restore(outputs, shape, problem.class_axis),
            restore(grads, shape, problem.class_axis))


def _loss_bounds(problem: Problem, u: float, eta: float,
                 found: dict[int, Floats]) -> tuple[np.ndarray, np.ndarray]:
    rows, classes = problem.logits.shape
    found_weights = weight_floats(problem.weight)
    weight = np.ones(classes) if found_weights is None else found_weights
    losses = np.zeros(rows)  # sum_c |a_c| |log p_c|  (= |l_r| for non-negative a)
    row_bounds = np.zeros(rows)  # beta_r
    shares = np.zeros(rows)  # d_r
    row_data: list[tuple[np.ndarray, Any] | None] = []
    for r in range(rows):
        a, shares[r] = _coefficients(problem, r, weight)
        row = float_row(problem.logits, r)
        if not a.any():  # an ignored row: exactly 0, value and gradient
            row_data.append(None)
            continue
        nonzero = a != 0
        if problem.op == PROBS_OP:  # reference/probabilities.py
            assert problem.clip is not None
            clip = (float(problem.clip[0]), float(problem.clip[1]))
            losses[r], row_bounds[r], grad_bound = probabilities.row_bounds(
                row, a, clip, problem.prob_target is None, u, eta)
            row_data.append((a, grad_bound))
            continue
        if problem.op == "nll_loss":  # l = -w_t * L_t: one product
            with np.errstate(invalid="ignore"):
                values = np.abs(row)
                losses[r] = float(np.sum(np.abs(a[nonzero]) * values[nonzero]))
            row_bounds[r] = u * losses[r] + eta
            row_data.append((a, None))
            continue
        terms = _row_terms(row, u, eta, found.get(r))
        if terms is None:
            losses[r] = row_bounds[r] = np.nan
            row_data.append((a, None))
            continue
        weights = np.abs(a[nonzero])
        with np.errstate(invalid="ignore"):
            losses[r] = float(np.sum(weights * np.where(terms.masked, np.inf, terms.lp)[nonzero]))
            shifted = float(np.sum(weights * (np.where(terms.masked, np.inf, terms.s)
                                              + terms.lam + terms.lp)[nonzero]))
        depth = _sum_depth(classes, int(nonzero.sum()))
        row_bounds[r] = u * (shifted + (depth + 3) * losses[r]) + eta * (nonzero.sum() + 1)
        row_data.append((a, terms))
    output, divisor, divisor_error = _reduce_bounds(problem, losses, row_bounds, shares, u, eta)
    grads = np.zeros((rows, classes))
    for r, data in enumerate(row_data):
        if data is None:
            grads[r] = eta
            continue
        a, terms = data
        if divisor == 0:  # mean over nothing: NaN gradients, compared as special values
            continue
        if problem.op == PROBS_OP:
            assert isinstance(terms, np.ndarray)
            grads[r] = terms * (1 + u * divisor_error) / abs(divisor) + eta
            continue
        if problem.op == "nll_loss":  # g_k = -a_k / D: one division, and D's own error
            grads[r] = u * (1 + divisor_error) * np.abs(a) / abs(divisor) + eta
            continue
        if terms is None:  # an undefined row: NaN gradients
            continue
        assert isinstance(terms, _RowTerms)
        total, total_abs = float(np.sum(a)), float(np.sum(np.abs(a)))
        depth = _sum_depth(classes, int((a != 0).sum()))
        scale = 1 / abs(divisor)
        p = terms.p
        g = np.abs(total * p - a) * scale
        b = (abs(total) * _times_probability(p, terms.pi + 1)
             + (depth + 2 + divisor_error) * (total_abs * p + np.abs(a))) * scale + g
        grads[r] = u * b + eta * (total_abs * scale / 2 + 1)
    shape = (*problem.batch_shape, classes)
    return output, restore(grads, shape, problem.class_axis)


def _reduce_bounds(problem: Problem, losses: np.ndarray, row_bounds: np.ndarray,
                   shares: np.ndarray, u: float, eta: float) -> tuple[np.ndarray, float, float]:
    """The reduced output's bound, the mean's divisor D (1 for none and sum) and the error of
    D plus that of the division, in units of u (0 for none and sum)."""
    rows = len(losses)
    if problem.reduction == "none":
        return row_bounds.reshape(problem.batch_shape), 1.0, 0.0
    nonzero = int(np.count_nonzero(losses))
    summed = float(np.sum(row_bounds)) + u * _sum_depth(rows, nonzero) * float(np.sum(losses))
    if not divides(problem.reduction):
        return np.array(summed + eta), 1.0, 0.0
    if rows == 0:
        return np.array(0.0), 0.0, 0.0
    if problem.prob_target is not None and problem.reduction == "mean":
        divisor, divisor_error = float(rows), 1.0
    else:
        divisor = float(mpmath.fsum(exact(float(d)) for d in shares))  # exact sum, rounded
        if divisor == 0:
            return np.array(0.0), 0.0, 0.0
        counted = int(np.count_nonzero(shares))
        divisor_error = (_sum_depth(rows, counted) * float(np.sum(np.abs(shares)))
                         / abs(divisor) + 1)
    # the mean's own rounding, with |mean| <= sum_r |l_r| / |D|
    mean_abs = float(np.sum(losses)) / abs(divisor)
    bound = summed / abs(divisor) + u * divisor_error * mean_abs + eta
    return np.array(bound), divisor, divisor_error
