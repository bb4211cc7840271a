"""JAX adapter: ``jax.nn`` and ``optax`` losses, eager and under ``jax.jit``, on CPU and GPUs.

APIs (``apis()``; every one also exists as a ``jax.jit(...)`` twin, because XLA fuses a
jitted function as a whole where eager mode dispatches one primitive at a time):

* native: ``jax.nn.softmax``, ``jax.nn.log_softmax``, ``optax.softmax_cross_entropy``
  (probability targets) and ``optax.softmax_cross_entropy_with_integer_labels`` (index
  targets).  The optax losses return one loss per example (reduction ``none`` only); they
  have no class weights, no ignore_index (their ``where`` masks classes, not examples) and
  no smoothing argument (optax.losses._classification, optax 0.2.8).
* composed, built from those calls the way a user writes them and named after the glue:
  a mean/sum of ``optax.softmax_cross_entropy`` on class-weighted, ``optax.smooth_labels``
  smoothed labels; a class-weighted, ignore-masked mean/sum of the integer-label loss; NLL
  written on ``jax.nn.log_softmax`` with ``jnp.take_along_axis``; and that NLL alone for the
  ``nll_loss`` op.

Issue 20: every call takes the case's ``axis`` as it is; ``jax.nn`` and the optax losses take
its ``where`` mask natively (the composed reductions do not pass it on); the composed variants
weigh examples by ``sample_weight`` with the named reductions (``jnp.sum(w * loss) / D``).

Gradients are those of the sum of the outputs (``reference/SPEC.md``), through ``jax.vjp``,
which gives the outputs too (``_with_grad``).  float64 runs
inside ``jax.enable_x64(True)``, a context manager (thread-local, JAX >= 0.4.x), so the
user's global ``jax_enable_x64`` is never changed.

A persistent compilation cache (``$JAX_COMPILATION_CACHE_DIR``) that cannot be read or written
(read-only, full, damaged, not a directory) is the suite's setting, not JAX's failure.  JAX
itself recovers, with a ``UserWarning`` per executable; the adapter turns those warnings into
errors (a filter installed in ``__init__``), and on the first one turns the persistent cache
off for the rest of the process, says so once on stderr and runs the job again: nothing is
recorded for it, and the code compiled is the same with or without the cache.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.adapters.common import (
    AXES,
    NAMED,
    NLL_OPTIONS,
    PROBABILITY_OPTIONS,
    SAMPLE_WEIGHTS,
    UNREDUCED,
    Settings,
    exception_chain,
    one_line,
    settings_for,
    stand_in_roots,
    twin,
    warn_once,
)
from conformance.cases.options import NAMED_REDUCTIONS
from conformance.cases.problem import Problem
from conformance.results.environment import cpu_name

NO_WEIGHTS = "optax losses have no class-weight argument (see the composed variant)"
NO_IGNORE = "optax has no ignore_index: its `where` masks classes, not examples"
NO_SMOOTHING = "no smoothing argument (optax.smooth_labels is a separate step: composed variant)"
INDEX_FOR_PROBABILITY = ("takes probability (one-hot) labels shaped like the logits; integer "
                         "labels go to optax.softmax_cross_entropy_with_integer_labels")
PROBABILITY_FOR_INDEX = ("takes integer labels; probability targets go to "
                         "optax.softmax_cross_entropy")
SMOOTHING_NEEDS_ONE_HOT = ("smoothing integer labels means one-hot encoding them: use "
                           "optax.softmax_cross_entropy (composed variant)")
NLL_NO_SMOOTHING = "NLL of one picked log-probability has no label smoothing"

# Issue 20: every JAX and optax call here takes an axis; jax.nn and optax take where=.
AXIS = AXES
NATIVE_WHERE = AXIS | {"where"}
UNWEIGHTED = ("optax losses return one loss per example: per-example weights and their "
              "reductions are a user's glue (see the composed variants)")
OPTAX_NO_WEIGHTS = {"sample_weight": UNWEIGHTED, **{name: UNWEIGHTED for name in NAMED}}
COMPOSED_WHERE = ("the composed reductions do not pass where= on (see the native optax "
                  "losses, which take it)")
# optax.softmax_cross_entropy_with_integer_labels (optax 0.2.8, losses/_classification.py):
# out = logsumexp(logits, where=where) - logits[label], 0 only where a row has no class left,
# so a label on a masked class is not excluded (SPEC.md, where: it contributes nothing).
TARGET_MASKED = "target_masked"
OPTAX_MASKED_LABEL = ("optax's integer-label loss subtracts the label's logit even when "
                      "where= masks that class (logsumexp over the kept classes minus a masked "
                      "logit), where optax.softmax_cross_entropy leaves a masked class out")
GLUE = "class weights, ignore mask, mean/sum"
EAGER_APIS: tuple[Api, ...] = (
    Api("softmax", "jax.nn.softmax", "softmax", frozenset({"k_dim"}) | NATIVE_WHERE,
        callee="jax.nn.softmax"),
    Api("log_softmax", "jax.nn.log_softmax", "log_softmax", frozenset({"k_dim"}) | NATIVE_WHERE,
        callee="jax.nn.log_softmax"),
    Api("softmax_cross_entropy", "optax.softmax_cross_entropy", "cross_entropy",
        frozenset({"probability_target", "reduction_none", "k_dim"}) | NATIVE_WHERE,
        reasons={"index_target": INDEX_FOR_PROBABILITY, "weight": NO_WEIGHTS,
                 "label_smoothing": NO_SMOOTHING, "reduction_mean": UNREDUCED,
                 "reduction_sum": UNREDUCED, **OPTAX_NO_WEIGHTS},
        callee="optax.softmax_cross_entropy"),
    Api("integer_labels", "optax.softmax_cross_entropy_with_integer_labels", "cross_entropy",
        frozenset({"index_target", "reduction_none", "k_dim"}) | NATIVE_WHERE,
        reasons={"probability_target": PROBABILITY_FOR_INDEX, "weight": NO_WEIGHTS,
                 "ignore_index": NO_IGNORE, "label_smoothing": SMOOTHING_NEEDS_ONE_HOT,
                 "reduction_mean": UNREDUCED, "reduction_sum": UNREDUCED, **OPTAX_NO_WEIGHTS},
        semantics={TARGET_MASKED: OPTAX_MASKED_LABEL},
        callee="optax.softmax_cross_entropy_with_integer_labels"),
    Api("softmax_cross_entropy-composed",
        "optax.softmax_cross_entropy(x, w * optax.smooth_labels(y)) + jnp.mean/jnp.sum",
        "cross_entropy", PROBABILITY_OPTIONS | AXIS | SAMPLE_WEIGHTS, kind="composed",
        reasons={"index_target": INDEX_FOR_PROBABILITY, "where": COMPOSED_WHERE},
        callee="optax.softmax_cross_entropy"),
    Api("integer_labels-composed",
        f"optax.softmax_cross_entropy_with_integer_labels(x, t) + {GLUE}",
        "cross_entropy", NLL_OPTIONS | AXIS | SAMPLE_WEIGHTS, kind="composed",
        reasons={"probability_target": PROBABILITY_FOR_INDEX,
                 "label_smoothing": SMOOTHING_NEEDS_ONE_HOT, "where": COMPOSED_WHERE},
        callee="optax.softmax_cross_entropy_with_integer_labels"),
    Api("nll-log_softmax", f"NLL(jax.nn.log_softmax(x), t) via jnp.take_along_axis + {GLUE}",
        "cross_entropy", NLL_OPTIONS | AXIS | SAMPLE_WEIGHTS, kind="composed",
        reasons={"probability_target": PROBABILITY_FOR_INDEX, "label_smoothing": NLL_NO_SMOOTHING,
                 "where": COMPOSED_WHERE},
        callee="jax.nn.log_softmax"),
    Api("nll", f"NLL(logp, t) via jnp.take_along_axis + {GLUE}", "nll_loss",
        NLL_OPTIONS | AXIS | SAMPLE_WEIGHTS,
        kind="composed", reasons={"label_smoothing": NLL_NO_SMOOTHING}),
)
# linear_cross_entropy: the composed recipes above on logits x @ W.T + b (materialised in the
# dtype, as jnp.matmul returns them); JAX and optax have no fused linear cross-entropy.
LINEAR_OP = "linear_cross_entropy"
LINEAR = "x @ W.T + b"
LINEAR_APIS = (
    Api("integer_labels-linear",
        f"optax.softmax_cross_entropy_with_integer_labels({LINEAR}, t) + {GLUE}",
        LINEAR_OP, NLL_OPTIONS - {"k_dim"}, kind="composed", materialises_logits=True,
        reasons={"probability_target": PROBABILITY_FOR_INDEX,
                 "label_smoothing": SMOOTHING_NEEDS_ONE_HOT}),
    Api("softmax_cross_entropy-linear",
        f"optax.softmax_cross_entropy({LINEAR}, w * optax.smooth_labels(y)) + jnp.mean/jnp.sum",
        LINEAR_OP, PROBABILITY_OPTIONS - {"k_dim"}, kind="composed", materialises_logits=True,
        reasons={"index_target": INDEX_FOR_PROBABILITY}),
)
EAGER_APIS = EAGER_APIS + LINEAR_APIS
JIT_PREFIX = "jit"
APIS = EAGER_APIS + tuple(twin(api, JIT_PREFIX, "jax.jit") for api in EAGER_APIS)
DTYPES = ("float64", "float32", "float16", "bfloat16")
# Eager JAX compiles every primitive for every new shape and keeps it: one new input shape
# through an optax loss and its jax.grad grew the process by ~60 MB (measured on CPU), and a
# run of the case library reached 3.7 GB.  Once the process is past RESIDENT_LIMIT (or its
# size cannot be read), jax.clear_caches() every SIGNATURES_BETWEEN_CLEARS new input
# signatures: the memory it frees is reused by the next compilations (it is not given back
# to the system, so the size stays flat rather than dropping), and shapes that recur in
# between stay compiled.
RESIDENT_LIMIT = 2 << 30
SIGNATURES_BETWEEN_CLEARS = 16
# The start of JAX's warnings for a persistent-cache entry it could not read or write
# (jax/_src/compiler.py), which it then compiles without.
CACHE_WARNING = r"Error (reading|writing) persistent compilation cache entry"

Recipe = Callable[..., Any]  # f(x, target, weight, settings, extra=(sample_weight, where))


class JaxAdapter(Adapter):
    name = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        self.jax, self.jnp, self.optax = jax, jnp, optax
        self._recipes = _recipes(jax, jnp, optax)
        # One jitted function per API (forward, and forward+grad), built once per process;
        # jax.jit then caches one executable per shape, dtype and Settings.
        self._jitted: dict[tuple[str, bool], Callable[..., Any]] = {}
        self._devices = _discover(jax)
        self._signatures: set[tuple[Any, ...]] = set()  # new since the last clear
        warnings.filterwarnings("error", message=CACHE_WARNING, category=UserWarning)

    def version(self) -> str:
        optax = self.optax.__version__
        return f"{self.jax.__version__} (jaxlib {_jaxlib_version()}, optax {optax})"

    def apis(self) -> tuple[Api, ...]:
        return APIS

    def dtypes(self) -> tuple[str, ...]:
        return DTYPES

    def devices(self) -> tuple[Device, ...]:
        return tuple(device for device, _ in self._devices)

    def build(self) -> dict[str, str | None]:
        return jax_build(self.jax)

    def stand_in(self, like: Api, api: Api,
                 replacement: Callable[[Any], Callable[..., Any]]) -> None:
        """``api`` runs ``like``'s recipe eagerly (no ``jax.jit``), ``like.callee`` replaced."""
        roots = stand_in_roots({"jax": self.jax, "optax": self.optax}, like.callee, replacement)
        self._recipes[api.id] = _recipes(roots["jax"], self.jnp, roots["optax"])[like.id]

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        try:
            if problem.dtype == "float64":
                with self.jax.enable_x64(True):  # local: the global flag is left alone
                    return self._run(api, problem, device)
            return self._run(api, problem, device)
        except Exception as error:  # the framework's own verdict on the inputs
            if self._cache_failed(error):
                return self.run(api, problem, device)  # once: the cache is now off
            status = "unsupported" if _is_dtype_refusal(error) else "error"
            return Outcome(status, error_type=type(error).__name__, message=one_line(str(error)))

    def _cache_failed(self, error: Exception) -> bool:
        """Whether ``error`` is JAX's complaint about its persistent compilation cache; if so,
        the cache is turned off for the rest of the process and stderr says so, once."""
        warning = next((link for link in exception_chain(error)
                        if isinstance(link, UserWarning) and _is_cache_warning(link)), None)
        config: Any = self.jax.config
        if warning is None or not config.jax_enable_compilation_cache:
            return False
        from jax.experimental.compilation_cache import compilation_cache

        config.update("jax_enable_compilation_cache", False)
        compilation_cache.reset_cache()
        warn_once(f"jax: the compilation cache {config.jax_compilation_cache_dir} cannot be "
                  f"used ({one_line(str(warning))}); JAX compiles without a persistent cache "
                  "for the rest of this run")
        return True

    def _run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        self._bound_caches(problem)
        jnp = self.jnp
        place = dict(self._devices)[device]
        dtype = getattr(jnp, problem.dtype)
        x = self.jax.device_put(jnp.asarray(problem.input, dtype=dtype), place)
        target = weight = None
        if problem.target is not None:
            target_dtype = jnp.int32 if problem.index_target else dtype
            target = self.jax.device_put(jnp.asarray(problem.target, dtype=target_dtype), place)
        if problem.weight is not None:
            weight = self.jax.device_put(jnp.asarray(problem.weight, dtype=dtype), place)
        settings = settings_for(problem)
        if problem.case.op == LINEAR_OP:
            return self._run_linear(api, problem, place, dtype, x, target, weight, settings)
        # issue 20: per-example weights and the class mask, None where the case has none
        extra = (None if problem.sample_weight is None else self.jax.device_put(
                     jnp.asarray(problem.sample_weight, dtype=dtype), place),
                 None if problem.where is None else self.jax.device_put(
                     jnp.asarray(problem.where, dtype=bool), place))
        if problem.case.grad:
            out, grad = self._function(api, grad=True)(x, target, weight, settings, extra)
            return Outcome("ok", _numpy(out), _numpy(grad))
        return Outcome("ok", _numpy(self._function(api, grad=False)(
            x, target, weight, settings, extra)))

    def _run_linear(self, api: Api, problem: Problem, place: Any, dtype: Any, x: Any,
                    target: Any, weight: Any, settings: Settings) -> Outcome:
        """A linear_cross_entropy recipe on ``(x, W, b)``: the outputs and, through one
        ``jax.vjp``, the gradients of their sum with respect to all three."""
        jnp = self.jnp
        w = self.jax.device_put(jnp.asarray(problem.linear_weight, dtype=dtype), place)
        params: tuple[Any, ...] = (x, w)
        if problem.linear_bias is not None:
            params += (self.jax.device_put(jnp.asarray(problem.linear_bias, dtype=dtype), place),)
        function = self._function(api, grad=problem.case.grad)
        if not problem.case.grad:
            return Outcome("ok", _numpy(function(params, target, weight, settings)))
        out, grads = function(params, target, weight, settings)
        named = {"grad_linear_weight": _numpy(grads[1])}
        if len(grads) == 3:
            named["grad_linear_bias"] = _numpy(grads[2])
        return Outcome("ok", _numpy(out), _numpy(grads[0]), grads=named)

    def _bound_caches(self, problem: Problem) -> None:
        self._signatures.add((problem.input.shape, problem.dtype,
                              None if problem.target is None else problem.target.shape))
        if len(self._signatures) < SIGNATURES_BETWEEN_CLEARS:
            return
        resident = _resident_bytes()
        if resident is None or resident > RESIDENT_LIMIT:
            self.jax.clear_caches()  # executables only: the jitted functions stay built
            self._signatures = set()

    def _function(self, api: Api, grad: bool) -> Callable[..., Any]:
        """The callable for ``api``: eager, or its ``jax.jit`` twin (built once)."""
        jitted = api.id.startswith(JIT_PREFIX + "-")
        base_id = api.id.removeprefix(JIT_PREFIX + "-")
        recipe = self._recipes[base_id]
        function = _with_grad(self.jax, self.jnp, recipe) if grad else recipe
        if not jitted:
            return function
        key = (base_id, grad)
        if key not in self._jitted:
            self._jitted[key] = self.jax.jit(function, static_argnums=3)
        return self._jitted[key]


