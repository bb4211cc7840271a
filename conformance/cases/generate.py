"""Generated inputs: a few lines of YAML instead of a giant literal list.

A case's ``input``, ``target`` or ``weight`` may be a mapping with a ``generate`` key instead of
a nested list::

    input:  {generate: normal, shape: [32, 131072], seed: 7, scale: 3.0,
             dominant: {class: target, margin: 20}}
    target: {generate: classes, seed: 8, ignore_fraction: 0.1}
    weight: {generate: uniform, seed: 9, offset: 1.0, scale: 0.5}

Generators (``numpy.random.default_rng(seed)``, float64):

* logits (``input``) and class weights (``weight``, shape ``(C,)`` implied):

  - ``normal``:  ``offset + scale * N(0, 1)``
  - ``uniform``: ``offset + scale * U(-1, 1)``

  ``dominant: {class: K, margin: M}`` (input only) then raises class ``K`` of every row (or each
  row's own index target, with ``class: target``) to ``M`` above the largest other logit of
  that row; ``masked_fraction: F`` then sets ``round(F * C)`` classes of every row, chosen at
  random (never its dominant class), to ``-inf`` (masked classes, as in vocabulary masking).
* targets (shape taken from the input):

  - ``classes``: class indices uniform in ``[0, C)`` (or drawn from ``choices``); then
    ``round(ignore_fraction * rows)`` of them, at random positions, set to ``ignore_index``;
  - ``dirichlet``: probability rows ``Dirichlet(alpha, ..., alpha)``, times ``total``;
  - ``onehot``: one-hot rows of random classes mixed with noise:
    ``(1 - noise) * onehot + noise * Dirichlet(1, ..., 1)``, times ``total``.

The values are generated once, in float64, before the per-dtype rounding of
``conformance.cases.problem``; every framework and the oracle are handed the same numbers.  They
depend only on the spec, numpy's PCG64 bit generator and numpy's distribution code
(``tests/test_generate.py`` pins fingerprints of them, so a numpy release that changed a
stream would be noticed).

In a ``Case`` a generated value is a frozen, hashable :class:`Spec` (cheap to hash and
pickle); :func:`materialize` turns a case's specs into arrays, cached per process.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from reference.formats import get_format

LOGIT_GENERATORS = ("normal", "uniform")
INDEX_GENERATORS = ("classes",)
PROBABILITY_GENERATORS = ("dirichlet", "onehot")
TARGET_GENERATORS = INDEX_GENERATORS + PROBABILITY_GENERATORS
GENERATORS = {"input": LOGIT_GENERATORS, "target": TARGET_GENERATORS, "weight": LOGIT_GENERATORS,
              "linear_weight": LOGIT_GENERATORS, "linear_bias": LOGIT_GENERATORS}

# The keys each generator accepts, per role (besides ``generate``); the first ones listed in
# REQUIRED must be present.
_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("input", "normal"): ("shape", "seed", "scale", "offset", "dominant", "masked_fraction"),
    ("input", "uniform"): ("shape", "seed", "scale", "offset", "dominant", "masked_fraction"),
    ("weight", "normal"): ("seed", "scale", "offset"),
    ("weight", "uniform"): ("seed", "scale", "offset"),
    ("target", "classes"): ("seed", "ignore_fraction", "choices"),
    ("target", "dirichlet"): ("seed", "alpha", "total"),
    ("target", "onehot"): ("seed", "noise", "total"),
    # linear_cross_entropy: the (C, D) weight of the linear layer and its (C,) bias
    ("linear_weight", "normal"): ("shape", "seed", "scale", "offset"),
    ("linear_weight", "uniform"): ("shape", "seed", "scale", "offset"),
    ("linear_bias", "normal"): ("seed", "scale", "offset"),
    ("linear_bias", "uniform"): ("seed", "scale", "offset"),
}
REQUIRED = {"input": ("shape", "seed"), "target": ("seed",), "weight": ("seed",),
            "linear_weight": ("shape", "seed"), "linear_bias": ("seed",)}

# What a generated input may ask for, checked when the case file is loaded (not when a job
# runs out of memory).  The shipped library's largest input, cases/large's 32 x 131072, has
# 4,194,304 elements; the limit is four times that: a float64 copy is 128 MiB.
MAX_GENERATED_ELEMENTS = 2**24
MAX_DIMENSIONS = 32  # numpy's limit on an array's dimensions
_ROLE_NOTES = {
    "weight": "a weight's shape is (C,), taken from the input",
    "target": "a target's shape is taken from the input",
    "linear_bias": "a linear_bias's shape is (C,), taken from linear_weight",
}


class SpecError(ValueError):
    """A generator mapping that cannot work; ``field`` is the key inside the mapping."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Spec:
    """A generated value: the generator's name and its parameters (frozen, hashable)."""

    generate: str
    params: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        for name, value in self.params:
            if name == key:
                return value
        return default

    def to_dict(self) -> dict[str, Any]:
        """The mapping as written in YAML (tuples back to lists)."""
        return {"generate": self.generate, **{k: _thaw(v) for k, v in self.params}}

    def __repr__(self) -> str:
        return _flow(self.to_dict())

    @property
    def is_probability(self) -> bool:
        return self.generate in PROBABILITY_GENERATORS


