"""The shipped case library (cases/): it loads, it is large and sourced enough, its generated
files and docs are up to date, its invalid cases are invalid, and its generated inputs are the
same numbers in every process and in every framework."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.adapters import AdapterUnavailable, load_adapter
from conformance.cases import catalog, generate
from conformance.cases.loading import Case, find_case_files, load_cases
from conformance.cases.problem import make_problem
from reference.oracle import OracleDomainError, check_inputs
from tests.conftest import ROOT

CASES = ROOT / "cases"
DOCS_TABLE = ROOT / "docs" / "cases.md"
URL = re.compile(r"https?://[^\s;,()]+")


@pytest.fixture(scope="module")
def library() -> list[Case]:
    return load_cases([CASES])


def generated(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.expect == "value"
            and any(isinstance(v, generate.Spec) for v in (c.input, c.target, c.weight))]


def test_the_library_has_at_least_150_valid_cases(library: list[Case]) -> None:
    assert len(library) >= 150
    result = subprocess.run([sys.executable, "-m", "conformance", "validate", "cases"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{len(library)} cases valid")


def test_every_case_has_a_source_and_says_what_it_tests(library: list[Case]) -> None:
    for case in library:
        assert case.source.strip(), case.id
        assert len(case.description.split()) >= 5, f"{case.id}: describe what it tests and why"


def test_every_group_of_the_library_is_present(library: list[Case]) -> None:
    groups = {c.group for c in library}
    assert set(catalog.GROUPS) <= groups, set(catalog.GROUPS) - groups
    for group in ("semantics", "edge", "half", "invalid"):
        assert sum(c.group == group for c in library) >= 10, group


def test_sources_cite_seed_documents_repository_files_or_links(library: list[Case]) -> None:
    for case in library:
        if case.group == "seeds":
            assert case.source.startswith("seeds/"), case.id
            continue
        links = URL.findall(case.source)
        files = re.findall(r"\b(reference/[\w./]+|conformance/[\w./]+)", case.source)
        assert links or files, f"{case.id}: cite a document, an issue or the SPEC"
        for file in files:
            assert (ROOT / file).exists(), f"{case.id}: {file} does not exist"
        for link in links:
            assert re.match(r"https://[\w.-]+\.[a-z]+/\S+", link), (case.id, link)


def test_expected_errors_are_outside_the_oracles_domain(library: list[Case]) -> None:
    """expect: error means the math has no value; everything else the oracle accepts (the
    loader checks that already)."""
    errors = [c for c in library if c.expect == "error"]
    assert len(errors) >= 10
    for case in errors:
        if any(isinstance(v, generate.Spec) for v in (case.input, case.target, case.weight)):
            assert generate.check_domain(case.op, case.input, case.target, case.weight,
                                         case.ignore_index, case.label_smoothing), case.id
            continue
        with pytest.raises(OracleDomainError):
            check_inputs(case.op, case.input, target=case.target, weight=case.weight,
                         ignore_index=case.ignore_index, reduction=case.reduction,
                         label_smoothing=case.label_smoothing)


def test_the_semantics_grid_is_up_to_date() -> None:
    script = runpy.run_path(str(CASES / "semantics" / "make_grid.py"))
    written = (CASES / "semantics" / "grid.yaml").read_text(encoding="utf-8")
    assert written == script["grid_text"](), "run: python cases/semantics/make_grid.py"


def test_the_docs_table_is_up_to_date(library: list[Case]) -> None:
    assert DOCS_TABLE.read_text(encoding="utf-8") == catalog.markdown(library, ROOT), \
        "run: conformance list --markdown > docs/cases.md (from the repository root)"


def test_the_large_group_can_be_left_out_of_a_run() -> None:
    def files(*options: str) -> list[str]:
        result = subprocess.run([sys.executable, "-m", "conformance", "list", "--files",
                                 *options], cwd=ROOT, capture_output=True, text=True, check=True)
        return result.stdout.split()

    everything = files()
    without = files("--exclude-group", "large")
    assert sorted(everything) == sorted(
        Path(f).relative_to(ROOT).as_posix() for f in find_case_files([CASES]))
    assert without and all(not f.startswith("cases/large/") for f in without)
    assert set(everything) - set(without) == set(files("--group", "large"))


# --- generated inputs: the same numbers everywhere ---------------------------------------------


def library_fingerprints() -> dict[str, str]:
    """Fingerprints of every array a framework is handed, for each generated case and dtype."""
    out = {}
    for case in generated(load_cases([CASES])):
        for dtype in case.dtypes:
            problem = make_problem(case, dtype)
            for name in ("input", "target", "weight"):
                array = getattr(problem, name)
                if array is not None:
                    out[f"{case.id}|{dtype}|{name}"] = generate.fingerprint(array)
    return out


def test_generated_inputs_are_identical_in_two_processes(library: list[Case]) -> None:
    code = "import json, tests.test_case_library as t; print(json.dumps(t.library_fingerprints()))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    theirs = json.loads(result.stdout)
    assert len(theirs) >= 3 * len(generated(library))  # input, target, ... per dtype
    assert theirs == library_fingerprints()


def _resolve(api_name: str) -> tuple[Any, str]:
    """``tf.nn.softmax`` -> (the ``tensorflow.nn`` object, ``"softmax"``)."""
    aliases = {"tf": "tensorflow"}
    head, *middle, attribute = api_name.split(".")
    owner: Any = importlib.import_module(aliases.get(head, head))
    for part in middle:
        owner = getattr(owner, part)
    return owner, attribute


@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow"])
def test_each_framework_is_handed_exactly_the_generated_inputs(
        framework: str, library: list[Case], monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter's native softmax is run on every generated input, through the adapter, with
    the framework's softmax replaced by a spy that keeps what it was given: in every dtype it
    is bit for bit the problem's input, so every framework (and the oracle) sees the same
    numbers."""
    pytest.importorskip({"tensorflow": "tensorflow"}.get(framework, framework),
                        reason=f"{framework} is not installed")
    try:
        adapter = load_adapter(framework)
    except AdapterUnavailable as error:
        pytest.skip(f"{framework} adapter unavailable: {error}")
    api = next(a for a in adapter.apis() if a.op == "softmax" and a.kind == "native"
               and a.id == "softmax")
    owner, attribute = _resolve(api.name)
    real = getattr(owner, attribute)
    seen: list[np.ndarray] = []

    def spy(x: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(_to_float64(x))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(owner, attribute, spy)
    device = next(d for d in adapter.devices() if d.kind == "cpu")
    checked, done = 0, set()
    for case in generated(library):
        if case.op == "linear_cross_entropy":
            continue  # hidden states, not logits: the linear APIs' own tests hand them over
        # the same input (a dominant class may follow the target, so the target stays)
        softmax_case = dataclasses.replace(case, op="softmax", grad=False)
        for dtype in case.dtypes:
            # Each distinct input once per dtype (the semantics grid shares one input per
            # shape); float64 and float32, whose casts from float64 values that are already
            # exact in them cannot go wrong in interesting ways, for the first inputs only
            # (jax compiles each new shape and dtype: a second or two per call).
            dominant = dict(case.input.get("dominant", ())) if isinstance(
                case.input, generate.Spec) else {}
            key = (case.input, case.target if dominant.get("class") == "target" else None,
                   dtype)
            if dtype not in adapter.dtypes() or key in done:
                continue
            if dtype in ("float64", "float32") and len(done) >= 12:
                continue
            done.add(key)
            problem = make_problem(softmax_case, dtype)
            seen.clear()
            outcome = adapter.run(api, problem, device)
            assert outcome.status == "ok", (case.id, dtype, outcome.message)
            assert seen, f"{api.name} was not called by the {framework} adapter"
            assert seen[0].shape == problem.input.shape, (case.id, dtype)
            assert np.array_equal(seen[0], problem.input, equal_nan=True), (case.id, dtype)
            checked += 1
    assert checked >= 50


def _to_float64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        return x.detach().to("cpu").double().numpy()
    if hasattr(x, "numpy") and not hasattr(x, "__array_namespace__"):  # tensorflow
        import tensorflow as tf

        return np.asarray(tf.cast(x, tf.float64).numpy())
    return np.asarray(x).astype(np.float64)  # jax
