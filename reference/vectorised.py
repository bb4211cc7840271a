"""The vectorised oracle: whole problems in numpy double-double arithmetic, every element with
a rigorous error bound, accepted only when all of them are decided.

``evaluate`` computes the formulas of ``reference/SPEC.md`` (in the algebraically equal forms
below) on numpy arrays of double-doubles (``reference/double_double.py``: about 100 bits, with
midpoint-radius error bounds), and returns the result only when *every* element's interval
``[v - E, v + E]`` lies inside the rounding interval of one float64 that is no rounding
boundary of the dtype under test (``reference.ledger.decided``, the rule of the MPFR path's
one-pass certificate).  Anything else returns None and the problem goes to the MPFR/mpmath
path (``reference/certify.py``) unchanged: so a result of this module is *certified in the same
sense* as one of that path, and rounds, to float64 and to the dtype, to the same values.

What it takes (a whitelist; ``ineligible`` says why not, and everything it does not name goes
to the MPFR path): ``softmax``, ``log_softmax`` and ``cross_entropy`` with class-index or
probability targets, class weights, label smoothing, ``ignore_index`` and the three
reductions, on a ``Problem`` with exactly the fields it knows (and, among those other
options add, only ``NONE_FIELDS`` left None); every logit a finite float64
below 2**500 in magnitude; weights, probability targets and the smoothing share ``eps / C``
zero or in [2**-300, 2**300] (non-negative: every sum below adds terms of one sign); and,
once computed, every shift ``x_j - m`` at least -600 (``double_double.EXP_MIN``), every
product 0 or above 2**-900 (``double_double.tiny``), and a mean's divisor not zero.

The formulas, for a row with maximum ``m`` at ``top``, ``s_j = x_j - m`` (exact, 2Sum):

* ``e_j = exp(s_j)`` (``exp_dd``), ``T = sum_{j != top} e_j`` (pairwise, ``e_top = 1``),
  ``S = 1 + T``, ``L = log1p(T)`` (from the dd value of ``T``, in mpmath at 256 bits: one call
  per row);
* cross_entropy: ``l = L A + sum_c a_c |s_c|`` (= ``sum_c a_c (L - s_c)``; both sums of
  non-negative terms), ``A = sum_c a_c``, ``a_c = w_c ((1 - eps) q_c + eps / C)`` with
  ``q_c`` the one-hot target or the probabilities; the gradient
  ``g_c = e_c K - a_c / D`` with ``K = A / (S D)`` (a row scalar, in mpmath), except at an
  index target's class without smoothing, where ``g_t = -w_t (S - e_t) / (S D)`` (the same
  number, without the cancellation of ``A p_t - a_t`` when ``p_t`` is near 1);
* softmax ``e_c / S``; log_softmax ``s_c - L`` and its gradient ``1 - C e_c / S``;
* reductions: the pairwise sum of the rows' losses, times ``1 / D`` for the mean (``D`` summed
  exactly, ``1 / D`` rounded to a dd in mpmath).

Every dd operation's error enters the element's radius (``double_double.radius_*``), every
row scalar computed in mpmath enters as its dd rounding (2**-105 relatively) plus the
propagated radii of its dd arguments (first-order formulas, inflated by 1 %, with the
relative radii involved below 2**-80).  Elements known exactly (rows that weigh nothing,
softmax's gradient) have radius 0.  The cost is some 400 numpy operations per logit, in
blocks of ``CHUNK`` elements that stay in the CPU's cache; ``benchmarks/RESULTS.md`` has the
figures.  ``tests/test_oracle_vectorised.py`` checks the primitives' bounds against mpmath,
that this path and the MPFR path round identically (with identical tolerance bounds and
certified flags) on every case of the library and on random problems, and that an
undecided element sends a problem to the MPFR path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from reference import double_double as dd
from reference.formats import FloatFormat, exact
from reference.ledger import decided
from reference.mpfr import Floats
from reference.pairs import ExactPairs, exact_values
from reference.problem import ExactFloats, Problem, restore

ENABLED = True  # False sends every problem to the MPFR path (tests, benchmarks' "before")
OPS = ("cross_entropy", "softmax", "log_softmax")
KNOWN_FIELDS = frozenset({"op", "logits", "batch_shape", "class_axis", "index_target",
                          "prob_target", "weight", "ignore_index", "reduction",
                          "label_smoothing"})
# fields that other options may add to a Problem, taken only when None (the option unused):
# per-row sample weights, a where/mask, clipped probability inputs (issue 20's names)
NONE_FIELDS = frozenset({"sample_weight", "mask", "clip"})
LOGIT_LIMIT = 2.0 ** 500
COEFFICIENT_RANGE = (2.0 ** -300, 2.0 ** 300)
CHUNK = 1 << 15  # elements per block
PRECISION = 106  # a result's working precision: the bits of a double-double (2 x 53)
SCALAR_PRECISION = 256  # mpmath's precision for the row scalars
DD_ROUNDING = 2.0 ** -105  # an mpf rounded to the nearest dd, relatively (with room)
SLACK = 1.01  # first-order radius formulas: the second-order terms, with room


@dataclass(frozen=True)
class Fast:
    """A certified result: exact values (mpf arrays or ``ExactPairs``) and each row's
    float64 ingredients for the tolerance's bounds (``reference/tolerance.py``)."""

    output: Any  # np.ndarray of mpf, or ExactPairs
    grad: Any
    ingredients: dict[int, Floats]


