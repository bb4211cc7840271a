"""A user's own implementation audited in place of a public API: ``conformance run --impl
[NAME=]MODULE:FUNCTION --like API``.

``--like`` names an API of the support matrix (``conformance support``): an eager API whose
adapter declares the public function or class it calls (``Api.callee``; a compiled twin, or
glue that calls no public loss, has none; ONNX Runtime's graphs have none, and its adapter
says why: ``Adapter.no_stand_in``).  A name that several frameworks declare (Keras' APIs, on
each backend) is written ``FRAMEWORK:NAME`` (``keras-jax:keras.ops.softmax``).  The
implementation is then run through that API's own recipe (``Adapter.stand_in``), with the
user's function called wherever the API calls its public function: the same positional
arguments and keywords, the framework's tensors, on each of the framework's devices,
eagerly.  Keywords are passed the way a user writes them: one equal to the public function's
own default (``weight=None``, ``reduction="mean"``, ``label_smoothing=0.0``; an
``axis``/``dim`` naming the last axis where the default is ``-1``) is left out, which
changes nothing for the public function itself, so a function that takes fewer options still
runs the cases that do not need them.  For a class (``torch.nn.CrossEntropyLoss``) the
user's class is constructed and called as that one is, a keyword of the call at the public
class's default (``sample_weight=None``) left out too.

Verdicts.  ``NotImplementedError``, or a ``TypeError`` for an unexpected keyword that we
passed, raised by the call itself (Python's binding of the arguments, or the function naming
itself in its own frame), makes the job ``unsupported`` with the message: the function does
not offer that option.  Any other
exception is the function's verdict on the inputs, recorded as a framework's own errors are.

Records carry the API's ``framework``, ``api`` = NAME (default ``MODULE:FUNCTION``),
``api_kind`` = ``implementation`` and ``extra.like`` = the API mimicked.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.cases.problem import Problem

KIND = "implementation"
ID_PREFIX = "impl:"
# a NAME is one token of a job key (case|api|device|dtype) and of a pytest item id
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:+-]+$")


class ImplementationError(ValueError):
    """A bad ``--impl`` or ``--like``: the message says which and what was expected."""


@dataclass(frozen=True)
class Implementation:
    """One ``--impl`` resolved against its ``--like`` API."""

    name: str  # the records' api: NAME, or MODULE:FUNCTION
    target: str  # MODULE:FUNCTION
    like: str  # the API's name, as in the support matrix
    framework: str  # the API's framework
    like_id: str  # the API's id in its adapter

    @property
    def api_id(self) -> str:
        return ID_PREFIX + self.name

    def spec(self) -> str:
        """How it reads in a run's settings (the environment line)."""
        return f"{self.name}={self.target} like {self.like}"

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "target": self.target, "like": self.like,
                "framework": self.framework, "like_id": self.like_id}


@dataclass(frozen=True)
class ImplementationApi(Api):
    """The API an implementation runs as: ``like``'s op, options and recipe."""

    like: str = ""
    target: str = ""
    like_id: str = field(default="", compare=False)


def parse_spec(text: str) -> tuple[str, str]:
    """``[NAME=]MODULE:FUNCTION`` -> (name, ``MODULE:FUNCTION``)."""
    name, sep, target = text.partition("=")
    if not sep:
        name, target = "", text
    module, colon, function = target.strip().partition(":")
    if not (colon and module and function) or not all(
            part.isidentifier() for part in [*module.split("."), *function.split(".")]):
        raise ImplementationError(
            f"--impl {text!r}: expected [NAME=]MODULE:FUNCTION, e.g. "
            "mykernels:cross_entropy or fast=mykernels.loss:cross_entropy")
    target = f"{module}:{function}"
    name = name.strip() or target
    if not NAME_PATTERN.match(name):
        raise ImplementationError(f"--impl {text!r}: the name {name!r} may hold letters, "
                                  "digits and _ . : + - only")
    return name, target


def load_function(target: str) -> Callable[..., Any]:
    """The callable ``MODULE:FUNCTION`` names (``FUNCTION`` may be dotted: ``Class.method``),
    imported as ``python -m`` would (the current directory first)."""
    module_name, _, path = target.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ImplementationError(f"--impl {target}: module {module_name!r} cannot be "
                                  f"imported ({type(error).__name__}: {error})") from None
    except Exception as error:  # the user's module raised while importing
        raise ImplementationError(f"--impl {target}: importing {module_name!r} raised "
                                  f"{type(error).__name__}: {error}") from None
    for part in path.split("."):
        if not hasattr(value, part):
            raise ImplementationError(f"--impl {target}: {module_name} has no attribute "
                                      f"{path!r}")
        value = getattr(value, part)
    if not callable(value):
        raise ImplementationError(f"--impl {target}: {path} is a {type(value).__name__}, "
                                  "not a function or class")
    return value


