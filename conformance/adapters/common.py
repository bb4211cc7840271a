"""Pieces the adapters share: the static settings of one call, the option sets APIs declare,
compiled twins of APIs, one-line error messages, exception chains and warnings given once.

Nothing here imports a framework.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from conformance.adapters.base import Adapter, Api, Device
from conformance.cases.options import NAMED_REDUCTIONS
from conformance.cases.problem import Problem

REDUCTIONS = frozenset({"reduction_none", "reduction_mean", "reduction_sum"})
# What a user-written NLL (pick the target's log-probability, weight it, mask the ignored
# rows, reduce) covers: everything but probability targets and smoothing.
NLL_OPTIONS = frozenset({"index_target", "weight", "ignore_index", "k_dim"}) | REDUCTIONS
# The same recipe with probability targets: labels scaled by the class weights (and smoothed).
PROBABILITY_OPTIONS = (frozenset({"probability_target", "weight", "label_smoothing", "k_dim"})
                       | REDUCTIONS)

UNREDUCED = "returns one loss per example, unreduced (see the composed variant for mean/sum)"
# Issue 20's opt-in options (conformance/cases/options.py), for the APIs that name them.
# An axis argument takes any class axis; a class-last API takes (N, d1, ..., dk, C) only.
AXES = frozenset({"class_axis", "k_dim_class_last"})
NAMED = frozenset(f"reduction_{name}" for name in NAMED_REDUCTIONS)
SAMPLE_WEIGHTS = frozenset({"sample_weight"}) | NAMED
NO_WHERE = ("has no where= argument; a -inf fill of the masked logits, the composed "
            "alternative, gives NaN on a row with no class left (0 / 0), where where= gives 0 "
            "and -inf: not run rather than blame the framework for our glue")


@dataclass(frozen=True)
class Settings:
    """The hashable, static part of one call: what a jitted / traced function specialises on.

    ``weighted`` and ``ignoring`` say whether the case uses class weights and has a target
    equal to ignore_index (``Case.options()``); composed recipes add that glue only then,
    as a user would.
    """

    axis: int
    reduction: str
    ignore_index: int
    label_smoothing: float
    classes: int
    weighted: bool
    ignoring: bool
    sample_weighted: bool = False  # issue 20: the case has per-example weights
    masked: bool = False  # issue 20: the case has a class mask (where)


def settings_for(problem: Problem) -> Settings:
    case = problem.case
    options = case.options()
    return Settings(
        axis=problem.class_axis, reduction=case.reduction, ignore_index=case.ignore_index,
        label_smoothing=float(case.label_smoothing), classes=problem.classes,
        weighted="weight" in options, ignoring="ignore_index" in options,
        sample_weighted="sample_weight" in options, masked="where" in options,
    )



def twin(api: Api, prefix: str, wrapper: str) -> Api:
    """The same API run through a compiler (``jax.jit``, ``tf.function``, ``torch.compile``):
    id ``{prefix}-{id}``, name ``{wrapper}({name})``, same kind and options."""
    return replace(api, id=f"{prefix}-{api.id}", name=f"{wrapper}({api.name})", callee="")


def one_line(message: str, limit: int = 600) -> str:
    """A framework's message on one line, without TensorFlow's graph tracebacks."""
    kept = []
    for line in message.splitlines():
        stripped = line.strip()
        if (not stripped or stripped.startswith(("File ", "Detected at node", "[[{{node"))
                or stripped in ("Graph execution error:",)
                or stripped.endswith("defined at (most recent call last):")):
            continue
        kept.append(stripped)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", " ".join(kept))
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it was raised from or while handling, each once."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """``message`` on stderr, the first time this process says it (a worker's stderr reaches
    the user's terminal): for the suite's own fallbacks, which no record shows."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def unwritable(directory: str) -> str | None:
    """Why no file can be written in ``directory`` (made if missing), or None if one can:
    a few kilobytes are written, synced and removed."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".conformance-probe-") as probe:
            probe.write(bytes(4096))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        return str(error)
    return None


class _Replaced:
    """A module (or class) seen with one attribute replaced: what a recipe written against
    ``torch.nn.functional.cross_entropy`` calls instead, with the real module untouched (so a
    user's function that calls the real one gets the real one)."""

    def __init__(self, real: Any, name: str, value: Any) -> None:
        self._real, self._name, self._value = real, name, value

    def __getattr__(self, attribute: str) -> Any:
        return self._value if attribute == self._name else getattr(self._real, attribute)


def stand_in_roots(roots: dict[str, Any], callee: str,
                   replacement: Callable[[Any], Callable[..., Any]]) -> dict[str, Any]:
    """``roots`` (top-level name -> module, e.g. ``{"torch": torch}``) with the object at the
    dotted path ``callee`` replaced by ``replacement(that object)``, for an adapter's recipes
    to be built on (``Adapter.stand_in``).  ``ValueError`` if the path names nothing there."""
    root, *path = callee.split(".")
    if root not in roots or not path:
        raise ValueError(f"{callee!r} is not a public function under {', '.join(roots)}")
    chain = [roots[root]]
    for name in path:
        try:
            chain.append(getattr(chain[-1], name))
        except AttributeError:
            raise ValueError(f"{callee!r}: {'.'.join([root, *path[:len(chain)]])} "
                             "does not exist") from None
    value: Any = replacement(chain[-1])
    for owner, name in zip(reversed(chain[:-1]), reversed(path)):
        value = _Replaced(owner, name, value)
    return {**roots, root: value}


class CpuAdapter(Adapter):
    """An adapter whose APIs and dtypes are fixed (module constants) and whose framework runs
    on the CPU only here (SciPy, ONNX Runtime's CPU provider, Keras): subclasses set
    ``declared_apis`` and ``declared_dtypes``."""

    declared_apis: tuple[Api, ...] = ()
    declared_dtypes: tuple[str, ...] = ()

    def apis(self) -> tuple[Api, ...]:
        return self.declared_apis

    def dtypes(self) -> tuple[str, ...]:
        return self.declared_dtypes

    def devices(self) -> tuple[Device, ...]:
        from conformance.results.environment import cpu_name

        return (Device("cpu", "cpu", cpu_name()),)
