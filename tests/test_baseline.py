"""The known-discrepancy baseline: loading (errors named by file, line and field), matching,
xfail/xpass beside the verdict, exit codes, stale entries, drafting one, the shipped ones."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from conformance.cli import main
from conformance.judge.baseline import (
    NOT_REPORTED,
    BaselineError,
    api_family,
    draft_baseline,
    load_baseline,
    write_draft,
)
from conformance.results.jsonl import check_line, read_results
from conformance.results.records import Record
from tests.conftest import ROOT, write

CASES = """\
cases:
  - id: case-a
    source: test
    op: cross_entropy
    input: [[1.0, 2.0, 0.5], [0.1, 0.2, 0.3]]
    target: [1, 2]
    dtypes: [float64, float32]
  - id: case-b
    source: test
    op: softmax
    input: [1.0, 2.0, 3.0]
    dtypes: [float64]
"""


def record(**fields: object) -> Record:
    base = dict(case_id="case-a", op="cross_entropy", group="g", framework="torch",
                framework_version="2.13.0+cpu", api="torch.nn.functional.cross_entropy",
                api_kind="native", device="cpu", device_name="cpu", dtype="float16",
                quantity="output", status="fail", kind="numeric", message="off")
    return Record(**{**base, **fields})  # type: ignore[arg-type]


def baseline_file(tmp_path: Path, text: str, name: str = "known.yaml") -> Path:
    return write(tmp_path / name, text)


# --- matching -------------------------------------------------------------------------------


def test_an_entry_matches_by_glob_list_and_pep440_range(tmp_path: Path) -> None:
    baseline = load_baseline([baseline_file(tmp_path, """\
- match: {framework: torch, version: "<2.14", api: "torch.nn.functional.cross_*",
          dtype: [float16, bfloat16], case: "case-*", quantity: output}
  kind: numeric
  reason: float16 sum
  link: https://example.invalid/1
""")])
    (entry,) = baseline.entries
    assert entry.matches(record())
    assert entry.matches(record(dtype="bfloat16"))
    assert not entry.matches(record(dtype="float32"))
    assert not entry.matches(record(framework_version="2.14.0"))  # fixed in 2.14: new
    assert not entry.matches(record(kind="special-value"))  # a known error turned into a NaN
    assert not entry.matches(record(quantity="grad"))
    assert not entry.matches(record(api="torch.nn.CrossEntropyLoss"))
    # a pass is matched whatever its kind (it has none), for the xpass
    assert entry.matches(record(status="pass", kind=None))


def test_versions_with_what_an_adapter_adds_are_compared_by_their_release(
        tmp_path: Path) -> None:
    baseline = load_baseline([baseline_file(tmp_path, """\
- match: {framework: jax, version: "==0.10.*"}
  reason: r
  link: l
""")])
    entry = baseline.entries[0]
    assert entry.matches(record(framework="jax",
                                framework_version="0.10.2 (jaxlib 0.10.2, optax 0.2.8)"))
    assert not entry.matches(record(framework="jax", framework_version="0.11.0 (jaxlib 0.11.0)"))
    assert not entry.matches(record(framework="jax", framework_version="unknown"))


def test_apply_keeps_the_verdict_and_adds_the_entry_beside_it(tmp_path: Path) -> None:
    path = baseline_file(tmp_path, """\
- match: {case: case-a}
  reason: known
  link: https://example.invalid/2
