"""``conformance run --impl`` on JAX: the README's naive log(softmax) example, eagerly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("jax", reason="JAX is not installed (tox -e jax installs it)")
pytest.importorskip("optax", reason="optax is not installed (tox -e jax installs it)")

from conformance import cli
from conformance.results.jsonl import read_results
from tests.conftest import ROOT, write

COMPOSED = ("optax.softmax_cross_entropy_with_integer_labels(x, t) + class weights, "
            "ignore mask, mean/sum")
CASES = """\
defaults: {op: cross_entropy, source: t, dtypes: [float32]}
cases:
  - {id: plain, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], target: [1, 2]}
  - {id: large, input: [[100.0, 0.0, -5.0]], target: [0]}
  - {id: per-row, input: [[1.0, 2.0, 0.5]], target: [1], reduction: none}
  - {id: k-dim, input: [[[1.0, 2.0], [0.5, 0.0]]], target: [[1, 0]], reduction: none}
"""


def test_the_naive_jax_example_overflows_where_optax_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "results.jsonl"
    assert cli.main(["run", "--cases", str(write(tmp_path / "c.yaml", CASES)), "--out",
                     str(out), "--exit-zero", "--impl", "examples.naive_jax:cross_entropy",
                     "--impl", "native=examples.naive_jax:cross_entropy",
                     "--like", COMPOSED,
                     "--like", "optax.softmax_cross_entropy_with_integer_labels"]) == 0
    got = {(r.case_id, r.api, r.quantity): r for r in read_results([out]).records
           if r.framework == "jax"}
    mine = "examples.naive_jax:cross_entropy"
    assert got[("plain", mine, "output")].status == "pass"
    assert got[("plain", mine, "grad")].status == "pass"
    large = got[("large", mine, "output")]
    assert (large.status, large.kind) == ("fail", "special-value")  # exp(100) is inf
    assert got[("large", COMPOSED, "output")].status == "pass"
    # like the unreduced optax loss: only the per-row case runs; the class axis not last
    # means an axis= keyword the function does not take
    assert got[("per-row", "native", "output")].status == "pass"
    assert got[("plain", "native", "output")].status == "unsupported"
    k_dim = got[("k-dim", "native", "output")]
    assert k_dim.status == "unsupported" and "unexpected keyword argument 'axis'" in k_dim.message
