"""PyTorch adapter: torch.nn.functional and torch.nn losses, on CPU and every accelerator
torch reports (``torch.accelerator``: CUDA, XPU, MPS, PrivateUse1 backends such as npu).

``softmax`` and ``log_softmax`` take the case's class axis (``dim``); the losses take the
classes on axis 1 only, so a case with another class axis or with per-example weights runs on
a composed variant, ``cross_entropy(x.movedim(axis, 1), ...)`` times the weights and reduced
as the case names (issue 20), and only such cases do (``Api.only_for``).  No API has ``where=``.

``softmax``, ``log_softmax``, ``cross_entropy`` and ``nll_loss`` also run through
``torch.compile`` (TorchInductor; on CPU it generates C++ and needs a working C++ compiler).

* **Code that depends only on the job.**  Each twin is ``torch.compile(f, dynamic=False)``:
  one compilation per input shape, dtype and option set (label smoothing included), never a
  dynamic-shape graph.  With Dynamo's default automatic dynamic shapes, the code a job ran
  depended on what the process had compiled before it (static for the first shape, dynamic
  after a second), so a resumed run, or a fresh worker after a crash, gave other ULP figures
  than an uninterrupted one (issue 12, item 7).
* **No limit of ours becomes a verdict.**  Dynamo keeps at most ``RECOMPILE_LIMIT``
  compilations of a twin; past it (``recompile_limit`` or ``accumulated_recompile_limit``),
  by default it would silently run eager code under the compiled API's name.  The adapter
  calls ``torch._dynamo.reset()`` before a twin's new signatures would pass the limit (one
  compilation each, with static shapes); should the limit be hit all the same, around our
  calls that raises, and the adapter resets and runs the job again.  With static
  compilation a reset changes no job's code, only its compile time.  A limit still hit
  after a reset is the suite's failure (raised, recorded as a crash), never ``unsupported``.
* **An unusable compilation cache is not torch's failure.**  A TorchInductor cache
  (``$TORCHINDUCTOR_CACHE_DIR``) that is read-only, full or damaged makes compilation fail
  with an ``OSError`` or a C++ compile error.  The job is then run again with a private
  temporary cache; if that works, the rest of the process keeps it and stderr says so once.
  A failure that persists there is torch's, and is recorded as below.
* A compilation that fails for torch's own reasons (no C++ compiler, a lowering it lacks)
  is ``unsupported`` with torch's message.
"""

from __future__ import annotations

import atexit
import errno
import getpass
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.adapters.common import (
    AXES,
    NAMED,
    NO_WHERE,
    exception_chain,
    one_line,
    stand_in_roots,
    twin,
    unwritable,
    warn_once,
)
from conformance.cases.options import OPTIONS
from conformance.cases.problem import Problem
from conformance.results.environment import cpu_name

ALL = frozenset(OPTIONS)
INDEX_ONLY = ALL - {"probability_target", "label_smoothing"}
NO_SMOOTHING = "nll_loss has no label_smoothing argument"
NO_PROBABILITIES = "nll_loss takes class-index targets only"
# Issue 20: torch's losses take the classes on axis 1 and have no per-example weights.
AXIS_ONE = ("takes the classes on axis 1 and has no axis argument (see the composed "
            "x.movedim(axis, 1) variant)")
NO_SAMPLE_WEIGHT = ("has no per-example weights: reduction='none', times the weights, then the "
                    "named reduction (see the composed variant)")
TORCH_REASONS = {"class_axis": AXIS_ONE, "k_dim_class_last": AXIS_ONE,
                 "sample_weight": NO_SAMPLE_WEIGHT, "where": NO_WHERE,
                 **{name: NO_SAMPLE_WEIGHT for name in NAMED}}
WEIGHTED = ("torch.nn.functional.cross_entropy(x.movedim(axis, 1), t, weight, "
            "reduction='none') * sample_weight + the named reduction")

