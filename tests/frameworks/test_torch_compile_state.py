"""torch.compile twins whose records depend only on the job (issue 12, items 1 and 7).

A compiled twin must run compiled, whatever the suite's own limits (Dynamo's recompile limits
are ours to choose), and give the same values whatever the process compiled before the job:
an uninterrupted run, a resumed one and a fresh worker after a crash all write the same
records.  ``torch._dynamo.reset()`` stands for a fresh process ("as if you had started a
fresh process invocation", its docstring says).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (tox -e torch installs it)")

from torch._dynamo.utils import counters  # noqa: E402

from conformance import cli  # noqa: E402
from conformance.adapters import torch_adapter  # noqa: E402
from conformance.adapters.base import Outcome  # noqa: E402
from conformance.adapters.torch_adapter import TorchAdapter  # noqa: E402
from conformance.cases.loading import Case, load_file  # noqa: E402
from conformance.cases.problem import make_problem  # noqa: E402
from conformance.judge.check import check_case  # noqa: E402
from tests.conftest import write  # noqa: E402

# Two shapes of one rank (the second is seed-003-batch-of-three of cases/seeds.yaml, whose
# compiled float32 loss and gradient differed between a run and its resumption), then
# the second input again with label smoothing.
CASES = """\
defaults: {source: tests/frameworks/test_torch_compile_state.py, dtypes: [float32],
           op: cross_entropy}
cases:
  - {id: first, input: [[0.3367, 0.1288, 0.2345, 0.2303, -1.1229]], target: [0]}
  - {id: second, input: [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], target: [2, 1, 0]}
  - {id: third, input: [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], target: [2, 1, 0],
     label_smoothing: 0.1}
  - {id: fourth, input: [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], target: [2, 1, 0],
     label_smoothing: 0.3}
"""


@pytest.fixture(scope="module")
def compiler_works() -> None:
    try:
        torch.compile(lambda x: x * 2)(torch.ones(3))
    except Exception as error:
        pytest.skip(f"torch.compile cannot build on this machine: {type(error).__name__}")


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    """Nothing compiled before the test, nothing left after it."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def cases(tmp_path: Path, text: str = CASES) -> dict[str, Case]:
    return {case.id: case for case in load_file(write(tmp_path / "cases.yaml", text))}


def run_after(adapter: TorchAdapter, api_id: str, *jobs: Case) -> Outcome:
    """The last job's outcome, in a process that ran the ones before it (and nothing else)."""
    api = next(a for a in adapter.apis() if a.id == api_id)
    torch._dynamo.reset()
    outcomes = [adapter.run(api, make_problem(case, "float32"), adapter.devices()[0])
                for case in jobs]
    return outcomes[-1]


@pytest.mark.parametrize("before, job", [("first", "second"), ("fourth", "third")],
                         ids=["after-another-shape", "after-another-smoothing"])
def test_a_compiled_job_gives_the_same_values_whatever_the_process_compiled_before(
    tmp_path: Path, compiler_works: None, fresh_dynamo: None, before: str, job: str,
) -> None:
    known = cases(tmp_path)
    adapter = TorchAdapter()
    alone = run_after(adapter, "compile-cross_entropy", known[job])
    after = run_after(adapter, "compile-cross_entropy", known[before], known[job])
    assert alone.status == after.status == "ok", (alone, after)
    assert alone.output is not None and after.output is not None
    assert alone.grad is not None and after.grad is not None
    assert alone.output.tobytes() == after.output.tobytes(), (alone.output, after.output)
    assert np.array_equal(alone.grad, after.grad), alone.grad - after.grad


