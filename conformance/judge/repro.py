"""``conformance repro``: one record of a results file as a standalone script for an upstream
bug report, needing only the framework and numpy.

The script holds the exact inputs the suite ran (already rounded to the dtype, so exact in
float64): inline when they have at most ``INLINE_ELEMENTS`` elements, else in a sibling
``.npz`` (plain arrays, read with ``allow_pickle=False``).  It calls the framework's public
API the way the adapter does -- the adapter's own recipe of public calls, copied into the
script (``inspect.getsource``), so that composed APIs and compiled twins (``torch.compile``,
``jax.jit``, ``tf.function``) run the very calls the suite judged -- then prints the
framework's value, the exact value (decimal literals of the oracle's certified values), the
error in ULPs of the dtype (values of the dtype between the correctly rounded exact value
and the framework's) and against the suite's bound (``K`` x the oracle's bound per
element), and exits 1 while the discrepancy persists, 0 once it is gone (2 if its own check
fails, so that a broken reproducer never reads as a persisting discrepancy).

The script's own check is the core of ``conformance/judge/compare.py``: NaN and infinities
compared element by element, every finite element within its bound; it does not repeat the
suite's finer allowances (an infinity where a stable evaluation may overflow, the sign of a
zero), which the record's message, printed by the script, states.  A case that expects an
error persists while the call returns a value; a record of a call that raised where a value
is defined persists while it raises.
"""

from __future__ import annotations

import argparse
import fnmatch
import inspect
import textwrap
from pathlib import Path
from typing import Any

import mpmath
import numpy as np

from conformance.cases.loading import Case, CaseError, load_file
from conformance.judge.check import expected_for, problem_for
from conformance.results.records import Record
from reference.formats import round_to_float

INLINE_ELEMENTS = 256  # inputs larger than this go to a sibling .npz
EXACT_DIGITS = 25  # significant digits of the exact values' decimal literals
TWIN_PREFIXES = {"torch": "compile-", "jax": "jit-", "tensorflow": "function-"}
DISCREPANCY = ("fail", "error")


class ReproError(ValueError):
    """Why no reproducer can be written (exit 2)."""


def find_record(records: list[Record], args: argparse.Namespace) -> Record:
    """The record ``args`` name: the case, and optionally framework, API (name or id glob),
    dtype, device and quantity; a discrepancy first when several match."""
    def wanted(r: Record) -> bool:
        api_id = r.job.split("|")[1] if r.job.count("|") == 3 else ""
        return (r.case_id == args.case and r.framework not in ("reference",)
                and (args.framework is None or r.framework == args.framework)
                and (args.api is None or fnmatch.fnmatchcase(r.api, args.api)
                     or fnmatch.fnmatchcase(api_id, args.api))
                and (args.dtype is None or r.dtype == args.dtype)
                and (args.device is None or r.device == args.device)
                and (args.quantity is None or r.quantity == args.quantity)
                and r.status in ("pass", "fail", "error"))

    found = [r for r in records if wanted(r)]
    if not found:
        raise ReproError(f"no record of case {args.case!r} that ran (pass, fail or error) "
                         "matches --framework/--api/--dtype/--device/--quantity in the results")
    return next((r for r in found if r.status in DISCREPANCY), found[0])


def load_case(record: Record, cases_root: Path) -> Case:
    path = Path(record.case_file)
    if not path.is_absolute():
        path = cases_root / path
    try:
        cases = load_file(path)
    except CaseError as error:
        raise ReproError(f"the record's case file cannot be read: {error}") from None
    for case in cases:
        if case.id == record.case_id:
            return case
    raise ReproError(f"{path} holds no case {record.case_id!r} any more")


