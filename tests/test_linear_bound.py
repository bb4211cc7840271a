"""The linear_cross_entropy bound (conformance/judge/compare.py) judges three evaluations.

Stand-ins written with numpy, each a way an implementation can compute the op:

* ``fused``: logits, softmax and gradients accumulated in float32 (the dtype's values cast
  up), results rounded once to the dtype: what a fused kernel does.  It must pass the fused
  bound, in float32 and in bfloat16, with a large common offset through the bias too.
* ``materialise``: the same, but every logit rounded to the dtype before the softmax (a
  composed linear + cross_entropy in bfloat16).  It passes the bound that allows that
  rounding, and fails the fused one where the offset makes the rounding large.
* ``lose_offset``: log-sum-exp and the target logit each rounded to the dtype before their
  difference, the offset of 1e4 carried by the bias lost in that subtraction.  It fails
  both bounds in float32: neither grows with the offset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conformance.cases.generate import round_array
from conformance.judge.compare import compare
from conformance.judge.linear import PairExpected
from reference.linear import evaluate_linear

pytest.importorskip("gmpy2", reason="the linear_cross_entropy oracle needs gmpy2 (MPFR)")

F32 = np.float32


def evaluation(x: np.ndarray, w: np.ndarray, b: np.ndarray, t: np.ndarray, dtype: str,
               materialise: bool = False, lose_offset: bool = False) -> dict[str, np.ndarray]:
    z = x.astype(F32) @ w.astype(F32).T + b.astype(F32)
    if materialise:
        z = round_array(z.astype(np.float64), dtype).astype(F32)
    top = z.max(axis=1, keepdims=True)
    e = np.exp(z - top)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(t))
    if lose_offset:
        lse = round_array((top[:, 0] + np.log(total[:, 0])).astype(np.float64), dtype)
        loss = (lse - round_array(z[rows, t].astype(np.float64), dtype)).astype(F32)
    else:
        loss = np.log(total[:, 0]) - (z - top)[rows, t]
    g = e / total
    g[rows, t] -= 1
    g /= F32(len(t))
    values = {"output": loss.mean(dtype=F32), "grad": g @ w.astype(F32),
              "grad_linear_weight": g.T @ x.astype(F32), "grad_linear_bias": g.sum(axis=0)}
    return {k: round_array(np.asarray(v, dtype=np.float64), dtype) for k, v in values.items()}


def layer(dtype: str, offset: float = 0.0, margin: float = 0.0, w_scale: float = 0.3,
          seed: int = 0) -> tuple[np.ndarray, ...]:
    """8 x 16 hidden states, 64 classes; class 3, every row's target, ``margin`` above the
    common ``offset`` of the bias."""
    rng = np.random.default_rng(seed)
    x = round_array(rng.standard_normal((8, 16)), dtype)
    w = round_array(rng.standard_normal((64, 16)) * w_scale, dtype)
    bias = rng.standard_normal(64) * 0.1 + offset
    bias[3] += margin
    return x, w, round_array(bias, dtype), np.full(8, 3)


def verdicts(inputs: tuple[np.ndarray, ...], dtype: str, **how: Any) -> dict[tuple[str, str],
                                                                                  bool]:
    x, w, b, t = inputs
    reference = evaluate_linear(x, linear_weight=w, linear_bias=b,
                                target=np.asarray(t, dtype=object), dtype=dtype)
    assert reference.certified
    got = evaluation(x, w, b, t, dtype, **how)
    out = {}
    for name, quantity in reference.quantities.items():
        for bound_name, bound in (("fused", quantity.bound),
                                  ("materialised", quantity.materialised_bound)):
            out[(name, bound_name)] = compare(PairExpected(quantity), got[name], dtype,
                                              bound).passed
    return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [{}, {"offset": 1e4, "margin": 12.0, "w_scale": 0.05}],
                         ids=["plain", "offset-1e4"])
def test_a_fused_float32_evaluation_passes_the_fused_bound(dtype: str,
                                                           shape: dict[str, float]) -> None:
    assert all(verdicts(layer(dtype, **shape), dtype).values())


def test_logits_rounded_to_bfloat16_are_judged_by_what_that_rounding_allows() -> None:
    inputs = layer("bfloat16", offset=1e4, margin=12.0)
    got = verdicts(inputs, "bfloat16", materialise=True)
    assert all(passed for (_, bound), passed in got.items() if bound == "materialised"), got
    assert not all(passed for (_, bound), passed in got.items() if bound == "fused"), got


def test_losing_the_offset_carried_by_the_bias_fails_both_bounds() -> None:
    offset = layer("float32", offset=1e4, margin=12.0, w_scale=0.05)
    got = verdicts(offset, "float32", lose_offset=True)
    assert not got[("output", "fused")] and not got[("output", "materialised")], got
    # the same evaluation without the offset loses nothing, and passes
    assert all(verdicts(layer("float32", margin=12.0, w_scale=0.05), "float32",
                        lose_offset=True).values())