class _Undecided(Exception):
    """Some element is not decided, or some value left the range the bounds hold in."""


def ineligible(problem: Problem) -> str | None:
    """Why ``problem`` is not for this path (None: it is); the module docstring's whitelist,
    before anything is computed."""
    names = {f.name for f in fields(problem)}
    unknown = sorted(name for name in names - KNOWN_FIELDS
                     if not (name in NONE_FIELDS and getattr(problem, name) is None))
    if unknown or not names >= KNOWN_FIELDS:
        return f"a problem with fields {unknown} this path does not know"
    if problem.op not in OPS:
        return f"op {problem.op}"
    x = problem.logits
    if x.dtype != np.float64 or x.size == 0:
        return "logits that are not float64, or none"
    if not (np.isfinite(x).all() and np.abs(x).max() <= LOGIT_LIMIT):
        return "a logit that is not finite or too large"
    if problem.op != "cross_entropy":
        return None
    if problem.weight is not None and not _in_range(_weights(problem)):
        return "a weight outside the range"
    y = problem.prob_target
    if y is not None and (y.dtype != np.float64 or not _in_range(y)):
        return "a probability target outside the range"
    eps = float(problem.label_smoothing)
    if eps and not _in_range(np.array([eps / x.shape[1], eps])):
        return "label smoothing outside the range"
    return None


def _weights(problem: Problem) -> np.ndarray:
    """The class weights as float64, NaN for any that is not exactly a float64."""
    weight = problem.weight
    if isinstance(weight, ExactFloats):
        return weight.floats
    assert weight is not None
    return np.array([float(v) if exact(float(v)) == v else np.nan for v in weight])


def _in_range(values: np.ndarray) -> bool:
    low, high = COEFFICIENT_RANGE
    magnitude = np.abs(values)
    return bool(np.all((values == 0) | ((values > 0) & (magnitude >= low) & (magnitude <= high))))


def evaluate(problem: Problem, fmt: FloatFormat, want_grad: bool) -> Fast | None:
    """``problem`` on this path, or None when it is not eligible or not decided (then it
    goes to the MPFR path)."""
    if not ENABLED or ineligible(problem) is not None:
        return None
    try:
        with np.errstate(all="ignore"), mpmath.workprec(SCALAR_PRECISION):
            return _Evaluation(problem, fmt, want_grad).run()
    except _Undecided:
        return None


# --- row scalars in mpmath -------------------------------------------------------------------


