"""conformance repro on the real frameworks: for each kind of discrepancy a framework shows,
the emitted script runs in isolated mode with the suite made unimportable, prints the
record's actual value and exits 1 (the discrepancy persists).

Kinds per framework, from the shipped cases (a tight tolerance where a framework has no
numeric discrepancy of its own at the pinned version):

* torch: numeric (a case whose tolerance admits no error), special-value, behaviour (a value
  where an error is expected, and an error where a value is defined); torch's APIs declare no
  semantics of their own, so it has no semantic discrepancy;
* jax: numeric, special-value, behaviour; no semantic either;
* tensorflow: numeric, special-value, behaviour, semantic.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conformance.cases.loading import load_file
from conformance.cli import main
from conformance.judge.check import check_case
from conformance.results.environment import environment
from conformance.results.jsonl import ResultsWriter
from conformance.run.worker import job_key
from tests.conftest import ROOT, write

TIGHT = """\
cases:
  - id: tight-softmax
    source: test
    op: softmax
    input: [[0.3367, 0.1288, 0.2345, 0.2303, -1.1229]]
    dtypes: [float32]
    tolerance: {k: 1.0e-30, reason: "a bound of no width: any rounding error is a discrepancy"}
"""
# Run the script with the suite unimportable: -I (no script directory, no user site) and the
# suite's packages blocked, so an import of either fails.
ISOLATED = ("import runpy, sys; sys.modules.update(conformance=None, reference=None, tests=None);"
            " path = sys.argv[1]; sys.argv = [path]; runpy.run_path(path, run_name='__main__')")

# framework, case file (None: TIGHT), case, API id, dtype, quantity, the record's kind
SCENARIOS = [
    ("torch", None, "tight-softmax", "softmax", "float32", "output", "numeric"),
    ("torch", "edge/weights.yaml", "edge-weight-zero-total-mean", "cross_entropy", "float64",
     "grad", "special-value"),
    ("torch", "invalid/invalid_inputs.yaml", "invalid-label-smoothing-negative",
     "cross_entropy", "float32", "output", "behaviour"),
    ("torch", "invalid/accepted_inputs.yaml", "accepted-ignore-index-probability-target",
     "CrossEntropyLoss", "float32", "output", "behaviour"),
    ("jax", "edge/cancellation.yaml", "edge-tiny-loss-margin-20-none", "integer_labels",
     "float64", "output", "numeric"),
    ("jax", "edge/nan.yaml", "edge-nan-logit-ignored-row", "jit-nll-log_softmax", "float64",
     "grad", "special-value"),
    ("jax", "invalid/invalid_inputs.yaml", "invalid-target-negative", "nll-log_softmax",
     "float32", "output", "behaviour"),
    ("tensorflow", "semantics/grid.yaml", "grid-prob-noweight-ls0.1-mean-ncd",
     "CategoricalCrossentropy", "float32", "output", "numeric"),
    ("tensorflow", "edge/nan.yaml", "edge-nan-logit-softmax", "function-softmax", "float32",
     "output", "special-value"),
    ("tensorflow", "edge/degenerate.yaml", "edge-empty-batch-mean",
     "SparseCategoricalCrossentropy", "float64", "output", "behaviour"),
    ("tensorflow", "edge/degenerate.yaml", "edge-all-ignored-mean",
     "SparseCategoricalCrossentropy", "float64", "output", "semantic"),
]


def _python_value(value: object) -> object:
    """A record's value as the script prints it (JSON's "nan" strings as floats)."""
    if isinstance(value, list):
        return [_python_value(v) for v in value]
    if isinstance(value, str):
        return float(value)
    return value


@pytest.mark.parametrize(("framework", "case_file", "case_id", "api_id", "dtype", "quantity",
                          "kind"), SCENARIOS, ids=[f"{s[0]}-{s[6]}-{s[2]}" for s in SCENARIOS])
def test_the_reproducer_reproduces_the_record(tmp_path: Path, framework: str,
                                              case_file: str | None, case_id: str,
                                              api_id: str, dtype: str, quantity: str,
                                              kind: str) -> None:
    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[framework],
                        reason=f"{framework} is not installed in this environment")
    from conformance.adapters import load_adapter

    path = ROOT / "cases" / case_file if case_file else write(tmp_path / "tight.yaml", TIGHT)
    case = next(c for c in load_file(path) if c.id == case_id)
    adapter = load_adapter(framework)
    api = next(a for a in adapter.apis() if a.id == api_id)
    device = next(d for d in adapter.devices() if d.id == "cpu")
    records = check_case(case, adapter, api, device, dtype)
    job = job_key(case.id, api.id, device.id, dtype)
    records = [replace(r, job=job, job_records=len(records)) for r in records]
    record = next(r for r in records if r.quantity == quantity)
    assert (record.status in ("fail", "error"), record.kind) == (True, kind), record.message
    results = tmp_path / "results.jsonl"
    with ResultsWriter(results) as writer:
        writer.write_environment(environment())
        writer.write_many(records)
    script = tmp_path / "out" / "repro.py"
    assert main(["repro", str(results), "--case", case_id, "--framework", framework,
                 "--api", api_id, "--dtype", dtype, "--quantity", quantity,
                 "-o", str(script)]) == 0
    text = script.read_text()
    assert "import conformance" not in text and "from conformance" not in text
    assert "from reference" not in text
    run = subprocess.run([sys.executable, "-I", "-c", ISOLATED, str(script)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]  # the discrepancy persists
    lines = run.stdout.splitlines()
    if record.status == "error":  # raised where a value is defined: the script says so
        assert any(line.startswith("raised: ") for line in lines), run.stdout
        return
    printed = next(line for line in lines if line.startswith("framework: "))
    actual = _python_value(record.actual)
    shown = eval(printed.removeprefix("framework: "), {"nan": math.nan, "inf": math.inf})
    assert _same(shown, actual), (printed, record.actual)
    if record.reference is not None and kind != "behaviour":
        assert any(line.startswith("exact:") for line in lines)


def _same(a: object, b: object) -> bool:
    """Equal element by element, NaN equal to NaN."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
