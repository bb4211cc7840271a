"""Plugins and users' implementations, with no framework installed: a tiny plugin distribution
made in a temporary folder (a ``.dist-info`` with ``entry_points.txt`` on the path), its
adapter found through the ``conformance.adapters`` entry point, shown by ``conformance
support``, run by ``conformance run``, and a user's function run like its API with
``--impl``/``--like``, from the command line, from pytest and from ``conformance.audit``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import conformance
from conformance import cli
from conformance.adapters import FRAMEWORKS, frameworks
from conformance.adapters.implementation import (
    Implementation,
    ImplementationError,
    pair_likes,
    parse_spec,
)
from conformance.judge.pairwise import pairs_from_records
from conformance.results.jsonl import read_results
from conformance.results.records import Record
from conformance.run.runner import RunOptions, _implementation_arguments, running_declaration
from tests.conftest import ROOT, write

FRAMEWORK = '''\
import numpy as np


def softmax(x, axis=-1):
    """A stable softmax, the framework's own."""
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)
'''
ADAPTER = '''\
import numpy as np

import tinyfw
from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.adapters.common import stand_in_roots

APIS = (
    Api("softmax", "tinyfw.softmax", "softmax", frozenset({"k_dim"}), callee="tinyfw.softmax"),
    Api("glue", "log(tinyfw.softmax(x))", "log_softmax", frozenset({"k_dim"}), kind="composed"),
)


def recipes(tf):
    return {"softmax": lambda x, axis: tf.softmax(x, axis=axis),
            "glue": lambda x, axis: np.log(tf.softmax(x, axis=axis))}


class TinyAdapter(Adapter):
    name = "tinyfw"

    def __init__(self):
        self._recipes = recipes(tinyfw)

    def version(self):
        return "0.1"

    def apis(self):
        return APIS

    def devices(self):
        return (Device("cpu", "cpu", "tiny CPU"),)

    def dtypes(self):
        return ("float64",)

    def stand_in(self, like, api, replacement):
        roots = stand_in_roots({"tinyfw": tinyfw}, like.callee, replacement)
        self._recipes[api.id] = recipes(roots["tinyfw"])[like.id]

    def run(self, api, problem, device):
        try:
            with np.errstate(all="ignore"):
                out = self._recipes[api.id](np.array(problem.input), problem.class_axis)
        except Exception as error:
            return Outcome("error", error_type=type(error).__name__, message=str(error))
        return Outcome("ok", np.asarray(out, dtype=np.float64))
'''
USER = '''\
import numpy as np


def naive(x):
    """exp, then normalise: overflows on large logits."""
    with np.errstate(all="ignore"):
        e = np.exp(x)
        return e / e.sum(axis=-1, keepdims=True)


def refuses(x):
    raise NotImplementedError("not on Tuesdays")


