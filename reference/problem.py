"""The problem: an op's inputs, converted exactly, checked against the op's domain.

``prepare`` turns what a caller passes (nested lists, numpy arrays, floats, mpf, the strings
``'inf'``, ``'-inf'``, ``'nan'``) into a ``Problem``: the logits as rows x classes, the class
axis moved last, and the targets and weights beside them, every number *exactly* the value
given (no rounding).  An input outside the op's domain (``reference/SPEC.md``, "Domain")
raises ``OracleDomainError`` naming the offending argument (``reference.oracle.check_inputs``
does only that).  ``restore`` undoes the rows-by-classes layout.  Nothing here computes a
value of an op.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from reference.formats import exact, round_to_float

PROBS_OP = "categorical_crossentropy_probs"  # Keras' from_logits=False (SPEC.md)
OPS = ("softmax", "log_softmax", "nll_loss", "cross_entropy", PROBS_OP)
LOSS_OPS = ("nll_loss", "cross_entropy", PROBS_OP)
# Keras' and TF v1's named reductions (SPEC.md, Reduction): each divides the sum by its own D.
NAMED_REDUCTIONS = ("sum_over_batch_size", "mean_with_sample_weight", "sum_by_nonzero_weights")
REDUCTIONS = ("none", "mean", "sum", *NAMED_REDUCTIONS)
# Keras' epsilon() (keras/src/backend/config.py): the clip of PROBS_OP.
KERAS_EPSILON = 1e-7


def divides(reduction: str) -> bool:
    """Whether ``reduction`` divides the sum by a divisor ``D`` (a mean of some kind)."""
    return reduction not in ("none", "sum")


class OracleDomainError(ValueError):
    """The inputs lie outside the domain where the op is defined (e.g. a target out of range).

    ``field`` names the offending argument (``input``, ``target``, ``weight``, ...).
    """

    def __init__(self, message: str, field: str = "input") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Problem:
    """One op's inputs, exactly, with the logits as rows x classes."""

    op: str
    # rows x C: float64 when every input is exactly a float64 (the usual case: the floats of
    # the dtype under test, 'inf' and 'nan' included), else mpf; likewise prob_target
    logits: np.ndarray
    batch_shape: tuple[int, ...]
    class_axis: int
    index_target: np.ndarray | None  # rows, int
    prob_target: np.ndarray | None  # rows x C
    weight: Sequence[mpf] | None  # ExactFloats when every weight is a float64
    ignore_index: int
    reduction: str
    label_smoothing: mpf
    # issue 20, each None when the case does not use it: one weight per row (mpf, exactly);
    # the class mask, rows x C booleans (masked logits are already -inf in ``logits``); the
    # clip [lo, hi] of PROBS_OP in the dtype under test (``logits`` then holds probabilities)
    sample_weight: list[mpf] | None = None
    mask: np.ndarray | None = None
    clip: tuple[mpf, mpf] | None = None


