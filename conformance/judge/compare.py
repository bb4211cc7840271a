"""The comparison rules: how a framework's value is measured against the oracle and judged.

This module is the tolerance policy, in one place: what is measured for each element, the
error bound a verdict uses, its constants per dtype, op and quantity, and how a case or a
run overrides them.  ``conformance/judge/check.py`` applies it; the oracle (``reference/oracle.py``,
``error_bounds``) evaluates the bound's ingredients in high precision.

What each element gets
======================

For an element with exact value ``e`` (the oracle's, an ``mpf``), its correct rounding
``RN(e)`` into the dtype under test (``reference.formats``, ties to even, subnormals,
overflow to inf) and the framework's value ``a``:

* **the special-value pattern**, compared first and on its own (never inside an error
  figure): where ``e`` is NaN, ``a`` must be NaN; where ``e`` is an infinity, ``a`` must be
  the same infinity; where ``e`` is finite, ``a`` must be finite, except that ``a`` may be
  the infinity of ``e``'s sign when ``|e| + bound`` reaches the dtype's overflow threshold
  (a stable evaluation may round past the largest finite value there).  **Signed zeros**:
  ``+0`` and ``-0`` are the same number (ULP distance 0).  An exact zero has no sign (the
  oracle computes in the reals; IEEE evaluation orders give either sign), and a zero
  returned for a non-zero ``e`` whose magnitude is within the bound is a value a stable
  evaluation returns (``-(0 - 0) = -0.0`` for a loss of 2e-9 in float32) and is judged by
  its error.  A zero whose sign is opposite to ``e``'s where ``|e|`` exceeds the bound is a
  sign-pattern discrepancy.  Any mismatch makes the record ``special-value``.
* **the absolute error** ``|a - e|`` and **the relative error** ``|a - e| / |e|`` (``inf``
  when ``e = 0 != a``), both against the exact value.
* **the ULP error**: the number of values of the dtype between ``RN(e)`` and ``a``
  (``reference.formats.ulp_distance``): 0 means correctly rounded, 1 faithfully rounded.
  It counts representable values, so it stays an honest integer across a binade boundary,
  in the subnormal range and from ``max_finite`` to ``inf``; ``+0`` and ``-0`` are one point.
  (The alternative, ``|a - e| / ulp(e)``, is fractional and charges a correctly rounded
  value up to half a unit; it is not reported.)  This is how accurate the value is, and it
  is always shown, even when the verdict is a pass: a loss of 2e-9 returned as 0 passes
  with a ULP error near 1e9.
* **the verdict**: ``|a - e| <= K * bound`` where ``bound`` is the error bound of a stable,
  max-shifted evaluation in the dtype (below) and ``K`` the policy's constant.  The record
  also carries ``bound_use = max |a - e| / (K * bound)``: at most 1 for a pass.

The bound of a max-shifted evaluation
=====================================

Standard model (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM
2002, section 2.2): every operation returns ``op(x, y)(1 + d)``, ``|d| <= u = 2**-p``, plus an
absolute error of at most ``eta / 2`` when the result underflows (``eta`` the smallest
subnormal); ``exp`` and ``log`` likewise.  A pairwise or blocked sum of ``n`` terms, ``k``
of them non-zero, has error at most ``c * u * sum |terms|`` to first order with
``c = c(n, k) = min(ceil(log2 n), k - 1)`` (Higham, section 4.2; adding an exact zero does
not round).  First-order terms only; ``K`` absorbs the second-order ones and library
``exp``/``log`` that are faithful (1 ulp) rather than correctly rounded.

For one row ``x`` of ``C`` logits (the inputs are exact values of the dtype) the evaluation
is ``m = max(x)`` (exact), ``s_j = x_j - m``, ``S = sum_j exp(s_j)``, ``L = log S``,
``log p_j = s_j - L``, as analysed by Blanchard, Higham and Higham, "Accurately computing the
log-sum-exp and softmax functions", IMA J. Numer. Anal. 41(4), 2021, 2311-2330
(doi:10.1093/imanum/draa038).  With ``p_j = exp(s_j) / S``:

1. ``s^_j = s_j (1 + d)``: error ``u |s_j|``;
2. ``exp(s^_j)(1 + d)``: relative error ``u (|s_j| + 1)``;
3. ``S^``: relative error ``u (sigma + 1 + c(C, C))`` with ``sigma = sum_j p_j |s_j|``
   (``<= log C``: ``sigma = H(p) - L``), plus ``C * eta / (2 S)`` for terms that underflow;
4. ``L^ = log(S^)(1 + d)``: ``|L^ - L| <= lam * u`` with
   ``lam = L + sigma + c(C, C) + 1 (+ C * eta / (2 u S))``;
5. ``log p^_j = s^_j - L^``: error ``u (|s_j| + lam + |log p_j|)``;
6. ``p^_j = exp(log p^_j)``: relative error ``u * pi_j``, ``pi_j = |s_j| + lam + |log p_j| + 1``.

Every ingredient is a function of the shifts ``s_j`` alone, so the bound is **shift
invariant**: adding a constant to every logit of a row leaves it unchanged, however large
``|x|`` becomes.  A framework that loses digits to a common offset (e.g. by adding ``m``
back before subtracting the target logit, an error of order ``u * |m|``) fails, since
nothing in the bound grows with ``|x|`` or ``|logsumexp(x)|``.  And the bound is
**absolute near zero**: its terms ``lam >= c + 1`` do not vanish with the loss, so a float
evaluation of ``logsumexp - x_t`` that returns 0 for a loss of 2e-9 in float32 passes,
while its ULP error stays in the record.

Per op (``bound`` below is in absolute units, ``K = 1``; each also gets ``+ eta`` for the
rounding of the result itself):

* ``log_softmax``: ``u (|s_c| + lam + |log p_c|)``;
* ``softmax``: ``u p_c pi_c``;
* ``cross_entropy``, one row with target coefficients ``a_c`` (``w_t`` at the target for an
  index target; ``w_c ((1 - eps) y_c + eps / C)`` with probabilities or label smoothing),
  ``l = -sum_c a_c log p_c``:
  ``beta = u [ sum_c |a_c| (|s_c| + lam + |log p_c|) + (c(C, k) + 3) sum_c |a_c| |log p_c| ]``
  (``k`` non-zero ``a_c``; the 3 covers forming ``a_c`` and the products).  For an index
  target without weights this is ``u (|s_t| + lam + 4 |loss|)`` -- the form
  ``K u (c(C) + |loss| + |s_t|)``, with ``sum_j |y_j| |s_j|`` in place of ``|s_t|`` for
  probability targets and smoothing;
* ``nll_loss``: ``u |w_t L_t|`` (one product);
* reductions, rows ``r`` with bounds ``beta_r``: ``none``: ``beta_r``; ``sum``:
  ``sum_r beta_r + c(N, k) u sum_r |l_r|``; ``mean`` (divisor ``D``, the total target weight,
  or ``N`` for probability targets): ``(sum_r beta_r + c(N, k) u sum_r |l_r|) / |D| +
  delta_D u sum_r |l_r| / |D|`` with ``delta_D = c(N, k) sum_r |d_r| / |D| + 1`` (summing
  the weights, then dividing).

Gradients, derived the same way from ``softmax(x) - y`` evaluated after the shift
(``A = sum_c a_c``, ``g_k = (A p_k - a_k) / D``, ``delta_D = 0`` for ``none`` and ``sum``):

* ``cross_entropy``: ``u [ (|A| p_k (pi_k + 1) + (c(C, k) + 2 + delta_D)(sum|a| p_k + |a_k|))
  / |D| + |g_k| ] + eta (sum|a| / (2|D|) + 1)``;
* ``nll_loss``: ``u (1 + delta_D) |w_k [k = t]| / |D|``;
* ``log_softmax`` (``g_k = 1 - C p_k``): ``u (C p_k (pi_k + 2) + |g_k|) + C eta / 2``;
* ``softmax`` (``g = 0``: the backward's ``p_k (1 - sum_j p^_j)`` is all rounding):
  ``u p_k (sum_j p_j pi_j + c(C, C) + 1) + p_k C eta / 2``.

linear_cross_entropy
--------------------

``l(z)`` with logits ``z_{n,c} = sum_d x_{n,d} W_{c,d} + b_c`` (``reference/SPEC.md``).  An
implementation evaluates each logit as a dot product of length ``D`` (plus the bias), in an
accumulation precision ``u_acc``: float32 for float16/bfloat16 inputs (what fused kernels
and CPU/GPU matmuls do), the dtype's own ``u`` for float32 and float64, i.e. ``u_acc =
min(u, 2**-24)``.  A dot product of ``D + 1`` terms errs by at most (Higham 3.1, the pairwise
or blocked depth ``c`` as above, plus one rounding for the products)

    delta_c = (c(D + 1, D + 1) + 1) u_acc (sum_d |x_d W_{c,d}| + |b_c|),

and an implementation that **materialises** the logits in the dtype (a composed
``cross_entropy(linear(x, W, b))``) adds ``u |z_c|`` for that rounding.  Those logit errors
reach the outputs through cross_entropy's first derivatives, ``g = dl/dz`` (``g_k = (A p_k -
a_k) / D``) and ``dp_k/dz_j = p_k ([k = j] - p_j)``:

* output: ``beta_CE + sum_c (|g_c| + |A| p_c expm1(2 delta_max) / |D|) delta_c`` (per row
  for ``none``, summed otherwise; ``delta_max`` the row's largest ``delta``), ``beta_CE`` the
  shift-invariant bound above on the exact logits: along the way from ``z`` to the rounded
  logits ``|dl/dz_c|`` stays below that;
* ``g``: ``beta_g + |A| p_k expm1(delta_k + delta_max) / |D|``, plus ``u |g_k|`` where ``g``
  is rounded to the dtype before the backward matmuls.  Not first order: softmax is shift
  invariant, so logits off by ``delta`` move ``p_k`` by a factor within ``exp(+-(delta_k +
  delta_max))`` however large ``delta`` is (bfloat16 logits of 1e3 are off by units, and a
  first-order term undercounts that by orders of magnitude);
* ``grad = g W``: ``gbar |W| + (c(C, C) + 1) u_acc |g| |W| + u |grad| + eta``;
  ``grad_linear_weight = g^T x``: ``gbar^T |x| + (c(N, N) + 1) u_acc |g|^T |x| + u |gW| + eta``;
  ``grad_linear_bias = sum_n g``: ``sum_n gbar + (c(N, N) + 1) u_acc sum_n |g| + u |gb| + eta``;
  ``gbar`` the bound of ``g`` just given.

The records of an API that declares ``materialises_logits`` use the bound with ``u |z_c|``
(``reference.linear.Quantity.materialised_bound``), the others the fused one (``bound``);
the record's ``extra.bound`` says which.  Nothing in either grows with a **common offset**
of the logits beyond the rounding each logit really suffers: a bias of 1e4 makes every
``delta_c`` about ``u_acc 1e4``, but with a confident target (``p_t`` near 1) the loss feels
only ``sum_c |g_c| delta_c ~ 2 (1 - p_t) delta``, so an evaluation that rounds
``logsumexp`` and ``z_t`` before subtracting them (an error ``u |m|``) fails, while a fused
one that keeps the shift exact passes (``tests/test_linear_bound.py``).  In bfloat16 the
materialised bound is what rounding logits of size 1e4 to 8 bits allows (units of 64):
large, and exactly what such an implementation gives up; the fused bound fails it there.

Every bound is at least ``u |e| + eta``, so a correctly rounded result always passes.  The
ingredients come from ``reference.oracle.error_bounds`` (mpmath on the exact inputs; see its
section comment for why a float64 assembly of them is safe); nothing is computed in the
dtype under test.

Constants and overrides
=======================

``K`` is ``POLICY[(op, quantity)][dtype]`` (``DEFAULT_K`` = 4 unless listed): a factor 2
for exp/log/division that are faithful rather than correctly rounded, and 2 for second-order
terms and evaluation orders that differ from the model's (e.g. ``exp(s) / S`` instead of
``exp(log p)``).  A case overrides it with ``tolerance:`` (``conformance/cases/schema.json``)::

    tolerance: {scale: 4, reason: "..."}              # K times 4, output and grad
    tolerance: {k: {output: 8, grad: 16}, reason: "..."}  # K replaced per quantity

and a run with ``conformance run --tolerance-scale X`` (or ``$CONFORMANCE_TOLERANCE_SCALE``),
which multiplies every ``K``.  The record names the ``K`` it used and where it came from.

Calibration (CPU; torch 2.13, JAX 0.10.2 with optax 0.2.8, TensorFlow 2.21): over the case
library and a stress set (C up to 8192, N up to 4096, offsets of 100 and 1e4, dominant and
masked classes, probability targets, smoothing, weights; all four dtypes), every record
that passed used at most 0.7 of its bound with ``K = 4`` (most under 0.2), in float16 and
bfloat16 as in float32 and float64; the discrepancies found used 5 and more of it (optax's
integer-label cross-entropy at an offset of 1e4 in float32: 40, it adds the maximum back;
Keras's ``SparseCategoricalCrossentropy`` in float16/bfloat16: 5 to 1e10).  ``K`` is
therefore one constant for every dtype, op and quantity today; ``POLICY`` is where a
measured exception would go, with its reason.

Cost
====

``compare`` is vectorised: one Python-level ``float()`` per element to get the float64
nearest each exact value (``reference.formats.nearest_float64``), then numpy.  An element
whose verdict is not decided by the float64 figures with their rounding margins (its error
within about 1e-15 of its bound) is re-decided exactly in mpmath, as are the few elements
whose float64 nearest lies halfway between two values of the dtype (double rounding).  For
float64 itself each element's residual ``e - float64(e)`` is also computed, so its errors are
exact to float64 precision; for narrower dtypes the float64 nearest is within 2**-29 of a
ULP of the dtype.

Measured on one CPU core (AMD EPYC): ``compare`` takes about 2 s per million elements for
float32, float16 and bfloat16 and 5 s for float64 (the residuals); the bound's ingredients
(``reference.oracle.error_bounds``, one mpmath ``exp`` per element, then numpy) about 16 s
per million, once per case and dtype (cached on disk with the oracle's result), against
about 120 s per million for the oracle's Ziv evaluation itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import mpmath
import numpy as np

from reference.formats import (
    exact,
    get_format,
    nearest_float64,
    round_float64_array,
    round_to_float,
    ulp_distance_array,
)
from reference.pairs import ExactPairs

NUMERIC = "numeric"
SPECIAL_VALUE = "special-value"
SEMANTIC = "semantic"
BEHAVIOUR = "behaviour"
KINDS = (NUMERIC, SPECIAL_VALUE, SEMANTIC, BEHAVIOUR)

DEFAULT_K = 4.0
# (op, quantity) -> {dtype: K}; a dtype not listed uses DEFAULT_K.
POLICY: dict[tuple[str, str], dict[str, float]] = {
    (op, quantity): {"float64": DEFAULT_K, "float32": DEFAULT_K, "float16": DEFAULT_K,
                     "bfloat16": DEFAULT_K}
    for op in ("softmax", "log_softmax", "nll_loss", "cross_entropy", "linear_cross_entropy")
    for quantity in ("output", "grad")
}
RUN_SCALE_VARIABLE = "CONFORMANCE_TOLERANCE_SCALE"


# --- the tolerance --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """The factor applied to the oracle's bound: ``k * scale``, and where it came from."""

    k: float = DEFAULT_K
    scale: float = 1.0
    source: str = "policy"  # policy | case | run | case+run
    reason: str = ""

    @property
    def factor(self) -> float:
        return self.k * self.scale

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"k": self.k, "scale": self.scale, "source": self.source}
        if self.reason:
            result["reason"] = self.reason
        return result