def result_records(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Each job's records, in order (environment and adapter lines left out)."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("type") == "result":
            jobs.setdefault(record["job"], []).append(record)
    return jobs


def test_a_resumed_run_writes_the_records_of_an_uninterrupted_one(
    tmp_path: Path, compiler_works: None,
) -> None:
    path = write(tmp_path / "cases.yaml", CASES)
    run = ["run", "--cases", str(path), "--framework", "torch", "--exit-zero"]
    whole = tmp_path / "whole.jsonl"
    assert cli.main([*run, "--out", str(whole)]) == 0
    lines = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    # cut after the first case's last record: the resumed worker starts with the second
    cut = max(i for i, line in enumerate(lines) if json.loads(line).get("case_id") == "first")
    resumed = tmp_path / "resumed.jsonl"
    resumed.write_text("".join(lines[: cut + 1]), encoding="utf-8")
    assert cli.main([*run, "--out", str(resumed), "--resume"]) == 0
    expected, got = result_records(whole), result_records(resumed)
    assert any(job.split("|")[1].startswith("compile-") for job in expected)
    assert sorted(got) == sorted(expected)
    for job, records in expected.items():
        assert got[job] == records, job


LIMIT_CASES = """\
defaults: {source: tests/frameworks/test_torch_compile_state.py, dtypes: [float32],
           op: cross_entropy, input: [[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], target: [2, 0]}
cases:
  - {id: none, reduction: none}
  - {id: mean, reduction: mean}
  - {id: sum, reduction: sum}
  - {id: none-smoothed, reduction: none, label_smoothing: 0.25}
  - {id: mean-again, reduction: mean}
"""


@pytest.mark.parametrize("ahead", [True, False], ids=["reset-ahead", "reset-on-the-limit"])
def test_past_the_recompile_limits_every_compiled_job_still_runs_compiled(
    tmp_path: Path, compiler_works: None, fresh_dynamo: None,
    monkeypatch: pytest.MonkeyPatch, ahead: bool,
) -> None:
    """Five jobs past a limit of two compilations (both of Dynamo's limits): each one is
    compiled (a graph apiece) and passes; none names a limit.  The adapter resets Dynamo
    before the limit; without that (``reset-on-the-limit``), hitting it does."""
    monkeypatch.setattr(torch_adapter, "RECOMPILE_LIMIT", 2)
    if not ahead:
        monkeypatch.setattr(TorchAdapter, "_make_room", lambda *arguments: None,
                            raising=False)
    adapter = TorchAdapter()
    api = next(a for a in adapter.apis() if a.id == "compile-cross_entropy")
    graphs = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(accumulated_recompile_limit=2, recompile_limit=2):
        records = [record for case in cases(tmp_path, LIMIT_CASES).values()
                   for record in check_case(case, adapter, api, adapter.devices()[0],
                                            "float32")]
    for record in records:
        assert record.status == "pass", record
        assert "limit" not in record.message.lower(), record.message
    assert len(records) == 10  # an output and a gradient each
    assert counters["stats"]["unique_graphs"] - graphs >= 5  # compiled, none run eagerly


def test_a_limit_still_hit_after_a_reset_is_the_suites_failure_never_unsupported(
    tmp_path: Path, compiler_works: None, fresh_dynamo: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were a reset not to help, the job is raised out of the adapter (the worker records
    the check's crash), in torch's words: never ``unsupported``, a verdict on torch."""
    monkeypatch.setattr(torch_adapter, "RECOMPILE_LIMIT", 1)
    adapter = TorchAdapter()
    known = cases(tmp_path, LIMIT_CASES)
    run_after(adapter, "compile-cross_entropy", known["none"])
    monkeypatch.setattr(torch._dynamo, "reset", lambda: None)  # a reset that frees nothing
    api = next(a for a in adapter.apis() if a.id == "compile-cross_entropy")
    with pytest.raises(torch_adapter.SuiteLimit, match=r"recompile limit .*even after") as raised:
        adapter.run(api, make_problem(known["mean"], "float32"), adapter.devices()[0])
    assert "recompile_limit" in str(raised.value)  # torch's own message, quoted


def test_a_limit_hit_inside_an_eager_function_is_reset_and_run_again_never_its_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ``--impl`` function that compiles inside (cut-cross-entropy's kernel) meets Dynamo's
    limits counted over every job of the process: the adapter resets Dynamo and runs the job
    again; a limit still hit after that is the suite's (SuiteLimit), never an ``error``."""
    adapter = TorchAdapter()
    api = next(a for a in adapter.apis() if a.id == "cross_entropy")
    problem = make_problem(cases(tmp_path, LIMIT_CASES)["mean"], "float32")
    real_attempt, resets = adapter._attempt, []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    hits = iter([True])

    def attempt(*args: Any) -> Outcome:
        if next(hits, False):
            raise torch._dynamo.exc.FailOnRecompileLimitHit("recompile_limit reached")
        return real_attempt(*args)

    monkeypatch.setattr(adapter, "_attempt", attempt)
    outcome = adapter.run(api, problem, adapter.devices()[0])
    assert (outcome.status, len(resets)) == ("ok", 1)
    assert outcome.output is not None and np.isfinite(outcome.output).all()

    def always(*args: Any) -> Outcome:
        raise torch._dynamo.exc.FailOnRecompileLimitHit("recompile_limit reached")

    monkeypatch.setattr(adapter, "_attempt", always)
    with pytest.raises(torch_adapter.SuiteLimit, match="even after"):
        adapter.run(api, problem, adapter.devices()[0])
