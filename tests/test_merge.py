"""Merging results files: environments kept apart, identical duplicates merged, conflicting
duplicates kept and marked, idempotence; and the report of a merge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.report.page import write_report
from conformance.results.merge import comparison_key, merge_results, write_merged
from tests.report_samples import (
    ENV_A,
    ENV_B,
    adapter,
    environment,
    nodes,
    report_data,
    result,
    small_run,
    with_details,
    write_results,
)


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    return write_results(tmp_path / "laptop.jsonl", small_run(ENV_A))


@pytest.fixture
def gpu_box(tmp_path: Path) -> Path:
    gpu = [{"id": "cuda:0", "kind": "gpu", "name": "Example GPU 80GB"}]
    return write_results(tmp_path / "gpu.jsonl", [
        environment(ENV_B, host="gpu-box"),
        adapter(ENV_B, devices=gpu),
        result("c-pass", environment_id=ENV_B, device="cuda:0", device_name="Example GPU 80GB"),
        result("c-numeric", "fail", kind="numeric", environment_id=ENV_B, device="cuda:0",
               device_name="Example GPU 80GB", max_ulp_error=9.0, group="edge-values"),
    ])


def test_two_environments_are_kept_apart(laptop: Path, gpu_box: Path) -> None:
    merged = merge_results([laptop, gpu_box])
    assert list(merged.environments) == [ENV_A, ENV_B]
    assert [e.label for e in merged.environments.values()] == ["laptop [aaaaaa]",
                                                               "gpu-box [bbbbbb]"]
    assert len(merged.records) == 7 + 2 and not merged.conflicts and merged.duplicates == 0
    # the same case on each machine is two comparisons, not a conflict
    keys = {comparison_key(r) for r in merged.records if r.case_id == "c-numeric"}
    assert len(keys) == 2


def test_report_of_two_environments(laptop: Path, gpu_box: Path, tmp_path: Path) -> None:
    text = write_report([laptop, gpu_box], tmp_path / "report.html").path.read_text()
    for expected in ("laptop [aaaaaa]", "gpu-box [bbbbbb]", "cuda:0: Example GPU 80GB",
                     "cpu: Example CPU 9000"):
        assert expected in text
    # environment selectors appear once there are two, in the overview and the table
    assert 'data-dim="env"' in text and 'data-filter="env"' in text
    # a cause's row lists every environment and device its records come from
    assert re.search(f'data-env="[^"]*[|]{ENV_B}[|]', text)
    assert re.search('data-device="[^"]*[|]cuda:0[|]', text)


def test_merging_is_idempotent(laptop: Path, gpu_box: Path, tmp_path: Path) -> None:
    once = tmp_path / "once.jsonl"
    write_merged(merge_results([laptop, gpu_box]), once)
    again = merge_results([once, laptop, gpu_box, laptop])
    assert again.duplicates == 2 * 7 + 2 and not again.conflicts
    twice = tmp_path / "twice.jsonl"
    write_merged(again, twice)
    assert twice.read_text() == once.read_text()
    self_merge = merge_results([laptop, laptop])
    assert len(self_merge.records) == 7 and len(self_merge.environments[ENV_A].runs) == 1


def test_conflicting_duplicates_are_kept_and_marked(laptop: Path, tmp_path: Path) -> None:
    rerun = write_results(tmp_path / "rerun.jsonl", [
        environment(ENV_A, started="2026-01-03T00:00:00+00:00"),
        result("c-pass", "fail", kind="numeric", actual=[0.5, 1.5], max_ulp_error=7.0),
        result("c-pass", quantity="grad", max_ulp_error=0.75, extra={"seconds": 1.5}),
    ])
    merged = merge_results([laptop, rerun])
    # the grad differs only in extra: a duplicate; the output's verdict differs: a conflict
    assert merged.duplicates == 1 and len(merged.records) == 8
    assert len(merged.conflicts) == 1
    (key, indices), = merged.conflicts.items()
    assert key[1] == "c-pass" and len(indices) == 2
    assert {merged.records[i].status for i in indices} == {"pass", "fail"}
    assert [merged.sources[i] for i in indices] == [f"{laptop}:3", f"{rerun}:2"]
    assert len(merged.environments[ENV_A].runs) == 2  # two runs of one machine
    page = write_report([laptop, rerun], tmp_path / "report.html").path.read_text()
    text = with_details(page)  # and the records and details the page's script builds
    assert page.count('class="badge s-conflict"') == 1  # the row of their cause says so,
    data = report_data(page)
    assert len(nodes(data["groups"], "span", class_="badge s-conflict")) == 2  # and each record
    assert "1 comparison(s) have conflicting duplicates" in text
    assert f"from {laptop}:3, {rerun}:2" in text
    assert '<option value="conflict">conflicting duplicates</option>' in text


def test_two_framework_versions_on_one_machine_are_no_conflict(laptop: Path,
                                                                tmp_path: Path) -> None:
    older = write_results(tmp_path / "older.jsonl", [
        environment(ENV_A, command="conformance run (torch 2.12)"),
        adapter(ENV_A, version="2.12.0+cpu"),
        result("c-pass", "fail", kind="numeric", framework_version="2.12.0+cpu",
               max_ulp_error=5.0),
    ])
    merged = merge_results([laptop, older])
    assert not merged.conflicts and len(merged.records) == 8
    text = write_report([laptop, older], tmp_path / "report.html").path.read_text()
    assert "torch 2.12.0+cpu" in text and "conformance run (torch 2.12)" in text


def test_cli_merge(laptop: Path, gpu_box: Path, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged.jsonl"
    assert main(["merge", str(laptop), str(gpu_box), str(laptop), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 environments, 9 records, 7 identical duplicates dropped, 0 comparisons" in printed
    assert len(out.read_text().splitlines()) == 2 + 2 + 9


def test_malformed_line_names_file_and_line(laptop: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "result", "case_id": "x"}\n{"type": "nonsense"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not a result record"):
        merge_results([laptop, bad])
    bad.write_text('{"type": "nonsense"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: .*expected a line with type"):
        merge_results([bad])