def policy_k(op: str, quantity: str, dtype: str) -> float:
    """The policy's ``K`` for ``quantity`` (``output``/``grad``) of ``op`` in ``dtype``."""
    return POLICY.get((op, quantity), {}).get(dtype, DEFAULT_K)


def run_scale() -> float | None:
    """The per-run factor from ``$CONFORMANCE_TOLERANCE_SCALE`` (set by ``--tolerance-scale``);
    ``ValueError`` unless it is a finite number > 0 (NaN or infinity would pass everything)."""
    value = os.environ.get(RUN_SCALE_VARIABLE, "").strip()
    if not value:
        return None
    try:
        scale = float(value)
    except ValueError:
        scale = math.nan
    if not _finite_positive(scale):
        raise ValueError(f"${RUN_SCALE_VARIABLE} must be a finite number > 0, got "
                         f"{os.environ[RUN_SCALE_VARIABLE]!r}")
    return scale


def _finite_positive(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _checked(value: Any, name: str) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a finite number > 0."""
    if not _finite_positive(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def tolerance_for(op: str, quantity: str, dtype: str, override: Any = None,
                  scale: float | None = None) -> Tolerance:
    """The tolerance of one record: the policy's ``K``, replaced or scaled by a case's
    ``tolerance:`` (``override``: a number is a scale; a mapping has ``scale``, ``k`` -- a
    number or ``{output, grad}`` -- and ``reason``), then scaled by the run's ``scale``.
    Every factor must be a finite number > 0 (``ValueError`` otherwise: case files are checked
    when loaded, this guards cases built in code)."""
    k, factor, reason, sources = policy_k(op, quantity, dtype), 1.0, "", []
    if override is not None:
        spec = _as_mapping(override)
        if "k" in spec:
            chosen = spec["k"]
            per_quantity = isinstance(chosen, Mapping) or _is_pairs(chosen)
            if per_quantity:
                chosen = _as_mapping(chosen).get(quantity)
            if chosen is not None:
                k = _checked(chosen, f"tolerance.k{'.' + quantity if per_quantity else ''}")
        factor *= _checked(spec.get("scale", 1.0), "tolerance.scale")
        reason = str(spec.get("reason", ""))
        sources.append("case")
    if scale is not None:
        factor *= _checked(scale, "the run's tolerance scale")
        sources.append("run")
    return Tolerance(k, factor, "+".join(sources) or "policy", reason)


def _is_pairs(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 for v in value)


def _as_mapping(value: Any) -> dict[str, Any]:
    """A case's tolerance as a dict (cases freeze mappings into tuples of pairs)."""
    if isinstance(value, Mapping):
        return dict(value)
    if _is_pairs(value):
        return {str(k): v for k, v in value}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"scale": _checked(value, "tolerance")}
    raise ValueError(f"tolerance must be a number or a mapping, got {value!r}")


