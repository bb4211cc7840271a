"""MLX adapter: ``mlx.core`` and ``mlx.nn.losses``, on MLX's CPU device (``mlx-cpu`` on
Linux; a GPU appears where MLX reports one).

APIs:

* native: ``mx.softmax``, ``mlx.nn.log_softmax``, ``mlx.nn.losses.cross_entropy`` (index and
  probability targets, ``label_smoothing``, ``axis``, reductions) and
  ``mlx.nn.losses.nll_loss`` (no weights, no ignore_index).
  ``cross_entropy``'s ``weights`` are one per loss element (the shape of the unreduced loss),
  not class weights: MLX rejects class weights of shape ``(C,)`` with "Weights with shape
  (C,) is not the same as output loss with shape ...", so they are ``unsupported`` with that
  message; it has no ignore_index.
* composed: the class-weighted, ignore-masked loss a user writes with those weights,
  ``cross_entropy(x, t', weights=w[t] * keep, reduction="none")`` (``t'`` the target with
  ignored entries set to 0), then ``mx.sum`` or the sum divided by the total weight
  (``reference/SPEC.md``), and the same glue around ``nll_loss``.

MLX's probability-target loss is ``logsumexp(x) - sum(x * y)`` (``mlx/nn/losses.py``, 0.32),
which is ``-sum(y * log_softmax(x))`` only where each row of ``y`` sums to 1; the API declares
that (``Api.semantics``, key ``labels_not_a_distribution``), so such a case is ``semantic``.

Gradients are those of the sum of the outputs (``reference/SPEC.md``), from ``mx.vjp`` with a
cotangent of ones, which gives the outputs too.  The output's MLX dtype is reported
(``Outcome.dtype``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.adapters.common import (
    NLL_OPTIONS,
    REDUCTIONS,
    Settings,
    one_line,
    settings_for,
    stand_in_roots,
)
from conformance.cases.problem import Problem
from conformance.results.environment import cpu_name

CLASS_WEIGHTS = ("mlx.nn.losses.cross_entropy takes weights shaped like the unreduced loss, "
                 "not class weights: MLX raises 'Weights with shape (C,) is not the same as "
                 "output loss with shape ...' (see the composed variant)")
NO_IGNORE = "mlx.nn.losses has no ignore_index (see the composed variant)"
NLL_NO_WEIGHTS = "mlx.nn.losses.nll_loss has no weights argument (see the composed variant)"
NLL_NO_SMOOTHING = "NLL of one picked log-probability has no label smoothing"
PROBABILITIES_NOT_A_DISTRIBUTION = (
    "MLX computes a probability-target loss as logsumexp(x) - sum(x * y) (and its gradient as "
    "softmax(x) - y), which is -sum(y * log_softmax(x)) only where each row of y sums to 1")
LABELS_NOT_A_DISTRIBUTION = "labels_not_a_distribution"
INDEX_ONLY = "the class-weight glue picks w[t]: index targets only"
GLUE = "weights=w[t] * keep, ignored targets set to 0, sum / total weight"

APIS = (
    Api("softmax", "mlx.core.softmax", "softmax", frozenset({"k_dim"}),
        callee="mlx.core.softmax"),
    Api("log_softmax", "mlx.nn.log_softmax", "log_softmax", frozenset({"k_dim"}),
        callee="mlx.nn.log_softmax"),
    Api("cross_entropy", "mlx.nn.losses.cross_entropy", "cross_entropy",
        frozenset({"index_target", "probability_target", "label_smoothing", "k_dim"})
        | REDUCTIONS,
        reasons={"weight": CLASS_WEIGHTS, "ignore_index": NO_IGNORE},
        semantics={LABELS_NOT_A_DISTRIBUTION: PROBABILITIES_NOT_A_DISTRIBUTION},
        callee="mlx.nn.losses.cross_entropy"),
    Api("cross_entropy-class_weights", f"mlx.nn.losses.cross_entropy(x, t', {GLUE})",
        "cross_entropy", NLL_OPTIONS | {"label_smoothing"}, kind="composed",
        reasons={"probability_target": INDEX_ONLY}, callee="mlx.nn.losses.cross_entropy"),
    Api("nll_loss", "mlx.nn.losses.nll_loss", "nll_loss",
        frozenset({"index_target", "k_dim"}) | REDUCTIONS,
        reasons={"weight": NLL_NO_WEIGHTS, "ignore_index": NO_IGNORE,
                 "label_smoothing": NLL_NO_SMOOTHING},
        callee="mlx.nn.losses.nll_loss"),
    Api("nll_loss-class_weights", f"mlx.nn.losses.nll_loss(logp, t') + {GLUE}", "nll_loss",
        NLL_OPTIONS, kind="composed", reasons={"label_smoothing": NLL_NO_SMOOTHING},
        callee="mlx.nn.losses.nll_loss"),
)
DTYPES = ("float64", "float32", "float16", "bfloat16")

Recipe = Callable[[Any, Any, Any, Settings], Any]


class MlxAdapter(Adapter):
    name = "mlx"

    def __init__(self) -> None:
        import mlx
        import mlx.core as mx
        import mlx.nn as nn

        self.mlx, self.mx, self.nn = mlx, mx, nn
        self._recipes = _recipes(mx, nn)

    def version(self) -> str:
        return str(getattr(self.mx, "__version__", "?"))

    def apis(self) -> tuple[Api, ...]:
        return APIS

    def dtypes(self) -> tuple[str, ...]:
        return DTYPES

    def devices(self) -> tuple[Device, ...]:
        devices = [Device("cpu", "cpu", cpu_name())]
        if self.mx.is_available(self.mx.gpu):
            devices.append(Device("gpu:0", "gpu", "MLX GPU"))
        return tuple(devices)

    def stand_in(self, like: Api, api: Api,
                 replacement: Callable[[Any], Callable[..., Any]]) -> None:
        """``api`` runs ``like``'s recipe with ``like.callee`` replaced."""
        mlx = stand_in_roots({"mlx": self.mlx}, like.callee, replacement)["mlx"]
        self._recipes[api.id] = _recipes(mlx.core, mlx.nn)[like.id]

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        mx = self.mx
        place = mx.gpu if device.kind == "gpu" else mx.cpu
        try:
            with mx.stream(place):
                return self._run(api, problem)
        except Exception as error:  # the framework's own verdict on the inputs
            return Outcome("error", error_type=type(error).__name__, message=one_line(str(error)))

    def _run(self, api: Api, problem: Problem) -> Outcome:
        mx = self.mx
        dtype = getattr(mx, problem.dtype)
        # Through float64 (mx.array makes float32 of a float64 NumPy array unless told): the
        # values are exact in the dtype, so the cast is exact.
        x = mx.array(problem.input, dtype=mx.float64).astype(dtype)
        target = weight = None
        if problem.target is not None:
            target = (mx.array(problem.target.astype(np.int32)) if problem.index_target
                      else mx.array(problem.target, dtype=mx.float64).astype(dtype))
        if problem.weight is not None:
            weight = mx.array(problem.weight, dtype=mx.float64).astype(dtype)
        settings = settings_for(problem)
        recipe = self._recipes[api.id]
        if not problem.case.grad:
            out = recipe(x, target, weight, settings)
            mx.eval(out)
            return Outcome("ok", _numpy(mx, out), dtype=_name(out.dtype))
        # MLX is lazy: this first call only builds the graph, for the cotangent's shape
        shape = recipe(x, target, weight, settings).shape
        outs, grads = mx.vjp(lambda x: recipe(x, target, weight, settings), [x],
                             [mx.ones(shape, dtype)])
        mx.eval(outs, grads)
        return Outcome("ok", _numpy(mx, outs[0]), _numpy(mx, grads[0]),
                       dtype=_name(outs[0].dtype))