EAGER_APIS: tuple[Api, ...] = (
    Api("softmax", "torch.nn.functional.softmax", "softmax", frozenset({"k_dim"}) | AXES,
        reasons={"where": NO_WHERE}, callee="torch.nn.functional.softmax"),
    Api("log_softmax", "torch.nn.functional.log_softmax", "log_softmax",
        frozenset({"k_dim"}) | AXES, reasons={"where": NO_WHERE},
        callee="torch.nn.functional.log_softmax"),
    Api("cross_entropy", "torch.nn.functional.cross_entropy", "cross_entropy", ALL,
        reasons=TORCH_REASONS, callee="torch.nn.functional.cross_entropy"),
    Api("CrossEntropyLoss", "torch.nn.CrossEntropyLoss", "cross_entropy", ALL,
        reasons=TORCH_REASONS, callee="torch.nn.CrossEntropyLoss"),
    Api("nll_loss-log_softmax", "torch.nn.functional.nll_loss(log_softmax(x))",
        "cross_entropy", INDEX_ONLY, kind="composed",
        reasons={"label_smoothing": NO_SMOOTHING, "probability_target": NO_PROBABILITIES,
                 **TORCH_REASONS},
        callee="torch.nn.functional.nll_loss"),
    Api("nll_loss", "torch.nn.functional.nll_loss", "nll_loss", INDEX_ONLY,
        reasons=TORCH_REASONS, callee="torch.nn.functional.nll_loss"),
    Api("NLLLoss", "torch.nn.NLLLoss", "nll_loss", INDEX_ONLY, reasons=TORCH_REASONS,
        callee="torch.nn.NLLLoss"),
    # issue 20: the class axis moved to 1 (exact) and per-example weights, as a user writes
    # them; only for the cases that need it (the others run on cross_entropy itself); no
    # callee: its glue is not a recipe --like can run a user's function through
    Api("cross_entropy-weighted", WEIGHTED, "cross_entropy",
        ALL | AXES | {"sample_weight"} | NAMED, kind="composed",
        reasons={"where": NO_WHERE}, only_for=AXES | {"sample_weight"} | NAMED),
)
# linear_cross_entropy: torch's own op on its reference path (options=None, which runs
# linear then cross_entropy: logits in the dtype), one API per chunked configuration a user
# would pick (each acc_policy, and one explicit batch_chunk_size), and the composed
# cross_entropy(linear(...)) users write today.
LINEAR_OP = "linear_cross_entropy"
LINEAR_ALL = frozenset(OPTIONS) - {"k_dim"}
CHUNKED = LINEAR_ALL - {"probability_target", "label_smoothing"}
CHUNKED_REASON = ("torch's chunked path needs label_smoothing == 0 and class-index (int64) "
                  "targets; other configurations fall back to its reference path with a "
                  "warning (torch.nn.functional.linear_cross_entropy)")
FALLBACK_WARNING = "linear_cross_entropy: ``options`` ignored"
# (API id suffix, LinearCrossEntropyOptions arguments); acc_dtype float32 for float16/bfloat16
# inputs (what acc_policy="auto" picks on CPU), the input dtype otherwise (torch refuses a
# float32 acc_dtype with float32/float64 inputs)
CHUNKED_CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "auto": {"acc_policy": "auto"},
    "accurate": {"acc_policy": "accurate"},
    "balanced": {"acc_policy": "balanced"},
    "compact": {"acc_policy": "compact"},
    "auto-chunk4": {"acc_policy": "auto", "batch_chunk_size": 4},
}
LINEAR_APIS = (
    Api("linear_cross_entropy", "torch.nn.functional.linear_cross_entropy(options=None)",
        LINEAR_OP, LINEAR_ALL, materialises_logits=True,
        callee="torch.nn.functional.linear_cross_entropy"),
    *(Api(f"linear_cross_entropy-{name}",
          "torch.nn.functional.linear_cross_entropy(options=LinearCrossEntropyOptions("
          + ", ".join(f"{k}={v!r}" for k, v in arguments.items())
          + ", acc_dtype=float32 for half inputs))",
          LINEAR_OP, CHUNKED,
          reasons={"probability_target": CHUNKED_REASON, "label_smoothing": CHUNKED_REASON})
      for name, arguments in CHUNKED_CONFIGURATIONS.items()),
    Api("cross_entropy-linear", "torch.nn.functional.cross_entropy(linear(input, W, b))",
        LINEAR_OP, LINEAR_ALL, kind="composed", materialises_logits=True),
)
EAGER_APIS = EAGER_APIS + LINEAR_APIS
COMPILE_PREFIX = "compile"
COMPILED = ("softmax", "log_softmax", "cross_entropy", "nll_loss",
            *(api.id for api in LINEAR_APIS))
