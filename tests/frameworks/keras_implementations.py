"""Users' functions for the keras-jax and keras-torch ``--impl`` tests, imported by the run's
workers as ``tests.frameworks.keras_implementations:NAME``.  Keras is imported inside: the
module is imported in the process that resolves ``--impl`` too, where importing Keras would
pick its backend."""

from __future__ import annotations

from typing import Any


class Sparse:
    """A correct implementation: Keras' own SparseCategoricalCrossentropy, constructed and
    called with what it was given."""

    def __init__(self, **options: Any) -> None:
        import keras

        self.loss = keras.losses.SparseCategoricalCrossentropy(**options)

    def __call__(self, y_true: Any, y_pred: Any, **options: Any) -> Any:
        return self.loss(y_true, y_pred, **options)


class SparseWithoutIgnore:
    """Correct, but without ignore_class (and called without sample_weight)."""

    def __init__(self, from_logits: bool = False, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", dtype: Any = None) -> None:
        import keras

        self.loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits, axis=axis, reduction=reduction, dtype=dtype)

    def __call__(self, y_true: Any, y_pred: Any) -> Any:
        return self.loss(y_true, y_pred)


def wrapped(target: Any, output: Any, **options: Any) -> Any:
    """A correct implementation: keras.ops.sparse_categorical_crossentropy itself."""
    from keras import ops

    return ops.sparse_categorical_crossentropy(target, output, **options)


def naive(target: Any, output: Any, from_logits: bool = False, axis: int = -1) -> Any:
    """-log(exp(x) / sum(exp(x)))[t], like keras.ops.sparse_categorical_crossentropy with the
    class axis last: overflows on large logits; no axis other than the last."""
    from keras import ops

    if not from_logits or axis != -1:
        raise NotImplementedError("logits with the class axis last only")
    e = ops.exp(output)
    probabilities = e / ops.sum(e, axis=-1, keepdims=True)
    picked = ops.take_along_axis(probabilities, ops.expand_dims(target, -1), axis=-1)
    return -ops.log(ops.squeeze(picked, -1))
