"""PyTorch adapter: torch.nn.functional and torch.nn losses, on CPU and every CUDA device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.adapters.base import OPTIONS, Adapter, Api, Device, Outcome
from conformance.problem import Problem
from conformance.results import cpu_name

ALL = frozenset(OPTIONS)
INDEX_ONLY = ALL - {"probability_target", "label_smoothing"}
NO_SMOOTHING = "nll_loss has no label_smoothing argument"
NO_PROBABILITIES = "nll_loss takes class-index targets only"

APIS = (
    Api("softmax", "torch.nn.functional.softmax", "softmax", frozenset({"k_dim"})),
    Api("log_softmax", "torch.nn.functional.log_softmax", "log_softmax", frozenset({"k_dim"})),
    Api("cross_entropy", "torch.nn.functional.cross_entropy", "cross_entropy", ALL),
    Api("CrossEntropyLoss", "torch.nn.CrossEntropyLoss", "cross_entropy", ALL),
    Api("nll_loss-log_softmax", "torch.nn.functional.nll_loss(log_softmax(x))",
        "cross_entropy", INDEX_ONLY, kind="composed",
        reasons={"label_smoothing": NO_SMOOTHING, "probability_target": NO_PROBABILITIES}),
    Api("nll_loss", "torch.nn.functional.nll_loss", "nll_loss", INDEX_ONLY),
    Api("NLLLoss", "torch.nn.NLLLoss", "nll_loss", INDEX_ONLY),
)
DTYPES = ("float64", "float32", "float16", "bfloat16")


class TorchAdapter(Adapter):
    name = "torch"

    def __init__(self) -> None:
        import torch
        import torch.nn.functional

        self.torch = torch
        self.functional = torch.nn.functional

    def version(self) -> str:
        return str(self.torch.__version__)

    def apis(self) -> tuple[Api, ...]:
        return APIS

    def dtypes(self) -> tuple[str, ...]:
        return DTYPES

    def devices(self) -> tuple[Device, ...]:
        devices = [Device("cpu", "cpu", cpu_name())]
        if self.torch.cuda.is_available():
            for i in range(self.torch.cuda.device_count()):
                devices.append(Device(f"cuda:{i}", "gpu", self.torch.cuda.get_device_name(i)))
        return tuple(devices)

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        torch = self.torch
        dtype = getattr(torch, problem.dtype)
        try:
            x = torch.tensor(problem.input, dtype=dtype, device=device.id,
                             requires_grad=problem.case.grad)
            out = self._call(api, problem, x, dtype, device)
            grad = None
            if problem.case.grad:
                out.backward(torch.ones_like(out))  # d(sum of outputs)/dx, see SPEC.md
                grad = _numpy(x.grad) if x.grad is not None else np.zeros(problem.input.shape)
            return Outcome("ok", _numpy(out), grad)
        except Exception as error:  # the framework's own verdict on the inputs
            status = "unsupported" if _is_dtype_refusal(error) else "error"
            return Outcome(status, error_type=type(error).__name__, message=str(error))

    def _call(self, api: Api, problem: Problem, x: Any, dtype: Any, device: Device) -> Any:
        torch, functional = self.torch, self.functional
        case, dim = problem.case, problem.class_axis
        if api.op == "softmax":
            return functional.softmax(x, dim=dim)
        if api.op == "log_softmax":
            return functional.log_softmax(x, dim=dim)
        target_dtype = torch.int64 if problem.index_target else dtype
        target = torch.tensor(problem.target, dtype=target_dtype, device=device.id)
        weight = (None if problem.weight is None
                  else torch.tensor(problem.weight, dtype=dtype, device=device.id))
        common = {"weight": weight, "ignore_index": case.ignore_index,
                  "reduction": case.reduction}
        calls: dict[str, Callable[[], Any]] = {
            "cross_entropy": lambda: functional.cross_entropy(
                x, target, label_smoothing=case.label_smoothing, **common),
            "CrossEntropyLoss": lambda: torch.nn.CrossEntropyLoss(
                label_smoothing=case.label_smoothing, **common)(x, target),
            "nll_loss-log_softmax": lambda: functional.nll_loss(
                functional.log_softmax(x, dim=dim), target, **common),
            "nll_loss": lambda: functional.nll_loss(x, target, **common),
            "NLLLoss": lambda: torch.nn.NLLLoss(**common)(x, target),
        }
        return calls[api.id]()


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().to("cpu").double().numpy()


def _is_dtype_refusal(error: Exception) -> bool:
    """torch's message for a kernel missing for a dtype: '... not implemented for 'Half''."""
    return "not implemented for" in str(error)
