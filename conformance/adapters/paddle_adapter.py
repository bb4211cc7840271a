"""PaddlePaddle adapter: ``paddle.nn.functional``, in dynamic-graph mode, on the CPU (and the
GPUs Paddle reports, where a CUDA build is installed).

APIs:

* native: ``softmax``, ``log_softmax`` (``axis``), ``cross_entropy`` with index labels
  (``weight``, ``ignore_index``, ``label_smoothing``, ``axis``, reductions) and with
  ``soft_label=True`` for probability labels, and ``nll_loss`` (``weight``, ``ignore_index``;
  the class axis is 1, as in torch).
  An unbatched ``(C,)`` input to ``nll_loss`` is outside its documented shapes and is
  ``unsupported`` (Paddle raises "Expected 2 or more dimensions").
* composed: ``cross_entropy(softmax(x), t, use_softmax=False)``, the loss of probabilities a
  user computed first.

Paddle documents its own weighting of soft labels: with ``weight`` and ``soft_label=True`` the
``mean`` divides the weighted losses by ``sum_j sum_i weight[label_i]``
(``paddle.nn.functional.cross_entropy``, Paddle 3.3: "loss = sum_j loss_j / sum_j (sum_i
weight[label_i])"), not by the total label mass the other frameworks use; the soft-label
API declares that for ``weight`` (``Api.semantics``), so such a case is ``semantic``.

Gradients are those of the sum of the outputs (``reference/SPEC.md``): ``backward`` with a
cotangent of ones.  A dtype without a kernel on the device is ``unsupported`` with Paddle's
message; the output's dtype is reported (``Outcome.dtype``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.adapters.common import NLL_OPTIONS, REDUCTIONS, Settings, one_line, settings_for
from conformance.cases.problem import Problem
from conformance.results.environment import cpu_name

SOFT_LABEL_WEIGHTS = ("Paddle's soft-label mean divides the weighted losses by "
                      "sum_j sum_i weight[label_i] (paddle.nn.functional.cross_entropy docs, "
                      "Paddle 3.3), not by the label mass weighted by class")
INDEX_FOR_PROBABILITY = "soft_label=True takes probability labels shaped like the logits"
PROBABILITY_FOR_INDEX = "soft_label=False takes index labels (soft_label=True is its own API)"
SOFT_NO_IGNORE = "ignore_index is valid only with soft_label=False (Paddle's docs)"
NLL_NO_SMOOTHING = "nll_loss has no label_smoothing argument"
NLL_UNBATCHED = ("paddle.nn.functional.nll_loss takes input of shape (N, C) or (N, C, d1, ...): "
                 "an unbatched (C,) input is outside its documented domain")

APIS = (
    Api("softmax", "paddle.nn.functional.softmax", "softmax", frozenset({"k_dim"})),
    Api("log_softmax", "paddle.nn.functional.log_softmax", "log_softmax", frozenset({"k_dim"})),
    Api("cross_entropy", "paddle.nn.functional.cross_entropy", "cross_entropy",
        NLL_OPTIONS | {"label_smoothing"},
        reasons={"probability_target": PROBABILITY_FOR_INDEX}),
    Api("cross_entropy-soft_label", "paddle.nn.functional.cross_entropy(soft_label=True)",
        "cross_entropy",
        frozenset({"probability_target", "weight", "label_smoothing", "k_dim"}) | REDUCTIONS,
        reasons={"index_target": INDEX_FOR_PROBABILITY, "ignore_index": SOFT_NO_IGNORE},
        semantics={"weight": SOFT_LABEL_WEIGHTS}),
    Api("cross_entropy-use_softmax_false",
        "paddle.nn.functional.cross_entropy(paddle.nn.functional.softmax(x), t, "
        "use_softmax=False)", "cross_entropy", NLL_OPTIONS | {"label_smoothing"},
        kind="composed", reasons={"probability_target": PROBABILITY_FOR_INDEX}),
    Api("nll_loss", "paddle.nn.functional.nll_loss", "nll_loss", NLL_OPTIONS,
        reasons={"label_smoothing": NLL_NO_SMOOTHING}),
)
DTYPES = ("float64", "float32", "float16", "bfloat16")
# Paddle's messages for a dtype without a kernel ("The kernel with key (CPU, ..., float16)
# of kernel `...` is not registered").
REFUSALS = ("is not registered", "not support", "Unsupported data type")

Recipe = Callable[[Any, Any, Any, Settings], Any]


class PaddleAdapter(Adapter):
    name = "paddle"

    def __init__(self) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # Paddle's C++ logging: errors only
        import paddle
        import paddle.nn.functional

        self.paddle, self.functional = paddle, paddle.nn.functional
        self._recipes = _recipes(paddle.nn.functional)

    def version(self) -> str:
        return str(self.paddle.__version__)

    def apis(self) -> tuple[Api, ...]:
        return APIS

    def dtypes(self) -> tuple[str, ...]:
        return DTYPES

    def devices(self) -> tuple[Device, ...]:
        devices = [Device("cpu", "cpu", cpu_name())]
        if self.paddle.device.is_compiled_with_cuda():
            for i in range(self.paddle.device.cuda.device_count()):
                devices.append(Device(f"cuda:{i}", "gpu",
                                      self.paddle.device.cuda.get_device_name(i)))
        return tuple(devices)

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        paddle = self.paddle
        if api.op == "nll_loss" and problem.input.ndim < 2:
            return Outcome("unsupported", message=NLL_UNBATCHED)
        try:
            paddle.set_device("cpu" if device.kind == "cpu" else f"gpu:{device.id.split(':')[1]}")
            return self._run(api, problem)
        except Exception as error:  # the framework's own verdict on the inputs
            message = one_line(str(error))
            refused = any(text in message for text in REFUSALS) and problem.dtype in message
            return Outcome("unsupported" if refused else "error",
                           error_type=type(error).__name__, message=message)

    def _run(self, api: Api, problem: Problem) -> Outcome:
        paddle = self.paddle
        # Through float64: the values are exact in the dtype, so the cast is exact.
        x = paddle.to_tensor(problem.input, dtype="float64").astype(problem.dtype)
        x.stop_gradient = not problem.case.grad
        target = weight = None
        if problem.target is not None:
            target = (paddle.to_tensor(problem.target, dtype="int64") if problem.index_target
                      else paddle.to_tensor(problem.target, dtype="float64").astype(problem.dtype))
        if problem.weight is not None:
            weight = paddle.to_tensor(problem.weight, dtype="float64").astype(problem.dtype)
        out = self._recipes[api.id](x, target, weight, settings_for(problem))
        grad = None
        if problem.case.grad:
            out.backward(paddle.ones_like(out))
            grad = _numpy(x.grad) if x.grad is not None else np.zeros(problem.input.shape)
        return Outcome("ok", _numpy(out), grad, dtype=str(out.dtype).replace("paddle.", ""))


def _numpy(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.astype("float64").numpy(), dtype=np.float64)


def _recipes(functional: Any) -> dict[str, Recipe]:
    """What each API computes, as ``f(x, target, weight, settings)``."""

    def cross_entropy(x: Any, t: Any, w: Any, s: Settings, soft: bool = False) -> Any:
        return functional.cross_entropy(
            x, t, weight=w if s.weighted else None, ignore_index=s.ignore_index,
            reduction=s.reduction, soft_label=soft, axis=s.axis,
            label_smoothing=s.label_smoothing)

    def of_probabilities(x: Any, t: Any, w: Any, s: Settings) -> Any:
        return functional.cross_entropy(
            functional.softmax(x, axis=s.axis), t, weight=w if s.weighted else None,
            ignore_index=s.ignore_index, reduction=s.reduction, axis=s.axis,
            use_softmax=False, label_smoothing=s.label_smoothing)

    def nll(x: Any, t: Any, w: Any, s: Settings) -> Any:
        return functional.nll_loss(x, t, weight=w if s.weighted else None,
                                   ignore_index=s.ignore_index, reduction=s.reduction)

    return {
        "softmax": lambda x, t, w, s: functional.softmax(x, axis=s.axis),
        "log_softmax": lambda x, t, w, s: functional.log_softmax(x, axis=s.axis),
        "cross_entropy": cross_entropy,
        "cross_entropy-soft_label": lambda x, y, w, s: cross_entropy(x, y, w, s, soft=True),
        "cross_entropy-use_softmax_false": of_probabilities,
        "nll_loss": nll,
    }
