"""Generated inputs (conformance/cases/generate.py): the generators, their specs in case files, the
errors they give, the vectorized rounding, and that the values do not depend on the process."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.cases import generate
from conformance.cases.generate import Spec, freeze, materialize, round_array
from conformance.cases.loading import CaseError, load_file
from conformance.cases.problem import make_problem
from reference.formats import DTYPES, get_format, round_to_float
from tests.conftest import ROOT, write


def spec(**mapping: object) -> Spec:
    return freeze(mapping)


def arrays(input: object, target: object = None, weight: object = None,
           ignore_index: int = -100) -> generate.Materialized:
    return materialize(input, target, weight, ignore_index)


# --- the generators ---------------------------------------------------------------------------


def test_normal_and_uniform_follow_scale_and_offset() -> None:
    normal = arrays(spec(generate="normal", shape=[200, 50], seed=1, scale=3.0, offset=-2.0)).input
    assert normal.shape == (200, 50) and normal.dtype == np.float64
    assert abs(normal.mean() + 2.0) < 0.1 and abs(normal.std() - 3.0) < 0.1
    uniform = arrays(spec(generate="uniform", shape=[100, 100], seed=1, scale=0.5,
                          offset=1.0)).input
    assert uniform.min() >= 0.5 and uniform.max() < 1.5
    constant = arrays(spec(generate="uniform", shape=[3, 4], seed=1, scale=0.0, offset=2.5)).input
    assert (constant == 2.5).all()


def test_values_depend_on_the_seed_only() -> None:
    a = arrays(spec(generate="normal", shape=[4, 8], seed=5)).input
    b = arrays(spec(generate="normal", shape=[4, 8], seed=5)).input
    c = arrays(spec(generate="normal", shape=[4, 8], seed=6)).input
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_generated_arrays_are_read_only() -> None:
    values = arrays(spec(generate="normal", shape=[2, 3], seed=1),
                    spec(generate="classes", seed=2))
    with pytest.raises(ValueError):
        values.input[0, 0] = 1.0
    with pytest.raises(ValueError):
        values.target[0] = 1


def test_dominant_class_exceeds_its_row_by_the_margin() -> None:
    x = arrays(spec(generate="normal", shape=[6, 9], seed=3,
                    dominant={"class": 4, "margin": 7.5})).input
    others = np.delete(x, 4, axis=1)
    assert np.array_equal(x[:, 4], others.max(axis=1) + 7.5)


def test_dominant_target_follows_each_rows_target_in_k_dim_layout() -> None:
    values = arrays(spec(generate="normal", shape=[3, 5, 4], seed=3,
                         dominant={"class": "target", "margin": 10.0}),
                    spec(generate="classes", seed=4, ignore_fraction=0.25))
    x, t = values.input, values.target
    assert t.shape == (3, 4) and (t == -100).sum() == 3
    for n in range(3):
        for d in range(4):
            row = x[n, :, d]
            if t[n, d] == -100:
                assert row.max() < 5  # untouched normal values
            else:
                assert row[t[n, d]] == np.delete(row, t[n, d]).max() + 10.0


def test_masked_fraction_sets_classes_to_minus_inf_but_never_the_dominant_one() -> None:
    x = arrays(spec(generate="normal", shape=[5, 10], seed=8, masked_fraction=0.3,
                    dominant={"class": 2, "margin": 1.0})).input
    assert (np.isneginf(x).sum(axis=1) == 3).all()
    assert np.isfinite(x[:, 2]).all()
    everything = arrays(spec(generate="normal", shape=[2, 7], seed=8, masked_fraction=1.0,
                             dominant={"class": 5, "margin": 1.0})).input
    assert (np.isfinite(everything).sum(axis=1) == 1).all() and np.isfinite(everything[:, 5]).all()


def test_classes_ignore_an_exact_fraction_and_respect_choices() -> None:
    t = arrays(spec(generate="normal", shape=[40, 6], seed=1),
               spec(generate="classes", seed=2, ignore_fraction=0.25), ignore_index=-1).target
    assert t.dtype == np.int64 and t.shape == (40,)
    assert (t == -1).sum() == 10 and ((t >= 0) & (t < 6) | (t == -1)).all()
    chosen = arrays(spec(generate="normal", shape=[30, 6], seed=1),
                    spec(generate="classes", seed=2, choices=[1, 4])).target
    assert set(chosen.tolist()) == {1, 4}


def test_unbatched_input_gets_a_scalar_target() -> None:
    t = arrays(spec(generate="normal", shape=[5], seed=1), spec(generate="classes", seed=2)).target
    assert t.shape == () and 0 <= int(t) < 5


def test_probability_generators_are_shaped_like_the_input_and_sum_to_total() -> None:
    x = spec(generate="normal", shape=[3, 4, 5], seed=1)
    dirichlet = arrays(x, spec(generate="dirichlet", seed=2, alpha=0.5, total=3.0)).target
    assert dirichlet.shape == (3, 4, 5) and np.allclose(dirichlet.sum(axis=1), 3.0)
    onehot = arrays(x, spec(generate="onehot", seed=2)).target
    assert set(np.unique(onehot).tolist()) == {0.0, 1.0} and (onehot.sum(axis=1) == 1.0).all()
    noisy = arrays(x, spec(generate="onehot", seed=2, noise=0.1)).target
    assert np.allclose(noisy.sum(axis=1), 1.0) and (noisy.max(axis=1) > 0.9).all()


def test_weights_take_the_class_count_from_the_input() -> None:
    w = arrays(spec(generate="normal", shape=[2, 7], seed=1), None,
               spec(generate="uniform", seed=3, offset=1.0, scale=0.5)).weight
    assert w.shape == (7,) and (w >= 0.5).all() and (w < 1.5).all()


def test_an_empty_batch_has_shape_zero_by_c() -> None:
    values = arrays(spec(generate="normal", shape=[0, 4], seed=1), spec(generate="classes", seed=2))
    assert values.input.shape == (0, 4) and values.target.shape == (0,)
    prob = arrays(spec(generate="normal", shape=[0, 4], seed=1), spec(generate="dirichlet", seed=2))
    assert prob.target.shape == (0, 4)


def test_literal_values_pass_through_unchanged() -> None:
    literal = ((0.1, 0.2), (0.3, "inf"))
    values = arrays(literal, (0, 1), None)
    assert values.input is literal and values.target == (0, 1)


# --- specs in Case objects ------------------------------------------------------------------


def test_a_spec_is_hashable_picklable_and_reads_back_as_written() -> None:
    mapping = {"generate": "normal", "shape": [32, 131072], "seed": 7, "scale": 3.0,
               "dominant": {"class": "target", "margin": 20}}
    frozen = freeze(mapping)
    assert hash(frozen) == hash(freeze(dict(mapping)))
    assert pickle.loads(pickle.dumps(frozen)) == frozen
    assert frozen.to_dict() == mapping
    assert repr(frozen).startswith("{generate: normal, ")


def test_a_case_file_with_generated_values_loads_and_runs_through_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "gen.yaml", """\
cases:
  - id: gen
    source: test
    op: cross_entropy
    input: {generate: normal, shape: [4, 5, 3], seed: 1}
    target: {generate: classes, seed: 2, ignore_fraction: 0.5}
    weight: {generate: uniform, seed: 3, offset: 1.0, scale: 0.5}
