"""Framework stand-ins for the project's own tests: they need no framework installed.

``ExactAdapter`` answers with the oracle's values rounded to the dtype (a perfect framework);
``OffsetAdapter`` adds a fixed error to every output element (a buggy one).  Tests register
them through ``$CONFORMANCE_ADAPTERS`` so worker processes find them too (``tests/conftest.py``,
fixture ``stand_ins``).

Faulty frameworks, exact everywhere except on the case whose id is ``$STANDIN_FAULT_CASE``:

* ``SegfaultAdapter`` dies of SIGSEGV there, ``AbortAdapter`` of SIGABRT (``os.abort``);
* ``HangAdapter`` sleeps ``$STANDIN_HANG_SECONDS`` (default 600) there, after writing its pid
  to the file ``$STANDIN_HANG_MARKER`` if set (so a test knows the run is mid-case);
* ``NoisyAdapter`` prints to its stdout, from Python and through the file descriptor, on
  every run (a framework that logs to stdout must not corrupt the worker's protocol);
* ``ImportCrashAdapter`` dies of SIGSEGV as it is created (a framework crashing on import);
* ``MissingAdapter`` raises ImportError as it is created (a framework not installed);
* ``ZerosAdapter`` answers zeros without computing anything (a fast, wrong framework);
* ``RaisingAdapter`` raises ``AssertionError`` there, through the suite's check (what a bug
  of the suite's own code looks like to the runner);
* ``TracingAdapter`` is ``OffsetAdapter`` logging as TorchDynamo does: many empty DEBUG
  records on ``torch.__trace`` per run, and one WARNING of its own;
* ``MaskedAdapter`` is exact but 1 off wherever a logit is ``-inf`` (for ``conformance hunt``).
"""

from __future__ import annotations

import logging
import os
import signal
import time

import numpy as np

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.cases.options import OPTIONS
from conformance.cases.problem import Problem
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


class MaskedAdapter(ExactAdapter):
    """Exact, except that a problem with a ``-inf`` logit gets its output off by 1 (a bug
    only a hunt that draws infinities finds)."""

    name = "masked"

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        outcome = super().run(api, problem, device)
        if outcome.status == "ok" and np.isneginf(problem.input).any():
            return Outcome("ok", np.asarray(outcome.output) + 1.0, outcome.grad)
        return outcome


FAULT_CASE = "STANDIN_FAULT_CASE"
HANG_SECONDS = "STANDIN_HANG_SECONDS"
HANG_MARKER = "STANDIN_HANG_MARKER"


class _Faulty(ExactAdapter):
    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        if problem.case.id == os.environ.get(FAULT_CASE):
            self.fault()
        return super().run(api, problem, device)

    def fault(self) -> None:
        raise NotImplementedError


class SegfaultAdapter(_Faulty):
    name = "segfault"

    def fault(self) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)


class AbortAdapter(_Faulty):
    name = "abort"

    def fault(self) -> None:
        os.abort()


class HangAdapter(_Faulty):
    name = "hang"

    def fault(self) -> None:
        marker = os.environ.get(HANG_MARKER)
        if marker:
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write(str(os.getpid()))
        time.sleep(float(os.environ.get(HANG_SECONDS, "600")))


class NoisyAdapter(ExactAdapter):
    name = "noisy"

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        print("noisy: a framework's chatter on stdout {\"event\": \"done\"}")
        os.write(1, b"noisy: C-level chatter without a newline")
        return super().run(api, problem, device)


class ImportCrashAdapter(ExactAdapter):
    name = "import-crash"

    def __init__(self) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)


class MissingAdapter(ExactAdapter):
    name = "missing"

    def __init__(self) -> None:
        raise ImportError("No module named 'missingframework'")


class ZerosAdapter(ExactAdapter):
    """Answers zeros at once, without the oracle: a fast framework, wrong on most cases."""

    name = "zeros"

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        shape = problem.input.shape
        if problem.case.is_loss:
            axis = problem.class_axis
            shape = shape[:axis] + shape[axis + 1:] if problem.case.reduction == "none" else ()
        return Outcome("ok", np.zeros(shape), np.zeros(problem.input.shape))


class TracingAdapter(OffsetAdapter):
    name = "tracing"

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        trace = logging.getLogger("torch.__trace")
        trace.setLevel(logging.DEBUG)  # torch's trace logger is always at DEBUG
        for _ in range(100):
            trace.debug("")
        logging.getLogger("standin").warning("tracing: a warning worth reading")
        return super().run(api, problem, device)


class RaisingAdapter(_Faulty):
    name = "raising"

    def fault(self) -> None:
        raise AssertionError("a bug of the suite's own code")