def freeze(mapping: Mapping[str, Any]) -> Spec:
    """The :class:`Spec` of a YAML mapping ``{generate: ..., ...}``."""
    params = tuple(sorted((k, _freeze(v)) for k, v in mapping.items() if k != "generate"))
    return Spec(str(mapping["generate"]), params)


def is_spec(value: Any) -> bool:
    return isinstance(value, Spec)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and value and all(
        isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value
    ):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


# --- checking a spec (beyond the JSON Schema) ----------------------------------------------


def check(role: str, mapping: Mapping[str, Any]) -> None:
    """Raise :class:`SpecError` where ``mapping`` (a YAML generator mapping for ``role``:
    input, target or weight) is not a working generator.  Keys and types are the schema's
    job; this checks what depends on the generator chosen."""
    name = mapping.get("generate")
    choices = GENERATORS[role]
    if name not in choices:
        raise SpecError(f"{name!r} is not a {role} generator; choose one of "
                        f"{', '.join(choices)}", "generate")
    allowed = _KEYS[(role, name)]
    for key in mapping:
        if key != "generate" and key not in allowed:
            note = f" ({_ROLE_NOTES[role]})" if key == "shape" and role in _ROLE_NOTES else ""
            raise SpecError(f"{name} does not take {key!r}{note}; it takes: "
                            f"{', '.join(allowed)}", key)
    for key in REQUIRED[role]:
        if key not in mapping:
            raise SpecError(f"{name} needs {key!r}", key)
    if name == "dirichlet" and not 0 < mapping.get("alpha", 1.0) < math.inf:
        raise SpecError("alpha must be a finite number > 0", "alpha")
    if "ignore_fraction" in mapping and not 0 <= mapping["ignore_fraction"] <= 1:
        raise SpecError("ignore_fraction must lie in [0, 1]", "ignore_fraction")
    if "masked_fraction" in mapping and not 0 <= mapping["masked_fraction"] <= 1:
        raise SpecError("masked_fraction must lie in [0, 1]", "masked_fraction")
    if "noise" in mapping and not 0 <= mapping["noise"] <= 1:
        raise SpecError("noise must lie in [0, 1]", "noise")
    if "shape" in mapping:
        _check_shape(list(mapping["shape"]))


def _check_shape(shape: list[int]) -> None:
    if not shape:
        raise SpecError("shape needs at least one dimension (the classes)", "shape")
    if len(shape) > MAX_DIMENSIONS:
        raise SpecError(f"shape has {len(shape)} dimensions: at most {MAX_DIMENSIONS} "
                        "(MAX_DIMENSIONS, numpy's limit)", "shape")
    count = element_count(shape)
    if count > MAX_GENERATED_ELEMENTS:
        raise SpecError(f"shape {shape} asks for {count:,} elements: at most "
                        f"{MAX_GENERATED_ELEMENTS:,} (MAX_GENERATED_ELEMENTS)", "shape")


