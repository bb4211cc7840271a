"""The torch adapter and the oracle against PyTorch (CPU, and CUDA when present)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (tox -e torch installs it)")

from conformance.adapters import load_adapter  # noqa: E402
from conformance.cases.loading import load_cases  # noqa: E402
from conformance.judge.check import check_case  # noqa: E402
from reference.oracle import evaluate  # noqa: E402
from tests.conftest import ROOT, write  # noqa: E402
from tests.frameworks.api_cases import api_cases, check_every_api  # noqa: E402
from tests.test_oracle import naive_cross_entropy  # noqa: E402

F = torch.nn.functional


def random_configuration(rng: random.Random) -> dict:
    classes, rows = rng.randint(2, 7), rng.randint(1, 4)
    spatial = [rng.randint(1, 3) for _ in range(rng.choice([0, 0, 1, 2]))]
    shape = [rows, classes, *spatial]
    x = np.asarray([rng.gauss(0, 4) for _ in range(int(np.prod(shape)))]).reshape(shape)
    probabilities = rng.random() < 0.4
    if probabilities:
        target = np.asarray([rng.random() for _ in range(x.size)]).reshape(shape)
    else:
        target = np.asarray([rng.randrange(-1, classes) for _ in range(x.size // classes)])
        target = target.reshape([rows, *spatial])
    return {
        "x": x, "target": target, "probabilities": probabilities,
        "weight": [rng.uniform(0.2, 3) for _ in range(classes)] if rng.random() < 0.5 else None,
        "ignore_index": -1, "reduction": rng.choice(["none", "mean", "sum"]),
        "label_smoothing": rng.choice([0.0, 0.1, 0.7, 1.0]),
    }


@pytest.mark.parametrize("seed", range(30))
def test_oracle_agrees_with_torch_float64_on_random_configurations(seed: int) -> None:
    config = random_configuration(random.Random(seed))
    x = torch.tensor(config["x"], dtype=torch.float64, requires_grad=True)
    target = torch.tensor(config["target"],
                          dtype=torch.float64 if config["probabilities"] else torch.int64)
    weight = config["weight"] and torch.tensor(config["weight"], dtype=torch.float64)
    loss = F.cross_entropy(x, target, weight=weight, ignore_index=config["ignore_index"],
                           reduction=config["reduction"], label_smoothing=config["label_smoothing"])
    loss.backward(torch.ones_like(loss))
    oracle_target = config["target"].tolist() if config["probabilities"] else \
        np.asarray(config["target"].tolist(), dtype=object)
    result = evaluate("cross_entropy", config["x"].tolist(), target=oracle_target,
                      weight=config["weight"], ignore_index=config["ignore_index"],
                      reduction=config["reduction"], label_smoothing=config["label_smoothing"])
    expected = np.vectorize(float)(result.output)
    actual = loss.detach().numpy()
    if np.isnan(expected).all() and np.isnan(actual).all():
        return  # every target ignored under mean: NaN for both
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(x.grad.numpy(), np.vectorize(float)(result.grad),
                               rtol=1e-11, atol=1e-13)


ISSUE_20_APIS = ("softmax", "log_softmax", "cross_entropy-weighted")


@pytest.mark.parametrize("api_id", ISSUE_20_APIS)
def test_class_axis_and_sample_weight_apis_match_the_oracle(api_id: str, tmp_path: Path) -> None:
    """softmax and log_softmax take any class axis (dim); the composed cross_entropy variant
    moves the class axis to 1 and weighs the examples, for the cases that need it only."""
    adapter = load_adapter("torch")
    api = next(a for a in adapter.apis() if a.id == api_id)
    check_every_api(adapter, api_cases(tmp_path), apis=(api,))


def test_every_seed_case_passes_on_torch_in_float32_and_float64() -> None:
    adapter = load_adapter("torch")
    cpu = adapter.devices()[0]
    records = []
    for case in load_cases([ROOT / "cases" / "seeds.yaml"]):
        # the issue-20 variant runs only cases with a class axis or sample weights (none here)
        for api in (a for a in adapter.apis_for(case.op) if not a.only_for):
            for dtype in ("float32", "float64"):
                records += check_case(case, adapter, api, cpu, dtype)
    statuses = {r.status for r in records}
    assert statuses <= {"pass", "unsupported"}, [r for r in records if r.status not in statuses]
    assert sum(r.quantity == "grad" and r.status == "pass" for r in records) >= 40
    eager = {r.message for r in records if r.status == "unsupported" and not _compiled(r.api)}
    assert eager == {"nll_loss takes class-index targets only"}
    compiled = {r.message for r in records if r.status == "unsupported" and _compiled(r.api)}
    if compiled:  # only where torch.compile cannot build at all (no working C++ compiler)
        assert not _torch_compile_works(), compiled
        assert all(COMPILE_FAILED.match(message) for message in compiled), compiled


# What the adapter reports when TorchInductor cannot build (check.py prefixes the error type)
COMPILE_FAILED = re.compile(r"\w+: torch\.compile failed: \S")


def _compiled(api_name: str) -> bool:
    return api_name.startswith("torch.compile(")


def _torch_compile_works() -> bool:
    """Whether torch.compile builds a trivial function here (on CPU it needs a C++ compiler)."""
    try:
        torch.compile(lambda x: x * 2)(torch.ones(3))
    except Exception:
        return False
    return True


def test_composed_api_is_named_and_marked_as_composed() -> None:
    adapter = load_adapter("torch")
    composed = [api for api in adapter.apis() if api.kind == "composed"]
    names = [api.name for api in composed if api.op == "cross_entropy"]
    assert "torch.nn.functional.nll_loss(log_softmax(x))" in names


def test_framework_errors_are_outcomes_not_exceptions(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", """\
cases:
  - id: out-of-range
    source: a test
    op: cross_entropy
    input: [[1.0, 2.0, 3.0]]
    target: [7]
    expect: error
    dtypes: [float32]
