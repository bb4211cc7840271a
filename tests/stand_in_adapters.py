"""Framework stand-ins for the project's own tests: they need no framework installed.

``ExactAdapter`` answers with the oracle's values rounded to the dtype (a perfect framework);
``OffsetAdapter`` adds a fixed error to every output element (a buggy one).  Tests register
them through ``$CONFORMANCE_ADAPTERS`` so worker processes find them too.
"""

from __future__ import annotations

import numpy as np

from conformance.adapters.base import OPTIONS, Adapter, Api, Device, Outcome
from conformance.problem import Problem
from reference.formats import round_to_float
from reference.oracle import OracleDomainError

APIS = tuple(
    Api(op, f"standin.{op}", op, frozenset(OPTIONS))
    for op in ("softmax", "log_softmax", "nll_loss", "cross_entropy")
)


def _rounded(values: np.ndarray, dtype: str) -> np.ndarray:
    flat = [round_to_float(v, dtype) for v in values.reshape(-1)]
    return np.asarray(flat, dtype=np.float64).reshape(values.shape)


class ExactAdapter(Adapter):
    name = "exact"
    offset = 0.0

    def version(self) -> str:
        return "1.0"

    def apis(self) -> tuple[Api, ...]:
        return APIS

    def devices(self) -> tuple[Device, ...]:
        return (Device("cpu", "cpu", "stand-in CPU"),)

    def dtypes(self) -> tuple[str, ...]:
        return ("float64", "float32", "float16", "bfloat16")

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        try:
            result = problem.reference()
        except OracleDomainError as error:
            return Outcome("error", error_type="ValueError", message=str(error))
        output = _rounded(result.output, problem.dtype) + self.offset
        grad = None if result.grad is None else _rounded(result.grad, problem.dtype)
        return Outcome("ok", output, grad)


class OffsetAdapter(ExactAdapter):
    name = "offset"
    offset = 0.01
