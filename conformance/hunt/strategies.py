"""Hypothesis strategies for the problems ``conformance hunt`` tries.

A problem is drawn for one framework's API: the op is the API's, the options are among those
it supports (``Api.supports``), the dtype among the framework's.  Everything shrinks toward
the plainest problem: small shapes first (one row of two classes), logits near zero, no
special values, no options.  What is drawn:

* the shape: ``(C,)``, ``(N, C)`` or ``(N, C, d1[, d2])`` (K-dim, where supported), with
  ``C`` among 2, 3, 1, 5, 8, ``N`` among 1, 2, 4, 0 (0: an empty batch) and ``d`` among
  2, 1, 3 (few shapes: frameworks that compile per shape meet them again);
* the logits: ``offset + scale * v`` with ``v`` in [-4, 4] (a float32 value), ``scale`` among
  1, 30, 1e3, 1e6, 1e30 and a common ``offset`` among 0, 1e2, 1e4, -1e6, 1e8; ties (a logit
  equal to its row's maximum), ``-inf``, ``+inf`` and ``nan``, where a drawn flag allows them;
* targets: class indices (some set to ``ignore_index``) or probabilities (normalised rows, or
  raw ones that do not sum to 1), per the API's support;
* class weights (non-negative, zeros included), label smoothing, and the reduction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from conformance.adapters.base import Api

CLASSES = (2, 3, 1, 5, 8)
ROWS = (1, 2, 4, 0)
SPATIAL = (2, 1, 3)
SCALES = (1.0, 30.0, 1e3, 1e6, 1e30)
OFFSETS = (0.0, 1e2, 1e4, -1e6, 1e8)
SMOOTHINGS = (0.0, 0.1, 0.5, 1.0, 0.05)
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Drawn:
    """One problem's case fields, as a case file would hold them (nested lists, 'inf')."""

    op: str
    input: Any
    target: Any = None
    weight: Any = None
    reduction: str = "mean"
    label_smoothing: float = 0.0
    dtype: str = "float32"

    def fields(self) -> dict[str, Any]:
        """The case's fields for ``conformance.cases.loading.Case`` and a case file."""
        fields: dict[str, Any] = {"op": self.op, "input": self.input}
        if self.op in ("nll_loss", "cross_entropy"):
            fields.update(target=self.target, reduction=self.reduction)
            if self.weight is not None:
                fields["weight"] = self.weight
            if self.label_smoothing:
                fields["label_smoothing"] = self.label_smoothing
        fields["dtypes"] = [self.dtype]
        return fields


def _number(value: float) -> float | str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


_FLOAT = st.floats(-4.0, 4.0, allow_nan=False, width=32)


@st.composite
def _row(draw: Any, classes: int, scale: float, offset: float, specials: bool) -> list[Any]:
    values = [offset + scale * draw(_FLOAT) for _ in range(classes)]
    kinds = [draw(st.integers(0, 23)) if specials else 0 for _ in range(classes)]
    peak = max(values)
    row: list[Any] = []
    for value, kind in zip(values, kinds):
        if kind == 20:
            value = peak  # a tie with the row's maximum
        elif kind == 21:
            value = -math.inf
        elif kind == 22:
            value = math.nan
        elif kind == 23:
            value = math.inf
        row.append(_number(value))
    return row


def _nest(rows: list[list[Any]], shape: tuple[int, ...]) -> Any:
    """Rows of C logits (class axis last, rows in C order of the other axes) laid out as a
    nested list of ``shape`` (the class axis second, or first for (C,))."""
    if len(shape) == 1:
        return rows[0]
    n, classes, *rest = shape

    def at(index: tuple[int, ...], c: int) -> Any:
        flat = 0
        for size, i in zip((n, *rest), index):
            flat = flat * size + i
        return rows[flat][c]

    def layout(i: int) -> Any:
        return [_spatial((i,), c, rest, at) for c in range(classes)]

    return [layout(i) for i in range(n)]


def _spatial(prefix: tuple[int, ...], c: int, dims: list[int], at: Any) -> Any:
    if not dims:
        return at(prefix, c)
    return [_spatial((*prefix, j), c, dims[1:], at) for j in range(dims[0])]


