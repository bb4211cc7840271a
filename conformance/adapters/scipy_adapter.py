"""SciPy adapter: ``scipy.special`` on NumPy arrays, on the CPU.

APIs:

* native: ``scipy.special.softmax`` and ``scipy.special.log_softmax`` (``axis``).
* composed, the cross-entropy a NumPy user writes from ``scipy.special.logsumexp`` (SciPy has
  no loss function): for index targets ``logsumexp(x, axis) - x[t]`` picked with
  ``np.take_along_axis``, with class weights, an ignore mask and ``np.sum``/mean by the total
  weight, as in ``reference/SPEC.md``; for probability targets
  ``-np.sum(w * y' * (x - logsumexp(x, axis, keepdims=True)), axis)`` with
  ``y' = y (1 - eps) + eps / C`` (smoothing) and ``np.mean``/``np.sum``; and the NLL of given
  log-probabilities, picked the same way, for ``nll_loss``.

SciPy has no automatic differentiation, so every API declares ``no_grad``: a case's gradient
is recorded ``unsupported`` with that reason and its output is still judged.  The output's
NumPy dtype is reported (``Outcome.dtype``): ``logsumexp`` of a bfloat16 array returns
float64 (SciPy 1.17), which makes the composed losses float64 for bfloat16 inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.adapters.base import Api, Device, Outcome
from conformance.adapters.common import (
    NLL_OPTIONS,
    PROBABILITY_OPTIONS,
    CpuAdapter,
    Settings,
    one_line,
    settings_for,
    stand_in_roots,
)
from conformance.cases.problem import Problem

NO_GRAD = ("SciPy has no automatic differentiation: scipy.special computes values only, "
           "so there is no gradient to check")
INDEX_FOR_PROBABILITY = ("the index-target recipe picks x[t]; probability targets go to the "
                         "-sum(y * (x - logsumexp(x))) recipe")
PROBABILITY_FOR_INDEX = ("the probability-target recipe needs labels shaped like the logits; "
                         "index targets go to the logsumexp(x) - x[t] recipe")
NLL_NO_SMOOTHING = "NLL of one picked log-probability has no label smoothing"
GLUE = "class weights, ignore mask, mean/sum"

APIS = (
    Api("softmax", "scipy.special.softmax", "softmax", frozenset({"k_dim"}), no_grad=NO_GRAD,
        callee="scipy.special.softmax"),
    Api("log_softmax", "scipy.special.log_softmax", "log_softmax", frozenset({"k_dim"}),
        no_grad=NO_GRAD, callee="scipy.special.log_softmax"),
    Api("logsumexp-index",
        f"scipy.special.logsumexp(x, axis) - np.take_along_axis(x, t, axis) + {GLUE}",
        "cross_entropy", NLL_OPTIONS, kind="composed",
        reasons={"probability_target": PROBABILITY_FOR_INDEX,
                 "label_smoothing": NLL_NO_SMOOTHING}, no_grad=NO_GRAD,
        callee="scipy.special.logsumexp"),
    Api("logsumexp-probability",
        "-np.sum(w * smoothed y * (x - scipy.special.logsumexp(x, axis, keepdims=True)), axis)"
        " + np.mean/np.sum",
        "cross_entropy", PROBABILITY_OPTIONS, kind="composed",
        reasons={"index_target": INDEX_FOR_PROBABILITY}, no_grad=NO_GRAD,
        callee="scipy.special.logsumexp"),
    Api("nll", f"NLL(logp, t) via np.take_along_axis + {GLUE}", "nll_loss", NLL_OPTIONS,
        kind="composed", reasons={"label_smoothing": NLL_NO_SMOOTHING}, no_grad=NO_GRAD),
)
DTYPES = ("float64", "float32", "float16", "bfloat16")

Recipe = Callable[[np.ndarray, Any, Any, Settings], np.ndarray]


class ScipyAdapter(CpuAdapter):
    name = "scipy"
    declared_apis, declared_dtypes = APIS, DTYPES

    def __init__(self) -> None:
        import ml_dtypes
        import scipy
        import scipy.special

        self.scipy, self.special = scipy, scipy.special
        self._dtypes = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
                        "bfloat16": ml_dtypes.bfloat16}
        self._recipes = _recipes(scipy.special)

    def version(self) -> str:
        return f"{self.scipy.__version__} (numpy {np.__version__})"

    def stand_in(self, like: Api, api: Api,
                 replacement: Callable[[Any], Callable[..., Any]]) -> None:
        """``api`` runs ``like``'s recipe with ``like.callee`` replaced."""
        scipy = stand_in_roots({"scipy": self.scipy}, like.callee, replacement)["scipy"]
        self._recipes[api.id] = _recipes(scipy.special)[like.id]

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        dtype = self._dtypes[problem.dtype]
        x = problem.input.astype(dtype)  # exact: the values are representable in the dtype
        target = problem.target
        if target is not None and not problem.index_target:
            target = target.astype(dtype)
        weight = None if problem.weight is None else problem.weight.astype(dtype)
        try:
            # NumPy's overflow / invalid warnings are the arithmetic's, judged by the values.
            with np.errstate(all="ignore"):
                out = np.asarray(self._recipes[api.id](x, target, weight, settings_for(problem)))
        except Exception as error:  # the framework's own verdict on the inputs
            return Outcome("error", error_type=type(error).__name__, message=one_line(str(error)))
        return Outcome("ok", out.astype(np.float64), dtype=_dtype_name(out.dtype))


