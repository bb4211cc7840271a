"""torch.compile twins of the torch adapter: the same mapping as eager PyTorch, compiled by
TorchInductor (C++ on CPU), checked against the oracle."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (tox -e torch installs it)")

from conformance.adapters import load_adapter  # noqa: E402
from conformance.adapters.torch_adapter import TorchAdapter  # noqa: E402
from conformance.cases.loading import load_file  # noqa: E402
from conformance.cases.problem import make_problem  # noqa: E402
from conformance.judge.check import check_case  # noqa: E402
from tests.conftest import write  # noqa: E402
from tests.frameworks.api_cases import api_cases, check_every_api  # noqa: E402

ADAPTER = load_adapter("torch")
COMPILED = tuple(api for api in ADAPTER.apis() if api.id.startswith("compile-"))
# the compiled linear_cross_entropy twins checked case by case, in float32 (each compiles
# forward and backward per shape: a chunked and the composed path, not all seven, keep the
# env fast; `conformance run --cases cases/linear --framework torch` runs every twin)
LINEAR_COMPILED = ("compile-linear_cross_entropy-accurate", "compile-cross_entropy-linear")


@pytest.fixture(scope="module")
def compiler_works() -> None:
    """torch.compile needs a working C++ compiler on CPU; without one the twins are
    unsupported (tested below) and there is nothing to compare."""
    try:
        torch.compile(lambda x: x * 2)(torch.ones(3))
    except Exception as error:
        pytest.skip(f"torch.compile cannot build on this machine: {type(error).__name__}")


def test_compiled_twins_are_named_and_declared_like_their_eager_api() -> None:
    eager = {api.id: api for api in ADAPTER.apis()}
    linear = {f"compile-{api.id}" for api in ADAPTER.apis()
              if api.op == "linear_cross_entropy" and not api.id.startswith("compile-")}
    assert len(linear) == 7  # options=None, four acc_policies, a batch_chunk_size, composed
    assert {api.id for api in COMPILED} == {
        "compile-softmax", "compile-log_softmax", "compile-cross_entropy", "compile-nll_loss",
        *linear}
    for api in COMPILED:
        base = eager[api.id.removeprefix("compile-")]
        assert api.name == f"torch.compile({base.name})"
        assert (api.op, api.kind, api.supports) == (base.op, base.kind, base.supports)


@pytest.mark.parametrize("api", [a for a in COMPILED if a.op != "linear_cross_entropy"],
                         ids=lambda api: api.id)
def test_compiled_api_matches_the_oracle(api, tmp_path: Path, compiler_works: None) -> None:
    check_every_api(ADAPTER, api_cases(tmp_path), apis=(api,))


@pytest.mark.parametrize("api", [a for a in COMPILED if a.id in LINEAR_COMPILED],
                         ids=lambda api: api.id)
def test_compiled_linear_api_matches_the_oracle(api, tmp_path: Path,
                                                compiler_works: None) -> None:
    check_every_api(ADAPTER, api_cases(tmp_path), apis=(api,), dtypes=("float32",))


INVALID = """\
defaults: {source: tests/frameworks/test_torch_compile.py, dtypes: [float32], expect: error}
cases:
  - {id: above-range, op: cross_entropy, input: [[1.0, 2.0, 3.0]], target: [3]}
  - {id: wrong-probability-shape, op: cross_entropy, input: [[1.0, 2.0, 3.0]],
     target: [[0.5, 0.5]]}
"""


def test_invalid_inputs_raise_in_compiled_code_too(tmp_path: Path, compiler_works: None) -> None:
    api = next(a for a in COMPILED if a.id == "compile-cross_entropy")
    for case in load_file(write(tmp_path / "invalid.yaml", INVALID)):
        (record,) = check_case(case, ADAPTER, api, ADAPTER.devices()[0], "float32")
        assert record.status == "pass", record
        assert record.message.startswith("raised as expected")


def test_a_compiler_that_cannot_build_makes_the_api_unsupported_with_torchs_reason(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "one.yaml", """\
cases:
  - {id: seven-classes, source: a test, op: softmax, input: [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]}
""")
    (case,) = load_file(path)
    adapter = TorchAdapter()  # a fresh adapter: nothing compiled yet in it
    api = next(a for a in adapter.apis() if a.id == "compile-softmax")
    broken = {"cpp.cxx": (None, str(tmp_path / "no-such-c++")), "fx_graph_cache": False}
    with torch._inductor.config.patch(broken):
        outcome = adapter.run(api, make_problem(case, "float32"), adapter.devices()[0])
    assert outcome.status == "unsupported", outcome
    assert outcome.message.startswith("torch.compile failed:")
    assert "compiler" in outcome.message and "\n" not in outcome.message
