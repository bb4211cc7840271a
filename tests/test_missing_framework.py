"""A framework that is not installed: an error (exit 2) when named with ``--framework``,
saying how to install it; a skip, naming the package, when no framework is named.

The frameworks are made missing for real, in a subprocess: a ``sitecustomize`` module on
``PYTHONPATH`` puts an import blocker first on ``sys.meta_path`` (the run's worker
processes inherit it), so ``import jax`` raises ``ModuleNotFoundError`` as it does where JAX
is not installed, whether or not this machine has it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import FRAMEWORKS
from conformance.results.jsonl import read_results
from tests.conftest import ROOT, write

BLOCKER = '''\
import os
import sys

BLOCKED = set(os.environ["TEST_BLOCKED_MODULES"].split(","))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
'''
CASES = """\
cases:
  - id: missing-a
    source: test
    op: cross_entropy
    input: [[0.5, -1.0, 2.0]]
    target: [2]
    dtypes: [float64]
"""


def _conformance(tmp_path: Path, blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    write(site / "sitecustomize.py", BLOCKER)
    env = {**os.environ, "TEST_BLOCKED_MODULES": blocked,
           "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    env.pop("CONFORMANCE_ADAPTERS", None)
    return subprocess.run([sys.executable, "-m", "conformance", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_named_framework_that_is_missing_is_an_error(tmp_path: Path) -> None:
    cases = write(tmp_path / "cases.yaml", CASES)
    out = tmp_path / "r.jsonl"
    done = _conformance(tmp_path, "jax,jaxlib,optax", "run", "--framework", "jax",
                        "--cases", str(cases), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: --framework: jax is not installed (no module named 'jax'); install the pip "
        "package jax, jaxlib and optax at the tested version: pip install -c constraints.txt "
        "-e '.[jax]' (in this project's checkout)"]
    assert not out.exists()  # refused before anything was written


# Every built-in framework's modules: with all of them missing, a run without --framework
# records each as skipped (with some installed, it runs those and names the others on stderr).
EVERY_FRAMEWORK = "torch,jax,jaxlib,optax,keras,tensorflow,scipy,onnxruntime,onnx,mlx,paddle"


def test_frameworks_missing_when_none_is_named_are_skipped_with_the_package(
        tmp_path: Path) -> None:
    cases = write(tmp_path / "cases.yaml", CASES)
    out = tmp_path / "r.jsonl"
    done = _conformance(tmp_path, EVERY_FRAMEWORK, "run",
                        "--cases", str(cases), "--out", str(out), "--cache", "off")
    assert done.returncode == 0, done.stderr
    reasons = {r.framework: r.message for r in read_results([out]).records
               if r.status == "skip"}
    assert reasons["tensorflow"] == (
        "tensorflow is not installed (no module named 'keras'); install the pip package "
        "tensorflow-cpu at the tested version: pip install -c constraints.txt "
        "-e '.[tensorflow]' (in this project's checkout)")
    assert reasons["torch"].startswith("torch is not installed (no module named 'torch'); "
                                       "install the pip package torch at the tested version")
    assert set(reasons) == set(FRAMEWORKS)
    assert f"tensorflow: skipped, {reasons['tensorflow']}" in done.stderr.splitlines()


def test_with_some_installed_a_run_without_framework_runs_those_and_names_the_rest(
        tmp_path: Path) -> None:
    """SciPy stays visible (this machine may or may not have it: the test checks both ways),
    every other built-in framework is blocked: only SciPy runs; the others are named on
    stderr with how to install them, and recorded nowhere."""
    if importlib.util.find_spec("scipy") is None:
        pytest.skip("SciPy is not installed: nothing would be left to run")
    cases = write(tmp_path / "cases.yaml", CASES)
    out = tmp_path / "r.jsonl"
    blocked = EVERY_FRAMEWORK.replace(",scipy", "")
    done = _conformance(tmp_path, blocked, "run", "--cases", str(cases), "--out", str(out),
                        "--cache", "off", "--exit-zero")
    assert done.returncode == 0, done.stderr
    assert {r.framework for r in read_results([out]).records} <= {"scipy", "reference"}
    lines = done.stderr.splitlines()
    assert ("jax: not run, jax is not installed (no module named 'jax'); install the pip "
            "package jax, jaxlib and optax at the tested version: pip install -c "
            "constraints.txt -e '.[jax]' (in this project's checkout)") in lines
    assert not any(line.startswith("scipy: not run") for line in lines)
