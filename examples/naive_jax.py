"""A naive cross-entropy in JAX: the log of a softmax written out by hand.

Audited like ``optax.softmax_cross_entropy_with_integer_labels`` (README, "Audit your own
implementation"):
    conformance run --cases cases/edge --impl examples.naive_jax:cross_entropy \
        --like optax.softmax_cross_entropy_with_integer_labels
"""

import jax.numpy as jnp


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """One loss per example, the class axis last (optax's default ``axis=-1``)."""
    exp = jnp.exp(logits)  # overflows to inf for logits above ~88 (float32)
    probabilities = exp / exp.sum(axis=-1, keepdims=True)
    picked = jnp.take_along_axis(probabilities, labels[..., None], axis=-1)[..., 0]
    return -jnp.log(picked)