APIS = EAGER_APIS + tuple(twin(api, COMPILE_PREFIX, "torch.compile")
                          for api in EAGER_APIS if api.id in COMPILED)
DTYPES = ("float64", "float32", "float16", "bfloat16")
# Compilations Dynamo keeps per twin before the adapter resets it (torch's own default for
# accumulated_recompile_limit; its recompile_limit of 8 is raised to it).
RECOMPILE_LIMIT = 256
CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"
# errno values of a directory that cannot be written: the cache's fault, never torch's.
STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                            errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EFBIG, errno.EIO})


class SuiteLimit(RuntimeError):
    """A limit of the suite's own stopped a compiled twin: raised out of ``run`` (the worker
    records the job as a crash of the check), never recorded as torch's verdict."""


class TorchAdapter(Adapter):
    name = "torch"

    def __init__(self) -> None:
        import torch

        # First: importing torch._dynamo (which torch.nn.functional does not) makes the
        # cache directory, and fails halfway where it cannot.
        self._cache = InductorCache()
        self._cache.check(torch)
        import torch.nn.functional

        self.torch = torch
        self.functional = torch.nn.functional
        self._functions = {**_functions(torch), **_linear_functions(torch)}
        self._compiled: dict[str, Callable[..., Any]] = {}  # one torch.compile per API
        # per twin, the signatures compiled since Dynamo was last reset (_make_room)
        self._signatures: dict[str, set[tuple[Any, ...]]] = {}

    def version(self) -> str:
        return str(self.torch.__version__)

    def apis(self) -> tuple[Api, ...]:
        return APIS

    def dtypes(self) -> tuple[str, ...]:
        return DTYPES

    def build(self) -> dict[str, str | None]:
        return torch_build(self.torch)

    def devices(self) -> tuple[Device, ...]:
        return (Device("cpu", "cpu", cpu_name()), *accelerators(self.torch))

    def stand_in(self, like: Api, api: Api,
                 replacement: Callable[[Any], Callable[..., Any]]) -> None:
        """``api`` runs ``like``'s recipe eagerly, with ``like.callee`` replaced."""
        roots = stand_in_roots({"torch": self.torch}, like.callee, replacement)
        recipes = {**_functions(roots["torch"]), **_linear_functions(roots["torch"])}
        self._functions[api.id] = recipes[like.id]

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        try:
            if api.id.startswith(COMPILE_PREFIX + "-"):
                return self._run_compiled(api, problem, device)
            return self._run_eager(api, problem, device)
        except SuiteLimit:
            raise
        except Exception as error:  # the framework's own verdict on the inputs
            return _outcome_of(error)

    def _attempt(self, api: Api, problem: Problem, device: Device) -> Outcome:
        """One run of the job: the output, then the gradient (which compiles the backward
        graph of a compiled twin); torch's exceptions propagate."""
        if problem.case.op == LINEAR_OP:
            return self._attempt_linear(api, problem, device)
        torch = self.torch
        dtype = getattr(torch, problem.dtype)
        x = torch.tensor(problem.input, dtype=dtype, device=device.id,
                         requires_grad=problem.case.grad)
        out = self._call(api, problem, x, dtype, device)
        grad = None
        if problem.case.grad:
            out.backward(torch.ones_like(out))  # d(sum of outputs)/dx, see SPEC.md
            grad = _numpy(x.grad) if x.grad is not None else np.zeros(problem.input.shape)
        return Outcome("ok", _numpy(out), grad)

    def _run_eager(self, api: Api, problem: Problem, device: Device) -> Outcome:
        """The job on an eager API. A user's function (``--impl``) may compile inside it, and
        Dynamo's recompile limits count every job of this one process: a limit hit is the
        suite's, so Dynamo is reset and the job run once more; still hit, it is SuiteLimit."""
        try:
            return self._attempt(api, problem, device)
        except Exception as error:
            if not _hit_recompile_limit(error):
                raise
            self._recover(error, set())
        try:
            return self._attempt(api, problem, device)
        except Exception as error:
            if _hit_recompile_limit(error):
                self._recover(error, {"limit"})  # raises SuiteLimit
            raise

    def _run_compiled(self, api: Api, problem: Problem, device: Device) -> Outcome:
        """The job on a compiled twin, run again (once for each cause) after a failure that
        is the suite's or the cache's, not torch's: see the module docstring."""
        recovered: set[str] = set()
        while True:
            try:
                outcome = self._attempt(api, problem, device)
            except Exception as error:
                cause = None
                try:
                    cause = self._recover(error, recovered)
                finally:
                    if cause is None:  # torch's failure, or the suite's: the cache given back
                        self._cache.give_up_trial(self.torch)
                if cause is None:
                    raise
                recovered.add(cause)
                continue
            self._cache.keep_trial()
            return outcome

    def _recover(self, error: Exception, recovered: set[str]) -> str | None:
        """Undo what made ``error`` ours and say which cause it was; None if it is torch's."""
        if _hit_recompile_limit(error):
            if "limit" in recovered:
                raise SuiteLimit("torch.compile hit the suite's recompile limit "
                                 f"({RECOMPILE_LIMIT}) even after torch._dynamo.reset(): "
                                 f"{one_line(str(error))}") from error
            self.torch._dynamo.reset()
            self._signatures = {}
            return "limit"
        if "cache" not in recovered and _may_be_the_cache(error) \
                and self._cache.start_trial(self.torch, one_line(str(error), 300)):
            return "cache"
        storage = _storage_error(error)
        if storage is not None:  # no directory at all to compile in
            raise SuiteLimit(f"torch.compile could not write its code: {storage}; "
                             f"{self._cache.tried()}") from error
        return None

    def _attempt_linear(self, api: Api, problem: Problem, device: Device) -> Outcome:
        """One linear_cross_entropy run: the output, then the three gradients, with torch's
        warnings caught; a chunked API that torch answered with its fallback warning is
        ``unsupported`` (it ran the reference path), the warning kept in ``extra``."""
        torch, case = self.torch, problem.case
        dtype = getattr(torch, problem.dtype)
        grad = case.grad

        def tensor(values: Any, wanted: bool = False) -> Any:
            return torch.tensor(values, dtype=dtype, device=device.id, requires_grad=wanted)

        x = tensor(problem.input, grad)
        w = tensor(problem.linear_weight, grad)
        b = None if problem.linear_bias is None else tensor(problem.linear_bias, grad)
        target = torch.tensor(problem.target, device=device.id,
                              dtype=torch.int64 if problem.index_target else dtype)
        weight = None if problem.weight is None else tensor(problem.weight)
        arguments = (x, w, b, target, weight, case.ignore_index if problem.index_target
                     else None, case.reduction, case.label_smoothing)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = self._call_function(api, arguments, device)
            if grad:
                out.backward(torch.ones_like(out))  # d(sum of outputs), see SPEC.md
        said = [str(w.message) for w in caught if "linear_cross_entropy" in str(w.message)]
        extra: dict[str, Any] = {"torch_warnings": said} if said else {}
        chunked = api.id.removeprefix(COMPILE_PREFIX + "-").startswith("linear_cross_entropy-")
        if chunked and any(FALLBACK_WARNING in message for message in said):
            return Outcome("unsupported", message="torch ran its reference path, not the "
                           f"chunked one: {one_line(said[0])}",
                           extra={**extra, "path": "reference (fallback)"})
        grads = {}
        if grad:
            grads["grad_linear_weight"] = _numpy(w.grad) if w.grad is not None \
                else np.zeros(problem.linear_weight.shape)  # type: ignore[union-attr]
            if b is not None:
                grads["grad_linear_bias"] = _numpy(b.grad) if b.grad is not None \
                    else np.zeros(problem.linear_bias.shape)  # type: ignore[union-attr]
        input_grad = None
        if grad:
            input_grad = _numpy(x.grad) if x.grad is not None else np.zeros(problem.input.shape)
        return Outcome("ok", _numpy(out), input_grad, grads=grads, extra=extra)

    def _call_function(self, api: Api, arguments: tuple[Any, ...], device: Device) -> Any:
        """The API's function on ``arguments``, eagerly or through its compiled twin."""
        torch = self.torch
        if not api.id.startswith(COMPILE_PREFIX + "-"):
            return self._functions[api.id](*arguments)
        base_id = api.id.removeprefix(COMPILE_PREFIX + "-")
        self._make_room(base_id, (device.id, *map(_signature, arguments)))
        # fail_on_recompile_limit_hit: past a limit Dynamo would run eager code instead.
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT,
                                        accumulated_recompile_limit=RECOMPILE_LIMIT,
                                        fail_on_recompile_limit_hit=True):
            return self._compiled_function(base_id)(*arguments)

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
        if api.id == "cross_entropy-weighted":
            sample_weight = None if problem.sample_weight is None else torch.tensor(
                problem.sample_weight, dtype=dtype, device=device.id)
            return _weighted_cross_entropy(torch, *arguments, sample_weight)
        return self._call_function(api, arguments, device)

    def _make_room(self, api_id: str, signature: tuple[Any, ...]) -> None:
        """Reset Dynamo before a twin's compilation would pass ``RECOMPILE_LIMIT``: with
        static shapes each new signature (shapes, dtypes, constants) is one compilation.
        (Hitting the limit works too, see ``_recover``, but torch logs a warning for it.)"""
        seen = self._signatures.setdefault(api_id, set())
        if signature in seen:
            return
        if len(seen) >= RECOMPILE_LIMIT:
            self.torch._dynamo.reset()
            self._signatures = {api_id: set()}
            seen = self._signatures[api_id]
        seen.add(signature)

    def _compiled_function(self, api_id: str) -> Callable[..., Any]:
        if api_id not in self._compiled:
            self._compiled[api_id] = self.torch.compile(self._functions[api_id], dynamic=False)
        return self._compiled[api_id]


