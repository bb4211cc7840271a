"""The support matrix: built from adapter declarations, live or from a results file."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters.base import adapter_declaration
from conformance.adapters.support import (
    ApiSupport,
    compiled_twins,
    from_adapters,
    from_declarations,
    from_results,
)
from tests.conftest import ROOT, write

DECLARATION = {
    "framework": "toy", "version": "1.0",
    "devices": [{"id": "cpu", "kind": "cpu", "name": "a CPU"}],
    "dtypes": ["float64", "float32"],
    "apis": [
        {"id": "softmax", "name": "toy.softmax", "op": "softmax", "kind": "native",
         "supports": ["k_dim"], "reasons": {}},
        {"id": "xent", "name": "toy.xent", "op": "cross_entropy", "kind": "native",
         "supports": ["probability_target", "reduction_none"],
         "reasons": {"index_target": "probabilities only", "weight": "no weights"}},
        {"id": "jit-xent", "name": "toy.jit(toy.xent)", "op": "cross_entropy", "kind": "native",
         "supports": ["probability_target", "reduction_none"],
         "reasons": {"index_target": "probabilities only", "weight": "no weights"}},
        {"id": "nll", "name": "nll(toy.log_softmax(x)) + mean", "op": "nll_loss",
         "kind": "composed", "supports": ["index_target", "reduction_mean", "weight"],
         "reasons": {}},
    ],
}


def _api(matrix, name: str) -> ApiSupport:
    (framework,) = matrix.frameworks
    return next(api for api in framework.apis if api.name == name)


def test_cells_say_native_composed_no_or_nothing_where_an_option_does_not_apply() -> None:
    matrix = from_declarations([DECLARATION])
    softmax, xent = _api(matrix, "toy.softmax"), _api(matrix, "toy.xent")
    nll = _api(matrix, "nll(toy.log_softmax(x)) + mean")
    assert softmax.cell("k_dim") == "native" and softmax.cell("weight") == ""
    assert xent.cell("probability_target") == "native" and xent.cell("index_target") == "no"
    assert xent.cell("ignore_index") == ""  # no index targets, so never an ignored one
    assert nll.cell("weight") == "composed" and nll.cell("reduction_sum") == "no"
    assert nll.cell("label_smoothing") == "" and nll.cell("probability_target") == ""
    assert xent.reason("weight") == "no weights"
    assert "does not support" in nll.reason("reduction_sum")


def test_compiled_twins_fold_into_their_base_row() -> None:
    (framework,) = from_declarations([DECLARATION]).frameworks
    assert compiled_twins(framework.apis) == {"toy.xent": ["toy.jit"]}
    text = from_declarations([DECLARATION]).markdown()
    rows = [line for line in text.splitlines() if line.startswith("| toy |")]
    assert len(rows) == 3 and "`toy.jit(...)`" in rows[1]
    assert "* toy: `toy.xent` (index_target): probabilities only" in text
    assert "* **toy** 1.0: dtypes float64, float32; devices cpu (a CPU)" in text


def test_a_twin_with_other_options_is_its_own_row() -> None:
    declaration = json.loads(json.dumps(DECLARATION))
    declaration["apis"][2]["supports"] = ["probability_target"]
    (framework,) = from_declarations([declaration]).frameworks
    assert compiled_twins(framework.apis) == {}


def test_declarations_of_one_version_from_several_machines_unite() -> None:
    gpu = json.loads(json.dumps(DECLARATION))
    gpu["devices"] = [{"id": "cuda:0", "kind": "gpu", "name": "a GPU"}]
    gpu["apis"].append({"id": "extra", "name": "toy.extra", "op": "softmax", "kind": "native",
                        "supports": [], "reasons": {}})
    (framework,) = from_declarations([DECLARATION, gpu, DECLARATION]).frameworks
    assert [d["id"] for d in framework.devices] == ["cpu", "cuda:0"]
    assert len(framework.apis) == 5
    other_version = {**DECLARATION, "version": "2.0"}
    assert len(from_declarations([DECLARATION, other_version]).frameworks) == 2


def test_the_matrix_of_a_live_adapter_is_its_declaration(stand_ins: None) -> None:
    from stand_in_adapters import ExactAdapter

    live = from_adapters(["exact"])
    assert live.to_json() == from_declarations([adapter_declaration(ExactAdapter())]).to_json()
    (framework,) = live.frameworks
    assert framework.version == "1.0" and framework.unavailable == ""


def test_missing_and_crashing_frameworks_are_listed_and_stop_nothing(stand_ins: None) -> None:
    matrix = from_adapters(["missing", "import-crash", "exact", "no-such-framework"])
    by_name = {f.framework: f for f in matrix.frameworks}
    assert "not installed" in by_name["missing"].unavailable
    assert "crashed" in by_name["import-crash"].unavailable
    assert "unknown framework" in by_name["no-such-framework"].unavailable
    assert by_name["exact"].apis and not by_name["exact"].unavailable
    assert "* **missing**: not available" in matrix.markdown()


CASES = """\
cases:
  - {id: one, source: a test, op: softmax, input: [[1.0, 2.0]], dtypes: [float64]}
