"""The oracle of ``linear_cross_entropy``: cross_entropy of exact logits ``z = x W^T + b``.

Definition (``reference/SPEC.md``, "linear_cross_entropy"): the logits ``z = input @
linear_weight^T + linear_bias`` are computed exactly from the dtype-rounded inputs, then
``cross_entropy(z, target, ...)`` exactly as for that op.  The gradients are those of the sum
of the outputs with respect to ``input`` (``grad``), ``linear_weight`` (``grad_linear_weight``)
and ``linear_bias`` (``grad_linear_bias``): with ``g = d(out)/dz`` (cross_entropy's gradient),
``grad = g W``, ``grad_linear_weight = g^T x`` and ``grad_linear_bias = sum_n g_n``.

How each value is known (every element carries a rigorous bound ``E`` of its distance to the
exact value, and is accepted when ``[v - E, v + E]`` lies inside one rounding interval of
float64 and of the dtype under test, the rule of ``reference/ledger.py``):

1. **Logits** (``_logits``): every product ``x_d W_cd`` is an exact float64 (or the exact sum
   of two or four, ``reference/eft.py``), and each length-``D`` sum (plus ``b_c``) is carried
   by TwoSum trees: ``z_c = zh + zl`` within ``ez = 1.02 K L u**2 sum_d |x_d W_cd| + K eta``
   (``K`` terms, ``L`` levels; about ``2**-96`` relative for ``D = 256``).
2. **Rows** (``_row``), in MPFR at ``p = 128 + bits(C)`` bits (``u_p = 2**-p``): ``z^_c =
   RN_p(zh + zl)``, ``s_c = RN_p(z^_c - z^_top)``, ``e_c = exp(s_c)``, ``S = sum e``, ``L = log
   S``.  The computed shifts are the exact shifts of logits ``z'`` with ``|z' - z| <= Delta =
   (2 max_c(ez_c + u_p |z_c|) + u_p max_c |s_c|) (1 + 2**-40)`` (a common shift is free:
   cross_entropy and its gradient are shift invariant).  From there, with ``abar_c =
   |w_c| ((1 - eps) |y_c| + eps / C)`` bounding the coefficients whatever their signs
   (``|a^_c - a_c| <= 4 u_p abar_c``; ``y_c`` the target's share) and ``sigma`` the mean's
   ``1/D`` (1 otherwise):

   * loss ``l = sum_c a_c (L - s_c)``: its gradient in ``z`` has ``sum_c |A p_c - a_c| <=
     2 sum abar`` everywhere, so ``z'`` costs ``2 Delta sum abar``; the MPFR roundings cost
     ``16 u_p sum_c abar_c (L + |s_c| + 2)`` (``reference/mpfr.py``'s bound with ``abar``)
     and the sum ``2 u_p |l|``;
   * ``g_c = sigma (A p_c - a_c)``, computed ``e_c K - a_c sigma`` with ``K = A sigma / S``:
     ``p'_c = p_c (1 + r)``, ``|r| <= 2.1 Delta``; ``A`` (a sum of ``a^``) errs by ``5 u_p
     sum abar``, ``K`` carries three more roundings, the product one, ``a_c sigma`` two, the
     difference one: ``E(g_c) = |sigma| (pbar_c sum abar (2.1 Delta + 16 u_p) + 8 u_p abar_c)
     + 2 u_p |g_c| + eta``, ``pbar_c`` an upper bound of ``p_c``;
   * ``g_c = gh + gl`` (``gh = RN_53(g)``, ``gl = RN_53(g - gh)``, the difference exact in
     MPFR) adds ``2**-106 |g_c| + eta``.
3. **Gradients**: ``grad_linear_bias_c = sum_n (gh + gl)``, ``grad = (gh + gl) W`` and
   ``grad_linear_weight = (gh + gl)^T x`` are certified sums of exact products (``gh`` split in
   two 26-bit halves, ``gl * w`` rounded once: ``u |gl w| + eta``), to which the propagated
   errors ``E(g) |W|`` (resp. ``E(g)^T |x|``, ``sum_n E(g)``) are added (float64 products of
   non-negative numbers, inflated by ``1 + 2**-30``).
4. **Reductions**: ``sum`` is one correctly rounded MPFR sum (``sum_r E(l_r) + 2 u_p
   sum|l_r|``), ``mean`` divides it by the exact divisor (``E / |D| + 2 u_p |mean|``).

Rows that weigh nothing (ignored targets) are exactly 0 in loss and ``g``, and so is every
gradient element whose terms are all exact zeros (a zero hidden column, an empty batch).  A
mean over a zero divisor follows cross_entropy's IEEE convention: NaN loss, zero gradients of
the rows that weigh nothing, and ``g / 0`` through the same sums elsewhere (IEEE arithmetic:
``+-inf``, NaN where signs meet or ``inf * 0`` occurs).  An element the bounds leave undecided
is counted in ``LinearResult.undecided`` and the result is then not ``certified``.

The inputs must be finite float64 values below ``eft.MAX_MAGNITUDE`` in magnitude
(``OracleDomainError`` otherwise), and gmpy2 (MPFR) must be installed.

The tolerance (``_tolerance``; derived in ``conformance/judge/compare.py``) is returned beside
the values: ``bound`` for an evaluation that accumulates each logit's dot product in float32
(float64 for float64) and never rounds logits to the dtype, ``materialised_bound`` for one
that also rounds every logit to the dtype before the softmax.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from reference import definitions, eft
from reference.formats import FloatFormat, get_format, round_float64_array, round_to_format
from reference.mpfr import Floats, gmpy2, mpf_of, mpfr_of
from reference.problem import OracleDomainError, Problem, prepare
from reference.tolerance import INFLATION, _sum_depth, problem_bounds

OP = "linear_cross_entropy"
QUANTITIES = ("output", "grad", "grad_linear_weight", "grad_linear_bias")
CHUNK_ELEMENTS = 1 << 22  # float64 terms held at once by one chunk of a certified sum
LOOSE = 1 + 2.0 ** -40  # float64 bookkeeping of a bound, rounded a few times
MATMUL_LOOSE = 1 + 2.0 ** -30  # a float64 matmul of non-negative numbers, as an upper bound
MAX_PRECISION = 4096  # the refinement's last precision (as reference/certify.py's)
MAX_REFINED_PRODUCTS = 20_000_000  # exact products the refinement may spend on logits


@dataclass(frozen=True)
class Quantity:
    """One quantity's values: ``nearest`` the float64 nearest to each exact value,
    ``residual`` the exact value minus ``nearest`` (to within the certified bound, far below
    float64's resolution), and the tolerance's bounds (K = 1, float64, shaped alike)."""

    nearest: np.ndarray
    residual: np.ndarray
    bound: np.ndarray
    materialised_bound: np.ndarray


@dataclass(frozen=True)
class LinearResult:
    """The four quantities (``grad`` and the weight and bias gradients when asked for;
    ``grad_linear_bias`` only with a bias), the MPFR precision of the row pass, whether every
    element's rounding is certified, and how many elements were left undecided."""

    quantities: dict[str, Quantity]
    precision: int
    certified: bool
    undecided: int = 0


@dataclass(frozen=True)
class LinearProblem:
    """The inputs, exactly: hidden rows (R x D), the weight (C x D), the bias (C,) or None,
    and the cross_entropy problem of the logits' shape (targets, weights, options)."""

    hidden: np.ndarray
    matrix: np.ndarray
    bias: np.ndarray | None
    input_shape: tuple[int, ...]
    ce: Problem


def _finite_array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.asarray([float(v) for v in np.asarray(values, dtype=object).reshape(-1)],
                           dtype=np.float64).reshape(np.shape(values))
    if not np.isfinite(array).all():
        raise OracleDomainError(f"linear_cross_entropy takes finite {name} values (a value "
                                "that overflows the dtype rounds to infinity)", name)
    if array.size and np.abs(array).max() >= eft.MAX_MAGNITUDE:
        raise OracleDomainError(f"{name} has a value of magnitude 2**480 or more, outside "
                                "the range of the oracle's exact products", name)
    return array


def prepare_linear(input: Any, linear_weight: Any, linear_bias: Any, target: Any,
                   weight: Sequence[float] | None, ignore_index: int, reduction: str,
                   label_smoothing: float) -> LinearProblem:
    """The problem, every number exactly as given; ``OracleDomainError`` (naming the argument)
    where the op is not defined."""
    x = _finite_array(input, "input")
    if x.ndim not in (1, 2):
        raise OracleDomainError(f"input must be (N, D) or (D,), got shape {x.shape}")
    w = _finite_array(linear_weight, "linear_weight")
    if w.ndim != 2 or w.shape[0] == 0:
        raise OracleDomainError(f"linear_weight must be (C, D) with C >= 1, got shape "
                                f"{w.shape}", "linear_weight")
    if w.shape[1] != x.shape[-1]:
        raise OracleDomainError(f"linear_weight has {w.shape[1]} columns for an input of "
                                f"{x.shape[-1]} features", "linear_weight")
    bias = None
    if linear_bias is not None:
        bias = _finite_array(linear_bias, "linear_bias")
        if bias.shape != (w.shape[0],):
            raise OracleDomainError(f"linear_bias has shape {bias.shape}; expected "
                                    f"({w.shape[0]},)", "linear_bias")
    classes = w.shape[0]
    logits_shape = (classes,) if x.ndim == 1 else (x.shape[0], classes)
    ce = prepare("cross_entropy", np.zeros(logits_shape), target, weight, ignore_index,
                 reduction, label_smoothing)
    return LinearProblem(x.reshape(-1, x.shape[-1]), w, bias, tuple(x.shape), ce)


def check_linear_inputs(input: Any, *, linear_weight: Any, linear_bias: Any = None,
                        target: Any = None, weight: Sequence[float] | None = None,
                        ignore_index: int = -100, reduction: str = "mean",
                        label_smoothing: float = 0.0) -> None:
    """Raise ``OracleDomainError`` where ``evaluate_linear`` would, computing nothing."""
    prepare_linear(input, linear_weight, linear_bias, target, weight, ignore_index, reduction,
                   label_smoothing)


# --- step 1: the logits ---------------------------------------------------------------------


def _logits(problem: LinearProblem) -> eft.CertifiedSum:
    """``z = x W^T + b`` as certified sums, (R, C)."""
    x, w, b = problem.hidden, problem.matrix, problem.bias
    rows, features = x.shape
    classes = w.shape[0]
    x_bits, w_bits = eft.significant_bits(x), eft.significant_bits(w)
    parts = len(eft.product_terms(np.ones(1), x_bits, np.ones(1), w_bits))
    step = max(1, CHUNK_ELEMENTS // max(1, rows * features * parts))
    chunks = []
    for start in range(0, classes, step):
        block = w[start:start + step]
        # terms shaped (features * parts, rows, block)
        products = eft.product_terms(x.T[:, :, None], x_bits, block.T[:, None, :], w_bits)
        chunk = eft.SumOfTerms((rows, block.shape[0]))
        chunk.add(np.concatenate(products, axis=0))
        if b is not None:
            chunk.add(np.broadcast_to(b[start:start + step], (1, rows, block.shape[0])))
        chunks.append(chunk.result())
    return _join_columns(chunks)


def _join_columns(chunks: list[eft.CertifiedSum]) -> eft.CertifiedSum:
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(c, name) for c in chunks], axis=1)

    return eft.CertifiedSum(cat("high"), cat("low"), cat("bound"), cat("magnitude"))