class InductorCache:
    """Where TorchInductor writes its code: ``$TORCHINDUCTOR_CACHE_DIR`` (or torch's default
    under the temporary directory), or, once that has failed, a private temporary directory
    for the rest of the process (removed at exit).

    A failure that may be the cache's starts a *trial* (``start_trial``): the job runs again in
    a fresh directory.  If it then works (``keep_trial``) the cache was at fault: the private
    directory is kept and stderr says so, once.  If it fails again (``give_up_trial``) the
    failure is torch's, and the cache given is used again.
    """

    def __init__(self) -> None:
        self.private: str | None = None  # in use for good
        self._trial: tuple[str | None, str, str] | None = None  # (given, private, why)
        self._failures: list[str] = []  # private directories that could not be made

    def check(self, torch: Any) -> None:
        """Before anything imports ``torch._dynamo``: a cache directory that cannot be written
        is left at once.  (Importing torch._dynamo makes the directory; where it cannot, the
        import fails halfway, and a second one fails on what the first registered.)"""
        given = os.environ.get(CACHE_VARIABLE)
        why = unwritable(given or _default_cache_directory())
        if why is not None and self.start_trial(torch, why):
            self.keep_trial()

    def start_trial(self, torch: Any, why: str) -> bool:
        if self.private is not None or self._trial is not None:
            return False
        private = _private_directory(self._failures)
        if private is None:
            return False
        self._trial = (os.environ.get(CACHE_VARIABLE), private, why)
        _use_cache_directory(torch, private)
        return True

    def keep_trial(self) -> None:
        if self._trial is None:
            return
        given, self.private, why = self._trial
        self._trial = None
        atexit.register(shutil.rmtree, self.private, ignore_errors=True)
        warn_once(f"torch: the TorchInductor cache {given or 'directory'} cannot be used "
                  f"({why}); torch.compile writes its code to {self.private} for the rest of "
                  "this run, without a persistent cache")

    def give_up_trial(self, torch: Any) -> None:
        if self._trial is None:
            return
        given, private, _ = self._trial
        self._trial = None
        _use_cache_directory(torch, given)
        shutil.rmtree(private, ignore_errors=True)

    def tried(self) -> str:
        where = self.private or os.environ.get(CACHE_VARIABLE) or "torch's default directory"
        failures = "; ".join(self._failures)
        return f"tried {where}" + (f" and a private directory ({failures})" if failures else "")


