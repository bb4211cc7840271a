"""Users' functions for tests/frameworks/test_scipy.py's ``--impl`` tests, imported by the run's
workers as ``tests.frameworks.scipy_implementations:NAME``."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special


def wrapped(a: Any, **options: Any) -> Any:
    """A correct implementation: SciPy's own logsumexp, called with what it was given."""
    return scipy.special.logsumexp(a, **options)


def naive(a: Any, axis: Any = None) -> Any:
    """log(sum(exp(x))) without the max shift: overflows on large logits; no keepdims."""
    return np.log(np.sum(np.exp(a), axis=axis))


def wrapped_softmax(x: Any, **options: Any) -> Any:
    return scipy.special.softmax(x, **options)
