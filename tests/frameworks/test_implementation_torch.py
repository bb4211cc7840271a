"""``conformance run --impl ... --like ...`` on PyTorch: users' functions in place of an API."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (tox -e torch installs it)")

from conformance import cli  # noqa: E402
from conformance.adapters import load_adapter  # noqa: E402
from conformance.adapters.base import Device  # noqa: E402
from conformance.results.jsonl import read_results  # noqa: E402
from conformance.results.records import Record  # noqa: E402
from conformance.run.worker import jobs  # noqa: E402
from tests.conftest import ROOT, write  # noqa: E402

HELPERS = "tests.frameworks.torch_implementations"
LIKE = "torch.nn.functional.cross_entropy"
CASES = """\
cases:
  - {id: plain, source: t, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
     target: [1, 2], dtypes: [float32]}
  - {id: smoothed, source: t, op: cross_entropy, input: [[1.0, 2.0, 0.5]], target: [0],
     label_smoothing: 0.1, dtypes: [float32]}
  - {id: weighted, source: t, op: cross_entropy, input: [[1.0, 2.0, 0.5]], target: [2],
     weight: [1.0, 2.0, 0.5], dtypes: [float32]}
"""


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers import the helpers as ``tests.frameworks...`` from the project root."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)


def run(tmp_path: Path, *arguments: str, cases: list[str] | None = None) -> list[Record]:
    out = tmp_path / "results.jsonl"
    if cases is None:
        cases = [str(write(tmp_path / "cases.yaml", CASES))]
    code = cli.main(["run", "--cases", *cases, "--out", str(out), "--overwrite", "--exit-zero",
                     *arguments])
    assert code == 0
    return read_results([out]).records


def by_api(records: list[Record]) -> dict[str, dict[tuple[str, str, str], Record]]:
    found: dict[str, dict[tuple[str, str, str], Record]] = {}
    for r in records:
        if r.framework == "torch":
            found.setdefault(r.api, {})[(r.case_id, r.dtype, r.quantity)] = r
    return found


def test_a_correct_wrapper_gets_the_builtin_verdicts_on_the_seed_and_edge_cases(
        tmp_path: Path) -> None:
    records = run(tmp_path, "--impl", f"{HELPERS}:wrapped", "--like", LIKE,
                  cases=[str(ROOT / "cases" / "seeds.yaml"), str(ROOT / "cases" / "edge")])
    apis = by_api(records)
    assert set(apis) == {LIKE, f"{HELPERS}:wrapped"}  # only the API mimicked runs beside it
    builtin, mine = apis[LIKE], apis[f"{HELPERS}:wrapped"]
    assert builtin.keys() == mine.keys() and len(mine) > 500
    for key, record in mine.items():
        theirs = builtin[key]
        assert (record.status, record.kind, record.max_ulp_error, record.actual) == \
            (theirs.status, theirs.kind, theirs.max_ulp_error, theirs.actual), key
        assert record.api_kind == "implementation" and record.extra == {"like": LIKE}
        assert record.framework == "torch" and record.device == "cpu"
    # not vacuous: torch fails some edge cases, and the wrapper with it
    assert {r.status for r in mine.values()} >= {"pass", "fail"}


@pytest.fixture(scope="module")
def several(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[tuple[str, str, str],
                                                                      Record]]:
    """One run of several implementations (one worker start for them all)."""
    tmp_path = tmp_path_factory.mktemp("several")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        records = run(tmp_path, "--impl", f"ns={HELPERS}:no_smoothing",
                      "--impl", f"nw={HELPERS}:refuses_weights", "--impl", f"bad={HELPERS}:raises",
                      "--impl", f"deep={HELPERS}:deep_type_error",
                      "--impl", f"off={HELPERS}:off_by_a_little", "--impl", f"cls={HELPERS}:Loss",
                      *("--like", LIKE) * 5, "--like", "torch.nn.CrossEntropyLoss")
    return by_api(records)


def test_a_missing_keyword_or_not_implemented_is_unsupported(several: Any) -> None:
    ns, nw = several["ns"], several["nw"]
    assert ns[("plain", "float32", "output")].status == "pass"
    smoothed = ns[("smoothed", "float32", "output")]
    assert smoothed.status == "unsupported"
    assert "unexpected keyword argument 'label_smoothing'" in smoothed.message
    assert ns[("weighted", "float32", "output")].status == "pass"  # weight= it takes
    assert nw[("weighted", "float32", "output")].status == "unsupported"
    assert nw[("weighted", "float32", "output")].message == \
        "NotImplementedError: no class weights in this kernel"
    assert nw[("smoothed", "float32", "grad")].status == "pass"


def test_any_other_exception_is_the_functions_verdict(several: Any) -> None:
    bad = several["bad"][("plain", "float32", "output")]
    assert (bad.status, bad.kind) == ("error", "behaviour")
    assert "ValueError: this kernel is broken" in bad.message
    deep = several["deep"][("plain", "float32", "output")]  # a TypeError of an inner call
    assert (deep.status, deep.kind) == ("error", "behaviour")
    assert "smoothing" in deep.message


def test_an_inexact_implementation_fails_where_the_builtin_passes(several: Any) -> None:
    key = ("plain", "float32", "output")
    assert several[LIKE][key].status == "pass"
    assert (several["off"][key].status, several["off"][key].kind) == ("fail", "numeric")


def test_a_class_is_constructed_and_called_like_the_loss_class(several: Any) -> None:
    mine = several["cls"]
    assert mine[("plain", "float32", "output")].status == "pass"
    assert mine[("plain", "float32", "grad")].status == "pass"
    assert mine[("weighted", "float32", "output")].status == "pass"
    assert mine[("plain", "float32", "output")].extra == {"like": "torch.nn.CrossEntropyLoss"}
    assert "label_smoothing" in mine[("smoothed", "float32", "output")].message
    assert set(several) == {"ns", "nw", "bad", "deep", "off", "cls", LIKE,
                            "torch.nn.CrossEntropyLoss"}  # and the two APIs mimicked


def test_the_naive_example_overflows_on_large_logits_and_passes_the_seeds(
        tmp_path: Path) -> None:
    records = run(tmp_path, "--impl", "examples.naive_torch:cross_entropy", "--like", LIKE,
                  "--dtype", "float32",
                  cases=[str(ROOT / "cases" / "seeds.yaml"),
                         str(ROOT / "cases" / "edge" / "large_logits.yaml")])
    mine = by_api(records)["examples.naive_torch:cross_entropy"].values()
    seeds = [r for r in mine if r.group == "seeds"]
    assert seeds and {r.status for r in seeds} <= {"pass", "unsupported"}
    assert any(r.status == "pass" for r in seeds)
    overflow = [r for r in mine if r.group == "edge" and r.kind == "special-value"]
    assert overflow, "the naive log(softmax) should give NaN on large logits"


def test_accelerators_are_discovered_through_torch_accelerator(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in accelerator (no XPU here): torch.accelerator reports 'xpu' with 2 devices."""
    from conformance.adapters.torch_adapter import TorchAdapter

    class StandIn:
        @staticmethod
        def get_device_name(index: int) -> str:
            return f"Stand-in XPU {index}"

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "current_accelerator",
                        lambda *a, **k: torch.device("xpu"))
    monkeypatch.setattr(torch.accelerator, "device_count", lambda: 2)
    monkeypatch.setattr(torch, "xpu", StandIn, raising=False)
    adapter = TorchAdapter()
    assert adapter.devices()[1:] == (Device("xpu:0", "gpu", "Stand-in XPU 0"),
                                     Device("xpu:1", "gpu", "Stand-in XPU 1"))
    cases = _cases()
    chosen = {job.device.id for job in jobs(adapter, cases, None, ["xpu:1"])}
    assert chosen == {"xpu:1"}
    assert {job.device.id for job in jobs(adapter, cases, None, ["gpu"])} == {"xpu:0", "xpu:1"}


@pytest.mark.parametrize(("kind", "device_type"), [("gpu", "mps"), ("npu", "npu")])
def test_privateuse1_and_mps_accelerators_get_their_own_ids(
        monkeypatch: pytest.MonkeyPatch, kind: str, device_type: str) -> None:
    from conformance.adapters.torch_adapter import TorchAdapter

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    # torch.device("npu") needs torch_npu's renamed PrivateUse1 backend: a stand-in device
    monkeypatch.setattr(torch.accelerator, "current_accelerator",
                        lambda *a, **k: SimpleNamespace(type=device_type))
    monkeypatch.setattr(torch.accelerator, "device_count", lambda: 1)
    devices = TorchAdapter().devices()
    assert [(d.id, d.kind) for d in devices[1:]] == [(f"{device_type}:0", kind)]
    assert devices[1].name  # a name even where torch's module has no get_device_name


def test_no_accelerator_means_cpu_only() -> None:
    adapter = load_adapter("torch")
    if torch.accelerator.is_available():
        pytest.skip("this machine has an accelerator")
    assert [d.id for d in adapter.devices()] == ["cpu"]


def _cases() -> Any:
    from conformance.cases.loading import load_cases

    return load_cases([ROOT / "cases" / "seeds.yaml"])[:2]