def _private_directory(failures: list[str]) -> str | None:
    """A fresh directory for TorchInductor's code, under the temporary directory or, where
    that disk cannot take it, in shared memory; None (the reasons in ``failures``) if neither."""
    for parent in (None, "/dev/shm"):
        try:
            return tempfile.mkdtemp(prefix="conformance-torchinductor-", dir=parent)
        except OSError as error:
            failures.append(f"{parent or tempfile.gettempdir()}: {error.strerror or error}")
    return None


def _default_cache_directory() -> str:
    """torch's default cache directory (``default_cache_dir`` in
    torch/_inductor/runtime/cache_dir_utils.py), computed without importing torch._inductor,
    whose import already makes it."""
    try:
        user = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):
        user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    return os.path.join(tempfile.gettempdir(),
                        "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user))


def _use_cache_directory(torch: Any, directory: str | None) -> None:
    """Point TorchInductor at ``directory`` (None: torch's default), as torch's own
    ``temporary_cache_dir`` does, and forget what Dynamo compiled with the old one."""
    if directory is None:
        os.environ.pop(CACHE_VARIABLE, None)
    else:
        os.environ[CACHE_VARIABLE] = directory
    if "torch._dynamo" in sys.modules:  # else nothing was compiled, nor imported, yet
        from torch._inductor.utils import clear_caches

        clear_caches()
        torch._dynamo.reset()


# Accelerator types that are GPUs (the device kind ``--device gpu`` selects); any other
# accelerator (a PrivateUse1 backend such as torch_npu's "npu", Gaudi's "hpu") is its own kind.
GPU_TYPES = frozenset({"cuda", "xpu", "mps"})


def accelerators(torch: Any) -> list[Device]:
    """Every accelerator device torch reports: through ``torch.accelerator`` (torch >= 2.6:
    CUDA/ROCm, XPU, MPS and PrivateUse1 backends such as npu, one type per process), else
    through ``torch.cuda``.  Ids are torch's own (``cuda:0``, ``xpu:1``, ``npu:0``), so
    ``--device`` takes them; names come from the backend module's ``get_device_name`` where
    it has one."""
    api = getattr(torch, "accelerator", None)
    if api is not None and hasattr(api, "current_accelerator"):
        if not api.is_available():
            return []
        kind = str(api.current_accelerator().type)
        count = int(api.device_count())
    elif torch.cuda.is_available():
        kind, count = "cuda", int(torch.cuda.device_count())
    else:
        return []
    module = getattr(torch, kind, None)
    named = getattr(module, "get_device_name", None)
    return [Device(f"{kind}:{i}", "gpu" if kind in GPU_TYPES else kind,
                   str(named(i)) if callable(named) else f"{kind} device {i}")
            for i in range(count)]


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


def _linear_functions(torch: Any) -> dict[str, Callable[..., Any]]:
    """What each linear_cross_entropy API calls, as ``f(x, W, b, target, weight,
    ignore_index, reduction, label_smoothing)`` (ignore_index None for probability targets,
    which torch requires), eagerly and under torch.compile alike."""
    functional = torch.nn.functional

    def reference_path(x: Any, w: Any, b: Any, t: Any, cw: Any, ii: Any, red: str,
                       eps: float) -> Any:
        return functional.linear_cross_entropy(x, w, t, linear_bias=b, weight=cw,
                                               reduction=red, ignore_index=ii,
                                               label_smoothing=eps, options=None)

    def chunked(arguments: dict[str, Any]) -> Callable[..., Any]:
        def run(x: Any, w: Any, b: Any, t: Any, cw: Any, ii: Any, red: str,
                eps: float) -> Any:
            half = x.dtype in (torch.float16, torch.bfloat16)
            options = torch.nn.LinearCrossEntropyOptions(
                **arguments, acc_dtype=torch.float32 if half else None)
            return functional.linear_cross_entropy(x, w, t, linear_bias=b, weight=cw,
                                                   reduction=red, ignore_index=ii,
                                                   label_smoothing=eps, options=options)
        return run

    def composed(x: Any, w: Any, b: Any, t: Any, cw: Any, ii: Any, red: str,
                 eps: float) -> Any:
        logits = functional.linear(x, w, b)
        return functional.cross_entropy(logits, t, weight=cw, reduction=red,
                                        ignore_index=-100 if ii is None else ii,
                                        label_smoothing=eps)

    functions: dict[str, Callable[..., Any]] = {
        "linear_cross_entropy": reference_path, "cross_entropy-linear": composed}
    for name, arguments in CHUNKED_CONFIGURATIONS.items():
        functions[f"linear_cross_entropy-{name}"] = chunked(arguments)
    return functions


def _weighted_cross_entropy(torch: Any, x: Any, t: Any, w: Any, dim: int, ii: int, red: str,
                            eps: float, sample_weight: Any) -> Any:
    """cross_entropy with the class axis moved to 1 and per-example weights, reduced as
    ``red`` names (reference/SPEC.md, Reduction): what a user writes around torch's loss."""
    functional = torch.nn.functional
    moved = x.movedim(dim, 1) if x.ndim > 1 else x
    if t.is_floating_point() and t.ndim > 1:  # probability targets are shaped like x
        t = t.movedim(dim, 1)
    if red == "mean" and sample_weight is None:  # torch's own mean: no glue
        return functional.cross_entropy(moved, t, weight=w, ignore_index=ii, reduction="mean",
                                        label_smoothing=eps)
    rows = functional.cross_entropy(moved, t, weight=w, ignore_index=ii, reduction="none",
                                    label_smoothing=eps)
    if sample_weight is not None:
        rows = rows * sample_weight
    if red == "none":
        return rows
    total = rows.sum()
    if red == "sum":
        return total
    kept = (t != ii) if t.dtype == torch.int64 else torch.ones(rows.shape, dtype=torch.bool,
                                                                device=rows.device)
    weights = torch.ones_like(rows) if sample_weight is None else sample_weight
    if red == "mean_with_sample_weight":
        divisor = torch.where(kept, weights, torch.zeros_like(weights)).sum()
    elif red == "sum_by_nonzero_weights":
        divisor = (kept & (weights != 0)).sum().to(rows.dtype)
    else:  # sum_over_batch_size: the kept rows
        divisor = kept.sum().to(rows.dtype)
    return total / divisor


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().to("cpu").double().numpy()


def torch_build(torch: Any) -> dict[str, str | None]:
    """torch's word on its build (``torch.version``, ``torch.__config__.show()``) and on what
    it sees (cuDNN loaded, the driver, each GPU's compute capability, the CPU kernels)."""
    info: dict[str, str | None] = {
        "cuda_built": torch.version.cuda, "rocm_built": getattr(torch.version, "hip", None),
        "cudnn_seen": None if torch.backends.cudnn.version() is None
        else str(torch.backends.cudnn.version()),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]+)", config)
    if blas:
        info["blas"] = blas.group(1)
    onednn = re.search(r"(?:oneDNN|MKL-DNN) v([0-9.]+)", config)
    if onednn:
        info["onednn"] = onednn.group(1)
    elif not torch.backends.mkldnn.is_available():
        info["onednn"] = None
    if torch.cuda.is_available():
        driver = getattr(torch._C, "_cuda_getDriverVersion", None)  # no public API for it
        if driver is not None:
            info["cuda_driver"] = str(driver())
        info["gpus"] = ", ".join(
            "{} (compute capability {}.{})".format(torch.cuda.get_device_name(i),
                                                   *torch.cuda.get_device_capability(i))
            for i in range(torch.cuda.device_count()))
    return info


