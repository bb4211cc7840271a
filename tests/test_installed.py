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
    assert "plug" in adapters.installed()  # a plug-in's adapter says itself whether it loads


def test_a_run_without_framework_runs_the_installed_ones_and_names_the_rest(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "installed", lambda: ["scipy"])
    assert cli.default_frameworks() == ["scipy"]
    err = capsys.readouterr().err
    assert err.startswith("not installed, not run: torch, jax, tensorflow")
    assert "scipy" not in err.split(":", 1)[1].split("(")[0]


def test_with_nothing_installed_every_framework_is_recorded_as_skipped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "installed", lambda: [])
    assert cli.default_frameworks() == list(adapters.frameworks())