""")
    case = load_file(path)[0]
    assert isinstance(case.input, Spec) and pickle.loads(pickle.dumps(case)) == case
    assert {"weight", "ignore_index", "k_dim"} <= set(case.options())
    problem = make_problem(case, "bfloat16")
    assert problem.input.shape == (4, 5, 3) and problem.target.shape == (4, 3)
    assert problem.weight is not None and problem.weight.shape == (5,)
    assert problem.reference().output.shape == ()


def test_generated_values_round_like_the_same_values_written_out(tmp_path: Path) -> None:
    """A generated case and the literal case holding its float64 values give the same Problem."""
    generated = {"generate": "normal", "shape": [3, 6], "seed": 11, "scale": 40.0}
    values = arrays(freeze(generated)).input
    path = write(tmp_path / "two.yaml", f"""\
cases:
  - id: generated
    source: test
    op: softmax
    input: {json.dumps(generated)}
  - id: literal
    source: test
    op: softmax
    input: {json.dumps(values.tolist())}
""")
    gen, lit = load_file(path)
    for dtype in DTYPES:
        assert np.array_equal(make_problem(gen, dtype).input, make_problem(lit, dtype).input)


@pytest.mark.parametrize(("text", "where", "words"), [
    ("input: {generate: normal, shape: [4, 5], seed: 1, scael: 2.0}", ":7: cases[0].input.scael",
     "did you mean 'scale'"),
    ("input: {generate: normel, shape: [4, 5], seed: 1}", ":7: cases[0].input.generate",
     "did you mean 'normal'"),
    ("input: {generate: normal, shape: [4, 5]}", ":7: cases[0].input", "'seed' is a required"),
    ("input: {generate: normal, shape: [4, 5], seed: 1}\n    target: {generate: classes, "
     "seed: 1, alpha: 0.5}", ":8: cases[0].target.alpha", "it takes: seed, ignore_fraction"),
    ("input: {generate: normal, shape: [4, 5], seed: 1}\n    target: {generate: classes, "
     "seed: 1, choices: [7]}", ":8: cases[0].target", "choice 7 is outside [0, 5)"),
    ("input: {generate: normal, shape: [4, 5], seed: 1}\n    target: [1, 2, 3]",
     ":8: cases[0].target", "expected (4,)"),
    ("input: {generate: normal, shape: [4, 5], seed: 1}\n    target: {generate: classes, "
     "seed: 1}\n    weight: {generate: uniform, seed: 2, shape: [5]}",
     ":9: cases[0].weight.shape", "unknown key 'shape'"),
    ("input: {generate: normal, shape: [4, 5], seed: 1, dominant: {class: 9, margin: 1}}\n"
     "    target: [0, 1, 2, 3]", ":7: cases[0].input", "dominant class 9 is outside"),
    ("input: {generate: normal, shape: [4, 5], seed: 1, dominant: {class: target, margin: 1}}\n"
     "    target: {generate: dirichlet, seed: 1}", ":7: cases[0].input", "needs class-index"),
    ("input: {generate: normal, shape: [4, 5], seed: 1}\n    target: {generate: dirichlet, "
     "seed: 1, alpha: 0}", ":8: cases[0].target.alpha", "alpha"),
])
def test_generator_mistakes_name_file_line_and_field(tmp_path: Path, text: str, where: str,
                                                     words: str) -> None:
    path = write(tmp_path / "bad.yaml",
                 f"# a comment\ncases:\n  - id: bad\n    source: test\n    op: cross_entropy\n"
                 f"    reduction: mean\n    {text}\n")
    with pytest.raises(CaseError) as raised:
        load_file(path)
    message = str(raised.value)
    assert f"{path}{where}" in message and words in message, message


def test_nll_loss_refuses_a_generated_probability_target(tmp_path: Path) -> None:
    path = write(tmp_path / "nll.yaml", """\
