"""--shard K/N and auto: a deterministic, balanced partition of whole cases; shards merged give
the records of one run; --oracle-only fills the cache and runs no framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cases.loading import load_cases
from conformance.cli import main
from conformance.results.jsonl import read_results
from conformance.run.shards import ShardError, case_cost, parse_shard, shard_cases
from tests.conftest import ROOT, write

CASES = "cases:\n" + "".join(f"""\
  - id: case-{i}
    source: test
    op: cross_entropy
    input: [{[round(0.1 * j + i, 2) for j in range(2 + i % 4)]}]
    target: [{i % 2}]
    dtypes: [float64, float32]
""" for i in range(7)) + """\
  - id: case-softmax
    source: test
    op: softmax
    input: [1.0, 2.0, 3.0]
    dtypes: [float64]
    documented: [0.09003057, 0.24472847, 0.66524096]
"""


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    return write(tmp_path / "cases.yaml", CASES)


@pytest.mark.parametrize(("value", "expected"), [("1/3", (1, 3)), (" 3/3 ", (3, 3)),
                                                 ("1/1", (1, 1))])
def test_k_of_n(value: str, expected: tuple[int, int]) -> None:
    assert parse_shard(value, {}) == expected


@pytest.mark.parametrize("value", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", "1/3/2", ""])
def test_a_bad_shard_is_refused(value: str) -> None:
    with pytest.raises(ShardError, match="expected K/N with 1 <= K <= N"):
        parse_shard(value, {})


@pytest.mark.parametrize(("environ", "expected"), [
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, (1, 4)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3",
      "SLURM_ARRAY_TASK_MIN": "1"}, (3, 3)),  # --array=1-3
    ({"JOB_COMPLETION_INDEX": "2", "CONFORMANCE_SHARD_COUNT": "5"}, (3, 5)),
    ({"CONFORMANCE_SHARD": "2/2", "SLURM_ARRAY_TASK_ID": "0",
      "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 2)),  # the explicit variable first
])
def test_auto_reads_the_schedulers_index(environ: dict[str, str],
                                         expected: tuple[int, int]) -> None:
    assert parse_shard("auto", environ) == expected


@pytest.mark.parametrize(("environ", "message"), [
    ({}, "none of"),
    ({"SLURM_ARRAY_TASK_ID": "1"}, "not \\$SLURM_ARRAY_TASK_COUNT"),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "outside 0..3"),
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"}, "'x', not an integer"),
    ({"JOB_COMPLETION_INDEX": "0"}, "set \\$CONFORMANCE_SHARD_COUNT"),
    ({"CONFORMANCE_SHARD": "5/4"}, "CONFORMANCE_SHARD: expected K/N"),
])
def test_auto_without_a_usable_index_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ShardError, match=message):
        parse_shard("auto", environ)


def test_run_refuses_a_bad_shard_with_exit_2(cases: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONFORMANCE_SHARD", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "r.jsonl"
    assert main(["run", "--cases", str(cases), "--out", str(out), "--shard", "4/3"]) == 2
    assert "--shard: expected K/N with 1 <= K <= N (e.g. 2/4) or 'auto', got '4/3'" in \
        capsys.readouterr().err
    assert main(["run", "--cases", str(cases), "--out", str(out), "--shard", "auto"]) == 2
    assert "--shard auto: none of" in capsys.readouterr().err
    assert not out.exists()


def test_the_shards_partition_the_cases_deterministically_and_in_balance() -> None:
    library = load_cases([ROOT / "cases"])
    for n in (1, 2, 3, 7):
        parts = [shard_cases(library, (k, n)) for k in range(1, n + 1)]
        ids = [c.id for part in parts for c in part]
        assert sorted(ids) == sorted(c.id for c in library)  # each case exactly once
        assert parts == [shard_cases(library, (k, n)) for k in range(1, n + 1)]  # determinism
        loads = [sum(case_cost(c) for c in part) for part in parts]
        # the longest-processing-time rule: no shard exceeds another by more than one case
        assert max(loads) - min(loads) <= max(case_cost(c) for c in library)
    assert shard_cases(library, None) is library


def test_shards_merged_give_the_records_of_one_run(cases: Path, tmp_path: Path,
                                                   stand_ins: None) -> None:
    whole = tmp_path / "whole.jsonl"
    run = ["run", "--cases", str(cases), "--framework", "exact", "offset", "--exit-zero"]
    assert main([*run, "--out", str(whole)]) == 0
    parts = []
    for k in (1, 2, 3):
        part = tmp_path / f"shard-{k}.jsonl"
        assert main([*run, "--out", str(part), "--shard", f"{k}/3"]) == 0
        parts.append(part)
    shard_cases_run = [{r.case_id for r in read_results([p]).records} for p in parts]
    assert all(shard_cases_run) and not set.intersection(*shard_cases_run)
    merged = tmp_path / "merged.jsonl"
    assert main(["merge", *map(str, parts), "-o", str(merged)]) == 0
    same = subprocess.run([sys.executable, str(ROOT / "scripts" / "same_records.py"),
                           "--unordered", str(whole), str(merged)],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout
    assert "the same" in same.stdout
    # and the check can fail: one shard missing is noticed
    short = tmp_path / "short.jsonl"
    assert main(["merge", *map(str, parts[:2]), "-o", str(short)]) == 0
    assert subprocess.run([sys.executable, str(ROOT / "scripts" / "same_records.py"),
                           "--unordered", str(whole), str(short)],
                          capture_output=True).returncode == 1


def test_oracle_only_fills_the_cache_of_its_shard_and_writes_no_results(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "none.jsonl"
    assert main(["run", "--cases", str(cases), "--oracle-only", "--cache", str(cache),
                 "--out", str(out), "--shard", "1/2"]) == 0
    assert not out.exists()
    first = {p.name for p in cache.rglob("*.npz")}
    assert first and "oracle:" in capsys.readouterr().out
    assert main(["run", "--cases", str(cases), "--oracle-only", "--cache", str(cache),
                 "--shard", "2/2"]) == 0
    both = {p.name for p in cache.rglob("*.npz")}
    assert first < both
    # the cache of both shards is all a full run needs: it computes nothing more
    assert main(["run", "--cases", str(cases), "--oracle-only", "--cache", str(cache)]) == 0
    assert "oracle: 0 result(s) computed" in capsys.readouterr().out
    assert {p.name for p in cache.rglob("*.npz")} == both
    assert main(["run", "--cases", str(cases), "--oracle-only", "--no-cache"]) == 2
