"""Keras 3 adapters on the JAX (``keras-jax``) and PyTorch (``keras-torch``) backends.

Keras on TensorFlow stays in the TensorFlow adapter.  Keras picks its backend once, when it is
first imported, from ``$KERAS_BACKEND``: each adapter sets it before importing Keras, and a
process (a ``conformance run`` worker runs one framework) that has already imported Keras on
another backend cannot load the adapter (``AdapterUnavailable``, saying so).

APIs (the same on both backends):

* native ``keras.ops``: ``softmax``, ``log_softmax`` (``axis``),
  ``categorical_crossentropy(y, x, from_logits=True, axis)`` (probability targets) and
  ``sparse_categorical_crossentropy(t, x, from_logits=True, axis)`` (index targets); both
  return one loss per example.
* native ``keras.losses``: ``CategoricalCrossentropy(from_logits=True, label_smoothing, axis)``
  and ``SparseCategoricalCrossentropy(from_logits=True, ignore_class, axis)``, with the dtype
  under test passed as ``dtype`` (Keras losses compute in ``floatx()``, float32, otherwise).
  Reduction ``mean`` is Keras' ``"sum_over_batch_size"``, ``sum`` and ``none`` are ``"sum"``
  and ``None``; with ``ignore_class`` Keras divides by the number of kept targets.  Keras
  divides with ``divide_no_nan`` (a zero divisor gives 0) and returns an unbatched input's
  loss unreduced: declared in ``Api.semantics`` on the conditions where that differs from
  reference/SPEC.md (``zero_divisor``, ``unbatched_mean``), not on the options.
* composed: class weights through ``sample_weight=w[t]`` and Keras'
  ``"mean_with_sample_weight"`` reduction.

Gradients are those of the sum of the outputs (``reference/SPEC.md``): ``jax.vjp`` on the JAX
backend (float64 inside ``jax.enable_x64(True)``, as in the JAX adapter), ``backward`` with a
cotangent of ones on the torch backend.  The output's dtype is reported (``Outcome.dtype``): a
backend that does not keep the dtype under test is recorded as a discrepancy, not hidden.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.adapters.base import Api, Device, Outcome
from conformance.adapters.common import (
    REDUCTIONS,
    UNREDUCED,
    CpuAdapter,
    Settings,
    one_line,
    settings_for,
    stand_in_roots,
)
from conformance.cases.problem import Problem

KERAS_WEIGHTS = ("Keras losses take per-example sample_weight, not class weights; with the "
                 "default reduction sum_over_batch_size a weighted sum is divided by the number "
                 "of examples, not by the total weight (see the composed variant)")
OPS_NO_WEIGHTS = "keras.ops losses have no weights (see the keras.losses composed variant)"
OPS_NO_SMOOTHING = "keras.ops losses have no label_smoothing (CategoricalCrossentropy has it)"
OPS_NO_IGNORE = "keras.ops.sparse_categorical_crossentropy has no ignore_class"
KERAS_NO_SMOOTHING = "SparseCategoricalCrossentropy has no label_smoothing argument"
INDEX_FOR_PROBABILITY = ("takes probability (one-hot) labels; index labels go to the sparse "
                         "variant")
PROBABILITY_FOR_INDEX = "takes index labels; probability labels go to the categorical variant"
# Keras' own definitions of its means (keras/src/losses/loss.py, Keras 3.15), each keyed to
# the data condition where it differs from reference/SPEC.md's (conformance/judge/check.py,
# CONDITIONS): apply_mask and reduce_values divide with divide_no_nan, so a zero divisor
# (every target ignored, class weights that sum to 0, an empty batch) gives 0; and
# reduce_values returns a scalar loss unreduced, so the mean of an unbatched input is its
# weighted loss, not that divided by its weight.  Everywhere else Keras' sum_over_batch_size
# (with ignore_class's mask) and mean_with_sample_weight (with sample_weight=w[t]) are
# SPEC.md's mean: a discrepancy there (a NaN from 0 x NaN on a weight-0 row, a float32
# rounding) is not Keras' definition.
ZERO_DIVISOR = "zero_divisor"
UNBATCHED_MEAN = "unbatched_mean"
KERAS_NO_NAN_DIVISOR = ("Keras divides with divide_no_nan: a zero divisor (no kept target, or "
                        "weights that sum to 0, or an empty batch) gives 0, not 0/0 = NaN or "
                        "x/0 = inf")
KERAS_UNBATCHED_MEAN = ("Keras' reduce_values returns the loss of an unbatched input (a scalar) "
                        "unreduced: the row's loss times its sample weight w[t], where the mean "
                        "divides that by w[t]")
SPARSE = "keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=x.dtype)"

APIS = (
    Api("softmax", "keras.ops.softmax", "softmax", frozenset({"k_dim"}),
        callee="keras.ops.softmax"),
    Api("log_softmax", "keras.ops.log_softmax", "log_softmax", frozenset({"k_dim"}),
        callee="keras.ops.log_softmax"),
    Api("categorical_crossentropy", "keras.ops.categorical_crossentropy(from_logits=True)",
        "cross_entropy", frozenset({"probability_target", "reduction_none", "k_dim"}),
        reasons={"index_target": INDEX_FOR_PROBABILITY, "weight": OPS_NO_WEIGHTS,
                 "label_smoothing": OPS_NO_SMOOTHING, "reduction_mean": UNREDUCED,
                 "reduction_sum": UNREDUCED},
        callee="keras.ops.categorical_crossentropy"),
    Api("sparse_categorical_crossentropy",
        "keras.ops.sparse_categorical_crossentropy(from_logits=True)", "cross_entropy",
        frozenset({"index_target", "reduction_none", "k_dim"}),
        reasons={"probability_target": PROBABILITY_FOR_INDEX, "weight": OPS_NO_WEIGHTS,
                 "ignore_index": OPS_NO_IGNORE, "label_smoothing": OPS_NO_SMOOTHING,
                 "reduction_mean": UNREDUCED, "reduction_sum": UNREDUCED},
        callee="keras.ops.sparse_categorical_crossentropy"),
    Api("CategoricalCrossentropy",
        "keras.losses.CategoricalCrossentropy(from_logits=True, dtype=x.dtype)", "cross_entropy",
        frozenset({"probability_target", "label_smoothing", "k_dim"}) | REDUCTIONS,
        reasons={"index_target": INDEX_FOR_PROBABILITY, "weight": KERAS_WEIGHTS},
        semantics={ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR},
        callee="keras.losses.CategoricalCrossentropy"),
    Api("SparseCategoricalCrossentropy", SPARSE, "cross_entropy",
        frozenset({"index_target", "ignore_index", "k_dim"}) | REDUCTIONS,
        reasons={"probability_target": PROBABILITY_FOR_INDEX, "weight": KERAS_WEIGHTS,
                 "label_smoothing": KERAS_NO_SMOOTHING},
        semantics={ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR},
        callee="keras.losses.SparseCategoricalCrossentropy"),
    Api("SparseCategoricalCrossentropy-sample_weight",
        f"{SPARSE[:-1]}, reduction='mean_with_sample_weight')(t, x, sample_weight=w[t])",
        "cross_entropy", frozenset({"index_target", "weight", "ignore_index", "k_dim"})
        | REDUCTIONS, kind="composed",
        reasons={"probability_target": PROBABILITY_FOR_INDEX,
                 "label_smoothing": KERAS_NO_SMOOTHING},
        semantics={ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR, UNBATCHED_MEAN: KERAS_UNBATCHED_MEAN},
        callee="keras.losses.SparseCategoricalCrossentropy"),
)
DTYPES = ("float64", "float32", "float16", "bfloat16")
KERAS_REDUCTION = {"none": None, "sum": "sum", "mean": "sum_over_batch_size"}

Recipe = Callable[[Any, Any, Any, Settings], Any]


class _KerasAdapter(CpuAdapter):
    """Keras on ``backend``; subclasses name the backend and compute gradients with it."""

    backend = ""
    declared_apis, declared_dtypes = APIS, DTYPES

    def __init__(self) -> None:
        loaded = sys.modules.get("keras")
        if loaded is not None and loaded.backend.backend() != self.backend:
            raise ImportError(f"Keras was already imported on the {loaded.backend.backend()!r} "
                              f"backend in this process; {self.name} needs a process of its own")
        os.environ["KERAS_BACKEND"] = self.backend
        import keras

        self.keras = keras
        self._recipes = _recipes(keras)

    def version(self) -> str:
        return f"{self.keras.__version__} ({self.backend} {self._backend_version()})"

    def _backend_version(self) -> str:
        raise NotImplementedError

    def stand_in(self, like: Api, api: Api,
                 replacement: Callable[[Any], Callable[..., Any]]) -> None:
        """``api`` runs ``like``'s recipe with ``like.callee`` replaced."""
        keras = stand_in_roots({"keras": self.keras}, like.callee, replacement)["keras"]
        self._recipes[api.id] = _recipes(keras)[like.id]

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        try:
            with self._precision(problem.dtype):
                return self._run(api, problem)
        except Exception as error:  # the framework's own verdict on the inputs
            return Outcome("error", error_type=type(error).__name__, message=one_line(str(error)))

    def _precision(self, dtype: str) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def _run(self, api: Api, problem: Problem) -> Outcome:
        ops = self.keras.ops
        x = ops.cast(ops.convert_to_tensor(problem.input, dtype="float64"), problem.dtype)
        target = weight = None
        if problem.target is not None:
            target = (ops.convert_to_tensor(problem.target, dtype="int64") if problem.index_target
                      else ops.cast(ops.convert_to_tensor(problem.target, dtype="float64"),
                                    problem.dtype))
        if problem.weight is not None:
            weight = ops.cast(ops.convert_to_tensor(problem.weight, dtype="float64"),
                              problem.dtype)
        settings = settings_for(problem)
        recipe = self._recipes[api.id]

        def call(x: Any) -> Any:
            return recipe(x, target, weight, settings)

        if problem.case.grad:
            out, grad = self._with_grad(call, x)
        else:
            out, grad = call(x), None
        dtype = self.keras.backend.standardize_dtype(out.dtype)
        return Outcome("ok", self._numpy(out), None if grad is None else self._numpy(grad),
                       dtype=str(dtype))

    def _with_grad(self, call: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _numpy(self, tensor: Any) -> np.ndarray:
        ops = self.keras.ops
        return np.asarray(ops.convert_to_numpy(ops.cast(tensor, "float64")), dtype=np.float64)


class KerasJaxAdapter(_KerasAdapter):
    name = "keras-jax"
    backend = "jax"

    def _backend_version(self) -> str:
        import jax

        return str(jax.__version__)

    def _precision(self, dtype: str) -> contextlib.AbstractContextManager[Any]:
        import jax

        # float64 needs JAX's x64 mode, as a Keras user on JAX must set it; local to the call
        return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()

    def _with_grad(self, call: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
        import jax
        import jax.numpy as jnp

        out, pullback = jax.vjp(call, x)
        (grad,) = pullback(jnp.ones_like(out))
        return out, grad


class KerasTorchAdapter(_KerasAdapter):
    name = "keras-torch"
    backend = "torch"

    def _backend_version(self) -> str:
        import torch

        return str(torch.__version__)

    def _with_grad(self, call: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
        import torch

        leaf = x.detach().requires_grad_(True)
        out = call(leaf)
        out.backward(torch.ones_like(out))
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        return out.detach(), grad


def _recipes(keras: Any) -> dict[str, Recipe]:
    """What each API computes, as ``f(x, target, weight, settings)``."""
    ops = keras.ops

    def categorical(x: Any, y: Any, w: Any, s: Settings) -> Any:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=s.label_smoothing, axis=s.axis,
            reduction=KERAS_REDUCTION[s.reduction], dtype=keras.backend.standardize_dtype(x.dtype))
        return loss(y, x)

    def sparse(x: Any, t: Any, w: Any, s: Settings, sample_weight: bool = False) -> Any:
        reduction = KERAS_REDUCTION[s.reduction]
        if sample_weight and s.reduction == "mean":
            reduction = "mean_with_sample_weight"
        # ignore_class only where a target is ignored, as a user who needs it passes it.
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=s.ignore_index if s.ignoring else None, axis=s.axis,
            reduction=reduction, dtype=keras.backend.standardize_dtype(x.dtype))
        weights = None
        if sample_weight and s.weighted:
            safe = ops.where(ops.not_equal(t, s.ignore_index), t, ops.zeros_like(t))
            weights = ops.take(w, safe)
        return loss(t, x, sample_weight=weights)

    return {
        "softmax": lambda x, t, w, s: ops.softmax(x, axis=s.axis),
        "log_softmax": lambda x, t, w, s: ops.log_softmax(x, axis=s.axis),
        "categorical_crossentropy": lambda x, y, w, s: ops.categorical_crossentropy(
            y, x, from_logits=True, axis=s.axis),
        "sparse_categorical_crossentropy": lambda x, t, w, s: ops.sparse_categorical_crossentropy(
            t, x, from_logits=True, axis=s.axis),
        "CategoricalCrossentropy": categorical,
        "SparseCategoricalCrossentropy": sparse,
        "SparseCategoricalCrossentropy-sample_weight": lambda x, t, w, s: sparse(
            x, t, w, s, sample_weight=True),
    }