def _dtype_name(dtype: np.dtype) -> str:
    return str(dtype.name)


def _recipes(special: Any) -> dict[str, Recipe]:
    """What each API computes, as ``f(x, target, weight, settings)``, in NumPy."""

    def reduce_rows(rows: Any, target: Any, weight: Any, s: Settings) -> Any:
        """A user's weighted, masked reduction of per-example losses (SPEC.md, Reduction).
        Without weights or ignored targets it is plain np.mean/np.sum."""
        if not (s.weighted or s.ignoring):
            return rows if s.reduction == "none" else getattr(np, s.reduction)(rows)
        keep = target != s.ignore_index
        safe = np.where(keep, target, 0)
        weights = np.where(keep, weight[safe] if s.weighted else 1, 0).astype(rows.dtype)
        # where, not a product: an ignored row's loss may be NaN and must not leak in.
        losses = np.where(keep, rows * weights, 0).astype(rows.dtype)
        if s.reduction == "none":
            return losses
        total = np.sum(losses)
        return total if s.reduction == "sum" else total / np.sum(weights)

    def picked(values: Any, target: Any, s: Settings) -> Any:
        """values[target] along the class axis (ignored targets pick class 0, masked later)."""
        safe = np.where(target != s.ignore_index, target, 0) if s.ignoring else target
        index = np.expand_dims(np.asarray(safe), s.axis)
        return np.take_along_axis(values, index, axis=s.axis).squeeze(s.axis)

    def index_loss(x: Any, t: Any, w: Any, s: Settings) -> Any:
        rows = special.logsumexp(x, axis=s.axis) - picked(x, t, s)
        return reduce_rows(rows, t, w, s)

    def probability_loss(x: Any, y: Any, w: Any, s: Settings) -> Any:
        labels = y * (1 - s.label_smoothing) + s.label_smoothing / s.classes \
            if s.label_smoothing else y
        if s.weighted:
            labels = labels * w.reshape([s.classes if i == s.axis else 1 for i in range(x.ndim)])
        logp = x - special.logsumexp(x, axis=s.axis, keepdims=True)
        rows = -np.sum(labels * logp, axis=s.axis)
        return rows if s.reduction == "none" else getattr(np, s.reduction)(rows)

    return {
        "softmax": lambda x, t, w, s: special.softmax(x, axis=s.axis),
        "log_softmax": lambda x, t, w, s: special.log_softmax(x, axis=s.axis),
        "logsumexp-index": index_loss,
        "logsumexp-probability": probability_loss,
        "nll": lambda x, t, w, s: reduce_rows(-picked(x, t, s), t, w, s),
    }