""")
    baseline = load_baseline([path])
    failed = baseline.apply(record())
    assert failed.status == "fail" and failed.kind == "numeric"  # the raw verdict is kept
    assert failed.baseline == {"outcome": "xfail", "reason": "known",
                               "link": "https://example.invalid/2", "entry": f"{path}:1"}
    assert baseline.apply(record(status="pass", kind=None)).baseline["outcome"] == "xpass"
    # unsupported and skip are never matched: a framework that did not run fixed nothing
    assert baseline.apply(record(status="unsupported", kind=None)).baseline is None
    assert baseline.apply(record(case_id="case-z")).baseline is None
    assert baseline.stale() == []


def test_records_with_baseline_fields_fit_the_closed_schema_and_old_ones_load() -> None:
    line = {"type": "result", **json.loads(json.dumps(record().__dict__))}
    assert check_line(line) is None  # baseline: None (every writer now writes it)
    line["baseline"] = {"outcome": "xfail", "reason": "r", "link": "l", "entry": "k.yaml:1"}
    assert check_line(line) is None
    line["baseline"] = {"outcome": "known"}
    assert "baseline.outcome: expected xfail or xpass" in (check_line(line) or "")
    old = {k: v for k, v in line.items() if k != "baseline"}  # a file of an older version
    assert check_line(old) is None


# --- loading errors name the file, the line and the field ----------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("- match: {case: a}\n  reason: r\n  link: l\n  comment: x\n",
     r"known\.yaml:4: \[0\]\.comment: unknown key 'comment'"),
    ("- match: {case: a, version: 'around 2'}\n  reason: r\n  link: l\n",
     r"known\.yaml:1: \[0\]\.match\.version: 'around 2' is not a PEP 440 specifier set"),
    ("- match: {case: a}\n  kind: nan\n  reason: r\n  link: l\n",
     r"known\.yaml:2: \[0\]\.kind: 'nan' is not valid here"),
    ("- match: {case: a}\n  reason: r\n", r"known\.yaml:1: \[0\]: 'link' is a required"),
    ("- match: {cases: a}\n  reason: r\n  link: l\n",
     r"known\.yaml:1: \[0\]\.match\.cases: unknown key 'cases'"),
    ("- match: {}\n  reason: r\n  link: l\n", r"known\.yaml:1: \[0\]\.match: .*"),
    ("- match: {case: [a\n", r"known\.yaml:\d+: not valid YAML"),
])
def test_a_bad_baseline_is_named_by_file_line_and_field(tmp_path: Path, text: str,
                                                        expected: str) -> None:
    path = baseline_file(tmp_path, text)
    with pytest.raises(BaselineError, match=expected):
        load_baseline([path])


def test_run_refuses_a_bad_baseline_with_exit_2(tmp_path: Path, stand_ins: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cases = write(tmp_path / "cases.yaml", CASES)
    bad = baseline_file(tmp_path, "- match: {case: a}\n  reason: r\n  link: l\n  why: x\n")
    code = main(["run", "--cases", str(cases), "--framework", "exact", "--out",
                 str(tmp_path / "r.jsonl"), "--baseline", str(bad)])
    assert code == 2
    assert f"{bad}:4: [0].why: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()


# --- a run with a baseline ------------------------------------------------------------------


def test_known_discrepancies_exit_0_new_ones_exit_1(tmp_path: Path, stand_ins: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cases = write(tmp_path / "cases.yaml", CASES)
    out = tmp_path / "r.jsonl"
    run = ["run", "--cases", str(cases), "--framework", "offset", "--out", str(out),
           "--overwrite"]
    assert main(run) == 1  # the offset stand-in fails every output
    capsys.readouterr()
    every = baseline_file(tmp_path, """\
- match: {framework: offset, case: "case-*", quantity: output}
  kind: [numeric, special-value]
  reason: the stand-in adds an offset
  link: not reported upstream yet
""")
    assert main([*run, "--baseline", str(every)]) == 0
    printed = capsys.readouterr().out
    records = [r for r in read_results([out]).records if r.framework == "offset"]
    fails = [r for r in records if r.status == "fail"]
    assert fails and all(r.baseline and r.baseline["outcome"] == "xfail" for r in fails)
    assert f"baseline: {len(fails)} known discrepancies (xfail), 0 fixed (xpass), 0 new" \
        in printed
    only_a = baseline_file(tmp_path, """\
- match: {framework: offset, case: case-a}
  reason: the stand-in adds an offset
  link: not reported upstream yet
- match: {framework: torch, case: case-a}
  reason: matches nothing here, torch does not run
  link: not reported upstream yet
- match: {framework: offset, case: case-a, dtype: bfloat16}
  reason: matches nothing although offset ran case-a (in other dtypes)
  link: not reported upstream yet
""", "only_a.yaml")
    assert main([*run, "--baseline", str(only_a)]) == 1  # case-b's failure is new
    printed = capsys.readouterr().out
    assert "baseline: 1 entries matched no record of this run although their framework " \
           "and case ran" in printed
    assert f"{only_a}:7" in printed and f"{only_a}:4" not in printed
    assert "baseline: 1 entries are for frameworks or cases not run here" in printed


def test_an_xpass_passes_unless_strict(tmp_path: Path, stand_ins: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cases = write(tmp_path / "cases.yaml", CASES)
    known = baseline_file(tmp_path, """\
- match: {framework: exact, case: case-b}
  reason: was wrong once
  link: https://example.invalid/3