def _batch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return () if len(shape) == 1 else (shape[0], *shape[2:])


def _nest_batch(values: list[Any], batch: tuple[int, ...]) -> Any:
    if not batch:
        return values[0]
    if len(batch) == 1:
        return values
    step = len(values) // batch[0] if batch[0] else 0
    return [_nest_batch(values[i * step:(i + 1) * step], batch[1:]) for i in range(batch[0])]


@st.composite
def problems(draw: Any, api: Api, dtypes: tuple[str, ...]) -> Drawn:
    """A problem for ``api`` in one of ``dtypes`` (module docstring)."""
    supports = api.supports
    loss = api.op in ("nll_loss", "cross_entropy")
    # sizes from short lists (not every integer), so that frameworks which compile for each
    # new shape (JAX's eager ops, tf.function) meet the same few shapes again and again
    classes = draw(st.sampled_from(CLASSES))
    rank = draw(st.sampled_from([2, 1, 3, 4] if "k_dim" in supports or not loss else [2, 1]))
    if loss and rank == 1 and api.op == "nll_loss":
        rank = 2
    rows = draw(st.sampled_from(ROWS)) if rank >= 2 else 1
    shape: tuple[int, ...] = (classes,) if rank == 1 else (rows, classes)
    if rank > 2:
        shape = (*shape, *draw(st.lists(st.sampled_from(SPATIAL), min_size=rank - 2,
                                        max_size=rank - 2)))
    batch = _batch_shape(shape)
    count = math.prod(batch) if batch else 1
    scale = draw(st.sampled_from(SCALES))
    offset = draw(st.sampled_from(OFFSETS))
    specials = draw(st.booleans())
    logit_rows = [draw(_row(classes, scale, offset, specials)) for _ in range(count)]
    if api.op == "nll_loss":  # log-probabilities: non-positive numbers
        logit_rows = [[-abs(v) if isinstance(v, float) else v for v in r] for r in logit_rows]
    drawn: dict[str, Any] = {"op": api.op, "input": _nest(logit_rows, shape)}
    if count == 0:  # nested lists cannot hold the shape (0, C, ...): a generator can
        drawn["input"] = {"generate": "normal", "shape": list(shape), "seed": 0}
    if loss:
        drawn.update(draw(_loss_options(api, classes, batch, count, shape)))
    drawn["dtype"] = draw(st.sampled_from(dtypes))
    return Drawn(**drawn)


@st.composite
def _loss_options(draw: Any, api: Api, classes: int, batch: tuple[int, ...], count: int,
                  shape: tuple[int, ...]) -> dict[str, Any]:
    supports = api.supports
    options: dict[str, Any] = {}
    kinds = [k for k in ("index_target", "probability_target") if k in supports]
    if not kinds:
        kinds = ["index_target"]
    kind = draw(st.sampled_from(kinds))
    if kind == "index_target":
        ignore = "ignore_index" in supports and draw(st.booleans())
        values = [draw(st.integers(0, classes - 1)) for _ in range(count)]
        if ignore and values:
            values[draw(st.integers(0, len(values) - 1))] = IGNORE_INDEX
        options["target"] = _nest_batch(values, batch) if count else {"generate": "classes",
                                                                      "seed": 0}
    else:
        raw = draw(st.booleans())  # rows that do not sum to 1 (shrinks to normalised ones)
        rows = []
        for _ in range(count):
            row = [draw(st.floats(0.0, 1.0, width=32)) for _ in range(classes)]
            total = sum(row)
            if not raw and total > 0:
                row = [v / total for v in row]
            rows.append(row)
        options["target"] = _nest(rows, shape) if count else {"generate": "dirichlet",
                                                              "seed": 0}
    if "weight" in supports and draw(st.booleans()):
        options["weight"] = [draw(st.sampled_from([1.0, 0.5, 2.0, 0.0, 3.25]))
                             for _ in range(classes)]
    if "label_smoothing" in supports and api.op == "cross_entropy":
        options["label_smoothing"] = draw(st.sampled_from(SMOOTHINGS))
    reductions = [r for r in ("mean", "sum", "none") if f"reduction_{r}" in supports]
    options["reduction"] = draw(st.sampled_from(reductions or ["mean"]))
    return options