def write_repro(args: argparse.Namespace) -> list[Path]:
    from conformance.results.jsonl import read_results

    record = find_record(read_results(args.results).records, args)
    case = load_case(record, args.cases_root)
    source, arrays = repro_source(record, case, args.output.with_suffix(".npz").name)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    written = [args.output]
    if arrays is not None:
        npz = args.output.with_suffix(".npz")
        np.savez(npz, allow_pickle=False, **arrays)  # plain arrays only
        written.append(npz)
    args.output.write_text(source, encoding="utf-8")
    return written


# --- the script ----------------------------------------------------------------------------


def _api_id(record: Record) -> str:
    parts = record.job.split("|")
    if len(parts) != 4:
        raise ReproError(f"the record has no job key naming its API ({record.job!r})")
    return parts[1]


def _literal(array: np.ndarray | None) -> str:
    if array is None:
        return "None"
    shape = f".reshape({tuple(array.shape)!r})" if array.size == 0 else ""  # keeps (0, C)
    if array.dtype.kind in "iu":
        return f"np.array({array.tolist()!r}, dtype=np.int64){shape}"
    return f"np.array({_floats(array.tolist())}, dtype=np.float64){shape}"


def _floats(values: Any) -> str:
    """Nested lists of floats as Python source (``nan``, ``inf`` as the script's names)."""
    if isinstance(values, list):
        return "[" + ", ".join(_floats(v) for v in values) + "]"
    value = float(values)
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def _exact_strings(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    texts = [mpmath.nstr(v, EXACT_DIGITS, min_fixed=1, max_fixed=0) if mpmath.isfinite(v)
             else ("nan" if mpmath.isnan(v) else ("inf" if v > 0 else "-inf"))
             for v in values.reshape(-1)]
    return np.asarray(texts, dtype=str).reshape(shape)


def repro_source(record: Record, case: Case, npz_name: str
                 ) -> tuple[str, dict[str, np.ndarray] | None]:
    """The script's text, and the arrays of its sibling .npz (None when all are inline)."""
    dtype, api_id = record.dtype, _api_id(record)
    problem = problem_for(case, dtype)
    arrays: dict[str, np.ndarray] = {"x": np.asarray(problem.input, dtype=np.float64)}
    if problem.target is not None:
        arrays["t"] = np.asarray(problem.target)
    if problem.weight is not None:
        arrays["w"] = np.asarray(problem.weight, dtype=np.float64)
    quantity = record.quantity if record.quantity in ("output", "grad") else "output"
    expects_error = case.expect == "error"
    if not expects_error:
        reference = expected_for(case, dtype)
        expected = reference.output if quantity == "output" else reference.grad
        bound = reference.output_bound if quantity == "output" else reference.grad_bound
        if expected is None or bound is None:
            raise ReproError(f"the oracle has no {quantity} for {case.id} in {dtype}")
        exact = expected.values.reshape(expected.shape)
        arrays["exact"] = _exact_strings(exact, expected.shape)
        with np.errstate(invalid="ignore"):  # NaN exact values round to NaN
            arrays["rounded"] = np.vectorize(lambda v: round_to_float(v, dtype),
                                             otypes=[float])(exact) if exact.size else \
                np.zeros(expected.shape)
        factor = 1.0
        if record.tolerance:
            factor = float(record.tolerance.get("k", 1.0)) * float(
                record.tolerance.get("scale", 1.0))
        arrays["allowed"] = factor * np.asarray(bound, dtype=np.float64)
    large = arrays["x"].size > INLINE_ELEMENTS
    if large:
        data = f"DATA = np.load({npz_name!r} if os.path.isabs({npz_name!r}) else " \
               f"os.path.join(os.path.dirname(os.path.abspath(__file__)), {npz_name!r}), " \
               "allow_pickle=False)\n" + "\n".join(
                   f"{name.upper()} = DATA[{name!r}]" for name in arrays)
    else:
        data = "\n".join(f"{name.upper()} = " + (
            f"np.array({arrays[name].tolist()!r}, dtype=str)"
            f"{'.reshape(' + repr(arrays[name].shape) + ')' if arrays[name].size == 0 else ''}"
            if name == "exact"
            else _literal(arrays[name])) for name in arrays)
    for name in ("T", "W"):
        if name.lower() not in arrays:
            data += f"\n{name} = None"
    settings = _settings(problem)
    call = _FRAMEWORKS[record.framework](record, api_id, dtype)
    header = textwrap.dedent(f'''\
        """Reproducer: {record.framework} {record.framework_version}, {record.api}
        on {record.device} in {dtype}, case {case.id} ({case.op}, reduction={case.reduction},
        ignore_index={case.ignore_index}, label_smoothing={case.label_smoothing}), {quantity}.

        What the suite recorded: {record.status} ({record.kind or "no kind"}): {record.message}

        Written by 'conformance repro' from crossentropy-conformance; needs only
        {record.framework} and numpy.  It runs the call below on the exact inputs, prints the
        framework's value, the exact value (certified by the suite's mpmath oracle) and the error
        in ULPs of {dtype} and against the suite's bound, and exits 1 while the discrepancy
        persists (0 once it is gone).
        """''')
    source = "\n".join([
        header,
        "from __future__ import annotations",
        "",
        "import os",
        "import sys",
        "from dataclasses import dataclass",
        "from typing import Any",
        "",
        "import numpy as np",
        "",
        'nan, inf = float("nan"), float("inf")',
        f"DTYPE = {dtype!r}",
        f"QUANTITY = {quantity!r}",
        f"EXPECTS_ERROR = {expects_error!r}",
        f"GRAD = {bool(case.grad)!r}  # the suite ran the gradient too (as the output's graph)",
        f"RECORDED = {record.status!r}  # the suite's verdict",
        "# The inputs, already rounded to DTYPE (so exact in float64); EXACT: the exact values",
        "# as decimal literals; ROUNDED: each correctly rounded to DTYPE; ALLOWED: the largest",
        "# error the suite accepts per element (its K times the oracle's bound).",
        data,
        "",
        _SETTINGS_CLASS,
        f"SETTINGS = {settings}",
        "",
        call,
        _CHECK,
    ])
    return source + "\n", (arrays if large else None)


def _settings(problem: Any) -> str:
    from conformance.adapters.common import settings_for

    s = settings_for(problem)
    return (f"Settings(axis={s.axis}, reduction={s.reduction!r}, ignore_index={s.ignore_index}, "
            f"label_smoothing={s.label_smoothing!r}, classes={s.classes}, "
            f"weighted={s.weighted}, ignoring={s.ignoring})")


_SETTINGS_CLASS = '''@dataclass(frozen=True)
class Settings:
    axis: int
    reduction: str
    ignore_index: int
    label_smoothing: float
    classes: int
    weighted: bool
    ignoring: bool'''


def _torch_call(record: Record, api_id: str, dtype: str) -> str:
    from conformance.adapters import torch_adapter

    compiled = api_id.startswith(TWIN_PREFIXES["torch"])
    base = api_id.removeprefix(TWIN_PREFIXES["torch"]) if compiled else api_id
    recipes = textwrap.dedent(inspect.getsource(torch_adapter._functions))
    wrap = "torch.compile(function, dynamic=False)" if compiled else "function"
    return f'''import torch

{recipes}

def run() -> tuple[Any, Any]:
    """{record.api}: the output, and the gradient of the sum of its elements."""
    device, dtype = {record.device!r}, getattr(torch, DTYPE)
    function = _functions(torch)[{base!r}]
    call = {wrap}
    x = torch.tensor(X, dtype=torch.float64, device=device).to(dtype).requires_grad_(GRAD)
    t = None if T is None else torch.tensor(T, device=device, dtype=torch.int64 if
                                            T.dtype.kind in "iu" else torch.float64)
    if t is not None and t.is_floating_point():
        t = t.to(dtype)
    w = None if W is None else torch.tensor(W, dtype=torch.float64, device=device).to(dtype)
    out = call(x, t, w, SETTINGS.axis, SETTINGS.ignore_index, SETTINGS.reduction,
               SETTINGS.label_smoothing)
    grad = None
    if GRAD:
        out.backward(torch.ones_like(out))
        grad = x.grad.double().cpu().numpy() if x.grad is not None else np.zeros(X.shape)
    return out.detach().double().cpu().numpy(), grad
'''


def _jax_call(record: Record, api_id: str, dtype: str) -> str:
    from conformance.adapters import jax_adapter

    jitted = api_id.startswith(TWIN_PREFIXES["jax"])
    base = api_id.removeprefix(TWIN_PREFIXES["jax"]) if jitted else api_id
    recipes = textwrap.dedent(inspect.getsource(jax_adapter._recipes))
    kind = "gpu" if record.device.startswith("cuda") else "cpu"
    index = int(record.device.split(":")[1]) if ":" in record.device else 0
    return f'''import jax

if DTYPE == "float64":
    jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import optax

NAMED_REDUCTIONS = {jax_adapter.NAMED_REDUCTIONS!r}

{recipes}

def run() -> tuple[Any, Any]:
    """{record.api}: the output, and the gradient of the sum of its elements (jax.vjp)."""
    place = jax.devices({kind!r})[{index}]
    dtype = getattr(jnp, DTYPE)
    recipe = _recipes(jax, jnp, optax)[{base!r}]
    x = jax.device_put(jnp.asarray(X, dtype=dtype), place)
    t = None if T is None else jax.device_put(
        jnp.asarray(T, dtype=jnp.int32 if T.dtype.kind in "iu" else dtype), place)
    w = None if W is None else jax.device_put(jnp.asarray(W, dtype=dtype), place)

    def forward_and_grad(x: Any, t: Any, w: Any) -> Any:
        if not GRAD:
            return recipe(x, t, w, SETTINGS), jnp.zeros_like(x)
        out, pullback = jax.vjp(lambda x: recipe(x, t, w, SETTINGS), x)
        return out, pullback(jnp.ones_like(out))[0]

    call = {"jax.jit(forward_and_grad)" if jitted else "forward_and_grad"}
    out, grad = call(x, t, w)
    return np.asarray(out).astype(np.float64), np.asarray(grad).astype(np.float64)
'''


def _tensorflow_call(record: Record, api_id: str, dtype: str) -> str:
    from conformance.adapters import tensorflow_adapter

    traced = api_id.startswith(TWIN_PREFIXES["tensorflow"])
    base = api_id.removeprefix(TWIN_PREFIXES["tensorflow"]) if traced else api_id
    recipes = textwrap.dedent(inspect.getsource(tensorflow_adapter._recipes))
    reduce = textwrap.dedent(inspect.getsource(tensorflow_adapter._reduce))
    where = (f"/GPU:{record.device.split(':')[1]}" if record.device.startswith("cuda")
             else "/CPU:0")
    return f'''import tensorflow as tf
import keras

KERAS_REDUCTION = {tensorflow_adapter.KERAS_REDUCTION!r}
V1_REDUCTION = {tensorflow_adapter.V1_REDUCTION!r}


{reduce}

{recipes}

def run() -> tuple[Any, Any]:
    """{record.api}: the output, and the gradient of the sum of its elements
    (tf.GradientTape)."""
    dtype = getattr(tf, DTYPE)
    recipe = _recipes(tf, keras)[{base!r}]
    with tf.device({where!r}):
        x = tf.cast(tf.constant(X, dtype=tf.float64), dtype)
        t = None if T is None else (tf.constant(T, dtype=tf.int64) if T.dtype.kind in "iu"
                                    else tf.cast(tf.constant(T, dtype=tf.float64), dtype))
        w = None if W is None else tf.cast(tf.constant(W, dtype=tf.float64), dtype)

        def forward_and_grad(x: Any, t: Any, w: Any) -> Any:
            if not GRAD:
                return recipe(x, t, w, SETTINGS), tf.zeros_like(x)
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = recipe(x, t, w, SETTINGS)
            grad = tape.gradient(out, x, output_gradients=tf.ones_like(out))
            return out, tf.zeros_like(x) if grad is None else tf.convert_to_tensor(grad)

        call = {"tf.function(forward_and_grad)" if traced else "forward_and_grad"}
        out, grad = call(x, t, w)
    return (np.asarray(tf.cast(out, tf.float64).numpy()),
            np.asarray(tf.cast(grad, tf.float64).numpy()))
'''


_FRAMEWORKS = {"torch": _torch_call, "jax": _jax_call, "tensorflow": _tensorflow_call}


_CHECK = '''

def ordinals(values: np.ndarray) -> np.ndarray:
    """Each value's position among the values of DTYPE (adjacent values differ by 1; +0 and
    -0 are one), as Python integers, which cannot overflow."""
    if DTYPE == "bfloat16":  # the upper half of a float32
        bits, width = values.astype(np.float32).view(np.uint32).astype(np.uint64) >> 16, 16
    else:
        kind = {"float16": (np.float16, np.uint16), "float32": (np.float32, np.uint32),
                "float64": (np.float64, np.uint64)}[DTYPE]
        bits, width = values.astype(kind[0]).view(kind[1]), 8 * np.dtype(kind[0]).itemsize
    sign = 1 << (width - 1)
    flat = [int(b) for b in np.asarray(bits).reshape(-1)]
    return np.array([-(b - sign) if b >= sign else b for b in flat],
                    dtype=object).reshape(np.shape(values))


def main() -> int:
    try:
        output, grad = run()
    except Exception as error:  # the framework refused the inputs
        print(f"raised: {type(error).__name__}: {error}")
        if EXPECTS_ERROR:
            print("as expected: the inputs are invalid")
            return 0
        print("the exact value is defined:", EXACT.tolist())
        return 1
    value = output if QUANTITY == "output" else grad
    print("framework:", np.asarray(value, dtype=np.float64).tolist())
    if EXPECTS_ERROR:
        print("expected an error: the inputs are invalid")
        return 1
    print("exact:    ", EXACT.tolist())
    value, rounded = np.asarray(value, dtype=np.float64), ROUNDED
    exact = np.array([float(v) for v in EXACT.reshape(-1)]).reshape(EXACT.shape)
    if value.shape != exact.shape:
        print(f"shape {value.shape}, exact shape {exact.shape}")
        return 1
    special = (np.isnan(value) != np.isnan(exact)) | (
        (np.isinf(value) | np.isinf(exact)) & ~np.isnan(exact) & (value != exact))
    finite = np.isfinite(value) & np.isfinite(exact)
    error = np.where(finite, np.abs(value - exact), 0.0)
    ulps = np.where(finite, abs(ordinals(value) - ordinals(rounded)), 0)
    use = np.where(finite & (ALLOWED > 0), error / np.where(ALLOWED > 0, ALLOWED, 1.0), 0.0)
    use = np.where(finite & (ALLOWED == 0) & (error > 0), np.inf, use)
    if special.any():
        print(f"special values differ at {np.argwhere(special).tolist()[:10]}")
    if finite.any():
        worst = np.unravel_index(int(np.argmax(use)), use.shape) if use.size else ()
        print(f"error: max {int(ulps.max())} ulp of {DTYPE}, max {error.max():.6g} abs; "
              f"worst element {list(map(int, worst))}: {use[worst]:.4g} of the bound "
              f"(allowed {ALLOWED[worst]:.6g})")
    persists = bool(special.any() or (use > 1).any())
    print("the discrepancy persists" if persists else "within the bound: fixed")
    return 1 if persists else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # the reproducer's own check, not the framework: exit 2, not 1
        import traceback

        traceback.print_exc()
        sys.exit(2)
'''