def _to_dd(value: mpf) -> tuple[float, float]:
    high = float(value)
    return high, float(value - exact(high))


def _dd_mpf(high: float, low: float) -> mpf:
    return mpmath.fadd(exact(high), exact(low), exact=True)


def _scalars(values: list[mpf]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [_to_dd(v) for v in values]
    return (np.array([p[0] for p in pairs], dtype=np.float64),
            np.array([p[1] for p in pairs], dtype=np.float64))


class _Evaluation:
    """One problem through this path (module docstring); ``run`` returns the result or raises
    ``_Undecided``."""

    def __init__(self, problem: Problem, fmt: FloatFormat, want_grad: bool) -> None:
        self.problem = problem
        self.fmt = fmt
        self.want_grad = want_grad
        self.rows, self.classes = problem.logits.shape
        self.ingredients: dict[int, Floats] = {}

    def _check(self, h: np.ndarray, lo: np.ndarray, rad: np.ndarray) -> None:
        if not decided(h, lo, rad, self.fmt, sided=True):
            raise _Undecided

    def run(self) -> Fast:
        """The result, from ``exp_quick`` where that decides every element of a block of
        rows and from ``exp_dd`` where not (the whole problem again when a reduced loss is
        undecided); ``_Undecided`` when ``exp_dd`` does not decide either."""
        try:
            return self._run(quick=True)
        except _Undecided:
            return self._run(quick=False)

    def _run(self, quick: bool) -> Fast:
        p = self.problem
        loss = self._loss_setup() if p.op == "cross_entropy" else None
        shape2 = (self.rows, self.classes) if p.op != "cross_entropy" else (0, 0)
        out_h, out_l, out_r = np.empty(shape2), np.empty(shape2), np.empty(shape2)
        shape2 = (self.rows, self.classes) if self.want_grad else (0, 0)
        grad_h, grad_l = np.zeros(shape2), np.zeros(shape2)  # softmax's stay 0, exactly
        block = max(1, CHUNK // self.classes)
        for start in range(0, self.rows, block):
            rows = slice(start, min(start + block, self.rows))
            try:
                values = self._block(rows, loss, quick)
            except _Undecided:
                if not quick:
                    raise
                values = self._block(rows, loss, False)
            if values[0] is not None:
                out_h[rows], out_l[rows], out_r[rows] = values[0]
            if values[1] is not None:
                grad_h[rows], grad_l[rows] = values[1]
        shape = (*p.batch_shape, self.classes)
        if p.op == "cross_entropy":
            assert loss is not None
            output = self._reduce(loss)
        else:
            output = exact_values(restore(out_h, shape, p.class_axis),
                                  restore(out_l, shape, p.class_axis))
        grad = None
        if self.want_grad:
            grad = exact_values(restore(grad_h, shape, p.class_axis),
                                restore(grad_l, shape, p.class_axis))
        return Fast(output, grad, self.ingredients)

    def _block(self, rows: slice, loss: dict[str, Any] | None, quick: bool) -> tuple[Any, Any]:
        row = self._exponentials(rows, quick)
        if self.problem.op == "cross_entropy":
            assert loss is not None
            return self._cross_entropy(rows, row, loss)
        values = self._normalize(row)
        self._check(*values[0])
        return values

    # --- the exponentials of a block of rows ---------------------------------------------

    def _exponentials(self, rows: slice, quick: bool) -> dict[str, Any]:
        x = self.problem.logits[rows]
        n = len(x)
        index = np.arange(n)
        top = np.argmax(x, axis=1)
        peak = x[index, top]
        sh, sl = dd.two_sum(x, -peak[:, None])  # exact: |x| <= 2**500
        if sh.size and sh.min() < dd.EXP_MIN:
            raise _Undecided
        eh, el, rel = (dd.exp_quick if quick else dd.exp_dd)(sh, sl)
        eh[index, top], el[index, top] = 1.0, 0.0  # exp(0), exactly

        th, tl = eh.copy(), el.copy()
        th[index, top] = tl[index, top] = 0.0
        th, tl = _pairwise(th, tl)
        depth = (self.classes - 1).bit_length()
        trad = ((rel + depth * dd.BOUND) * dd.LOOSE * np.abs(th) * SLACK
                + self.classes * dd.FLOOR)
        sh_, sl_ = dd.dd_add_fp(th, tl, np.ones_like(th))
        srad = dd.radius_sum(trad, 0.0, sh_)
        logs = [mpmath.log1p(_dd_mpf(h, lo)) for h, lo in zip(th.tolist(), tl.tolist())]
        lh, ll = _scalars(logs)
        lrad = (trad / (1 + th * (1 - 2.0 ** -50) - trad) * SLACK
                + DD_ROUNDING * np.abs(lh) + dd.FLOOR)
        shifts = np.abs(x - peak[:, None])
        for i in range(n):
            self.ingredients[rows.start + i] = Floats(shifts[i], eh[i], float(sh_[i]),
                                                      float(lh[i]))
        return {"sh": sh, "sl": sl, "eh": eh, "el": el, "rel": np.full(n, rel), "top": top,
                "th": th, "tl": tl, "trad": trad, "Sh": sh_, "Sl": sl_, "Srad": srad,
                "lh": lh, "ll": ll, "lrad": lrad}

    # --- softmax and log_softmax ----------------------------------------------------------

    def _normalize(self, row: dict[str, Any]) -> tuple[Any, Any]:
        inverse = [1 / _dd_mpf(h, lo) for h, lo in zip(row["Sh"].tolist(), row["Sl"].tolist())]
        ih, il = _scalars(inverse)
        irad = ih * (row["Srad"] / row["Sh"]) * SLACK + DD_ROUNDING * ih + dd.FLOOR
        ih, il, irad = ih[:, None], il[:, None], irad[:, None]
        ph, pl = dd.dd_mul(row["eh"], row["el"], ih, il)
        if dd.tiny(ph):
            raise _Undecided
        prad = dd.radius_product(row["eh"], row["rel"][:, None] * dd.LOOSE * np.abs(row["eh"]),
                                 ih, irad, ph)
        if self.problem.op == "softmax":
            return (ph, pl, prad), None  # the gradient: zeros, known exactly
        lh, ll, lrad = row["lh"][:, None], row["ll"][:, None], row["lrad"][:, None]
        oh, ol = dd.dd_add(row["sh"], row["sl"], -lh * np.ones_like(ph), -ll * np.ones_like(ph))
        orad = dd.radius_sum(lrad, 0.0, oh)
        if not self.want_grad:
            return (oh, ol, orad), None
        ch, cl = dd.dd_mul_fp(ph, pl, np.full_like(ph, float(self.classes)))
        crad = dd.radius_product(ph, prad, float(self.classes), 0.0, ch)
        gh, gl = dd.dd_add_fp(-ch, -cl, np.ones_like(ch))
        self._check(gh, gl, dd.radius_sum(crad, 0.0, gh))
        return (oh, ol, orad), (gh, gl)

    # --- cross_entropy --------------------------------------------------------------------

    def _loss_setup(self) -> dict[str, Any]:
        """What every block needs: the coefficients' constants and the mean's divisor."""
        p, classes = self.problem, self.classes
        w = np.ones(classes) if p.weight is None else _weights(p)
        eps = float(p.label_smoothing)
        keep_h, keep_l = (float(v) for v in dd.two_sum(np.array(1.0), np.array(-eps)))
        share_h, share_l = _to_dd(exact(eps) / classes)
        if p.reduction == "mean":
            if p.prob_target is not None:
                divisor = mpf(self.rows)
            else:
                assert p.index_target is not None
                t = np.asarray(p.index_target, dtype=np.int64)
                counted = np.bincount(t[t != p.ignore_index], minlength=classes)
                divisor = mpf(0)
                for c in np.flatnonzero(counted):  # w_c n_c: exact (53 + 63 bits)
                    divisor = mpmath.fadd(divisor, exact(float(w[c])) * int(counted[c]),
                                          exact=True)
            if divisor == 0:
                raise _Undecided  # IEEE division (SPEC.md): the MPFR path's
            inv_h, inv_l = _to_dd(1 / divisor)
        else:
            divisor, inv_h, inv_l = mpf(1), 1.0, 0.0
        # W = sum_c w_c, a pairwise dd sum of non-negative floats: within depth BOUND
        weight_h, weight_l = _pairwise(w[None, :], np.zeros((1, classes)))
        total_weight = _dd_mpf(float(weight_h[0]), float(weight_l[0]))
        beta_h, beta_l = _to_dd(exact(eps) / classes / divisor)
        b_h, b_l = dd.dd_mul_fp(np.full_like(w, beta_h), np.full_like(w, beta_l), w)
        return {"W": total_weight, "W_rel": classes.bit_length() * dd.BOUND * SLACK,
                "b_h": b_h, "b_l": b_l, "b_rel": DD_ROUNDING + dd.BOUND, "w": w,
                "eps": eps, "keep": (keep_h, keep_l), "share": (share_h, share_l),
                "divisor": divisor, "inv": (inv_h, inv_l),
                "inv_rad": DD_ROUNDING * inv_h if p.reduction == "mean" else 0.0,
                "loss_h": np.zeros(self.rows), "loss_l": np.zeros(self.rows),
                "loss_r": np.zeros(self.rows)}

    def _coefficients(self, rows: slice, row: dict[str, Any],
                      setup: dict[str, Any]) -> dict[str, Any]:
        """a_c (dense, or the target's only), A and sum_c a_c |s_c| for a block of rows."""
        p = self.problem
        w, eps = setup["w"], setup["eps"]
        ash, asl = -row["sh"], -row["sl"]  # |s_c|, exact
        if p.prob_target is not None:
            return self._probabilities(p.prob_target[rows], ash, asl, setup)
        assert p.index_target is not None
        t = np.asarray(p.index_target[rows], dtype=np.int64)
        ignored = t == p.ignore_index
        t = np.where(ignored, 0, t)
        index = np.arange(len(t))
        wt = np.where(ignored, 0.0, w[t])
        st_h, st_l = ash[index, t], asl[index, t]
        if not eps:
            mh, ml = dd.dd_mul_fp(st_h, st_l, wt)
            if dd.tiny(mh):
                raise _Undecided
            return {"b": None, "target": t, "wt": wt, "A": (wt, np.zeros_like(wt),
                                                                  np.zeros_like(wt)),
                    "as": (mh, ml, dd.radius_product(st_h, 0.0, wt, 0.0, mh)),
                    "weighs": wt != 0}
        return self._smoothed(row, setup, t, wt, ignored)

    def _probabilities(self, y: np.ndarray, ash: np.ndarray, asl: np.ndarray,
                       setup: dict[str, Any]) -> dict[str, Any]:
        """Probability targets: every term non-negative, so relative bounds compose:
        ``q = (1 - eps) y + eps / C`` within ``2 BOUND + DD_ROUNDING`` (one product, one sum,
        the share's rounding), ``a = w q`` one BOUND more, ``A = sum a`` and
        ``sum a |s|`` ``depth`` (and one) BOUND more, ``b = a / D`` the reciprocal's
        rounding and one BOUND more; ``SLACK`` covers the products of the relative errors."""
        p, eps = self.problem, setup["eps"]
        keep_h, keep_l = setup["keep"]
        share_h, share_l = setup["share"]
        if eps:
            qh, ql = dd.dd_mul_fp(np.full_like(y, keep_h), np.full_like(y, keep_l), y)
            qh, ql = dd.dd_add(qh, ql, np.full_like(y, share_h), np.full_like(y, share_l))
            rel = 2 * dd.BOUND + DD_ROUNDING
        else:
            qh, ql, rel = y, np.zeros_like(y), 0.0
        if p.weight is not None:
            ah, al = dd.dd_mul_fp(qh, ql, np.broadcast_to(setup["w"], qh.shape))
            rel += dd.BOUND
        else:
            ah, al = qh, ql
        if dd.tiny(ah):
            raise _Undecided
        depth = (self.classes - 1).bit_length()
        total_h, total_l = _pairwise(ah, al)
        total_rad = (rel + depth * dd.BOUND) * SLACK * np.abs(total_h) + dd.FLOOR * self.classes
        mh, ml = dd.dd_mul(ah, al, ash, asl)
        if dd.tiny(mh):
            raise _Undecided
        sum_h, sum_l = _pairwise(mh, ml)
        sum_rad = ((rel + (depth + 1) * dd.BOUND) * SLACK * np.abs(sum_h)
                   + dd.FLOOR * self.classes)
        inv_h, inv_l = setup["inv"]
        if p.reduction == "mean" and inv_l == 0 and math.frexp(inv_h)[0] == 0.5:
            bh, bl = ah * inv_h, al * inv_h  # 1 / D a power of two (D = 2**k rows): exact
            if dd.tiny(bh):
                raise _Undecided
        elif p.reduction == "mean":
            bh, bl = dd.dd_mul(ah, al, np.full_like(ah, inv_h), np.full_like(ah, inv_l))
            rel += DD_ROUNDING + dd.BOUND
        else:
            bh, bl = ah, al
        brad = rel * SLACK * np.abs(bh) + dd.FLOOR
        weighs = total_h != 0
        return {"b": (bh, bl, brad), "A": (total_h, total_l, total_rad),
                "as": (sum_h, sum_l, sum_rad), "weighs": weighs}

    def _smoothed(self, row: dict[str, Any], setup: dict[str, Any], t: np.ndarray,
                  wt: np.ndarray, ignored: np.ndarray) -> dict[str, Any]:
        """Index targets with smoothing: ``a_c = w_c eps / C + [c = t] (1 - eps) w_t``, so
        ``A = (eps / C) W + (1 - eps) w_t`` (W = sum_c w_c, exact) and
        ``sum_c a_c |s_c| = (eps / C) M + (1 - eps) w_t |s_t|`` with ``M = sum_c w_c |s_c|``
        (dd products and a pairwise sum, ``(depth + 1) BOUND`` relatively: non-negative
        terms); the row scalars in mpmath from exact inputs and dd values."""
        p, w = self.problem, setup["w"]
        ash, asl = -row["sh"], -row["sl"]
        if p.weight is None:
            mh, ml = ash, asl
        else:
            mh, ml = dd.dd_mul_fp(ash, asl, np.broadcast_to(w, ash.shape))
            if dd.tiny(mh):
                raise _Undecided
        big_m, big_ml = _pairwise(mh, ml)
        m_rel = (self.classes.bit_length() + 1) * dd.BOUND * SLACK
        eps = exact(setup["eps"])
        share, keep = eps / self.classes, 1 - eps  # at 256 bits: within 2**-250
        index = np.arange(len(t))
        totals, sums, radii, total_radii = [], [], [], []
        for i in range(len(t)):
            w_t = exact(float(wt[i]))
            totals.append(share * setup["W"] + keep * w_t)
            total_radii.append(float(share * setup["W"]) * setup["W_rel"])
            term = share * _dd_mpf(big_m[i], big_ml[i])
            rest = keep * w_t * _dd_mpf(ash[i, t[i]], asl[i, t[i]])
            sums.append(term + rest)
            radii.append(float(term) * m_rel)
        total_h, total_l = _scalars(totals)
        sum_h, sum_l = _scalars(sums)
        zero = ignored | (total_h == 0)  # an ignored row weighs nothing, smoothing or not
        for values in (total_h, total_l, sum_h, sum_l):
            values[zero] = 0.0
        total_rad = np.where(zero, 0.0, (np.array(total_radii) + DD_ROUNDING * np.abs(total_h))
                             * SLACK + dd.FLOOR)
        sum_rad = np.where(zero, 0.0, (np.array(radii) + DD_ROUNDING * np.abs(sum_h)) * SLACK
                           + dd.FLOOR)
        # b_c = a_c / D: beta w_c everywhere, plus (1 - eps) w_t / D at the target
        bh = np.broadcast_to(setup["b_h"], ash.shape).copy()
        bl = np.broadcast_to(setup["b_l"], ash.shape).copy()
        divisor = setup["divisor"]
        extra_h, extra_l = _scalars([keep * exact(float(v)) / divisor for v in wt.tolist()])
        bh[index, t], bl[index, t] = dd.dd_add(bh[index, t], bl[index, t], extra_h, extra_l)
        brad = (setup["b_rel"] + dd.BOUND) * np.abs(bh) * SLACK + dd.FLOOR
        bh[zero] = bl[zero] = brad[zero] = 0.0
        return {"b": (bh, bl, brad), "A": (total_h, total_l, total_rad),
                "as": (sum_h, sum_l, sum_rad), "weighs": ~zero}

    def _cross_entropy(self, rows: slice, row: dict[str, Any],
                       setup: dict[str, Any]) -> tuple[Any, Any]:
        a = self._coefficients(rows, row, setup)
        weighs = a["weighs"]
        total_h, total_l, total_rad = a["A"]
        # l = L A + sum_c a_c |s_c|
        lh, ll, lrad = row["lh"], row["ll"], row["lrad"]
        ph, pl = dd.dd_mul(lh, ll, total_h, total_l)
        prad = dd.radius_product(lh, lrad, total_h, total_rad, ph)
        sh_, sl_, srad = a["as"]
        loss_h, loss_l = dd.dd_add(ph, pl, sh_, sl_)
        loss_r = np.where(weighs, dd.radius_sum(prad, srad, loss_h), 0.0)
        if dd.tiny(loss_h):
            raise _Undecided
        setup["loss_h"][rows], setup["loss_l"][rows], setup["loss_r"][rows] = (
            loss_h, loss_l, loss_r)
        if not self.want_grad:
            return None, None
        return None, self._gradient(row, a, setup)

    def _gradient(self, row: dict[str, Any], a: dict[str, Any],
                  setup: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """g_c = e_c K - a_c / D (module docstring), checked block by block."""
        weighs = a["weighs"]
        total_h, total_l, total_rad = a["A"]
        divisor = setup["divisor"]
        big_s = [_dd_mpf(h, lo) for h, lo in zip(row["Sh"].tolist(), row["Sl"].tolist())]
        factors = [_dd_mpf(h, lo) / (s * divisor)
                   for h, lo, s in zip(total_h.tolist(), total_l.tolist(), big_s)]
        kh, kl = _scalars(factors)
        relative = (np.where(weighs, total_rad / np.where(weighs, np.abs(total_h), 1.0), 0.0)
                    + row["Srad"] / row["Sh"])
        # e_c K: the relative errors of e (``rel``), of K and of the product add up (to first
        # order; SLACK covers the rest), one product and one float64 rounding of the radius
        k_rel = relative * SLACK + DD_ROUNDING
        kh_, kl_ = kh[:, None], kl[:, None]
        gh, gl = dd.dd_mul(row["eh"], row["el"], kh_, kl_)
        scale = ((row["rel"] + k_rel + dd.BOUND) * SLACK)[:, None]
        grad_rad = np.abs(gh) * scale + dd.FLOOR
        if a["b"] is not None:
            bh, bl, brad = a["b"]
            gh, gl = dd.dd_add(gh, gl, -bh, -bl)
            grad_rad = dd.radius_sum(grad_rad, brad, gh)
        else:
            self._target_gradient(row, a, big_s, divisor, gh, gl, grad_rad)
        if dd.tiny(gh):
            raise _Undecided
        gh[~weighs] = gl[~weighs] = grad_rad[~weighs] = 0.0
        self._check(gh, gl, grad_rad)
        return gh, gl

    def _target_gradient(self, row: dict[str, Any], a: dict[str, Any], big_s: list[mpf],
                         divisor: mpf, gh: np.ndarray, gl: np.ndarray,
                         grad_rad: np.ndarray) -> None:
        """``g_t = -w_t (S - e_t) / (S D)`` at each index target, in place."""
        t, wt, top = a["target"], a["wt"], row["top"]
        index = np.arange(len(t))
        eth, etl = row["eh"][index, t], row["el"][index, t]
        erad = row["rel"] * dd.LOOSE * np.abs(eth) + dd.FLOOR
        values, radii = [], []
        for i in range(len(t)):
            if t[i] == top[i]:
                rest, rest_rad = _dd_mpf(row["th"][i], row["tl"][i]), row["trad"][i]
            else:
                rest = big_s[i] - _dd_mpf(eth[i], etl[i])
                rest_rad = row["Srad"][i] + erad[i]
            values.append(-exact(float(wt[i])) * rest / (big_s[i] * divisor))
            radii.append(rest_rad / max(float(rest), 1e-300)
                         + row["Srad"][i] / row["Sh"][i])
        vh, vl = _scalars(values)
        gh[index, t], gl[index, t] = vh, vl
        grad_rad[index, t] = (np.abs(vh) * (np.array(radii) * SLACK + DD_ROUNDING)
                              + dd.FLOOR)

    def _reduce(self, setup: dict[str, Any]) -> np.ndarray | ExactPairs:
        p = self.problem
        h, lo, rad = setup["loss_h"], setup["loss_l"], setup["loss_r"]
        if p.reduction == "none":
            self._check(h, lo, rad)
            return exact_values(h.reshape(p.batch_shape), lo.reshape(p.batch_shape))
        total_h, total_l = _pairwise(h[None, :], lo[None, :])
        total_rad = _sum_radius(rad[None, :], total_h, self.rows)
        if p.reduction == "mean":
            inv_h, inv_l = setup["inv"]
            mh, ml = dd.dd_mul(total_h, total_l, np.array([inv_h]), np.array([inv_l]))
            total_rad = dd.radius_product(total_h, total_rad, inv_h, setup["inv_rad"], mh)
            total_h, total_l = mh, ml
        if not setup["loss_h"].any() and not setup["loss_r"].any():
            total_rad = np.zeros(1)  # nothing weighs: exactly 0
        self._check(total_h, total_l, total_rad)
        return exact_values(total_h.reshape(()), total_l.reshape(()))


def _pairwise(h: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The dd sums of the rows of ``(h, lo)`` (2-D), pairwise: ceil(log2 C) levels."""
    while h.shape[1] > 1:
        if h.shape[1] % 2:
            h = np.concatenate([h, np.zeros((len(h), 1))], axis=1)
            lo = np.concatenate([lo, np.zeros((len(lo), 1))], axis=1)
        half = h.shape[1] // 2
        h, lo = dd.dd_add(h[:, :half], lo[:, :half], h[:, half:], lo[:, half:])
    if h.shape[1] == 0:
        return np.zeros(len(h)), np.zeros(len(h))
    return h[:, 0].copy(), lo[:, 0].copy()


def _sum_radius(radii: np.ndarray, total_h: np.ndarray, terms: int) -> np.ndarray:
    """The radius of a pairwise sum of non-negative terms with these radii: theirs, plus
    ``BOUND`` times the partial sums at each of ceil(log2 terms) levels (each at most the
    total, itself within 1 % of the computed one)."""
    depth = (terms - 1).bit_length()
    return ((np.sum(radii, axis=-1) + depth * dd.BOUND * np.abs(total_h) * SLACK) * dd.LOOSE
            + terms * dd.FLOOR)
