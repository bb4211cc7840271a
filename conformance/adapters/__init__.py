"""Framework adapters: one module per framework (``*_adapter``), loaded lazily by name, the
interface they implement (``base``), their shared glue (``common``), and the support matrix
built from their declarations (``support``).

May import: ``conformance.results`` (the environment's CPU name, results files for the support
matrix), ``conformance.cases`` and ``reference``; an adapter never imports another adapter.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from conformance.adapters.base import Adapter, Api, Device, Outcome
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
# The packages each built-in framework needs: ``installed`` looks for them without importing
# anything, so a run with no --framework runs every framework installed here.
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "jax": ("jax", "jaxlib", "optax"),
    "tensorflow": ("tensorflow", "keras"),
    "scipy": ("scipy",),
    "onnxruntime": ("onnxruntime", "onnx"),
    "mlx": ("mlx",),
    "keras-jax": ("keras", "jax", "jaxlib"),
    "keras-torch": ("keras", "torch"),
    "paddle": ("paddle",),
}


ADAPTERS_VARIABLE = "CONFORMANCE_ADAPTERS"


def frameworks() -> dict[str, tuple[str, str]]:
    """The built-in frameworks plus any named in ``$CONFORMANCE_ADAPTERS``.

    ``CONFORMANCE_ADAPTERS="mybackend=my_package.adapter:MyAdapter,other=..."`` plugs in an
    adapter from outside this package (a new hardware backend, a test stand-in); it is
    inherited by the worker processes of ``conformance run``.
    """
    extra: dict[str, tuple[str, str]] = {}
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
    """The frameworks of ``names`` (default: every known one) whose packages are importable
    here (``importlib.util.find_spec``, which imports nothing); a framework plugged in through
    ``$CONFORMANCE_ADAPTERS`` counts as installed, its adapter says otherwise when loaded."""
    return [name for name in (names if names is not None else list(frameworks()))
            if all(importlib.util.find_spec(package) is not None
                   for package in PACKAGES.get(name, ()))]


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
        raise AdapterUnavailable(f"{name} is not installed ({error})") from error
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
    "installed",
    "load_adapter",
]
