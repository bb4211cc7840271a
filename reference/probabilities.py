"""``categorical_crossentropy_probs``: Keras' cross-entropy of probabilities (from_logits=False),
row by row in mpmath, and the error bounds of its evaluation in a float format.

The definitions (``reference/SPEC.md``, "categorical_crossentropy_probs") follow Keras 3's
TensorFlow backend (keras/src/backend/tensorflow/nn.py), with ``[lo, hi]`` the clip
``[epsilon(), 1 - epsilon()]`` as the framework holds it in the dtype under test
(``reference.problem._keras_clip``):

* probability targets (``categorical_crossentropy``): renormalise, then clip:
  ``q_c = p_c / S`` with ``S = sum_j p_j``, ``z_c = min(max(q_c, lo), hi)``,
  ``l = -sum_c a_c log z_c``;
* index targets (``sparse_categorical_crossentropy``): clip, then renormalise (through
  ``sparse_softmax_cross_entropy_with_logits`` of ``log z``): ``z_c = min(max(p_c, lo), hi)``,
  ``Z = sum_j z_j``, ``l = sum_c a_c (log Z - log z_c)``.

Gradients with respect to ``p`` (the clip passes the gradient where ``lo <= v <= hi``, as
``tf.clip_by_value`` does, and stops it outside): categorical
``g_k = -[k in] a_k / p_k + (sum_{c in} a_c) / S``; sparse ``g_k = [k in] (A / Z - a_k / p_k)``
with ``A = sum_c a_c``.  A row with ``S = 0`` (categorical) is undefined: NaN.

Precision: every operation is correctly rounded at the working precision (mpmath); the clip is
an exact comparison and selection, and continuous, so the loss depends continuously (Lipschitz,
as log on ``[lo, hi]``) on the rounded ``q_c``.  ``lo > 0`` keeps every logarithm away from 0;
the terms of ``l`` are all ``>= 0`` for non-negative ``a`` (``-log z_c >= -log hi >= 0``), so the
sum does not cancel.  The result is accepted by Ziv's strategy (``reference/certify.py``): this
path gives no a-priori bound, and its gradient is discontinuous where a ``q_c`` equals ``lo`` or
``hi`` exactly (the convention above decides it exactly, on exact values).
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath
import numpy as np
from mpmath import mpf

from reference.definitions import NAN, ZERO


def _clip(value: mpf, lo: mpf, hi: mpf) -> tuple[mpf, bool]:
    """``min(max(value, lo), hi)`` and whether the gradient passes (``lo <= value <= hi``)."""
    if value < lo:
        return lo, False
    if value > hi:
        return hi, False
    return value, True


def row_loss(p: Sequence[mpf], a: Sequence[mpf], clip: tuple[mpf, mpf],
             index_target: bool) -> tuple[mpf, list[mpf]]:
    """The loss of one row and its gradient with respect to ``p`` (module docstring)."""
    lo, hi = clip
    classes = len(p)
    if index_target:
        clipped = [_clip(v, lo, hi) for v in p]
        total = mpmath.fsum(z for z, _ in clipped)
        log_total = mpmath.log(total)
        loss = mpmath.fsum(ac * (log_total - mpmath.log(z))
                           for ac, (z, _) in zip(a, clipped) if ac != 0)
        weight = mpmath.fsum(a)
        grad = [weight / total - ac / v if passes else ZERO
                for v, ac, (_, passes) in zip(p, a, clipped)]
        return loss, grad
    total = mpmath.fsum(p)
    if total == 0:
        return NAN, [NAN] * classes
    clipped = [_clip(v / total, lo, hi) for v in p]
    loss = mpmath.fsum(-ac * mpmath.log(z) for ac, (z, _) in zip(a, clipped) if ac != 0)
    kept = mpmath.fsum(ac for ac, (_, passes) in zip(a, clipped) if passes)
    grad = [(kept / total - ac / v if passes else kept / total)
            for v, ac, (_, passes) in zip(p, a, clipped)]
    return loss, grad


def row_bounds(p: np.ndarray, a: np.ndarray, clip: tuple[float, float], index_target: bool,
               u: float, eta: float) -> tuple[float, float, np.ndarray]:
    """For a max-free evaluation in a format of unit roundoff ``u`` (smallest subnormal
    ``eta``): ``sum_c |a_c| |log z_c|`` (the loss's size), a bound of the loss's error, and
    one of each gradient element's (before the reduction's 1 / D).

    First order in ``u``, doubled for the second-order terms: with ``c`` the depth of a sum
    of ``C`` terms, the normaliser (``S`` or ``Z``) carries ``c u`` relative error, each
    ``z_c`` (a quotient, clipped: the clip is monotone and 1-Lipschitz and ``z_c`` is within a
    factor ``1 / hi`` of the unclipped value) ``(c + 1) u``, each ``log z_c`` that plus
    ``u |log z_c|``, each product and the final sum ``(c + 1) u`` of the terms' sizes.  The
    gradient's two terms ``a_k / p_k`` and ``A / S`` carry ``(c + 4) u`` each.  Not a certified
    bound like ``reference/tolerance.py``'s: the tolerance policy's K multiplies it."""
    lo, hi = clip
    classes = len(p)
    depth = max((classes - 1).bit_length(), 1)
    total = float(np.sum(np.clip(p, lo, hi) if index_target else p))
    if total == 0 or not np.isfinite(total):
        return 0.0, 0.0, np.zeros(classes)
    z = np.clip(p, lo, hi) / total if index_target else np.clip(p / total, lo, hi)
    log_z = np.abs(np.log(z))
    size = float(np.sum(np.abs(a) * log_z))
    loss_bound = 2 * u * (float(np.sum(np.abs(a) * (depth + 2 + (depth + 3) * log_z)))
                          + (depth + 1) * size) + eta * (classes + 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        picked = np.where(p > 0, np.abs(a) / np.where(p > 0, p, 1), 0.0)
    spread = float(np.sum(np.abs(a))) / total
    grad_bound = 2 * u * (depth + 4) * (picked + spread) + eta * (classes + 2)
    return size, loss_bound, grad_bound