cases:
  - id: nll
    source: test
    op: nll_loss
    input: {generate: normal, shape: [4, 5], seed: 1}
    target: {generate: dirichlet, seed: 1}
""")
    with pytest.raises(CaseError, match=r"nll\.yaml:6: cases\[0\]\.target: nll_loss takes"):
        load_file(path)


def test_the_domain_check_agrees_with_the_oracle_on_literal_twins() -> None:
    """generate.check_domain mirrors reference.oracle.check_inputs (it exists so that a huge
    generated input is never converted to mpmath just to be validated)."""
    from reference.oracle import OracleDomainError, check_inputs

    x = spec(generate="normal", shape=[2, 3], seed=1)
    literal_x = arrays(x).input.tolist()
    for target, weight, smoothing, op in [
        ([0, 2], None, 0.0, "cross_entropy"), ([0, 3], None, 0.0, "cross_entropy"),
        ([0, -100], None, 0.0, "nll_loss"), ([0, 1, 2], None, 0.0, "cross_entropy"),
        ([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], None, 0.0, "cross_entropy"),
        ([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], None, 0.0, "nll_loss"),
        ([[0.5, 0.5], [1.0, 0.0]], None, 0.0, "cross_entropy"),
        ([0, 1], [1.0, 2.0], 0.0, "cross_entropy"), ([0, 1], [1.0, 2.0, 3.0], 1.5, "cross_entropy"),
        ([0, 1], None, 0.1, "nll_loss"), (None, None, 0.0, "cross_entropy"),
    ]:
        frozen_target = None if target is None else _tuples(target)
        mine = generate.check_domain(op, x, frozen_target, weight, -100, smoothing)
        try:
            check_inputs(op, literal_x, target=target, weight=weight, label_smoothing=smoothing)
            oracle = None
        except OracleDomainError as error:
            oracle = error.field
        assert (mine and mine[0]) == oracle, (target, weight, smoothing, op, mine)


def _tuples(value: object) -> object:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# --- rounding a float64 array to a dtype -----------------------------------------------------


def _edge_values(dtype: str) -> np.ndarray:
    fmt = get_format(dtype)
    top, tiny = fmt.max_finite, fmt.smallest_subnormal
    half_ulp_top = 2.0 ** (fmt.emax - fmt.precision)
    values = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e308, -1e308, top, -top,
              top + half_ulp_top, np.nextafter(top + half_ulp_top, 0), tiny, tiny / 2, tiny * 1.5,
              tiny * 2.5, np.nextafter(tiny / 2, 1), 2.0 ** fmt.emin,
              np.nextafter(2.0 ** fmt.emin, 0),
              1 + 2.0 ** -fmt.precision, 1 + 3 * 2.0 ** -fmt.precision, 65504.0, 65520.0, 1e-8]
    return np.array(values + [-v for v in values])


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_array_is_round_to_float_element_by_element(dtype: str) -> None:
    rng = np.random.default_rng(0)
    fmt = get_format(dtype)
    values = np.concatenate([
        _edge_values(dtype),
        rng.integers(0, 2**63, size=3000, dtype=np.int64).view(np.float64),  # any bit pattern
        rng.normal(size=3000) * 10.0 ** rng.integers(-45, 40, size=3000),
        # near ties: short significands at every exponent of the format, subnormals included
        (1.0 + rng.integers(0, 2**12, size=3000) * 2.0 ** -(fmt.precision + 4))
        * 2.0 ** rng.integers(fmt.emin - fmt.precision - 2, min(fmt.emax + 2, 1023), size=3000),
    ])
    mine = round_array(values, dtype)
    expected = np.array([round_to_float(float(v), dtype) for v in values])
    same = (mine.view(np.int64) == expected.view(np.int64)) | (np.isnan(mine) & np.isnan(expected))
    assert same.all(), values[~same][:5]


# --- the same values in every process -------------------------------------------------------

SPECS = {
    "normal": ({"generate": "normal", "shape": [8, 1000], "seed": 7, "scale": 3.0,
                "dominant": {"class": "target", "margin": 20.0}, "masked_fraction": 0.1},
               {"generate": "classes", "seed": 8, "ignore_fraction": 0.25}, None),
    "uniform": ({"generate": "uniform", "shape": [4, 9, 5], "seed": 9, "offset": 1.0},
                {"generate": "dirichlet", "seed": 10, "alpha": 0.3, "total": 2.0},
                {"generate": "normal", "seed": 11}),
    "onehot": ({"generate": "normal", "shape": [64, 33], "seed": 12},
               {"generate": "onehot", "seed": 13, "noise": 0.2},
               {"generate": "uniform", "seed": 14, "scale": 0.5, "offset": 1.0}),
}

# Fingerprints of the float64 values with numpy 2.4.6 (constraints.txt).  numpy does not promise
# that Generator streams stay the same across releases; if one changes, this test says so, and
# results from different numpy versions no longer describe the same inputs.
GOLDEN = {
    "normal": ("9b2b840673517571", "db1371ce7a54058f", None),
    "uniform": ("562e3b1f27ff9dcd", "ffa69ed48d0e1e73", "2c60f09969cc2f05"),
    "onehot": ("38ee4bccc36bab69", "a6de1bf5cff77031", "28f19f5d40ac8a88"),
}


def fingerprints() -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for name, (x, t, w) in SPECS.items():
        values = materialize(freeze(x), freeze(t), None if w is None else freeze(w), -100)
        out[name] = [None if a is None else generate.fingerprint(a)
                     for a in (values.input, values.target, values.weight)]
    return out


def test_generated_values_are_identical_in_another_process() -> None:
    code = ("import json, tests.test_generate as t; print(json.dumps(t.fingerprints()))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert json.loads(result.stdout) == fingerprints()


def test_generated_values_match_the_pinned_fingerprints() -> None:
    if np.__version__ != "2.4.6":
        pytest.skip(f"fingerprints pinned for numpy 2.4.6 (constraints.txt), this is "
                    f"{np.__version__}")
    assert {k: tuple(v) for k, v in fingerprints().items()} == GOLDEN