def pair_likes(impls: list[str], likes: list[str]) -> list[tuple[str, str]]:
    """``--impl`` with ``--like``: one ``--like`` for all, or one per ``--impl`` in order."""
    if not impls:
        if likes:
            raise ImplementationError("--like needs an --impl: the implementation that is "
                                      "called like that API")
        return []
    if len(likes) == 1:
        return [(spec, likes[0]) for spec in impls]
    if len(likes) != len(impls):
        raise ImplementationError(f"{len(impls)} --impl and {len(likes)} --like: give one "
                                  "--like for every --impl, or one for all of them")
    return list(zip(impls, likes))


# --- the APIs an implementation may be like ---------------------------------------------------

@dataclass(frozen=True)
class LikeApi:
    framework: str
    id: str
    name: str
    callee: str
    eager: bool
    no_stand_in: str = ""  # the adapter's reason for naming no callee (Adapter.no_stand_in)


def declared_apis(frameworks: Iterable[str]) -> tuple[list[LikeApi], dict[str, str]]:
    """Every API of ``frameworks`` with its callee, and why a framework gave none.  The
    built-in adapters' modules declare ``APIS`` without importing their framework; a plugin
    adapter is loaded in a subprocess (``--declare``), as ``conformance support`` does."""
    from conformance.adapters import FRAMEWORKS
    from conformance.adapters import frameworks as known

    table = known()
    found: list[LikeApi] = []
    problems: dict[str, str] = {}
    for framework in frameworks:
        module_name, class_name = table[framework]
        declared = None
        why = ""
        if framework in FRAMEWORKS and FRAMEWORKS[framework] == (module_name, class_name):
            try:  # a module that imports its framework at once is declared in a subprocess
                module = importlib.import_module(module_name)
            except ImportError:
                module = None
            declared = getattr(module, "APIS", None)
            why = str(getattr(getattr(module, class_name, None), "no_stand_in", ""))
        if declared is not None:
            found += [LikeApi(framework, a.id, a.name, a.callee, _eager(a, declared), why)
                      for a in declared]
            continue
        reply = _declare_in_subprocess(framework)
        if "unavailable" in reply:
            problems[framework] = str(reply["unavailable"])
        found += [LikeApi(framework, str(a["id"]), str(a["name"]), str(a["callee"]),
                          bool(a["eager"]), str(reply.get("no_stand_in", "")))
                  for a in reply.get("apis", [])]
    return found, problems


def _eager(api: Api, apis: Iterable[Api]) -> bool:
    """Not a compiled twin (``W(NAME)`` of another API of the same options)."""
    return not any(api.name.endswith(f"({other.name})") and other.supports == api.supports
                   for other in apis if other is not api)


def _declare_in_subprocess(framework: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "conformance.adapters.implementation",
                           "--declare", framework], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"unavailable": f"crashed on import ({lines[-1] if lines else done.returncode})"}
    reply: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return reply


def _declare(framework: str) -> dict[str, Any]:
    from conformance.adapters import AdapterUnavailable, load_adapter

    try:
        adapter = load_adapter(framework)
    except AdapterUnavailable as error:
        return {"unavailable": str(error)}
    apis = adapter.apis()
    callees = adapter.stands_in()
    return {"apis": [{"id": a.id, "name": a.name, "callee": a.callee if callees else "",
                      "eager": _eager(a, apis)} for a in apis],
            "no_stand_in": adapter.no_stand_in}


def find_like(like: str, apis: Iterable[LikeApi], label: str) -> LikeApi | None:
    """The API ``like`` names: an API's name, or ``FRAMEWORK:NAME`` for the API of that name
    in one framework (Keras' APIs have the same names on each backend and on TensorFlow).
    None if there is none; ``ImplementationError`` (``label`` first) if several frameworks
    declare the name and more than one of those APIs could run an implementation."""
    apis = list(apis)
    framework, sep, name = like.partition(":")
    if sep and framework in {api.framework for api in apis}:
        found = [api for api in apis if api.framework == framework and api.name == name]
    else:
        found = [api for api in apis if api.name == like]
    usable = [api for api in found if api.eager and api.callee]
    if len(usable) == 1:
        return usable[0]
    if len(found) > 1:
        choices = " or ".join(repr(f"{api.framework}:{api.name}") for api in usable)
        raise ImplementationError(
            f"{label} is an API of several frameworks "
            f"({', '.join(api.framework for api in found)}): name one as FRAMEWORK:API "
            f"({choices}; FRAMEWORK as in the framework column of 'conformance support')")
    return found[0] if found else None