""")
    run = ["run", "--cases", str(cases), "--framework", "exact", "--out",
           str(tmp_path / "r.jsonl"), "--overwrite", "--baseline", str(known)]
    assert main(run) == 0
    assert "xpass: case-b[exact-standin.softmax-cpu-float64] output" in capsys.readouterr().out
    assert main([*run, "--strict-baseline"]) == 1
    assert main(["run", "--cases", str(cases), "--framework", "exact", "--out",
                 str(tmp_path / "s.jsonl"), "--strict-baseline"]) == 2  # needs --baseline


# --- conformance baseline: drafting and keeping ---------------------------------------------


def test_one_entry_per_case_and_api_family() -> None:
    records = [
        record(), record(dtype="bfloat16"), record(quantity="grad", kind="special-value"),
        record(api="torch.nn.CrossEntropyLoss"),
        record(api="torch.compile(torch.nn.functional.cross_entropy)"),
        record(case_id="case-b"), record(status="pass", kind=None, case_id="case-c"),
        record(framework="jax", framework_version="0.10.2 (jaxlib 0.10.2)",
               api="jax.jit(optax.softmax_cross_entropy)"),
    ]
    draft = draft_baseline(records)
    assert [(e["match"]["framework"], e["match"]["case"]) for e in draft.new] == [
        ("jax", "case-a"), ("torch", "case-a"), ("torch", "case-b")]
    torch_a = draft.new[1]
    assert torch_a["match"]["api"] == ["torch.compile(torch.nn.functional.cross_entropy)",
                                       "torch.nn.CrossEntropyLoss",
                                       "torch.nn.functional.cross_entropy"]
    assert torch_a["match"]["dtype"] == ["bfloat16", "float16"]
    assert torch_a["match"]["quantity"] == ["grad", "output"]
    assert torch_a["match"]["version"] == "==2.13.*"
    assert draft.new[0]["match"]["version"] == "==0.10.*"
    assert torch_a["kind"] == ["numeric", "special-value"]
    assert (torch_a["reason"], torch_a["link"]) == ("", "")  # for a person to fill in
    assert api_family("tf.function(keras.losses.X(a=1))") == "keras.losses.X(a=1)"


def test_a_written_draft_loads_and_covers_every_discrepancy(tmp_path: Path) -> None:
    records = [record(), record(case_id="case-b", api='f(x, "quoted")'),
               record(framework="jax", framework_version="0.10.2", kind="behaviour")]
    write_draft(draft_baseline(records), tmp_path / "k.yaml", "header\nsecond line")
    baseline = load_baseline([tmp_path / "k.yaml"])
    assert len(baseline.entries) == 3
    assert all(baseline.apply(r).baseline["outcome"] == "xfail" for r in records)
    assert (tmp_path / "k.yaml").read_text().startswith("# header\n# second line\n")


def test_regenerating_keeps_the_entries_reason_and_link(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from tests.report_samples import result, small_run, write_results

    results = write_results(tmp_path / "r.jsonl", small_run())
    failing = [r for r in read_results([results]).records if r.status in ("fail", "error")]
    assert len({r.case_id for r in failing}) >= 2
    known = tmp_path / "known.yaml"
    assert main(["baseline", str(results), "-o", str(known)]) == 0
    assert main(["baseline", str(results), "-o", str(known)]) == 2  # exists: not replaced
    entries = yaml.safe_load(known.read_text())
    entries[0]["reason"], entries[0]["link"] = "understood", "https://example.invalid/4"
    kept_case = entries[0]["match"]["case"]
    stale = {"match": {"case": "no-such-case"}, "reason": "old", "link": NOT_REPORTED}
    known.write_text(yaml.safe_dump([*entries[:1], stale]))
    more = write_results(tmp_path / "more.jsonl",
                         [*small_run(), result("c-new", "fail", kind="numeric")])
    assert main(["baseline", str(more), "-o", str(known), "--keep", str(known)]) == 0
    assert "dropped" in capsys.readouterr().err
    regenerated = yaml.safe_load(known.read_text())
    assert regenerated[0]["reason"] == "understood"
    assert regenerated[0]["match"]["case"] == kept_case
    cases = [e["match"]["case"] for e in regenerated]
    assert "no-such-case" not in cases and "c-new" in cases
    everything = load_baseline([known])
    assert all(everything.apply(r).baseline for r in read_results([more]).records
               if r.status in ("fail", "error"))


# --- the shipped baselines ------------------------------------------------------------------

SHIPPED = sorted((ROOT / "baselines").glob("*.yaml"))
URL = re.compile(r"^https://(github\.com|docs\.|[a-z0-9.-]+\.(org|dev|io))/\S+$")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_entry_has_a_reason_and_a_real_link_or_says_none(path: Path) -> None:
    baseline = load_baseline([path])
    assert baseline.entries
    for entry in baseline.entries:
        assert entry.reason.strip(), entry.where
        assert entry.link == NOT_REPORTED or URL.match(entry.link), entry.where
        assert entry.version is not None, f"{entry.where}: pinned to the audited versions"


def test_the_pinned_baseline_is_shipped() -> None:
    assert (ROOT / "baselines" / "pinned.yaml") in SHIPPED


def test_a_known_discrepancy_that_turns_into_another_kind_is_new(tmp_path: Path) -> None:
    baseline = load_baseline([baseline_file(tmp_path, """\
