"""Discrepancies grouped by cause (``conformance.judge.grouping``), "how far off" in words
(``conformance.judge.wording``), and the terminal's "worst" list in the report's order.

The records of the wording tests are real: their values and figures are copied from the full
audit of main at 10d363e (``cases/`` on torch 2.13, jax 0.10.2, TensorFlow 2.21, CPU), the
fields that do not matter to the wording left at ``tests.report_samples.result``'s defaults.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conformance.judge.grouping import api_family, group_discrepancies
from conformance.judge.wording import factor, how_far_off, number
from conformance.report.page import write_report
from conformance.results.records import Record, record_from_json
from conformance.run.progress import summary_lines
from conformance.run.summary import RunSummary
from tests.report_samples import TORCH_CE, adapter, environment, result, write_results
from tests.test_report import Page, section

KERAS = "keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=x.dtype)"
OPTAX = "optax.softmax_cross_entropy_with_integer_labels(x, t) + class weights, ignore mask, " \
        "mean/sum"


def record(**fields: Any) -> Record:
    return record_from_json(result(**fields))


AUDIT = {
    # jax, edge-tiny-loss-margin-20, float64 output: a relative error that fails
    "relative": (dict(case_id="edge-tiny-loss-margin-20", api=OPTAX, dtype="float64",
                      status="fail", kind="numeric", reference=6.183460848198079e-09,
                      actual=6.183462630815484e-09, shape=[], worst_index=[],
                      max_abs_error=1.7826174044486397e-15, max_rel_error=2.882879746813812e-07,
                      max_ulp_error=2155052207.0, bound_use=1.338032441363475),
                 "relative error 2.9e-7 (2.2e9 ULP of float64), 1.3x its bound"),
    # tensorflow, large-vocab-32k, float16 output: 95 ULP, 2.7 times the bound
    "float16": (dict(case_id="large-vocab-32k", api=KERAS, dtype="float16", status="fail",
                     kind="numeric", reference=16.489174817974046, actual=15.5, shape=[],
                     worst_index=[], max_abs_error=0.989174817974046,
                     max_rel_error=0.059989346276794565, max_ulp_error=95.0,
                     bound_use=2.742556848768698),
                "relative error 0.06 (95 ULP of float16), 2.7x its bound"),
    # jax, edge-large-offset-1e4-generated, float16 output: 0 returned for 2.77
    "returns zero": (dict(case_id="edge-large-offset-1e4-generated", api=OPTAX, dtype="float16",
                          status="fail", kind="numeric", reference=2.772588722239781,
                          actual=0.0, shape=[], worst_index=[],
                          max_abs_error=2.772588722239781, max_rel_error=1.0,
                          max_ulp_error=16780.0, bound_use=37.09198034436572),
                     "returns 0 where the exact value is 2.773, 37x its bound"),
    # jax, edge-tiny-loss-margin-20, float32 output: a pass whose relative error is 1
    "near zero": (dict(case_id="edge-tiny-loss-margin-20", api=OPTAX, status="pass",
                       reference=6.183460848198079e-09, actual=0.0, shape=[], worst_index=[],
                       max_abs_error=6.183460848198079e-09, max_rel_error=1.0,
                       max_ulp_error=836007500.0, bound_use=0.008645104393181243),
                  "exact 6.183e-9, returned 0: within the absolute bound near zero"),
    # tensorflow, large-vocab-128k-confident, bfloat16 output: far past an absolute bound
    "near zero, failing": (dict(case_id="large-vocab-128k-confident", api=KERAS,
                                dtype="bfloat16", status="fail", kind="numeric",
                                reference=[1.2253263997029904e-05, 4.110863784643923e-06],
                                actual=[27.5, 29.875], shape=[2], worst_index=[1],
                                max_abs_error=29.874995889136216,
                                max_rel_error=7267328.097986089, max_ulp_error=2917.0,
                                bound_use=106.22160460637014),
                           "exact 4.111e-6, returned 29.88: 106x the absolute bound near zero"),
    # tensorflow, large-vocab-masked-100k, bfloat16 output
    "inf": (dict(case_id="large-vocab-masked-100k", api=KERAS, dtype="bfloat16",
                 status="fail", kind="special-value", reference=0.0, actual="inf", shape=[],
                 worst_index=[], max_abs_error=None, max_rel_error=None, max_ulp_error=None,
                 message="1 special-value mismatch(es); first at (): expected 0.0 (rounds to "
                         "0.0 in bfloat16), got inf (special-value mismatch)"),
            "returns inf where the exact value is 0"),
    # jax, edge-neg-inf-masked-class-zero-probability, float64 output
    "nan": (dict(case_id="edge-neg-inf-masked-class-zero-probability", api=OPTAX,
                 dtype="float64", status="fail", kind="special-value",
                 reference=0.5632616875182228, actual="nan", shape=[], worst_index=[],
                 max_abs_error=None, max_rel_error=None, max_ulp_error=None),
            "returns nan where the exact value is 0.5633"),
    # tensorflow, large-vocab-32k, float16 grad: values not kept, so from the message
    "from the message": (dict(case_id="large-vocab-32k", api=KERAS, dtype="float16",
                              quantity="grad", status="fail", kind="special-value",
                              reference=None, actual=None, shape=[4, 32768],
                              worst_index=[0, 15028], max_ulp_error=13315.0,
                              message="3 special-value mismatch(es); first at (0, 15028): "
                                      "expected -0.25 (rounds to -0.25 in float16), got 0.0 "
                                      "(zero of the wrong sign)"),
                         "returns 0.0 (a zero of the wrong sign) where the exact value is "
                         "-0.25 (3 such elements)"),
    # tensorflow, edge-one-class-unbatched, float64 output
    "raises": (dict(case_id="edge-one-class-unbatched", api=KERAS, dtype="float64",
                    status="error", kind="behaviour", reference=0.0, actual=None, shape=None,
                    worst_index=None, max_abs_error=None, max_rel_error=None,
                    max_ulp_error=None, message="raised where the oracle defines a value: "
                                                "IndexError: tuple index out of range"),
               "raises IndexError: tuple index out of range where the exact value is 0"),
    # jax, invalid-target-equals-c, float32 output
    "no error": (dict(case_id="invalid-target-equals-c", api=OPTAX, status="fail",
                      kind="behaviour", reference=None, actual="nan", shape=None,
                      worst_index=None, max_abs_error=None, max_rel_error=None,
                      max_ulp_error=None, message="returned a value where the inputs are "
                                                  "invalid and an error is expected"),
                 "returns nan where an error is expected"),
    # tensorflow, large-batch-32x131072, bfloat16 grad: by Keras's own definition
    "semantic": (dict(case_id="large-batch-32x131072", api=KERAS, dtype="bfloat16",
                      quantity="grad", status="fail", kind="semantic", reference=None,
                      actual=None, shape=[32, 131072], worst_index=[26, 33280],
                      max_abs_error=0.034482774966147565, max_rel_error=12386214472.830095,
                      max_ulp_error=29584.0, bound_use=9962860000.890905),
                 "by its own definition: relative error 1.2e10 (29584 ULP of bfloat16), "
                 "1e10x its bound"),
}


@pytest.mark.parametrize("name", list(AUDIT))
def test_how_far_off_in_words_on_audit_records(name: str) -> None:
    fields, words = AUDIT[name]
    assert how_far_off(record(**fields)) == words


def test_numbers_and_factors_for_people() -> None:
    assert [number(v) for v in (11.16, 1.9e-22, 0.0, -0.0, float("inf"), float("nan"),
                                2.0e-3)] == ["11.16", "1.9e-22", "0", "-0", "inf", "nan",
                                             "0.002"]
    assert [factor(v) for v in (5.04, 1.338, 37.09, 2.5e14, float("inf"))] == [
        "5x", "1.3x", "37x", "2.5e14x", "infinitely many times"]


def test_api_family_folds_compiled_twins_only() -> None:
    assert api_family(f"torch.compile({TORCH_CE})") == TORCH_CE
    assert api_family(f"tf.function({KERAS})") == KERAS
    assert api_family("jax.jit(jax.nn.softmax)") == "jax.nn.softmax"
    assert api_family(KERAS) == KERAS  # a call with arguments is not a wrapper
    assert api_family("torch.nn.CrossEntropyLoss") == "torch.nn.CrossEntropyLoss"


def cause_records() -> list[dict[str, Any]]:
    """One case failing in two dtypes, eagerly and compiled, on one API family; the same case
    on another API; a NaN on another case; an error; passes and an unsupported record."""
    numeric = dict(status="fail", kind="numeric", case_id="c-num", group="edge")
    return [
        result(**{**numeric, "status": "pass", "kind": None}, api="torch.nn.functional.softmax"),
        result(**numeric, dtype="float32", bound_use=2.0, max_ulp_error=9.0),
        result(**numeric, dtype="float16", bound_use=5.0, max_ulp_error=17.0),
        result(**numeric, dtype="float32", api=f"torch.compile({TORCH_CE})", bound_use=2.0,
               max_ulp_error=9.0),
        result(**numeric, dtype="float32", api="torch.nn.CrossEntropyLoss", bound_use=3.0,
               max_ulp_error=12.0),
        result("c-nan", "fail", kind="special-value", reference=[0.25, 1.5],
               actual=["nan", 1.5], worst_index=[0], group="seeds"),
        result("c-raise", "error", kind="behaviour", group="invalid",
               message="raised where the oracle defines a value: RuntimeError: boom"),
        result("c-unsup", "unsupported", message="no bfloat16", dtype="bfloat16"),
    ]


def test_one_group_per_case_and_api_family_worst_first() -> None:
    records = [record_from_json(line) for line in cause_records()]
    groups = group_discrepancies(records)
    assert [(g.case_id, g.family, len(g.members)) for g in groups] == [
        ("c-nan", TORCH_CE, 1),  # a wrong special value first
        ("c-num", TORCH_CE, 3),  # float32, float16 and the compiled twin: one cause
        ("c-num", "torch.nn.CrossEntropyLoss", 1),
        ("c-raise", TORCH_CE, 1)]  # errors after fails
    # inside a group, worst first: the float16 record is 5 times its bound
    assert [records[i].dtype for i in groups[1].members] == ["float16", "float32", "float32"]
    assert (groups[1].status, groups[1].kind) == ("fail", "numeric")


def test_the_terminal_worst_list_is_the_reports_first_rows(tmp_path: Path) -> None:
    lines = cause_records()
    summary = RunSummary(tmp_path / "r.jsonl")
    for line in lines:
        summary.add(record_from_json(line))
    printed = summary_lines(summary, limit=3)
    start = printed.index("worst discrepancies, by cause (1 more in the report):")
    terminal = [re.match(r"  (\S+) on (.+) \((torch)\): ", line).groups()  # type: ignore
                for line in printed[start + 1:start + 4]]
    results = write_results(tmp_path / "r.jsonl", [environment(), adapter(), *lines])
    text = write_report([results], tmp_path / "report.html").path.read_text(encoding="utf-8")
    rows = []
    for markup in re.findall(r'<tr id="grp-\d+".*?</tr>', section(text, "discrepancies")):
        row = Page(markup)
        rows.append((row.find("tr")[0][1], row.find("tr")[0][0], row.find("code")[0][1]))
    in_report = [(case, a["data-api"].strip("|").split("|")[0],
                  a["data-fw"].strip("|").split()[0]) for _, a, case in rows]
    assert len(in_report) == 4 and terminal == [tuple(r) for r in in_report[:3]]
    assert "c-num on torch.nn.functional.cross_entropy (torch): fail numeric, " \
           "3 record(s) in float32, float16: " in printed[start + 2]
    # and the row of that cause says it all in one line
    row = next(t for t, a, case in rows if case == "c-num" and TORCH_CE in a["data-api"])
    assert "also torch.compile(…)" in row and "float32 float16" in row and "3" in row


def test_the_first_screen_says_ok_where_everything_ran_and_passed(tmp_path: Path) -> None:
    lines = [environment(), adapter(), result("c-a", group="seeds"),
             result("c-b", "fail", kind="numeric", group="edge", bound_use=3.0),
             result("c-c", "fail", kind="numeric", group="edge", bound_use=2.0),
             result("c-c", "fail", kind="numeric", group="edge", bound_use=2.0,
                    dtype="float16"),
             result("c-d", "unsupported", group="half", message="no float16")]
    results = write_results(tmp_path / "r.jsonl", lines)
    text = write_report([results], tmp_path / "report.html").path.read_text(encoding="utf-8")
    grid = Page(section(text, "grid"))
    cells = {a.get("data-group", a.get("data-dtype")): (a["class"], t)
             for a, t in grid.find("td") if "data-group" in a}
    assert cells == {"seeds": ("gcell ok", "ok"), "edge": ("gcell s-fail w-numeric", "2numeric"),
                     "": ("gcell s-fail w-numeric", "2numeric")}  # 2 cases, not 3 records
    assert "half" not in cells  # only unsupported there: nothing ran