def element_count(shape: Iterable[int]) -> int:
    """The elements generating ``shape`` allocates: its size, with an empty axis counted as
    one (an empty batch still draws its classes' weights or Dirichlet parameters)."""
    return math.prod(max(int(n), 1) for n in shape)


def input_shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a literal nested list or of a generated input (None if ragged)."""
    if isinstance(value, Spec):
        return tuple(int(n) for n in value.get("shape", ()))
    if not isinstance(value, (list, tuple)):
        return ()
    shapes = {input_shape(v) for v in value}
    if len(shapes) > 1 or None in shapes:
        return None
    inner = shapes.pop() if shapes else ()
    return None if inner is None else (len(value), *inner)


def class_axis(shape: tuple[int, ...]) -> int:
    """The class axis of an input of ``shape``: 0 for ``(C,)``, else 1."""
    return 0 if len(shape) == 1 else 1


_class_axis = class_axis


def check_generation(input: Any, target: Any, weight: Any) -> tuple[str, str] | None:
    """``(field, message)`` where generated values cannot be generated at all (whatever the
    case expects), else None: a dominant class that is not there, a target drawn from no
    classes."""
    shape = input_shape(input)
    assert shape is not None
    if not shape:
        return "input", "input must have at least one dimension (the classes)"
    axis = _class_axis(shape)
    classes = shape[axis]
    batch = shape[:axis] + shape[axis + 1:]
    if isinstance(target, Spec) and classes == 0 and math.prod(batch) > 0:
        return "target", f"{target.generate} needs at least one class to draw from"
    if isinstance(input, Spec) and (dominant := dict(input.get("dominant", ()))):
        if classes < 2:
            return "input", "dominant needs at least two classes"
        k = dominant["class"]
        if k == "target":
            if isinstance(target, Spec):
                index_target = not target.is_probability
            else:
                index_target = target is not None and _is_index(target)
            if not index_target:
                return "input", "dominant class: target needs class-index targets"
        elif not 0 <= int(k) < classes:
            return "input", f"dominant class {k} is outside [0, {classes})"
    return None


def check_domain(
    op: str, input: Any, target: Any, weight: Any, ignore_index: int, label_smoothing: float
) -> tuple[str, str] | None:
    """``(field, message)`` where a case with generated values cannot be generated
    (:func:`check_generation`) or lies outside the oracle's domain
    (``reference.oracle.check_inputs``, whose rules this mirrors without converting a
    possibly huge generated input to mpmath), else None."""
    problem = check_generation(input, target, weight)
    if problem is not None:
        return problem
    shape = input_shape(input)
    assert shape is not None
    axis = _class_axis(shape)
    classes = shape[axis]
    batch = shape[:axis] + shape[axis + 1:]
    if op in ("nll_loss", "cross_entropy"):
        problem = _check_target(op, target, shape, batch, classes, ignore_index)
        if problem is not None:
            return problem
    if weight is not None and not isinstance(weight, Spec) and len(weight) != classes:
        return "weight", f"weight has {len(weight)} entries for {classes} classes"
    if not 0 <= label_smoothing <= 1:
        return "label_smoothing", f"label_smoothing must lie in [0, 1], got {label_smoothing}"
    if op == "nll_loss" and label_smoothing != 0:
        return "label_smoothing", "nll_loss has no label_smoothing"
    return None


def _is_index(target: Any) -> bool:
    flat = list(_flatten(target))
    return all(isinstance(t, int) and not isinstance(t, bool) for t in flat)


def _flatten(value: Any) -> Iterable[Any]:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


def _check_target(op: str, target: Any, shape: tuple[int, ...], batch: tuple[int, ...],
                  classes: int, ignore_index: int) -> tuple[str, str] | None:
    if target is None:
        return "target", f"{op} needs a target"
    if isinstance(target, Spec):
        if target.is_probability:
            return ("target", "nll_loss takes class-index targets only") if op == "nll_loss" \
                else None
        for t in target.get("choices", ()):
            if t != ignore_index and not 0 <= t < classes:
                return "target", (f"choice {t} is outside [0, {classes}) and is not "
                                  f"ignore_index ({ignore_index})")
        return None
    target_shape = input_shape(target)
    if _is_index(target):
        if target_shape != batch:
            return "target", f"class-index target has shape {target_shape}; expected {batch}"
        for position, t in enumerate(_flatten(target)):
            if t != ignore_index and not 0 <= t < classes:
                return "target", (f"target {t} at flat position {position} is outside "
                                  f"[0, {classes}) and is not ignore_index ({ignore_index})")
        return None
    if op == "nll_loss":
        return "target", "nll_loss takes class-index targets only"
    if target_shape != shape:
        return "target", (f"probability target has shape {target_shape}; expected the input "
                          f"shape {shape}")
    return None


# --- materializing ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Materialized:
    """A case's values with every spec generated: float64 arrays (int64 for index targets)
    where the case had a spec, the literal nested tuples where it had those."""

    input: Any
    target: Any
    weight: Any


def materialize(input: Any, target: Any, weight: Any, ignore_index: int) -> Materialized:
    """Generate whatever of ``input``, ``target`` and ``weight`` is a :class:`Spec`.  The
    arrays are read-only and cached per process (keyed by the specs)."""
    if not any(isinstance(v, Spec) for v in (input, target, weight)):
        return Materialized(input, target, weight)
    return _materialize(input, target, weight, ignore_index)


@lru_cache(maxsize=16)
def _materialize(input: Any, target: Any, weight: Any, ignore_index: int) -> Materialized:
    shape = input_shape(input)
    assert shape is not None
    classes = shape[_class_axis(shape)]
    if isinstance(target, Spec):
        target = target_array(target, shape, ignore_index)
    if isinstance(input, Spec):
        input = _logits(input, None if target is None else np.asarray(target), ignore_index)
    if isinstance(weight, Spec):
        weight = _read_only(_distribution(weight, (classes,)))
    return Materialized(input, target, weight)


def target_array(spec: Spec, shape: tuple[int, ...], ignore_index: int) -> np.ndarray:
    """The target ``spec`` generates for an input of ``shape``."""
    return _target(spec, tuple(shape), ignore_index)


@lru_cache(maxsize=64)
def _target(spec: Spec, shape: tuple[int, ...], ignore_index: int) -> np.ndarray:
    rng = np.random.default_rng(spec.get("seed"))
    axis = _class_axis(shape)
    classes = shape[axis]
    batch = shape[:axis] + shape[axis + 1:]
    rows = math.prod(batch)
    if spec.generate == "classes":
        choices = spec.get("choices")
        if choices is None:
            flat = rng.integers(0, classes, size=rows, dtype=np.int64)
        else:
            flat = np.asarray(choices, dtype=np.int64)[rng.integers(0, len(choices), size=rows)]
        ignored = math.floor(spec.get("ignore_fraction", 0.0) * rows + 0.5)
        flat[rng.permutation(rows)[:ignored]] = ignore_index
        return _read_only(flat.reshape(batch))
    if spec.generate == "dirichlet":
        alpha = float(spec.get("alpha", 1.0))
        table = rng.dirichlet(np.full(classes, alpha), size=rows)
    else:  # onehot
        table = np.zeros((rows, classes))
        table[np.arange(rows), rng.integers(0, classes, size=rows)] = 1.0
        noise = float(spec.get("noise", 0.0))
        if noise:
            table = (1.0 - noise) * table + noise * rng.dirichlet(np.ones(classes), size=rows)
    table = table * float(spec.get("total", 1.0))
    return _read_only(np.moveaxis(table.reshape(*batch, classes), -1, axis))


def _distribution(spec: Spec, shape: tuple[int, ...],
                  rng: np.random.Generator | None = None) -> np.ndarray:
    if rng is None:
        rng = np.random.default_rng(spec.get("seed"))
    if spec.generate == "normal":
        unit = rng.standard_normal(shape)
    else:  # uniform on [-1, 1)
        unit = 2.0 * rng.random(shape) - 1.0
    return float(spec.get("offset", 0.0)) + float(spec.get("scale", 1.0)) * unit


def _logits(spec: Spec, target: np.ndarray | None, ignore_index: int) -> np.ndarray:
    """Values, then the dominant class raised, then masked classes set to -inf."""
    shape = input_shape(spec)
    assert shape is not None
    axis = _class_axis(shape)
    classes = shape[axis]
    rng = np.random.default_rng(spec.get("seed"))
    values = _distribution(spec, shape, rng)
    moved_shape = np.moveaxis(values, axis, -1).shape
    # the row count spelled out: reshape(-1, 0) cannot infer it (an expected-error case may
    # have no classes)
    rows = np.ascontiguousarray(np.moveaxis(values, axis, -1)).reshape(
        math.prod(moved_shape[:-1]), classes)
    dominant = dict(spec.get("dominant", ()))
    keep = np.full(len(rows), -1, dtype=np.int64)  # each row's dominant class, -1 for none
    if dominant:
        if dominant["class"] == "target":
            assert target is not None
            keep = np.asarray(target, dtype=np.int64).reshape(-1).copy()
            keep[keep == ignore_index] = -1
        else:
            keep[:] = int(dominant["class"])
        for r, k in enumerate(keep):
            if k >= 0:
                rows[r, k] = np.delete(rows[r], k).max() + float(dominant["margin"])
    fraction = float(spec.get("masked_fraction", 0.0))
    if fraction and len(rows):
        count = math.floor(fraction * classes + 0.5)
        order = np.argsort(rng.random(rows.shape), axis=1, kind="stable")
        for r in range(len(rows)):
            candidates = order[r][order[r] != keep[r]]
            rows[r, candidates[:count]] = -np.inf
    return _read_only(np.moveaxis(rows.reshape(moved_shape), -1, axis))


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, order="C")  # a copy; keeps a 0-d target 0-d
    array.setflags(write=False)
    return array


def fingerprint(array: np.ndarray) -> str:
    """A short digest of an array's dtype, shape and bytes (to compare across processes)."""
    array = np.array(array, order="C")
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# --- rounding a float64 array to a dtype, vectorized -----------------------------------------