- match: {case: case-a}
  kind: numeric
  reason: r
  link: l
""")])
    assert baseline.apply(replace(record(), kind="special-value")).baseline is None


# --- the pytest plugin's --conformance-baseline ---------------------------------------------

PLUGIN_CASES = """\
cases:
  - id: three-classes
    source: a test
    op: cross_entropy
    input: [[1.0, 2.0, 3.0]]
    target: [0]
    dtypes: [float32, float64]
"""


def test_pytest_items_xfail_xpass_and_fail_by_the_baseline(pytester: pytest.Pytester,
                                                           stand_ins: None) -> None:
    cases = pytester.makefile(".yaml", mine=PLUGIN_CASES)
    known = pytester.makefile(".yaml", known="""\
- match: {framework: offset, case: three-classes, dtype: float32, quantity: output}
  reason: the stand-in adds an offset
  link: not reported upstream yet
- match: {framework: exact, case: three-classes, dtype: float64}
  reason: fixed long ago
  link: https://example.invalid/5
- match: {framework: nowhere}
  reason: not run here, not listed
  link: not reported upstream yet
- match: {framework: exact, case: three-classes, dtype: float16}
  reason: stale
  link: not reported upstream yet
""")
    args = [str(cases), "--conformance-framework", "offset", "--conformance-framework",
            "exact", "--conformance-baseline", str(known), "-rxX"]
    result = pytester.runpytest(*args)
    # offset float32: known (xfail); offset float64: new (fail); exact float64: xpass
    result.assert_outcomes(passed=1, failed=1, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines([
        "*1 baseline entries matched no record although their framework and case ran*",
        "*known.yaml:10",
        "*XFAIL*three-classes?offset-cross_entropy-cpu-float32?*the stand-in adds an offset*",
        "*XPASS*three-classes?exact-cross_entropy-cpu-float64?*fixed long ago*",
    ])
    strict = pytester.runpytest(*args, "--conformance-strict-baseline")
    strict.assert_outcomes(passed=1, failed=2, xfailed=1)
    bad = pytester.makefile(".yaml", bad="- match: {case: a}\n  reason: r\n")
    broken = pytester.runpytest(str(cases), "--conformance-framework", "exact",
                                "--conformance-baseline", str(bad))
    assert broken.ret != 0
    broken.stderr.fnmatch_lines(["*--conformance-baseline:*bad.yaml:1: [[]0[]]*link*"])


# --- the report shows xfail and xpass, linked, and the reproducer command -------------------


def test_the_report_shows_xfail_and_xpass_with_their_links(tmp_path: Path) -> None:
    from conformance.report.discrepancies import unpack
    from conformance.report.page import write_report
    from tests.report_samples import environment, result, write_results

    known = {"outcome": "xfail", "reason": "float16 sum", "entry": "k.yaml:1",
             "link": "https://github.com/pytorch/pytorch/issues/85791"}
    fixed = {"outcome": "xpass", "reason": "was wrong", "entry": "k.yaml:5",
             "link": "not reported upstream yet"}
    lines = [environment(),
             result("c-known", "fail", kind="numeric", baseline=known,
                    job="c-known|cross_entropy|cpu|float32", job_records=1),
             result("c-new", "fail", kind="numeric", job="c-new|cross_entropy|cpu|float32",
                    job_records=1),
             result("c-fixed", baseline=fixed, job="c-fixed|cross_entropy|cpu|float32",
                    job_records=1),
             result("c-pass")]
    results = write_results(tmp_path / "r.jsonl", lines)
    page = write_report([results], tmp_path / "report.html").path.read_text()
    assert page.count('class="badge s-xfail"') == 1
    assert 'href="https://github.com/pytorch/pytorch/issues/85791"' in page
    assert page.count('class="badge s-xpass"') == 1  # the fixed record is listed
    assert "c-pass" not in page.split('id="disc-table"')[1].split("</table>")[0]
    data = unpack(page.split('data-gzip="')[1].split('"')[0])
    text = json.dumps(data)
    assert "conformance repro RESULTS.jsonl --case c-known --framework torch --api " \
           "cross_entropy --dtype float32 --device cpu --quantity output -o repro.py" in text
    assert "float16 sum (https://github.com/pytorch/pytorch/issues/85791; k.yaml:1)" in text