# --- the comparison -------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The verdict on one quantity (output or gradient) of one run."""

    passed: bool
    kind: str | None  # None when passed; NUMERIC, SPECIAL_VALUE or BEHAVIOUR otherwise
    max_abs_error: float | None
    max_rel_error: float | None
    max_ulp_error: float | None
    worst_index: tuple[int, ...] | None
    message: str
    bound_use: float | None = None  # max over elements of |a - e| / (K * bound)
    special_mismatches: int = 0
    outside: int = 0  # elements outside their bound
    tolerance: Tolerance | None = None


class Expected:
    """The oracle's values of one quantity as the comparison reads them.

    Almost every element is decided in float64: ``nearest`` (the float64 nearest to each
    exact value) is all the verdict, the errors and the ULP count need.  The exact values
    (``mpf``) are fetched, through ``exact``, only for what float64 cannot settle: float64
    records (the residual ``e - RN64(e)``), elements lying on a rounding midpoint of the
    dtype, errors within a rounding of the bound, infinities and the failure message.  A
    worker builds one ``Expected`` per case, dtype and quantity and reuses it for every API,
    so the oracle cache's float64 views spare it the exact values in the common case.
    """

    def __init__(self, nearest: np.ndarray, exact: Callable[[], np.ndarray]) -> None:
        self.nearest = np.asarray(nearest, dtype=np.float64)
        self.shape: tuple[int, ...] = tuple(self.nearest.shape)
        self._exact = exact

    @classmethod
    def of(cls, values: np.ndarray | ExactPairs) -> Expected:
        """From the exact values themselves (the float64 view computed here)."""
        if isinstance(values, ExactPairs):  # the float64 view without building an mpf
            return cls(nearest_float64(values), values.mpf)
        array = np.asarray(values, dtype=object)
        return cls(nearest_float64(array), lambda: array)

    @cached_property
    def values(self) -> np.ndarray:
        """The exact values, flat."""
        values = np.asarray(self._exact(), dtype=object)
        if tuple(values.shape) != self.shape:
            raise ValueError(f"exact values shaped {values.shape}, float64 view {self.shape}")
        return values.reshape(-1)

    @cached_property
    def residual(self) -> np.ndarray:
        """``e - RN64(e)`` rounded to float64 for the finite elements (0 elsewhere), flat."""
        flat = self.nearest.reshape(-1)
        return _residuals(self.values, flat, np.isfinite(flat))