def _recipes(mx: Any, nn: Any) -> dict[str, Recipe]:
    """What each API computes, as ``f(x, target, weight, settings)``."""
    losses = nn.losses

    def class_weighted(loss: Callable[..., Any], smoothing: bool) -> Recipe:
        def recipe(x: Any, t: Any, w: Any, s: Settings) -> Any:
            keep = t != s.ignore_index
            safe = mx.where(keep, t, 0) if s.ignoring else t
            picked = w[safe] if s.weighted else mx.ones(safe.shape, x.dtype)
            if smoothing:  # cross_entropy's own per-element weights
                rows = loss(x, safe, weights=picked, axis=s.axis,
                            label_smoothing=s.label_smoothing, reduction="none")
            else:
                rows = loss(x, safe, axis=s.axis, reduction="none") * picked
            weights = picked
            if s.ignoring:  # where, not a product: an ignored row's NaN must not leak in
                rows = mx.where(keep, rows, mx.zeros_like(rows))
                weights = mx.where(keep, picked, mx.zeros_like(picked))
            if s.reduction == "none":
                return rows
            total = mx.sum(rows)
            return total if s.reduction == "sum" else total / mx.sum(weights)

        return recipe

    return {
        "softmax": lambda x, t, w, s: mx.softmax(x, axis=s.axis),
        "log_softmax": lambda x, t, w, s: nn.log_softmax(x, axis=s.axis),
        "cross_entropy": lambda x, t, w, s: losses.cross_entropy(
            x, t, axis=s.axis, label_smoothing=s.label_smoothing, reduction=s.reduction),
        "cross_entropy-class_weights": class_weighted(losses.cross_entropy, smoothing=True),
        "nll_loss": lambda x, t, w, s: losses.nll_loss(x, t, axis=s.axis, reduction=s.reduction),
        "nll_loss-class_weights": class_weighted(losses.nll_loss, smoothing=False),
    }


def _name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def _numpy(mx: Any, array: Any) -> np.ndarray:
    return np.asarray(array.astype(mx.float64) if array.dtype != mx.float64 else array,
                      dtype=np.float64)
