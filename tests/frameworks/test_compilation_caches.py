"""A compilation cache the suite cannot use costs the cache, not the records (issue 12, item 10).

TorchInductor's cache (``$TORCHINDUCTOR_CACHE_DIR``) and JAX's persistent compilation cache
(``$JAX_COMPILATION_CACHE_DIR``) that cannot be written or read are the suite's setting: the
compiled twins still run compiled and pass, nothing is ``unsupported`` or ``error``, and
stderr says it once.  Tests run as root, so a read-only directory would not stop writes: a
path below a regular file, a regular file where the directory should be, and a cache whose
entries were emptied stand for the unusable caches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance import cli
from conformance.cases.loading import Case, load_file
from conformance.judge.check import check_case
from tests.conftest import ROOT, write

CASES = """\
defaults: {source: tests/frameworks/test_compilation_caches.py, dtypes: [float32]}
cases:
  - {id: loss, op: cross_entropy, input: [[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], target: [2, 0]}
  - {id: softmax, op: softmax, input: [[0.5, -1.0, 2.0, 0.25]]}
"""

KINDS = ("below-a-file", "a-file", "emptied-entries")


def unusable(tmp_path: Path, kind: str) -> Path:
    """A cache directory that cannot be used, as ``kind`` says (emptied-entries: the
    directory is returned empty; ``damage`` empties it once something was compiled there)."""
    blocker = write(tmp_path / "a-file", "not a directory\n")
    return {"below-a-file": blocker / "cache", "a-file": blocker,
            "emptied-entries": tmp_path / "cache"}[kind]


def damage(directory: Path) -> int:
    """Empty every compiled library (``.so``) under ``directory``; how many were emptied.
    Each is replaced by an empty file, not truncated: this process still maps the old ones."""
    emptied = 0
    for path in list(directory.rglob("*.so")):
        if path.is_file():
            empty = path.with_name(path.name + ".empty")
            empty.write_bytes(b"")
            os.replace(empty, path)
            emptied += 1
    return emptied


def cases(tmp_path: Path) -> list[Case]:
    return load_file(write(tmp_path / "cases.yaml", CASES))


# --- TorchInductor, in this process ---------------------------------------------------------


def compile_elsewhere(cases_path: Path, directory: Path) -> None:
    """Run the compiled twins on the cases in another process, caching in ``directory``."""
    code = (
        "import sys\n"
        "from conformance.adapters.torch_adapter import TorchAdapter\n"
        "from conformance.cases.loading import load_file\n"
        "from conformance.judge.check import check_case\n"
        "adapter = TorchAdapter()\n"
        "for case in load_file(sys.argv[1]):\n"
        "    for api in adapter.apis_for(case.op):\n"
        "        if api.id.startswith('compile-'):\n"
        "            for record in check_case(case, adapter, api, adapter.devices()[0],"
        " 'float32'):\n"
        "                assert record.status == 'pass', record\n"
    )
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(directory)}
    done = subprocess.run([sys.executable, "-c", code, str(cases_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def inductor_cache() -> Iterator[Callable[[Path], None]]:
    """``use(path)``: TorchInductor writes to ``path`` from now on, as in a fresh process;
    the cache this process had is given back afterwards."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from torch._inductor.utils import clear_caches

    original = os.environ.get("TORCHINDUCTOR_CACHE_DIR")

    def use(path: Path) -> None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
        clear_caches()
        torch._dynamo.reset()

    yield use
    if original is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = original
    clear_caches()
    torch._dynamo.reset()


@pytest.mark.parametrize("kind", KINDS)
def test_an_unusable_inductor_cache_leaves_every_compiled_twin_compiled_and_passing(
    tmp_path: Path, kind: str, inductor_cache: Callable[[Path], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("torch", reason="PyTorch is not installed")
    from torch._dynamo.utils import counters

    from conformance.adapters.torch_adapter import TorchAdapter

    directory = unusable(tmp_path, kind)
    adapter = TorchAdapter()
    device = adapter.devices()[0]
    jobs = [(case, api) for case in cases(tmp_path) for api in adapter.apis_for(case.op)
            if api.id.startswith("compile-")]
    if kind == "emptied-entries":  # what an earlier run compiled, since damaged
        compile_elsewhere(tmp_path / "cases.yaml", directory)
        assert damage(directory) > 0
    inductor_cache(directory)
    capsys.readouterr()
    graphs = counters["stats"]["unique_graphs"]
    records = [record for case, api in jobs
               for record in check_case(case, adapter, api, device, "float32")]
    assert [r.status for r in records] == ["pass"] * len(records), records
    assert counters["stats"]["unique_graphs"] - graphs >= len(jobs)  # compiled, not eager
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if "TorchInductor cache" in line]
    assert len(warnings) == 1, warnings
    assert str(directory) in warnings[0]


def test_a_compilation_that_fails_in_a_fresh_cache_too_is_torchs_and_keeps_the_cache(
    tmp_path: Path, inductor_cache: Callable[[Path], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No C++ compiler: the job is unsupported with torch's reason, the cache given is
    used again, and nothing blames the cache."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from conformance.adapters.torch_adapter import TorchAdapter
    from conformance.cases.problem import make_problem

    inductor_cache(tmp_path / "cache")
    adapter = TorchAdapter()
    api = next(a for a in adapter.apis() if a.id == "compile-softmax")
    softmax = next(case for case in cases(tmp_path) if case.op == "softmax")
    broken = {"cpp.cxx": (None, str(tmp_path / "no-such-c++")), "fx_graph_cache": False}
    with torch._inductor.config.patch(broken):
        outcome = adapter.run(api, make_problem(softmax, "float32"), adapter.devices()[0])
    assert outcome.status == "unsupported", outcome
    assert outcome.message.startswith("torch.compile failed:")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache")
    assert "TorchInductor cache" not in capsys.readouterr().err


# --- both frameworks, through `conformance run` ----------------------------------------------


def _worker_logs(out: Path) -> str:
    """What a run's workers wrote on their stderr: their logs beside the results file."""
    return "".join(path.read_text(encoding="utf-8")
                   for path in sorted(out.with_name(f"{out.stem}.logs").glob("*.log")))


def test_a_run_with_unusable_compilation_caches_records_no_failure_of_a_compiled_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both caches below a regular file: every record of torch.compile and jax.jit passes,
    and each framework's worker says so on stderr (its log) once."""
    frameworks = []
    for name, module in (("torch", "torch"), ("jax", "optax")):
        try:
            __import__(module)
            frameworks.append(name)
        except ImportError:
            pass
    if not frameworks:
        pytest.skip("neither PyTorch nor JAX (with optax) is installed")
    blocker = write(tmp_path / "a-file", "not a directory\n")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(blocker / "torchinductor"))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(blocker / "jax"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    path = write(tmp_path / "cases.yaml", CASES)
    out = tmp_path / "results.jsonl"
    assert cli.main(["run", "--cases", str(path), "--framework", *frameworks,
                     "--out", str(out), "--exit-zero"]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    status = {(r["case_id"], r["api"], r["quantity"]): r["status"] for r in records
              if r.get("type") == "result"}
    compiled = {key: value for key, value in status.items()
                if key[1].startswith(("torch.compile(", "jax.jit("))}
    assert {api.split("(")[0] for _, api, _ in compiled} == {
        {"torch": "torch.compile", "jax": "jax.jit"}[name] for name in frameworks}
    assert "pass" in compiled.values()
    for (case, api, quantity), got in compiled.items():
        eager = api.split("(", 1)[1].removesuffix(")")
        # as the eager API: pass, or unsupported for an option it lacks (optax's reductions)
        assert got == status[case, eager, quantity] and got in ("pass", "unsupported"), (
            case, api, quantity, got)
    err = _worker_logs(out)
    if "torch" in frameworks:
        assert err.count("the TorchInductor cache") == 1, err
    if "jax" in frameworks:
        complaints = [line for line in err.splitlines() if "compilation cache" in line
                      and "TorchInductor" not in line]
        assert len(complaints) == 1, complaints


def test_a_damaged_jax_cache_is_said_once_and_changes_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every entry of a JAX cache overwritten: JAX complained once per executable (29 lines
    for these two cases); now the worker's stderr (its log) says it once, and the records
    are the first run's."""
    pytest.importorskip("jax", reason="JAX is not installed")
    pytest.importorskip("optax", reason="optax is not installed")
    cache = tmp_path / "jax-cache"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    path = write(tmp_path / "cases.yaml", CASES)
    runs = []
    for name in ("first", "damaged"):
        out = tmp_path / f"{name}.jsonl"
        assert cli.main(["run", "--cases", str(path), "--framework", "jax",
                         "--out", str(out), "--exit-zero"]) == 0
        runs.append([r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())
                     if r.get("type") == "result"])
        if name == "first":
            entries = [p for p in cache.iterdir() if p.is_file()]
            assert entries
            for entry in entries:
                entry.write_bytes(b"not a compressed executable")
    complaints = [line for line in _worker_logs(tmp_path / "damaged.jsonl").splitlines()
                  if "compilation cache" in line]
    assert len(complaints) == 1, complaints
    assert runs[1] == runs[0]