def compare(expected: np.ndarray | ExactPairs | Expected, actual: np.ndarray, dtype: str,
            bound: np.ndarray, tolerance: Tolerance | None = None) -> Comparison:
    """Judge ``actual`` (floats) against ``expected`` (the exact values, mpf, or their
    ``Expected`` view) elementwise, with ``bound`` the oracle's per-element error bound
    (``OracleResult.output_bound`` / ``grad_bound``) and ``tolerance`` its factor (the
    policy's default ``K`` when omitted); see the module doc."""
    tolerance = tolerance or Tolerance()
    if not isinstance(expected, Expected):
        expected = Expected.of(expected)
    shape = expected.shape
    if tuple(np.shape(actual)) != shape:
        return Comparison(False, BEHAVIOUR, math.inf, math.inf, math.inf, None,
                          f"returned shape {tuple(np.shape(actual))}, expected {shape}",
                          tolerance=tolerance)
    fmt = get_format(dtype)
    # everything elementwise runs on flat arrays (a 0-d array's elements are not assignable)
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    e = expected.nearest.reshape(-1)
    limit = np.broadcast_to(np.asarray(bound, dtype=np.float64) * tolerance.factor,
                            shape).reshape(-1)
    e_nan, a_nan = np.isnan(e), np.isnan(a)
    e_inf = np.isinf(e) & _exactly_infinite(expected, e)
    special_e = e_nan | e_inf
    finite = ~special_e & np.isfinite(a)

    # special values: NaN, infinities, the sign of zero
    threshold = _overflow_threshold(fmt)
    with np.errstate(invalid="ignore"):
        may_overflow = (~special_e & np.isinf(a) & (np.sign(a) == np.sign(e))
                        & (np.abs(e) + limit >= threshold))
        mismatch = np.where(
            e_nan, ~a_nan,
            np.where(e_inf, ~(np.isinf(a) & (np.sign(a) == np.sign(e))),
                     (a_nan | np.isinf(a)) & ~may_overflow))
        wrong_zero = finite & (a == 0) & (e != 0) & (np.signbit(a) != (e < 0)) & \
            (np.abs(e) > limit)
    mismatch |= wrong_zero

    errors, relative = _errors(expected, e, a, finite, dtype)
    outside, use = _verdicts(expected, a, errors, e, limit, finite)
    correctly_rounded = _correctly_rounded(expected, e, fmt, finite)
    ulps = np.zeros(a.shape)
    ulps[finite] = ulp_distance_array(correctly_rounded[finite], a[finite], fmt)
    ulps[may_overflow] = ulp_distance_array(
        _round_all(expected, e, fmt)[may_overflow], a[may_overflow], fmt)
    counted = finite | may_overflow
    # no finite element compared: no error figure (None), never a misleading 0
    max_abs = float(errors[finite].max()) if finite.any() else None
    max_rel = float(relative[finite].max()) if finite.any() else None
    max_ulp = float(ulps[counted].max()) if counted.any() else None
    bound_use = float(use[finite].max()) if finite.any() else None

    specials = int(mismatch.sum())
    n_outside = int((outside & finite & ~mismatch).sum())
    if specials:
        i = int(np.flatnonzero(mismatch)[0])
        index = _index(i, shape)
        what = "zero of the wrong sign" if wrong_zero[i] else "special-value mismatch"
        message = (f"{specials} special-value mismatch(es); first at {index}: expected "
                   f"{_show_exact(expected.values[i], dtype)}, got {_show(a[i])} ({what})")
        return Comparison(False, SPECIAL_VALUE, max_abs, max_rel, max_ulp, index, message,
                          bound_use, specials, n_outside, tolerance)
    worst = None
    if finite.any():
        i = int(np.argmax(np.where(finite, use, -1.0)))
        worst = _index(i, shape)
        message = (f"max error {max_ulp:.4g} ulp ({max_abs:.3g} abs); worst element at "
                   f"{worst}: error {errors[i]:.3g} is {use[i]:.3g} of its bound "
                   f"{limit[i]:.3g} (K={tolerance.factor:g})")
    else:
        message = "special values match; no finite element to measure"
    if n_outside:
        message = f"{n_outside} element(s) outside the bound; {message}"
    passed = n_outside == 0
    return Comparison(passed, None if passed else NUMERIC, max_abs, max_rel, max_ulp, worst,
                      message, bound_use, 0, n_outside, tolerance)


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def _exactly_infinite(expected: Expected, e: np.ndarray) -> np.ndarray:
    """Which float64 infinities come from an exact infinity (not an overflow of float64)."""
    result = np.isinf(e)
    for index in _positions(result):
        result[index] = bool(mpmath.isinf(expected.values[index]))
    return result


