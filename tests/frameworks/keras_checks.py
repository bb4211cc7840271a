"""What the keras-jax and keras-torch tests share: loading the adapter (Keras picks one backend
per process, so a process that imported Keras on another one skips) and the checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conformance.adapters import AdapterUnavailable, load_adapter
from conformance.adapters.base import Adapter
from conformance.cases.loading import load_cases
from conformance.judge.check import check_case
from tests.conftest import ROOT
from tests.frameworks.api_cases import api_cases, check_every_api

# Keras' CategoricalCrossentropy smooths along the last axis whatever its `axis` argument
# (keras/src/losses/losses.py, categorical_crossentropy: num_classes = shape(y_true)[-1]), so
# smoothed K-dimensional labels with the class axis at 1 get the wrong loss: a finding.
SMOOTHING_ON_THE_LAST_AXIS = {("CategoricalCrossentropy", "probability-k-dim-smoothed-none"):
                              "label smoothing along the last axis, not `axis`"}


def adapter(name: str) -> Adapter:
    # find_spec, not an import: importing Keras would pick its backend before the adapter does
    if importlib.util.find_spec("keras") is None:
        pytest.skip(f"Keras is not installed (tox -e {name} installs it)", allow_module_level=True)
    try:
        return load_adapter(name)
    except AdapterUnavailable as error:
        pytest.skip(str(error), allow_module_level=True)
        raise


def check_apis(adapter: Adapter, tmp_path: Path, dtypes: tuple[str, ...],
               known: dict[tuple[str, str], str]) -> None:
    for api in adapter.apis():
        check_every_api(adapter, api_cases(tmp_path), apis=(api,), dtypes=dtypes, known=known)


def check_seeds(adapter: Adapter, dtype: str) -> None:
    """Each seed case passes on at least one API, and on every API that supports it."""
    cpu = adapter.devices()[0]
    for case in load_cases([ROOT / "cases" / "seeds.yaml"]):
        if not adapter.apis_for(case.op):
            continue  # Keras has no nll_loss
        passed = runnable = False
        for api in adapter.apis_for(case.op):
            runnable |= api.unsupported_reason(case.options()) is None
            records = check_case(case, adapter, api, cpu, dtype)
            statuses = {r.status for r in records}
            assert statuses in ({"pass"}, {"unsupported"}), (case.id, api.name, records)
            passed |= statuses == {"pass"}
        assert passed == runnable, case.id
        # class weights on probability targets: Keras has sample weights only
        assert runnable or {"weight", "probability_target"} <= set(case.options()), case.id
