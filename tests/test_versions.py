"""Two versions of one framework: side by side in the report, paired in `conformance
pairwise`, and the comparisons that changed between them (conformance/report/versions.py)."""

from __future__ import annotations

from dataclasses import replace

from conformance.judge.pairwise import pairs_from_records
from conformance.report.versions import (
    change_lines,
    changes_between_versions,
    framework_versions,
    versions_section,
)
from conformance.results.merge import Merged
from conformance.results.records import Record

F32_STEP = 2.0 ** -23


def record(version: str, status: str = "pass", **fields: object) -> Record:
    base = Record(case_id="c", op="softmax", group="g", framework="jax",
                  framework_version=version, api="jax.nn.softmax", api_kind="native",
                  device="cpu", device_name="a CPU", dtype="float32", quantity="output",
                  status=status, actual=[0.5, 0.5], environment_id=f"env-{version}")
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_comparison_whose_verdict_differs_between_versions_is_a_change() -> None:
    records = [
        record("0.10.2"), record("0.12.0", "fail", message="3 ulp off"),
        record("0.10.2", case_id="same"), record("0.12.0", case_id="same"),  # no change
        record("0.10.2", "fail", case_id="both-fail"), record("0.12.0", "error",
                                                              case_id="both-fail"),
        record("0.10.2", case_id="gone"), record("0.12.0", "unsupported", case_id="gone"),
        record("0.10.2", "error", case_id="fixed"), record("0.12.0", case_id="fixed"),
        record("1", framework="torch"),  # one version: nothing to compare
    ]
    assert framework_versions(records) == {"jax": ["0.10.2", "0.12.0"], "torch": ["1"]}
    changes = changes_between_versions(records)
    assert [(c.case_id, c.old_status, c.new_status) for c in changes] == [
        ("both-fail", "fail", "error"), ("c", "pass", "fail"), ("fixed", "error", "pass")]
    assert changes[1].new_message == "3 ulp off"
    assert change_lines(changes)[1] == (
        "jax c [float32 cpu] output jax.nn.softmax: 0.10.2 pass -> 0.12.0 fail")


def test_a_failure_in_any_environment_of_a_version_is_not_hidden_by_a_pass() -> None:
    records = [record("0.10.2"), record("0.10.2", "fail", environment_id="other-machine"),
               record("0.12.0")]
    (change,) = changes_between_versions(records)
    assert (change.old_status, change.new_status) == ("fail", "pass")


def test_devices_pair_by_kind_across_machines() -> None:
    adapters = [{"framework": "jax", "devices": [{"id": "cpu", "kind": "cpu"}]}]
    records = [record("0.10.2"), record("0.12.0", "fail")]
    assert changes_between_versions(records, adapters)[0].device == "cpu"


def test_the_report_section_shows_versions_side_by_side_and_the_changes() -> None:
    merged = Merged(records=[record("0.10.2"), record("0.12.0", "fail"),
                             record("0.12.0", case_id="d")])
    html = versions_section(merged)
    assert "jax 0.10.2" in html and "jax 0.12.0" in html
    assert "Changed between versions (1)" in html and "1 comparisons judged" in html
    assert "0.12.0: fail" in html
    assert "records of one version" in versions_section(Merged(records=[record("0.10.2")]))
    unchanged = versions_section(Merged(records=[record("0.10.2"), record("0.12.0")]))
    assert "Changed between versions (0)" in unchanged and "No comparison" in unchanged


def test_pairwise_compares_two_versions_of_one_framework_across_environments() -> None:
    records = [record("0.10.2", actual=[0.5, 0.5]),
               record("0.12.0", actual=[0.5, 0.5 + F32_STEP / 2]),
               record("2.13.0", framework="torch", api="torch.softmax", actual=[0.5, 0.5],
                      environment_id="env-0.10.2")]
    pairs = {(p.framework_a, p.framework_b): p for p in pairs_from_records(records)}
    assert set(pairs) == {("jax 0.10.2", "jax 0.12.0"), ("jax 0.10.2", "torch 2.13.0"),
                          ("jax 0.12.0", "torch 2.13.0")}
    assert pairs[("jax 0.10.2", "jax 0.12.0")].max_ulp_error == 1
    assert pairs[("jax 0.10.2", "torch 2.13.0")].max_ulp_error == 0
    # versions of one framework pair each API with itself only
    other_api = record("0.12.0", api="jax.other", actual=[0.75, 0.25])
    assert not [p for p in pairs_from_records([records[0], other_api])
                if p.framework_a.startswith("jax") and p.framework_b.startswith("jax")]
    # one version each: frameworks by name, within one environment, as before
    same = pairs_from_records([record("1"), record("1", framework="torch",
                                                    environment_id="env-1")])
    assert [(p.framework_a, p.framework_b) for p in same] == [("jax", "torch")]