"""


def test_a_results_file_rebuilds_the_matrix_it_was_run_under(stand_ins: None,
                                                              tmp_path: Path) -> None:
    cases, out = write(tmp_path / "cases.yaml", CASES), tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--cases", str(cases), "--framework",
         "exact", "offset", "--out", str(out), "--exit-zero"],
        capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    def by_framework(matrix):  # frameworks may run, and declare, in either order
        return sorted(matrix.to_json(), key=lambda entry: entry["framework"])

    assert by_framework(from_results([out])) == by_framework(from_adapters(["exact", "offset"]))
    printed = subprocess.run(
        [sys.executable, "-m", "conformance", "support", "--results", str(out),
         "--framework", "offset"], capture_output=True, text=True, cwd=ROOT)
    assert printed.returncode == 0, printed.stderr
    assert "| offset | `standin.softmax` |" in printed.stdout
    assert "| exact |" not in printed.stdout


def test_the_command_prints_markdown_or_json(stand_ins: None) -> None:
    def support(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "conformance", "support", *args],
                              capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    text = support("--framework", "exact")
    assert text.startswith("| framework | API | also as | op | index target |")
    assert "| exact | `standin.cross_entropy` |  | cross_entropy | native |" in text
    (entry,) = json.loads(support("--framework", "exact", "--format", "json"))
    assert entry["framework"] == "exact" and entry["apis"][0]["name"] == "standin.softmax"
    table = support("--framework", "exact", "--table-only")
    assert "dtypes" not in table and table.count("\n| exact |") == 4


README_BLOCK = re.compile(r"<!-- support-matrix -->\n(.*?)<!-- /support-matrix -->", re.S)
README_FRAMEWORKS = ["torch", "jax", "tensorflow", "scipy", "onnxruntime", "mlx", "keras-jax",
                     "keras-torch"]
ALL_FRAMEWORKS = all(importlib.util.find_spec(name) is not None
                     for name in ("torch", "jax", "optax", "tensorflow", "keras", "scipy",
                                  "onnxruntime", "onnx", "mlx"))


# tox -e support installs every framework and sets this, so there a missing one fails the
# test instead of skipping it: that env exists to run it.
REQUIRE_ALL = os.environ.get("CONFORMANCE_REQUIRE_ALL_FRAMEWORKS") == "1"


@pytest.mark.skipif(not ALL_FRAMEWORKS and not REQUIRE_ALL,
                    reason="the README's matrix covers torch, JAX, TensorFlow, SciPy, ONNX "
                           "Runtime, MLX and Keras; not all of them are installed (tox -e "
                           "support runs it)")
def test_the_readmes_matrix_is_the_generated_one() -> None:
    """Regenerate with: conformance support --framework torch jax tensorflow scipy onnxruntime
    mlx keras-jax keras-torch --table-only"""
    assert ALL_FRAMEWORKS, "tox -e support must have every framework of the README's matrix"
    block = README_BLOCK.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block is not None, "README.md lacks the <!-- support-matrix --> block"
    generated = from_adapters(README_FRAMEWORKS)
    assert all(not f.unavailable for f in generated.frameworks), generated.frameworks
    assert block.group(1) == generated.markdown(environment=False, reasons=False)


def test_a_forward_only_api_says_no_in_the_grad_column_with_its_reason() -> None:
    declaration = json.loads(json.dumps(DECLARATION))
    declaration["apis"][0]["no_grad"] = "values only"
    text = from_declarations([declaration]).markdown()
    softmax_row = next(line for line in text.splitlines() if "`toy.softmax`" in line)
    nll_row = next(line for line in text.splitlines() if "`nll(" in line)
    assert softmax_row.endswith("| no |") and nll_row.endswith("| composed |")
    assert "* toy: `toy.softmax` (grad): values only" in text