def _overflow_threshold(fmt: Any) -> float:
    """The smallest magnitude that rounds to infinity: max_finite + half its spacing."""
    spacing = 2.0 ** (fmt.emax - fmt.precision + 1)
    return fmt.max_finite + spacing / 2


def _errors(expected: Expected, e: np.ndarray, a: np.ndarray, finite: np.ndarray,
            dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """|a - e| and |a - e| / |e| in float64; for float64 itself e's residual is included."""
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.where(finite, a - e, 0.0)
        if dtype == "float64":
            difference = difference - np.where(finite, expected.residual, 0.0)
        errors = np.abs(difference)
        relative = np.where(e != 0, errors / np.abs(np.where(e != 0, e, 1.0)),
                            np.where(errors == 0, 0.0, np.inf))
    return errors, relative


def _residuals(values: np.ndarray, e: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """``value - float64(value)`` rounded to float64, for the finite elements (on mpmath's
    raw numbers: the subtraction is exact, the one rounding is to 53 bits)."""
    from mpmath.libmp import from_float, mpf_sub, round_nearest, to_float

    out = np.zeros(e.shape)
    flat_values, flat_e, flat_out = values.reshape(-1), e.reshape(-1), out.reshape(-1)
    for i in np.flatnonzero(finite.reshape(-1)):
        raw = exact(flat_values[i])._mpf_
        flat_out[i] = to_float(mpf_sub(raw, from_float(float(flat_e[i])), 53, round_nearest))
    return out


def _verdicts(expected: Expected, a: np.ndarray, errors: np.ndarray, e: np.ndarray,
              limit: np.ndarray, finite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which elements lie outside ``limit`` (decided exactly), and error / limit."""
    # errors[i] is |a - e| up to 2**-52 relative plus |e - e64| <= spacing(e64) / 2
    margin = errors * 2.0 ** -51 + _half_spacing(e)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        outside = finite & (errors - margin > limit)
        unsure = finite & ~outside & (errors + margin > limit)
        use = np.where(limit > 0, errors / np.where(limit > 0, limit, 1.0),
                       np.where(errors == 0, 0.0, np.inf))
    for index in _positions(unsure):
        with mpmath.workprec(64):
            error = abs(mpmath.fsub(exact(float(a[index])), expected.values[index],
                                    exact=True))
            outside[index] = bool(error > exact(float(limit[index])))
    return outside, np.where(finite, use, 0.0)


# The spacing of float64 numbers in the binade of the largest one, 2**(1023 - 52): np.spacing
# of the largest float64 is the gap to the next one up, which overflows to inf.
_TOP_SPACING = 2.0 ** 971
_LARGEST = float(np.finfo(np.float64).max)


def _half_spacing(e: np.ndarray) -> np.ndarray:
    """Half the float64 spacing at each |e|, which bounds |exact - e| for e the float64
    rounding of an exact value; computed only below the largest float64 (there it is
    ``_TOP_SPACING / 2``; it is unused where e is not finite)."""
    magnitude = np.abs(e)
    spacing = np.full(np.shape(e), _TOP_SPACING)
    np.spacing(magnitude, out=spacing, where=magnitude < _LARGEST)
    return spacing / 2


def _correctly_rounded(expected: Expected, e: np.ndarray, fmt: Any,
                       finite: np.ndarray) -> np.ndarray:
    rounded, midpoint = round_float64_array(np.where(finite, e, 0.0), fmt)
    for index in _positions(midpoint & finite):
        rounded[index] = round_to_float(expected.values[index], fmt.name)
    return rounded


def _round_all(expected: Expected, e: np.ndarray, fmt: Any) -> np.ndarray:
    rounded, midpoint = round_float64_array(e, fmt)
    for index in _positions(midpoint):
        rounded[index] = round_to_float(expected.values[index], fmt.name)
    return rounded


def _show(value: float) -> str:
    return repr(float(value))


def _show_exact(value: Any, dtype: str) -> str:
    if mpmath.isnan(value) or mpmath.isinf(value):
        return repr(float(value))
    return f"{mpmath.nstr(value, 8)} (rounds to {round_to_float(value, dtype)!r} in {dtype})"


def _positions(mask: np.ndarray) -> list[tuple[int, ...]]:
    """The indices where ``mask`` holds (0-d arrays included)."""
    return [tuple(int(i) for i in row) for row in np.argwhere(mask)]