# --- step 2: one row in MPFR ----------------------------------------------------------------


@dataclass
class _Row:
    loss: Any  # an MPFR number (0 for a row that weighs nothing)
    loss_bound: float
    g_high: np.ndarray
    g_low: np.ndarray
    g_bound: np.ndarray
    floats: Floats | None  # the exponentials in float64, for the tolerance


def _coefficient_bounds(ce: Problem, r: int, classes: int) -> np.ndarray:
    """``abar_c = |w_c| ((1 - eps) |y_c| + eps / C)``, rounded up (module docstring)."""
    weight = (np.ones(classes) if ce.weight is None
              else np.abs(np.array([float(w) for w in ce.weight])))
    eps = float(ce.label_smoothing)
    if ce.prob_target is not None:
        share = np.abs(np.asarray([float(y) for y in ce.prob_target[r]]))
    else:
        share = np.zeros(classes)
        share[int(ce.index_target[r])] = 1.0  # type: ignore[index]
    return weight * ((1 - eps) * share + eps / classes) * LOOSE + eft.ETA


def _row(ce: Problem, r: int, logits: eft.CertifiedSum, scale: Any,
         scale_size: float) -> _Row:
    """Row ``r``'s loss and ``g`` (module docstring, step 2), at ``mpmath.mp.prec``."""
    classes = logits.high.shape[1]
    a = definitions.target_weights(ce, r)
    if not a:  # weighs nothing: exactly 0
        zeros = np.zeros(classes)
        return _Row(gmpy2.mpfr(0), 0.0, zeros, zeros.copy(), zeros.copy(), None)
    precision = mpmath.mp.prec
    u = 2.0 ** -precision
    high, low = logits.high[r], logits.low[r]
    with gmpy2.context(precision=precision):
        z = list(map(gmpy2.add, high.tolist(), low.tolist()))
        top = max(z)
        shifted = [v - top for v in z]
        exps = list(map(gmpy2.exp, shifted))
        total = gmpy2.fsum(exps)
        log_total = gmpy2.log(total)
        coefficients = {c: mpfr_of(ac) for c, ac in a.items()}
        loss = gmpy2.fsum([ac * (log_total - shifted[c]) for c, ac in coefficients.items()])
        weight_sum = gmpy2.fsum(list(coefficients.values()))
        factor = weight_sum / total if scale is None else weight_sum * scale / total
        g = [e * factor for e in exps]
        for c, ac in coefficients.items():
            g[c] = g[c] - (ac if scale is None else ac * scale)
        g_high = np.fromiter(map(float, g), dtype=np.float64, count=classes)
        g_low = np.fromiter(map(float, map(gmpy2.sub, g, g_high.tolist())), dtype=np.float64,
                            count=classes)
        e_floats = np.fromiter(map(float, exps), dtype=np.float64, count=classes)
        s_floats = np.fromiter(map(float, shifted), dtype=np.float64, count=classes)
        total_f, log_f, loss_f = float(total), float(log_total), float(loss)
    magnitude = np.abs(high) * (1 + 2.0 ** -50)
    delta = (2 * float(np.max(logits.bound[r] + u * magnitude))
             + u * float(np.max(np.abs(s_floats)))) * LOOSE
    abar = _coefficient_bounds(ce, r, classes)
    abar_sum = float(np.sum(abar)) * LOOSE
    s_abs = np.abs(s_floats) * LOOSE
    log_up = log_f * LOOSE + u
    loss_bound = (2 * delta * abar_sum + 16 * u * float(np.sum(abar * (log_up + s_abs + 2)))
                  + 2 * u * abs(loss_f)) * LOOSE + eft.ETA
    p_up = e_floats / total_f * (1 + 2.0 ** -48 + 4.2 * delta) + eft.ETA
    g_bound = (scale_size * (p_up * abar_sum * (2.1 * delta + 16 * u) + 8 * u * abar)
               + 2 * u * np.abs(g_high) * LOOSE + eft.ETA)
    g_bound = (g_bound + 2.0 ** -106 * np.abs(g_high) + eft.ETA) * LOOSE
    floats = Floats(np.abs(s_floats), e_floats, total_f, log_f)
    return _Row(loss, loss_bound, g_high, g_low, g_bound, floats)


