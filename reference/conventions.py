"""Gradient conventions that fused APIs document in place of the exact gradient (issue 20).

``softmax_minus_target``: ``tf.nn.softmax_cross_entropy_with_logits`` (and TensorFlow's
``SoftmaxCrossEntropyWithLogits`` kernel) returns ``softmax(x) - labels`` as the gradient of a
row's loss whatever the labels sum to; the exact gradient is ``A_r softmax(x) - a`` with
``A_r = sum_c a_{r,c}`` (``reference/SPEC.md``, Gradients).  The convention, with the
reduction's divisor ``D`` (1 for none and sum):

    d/dx_{r,k} = (p_{r,k} - a_{r,k}) / D        for every row, a row that weighs nothing too

A case states it with ``documented_grad_convention`` so that a source's printed gradient
(TensorFlow's ``testSingleClass`` expects ``[[2], [1], [0], [0]]``) is checked against this
formula rather than against the exact gradient.  Evaluated in mpmath at 128 bits (every
operation correctly rounded; ``p`` from the exact shifts as in ``reference/definitions.py``):
far below any documented tolerance, which is what it is compared within.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

from reference import definitions
from reference.problem import Problem, divides, mpf_row, prepare, restore

CONVENTIONS = ("softmax_minus_target",)


def documented_gradient(convention: str, op: str, input: Any, **options: Any) -> np.ndarray:
    """The gradient under ``convention`` of ``op`` on these inputs (``reference.oracle
    .evaluate``'s keyword arguments), an array of mpf shaped like the input."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown gradient convention {convention!r}")
    problem = prepare(op, input, options.get("target"), options.get("weight"),
                      options.get("ignore_index", -100), options.get("reduction", "mean"),
                      options.get("label_smoothing", 0.0), axis=options.get("axis"),
                      sample_weight=options.get("sample_weight"), where=options.get("where"))
    if op != "cross_entropy":
        raise ValueError(f"{convention} is a convention of cross_entropy, not of {op}")
    with mpmath.workprec(128):
        return _softmax_minus_target(problem)


def _softmax_minus_target(problem: Problem) -> np.ndarray:
    rows, classes = problem.logits.shape
    divisor = definitions.mean_divisor(problem) if divides(problem.reduction) else mpmath.mpf(1)
    grads = np.empty((rows, classes), dtype=object)
    for r in range(rows):
        log_probs = definitions.log_softmax_row(mpf_row(problem.logits, r))
        a = definitions.target_weights(problem, r)
        if log_probs is None:
            grads[r] = [definitions.NAN] * classes
            continue
        grads[r] = [definitions.divide(mpmath.exp(lp) - a.get(c, definitions.ZERO), divisor)
                    for c, lp in enumerate(log_probs)]
    return restore(grads, (*problem.batch_shape, classes), problem.class_axis)
