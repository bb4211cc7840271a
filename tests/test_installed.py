"""`conformance run` with no --framework runs the installed frameworks (conformance.adapters
.installed, conformance.cli.default_frameworks)."""

from __future__ import annotations

import importlib.util

import pytest

from conformance import adapters, cli


def test_installed_looks_for_each_frameworks_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    present = {"scipy", "onnxruntime"}  # onnx missing: onnxruntime's adapter needs both
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: object() if name in present else None)
    assert adapters.installed(["scipy", "onnxruntime", "torch"]) == ["scipy"]
    monkeypatch.setenv(adapters.ADAPTERS_VARIABLE, "plug=some.module:Adapter")
    assert "plug" not in adapters.installed()  # its module is looked up too
    present.add("some")
    assert "plug" in adapters.installed()


def test_a_run_without_framework_runs_the_installed_ones_and_names_the_rest(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "installed", lambda: ["scipy"])
    monkeypatch.setattr(adapters, "not_installed",
                        lambda name: None if name == "scipy" else f"{name} is missing")
    assert cli.default_frameworks() == ["scipy"]
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["torch: not run, torch is missing", "jax: not run, jax is missing"]
    assert len(lines) == len(adapters.frameworks()) - 1 and not any("scipy" in x for x in lines)


def test_with_nothing_installed_every_framework_is_recorded_as_skipped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "installed", lambda: [])
    assert cli.default_frameworks() == list(adapters.frameworks())