def _with_grad(jax: Any, jnp: Any, recipe: Recipe) -> Recipe:
    """The outputs and the gradient of their sum with respect to the input (SPEC.md), from
    one ``jax.vjp`` with a cotangent of ones (what ``jax.grad`` of ``jnp.sum`` computes):
    one trace, and under ``jax.jit`` one executable, where a forward and a separate
    ``jax.grad`` took two.  The jitted output thus comes from the executable that also
    computes the gradient, as in a training step under ``jax.value_and_grad``."""

    def forward_and_grad(x: Any, target: Any, weight: Any, settings: Settings,
                         extra: Any = None) -> Any:
        out, pullback = jax.vjp(lambda x: recipe(x, target, weight, settings, extra), x)
        (grad,) = pullback(jnp.ones_like(out))
        return out, grad

    return forward_and_grad


def _recipes(jax: Any, jnp: Any, optax: Any) -> dict[str, Recipe]:
    """What each API computes, as ``f(x, target, weight, settings)``."""

    def reduce_rows(rows: Any, target: Any, weight: Any, s: Settings, extra: Any = None) -> Any:
        """A user's weighted, masked reduction of per-example losses (SPEC.md, Reduction).
        Without weights or ignored targets it is plain jnp.mean/jnp.sum, as a user writes it."""
        sample_weight = None if extra is None else extra[0]
        if sample_weight is not None or s.reduction in NAMED_REDUCTIONS:
            return named_reduction(rows, target, sample_weight, weight, s)
        if not (s.weighted or s.ignoring):
            return rows if s.reduction == "none" else getattr(jnp, s.reduction)(rows)
        keep = target != s.ignore_index
        safe = jnp.where(keep, target, 0)
        weights = jnp.where(keep, weight[safe] if s.weighted else 1, 0).astype(rows.dtype)
        # where, not a product: an ignored row's loss may be NaN and must not leak in.
        losses = jnp.where(keep, rows * weights, 0)
        if s.reduction == "none":
            return losses
        total = jnp.sum(losses)
        return total if s.reduction == "sum" else total / jnp.sum(weights)

    def named_reduction(rows: Any, target: Any, sample_weight: Any, weight: Any,
                        s: Settings) -> Any:
        """Per-example weights and Keras' / TF v1's named reductions (SPEC.md)."""
        if target is not None and jnp.issubdtype(target.dtype, jnp.integer):
            keep = target != s.ignore_index
            if s.weighted:
                rows = rows * weight[jnp.where(keep, target, 0)]
        else:
            keep = jnp.ones(rows.shape, dtype=bool)
        if sample_weight is not None:
            rows = rows * sample_weight
        losses = jnp.where(keep, rows, 0)
        if s.reduction == "none":
            return losses
        total = jnp.sum(losses)
        if s.reduction == "sum":
            return total
        weights = jnp.ones_like(rows) if sample_weight is None else sample_weight
        if s.reduction == "mean_with_sample_weight":
            divisor = jnp.sum(jnp.where(keep, weights, 0))
        elif s.reduction == "sum_by_nonzero_weights":
            divisor = jnp.sum(keep & (weights != 0)).astype(rows.dtype)
        else:
            divisor = jnp.sum(keep).astype(rows.dtype)
        return total / divisor

    def picked(logp: Any, target: Any, s: Settings) -> Any:
        """-logp[target] along the class axis (ignored targets pick class 0, masked later)."""
        safe = jnp.where(target != s.ignore_index, target, 0)
        index = jnp.expand_dims(safe, s.axis)
        return -jnp.take_along_axis(logp, index, axis=s.axis).squeeze(s.axis)

    def class_shaped(weight: Any, s: Settings, ndim: int) -> Any:
        return weight.reshape([s.classes if i == s.axis else 1 for i in range(ndim)])

    def probability_composed(x: Any, y: Any, w: Any, s: Settings, extra: Any = None) -> Any:
        labels = optax.smooth_labels(y, s.label_smoothing, axis=s.axis) if s.label_smoothing else y
        if s.weighted:
            labels = labels * class_shaped(w, s, x.ndim)
        rows = optax.softmax_cross_entropy(x, labels, axis=s.axis)
        if s.sample_weighted or s.reduction in NAMED_REDUCTIONS:
            return named_reduction(rows, None, extra[0], None, s)
        return rows if s.reduction == "none" else getattr(jnp, s.reduction)(rows)

    def integer_composed(x: Any, t: Any, w: Any, s: Settings, extra: Any = None) -> Any:
        safe = jnp.where(t != s.ignore_index, t, 0) if s.ignoring else t
        rows = optax.softmax_cross_entropy_with_integer_labels(x, safe, axis=s.axis)
        return reduce_rows(rows, t, w, s, extra)

    def where_of(extra: Any) -> Any:
        return None if extra is None else extra[1]

    def logits(params: Any) -> Any:
        """``x @ W.T + b`` (params ``(x, W)`` or ``(x, W, b)``), as a user writes it."""
        z = params[0] @ params[1].T
        return z + params[2] if len(params) == 3 else z

    return {
        "integer_labels-linear": lambda p, t, w, s, e=None: integer_composed(logits(p), t, w, s),
        "softmax_cross_entropy-linear": lambda p, y, w, s, e=None: probability_composed(
            logits(p), y, w, s),
        "softmax": lambda x, t, w, s, e=None: jax.nn.softmax(x, axis=s.axis, where=where_of(e)),
        "log_softmax": lambda x, t, w, s, e=None: jax.nn.log_softmax(
            x, axis=s.axis, where=where_of(e)),
        "softmax_cross_entropy": lambda x, y, w, s, e=None: optax.softmax_cross_entropy(
            x, y, axis=s.axis, where=where_of(e)),
        "integer_labels": lambda x, t, w, s, e=None:
            optax.softmax_cross_entropy_with_integer_labels(x, t, axis=s.axis, where=where_of(e)),
        "softmax_cross_entropy-composed": probability_composed,
        "integer_labels-composed": integer_composed,
        "nll-log_softmax": lambda x, t, w, s, e=None: reduce_rows(
            picked(jax.nn.log_softmax(x, axis=s.axis), t, s), t, w, s, e),
        "nll": lambda x, t, w, s, e=None: reduce_rows(picked(x, t, s), t, w, s, e),
    }