NOT_CALLABLE = 3
'''
CASES = """\
defaults: {grad: false, dtypes: [float64]}
cases:
  - {id: small, source: t, op: softmax, input: [[1.0, 2.0, 3.0]]}
  - {id: large, source: t, op: softmax, input: [[1000.0, 0.0]]}
  - {id: logs, source: t, op: log_softmax, input: [[1.0, 2.0]]}
"""
LIKE = "tinyfw.softmax"


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plugin distribution 'tinyfw-plugin' in a temporary folder on the path (and on the
    workers' PYTHONPATH), with the user's module beside it; the folder is also the cwd."""
    site = tmp_path / "site"
    info = site / "tinyfw_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    write(info / "METADATA", "Metadata-Version: 2.1\nName: tinyfw-plugin\nVersion: 0.1\n")
    write(info / "entry_points.txt",
          "[conformance.adapters]\ntinyfw = tinyfw_adapter:TinyAdapter\n")
    write(site / "tinyfw.py", FRAMEWORK)
    write(site / "tinyfw_adapter.py", ADAPTER)
    write(site / "mine.py", USER)
    monkeypatch.syspath_prepend(str(site))
    path = os.pathsep.join(filter(None, [str(site), str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.delenv("CONFORMANCE_ADAPTERS", raising=False)
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "cases.yaml", CASES)
    return tmp_path


def run(tmp_path: Path, *arguments: str) -> list[Record]:
    out = tmp_path / "results.jsonl"
    code = cli.main(["run", "--cases", str(tmp_path / "cases.yaml"), "--out", str(out),
                     "--overwrite", "--exit-zero", *arguments])
    assert code == 0
    return read_results([out]).records


def test_an_entry_point_adapter_is_a_framework(plugin: Path) -> None:
    assert frameworks()["tinyfw"] == ("tinyfw_adapter", "TinyAdapter")
    assert {**frameworks(), "tinyfw": None}.keys() >= FRAMEWORKS.keys()


def test_the_environment_variable_still_plugs_in_and_wins(
        plugin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFORMANCE_ADAPTERS", "tinyfw=elsewhere:Other")
    assert frameworks()["tinyfw"] == ("elsewhere", "Other")


def test_an_entry_point_does_not_replace_a_builtin_framework(plugin: Path) -> None:
    entry = plugin / "site" / "tinyfw_plugin-0.1.dist-info" / "entry_points.txt"
    write(entry, "[conformance.adapters]\ntorch = tinyfw_adapter:TinyAdapter\n"
                 "broken = no colon here\n")
    known = frameworks()
    assert known["torch"] == FRAMEWORKS["torch"] and "broken" not in known


def test_the_plugin_is_in_the_support_matrix(plugin: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["support", "--framework", "tinyfw"]) == 0
    out = capsys.readouterr().out
    assert "| tinyfw | `tinyfw.softmax` |  | softmax |" in out
    assert "**tinyfw** 0.1: dtypes float64; devices cpu (tiny CPU)" in out


def test_the_plugin_runs(plugin: Path) -> None:
    records = run(plugin, "--framework", "tinyfw")
    verdicts = {(r.case_id, r.api): r.status for r in records}
    assert verdicts == {("small", LIKE): "pass", ("large", LIKE): "pass",
                        ("logs", "log(tinyfw.softmax(x))"): "pass"}


def test_an_implementation_runs_like_the_plugins_api(plugin: Path) -> None:
    records = run(plugin, "--impl", "naive=mine:naive", "--impl", "mine:refuses",
                  "--like", LIKE)
    got = {(r.case_id, r.api): r for r in records}
    # only the implementations and the API they mimic; the axis (the last, its default) is
    # not passed to a function that takes none
    assert set(got) == {(c, a) for c in ("small", "large")
                        for a in (LIKE, "naive", "mine:refuses")}
    assert got[("small", "naive")].status == "pass"
    large = got[("large", "naive")]
    assert (large.status, large.kind) == ("fail", "special-value")  # inf / inf = NaN
    assert got[("large", LIKE)].status == "pass"
    assert (large.framework, large.api_kind, large.extra) == \
        ("tinyfw", "implementation", {"like": LIKE})
    refused = got[("small", "mine:refuses")]
    assert (refused.status, refused.message) == ("unsupported",
                                                 "NotImplementedError: not on Tuesdays")
    lines = [json.loads(line) for line in (plugin / "results.jsonl").read_text().splitlines()]
    settings = lines[0]["settings"]
    assert settings["implementations"] == ["mine:refuses=mine:refuses like tinyfw.softmax",
                                           "naive=mine:naive like tinyfw.softmax"]
    # the adapter line is the framework's own declaration, without the implementations
    adapter = next(line for line in lines if line["type"] == "adapter")
    assert [api["name"] for api in adapter["apis"]] == [LIKE, "log(tinyfw.softmax(x))"]
    pairs = [p for p in pairs_from_records(records) if p.api_a == "naive"]
    assert {(p.case_id, p.api_b, p.framework_a, p.framework_b) for p in pairs} == \
        {("small", LIKE, "tinyfw", "tinyfw"), ("large", LIKE, "tinyfw", "tinyfw")}
    # exp(1000) / exp(1000) = inf / inf = NaN; exp(0) / inf = 0 is right (e**-1000 rounds to 0)
    assert next(p for p in pairs if p.case_id == "large").special_mismatches == 1


def test_a_report_shows_the_implementation_beside_its_api(plugin: Path) -> None:
    run(plugin, "--impl", "naive=mine:naive", "--like", LIKE)
    assert cli.main(["report", str(plugin / "results.jsonl"), "-o",
                     str(plugin / "report.html")]) == 0
    page = (plugin / "report.html").read_text()
    assert "like tinyfw.softmax" in page and "k-implementation" in page


@pytest.mark.parametrize(("arguments", "message"), [
    (["--impl", "nosuchmodule:f", "--like", LIKE], "module 'nosuchmodule' cannot be imported"),
    (["--impl", "mine:missing", "--like", LIKE], "mine has no attribute 'missing'"),
    (["--impl", "mine:NOT_CALLABLE", "--like", LIKE], "NOT_CALLABLE is a int, not a function"),
    (["--impl", "mine", "--like", LIKE], "expected [NAME=]MODULE:FUNCTION"),
    (["--impl", "a|b=mine:naive", "--like", LIKE], "may hold letters"),
    (["--impl", "mine:naive", "--like", "tinyfw.sofmax"],
     "no such API in the support matrix (the API column of 'conformance support'); "
     "did you mean tinyfw.softmax"),
    (["--impl", "mine:naive", "--like", "log(tinyfw.softmax(x))"],
     "names no public function this API calls"),
    (["--impl", "mine:naive", "--like", "torch.compile(torch.nn.functional.softmax)"],
     "is a compiled twin; --impl runs eagerly"),
    (["--impl", "mine:naive", "--like", "onnx Softmax (opset 22)"],
     "--like 'onnx Softmax (opset 22)': ONNX Runtime runs ONNX graphs, not Python functions"),
    (["--impl", "mine:naive", "--like", "keras.ops.softmax"],
     "--like 'keras.ops.softmax' is an API of several frameworks (keras-jax, keras-torch): "
     "name one as FRAMEWORK:API ('keras-jax:keras.ops.softmax' or "
     "'keras-torch:keras.ops.softmax'"),
    (["--impl", "mine:naive", "--like", "keras-jax:keras.ops.sofmax"], "no such API"),
    (["--impl", "x=mine:naive", "--impl", "y=mine:naive", "--like", LIKE, "--like", LIKE,
      "--like", LIKE], "2 --impl and 3 --like"),
    (["--like", LIKE], "--like needs an --impl"),
    (["--impl", "tinyfw.softmax=mine:naive", "--like", LIKE], "the name 'tinyfw.softmax' is "
                                                               "taken"),
])
def test_a_bad_impl_or_like_exits_2_with_the_reason(
        plugin: Path, capsys: pytest.CaptureFixture[str], arguments: list[str],
        message: str) -> None:
    out = plugin / "results.jsonl"
    assert cli.main(["run", "--cases", str(plugin / "cases.yaml"), "--out", str(out),
                     *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_a_name_of_several_frameworks_is_qualified_with_its_framework(plugin: Path) -> None:
    """Keras' APIs have the same names on TensorFlow and on each Keras backend: FRAMEWORK:NAME
    picks one (read from the adapters' declarations: no framework is imported)."""
    from conformance.adapters.implementation import resolve

    loss = "keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=x.dtype)"
    for framework in ("tensorflow", "keras-jax", "keras-torch"):
        (impl,) = resolve([("mine:naive", f"{framework}:{loss}")], list(frameworks()))
        assert (impl.framework, impl.like, impl.like_id) == \
            (framework, loss, "SparseCategoricalCrossentropy")
    with pytest.raises(ImplementationError, match="several frameworks"):
        resolve([("mine:naive", loss)], list(frameworks()))
    import mine

    with pytest.raises(ImplementationError, match=r"audit: like='keras.ops.softmax' is an API "
                                                  r"of several frameworks"):
        conformance.audit(mine.naive, like="keras.ops.softmax", cases=[plugin / "cases.yaml"])
    with pytest.raises(ImplementationError, match="ONNX Runtime runs ONNX graphs"):
        conformance.audit(mine.naive, like="onnx Softmax (opset 22)",
                          cases=[plugin / "cases.yaml"])


def test_audit_from_python_returns_records_and_a_summary(plugin: Path) -> None:
    import mine  # the plugin folder is on the path

    result = conformance.audit(mine.naive, like=LIKE, cases=[plugin / "cases.yaml"],
                               name="naive")
    assert {(r.case_id, r.status) for r in result.records} == {("small", "pass"),
                                                               ("large", "fail")}
    assert result.counts == {"pass": 1, "fail": 1} and not result.passed
    assert "large [float64 cpu] output: fail special-value" in result.summary()
    both = conformance.audit(mine.naive, like=LIKE, cases=[plugin / "cases.yaml"],
                             compare=True)
    assert {r.api for r in both.records} == {LIKE, "mine:naive"}
    with pytest.raises(ImplementationError, match="no such API"):
        conformance.audit(mine.naive, like="tinyfw.nope", cases=[plugin / "cases.yaml"])


def test_pytest_takes_the_same_options(plugin: Path, pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", cases=CASES)
    result = pytester.runpytest_subprocess(
        "cases.yaml", "--conformance-impl",
        "naive=mine:naive", "--conformance-like", LIKE, "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*small?tinyfw-impl:naive-cpu-float64? PASSED*",
                                 "*large?tinyfw-impl:naive-cpu-float64? FAILED*"])
    bad = pytester.runpytest_subprocess("cases.yaml",
                                        "--conformance-impl", "mine:nope",
                                        "--conformance-like", LIKE)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--conformance-impl mine:nope: mine has no attribute *nope*"])


def test_parse_spec_and_pairing() -> None:
    assert parse_spec("mykernels:cross_entropy") == ("mykernels:cross_entropy",
                                                     "mykernels:cross_entropy")
    assert parse_spec("fast=my.kernels:Loss.apply") == ("fast", "my.kernels:Loss.apply")
    assert pair_likes(["a:b", "c:d"], ["L"]) == [("a:b", "L"), ("c:d", "L")]
    assert pair_likes(["a:b", "c:d"], ["L", "M"]) == [("a:b", "L"), ("c:d", "M")]
    with pytest.raises(ImplementationError):
        pair_likes(["a:b"], [])


def test_a_framework_run_only_for_implementations_runs_only_the_apis_they_mimic() -> None:
    impl = Implementation("fast", "k:f", "torch.nn.functional.cross_entropy", "torch",
                          "cross_entropy")
    alone = RunOptions(cases=["cases"], frameworks=[], implementations=(impl,))
    assert alone.worker_frameworks() == ["torch"]
    arguments = _implementation_arguments(alone, "torch")
    assert arguments[arguments.index("--only-apis") + 1:] == ["cross_entropy"]
    with_all = RunOptions(cases=["cases"], frameworks=["jax", "torch"], implementations=(impl,))
    assert with_all.worker_frameworks() == ["jax", "torch"]
    assert "--only-apis" not in _implementation_arguments(with_all, "torch")
    assert _implementation_arguments(with_all, "jax") == []
    declaration = {"framework": "torch", "apis": [
        {"id": "softmax", "name": "s", "op": "softmax"},
        {"id": "cross_entropy", "name": "c", "op": "cross_entropy"}]}
    counted = running_declaration(declaration, alone)["apis"]
    assert [(a["id"], a["op"]) for a in counted] == [("cross_entropy", "cross_entropy"),
                                                     ("impl:fast", "cross_entropy")]