# --- step 3: the gradients ------------------------------------------------------------------


def _weighted_sums(g_high: np.ndarray, g_low: np.ndarray, g_bound: np.ndarray,
                   factor: np.ndarray, over_rows: bool) -> eft.CertifiedSum:
    """``sum_k g[k, i] factor[k, j]`` over the shared axis ``k`` (rows when ``over_rows``,
    giving (C, D) from g (R, C) and factor x (R, D); classes otherwise, giving (R, D) from
    factor W (C, D)), certified (module docstring, step 3)."""
    if over_rows:
        g_high, g_low, g_bound = g_high.T, g_low.T, g_bound.T  # (C, R): sum over R
    outer, shared = g_high.shape
    width = factor.shape[1]
    f_bits = eft.significant_bits(factor)
    per_outer = 5 * width * shared  # at most four exact products and one rounded, per k
    block = max(1, min(outer, CHUNK_ELEMENTS // max(1, per_outer)))
    step = max(1, min(shared, CHUNK_ELEMENTS // max(1, 5 * width * block)))
    pieces = [eft.SumOfTerms((0, width)).result()]  # an empty batch: no rows to sum
    for first in range(0, outer, block):
        rows = slice(first, min(outer, first + block))
        count = rows.stop - rows.start
        total = eft.SumOfTerms((count, width))
        rounded = np.zeros((count, width))
        for start in range(0, shared, step):
            stop = min(shared, start + step)
            high = g_high[rows, start:stop].T[:, :, None]  # (k, outer, 1)
            low = g_low[rows, start:stop].T[:, :, None]
            f = factor[start:stop][:, None, :]  # (k, 1, width)
            terms = [*eft.product_terms(high, 53, f, f_bits), low * f]
            rounded += (np.abs(low) * np.abs(f)).sum(axis=0)
            total.add(np.concatenate([np.broadcast_to(t, (stop - start, count, width))
                                      for t in terms], axis=0))
        piece = total.result()
        piece.bound = piece.bound + eft.U * rounded * MATMUL_LOOSE
        pieces.append(piece)
    result = eft.CertifiedSum(*(np.concatenate([getattr(p, name) for p in pieces], axis=0)
                                for name in ("high", "low", "bound", "magnitude")))
    propagated = (g_bound @ np.abs(factor)) * MATMUL_LOOSE
    result.bound = (result.bound + propagated + (4 * shared + 1) * eft.ETA) * LOOSE
    return result


def _column_sums(g_high: np.ndarray, g_low: np.ndarray, g_bound: np.ndarray) -> eft.CertifiedSum:
    """``sum_r g[r, c]`` for every class, certified."""
    total = eft.SumOfTerms((g_high.shape[1],))
    total.add(np.concatenate([g_high, g_low], axis=0))
    result = total.result()
    result.bound = (result.bound + g_bound.sum(axis=0) * MATMUL_LOOSE) * LOOSE
    return result


# --- step 4: certification ------------------------------------------------------------------


def _certified(nearest: np.ndarray, residual: np.ndarray, bound: np.ndarray,
               exact: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Which elements round, to float64 and to ``fmt``, as their exact value does: those
    known exactly (``exact``), and those whose ``[v - E, v + E]`` lies in the rounding
    interval of ``nearest`` (``reference/ledger.py``'s rule, elementwise)."""
    slack = 1 + 2.0 ** -50
    with np.errstate(over="ignore", invalid="ignore"):
        up = np.nextafter(nearest, np.inf) - nearest
        down = nearest - np.nextafter(nearest, -np.inf)
        inside = ((2 * (np.maximum(residual, 0) + bound) * slack < up)
                  & (2 * (np.maximum(-residual, 0) + bound) * slack < down)
                  & (nearest != 0) & (np.abs(nearest) < np.finfo(np.float64).max))
    _rounded, boundary = round_float64_array(nearest, fmt)
    return exact | (inside & ~boundary)


def _rounded(high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float64 nearest to ``high + low`` and the exact remainder."""
    with np.errstate(invalid="ignore"):
        nearest, residual = eft.two_sum(high, low)
    residual = np.where(np.isfinite(nearest), residual, 0.0)
    return nearest, residual


# --- the door -------------------------------------------------------------------------------


def evaluate_linear(
    input: Any,
    *,
    linear_weight: Any,
    linear_bias: Any = None,
    target: Any = None,
    weight: Sequence[float] | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad: bool = True,
    dtype: str = "float64",
) -> LinearResult:
    """``linear_cross_entropy`` on exact inputs (module docstring): the output and, with
    ``grad``, the gradients, each certified to round correctly to float64 and ``dtype``, with
    the tolerance's bounds in ``dtype``."""
    if gmpy2 is None:  # pragma: no cover - every install path has the 'fast' extra
        raise RuntimeError("the linear_cross_entropy oracle needs gmpy2 (pip install "
                           "'crossentropy-conformance[fast]')")
    problem = prepare_linear(input, linear_weight, linear_bias, target, weight, ignore_index,
                             reduction, label_smoothing)
    fmt = get_format(dtype)
    ce = problem.ce
    rows, classes = problem.hidden.shape[0], problem.matrix.shape[0]
    precision = 128 + classes.bit_length()
    logits = _logits(problem)
    with mpmath.workprec(precision):
        divisor = definitions.mean_divisor(ce)
        zero_divisor = reduction == "mean" and divisor == 0
        with gmpy2.context(precision=precision):
            scale = (gmpy2.div(1, mpfr_of(divisor)) if reduction == "mean" and not zero_divisor
                     else None)
            scale_size = 1.0 if scale is None else abs(float(scale)) * (1 + 2.0 ** -50)
            computed = [_row(ce, r, logits, scale, scale_size) for r in range(rows)]
        output = _reduce(ce, computed, divisor, zero_divisor, precision)
    g_high = np.array([row.g_high for row in computed]).reshape(rows, classes)
    g_low = np.array([row.g_low for row in computed]).reshape(rows, classes)
    g_bound = np.array([row.g_bound for row in computed]).reshape(rows, classes)
    weighed = np.array([row.floats is not None for row in computed], dtype=bool)
    if zero_divisor and weighed.any():
        g_high, g_low, g_bound = _divided_by_zero(g_high), np.zeros_like(g_high), \
            np.zeros_like(g_high)
    quantities: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {
        "output": output}
    if grad:
        quantities.update(_gradients(problem, g_high, g_low, g_bound, weighed))
    bounds = _tolerance(problem, fmt, logits, computed, g_high, grad)
    result: dict[str, Quantity] = {}
    undecided = 0
    refiner = _Refiner(problem, fmt, precision, zero_divisor)
    for name, (nearest, residual, bound, exact) in quantities.items():
        special = ~np.isfinite(nearest)
        known = _certified(nearest, residual, bound, exact | special, fmt)
        if not known.all():
            nearest, residual, known = refiner.refine(name, nearest, residual, known)
        undecided += int((~known).sum())
        fused, materialised = bounds[name]
        result[name] = Quantity(nearest, residual, fused, materialised)
    return LinearResult(result, precision, certified=undecided == 0, undecided=undecided)


class _Refiner:
    """Ziv's strategy for the elements the bounds leave undecided (a gradient a hair from a
    midpoint of the dtype, as sums of a near one-hot softmax make them): the rows those
    elements need are recomputed in MPFR at ``2p, 4p, ...`` bits, from logits that are
    correctly rounded sums of the exact products (``gmpy2.fsum``), and each element is summed
    the same way; it is accepted when its rounding to float64 and to the dtype is the same
    at two successive precisions (``reference/certify.py``'s rule).  Work is capped at
    ``MAX_REFINED_PRODUCTS`` exact products (the logits of the rows needed): past it the
    elements stay undecided, and counted."""

    def __init__(self, problem: LinearProblem, fmt: FloatFormat, precision: int,
                 zero_divisor: bool) -> None:
        self.problem, self.fmt, self.precision = problem, fmt, precision
        self.zero_divisor = zero_divisor
        self._rows: dict[tuple[int, int], tuple[Any, list[Any]]] = {}

    def refine(self, name: str, nearest: np.ndarray, residual: np.ndarray, known: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        problem = self.problem
        rows_total, features = problem.hidden.shape
        classes = problem.matrix.shape[0]
        positions = [int(i) for i in np.flatnonzero(~known.reshape(-1))]
        rows = sorted({i // features for i in positions}) if name == "grad" \
            else list(range(rows_total))
        if self.zero_divisor or len(rows) * classes * max(features, 1) > MAX_REFINED_PRODUCTS:
            return nearest, residual, known
        nearest, residual = nearest.copy().reshape(-1), residual.copy().reshape(-1)
        known = known.copy().reshape(-1)
        precision, previous = 2 * self.precision, None
        while precision <= MAX_PRECISION:
            values = self._values(name, positions, rows, precision)
            with gmpy2.context(precision=precision):
                floats = [float(v) for v in values]
                key = [(f, float(round_to_format(mpf_of(v), self.fmt))) for v, f in
                       zip(values, floats)]
                if key == previous:
                    for i, v, f in zip(positions, values, floats):
                        nearest[i], residual[i], known[i] = f, float(v - f), True
                    break
            previous, precision = key, 2 * precision
        return (nearest.reshape(np.shape(self._shape(name))),
                residual.reshape(np.shape(self._shape(name))),
                known.reshape(np.shape(self._shape(name))))

    def _shape(self, name: str) -> np.ndarray:
        problem = self.problem
        shapes = {"output": problem.ce.batch_shape if problem.ce.reduction == "none" else (),
                  "grad": problem.input_shape,
                  "grad_linear_weight": problem.matrix.shape,
                  "grad_linear_bias": (problem.matrix.shape[0],)}
        return np.empty(shapes[name])

    def _row(self, r: int, precision: int) -> tuple[Any, list[Any]]:
        """Row ``r``'s loss and ``g`` at ``precision``, from correctly rounded logits."""
        if (r, precision) in self._rows:
            return self._rows[(r, precision)]
        problem, ce = self.problem, self.problem.ce
        with mpmath.workprec(precision), gmpy2.context(precision=precision):
            a = definitions.target_weights(ce, r)
            classes = problem.matrix.shape[0]
            if not a:
                found: tuple[Any, list[Any]] = (gmpy2.mpfr(0), [gmpy2.mpfr(0)] * classes)
                self._rows[(r, precision)] = found
                return found
            x = problem.hidden[r].tolist()
            with gmpy2.context(precision=max(precision, 128)):  # exact float64 products
                z = [gmpy2.fsum([gmpy2.mul(xv, wv) for xv, wv in zip(x, row)]
                                + ([] if problem.bias is None else [gmpy2.mpfr(problem.bias[c])]))
                     for c, row in enumerate(problem.matrix.tolist())]
            z = [+v for v in z]  # rounded once to the working precision
            top = max(z)
            shifted = [v - top for v in z]
            exps = [gmpy2.exp(v) for v in shifted]
            total = gmpy2.fsum(exps)
            log_total = gmpy2.log(total)
            coefficients = {c: mpfr_of(ac) for c, ac in a.items()}
            loss = gmpy2.fsum([ac * (log_total - shifted[c]) for c, ac in coefficients.items()])
            divisor = definitions.mean_divisor(ce)
            scale = gmpy2.div(1, mpfr_of(divisor)) if ce.reduction == "mean" else None
            weight_sum = gmpy2.fsum(list(coefficients.values()))
            factor = weight_sum / total if scale is None else weight_sum * scale / total
            g = [e * factor for e in exps]
            for c, ac in coefficients.items():
                g[c] = g[c] - (ac if scale is None else ac * scale)
        self._rows[(r, precision)] = (loss, g)
        return loss, g

    def _values(self, name: str, positions: list[int], rows: list[int],
                precision: int) -> list[Any]:
        problem, ce = self.problem, self.problem.ce
        features = problem.hidden.shape[1]
        computed = {r: self._row(r, precision) for r in rows}
        with mpmath.workprec(precision), gmpy2.context(precision=precision):
            if name == "output":
                losses = [computed[r][0] for r in rows]
                if ce.reduction == "none":
                    return [losses[i] for i in positions]
                total = gmpy2.fsum(losses)
                if ce.reduction == "mean":
                    total = total / mpfr_of(definitions.mean_divisor(ce))
                return [total]
            values = []
            for i in positions:
                with gmpy2.context(precision=precision + 64):  # each product exact
                    terms = self._terms(name, i, rows, computed, features)
                values.append(gmpy2.fsum(terms))
            return values

    def _terms(self, name: str, i: int, rows: list[int],
               computed: dict[int, tuple[Any, list[Any]]], features: int) -> list[Any]:
        """The terms of element ``i`` of ``name`` (products rounded at the caller's
        precision, 64 bits above the working one: exact for a float64 factor)."""
        problem = self.problem
        if name == "grad":
            n, d = divmod(i, features)
            return [gc * wv for gc, wv in zip(computed[n][1], problem.matrix[:, d].tolist())]
        if name == "grad_linear_weight":
            c, d = divmod(i, features)
            return [computed[r][1][c] * float(problem.hidden[r, d]) for r in rows]
        return [computed[r][1][i] for r in rows]


def _divided_by_zero(g: np.ndarray) -> np.ndarray:
    """``g / 0`` by IEEE's rules for the rows that weigh something (exact zeros stay 0 in
    rows that weigh nothing: their g is exactly 0 and stays 0, SPEC.md)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(g == 0, 0.0, g / 0.0)


def _reduce(ce: Problem, rows: list[_Row], divisor: Any, zero_divisor: bool,
            precision: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The output's nearest floats, residuals, bounds and exact mask (module docstring,
    step 4)."""
    u = 2.0 ** -precision
    with gmpy2.context(precision=precision):
        if ce.reduction == "none":
            values = [row.loss for row in rows]
            bounds = np.array([row.loss_bound for row in rows])
        else:
            total = gmpy2.fsum([row.loss for row in rows])
            bound = (math.fsum(row.loss_bound for row in rows)
                     + 2 * u * math.fsum(abs(float(row.loss)) for row in rows)) * LOOSE
            if ce.reduction == "mean" and zero_divisor:
                value = float(definitions.divide(mpmath.mpf(float(total)) if total != 0
                                                 else mpmath.mpf(0), mpmath.mpf(0)))
                return (np.array(value), np.array(0.0), np.array(0.0), np.array(True))
            if ce.reduction == "mean":
                total = total / mpfr_of(divisor)
                bound = (bound / abs(float(divisor)) * (1 + 2.0 ** -50)
                         + 2 * u * abs(float(total))) * LOOSE
            values, bounds = [total], np.array([bound])
        nearest = np.fromiter(map(float, values), dtype=np.float64, count=len(values))
        residual = np.fromiter(map(float, map(gmpy2.sub, values, nearest.tolist())),
                               dtype=np.float64, count=len(values))
    exact = np.array([row.floats is None for row in rows] if ce.reduction == "none"
                     else [not any(row.floats is not None for row in rows)], dtype=bool)
    shape = ce.batch_shape if ce.reduction == "none" else ()
    return (nearest.reshape(shape), residual.reshape(shape), bounds.reshape(shape),
            exact.reshape(shape))


def _gradients(problem: LinearProblem, g_high: np.ndarray, g_low: np.ndarray,
               g_bound: np.ndarray, weighed: np.ndarray
               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    x, w = problem.hidden, problem.matrix
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    if not np.isfinite(g_high).all():  # a mean over a zero divisor: IEEE arithmetic
        with np.errstate(invalid="ignore"):
            grad_x = (g_high[:, :, None] * w[None, :, :]).sum(axis=1)
            grad_w = (g_high[:, :, None] * x[:, None, :]).sum(axis=0)
            grad_b = g_high.sum(axis=0)
        exact_all = {"grad": grad_x, "grad_linear_weight": grad_w, "grad_linear_bias": grad_b}
        for name, values in exact_all.items():
            if name == "grad_linear_bias" and problem.bias is None:
                continue
            zeros = np.zeros(values.shape)
            out[name] = (_shaped(values, problem, name), _shaped(zeros, problem, name),
                         _shaped(zeros, problem, name),
                         _shaped(np.ones(values.shape, dtype=bool), problem, name))
        return out
    by_class = _weighted_sums(g_high, g_low, g_bound, w, over_rows=False)
    by_row = _weighted_sums(g_high, g_low, g_bound, x, over_rows=True)
    # exact zeros: every term a product with an exact zero
    live_rows = weighed[:, None] & np.ones((1, w.shape[0]), dtype=bool)
    zero_x = ~(live_rows.astype(np.float64) @ (w != 0)).astype(bool)
    zero_w = ~((live_rows.T.astype(np.float64) @ (x != 0)).astype(bool))
    sums = {"grad": (by_class, zero_x), "grad_linear_weight": (by_row, zero_w)}
    if problem.bias is not None:
        sums["grad_linear_bias"] = (_column_sums(g_high, g_low, g_bound),
                                    np.full(w.shape[0], not weighed.any()))
    for name, (result, exact) in sums.items():
        nearest, residual = _rounded(result.high, result.low)
        nearest = np.where(exact, 0.0, nearest)
        residual = np.where(exact, 0.0, residual)
        bound = np.where(exact, 0.0, result.bound)
        out[name] = tuple(_shaped(v, problem, name)  # type: ignore[assignment]
                          for v in (nearest, residual, bound, np.asarray(exact)))
    return out


def _shaped(values: np.ndarray, problem: LinearProblem, name: str) -> np.ndarray:
    if name == "grad":
        return np.asarray(values).reshape(problem.input_shape)
    return np.asarray(values)


# --- the tolerance --------------------------------------------------------------------------


def _tolerance(problem: LinearProblem, fmt: FloatFormat, logits: eft.CertifiedSum,
               rows: list[_Row], g: np.ndarray, want_grad: bool
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per quantity, the bounds (K = 1) of a fused evaluation and of one that materialises
    the logits in ``fmt`` (derived in ``conformance/judge/compare.py``): cross_entropy's
    shift-invariant bound on the exact logits (``reference.tolerance``), plus the rounding of
    each length-D dot product in the accumulation precision ``u_acc = min(u, 2**-24)`` (and,
    materialised, of each logit in ``fmt``), carried through ``g`` to the gradients."""
    u, eta = fmt.unit_roundoff, fmt.smallest_subnormal
    u_acc = min(u, 2.0 ** -24)
    ce = problem.ce
    x, w, b = problem.hidden, problem.matrix, problem.bias
    count, classes = g.shape
    z = logits.high + logits.low
    found = {r: row.floats for r, row in enumerate(rows) if row.floats is not None}
    logit_problem = Problem(ce.op, z, ce.batch_shape, ce.class_axis, ce.index_target,
                            ce.prob_target, ce.weight, ce.ignore_index, ce.reduction,
                            ce.label_smoothing)
    with np.errstate(over="ignore", invalid="ignore"):
        output_bound, g_bound_ce = problem_bounds(logit_problem, fmt, True, found)
        g_bound_ce = np.asarray(g_bound_ce).reshape(count, classes)
        terms = x.shape[1] + (b is not None)
        depth = _sum_depth(terms, terms) + 1  # the products' rounding, then the sum's
        dot = np.abs(x) @ np.abs(w).T + (0.0 if b is None else np.abs(b)[None, :])
        fused = depth * u_acc * dot
        probabilities = np.zeros((count, classes))
        weights = np.zeros(count)
        for r, row in enumerate(rows):
            if row.floats is not None:
                probabilities[r] = row.floats.e / row.floats.total
                weights[r] = _row_weight(ce, r)
        scale = _mean_scale(ce)
        g_abs = np.nan_to_num(np.abs(g), nan=0.0, posinf=0.0)
        result: dict[str, list[np.ndarray]] = {}
        for delta in (fused, fused + u * np.abs(z)):
            # Not first order: logits off by delta_c (at most delta_max in a row) move each
            # p_c by a factor within exp(+-(delta_c + delta_max)) (softmax is shift
            # invariant), so |p' - p| <= p expm1(delta_c + delta_max) however large delta is
            # (bfloat16 logits of 1e3 are off by units); and along the way |dl/dz_c| <=
            # |g_c| + |A| p_c expm1(2 delta_max) / |D|.
            widest = delta.max(axis=1, keepdims=True) if classes else delta
            moved = scale * np.abs(weights)[:, None] * probabilities
            g_extra = moved * np.expm1(delta + widest)
            added = ((g_abs + moved * np.expm1(2 * widest)) * delta).sum(axis=1)
            out = np.asarray(output_bound) + (added.reshape(ce.batch_shape)
                                              if ce.reduction == "none" else added.sum())
            result.setdefault("output", []).append(out)
            if not want_grad:
                continue
            g_tol = g_bound_ce + g_extra + u * g_abs
            grad_x = g_abs @ np.abs(w)
            grad_w = g_abs.T @ np.abs(x)
            depth_c = _sum_depth(classes, classes) + 1
            depth_r = _sum_depth(count, count) + 1
            result.setdefault("grad", []).append(
                (g_tol @ np.abs(w) + (depth_c * u_acc + u) * grad_x + eta)
                .reshape(problem.input_shape))
            result.setdefault("grad_linear_weight", []).append(
                g_tol.T @ np.abs(x) + (depth_r * u_acc + u) * grad_w + eta)
            if b is not None:
                result.setdefault("grad_linear_bias", []).append(
                    g_tol.sum(axis=0) + (depth_r * u_acc + u) * g_abs.sum(axis=0) + eta)
    return {name: (np.nan_to_num(v[0] * INFLATION, nan=0.0, posinf=np.inf),
                   np.nan_to_num(v[1] * INFLATION, nan=0.0, posinf=np.inf))
            for name, v in result.items()}


def _row_weight(ce: Problem, r: int) -> float:
    """``A_r = sum_c a_c`` in float64 (for the tolerance only)."""
    with mpmath.workprec(64):
        return float(mpmath.fsum(definitions.target_weights(ce, r).values()))


def _mean_scale(ce: Problem) -> float:
    if ce.reduction != "mean":
        return 1.0
    divisor = float(definitions.mean_divisor(ce))
    return 1.0 / abs(divisor) if divisor else 0.0