def _discover(jax: Any) -> list[tuple[Device, Any]]:
    """CPU always; then every GPU JAX's own device query reports (none without a GPU backend)."""
    found = [(Device("cpu", "cpu", cpu_name()), jax.devices("cpu")[0])]
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # "Unknown backend: 'gpu' requested, but no platforms ..."
        gpus = []
    for i, gpu in enumerate(gpus):
        found.append((Device(f"cuda:{i}", "gpu", str(gpu.device_kind)), gpu))
    return found


def jax_build(jax: Any) -> dict[str, str | None]:
    """jaxlib's word on its CUDA plugin (``jax._src.lib.cuda_versions``: None without one)
    and the platform version of each backend it runs."""
    info: dict[str, str | None] = {"default_backend": jax.default_backend()}
    try:
        from jax._src.lib import cuda_versions
    except ImportError:
        cuda_versions = None
    if cuda_versions is None:
        info["cuda"] = None  # jaxlib has no CUDA plugin here
    else:
        for key, name in (("cuda_runtime_seen", "cuda_runtime_get_version"),
                          ("cudnn_seen", "cudnn_get_version"),
                          ("cuda_driver", "cuda_driver_get_version")):
            with contextlib.suppress(Exception):
                info[key] = str(getattr(cuda_versions, name)())
    for device in {d.platform: d for d in jax.devices()}.values():
        version = getattr(getattr(device, "client", None), "platform_version", None)
        if version and version not in ("<unknown>", device.platform):
            info[f"{device.platform}_platform"] = str(version)
    return info


def _resident_bytes() -> int | None:
    """This process's resident set size, where Linux's /proc tells it."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _jaxlib_version() -> str:
    import jaxlib

    return str(getattr(jaxlib, "__version__", "?"))


def _numpy(array: Any) -> np.ndarray:
    return np.asarray(array).astype(np.float64)


def _is_cache_warning(warning: UserWarning) -> bool:
    return re.match(CACHE_WARNING, str(warning)) is not None


def _is_dtype_refusal(error: Exception) -> bool:
    """JAX and optax refuse a dtype with a TypeError naming it (e.g. check_subdtype)."""
    return isinstance(error, TypeError) and "dtype" in str(error).lower()