def round_array(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 ``values`` to ``dtype`` (nearest, ties to even, gradual underflow,
    overflow to infinity), exactly as ``reference.formats.round_to_float`` does element by
    element, but with numpy: every step is an exact scaling by a power of two or ``rint``."""
    x = np.asarray(values, dtype=np.float64)
    fmt = get_format(dtype)
    out = x.copy()
    if fmt.precision >= 53:
        out[out == 0] = 0.0
        return out
    finite = np.isfinite(x) & (x != 0)
    v = x[finite]
    _, e = np.frexp(v)  # v = m * 2**e with 0.5 <= |m| < 1, so floor(log2 |v|) = e - 1
    quantum = np.maximum(e - 1, fmt.emin) - (fmt.precision - 1)
    rounded = np.ldexp(np.rint(np.ldexp(v, -quantum)), quantum)
    overflow = np.abs(rounded) > fmt.max_finite
    rounded[overflow] = np.copysign(np.inf, rounded[overflow])
    out[finite] = rounded
    out[out == 0] = 0.0  # like round_to_float: mpmath has no signed zero
    return out


# --- linear_cross_entropy: hidden states, a linear layer, targets on the logits' shape ---------

LINEAR_OP = "linear_cross_entropy"


def logits_shape(input: Any, linear_weight: Any) -> tuple[int, ...] | None:
    """The shape of ``input @ linear_weight^T``: (N, C) for an (N, D) input, (C,) for (D,);
    None when a shape is ragged or the two do not fit (``check_linear_domain`` says why)."""
    hidden, matrix = input_shape(input), input_shape(linear_weight)
    if hidden is None or matrix is None or len(matrix) != 2 or len(hidden) not in (1, 2):
        return None
    return (matrix[0],) if len(hidden) == 1 else (hidden[0], matrix[0])


def check_linear_domain(input: Any, linear_weight: Any, linear_bias: Any, target: Any,
                        weight: Any, ignore_index: int,
                        label_smoothing: float) -> tuple[str, str] | None:
    """``(field, message)`` where a linear_cross_entropy case with generated values cannot be
    generated or lies outside the oracle's domain (``reference.linear.check_linear_inputs``,
    mirrored without generating anything), else None."""
    if linear_weight is None:
        return "linear_weight", "linear_cross_entropy needs a linear_weight (C, D)"
    hidden, matrix = input_shape(input), input_shape(linear_weight)
    if hidden is None or len(hidden) not in (1, 2):
        return "input", f"input must be (N, D) or (D,), got shape {hidden}"
    if isinstance(input, Spec) and (input.get("dominant") or input.get("masked_fraction")):
        return "input", ("dominant and masked_fraction shape logits; linear_cross_entropy's "
                         "input is hidden states (shape its logits with linear_bias)")
    if matrix is None or len(matrix) != 2 or matrix[0] == 0:
        return "linear_weight", f"linear_weight must be (C, D) with C >= 1, got shape {matrix}"
    if matrix[1] != hidden[-1]:
        return "linear_weight", (f"linear_weight has {matrix[1]} columns for an input of "
                                 f"{hidden[-1]} features")
    classes = matrix[0]
    if linear_bias is not None and not isinstance(linear_bias, Spec) \
            and len(linear_bias) != classes:
        return "linear_bias", f"linear_bias has {len(linear_bias)} entries for {classes} classes"
    shape = logits_shape(input, linear_weight)
    assert shape is not None
    batch = shape[:-1]
    problem = _check_target("cross_entropy", target, shape, batch, classes, ignore_index)
    if problem is not None:
        return problem
    if weight is not None and not isinstance(weight, Spec) and len(weight) != classes:
        return "weight", f"weight has {len(weight)} entries for {classes} classes"
    if not 0 <= label_smoothing <= 1:
        return "label_smoothing", f"label_smoothing must lie in [0, 1], got {label_smoothing}"
    return None


@dataclass(frozen=True, eq=False)
class LinearMaterialized:
    """A linear_cross_entropy case's values with every spec generated (float64 arrays; int64
    index targets), or the literal nested tuples."""

    input: Any
    linear_weight: Any
    linear_bias: Any
    target: Any
    weight: Any


def materialize_linear(input: Any, linear_weight: Any, linear_bias: Any, target: Any,
                       weight: Any, ignore_index: int) -> LinearMaterialized:
    """Generate whatever of the five is a :class:`Spec`: the hidden states and the weight by
    their own shapes, the bias and class weights as (C,), the target on the logits' shape
    (N, C) or (C,).  Cached per process; the arrays are read-only."""
    return _materialize_linear(input, linear_weight, linear_bias, target, weight, ignore_index)


@lru_cache(maxsize=8)
def _materialize_linear(input: Any, linear_weight: Any, linear_bias: Any, target: Any,
                        weight: Any, ignore_index: int) -> LinearMaterialized:
    if isinstance(input, Spec):
        input = _read_only(_distribution(input, input_shape(input) or ()))
    if isinstance(linear_weight, Spec):
        linear_weight = _read_only(_distribution(linear_weight, input_shape(linear_weight) or ()))
    hidden = input.shape if isinstance(input, np.ndarray) else input_shape(input)
    matrix = (linear_weight.shape if isinstance(linear_weight, np.ndarray)
              else input_shape(linear_weight))
    assert hidden is not None and matrix is not None
    classes = int(matrix[0])
    shape = (classes,) if len(hidden) == 1 else (int(hidden[0]), classes)
    if isinstance(linear_bias, Spec):
        linear_bias = _read_only(_distribution(linear_bias, (classes,)))
    if isinstance(weight, Spec):
        weight = _read_only(_distribution(weight, (classes,)))
    if isinstance(target, Spec):
        target = target_array(target, shape, ignore_index)
    return LinearMaterialized(input, linear_weight, linear_bias, target, weight)