def resolve(pairs: list[tuple[str, str]], frameworks: Iterable[str]) -> list[Implementation]:
    """Each (``--impl``, ``--like``) checked and resolved, or ``ImplementationError``: the
    function must import and be callable, the API must exist, be eager and name a callee."""
    if not pairs:
        return []
    apis, problems = declared_apis(frameworks)
    by_name = {api.name: api for api in apis}
    resolved: list[Implementation] = []
    for spec, like in pairs:
        name, target = parse_spec(spec)
        api = find_like(like, apis, f"--like {like!r}")
        if api is None:
            close = difflib.get_close_matches(like, list(by_name), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            missing = "".join(f"; {f} gave none: {why}" for f, why in problems.items())
            raise ImplementationError(
                f"--like {like!r}: no such API in the support matrix (the API column of "
                f"'conformance support'){hint}{missing}")
        if not api.eager:
            raise ImplementationError(f"--like {like!r} is a compiled twin; --impl runs "
                                      "eagerly (compile your function yourself and give it "
                                      "with the eager API's name)")
        if not api.callee:
            raise ImplementationError(f"--like {like!r}: {no_callee(api)}")
        if name in by_name or any(r.name == name for r in resolved):
            raise ImplementationError(f"--impl {spec!r}: the name {name!r} is taken (an API "
                                      "or another --impl); give it another NAME=")
        load_function(target)
        resolved.append(Implementation(name, target, api.name, api.framework, api.id))
    return resolved


def no_callee(api: LikeApi) -> str:
    """Why ``api`` cannot run an implementation: its adapter's reason, or that it names no
    public function (glue only)."""
    return api.no_stand_in or (f"the {api.framework} adapter names no public function this "
                               "API calls that an implementation could stand in for")


# --- running one ------------------------------------------------------------------------------

@dataclass
class Refusal:
    """What the guard saw the function refuse, for ``WithImplementations.run``."""

    error_type: str = ""
    message: str = ""


def replacement_for(function: Callable[..., Any], refusal: Refusal
                    ) -> Callable[[Any], Callable[..., Any]]:
    """For ``Adapter.stand_in``: given the public object, the callable that calls
    ``function`` instead (see the module docstring for keywords and refusals)."""

    def replace_public(public: Any) -> Callable[..., Any]:
        constructs = inspect.isclass(public)
        calls = _defaults(public.__call__) if constructs else {}
        return _guarded(function, refusal, _defaults(public), constructs, calls)

    return replace_public


def _defaults(public: Any) -> dict[str, Any]:
    try:
        signature = inspect.signature(public)
    except (TypeError, ValueError):  # no signature to read: every keyword is passed
        return {}
    return {name: p.default for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty}


def _guarded(function: Callable[..., Any], refusal: Refusal, defaults: dict[str, Any],
             constructs: bool, calls: dict[str, Any] | None = None) -> Callable[..., Any]:
    """``function`` called with the keywords not at ``defaults``; for a class, the object it
    returns is called the same way, with the defaults ``calls`` of the public class's call
    (``sample_weight=None`` of a Keras loss)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        kept = {key: value for key, value in kwargs.items()
                if not _is_default(key, value, defaults, [*args, *kwargs.values()])}
        try:
            result = function(*args, **kept)
        except NotImplementedError as error:
            refusal.error_type, refusal.message = "NotImplementedError", str(error)
            raise
        except TypeError as error:
            if _unexpected_keyword(error, function, kept):
                refusal.error_type, refusal.message = "TypeError", str(error)
            raise
        if constructs and callable(result):  # a loss object: its call is the function's too
            return _guarded(result, refusal, calls or {}, False)
        return result

    return call


def _is_default(key: str, value: Any, defaults: dict[str, Any], arrays: list[Any]) -> bool:
    if key not in defaults:
        return False
    default = defaults[key]
    if value is None or default is None:
        return value is None and default is None
    plain = (str, int, float)
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(value, plain) and isinstance(default, plain) and type(value) is not str \
            and type(default) is not str:
        if value == default:
            return True
        # the logits': the arrays with the most axes (Keras passes an index target first)
        ndim = max((a.ndim for a in arrays if isinstance(getattr(a, "ndim", None), int)),
                   default=None)
        return key in ("axis", "dim") and default == -1 and ndim is not None and value == ndim - 1
    return isinstance(value, str) and isinstance(default, str) and value == default


_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']+)'")


def _unexpected_keyword(error: TypeError, function: Callable[..., Any],
                        passed: dict[str, Any]) -> bool:
    """The function refused a keyword we passed it: Python's binding of this very call failed
    (``_guarded``'s frame is the traceback's only one), or the function raised it itself,
    naming itself, as Python would.  A keyword of some inner call is a bug, not a refusal."""
    found = _UNEXPECTED.search(str(error))
    if found is None or found.group(1) not in passed:
        return False
    trace: TracebackType | None = error.__traceback__
    depth = 0
    while trace is not None:
        depth, trace = depth + 1, trace.tb_next
    names = {getattr(function, "__name__", ""), getattr(function, "__qualname__", "")} - {""}
    return depth == 1 or (depth == 2 and any(str(error).startswith(f"{n}(") for n in names))


class WithImplementations(Adapter):
    """``base`` with implementations added to its APIs (``apis_for``) and, when ``only`` is
    given, its own APIs cut to those ids (the APIs mimicked, for a run of implementations
    alone).  Each function is imported from its ``target``, or taken from ``functions`` (by
    name: ``conformance.audit``).  The results file's adapter line stays the base adapter's
    declaration."""

    def __init__(self, base: Adapter, implementations: Iterable[Implementation],
                 only: Iterable[str] | None = None,
                 functions: dict[str, Callable[..., Any]] | None = None) -> None:
        self.base = base
        self.name = base.name
        self._refusals: dict[str, Refusal] = {}
        own = {api.id: api for api in base.apis()}
        self._only = None if only is None else set(only)
        added: list[Api] = []
        for impl in implementations:
            if impl.framework != base.name:
                continue
            like = own.get(impl.like_id)
            if like is None:
                raise ImplementationError(f"--like {impl.like}: {base.name} has no such API")
            api = implementation_api(impl, like)
            refusal = self._refusals[api.id] = Refusal()
            function = (functions or {}).get(impl.name) or load_function(impl.target)
            base.stand_in(like, api, replacement_for(function, refusal))
            added.append(api)
        self.added = tuple(added)

    def version(self) -> str:
        return self.base.version()

    def apis(self) -> tuple[Api, ...]:
        own = self.base.apis()
        if self._only is not None:
            own = tuple(api for api in own if api.id in self._only)
        return own + self.added

    def devices(self) -> tuple[Device, ...]:
        return self.base.devices()

    def dtypes(self) -> tuple[str, ...]:
        return self.base.dtypes()

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        refusal = self._refusals.get(api.id)
        if refusal is None:
            return self.base.run(api, problem, device)
        refusal.error_type = refusal.message = ""
        outcome = self.base.run(api, problem, device)
        if outcome.status == "error" and refusal.error_type:
            return Outcome("unsupported", error_type=refusal.error_type,
                           message=refusal.message)
        return outcome


def implementation_api(impl: Implementation, like: Api) -> ImplementationApi:
    """The API an implementation runs as: ``like``'s op, options, reasons and semantics, and
    its ``no_grad`` (a recipe of a forward-only framework, SciPy's, gives no gradient)."""
    reasons = {option: f"called like {like.name}: {reason}"
               for option, reason in like.reasons.items()}
    return replace(ImplementationApi(impl.api_id, impl.name, like.op, like.supports),
                   kind=KIND, reasons=reasons, semantics=dict(like.semantics),
                   no_grad=like.no_grad, like=like.name, target=impl.target, like_id=like.id)


def like_of(api: Api) -> str:
    """The API an implementation mimics; "" for any other API."""
    return api.like if isinstance(api, ImplementationApi) else ""


def main(argv: list[str] | None = None) -> int:
    """``python -m conformance.adapters.implementation --declare NAME``: a framework's APIs and
    callees, as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m conformance.adapters.implementation")
    parser.add_argument("--declare", required=True, metavar="NAME")
    args = parser.parse_args(argv)
    print(json.dumps(_declare(args.declare)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
