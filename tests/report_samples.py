"""Hand-made results files for the report, merge and progress tests.

Each helper returns one line of a results file as a dict (``results.jsonable`` applies at
writing, so NaN may be given as a float or as the string ``"nan"``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from conformance.results.records import jsonable

ENV_A = "aaaaaaaaaaaa"
ENV_B = "bbbbbbbbbbbb"
TORCH_CE = "torch.nn.functional.cross_entropy"
TORCH_COMPOSED = "torch.nn.functional.nll_loss(log_softmax(x))"


def environment(env_id: str = ENV_A, host: str = "laptop", **extra: Any) -> dict[str, Any]:
    return {"type": "environment", "python": "3.11.7", "implementation": "CPython",
            "os": "Linux-6.1-x86_64", "machine": "x86_64", "cpu": "Example CPU 9000",
            "host": host, "command": "conformance run --out results.jsonl",
            "started": "2026-01-02T03:04:05+00:00", "environment_id": env_id, **extra}


def adapter(env_id: str = ENV_A, version: str = "2.13.0+cpu",
            devices: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "type": "adapter", "framework": "torch", "version": version,
        "devices": devices or [{"id": "cpu", "kind": "cpu", "name": "Example CPU 9000"}],
        "dtypes": ["float64", "float32", "float16", "bfloat16"],
        "apis": [
            {"id": "cross_entropy", "name": TORCH_CE, "op": "cross_entropy", "kind": "native",
             "supports": ["ignore_index", "index_target", "k_dim", "label_smoothing",
                          "probability_target", "reduction_mean", "reduction_none",
                          "reduction_sum", "weight"], "reasons": {}},
            {"id": "nll_loss-log_softmax", "name": TORCH_COMPOSED, "op": "cross_entropy",
             "kind": "composed", "supports": ["ignore_index", "index_target", "k_dim",
                                              "reduction_mean", "reduction_none",
                                              "reduction_sum", "weight"],
             "reasons": {"label_smoothing": "nll_loss has no label_smoothing argument",
                         "probability_target": "nll_loss takes class-index targets only"}},
        ],
        "environment_id": env_id,
    }


def result(case_id: str = "c-pass", status: str = "pass", **fields: Any) -> dict[str, Any]:
    """A result line; ``fields`` override the defaults (a passing float32 CPU output)."""
    line: dict[str, Any] = {
        "type": "result", "case_id": case_id, "op": "cross_entropy", "group": "seeds",
        "framework": "torch", "framework_version": "2.13.0+cpu", "api": TORCH_CE,
        "api_kind": "native", "device": "cpu", "device_name": "Example CPU 9000",
        "dtype": "float32", "quantity": "output", "status": status, "kind": None,
        "reference": [0.5, 1.25], "actual": [0.5, 1.25], "shape": [2],
        "max_abs_error": 0.0, "max_rel_error": 0.0, "max_ulp_error": 0.0,
        "worst_index": [0], "message": "max error 0 ulp", "case_file": "", "oracle_precision": 113,
        "environment_id": ENV_A, "extra": {},
    }
    line.update(fields)
    return line


def write_results(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(jsonable(line), allow_nan=False) + "\n"
                            for line in lines), encoding="utf-8")
    return path


def small_run(env_id: str = ENV_A, case_file: str = "") -> list[dict[str, Any]]:
    """One environment's lines: passes, a numeric fail, a NaN special-value fail, an error,
    an unsupported and a skip."""
    common = {"environment_id": env_id, "case_file": case_file}
    return [
        environment(env_id),
        adapter(env_id),
        result("c-pass", **common),
        result("c-pass", quantity="grad", max_ulp_error=0.75, **common),
        result("c-numeric", "fail", kind="numeric", actual=[0.5, 1.2501], max_abs_error=1e-4,
               max_rel_error=8e-5, max_ulp_error=1342.5, worst_index=[1], group="edge-values",
               bound_use=12.5, tolerance={"k": 4, "scale": 1.0, "source": "policy"},
               message="1 element(s) outside the bound", **common),
        result("c-nan", "fail", kind="special-value", reference=[0.25, 1.5],
               actual=["nan", 1.5], max_ulp_error=0.0, worst_index=[0], dtype="float16",
               group="edge-values", message="1 special-value mismatch(es); got nan", **common),
        result("c-raise", "error", kind="behaviour", actual=None, shape=None,
               max_abs_error=None, max_rel_error=None, max_ulp_error=None, worst_index=None,
               group="invalid-inputs", message="raised where the oracle defines a value: "
                                              "RuntimeError: boom", **common),
        result("c-smooth", "unsupported", api=TORCH_COMPOSED, api_kind="composed",
               reference=None, actual=None, max_ulp_error=None,
               message="nll_loss has no label_smoothing argument", **common),
        result("c-pass", "skip", framework="jax", framework_version="", api="*", device="*",
               dtype="*", device_name="", reference=None, actual=None, max_ulp_error=None,
               message="jax is not installed (No module named 'jax')", **common),
    ]


# --- reading a report's data (what its script builds the details from) ----------------------


def report_data(page: str) -> dict[str, Any]:
    """The decompressed data of a report's ``#report-data`` (empty when it has none)."""
    from conformance.report.discrepancies import unpack

    match = re.search(r'<div id="report-data" hidden data-gzip="([A-Za-z0-9+/=]*)">', page)
    return unpack(match.group(1)) if match else {}


def with_details(page: str) -> str:
    """The page's markup followed by the text of every detail its script can build."""
    from conformance.report.html import node_text

    data = report_data(page)
    return page + "\n".join(node_text(tree) for trees in data.values() for tree in trees)


def nodes(tree: Any, tag: str, **attrs: str) -> list[tuple[dict[str, str], str]]:
    """(attributes, text) of every element ``tag`` in a data tree with these attributes."""
    from conformance.report.html import node_text

    found: list[tuple[dict[str, str], str]] = []
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list) and len(item) >= 2 and isinstance(item[0], str) \
                and isinstance(item[1], dict):
            if item[0] == tag and all(item[1].get(k.rstrip("_").replace("_", "-")) == v
                                      for k, v in attrs.items()):
                found.append((item[1], node_text(item)))
            stack.extend(reversed(item[2:]))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found
