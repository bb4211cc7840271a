"""PyTorch adapter: torch.nn.functional and torch.nn losses, on CPU and every CUDA device.

``softmax``, ``log_softmax``, ``cross_entropy`` and ``nll_loss`` also run through
``torch.compile`` (TorchInductor; on CPU it generates C++ and needs a working C++ compiler).
Each compiled twin is compiled once per process and recompiles per dtype, rank and option
set (shapes become dynamic after the first change); a compilation that fails is
``unsupported`` with torch's reason.  The recompile limit is raised, and hitting it made an
error, only around our calls: by default Dynamo would silently fall back to eager code and
the record would name a compiled API that did not run compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.adapters.base import OPTIONS, Adapter, Api, Device, Outcome
from conformance.adapters.common import one_line, twin
from conformance.problem import Problem
from conformance.results import cpu_name

ALL = frozenset(OPTIONS)
INDEX_ONLY = ALL - {"probability_target", "label_smoothing"}
NO_SMOOTHING = "nll_loss has no label_smoothing argument"
NO_PROBABILITIES = "nll_loss takes class-index targets only"

EAGER_APIS = (
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
COMPILE_PREFIX = "compile"
COMPILED = ("softmax", "log_softmax", "cross_entropy", "nll_loss")
APIS = EAGER_APIS + tuple(twin(api, COMPILE_PREFIX, "torch.compile")
                          for api in EAGER_APIS if api.id in COMPILED)
DTYPES = ("float64", "float32", "float16", "bfloat16")
RECOMPILE_LIMIT = 4096


class TorchAdapter(Adapter):
    name = "torch"

    def __init__(self) -> None:
        import torch
        import torch.nn.functional

        self.torch = torch
        self.functional = torch.nn.functional
        self._functions = _functions(torch)
        self._compiled: dict[str, Callable[..., Any]] = {}  # one torch.compile per API

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
            if _is_compile_failure(error):
                return Outcome("unsupported", error_type=type(error).__name__,
                               message=f"torch.compile failed: {one_line(str(error))}")
            status = "unsupported" if _is_dtype_refusal(error) else "error"
            return Outcome(status, error_type=type(error).__name__, message=str(error))

    def _call(self, api: Api, problem: Problem, x: Any, dtype: Any, device: Device) -> Any:
        torch, case = self.torch, problem.case
        target = weight = None
        if problem.target is not None:
            target_dtype = torch.int64 if problem.index_target else dtype
            target = torch.tensor(problem.target, dtype=target_dtype, device=device.id)
        if problem.weight is not None:
            weight = torch.tensor(problem.weight, dtype=dtype, device=device.id)
        arguments = (x, target, weight, problem.class_axis, case.ignore_index, case.reduction,
                     case.label_smoothing)
        if not api.id.startswith(COMPILE_PREFIX + "-"):
            return self._functions[api.id](*arguments)
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT,
                                        fail_on_recompile_limit_hit=True):
            return self._compiled_function(api.id.removeprefix(COMPILE_PREFIX + "-"))(*arguments)

    def _compiled_function(self, api_id: str) -> Callable[..., Any]:
        if api_id not in self._compiled:
            self._compiled[api_id] = self.torch.compile(self._functions[api_id])
        return self._compiled[api_id]


def _functions(torch: Any) -> dict[str, Callable[..., Any]]:
    """What each API calls, as ``f(x, target, weight, dim, ignore_index, reduction,
    label_smoothing)``: the same function runs eagerly and under torch.compile."""
    functional = torch.nn.functional

    def cross_entropy(x: Any, t: Any, w: Any, dim: int, ii: int, red: str, eps: float) -> Any:
        return functional.cross_entropy(x, t, weight=w, ignore_index=ii, reduction=red,
                                        label_smoothing=eps)

    def cross_entropy_loss(x: Any, t: Any, w: Any, dim: int, ii: int, red: str,
                           eps: float) -> Any:
        return torch.nn.CrossEntropyLoss(weight=w, ignore_index=ii, reduction=red,
                                         label_smoothing=eps)(x, t)

    def nll_of_log_softmax(x: Any, t: Any, w: Any, dim: int, ii: int, red: str,
                           eps: float) -> Any:
        return functional.nll_loss(functional.log_softmax(x, dim=dim), t, weight=w,
                                   ignore_index=ii, reduction=red)

    def nll_loss(x: Any, t: Any, w: Any, dim: int, ii: int, red: str, eps: float) -> Any:
        return functional.nll_loss(x, t, weight=w, ignore_index=ii, reduction=red)

    def nll_loss_module(x: Any, t: Any, w: Any, dim: int, ii: int, red: str, eps: float) -> Any:
        return torch.nn.NLLLoss(weight=w, ignore_index=ii, reduction=red)(x, t)

    def softmax(x: Any, t: Any, w: Any, dim: int, ii: int, red: str, eps: float) -> Any:
        return functional.softmax(x, dim=dim)

    def log_softmax(x: Any, t: Any, w: Any, dim: int, ii: int, red: str, eps: float) -> Any:
        return functional.log_softmax(x, dim=dim)

    return {
        "softmax": softmax, "log_softmax": log_softmax, "cross_entropy": cross_entropy,
        "CrossEntropyLoss": cross_entropy_loss, "nll_loss-log_softmax": nll_of_log_softmax,
        "nll_loss": nll_loss, "NLLLoss": nll_loss_module,
    }


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().to("cpu").double().numpy()


def _is_compile_failure(error: Exception) -> bool:
    """TorchInductor could not build the code (no C++ compiler, no Triton for a GPU, a
    lowering it lacks): a limit of torch.compile here, not a verdict on the inputs."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"BackendCompilerFailed", "InvalidCxxCompiler", "CppCompileError",
                         "FailOnRecompileLimitHit"})


def _is_dtype_refusal(error: Exception) -> bool:
    """torch's message for a kernel missing for a dtype: '... not implemented for 'Half''."""
    return "not implemented for" in str(error)