def _as_mpf_array(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    if not array.size:
        return array
    # one _to_mpf per element (np.vectorize would warn "invalid value" on each NaN it casts)
    out = np.empty(array.shape, dtype=object)
    out.reshape(-1)[:] = [_to_mpf(v) for v in array.reshape(-1)]
    return out


def _to_mpf(value: Any) -> mpf:
    if isinstance(value, str):
        return mpf(value)  # 'inf', '-inf', 'nan'
    return exact(float(value)) if not isinstance(value, mpf) else value


def _as_value_array(values: Any) -> np.ndarray:
    """``values`` as float64 when each is exactly a float64 (what ``_to_mpf`` would make of it
    is then that float), otherwise as mpf."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64)
    mpfs = _as_mpf_array(values)
    floats = np.array([float(v) for v in mpfs.reshape(-1)], dtype=np.float64)
    if all(f == v or (math.isnan(f) and mpmath.isnan(v)) for f, v in zip(floats, mpfs.flat)):
        return floats.reshape(mpfs.shape)
    return mpfs


class ExactFloats(Sequence[mpf]):
    """A sequence of float64 values read as exact ``mpf`` (``floats``: the values themselves),
    each converted when first read: the weights of a problem with many classes, which most
    rows read at one class only and the vectorised path reads as floats."""

    def __init__(self, floats: np.ndarray) -> None:
        self.floats = np.asarray(floats, dtype=np.float64)
        self._mpf: list[mpf] | None = None

    def __len__(self) -> int:
        return len(self.floats)

    def _all(self) -> list[mpf]:
        if self._mpf is None:
            self._mpf = [exact(v) for v in self.floats.tolist()]
        return self._mpf

    def __getitem__(self, index: Any) -> Any:
        if self._mpf is None and isinstance(index, (int, np.integer)):
            return exact(float(self.floats[index]))
        return self._all()[index]

    def __iter__(self) -> Any:
        return iter(self._all())


def weight_floats(weight: Sequence[mpf] | None) -> np.ndarray | None:
    """The class weights as float64 (rounded where not exactly floats), None without."""
    if weight is None:
        return None
    if isinstance(weight, ExactFloats):
        return weight.floats
    return np.array([float(w) for w in weight], dtype=np.float64)


def _prepare_weight(weight: Sequence[float] | Any) -> Sequence[mpf]:
    """The weights, exactly: float64 values as ``ExactFloats``, anything else as mpf."""
    if isinstance(weight, np.ndarray) and weight.dtype.kind == "f" and weight.ndim == 1:
        return ExactFloats(weight.astype(np.float64))  # float16/32/64 values: exact
    if isinstance(weight, (list, tuple)) and all(
            type(w) is float or isinstance(w, np.floating) for w in weight):  # exact in float64
        return ExactFloats(np.array(weight, dtype=np.float64))
    return [_to_mpf(w) for w in weight]


def mpf_row(values: np.ndarray, r: int) -> list[mpf]:
    """Row ``r`` of a float64 or mpf array, as mpf (exactly)."""
    if values.dtype == object:
        return list(values[r])
    return [exact(v) for v in values[r].tolist()]


def float_row(values: np.ndarray, r: int) -> np.ndarray:
    """Row ``r`` as float64 (exact for a float64 array; rounded for mpf)."""
    if values.dtype == object:
        return np.array([float(v) for v in values[r]], dtype=np.float64)
    return np.asarray(values[r])


def prepare(
    op: str,
    input: Any,
    target: Any,
    weight: Sequence[float] | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    axis: int | None = None,
    sample_weight: Any = None,
    where: Any = None,
    dtype: str | None = None,
) -> Problem:
    """The problem of ``op`` on these inputs, every number exactly as given; raises
    ``OracleDomainError`` (naming the argument) where the op is not defined.  ``axis``: the
    class axis (default 1, or 0 for a 1-D input); ``dtype``: the format under test, which
    sets the clip of PROBS_OP (float64 when not given)."""
    if op not in OPS:
        raise OracleDomainError(f"unknown op {op!r}; expected one of {', '.join(OPS)}", "op")
    if reduction not in REDUCTIONS:
        raise OracleDomainError(f"unknown reduction {reduction!r}", "reduction")
    x = _as_value_array(input)
    if x.ndim == 0:
        raise OracleDomainError("input must have at least one dimension (the classes)")
    class_axis = class_axis_of(x.ndim, axis)
    moved = np.moveaxis(x, class_axis, -1)
    batch_shape = tuple(moved.shape[:-1])
    classes = moved.shape[-1]
    rows = moved.reshape(-1, classes)
    mask = None if where is None else _prepare_mask(where, x.shape, class_axis, classes)
    if mask is not None:
        if op in ("nll_loss", PROBS_OP):
            raise OracleDomainError(f"{op} has no class mask (where)", "where")
        rows = _masked(rows, mask)
    if op == PROBS_OP:
        _check_probabilities(rows)
    index_target = prob_target = None
    if op in LOSS_OPS:
        index_target, prob_target = _prepare_target(op, target, x.shape, class_axis, batch_shape)
        if index_target is not None:
            _check_indices(index_target, classes, ignore_index)
    weights = None
    if weight is not None:
        weights = _prepare_weight(weight)
        if len(weights) != classes:
            raise OracleDomainError(
                f"weight has {len(weights)} entries for {classes} classes", "weight"
            )
    smoothing = exact(float(label_smoothing))
    if not 0 <= smoothing <= 1:
        raise OracleDomainError(
            f"label_smoothing must lie in [0, 1], got {label_smoothing}", "label_smoothing"
        )
    if op == "nll_loss" and smoothing != 0:
        raise OracleDomainError("nll_loss has no label_smoothing", "label_smoothing")
    sample_weights = _prepare_sample_weight(op, sample_weight, batch_shape, reduction)
    clip = _keras_clip(dtype or "float64") if op == PROBS_OP else None
    return Problem(
        op, rows, batch_shape, class_axis, index_target, prob_target, weights,
        int(ignore_index), reduction, smoothing, sample_weights, mask, clip,
    )


def class_axis_of(ndim: int, axis: int | None) -> int:
    """The class axis of an input of ``ndim`` dimensions, as a non-negative index: ``axis``
    (negative counts from the end), by default 1, or 0 for a 1-D input."""
    if axis is None:
        return 0 if ndim == 1 else 1
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
            or not -ndim <= axis < ndim:
        raise OracleDomainError(
            f"axis {axis!r} is not an axis of an input of {ndim} dimension(s): expected an "
            f"integer in [{-ndim}, {ndim})", "axis")
    return int(axis) % ndim


def _prepare_mask(where: Any, input_shape: tuple[int, ...], class_axis: int,
                  classes: int) -> np.ndarray:
    array = np.asarray(where, dtype=object)
    if array.shape != input_shape or not all(isinstance(v, (bool, np.bool_)) for v in array.flat):
        raise OracleDomainError(
            f"where must be booleans shaped like the input {input_shape}, got shape "
            f"{array.shape}", "where")
    moved = np.moveaxis(array.astype(bool), class_axis, -1)
    return moved.reshape(-1, classes)


def _masked(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The logits with every masked class set to -inf (SPEC.md, where): exact."""
    filled = rows.copy()
    filled[~mask] = -np.inf if filled.dtype != object else mpf("-inf")
    return filled


def _check_probabilities(rows: np.ndarray) -> None:
    for r in range(rows.shape[0]):
        for value in mpf_row(rows, r):
            if not (mpmath.isfinite(value) and value >= 0):
                raise OracleDomainError(
                    f"{PROBS_OP} takes probabilities (finite and >= 0); row {r} has "
                    f"{mpmath.nstr(value, 8)}")


def _prepare_sample_weight(op: str, sample_weight: Any, batch_shape: tuple[int, ...],
                           reduction: str) -> list[mpf] | None:
    if sample_weight is None:
        return None
    if op not in LOSS_OPS:
        raise OracleDomainError(f"{op} has no sample_weight (only losses do)", "sample_weight")
    if reduction == "mean":
        raise OracleDomainError(
            "sample_weight with reduction mean is ambiguous: name the divisor with "
            f"one of {', '.join(NAMED_REDUCTIONS)}, or use sum or none", "reduction")
    array = np.asarray(sample_weight, dtype=object)
    if array.shape != batch_shape:
        raise OracleDomainError(
            f"sample_weight has shape {array.shape}; expected one weight per example, "
            f"{batch_shape} (the input's shape without its class axis)", "sample_weight")
    weights = [_to_mpf(v) for v in array.flat]
    if not all(mpmath.isfinite(w) for w in weights):
        raise OracleDomainError("sample_weight must be finite", "sample_weight")
    return weights


def _keras_clip(dtype: str) -> tuple[mpf, mpf]:
    """Keras' clip ``[epsilon(), 1 - epsilon()]`` as the framework holds it in ``dtype``: the
    Python floats 1e-7 and 1.0 - 1e-7 (float64 arithmetic), each rounded to ``dtype``."""
    return (exact(round_to_float(KERAS_EPSILON, dtype)),
            exact(round_to_float(1.0 - KERAS_EPSILON, dtype)))


def _prepare_target(
    op: str, target: Any, input_shape: tuple[int, ...], class_axis: int,
    batch_shape: tuple[int, ...],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if target is None:
        raise OracleDomainError(f"{op} needs a target", "target")
    # a float array is a probability target even when empty (no element says so); it is
    # read without an object array of millions of Python floats
    is_float_array = isinstance(target, np.ndarray) and target.dtype.kind == "f"
    is_integer_array = isinstance(target, np.ndarray) and target.dtype.kind in "iu"
    array = target if is_float_array else np.asarray(target, dtype=object)
    is_index = is_integer_array or (not is_float_array and all(
        isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in array.flat))
    if is_index:
        if array.shape != batch_shape:
            raise OracleDomainError(
                f"class-index target has shape {array.shape}; expected {batch_shape}", "target"
            )
        return np.asarray([int(t) for t in array.flat], dtype=object), None
    if op == "nll_loss":
        raise OracleDomainError("nll_loss takes class-index targets only", "target")
    if array.shape != input_shape:
        raise OracleDomainError(
            f"probability target has shape {array.shape}; expected the input shape {input_shape}",
            "target",
        )
    probabilities = np.moveaxis(_as_value_array(target), class_axis, -1)
    return None, probabilities.reshape(-1, input_shape[class_axis])


def _check_indices(targets: np.ndarray, classes: int, ignore_index: int) -> None:
    for position, t in enumerate(targets):
        if t != ignore_index and not 0 <= t < classes:
            raise OracleDomainError(
                f"target {t} at flat position {position} is outside [0, {classes}) "
                f"and is not ignore_index ({ignore_index})",
                "target",
            )


def restore(rows: np.ndarray, moved_shape: tuple[int, ...], class_axis: int) -> np.ndarray:
    """Undo the rows-by-classes layout: back to the input's shape and axis order."""
    return np.moveaxis(rows.reshape(moved_shape), -1, class_axis)
