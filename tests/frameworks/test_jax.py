"""The JAX adapter: every API (eager and jax.jit, native and composed) against the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="JAX is not installed (tox -e jax installs it)")
pytest.importorskip("optax", reason="optax is not installed (tox -e jax installs it)")

from conformance.adapters import load_adapter  # noqa: E402
from conformance.cases.loading import load_cases, load_file  # noqa: E402
from conformance.cases.problem import make_problem  # noqa: E402
from conformance.judge.check import check_case  # noqa: E402
from tests.conftest import ROOT, write  # noqa: E402
from tests.frameworks.api_cases import api_cases, check_every_api  # noqa: E402

ADAPTER = load_adapter("jax")
EAGER = tuple(api for api in ADAPTER.apis() if not api.id.startswith("jit-"))
JITTED = tuple(api for api in ADAPTER.apis() if api.id.startswith("jit-"))


def test_every_api_has_a_jit_twin_with_the_same_declaration() -> None:
    assert len(EAGER) == len(JITTED) == 10
    for eager, jitted in zip(EAGER, JITTED, strict=True):
        assert jitted.name == f"jax.jit({eager.name})"
        assert (jitted.op, jitted.kind, jitted.supports) == (eager.op, eager.kind, eager.supports)


def test_the_issues_apis_are_declared_and_glue_is_named_composed() -> None:
    names = {api.name: api for api in EAGER}
    for native in ("jax.nn.softmax", "jax.nn.log_softmax", "optax.softmax_cross_entropy",
                   "optax.softmax_cross_entropy_with_integer_labels"):
        assert names[native].kind == "native"
    composed = [api for api in EAGER if api.kind == "composed"]
    assert composed and all("+" in api.name for api in composed)  # the glue is in the name
    assert any("jax.nn.log_softmax" in api.name and api.op == "cross_entropy" for api in composed)
    assert names["optax.softmax_cross_entropy"].unsupported_reason(["ignore_index"])


@pytest.mark.parametrize("api", EAGER, ids=lambda api: api.id)
def test_eager_api_matches_the_oracle_or_is_unsupported(api, tmp_path: Path) -> None:
    check_every_api(ADAPTER, api_cases(tmp_path), apis=(api,))


@pytest.mark.parametrize("api", JITTED, ids=lambda api: api.id)
def test_jitted_api_matches_the_oracle_or_is_unsupported(api, tmp_path: Path) -> None:
    check_every_api(ADAPTER, api_cases(tmp_path), apis=(api,))


def test_every_seed_case_passes_on_jax_in_float32_and_float64() -> None:
    """Each seed case passes (with its gradient) on at least one eager and one jitted API,
    and on every API that supports it."""
    cpu = ADAPTER.devices()[0]
    for case in load_cases([ROOT / "cases" / "seeds.yaml"]):
        for dtype in ("float32", "float64"):
            passed = set()
            for api in ADAPTER.apis_for(case.op):
                records = check_case(case, ADAPTER, api, cpu, dtype)
                statuses = {r.status for r in records}
                assert statuses in ({"pass"}, {"unsupported"}), (case.id, api.name, records)
                if statuses == {"pass"}:
                    assert [r.quantity for r in records] == (
                        ["output", "grad"] if case.grad else ["output"])
                    passed.add(api.id.startswith("jit-"))
            assert passed == {False, True}, (case.id, dtype)


def test_float64_runs_in_float64_and_leaves_the_global_x64_flag_alone(tmp_path: Path) -> None:
    before = jax.config.jax_enable_x64
    (case,) = [c for c in api_cases(tmp_path) if c.id == "index-mean"]
    api = next(a for a in EAGER if a.id == "nll-log_softmax")
    outcome = ADAPTER.run(api, make_problem(case, "float64"), ADAPTER.devices()[0])
    assert jax.config.jax_enable_x64 == before
    exact = float(make_problem(case, "float64").reference().output)
    # float32 arithmetic would be ~1e-8 off; float64 is within a few ulp of 1.
    assert outcome.status == "ok" and abs(float(outcome.output) - exact) < 1e-14


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_runs_or_is_unsupported_with_jaxs_message(dtype: str,
                                                                 tmp_path: Path) -> None:
    cases = [c for c in api_cases(tmp_path) if c.id in ("index-mean", "probability-mean",
                                                        "softmax-2x3")]
    cpu = ADAPTER.devices()[0]
    for case in cases:
        for api in ADAPTER.apis_for(case.op):
            if api.unsupported_reason(case.options()) is None:
                records = check_case(case, ADAPTER, api, cpu, dtype)
                assert {r.status for r in records} <= {"pass", "fail"}, records


INVALID = """\
defaults: {source: tests/frameworks/test_jax.py, dtypes: [float32], expect: error, reduction: none}
cases:
  - {id: above-range, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [3]}
  - {id: negative, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [-1]}
  - {id: wrong-probability-shape, op: cross_entropy, input: [[1.0, 2.0, 3.0]],
     target: [[0.5, 0.5]]}
"""


def test_invalid_inputs_give_records_of_jaxs_behaviour_not_exceptions(tmp_path: Path) -> None:
    """optax does not check labels: an index outside [0, C) is gathered with JAX's
    out-of-bounds rules (a value, not an error), which the record must show as such."""
    cpu = ADAPTER.devices()[0]
    seen = {}
    for case in load_file(write(tmp_path / "invalid.yaml", INVALID)):
        for api in ADAPTER.apis_for(case.op):
            (record,) = check_case(case, ADAPTER, api, cpu, "float32")
            if record.status == "unsupported":
                continue
            assert record.status in ("pass", "fail")
            if record.status == "fail":
                assert record.kind == "behaviour" and "returned a value" in record.message
            else:
                assert record.message.startswith("raised as expected")
            seen[(case.id, api.id)] = record.status
    # a probability target of the wrong shape cannot broadcast: JAX raises
    assert seen[("wrong-probability-shape", "softmax_cross_entropy")] == "pass"
    assert ("above-range", "integer_labels") in seen


def test_devices_are_discovered_cpu_first() -> None:
    devices = ADAPTER.devices()
    assert devices[0].id == "cpu" and devices[0].kind == "cpu" and devices[0].name
    gpus = [d for d in devices if d.kind == "gpu"]
    assert all(d.id.startswith("cuda:") and d.name for d in gpus)


@pytest.mark.skipif(not any(d.kind == "gpu" for d in ADAPTER.devices()),
                    reason="no GPU visible to JAX on this machine")
def test_gpu_devices_run_the_seed_cases() -> None:
    gpu = next(d for d in ADAPTER.devices() if d.kind == "gpu")
    (case,) = [c for c in load_cases([ROOT / "cases" / "seeds.yaml"])
               if c.id == "seed-003-batch-of-three"]
    for api in ADAPTER.apis_for(case.op):
        for record in check_case(case, ADAPTER, api, gpu, "float32"):
            assert record.status in ("pass", "unsupported"), record
            assert record.device == gpu.id and record.device_name == gpu.name


def test_outputs_are_float64_arrays_of_the_expected_shape(tmp_path: Path) -> None:
    (case,) = [c for c in api_cases(tmp_path) if c.id == "index-k-dim-none"]
    api = next(a for a in EAGER if a.id == "integer_labels")
    outcome = ADAPTER.run(api, make_problem(case, "float32"), ADAPTER.devices()[0])
    assert outcome.status == "ok"
    assert outcome.output.dtype == np.float64 and outcome.output.shape == (1, 2)
    assert outcome.grad is not None and outcome.grad.shape == (1, 3, 2)
