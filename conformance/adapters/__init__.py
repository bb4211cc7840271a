"""Framework adapters: one module per framework (``*_adapter``), loaded lazily by name (the
built-in ones, those installed packages register under the ``conformance.adapters`` entry
point, and ``$CONFORMANCE_ADAPTERS``), the interface they implement (``base``), their shared
glue (``common``), the support matrix built from their declarations (``support``), and a
user's function run in place of an API (``implementation``).

May import: ``conformance.results`` (the environment's CPU name, results files for the support
matrix), ``conformance.cases`` and ``reference``; an adapter never imports another adapter.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from importlib.metadata import entry_points

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.adapters.common import warn_once
from conformance.cases.options import OPTIONS

# framework name -> (module, class); the module imports the framework when instantiated.
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "torch": ("conformance.adapters.torch_adapter", "TorchAdapter"),
    "jax": ("conformance.adapters.jax_adapter", "JaxAdapter"),
    "tensorflow": ("conformance.adapters.tensorflow_adapter", "TensorFlowAdapter"),
    "scipy": ("conformance.adapters.scipy_adapter", "ScipyAdapter"),
    "onnxruntime": ("conformance.adapters.onnxruntime_adapter", "OnnxRuntimeAdapter"),
    "mlx": ("conformance.adapters.mlx_adapter", "MlxAdapter"),
    "keras-jax": ("conformance.adapters.keras_adapter", "KerasJaxAdapter"),
    "keras-torch": ("conformance.adapters.keras_adapter", "KerasTorchAdapter"),
    "paddle": ("conformance.adapters.paddle_adapter", "PaddleAdapter"),
}
# What a built-in framework's adapter imports (top-level modules), and the pip packages that
# give them; this project's extra of the same name installs them at the tested versions.
REQUIRED_MODULES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",), "jax": ("jax", "jaxlib", "optax"), "tensorflow": ("keras", "tensorflow"),
    "scipy": ("scipy",), "onnxruntime": ("onnxruntime", "onnx"), "mlx": ("mlx",),
    "keras-jax": ("keras", "jax", "jaxlib"), "keras-torch": ("keras", "torch"),
    "paddle": ("paddle",),
}
PACKAGES: dict[str, str] = {"torch": "torch", "jax": "jax, jaxlib and optax",
                            "tensorflow": "tensorflow-cpu", "scipy": "scipy",
                            "onnxruntime": "onnxruntime and onnx", "mlx": "mlx and mlx-cpu",
                            "keras-jax": "keras, jax and jaxlib", "keras-torch": "keras and torch",
                            "paddle": "paddlepaddle"}

ADAPTERS_VARIABLE = "CONFORMANCE_ADAPTERS"
# Installed packages register adapters under this entry-point group, as pytest plugins use
# ``pytest11``: in pyproject.toml, [project.entry-points."conformance.adapters"]
# mybackend = "my_package.adapter:MyAdapter"
ENTRY_POINT_GROUP = "conformance.adapters"


def install_hint(name: str) -> str:
    """How to install framework ``name``: its pip package, with the tested versions."""
    if name not in PACKAGES:
        return "install the package that provides it"
    return (f"install the pip package {PACKAGES[name]} at the tested version: "
            f"pip install -c constraints.txt -e '.[{name}]' (in this project's checkout)")


def not_installed(name: str) -> str | None:
    """Why framework ``name`` cannot be imported, found without importing it (its modules
    are looked up, not run), or None when they are all there.  An import can still fail
    later (a broken installation): ``load_adapter`` then says so."""
    known = frameworks()
    if name not in known:
        return f"unknown framework {name!r}; expected one of {', '.join(known)}"
    modules = REQUIRED_MODULES.get(name, (known[name][0].split(".")[0],))
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{name} is not installed (no module named {module!r}); {install_hint(name)}"
    return None


def frameworks() -> dict[str, tuple[str, str]]:
    """The built-in frameworks, then the adapters installed packages register under the
    entry-point group ``conformance.adapters`` (a name of a built-in one is not replaced),
    then any named in ``$CONFORMANCE_ADAPTERS`` (which wins: the user's explicit choice).

    ``CONFORMANCE_ADAPTERS="mybackend=my_package.adapter:MyAdapter,other=..."`` plugs in an
    adapter from outside this package (a new hardware backend, a test stand-in); it is
    inherited by the worker processes of ``conformance run``.
    """
    extra: dict[str, tuple[str, str]] = {
        name: target for name, target in _entry_point_adapters().items()
        if name not in FRAMEWORKS}
    for entry in filter(None, os.environ.get(ADAPTERS_VARIABLE, "").split(",")):
        name, sep, target = entry.partition("=")
        module, colon, cls = target.partition(":")
        if not (sep and colon and name.strip() and module and cls):
            raise AdapterUnavailable(
                f"${ADAPTERS_VARIABLE}: {entry!r} is not NAME=module:Class"
            )
        extra[name.strip()] = (module.strip(), cls.strip())
    return {**FRAMEWORKS, **extra}


def installed(names: list[str] | None = None) -> list[str]:
    """The frameworks of ``names`` (default: every known one) whose modules are all there
    (``not_installed``, which imports nothing), so a run with no --framework runs every
    framework installed here."""
    return [name for name in (names if names is not None else list(frameworks()))
            if not_installed(name) is None]


def _entry_point_adapters() -> dict[str, tuple[str, str]]:
    """name -> (module, class) of every ``conformance.adapters`` entry point installed."""
    found: dict[str, tuple[str, str]] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        module, colon, cls = point.value.partition(":")
        source = getattr(point.dist, "name", None) or "an installed package"
        if not (colon and module.strip() and cls.strip()) or " " in cls.strip():
            # one broken package must not stop every command: said once, left out
            warn_once(f"entry point {point.name!r} of {source} in group "
                      f"{ENTRY_POINT_GROUP!r}: {point.value!r} is not module:Class; ignored")
            continue
        found.setdefault(point.name, (module.strip(), cls.strip()))
    return found


class AdapterUnavailable(RuntimeError):
    """The framework is not installed or fails to import; the message says which."""


_loaded: dict[str, Adapter] = {}


def load_adapter(name: str) -> Adapter:
    """The adapter for ``name``, importing its framework once per process."""
    if name in _loaded:
        return _loaded[name]
    known = frameworks()
    if name not in known:
        raise AdapterUnavailable(
            f"unknown framework {name!r}; expected one of {', '.join(known)}"
        )
    module_name, class_name = known[name]
    try:
        adapter = getattr(importlib.import_module(module_name), class_name)()
    except ImportError as error:
        missing = getattr(error, "name", None)
        what = f"no module named {missing!r}" if missing else str(error)
        raise AdapterUnavailable(f"{name} is not installed ({what}); "
                                 f"{install_hint(name)}") from error
    _loaded[name] = adapter
    return adapter


__all__ = [
    "FRAMEWORKS",
    "OPTIONS",
    "Adapter",
    "AdapterUnavailable",
    "Api",
    "Device",
    "Outcome",
    "frameworks",
    "install_hint",
    "installed",
    "load_adapter",
    "not_installed",
]
