"""linear_cross_entropy case files: the schema, the generators, the errors, the cache key.

A linear case names the hidden states (``input``, (N, D) or (D,)), ``linear_weight`` (C, D)
and ``linear_bias`` (C,) or null; generated ones are drawn in float64 from their seeds and
rounded per dtype like every generated value; targets take the logits' shape (N, C).  Every
mistake is a ``CaseError`` naming file, line and field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conformance.cases import generate
from conformance.cases.generate import freeze, materialize_linear
from conformance.cases.loading import CaseError, load_file
from conformance.cases.problem import make_problem
from conformance.oracle.cache import entry_key
from tests.conftest import write

VALID = """\
defaults: {source: tests/test_linear_cases.py, op: linear_cross_entropy}
cases:
  - id: literal
    input: [[1.0, 2.0], [0.5, -1.0]]
    linear_weight: [[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]
    linear_bias: [1.0, 0.0, -1.0]
    target: [2, 0]
  - id: generated
    input: {generate: normal, shape: [6, 16], seed: 1}
    linear_weight: {generate: normal, shape: [300, 16], seed: 2, scale: 0.05}
    linear_bias: {generate: uniform, seed: 3, offset: 50.0}
    target: {generate: classes, seed: 4, ignore_fraction: 0.5}
    dtypes: [bfloat16]
  - id: unbatched-probabilities
    input: [1.0, 2.0]
    linear_weight: [[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]
    linear_bias: null
    target: [0.25, 0.25, 0.5]
    label_smoothing: 0.1
"""


def test_a_linear_case_file_loads_and_its_problems_have_the_layers_shapes(
        tmp_path: Path) -> None:
    literal, generated, unbatched = load_file(write(tmp_path / "linear.yaml", VALID))
    problem = make_problem(literal, "float32")
    assert problem.input.shape == (2, 2) and problem.linear_weight.shape == (3, 2)
    assert problem.linear_bias.tolist() == [1.0, 0.0, -1.0] and problem.classes == 3
    assert "index_target" in literal.options() and "reduction_mean" in literal.options()
    problem = make_problem(generated, "bfloat16")
    assert problem.input.shape == (6, 16) and problem.linear_weight.shape == (300, 16)
    assert problem.linear_bias.shape == (300,) and problem.target.shape == (6,)
    assert (problem.target == -100).sum() == 3  # half the rows, on the logits' shape
    # rounded to bfloat16 like every generated value
    assert np.array_equal(problem.linear_weight,
                          generate.round_array(np.asarray(
                              materialize_linear(generated.input, generated.linear_weight,
                                                 generated.linear_bias, generated.target, None,
                                                 -100).linear_weight), "bfloat16"))
    problem = make_problem(unbatched, "float64")
    assert problem.linear_bias is None and problem.target.shape == (3,)
    assert "probability_target" in unbatched.options()


# numpy 2.4.6 (constraints.txt): a numpy whose streams changed would say so here
GOLDEN = ["73c9f7dd7c313dec", "7149e268571491ab", "648583f282c3de07", "07ccc32a280c56ed"]


def test_generated_layers_are_pinned() -> None:
    if np.__version__ != "2.4.6":
        pytest.skip(f"fingerprints pinned for numpy 2.4.6, this is {np.__version__}")
    values = materialize_linear(
        freeze({"generate": "normal", "shape": [6, 16], "seed": 1}),
        freeze({"generate": "normal", "shape": [300, 16], "seed": 2, "scale": 0.05}),
        freeze({"generate": "uniform", "seed": 3, "offset": 50.0}),
        freeze({"generate": "classes", "seed": 4, "ignore_fraction": 0.5}), None, -100)
    assert [generate.fingerprint(a) for a in (values.input, values.linear_weight,
                                              values.linear_bias, values.target)] == GOLDEN


def test_the_cache_key_depends_on_the_linear_layer(tmp_path: Path) -> None:
    literal, *_ = load_file(write(tmp_path / "linear.yaml", VALID))
    other = load_file(write(tmp_path / "other.yaml", VALID.replace("[0.0, 2.0]]", "[0.0, 3.0]]",
                                                                  1)))[0]
    assert entry_key(literal, "float32") != entry_key(other, "float32")


CASE = """\
cases:
  - id: lce
    source: tests
    op: linear_cross_entropy
    input: [[1.0, 2.0], [0.5, -1.0]]
    linear_weight: [[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]
    linear_bias: [1.0, 0.0, -1.0]
    target: [2, 0]
"""


@pytest.mark.parametrize(("old", "new", "line", "field", "words"), [
    ("    linear_weight: [[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]\n", "", 2,
     "cases[0].linear_weight", "required for op linear_cross_entropy"),
    ("[[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]", "[[0.25, 0.5, 1.0], [1.0, -1.0, 0.0]]", 6,
     "cases[0].linear_weight", "columns for an input of 2 features"),
    ("[1.0, 0.0, -1.0]", "[1.0, 0.0]", 7, "cases[0].linear_bias", "shape (2,); expected (3,)"),
    ("target: [2, 0]", "target: [3, 0]", 8, "cases[0].target", "outside [0, 3)"),
    ("op: linear_cross_entropy", "op: cross_entropy", 6, "cases[0].linear_weight",
     "a field of op linear_cross_entropy only"),
    ("[[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]",
     "{generate: normal, shape: [3, 5], seed: 1}", 6, "cases[0].linear_weight",
     "columns for an input of 2 features"),
    ("[[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]", "{generate: normal, shape: [3], seed: 1}", 6,
     "cases[0].linear_weight.shape", "is too short"),
    ("[1.0, 0.0, -1.0]", "{generate: normal, seed: 1, shape: [3]}", 7,
     "cases[0].linear_bias.shape", "unknown key 'shape'"),
    ("input: [[1.0, 2.0], [0.5, -1.0]]",
     "input: {generate: normal, shape: [2, 2], seed: 1, dominant: {class: 0, margin: 5}}", 5,
     "cases[0].input", "linear_cross_entropy's input is hidden states"),
    ("[[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]", "[[0.25, 0.5], [1.0], [0.0, 2.0]]", 6,
     "cases[0].linear_weight", "rectangular"),
    ("[[0.25, 0.5], [1.0, -1.0], [0.0, 2.0]]", "[[0.25, 0.5], [1.0, inf], [0.0, 2.0]]", 6,
     "cases[0].linear_weight", "finite linear_weight"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, line: int,
                                         field: str, words: str) -> None:
    assert old in CASE
    path = write(tmp_path / "bad.yaml", CASE.replace(old, new))
    with pytest.raises(CaseError) as caught:
        load_file(path)
    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), line, field), str(error)
    assert words in error.message, error.message
