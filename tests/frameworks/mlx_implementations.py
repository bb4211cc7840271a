"""Users' functions for tests/frameworks/test_implementation_mlx.py, imported by the run's
workers as ``tests.frameworks.mlx_implementations:NAME``."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn


def wrapped(logits: Any, targets: Any, **options: Any) -> Any:
    """A correct implementation: MLX's own, called with what it was given."""
    return nn.losses.cross_entropy(logits, targets, **options)


def wrapped_softmax(x: Any, **options: Any) -> Any:
    return mx.softmax(x, **options)


def naive(logits: Any, targets: Any, axis: int = -1, reduction: str = "none") -> Any:
    """-log(exp(x) / sum(exp(x)))[t], index targets: overflows on large logits; no
    label_smoothing or weights argument."""
    e = mx.exp(logits)
    probabilities = e / mx.sum(e, axis=axis, keepdims=True)
    picked = mx.take_along_axis(probabilities, mx.expand_dims(targets, axis), axis=axis)
    loss = -mx.log(mx.squeeze(picked, axis))
    return loss if reduction == "none" else getattr(mx, reduction)(loss)
