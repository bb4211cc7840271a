"""The interface every framework adapter implements.

An adapter knows one framework: its version, the public APIs it offers for each op (with
the case options each supports), the devices and dtypes it can run on, and how to run one
``Problem`` through one API on one device, returning the output and the gradient as float64
numpy arrays, or the framework's own error.

APIs are ``native`` (one public call) or ``composed`` (built from public calls the way a
user would, e.g. ``nll_loss(log_softmax(x))``); a composed API says so in its ``kind`` and its
``name``, so the report can tell a framework's own behaviour from glue.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from conformance.cases.problem import Problem


@dataclass(frozen=True)
class Api:
    """One public entry point for one op."""

    id: str  # short, for test ids: "cross_entropy"
    name: str  # what a user calls: "torch.nn.functional.cross_entropy"
    op: str
    supports: frozenset[str]
    kind: str = "native"  # native | composed
    reasons: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # option (or "*") -> the framework's own definition it follows for that option; a failing
    # record of a case using the option is then "semantic" (conformance/judge/check.py)
    semantics: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # linear_cross_entropy: the API rounds every logit to the dtype before its softmax (a
    # composed linear + cross_entropy does); its records are judged with the bound that allows
    # that rounding (conformance/judge/compare.py), the others with the fused one
    materialises_logits: bool = False
    # a variant that exists for some options only (e.g. a class axis moved for an API that
    # has no axis argument): it runs a case only when the case uses one of them, the others
    # run on the API itself; empty: every case it supports
    only_for: frozenset[str] = field(default_factory=frozenset, hash=False, compare=False)
    # Why the API has no gradient (a forward-only runtime), or "" where it has one: a case's
    # gradient is then recorded ``unsupported`` with this reason, its output still judged.
    no_grad: str = ""
    # The public function (or class) a user's implementation stands in for under
    # ``conformance run --impl ... --like NAME`` (``conformance.adapters.implementation``),
    # named from the framework's top-level module ("torch.nn.functional.cross_entropy");
    # "" where the API calls none that could be replaced (glue only, a compiled twin).
    callee: str = field(default="", compare=False)

    def unsupported_reason(self, options: list[str]) -> str | None:
        """Why this API cannot run a case needing ``options``, or None if it can.  An option
        it does not name in ``supports`` is never assumed (conformance/cases/options.py)."""
        for option in options:
            if option not in self.supports:
                return self.reasons.get(option, f"{self.name} does not support {option}")
        if self.only_for and not self.only_for & set(options):
            return (f"{self.name} runs only cases with {' or '.join(sorted(self.only_for))}; "
                    "the others run on the API without this glue")
        return None


@dataclass(frozen=True)
class Device:
    id: str  # "cpu", "cuda:0"
    kind: str  # "cpu" | "gpu"
    name: str  # the model, as far as the framework or the OS tells


@dataclass(frozen=True, eq=False)
class Outcome:
    """What one run gave: values (``ok``), the framework's exception (``error``), or a refusal
    that the adapter recognises as an unsupported feature or dtype (``unsupported``)."""

    status: str  # ok | error | unsupported
    output: np.ndarray | None = None
    grad: np.ndarray | None = None
    error_type: str = ""
    message: str = ""
    # linear_cross_entropy: the gradients beyond the input's, by quantity
    # (grad_linear_weight, grad_linear_bias), and what the run said besides its values (a
    # warning, the path it took), copied into every record's ``extra``
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # The dtype the framework's output had, where the adapter tells it ("" where it does not):
    # an output in another dtype than the inputs' is a discrepancy (conformance/judge/check.py).
    dtype: str = ""


class Adapter(abc.ABC):
    """One framework.  Subclasses import the framework lazily, once, in ``__init__``."""

    name: str = ""
    # Why ``conformance run --like`` can name none of this adapter's APIs, where that is by
    # design (ONNX Runtime runs graphs, not Python functions): --like's refusal says it.
    no_stand_in: str = ""

    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def apis(self) -> tuple[Api, ...]: ...

    @abc.abstractmethod
    def devices(self) -> tuple[Device, ...]: ...

    @abc.abstractmethod
    def dtypes(self) -> tuple[str, ...]: ...

    @abc.abstractmethod
    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        """Run ``problem`` through ``api`` on ``device``.  Exceptions of the framework are
        returned as ``Outcome("error", ...)``, never raised."""

    def apis_for(self, op: str) -> tuple[Api, ...]:
        return tuple(api for api in self.apis() if api.op == op)

    def build(self) -> dict[str, str | None]:
        """What the framework says of its build and of what it sees: CUDA, cuDNN or ROCm
        versions, its BLAS and oneDNN, the accelerator driver, the CPU kernels it picked.
        A key is absent where the framework cannot tell; None where it says it has none
        (a CPU-only build has no CUDA).  Nothing is guessed."""
        return {}

    def stand_in(self, like: Api, api: Api,
                 replacement: Callable[[Any], Callable[..., Any]]) -> None:
        """Make ``run(api, ...)`` compute what ``run(like, ...)`` does, eagerly, calling
        ``replacement(public)`` wherever ``like`` calls its public ``like.callee`` (``public``
        is that function or class itself): same arguments, same tensors on the same device.
        Adapters that support ``conformance run --impl`` override it (``stands_in``)."""
        raise NotImplementedError(f"the {self.name} adapter does not run implementations")

    @classmethod
    def stands_in(cls) -> bool:
        return cls.stand_in is not Adapter.stand_in


def _safe_build(adapter: Adapter) -> dict[str, str | None]:
    """``adapter.build()``, or what failed in it: build information is never worth a run."""
    try:
        return {str(k): None if v is None else str(v) for k, v in adapter.build().items()}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}


def adapter_declaration(adapter: Adapter) -> dict[str, Any]:
    """What ``adapter`` declares, as plain data: the ``adapter`` line of a results file."""
    return {
        "framework": adapter.name,
        "version": adapter.version(),
        "devices": [asdict(d) for d in adapter.devices()],
        "dtypes": list(adapter.dtypes()),
        "build": _safe_build(adapter),
        "apis": [
            {"id": a.id, "name": a.name, "op": a.op, "kind": a.kind,
             "supports": sorted(a.supports), "reasons": dict(a.reasons),
             "semantics": dict(a.semantics), **({"no_grad": a.no_grad} if a.no_grad else {}),
             **({"materialises_logits": True} if a.materialises_logits else {})}
            for a in adapter.apis()
        ],
    }
