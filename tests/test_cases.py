"""Case files: the format users write against, and errors that name file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cases.loading import CaseError, load_cases, load_file
from conformance.cases.problem import make_problem
from tests.conftest import ROOT, write

GOOD = """\
defaults:
  dtypes: [float32, float64]
cases:
  - id: first
    source: a test
    op: cross_entropy
    input: [[1.0, 2.0, 3.0]]
    target: [2]
  - id: second
    source: a test
    op: softmax
    input: [1.0, inf, -inf, nan, .inf]
    dtypes: [float16]
"""


def test_a_valid_file_loads_with_defaults_merged(tmp_path: Path) -> None:
    first, second = load_file(write(tmp_path / "good.yaml", GOOD))
    assert first.dtypes == ("float32", "float64")
    assert first.line == 4 and first.group == "good"
    assert first.reduction == "mean" and first.ignore_index == -100 and first.grad
    assert second.dtypes == ("float16",)
    assert second.input[1] == "inf" and second.input[4] == float("inf")


def test_exponent_literals_without_a_dot_are_numbers(tmp_path: Path) -> None:
    text = GOOD.replace("target: [2]", "target: [2]\n    documented_tolerance: 1e-3")
    assert load_file(write(tmp_path / "c.yaml", text))[0].documented_tolerance == 1e-3


@pytest.mark.parametrize(
    ("change", "line", "field", "words"),
    [
        (("op: softmax", "op: sofmax"), 11, "cases[1].op", "'sofmax' is not one of"),
        (("target: [2]", "target: [2]\n    colour: red"), 9, "cases[0].colour", "allowed keys"),
        (("target: [2]", "target: [2]\n    reducton: sum"), 9, "cases[0].reducton",
         "did you mean 'reduction'"),
        (("input: [[1.0, 2.0, 3.0]]", "input: [[1.0, 2.0], [3.0]]"), 7, "cases[0].input",
         "rectangular"),
        (("target: [2]", "target: [7]"), 8, "cases[0].target", "outside [0, 3)"),
        (("target: [2]", "target: [[0.5, 0.5]]"), 8, "cases[0].target", "expected the input shape"),
        (("target: [2]", "target: [2]\n    weight: [1.0]"), 9, "cases[0].weight",
         "1 entries for 3"),
        (("id: second", "id: first"), 9, "id", "duplicate id 'first'"),
        (("    source: a test\n    op: softmax", "    op: softmax"), 9, "cases[1].source",
         "required"),
        (("dtypes: [float16]", "dtypes: [float8]"), 13, "cases[1].dtypes[0]", "'float8'"),
        (("target: [2]", "target: [2]\n    grad: maybe"), 9, "cases[0].grad", "not of type"),
        (("target: [2]", "target: [2]\n    target: [1]"), 9, "cases[0].target", "duplicate key"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, change, line, field, words) -> None:
    path = write(tmp_path / "bad.yaml", GOOD.replace(*change))
    with pytest.raises(CaseError) as caught:
        load_cases([path])
    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), line, field), str(error)
    assert words in error.message
    assert str(error).startswith(f"{path}:{line}: {field}: ")


def test_invalid_inputs_may_be_declared_as_expected_errors(tmp_path: Path) -> None:
    text = GOOD.replace("target: [2]", "target: [7]\n    expect: error")
    assert load_file(write(tmp_path / "c.yaml", text))[0].expect == "error"


def test_yaml_tags_never_construct_objects(tmp_path: Path) -> None:
    text = GOOD.replace("source: a test", "source: !!python/object/apply:os.system ['true']", 1)
    with pytest.raises(CaseError, match="unsupported YAML node"):
        load_file(write(tmp_path / "c.yaml", text))


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(CaseError) as caught:
        load_file(write(tmp_path / "c.yaml", GOOD.replace("target: [2]", "target: [2")))
    assert caught.value.line is not None and "not valid YAML" in caught.value.message


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="no such file"):
        load_cases([tmp_path / "nowhere"])


def test_inputs_are_rounded_to_the_dtype_under_test(tmp_path: Path) -> None:
    case = load_file(write(tmp_path / "c.yaml", GOOD))[0]
    problem = make_problem(case, "float16")
    assert problem.input.dtype.name == "float64"
    # 0.1 is not a float16; its float16 neighbour is 0.0999755859375
    rounded = make_problem(case.__class__(**{**case.__dict__, "input": ((0.1, 1.0),)}), "float16")
    assert rounded.input[0, 0] == 0.0999755859375


def test_validate_command_reports_a_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", GOOD.replace("op: softmax", "op: sofmax"))
    done = subprocess.run([sys.executable, "-m", "conformance", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert f"{path}:11: cases[1].op:" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_of_a_folder_without_case_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a case file\n")
    done = subprocess.run([sys.executable, "-m", "conformance", "validate", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert f"no case files (*.yaml, *.yml) in {tmp_path}" in done.stderr


def test_the_shipped_seed_cases_are_valid() -> None:
    cases = load_cases([ROOT / "cases" / "seeds.yaml"])
    assert len(cases) >= 15
    assert all(case.source for case in cases)


# --- tolerances: finite and positive, or an error naming the field -------------------------


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("    tolerance: .nan\n", 9, "cases[0].tolerance"),
        ("    tolerance: .inf\n", 9, "cases[0].tolerance"),
        ("    tolerance: 1.0e999\n", 9, "cases[0].tolerance"),  # overflows to inf
        ("    tolerance: {k: .nan}\n", 9, "cases[0].tolerance.k"),
        ("    tolerance: {k: .inf, reason: wide}\n", 9, "cases[0].tolerance.k"),
        ("    tolerance: {scale: .nan}\n", 9, "cases[0].tolerance.scale"),
        ("    tolerance: {scale: .inf}\n", 9, "cases[0].tolerance.scale"),
        ("    tolerance:\n      k: {output: 2, grad: .inf}\n", 10, "cases[0].tolerance.k.grad"),
        ("    tolerance: {k: {output: .nan}}\n", 9, "cases[0].tolerance.k.output"),
        ("    documented: 1.0\n    documented_tolerance: .inf\n", 10,
         "cases[0].documented_tolerance"),
        ("    documented: 1.0\n    documented_tolerance: .nan\n", 10,
         "cases[0].documented_tolerance"),
        ("    documented: 1.0\n    documented_tolerance: 0\n", 10,
         "cases[0].documented_tolerance"),
    ],
)
def test_a_tolerance_must_be_finite_and_positive(tmp_path: Path, text: str, line: int,
                                                 field: str) -> None:
    path = write(tmp_path / "tol.yaml", GOOD.replace("target: [2]\n", "target: [2]\n" + text))
    with pytest.raises(CaseError) as caught:
        load_file(path)
    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), line, field), str(error)
    # 0 and negative numbers are the schema's (exclusiveMinimum); NaN and infinity the loader's
    assert ("must be a finite number > 0" in error.message
            or "less than or equal to the minimum of 0" in error.message), error.message
    done = subprocess.run([sys.executable, "-m", "conformance", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and f"{path}:{line}: {field}: " in done.stderr
    assert "Traceback" not in done.stderr


def test_a_tolerance_in_the_defaults_is_checked_at_its_own_line(tmp_path: Path) -> None:
    text = GOOD.replace("  dtypes: [float32, float64]\n",
                        "  dtypes: [float32, float64]\n  tolerance: {scale: .nan}\n")
    path = write(tmp_path / "tol.yaml", text)
    with pytest.raises(CaseError) as caught:
        load_file(path)
    assert (caught.value.line, caught.value.field) == (3, "defaults.tolerance.scale")


def test_finite_tolerances_still_load(tmp_path: Path) -> None:
    text = GOOD.replace("target: [2]\n", "target: [2]\n    tolerance: {k: {grad: 8}, scale: 2}\n"
                        "    documented: 1.0\n    documented_tolerance: 10\n")
    first = load_file(write(tmp_path / "tol.yaml", text))[0]
    assert first.documented_tolerance == 10
    assert first.tolerance == {"k": {"grad": 8}, "scale": 2}