""")
    adapter = load_adapter("torch")
    (case,) = load_cases([path])
    for api in adapter.apis_for("cross_entropy"):
        if api.only_for:  # a variant for cases with a class axis or sample weights only
            assert "runs only cases with" in (api.unsupported_reason(case.options()) or "")
            continue
        (record,) = check_case(case, adapter, api, adapter.devices()[0], "float32")
        assert record.status == "pass", record
        assert "IndexError" in record.message or "out of bounds" in record.message


OUTSIDE_FILE = """\
# written the way a user outside the project would, from the README's format
defaults:
  dtypes: [float64, float32]
cases:
  - id: user-weighted-ignore-smoothing
    source: user
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 1.0]]
    target: [3, 9, 1]
    weight: [0.5, 1.0, 2.0, 4.0]
    ignore_index: 9
    label_smoothing: 0.1
  - id: user-probabilities-sum
    source: user
    op: cross_entropy
    input: [[1.0, 2.0, -2.0], [0.0, 0.0, 5.0]]
    target: [[0.2, 0.3, 0.5], [0.9, 0.1, 0.0]]
    weight: [1.0, 0.5, 2.0]
    reduction: sum
    label_smoothing: 0.25
  - id: user-k-dimensional
    source: user
    op: cross_entropy
    input: [[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]
    target: [[1, 2]]
    reduction: none
"""


def _flat_rows(x: list, target: list) -> tuple[list, list]:
    """(N, C, d) lists -> rows of C logits and their targets, row (n, d) = x[n][:][d]."""
    rows, targets = [], []
    for n, sample in enumerate(x):
        for d in range(len(sample[0])):
            rows.append([sample[c][d] for c in range(len(sample))])
            targets.append(target[n][d])
    return rows, targets


def test_a_users_file_runs_and_its_float64_records_agree_with_an_independent_computation(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "mine.yaml", OUTSIDE_FILE)
    out = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--cases", str(path), "--framework",
         "torch", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    results = [r for r in records if r["type"] == "result" and r["dtype"] == "float64"
               and r["quantity"] == "output"]
    assert {r["case_id"] for r in results} == {"user-weighted-ignore-smoothing",
                                               "user-probabilities-sum", "user-k-dimensional"}
    cases = {case.id: case for case in load_cases([path])}
    for record in results:
        if record["status"] == "unsupported":
            continue
        case = cases[record["case_id"]]
        x = json.loads(json.dumps(case.raw["input"]))
        target = case.raw["target"]
        if case.id == "user-k-dimensional":
            x, target = _flat_rows(x, target)
        expected = naive_cross_entropy(x, target, case.raw.get("weight"),
                                       case.raw.get("label_smoothing", 0.0),
                                       case.reduction, case.ignore_index)
        expected_values = [float(v) for v in (expected if isinstance(expected, list)
                                              else [expected])]
        with mpmath.workdps(30):
            assert np.ravel(record["reference"]).tolist() == pytest.approx(expected_values,
                                                                           rel=1e-15)
        assert np.ravel(record["actual"]).tolist() == pytest.approx(expected_values, rel=1e-13)
        assert record["status"] == "pass", record


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_devices_are_discovered_and_run() -> None:
    adapter = load_adapter("torch")
    gpus = [d for d in adapter.devices() if d.kind == "gpu"]
    assert gpus and all(d.name for d in gpus)
    cases = load_cases([ROOT / "cases" / "seeds.yaml"])
    (case,) = [c for c in cases if c.id == "seed-000-randn-1x5"]
    api = adapter.apis_for("cross_entropy")[0]
    records = check_case(case, adapter, api, gpus[0], "float32")
    assert {r.status for r in records} == {"pass"}


# --- linear_cross_entropy ---------------------------------------------------------------------

LINEAR_EAGER = tuple(api for api in load_adapter("torch").apis()
                     if api.op == "linear_cross_entropy" and not api.id.startswith("compile-"))


@pytest.mark.parametrize("api", LINEAR_EAGER, ids=lambda api: api.id)
def test_linear_cross_entropy_apis_match_the_oracle_or_are_unsupported(api,
                                                                       tmp_path: Path) -> None:
    from tests.frameworks.api_cases import api_cases, check_every_api

    check_every_api(load_adapter("torch"), api_cases(tmp_path), apis=(api,))


def test_a_chunked_configuration_that_falls_back_is_unsupported_with_torchs_warning(
        tmp_path: Path) -> None:
    """torch runs its reference path (with a warning) for what its chunked path lacks: the
    record says so, with the warning in extra, and never counts it as the chunked path."""
    from conformance.cases.problem import make_problem
    from tests.frameworks.api_cases import api_cases

    adapter = load_adapter("torch")
    api = next(a for a in adapter.apis() if a.id == "linear_cross_entropy-accurate")
    (case,) = [c for c in api_cases(tmp_path) if c.id == "linear-smoothed"]
    # the declaration already refuses it ...
    assert api.unsupported_reason(case.options()) is not None
    # ... and run anyway (as a new torch release might route it), the adapter notices
    outcome = adapter.run(api, make_problem(case, "float32"), adapter.devices()[0])
    assert outcome.status == "unsupported", outcome
    assert "reference path" in outcome.message
    assert any("options`` ignored" in w for w in outcome.extra["torch_warnings"])
    assert outcome.extra["path"] == "reference (fallback)"