def _outcome_of(error: Exception) -> Outcome:
    """torch's exception as a record: a compilation that could not be built is unsupported
    with torch's reason, a missing kernel for the dtype unsupported, anything else an error."""
    if _is_compile_failure(error):
        return Outcome("unsupported", error_type=type(error).__name__,
                       message=f"torch.compile failed: {one_line(str(error))}")
    status = "unsupported" if _is_dtype_refusal(error) else "error"
    return Outcome(status, error_type=type(error).__name__, message=str(error))


def _signature(argument: Any) -> Any:
    """What Dynamo's guards on static shapes check of one argument: a tensor's shape, dtype
    and whether it requires a gradient; any other value itself."""
    if hasattr(argument, "shape") and hasattr(argument, "dtype"):
        return (tuple(argument.shape), str(argument.dtype), bool(argument.requires_grad))
    return argument


def _names(error: BaseException) -> Iterator[str]:
    """The class names of ``error`` and of every exception it was raised from."""
    for link in exception_chain(error):
        for cls in type(link).__mro__:
            yield cls.__name__


def _is_compile_failure(error: Exception) -> bool:
    """TorchInductor could not build the code (no C++ compiler, no Triton for a GPU, a
    lowering it lacks): a limit of torch.compile here, not a verdict on the inputs."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"BackendCompilerFailed", "InvalidCxxCompiler", "CppCompileError"})


def _hit_recompile_limit(error: Exception) -> bool:
    return "FailOnRecompileLimitHit" in set(_names(error))


def _may_be_the_cache(error: Exception) -> bool:
    """A failure a damaged or full cache can cause: a file that could not be written
    (OSError), a cached library that does not load (ImportError: "file too short"), or any
    failed compilation (an emptied library the generated code links against fails the C++
    compiler).  Run again in a fresh directory, a failure that is torch's fails again."""
    return _is_compile_failure(error) or bool(set(_names(error)) & {"OSError", "ImportError"})


def _storage_error(error: Exception) -> str | None:
    """The message of an OSError in ``error``'s chain saying a file could not be written."""
    for link in exception_chain(error):
        if isinstance(link, OSError) and link.errno in STORAGE_ERRORS:
            return str(link)
    return None


def _is_dtype_refusal(error: Exception) -> bool:
    """torch's message for a kernel missing for a dtype: '... not implemented for 'Half''."""
    return "not implemented for" in str(error)
