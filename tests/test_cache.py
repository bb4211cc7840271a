"""The oracle's disk cache: exact round trips, keys, bad entries, warm runs."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import mpmath
import numpy as np
import pytest
from mpmath import mpf
from mpmath.libmp import from_man_exp

from conformance.cases.loading import Case, load_cases
from conformance.cases.problem import make_problem
from conformance.judge.check import bounds_for, check_case, expected_for, reference_for
from conformance.oracle import cache
from conformance.run.runner import RunOptions, run
from reference.oracle import OracleResult
from tests.conftest import write

CASE = """\
cases:
  - id: one
    source: test
    description: a case
    op: cross_entropy
    input: [[0.5, -1.0, 2.0, "-inf"], [0.1, 0.2, 0.3, 0.4]]
    target: [2, 0]
    weight: [1.0, 2.0, 0.5, 1.0]
    documented: 0.5
"""


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> cache.OracleCache:
    monkeypatch.setenv(cache.CACHE_VARIABLE, str(tmp_path / "cache"))
    reference_for.cache_clear()
    expected_for.cache_clear()
    return cache.OracleCache(tmp_path / "cache")


def exact_mpf(man: int, exp: int) -> mpf:
    return mpmath.mp.make_mpf(from_man_exp(man, exp))


def raw(values: np.ndarray | None) -> list[tuple[object, ...]] | None:
    return None if values is None else [v._mpf_ for v in np.asarray(values).reshape(-1)]


def same_floats(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def same(a: OracleResult, b: OracleResult) -> bool:
    return (raw(a.output) == raw(b.output) and raw(a.grad) == raw(b.grad)
            and np.shape(a.output) == np.shape(b.output)
            and np.shape(a.grad) == np.shape(b.grad)
            and (a.precision, a.certified) == (b.precision, b.certified)
            and same_floats(a.output_bound, b.output_bound)
            and same_floats(a.grad_bound, b.grad_bound))


def assert_recomputed_once(store: cache.OracleCache, key: str, path: Path,
                           computed: OracleResult,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """``get`` reports the bad entry at ``path``, computes once, and replaces the entry."""
    calls: list[int] = []
    result = store.get(key, lambda: calls.append(1) or computed)
    assert same(result, computed) and calls == [1]
    assert f"ignoring bad oracle cache entry {path}" in capsys.readouterr().err
    loaded = store.load(key)
    assert loaded is not None and same(loaded, computed)


def test_values_round_trip_exactly() -> None:
    awkward = [
        mpf(0), mpf("nan"), mpf("inf"), mpf("-inf"), exact_mpf(-3, -1),
        exact_mpf((1 << 4000) + 1, -4100),  # a 4001-bit mantissa
        exact_mpf(-5, -(1 << 70)), exact_mpf(7, 1 << 70),  # exponents beyond int64
    ]
    result = OracleResult(np.array(awkward, dtype=object).reshape(2, 4),
                          np.array(exact_mpf(1, -1074), dtype=object), 4096, False,
                          output_bound=np.array([[0.0, np.nan, np.inf, 5e-324]] * 2),
                          grad_bound=np.array(2.0**-60))
    back = cache.decode(cache.encode(result, "k", "v"), "k", "v")
    assert same(back, result)
    assert back.grad is not None and back.grad.shape == ()
    no_grad = replace(result, grad=None, grad_bound=None, output_bound=None)
    assert same(cache.decode(cache.encode(no_grad, "k", "v"), "k", "v"), no_grad)


def test_oracle_results_round_trip_exactly(tmp_path: Path, store: cache.OracleCache) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    for dtype in ("float64", "bfloat16"):
        computed = make_problem(case, dtype).reference()
        key = store.key(case, dtype)
        store.store(key, computed)
        loaded = store.load(key)
        assert loaded is not None and same(loaded, computed)
        assert loaded.output_bound is not None and loaded.grad_bound is not None


def test_the_key_is_the_semantic_content_the_dtype_and_the_oracle(tmp_path: Path) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    key = cache.entry_key(case, "float32")
    # what the oracle does not read leaves the key alone
    for change in ({"id": "renamed"}, {"description": "other"}, {"source": "elsewhere"},
                   {"documented": 0.7}, {"dtypes": ("float64",)}, {"file": "x.yaml"},
                   {"line": 99}, {"group": "g"}):
        assert cache.entry_key(replace(case, **change), "float32") == key, change  # type: ignore[arg-type]
    # everything it reads changes it
    changes = [{"op": "nll_loss"}, {"input": ((0.5, -1.0, 2.0, 0.0), (0.1, 0.2, 0.3, 0.4))},
               {"target": (1, 0)}, {"weight": None}, {"ignore_index": 0},
               {"reduction": "sum"}, {"label_smoothing": 0.1}, {"grad": False}]
    keys = {cache.entry_key(replace(case, **change), "float32") for change in changes}  # type: ignore[arg-type]
    assert len(keys) == len(changes) and key not in keys
    assert cache.entry_key(case, "float64") != key
    assert cache.entry_key(case, "float32", version="another oracle") != key


def test_the_oracle_version_covers_every_module_of_reference(tmp_path: Path) -> None:
    """A module added to reference/ (the oracle split into more files) is part of the
    version without being listed, so editing it invalidates the entries it affects."""
    (tmp_path / "reference").mkdir()
    write(tmp_path / "reference" / "oracle.py", "x = 1\n")
    first = cache.source_version(tmp_path)
    write(tmp_path / "reference" / "compute.py", "y = 2\n")
    second = cache.source_version(tmp_path)
    write(tmp_path / "reference" / "compute.py", "y = 3\n")
    third = cache.source_version(tmp_path)
    write(tmp_path / "reference" / "SPEC.md", "prose is not code\n")
    assert len({first, second, third}) == 3 and cache.source_version(tmp_path) == third
    assert (cache.SOURCE_ROOT / "reference" / "oracle.py").is_file()
    assert cache.oracle_version() == cache.source_version(cache.SOURCE_ROOT)


def test_an_int_target_and_a_float_target_differ(tmp_path: Path) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    assert cache.entry_key(replace(case, target=(1, 0)), "float64") != \
        cache.entry_key(replace(case, target=(1.0, 0.0)), "float64")


def test_another_oracle_version_misses(tmp_path: Path) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    old, new = (cache.OracleCache(tmp_path / "cache", version=v) for v in ("old", "new"))
    old.store(old.key(case, "float64"), make_problem(case, "float64").reference())
    assert new.load(new.key(case, "float64")) is None
    assert old.load(old.key(case, "float64")) is not None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other entry", "empty"])
def test_a_bad_entry_is_reported_ignored_and_recomputed(
        tmp_path: Path, store: cache.OracleCache, capsys: pytest.CaptureFixture[str],
        damage: str) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    key, other = store.key(case, "float64"), store.key(case, "float32")
    computed = make_problem(case, "float64").reference()
    path = store.store(key, computed)
    assert path is not None
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"\x93NUMPY not really")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        store.path(other).parent.mkdir(parents=True, exist_ok=True)
        store.store(other, make_problem(case, "float32").reference())
        path.write_bytes(store.path(other).read_bytes())
    with pytest.raises(cache.BadEntry, match=str(path)):
        store.load(key)
    assert_recomputed_once(store, key, path, computed, capsys)


def test_reference_for_reads_the_cache_without_running_the_oracle(
        tmp_path: Path, store: cache.OracleCache, monkeypatch: pytest.MonkeyPatch) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    first = reference_for(case, "float32")
    reference_for.cache_clear()

    def no_oracle(*args: object, **kwargs: object) -> None:
        raise AssertionError("the oracle ran on a warm cache")

    monkeypatch.setattr("conformance.cases.problem.evaluate", no_oracle)
    monkeypatch.setattr("conformance.judge.check.error_bounds", no_oracle)
    warm = reference_for(case, "float32")
    assert same(warm, first)
    bounds = bounds_for(case, "float32", warm)  # the bounds come from the cache too
    assert bounds[0] is warm.output_bound and bounds[1] is warm.grad_bound


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.CACHE_VARIABLE, "off")
    monkeypatch.chdir(tmp_path)
    reference_for.cache_clear()
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    reference_for(case, "float64")
    assert cache.default_cache() is None
    assert not any(tmp_path.rglob("*.npz"))


def test_concurrent_writers_never_expose_a_partial_entry(
        tmp_path: Path, store: cache.OracleCache) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    key, computed = store.key(case, "float64"), make_problem(case, "float64").reference()
    store.store(key, computed)
    errors: list[BaseException] = []

    def writer() -> None:
        for _ in range(30):
            store.store(key, computed)

    def reader() -> None:
        for _ in range(60):
            try:
                loaded = store.load(key)
                assert loaded is not None and same(loaded, computed)
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=f) for f in (writer, writer, reader, reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not list(store.path(key).parent.glob("*.tmp"))


# --- whole runs -----------------------------------------------------------------------------

SUITE = """\
defaults:
  dtypes: [float64, float32]
cases:
  - id: a
    source: test
    op: cross_entropy
    input: [[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]]
    target: [2, 0]
  - id: b
    source: test
    op: softmax
    input: [1.0, 2.0, 3.0]
  - id: c
    source: test
    op: nll_loss
    input: [[-0.5, -1.5]]
    target: [1]
    documented: 1.5
"""


def test_a_warm_run_computes_nothing_and_an_edit_recomputes_exactly_its_entries(
        tmp_path: Path, stand_ins: None) -> None:
    cases = write(tmp_path / "cases.yaml", SUITE)
    options = RunOptions(cases=[str(cases)], frameworks=["exact"], jobs=2,
                         cache=str(tmp_path / "cache"))
    cold = run(replace(options, out=tmp_path / "cold.jsonl"), log=lambda line: None)
    assert cold.oracle["computed"] == 6  # 3 cases x 2 dtypes, each once (two oracle workers)
    warm = run(replace(options, out=tmp_path / "warm.jsonl"), log=lambda line: None)
    assert warm.oracle["computed"] == 0 and warm.oracle["hits"] > 0
    cold_lines = [line for line in (tmp_path / "cold.jsonl").read_text().splitlines()
                  if '"type": "result"' in line]
    warm_lines = [line for line in (tmp_path / "warm.jsonl").read_text().splitlines()
                  if '"type": "result"' in line]
    assert warm_lines == cold_lines
    cases.write_text(SUITE.replace("input: [1.0, 2.0, 3.0]", "input: [1.0, 2.0, 4.0]"))
    edited = run(replace(options, out=tmp_path / "edited.jsonl"), log=lambda line: None)
    assert edited.oracle["computed"] == 2  # case b, in its two dtypes


def test_no_cache_runs_write_no_cache(tmp_path: Path, stand_ins: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cache.CACHE_VARIABLE)
    cases = write(tmp_path / "cases.yaml", SUITE)
    summary = run(RunOptions(cases=[str(cases)], frameworks=["exact"], cache="off",
                             out=tmp_path / "r.jsonl"), log=lambda line: None)
    assert summary.oracle["computed"] > 0
    assert not (tmp_path / ".conformance-cache").exists()


def test_framework_compilation_caches_live_beside_the_oracle_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conformance.run.runner import worker_environment

    for variable in ("JAX_COMPILATION_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR",
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(cache.CACHE_VARIABLE, str(tmp_path / "c"))
    env = worker_environment()
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "c" / "frameworks" / "jax")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "c" / "frameworks" / "torchinductor")
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")  # the user's choice wins
    assert worker_environment()["JAX_COMPILATION_CACHE_DIR"] == "/elsewhere"
    assert "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in worker_environment()
    monkeypatch.setenv(cache.CACHE_VARIABLE, "off")
    assert "TORCHINDUCTOR_CACHE_DIR" not in worker_environment()


# --- the float64 views: warm comparisons without rebuilding the exact values --------------------

VIEWS_CASE = """\
cases:
  - id: views
    source: test
    op: cross_entropy
    dtypes: [float64, float32, bfloat16]
    input: [[0.5, -1.0, 2.0, 1e-30], [0.1, 0.2, 0.3, 0.4], [3.0, "-inf", 0.0, 1.0]]
    target: [2, 0, 3]
    weight: [1.0, 2.0, 0.5, 1.0]
"""


def test_a_summary_holds_the_float64_nearest_to_each_exact_value(
        tmp_path: Path, store: cache.OracleCache) -> None:
    from reference.formats import nearest_float64

    (case,) = load_cases([write(tmp_path / "c.yaml", VIEWS_CASE)])
    full = reference_for(case, "float32")
    summary = cache.summary(case, "float32")
    assert summary is not None and full.grad is not None
    assert same_floats(summary.output_nearest, nearest_float64(full.output))
    assert same_floats(summary.grad_nearest, nearest_float64(full.grad))
    assert same_floats(summary.output_bound, full.output_bound)
    assert (summary.precision, summary.certified) == (full.precision, full.certified)


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_warm_records_come_from_the_views_and_equal_the_cold_ones(
        tmp_path: Path, store: cache.OracleCache, monkeypatch: pytest.MonkeyPatch,
        dtype: str) -> None:
    from conformance.results.environment import environment
    from tests.stand_in_adapters import ExactAdapter, OffsetAdapter

    (case,) = load_cases([write(tmp_path / "c.yaml", VIEWS_CASE)])
    adapters = [ExactAdapter(), OffsetAdapter()]

    def records() -> list[object]:
        out = []
        for adapter in adapters:
            api = next(a for a in adapter.apis() if a.op == case.op)
            device = adapter.devices()[0]
            out += check_case(case, adapter, api, device, dtype, environment()["environment_id"])
        return out

    cold = records()  # computes the entry (and stores it)
    expected_for.cache_clear()
    reference_for.cache_clear()
    rebuilt: list[str] = []
    original_join = cache._join
    monkeypatch.setattr(cache, "_join", lambda arrays, name: (rebuilt.append(name),
                                                              original_join(arrays, name))[1])
    warm = records()
    assert warm == cold
    # the exact framework passes; the one 0.01 off fails where 0.01 exceeds the bound
    assert {r.status for r in warm} == ({"pass"} if dtype == "bfloat16" else {"pass", "fail"})
    # only float64 needs the exact values (the residual e - RN64(e)); the others never
    # rebuild a single mpf
    assert bool(rebuilt) == (dtype == "float64")


# --- hand edits: the content is checked against its digests, not only the metadata -----------


def rewrite(path: Path, **changes: object) -> None:
    """Rewrite the archive at ``path`` with some arrays replaced (``None`` deletes one) and
    everything else, its metadata included, as it was: a careful hand edit."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = np.asarray(value)
    np.savez(path, allow_pickle=False, **arrays)


def edited_meta(path: Path, **fields: object) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(bytes(archive["meta"]).decode())
    meta.update(fields)
    for name, value in list(meta.items()):
        if value is None:
            del meta[name]
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)


def stored_entry(tmp_path: Path, store: cache.OracleCache, dtype: str = "float32"
                 ) -> tuple[Case, str, Path, OracleResult]:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    key = store.key(case, dtype)
    computed = make_problem(case, dtype).reference()
    path = store.store(key, computed)
    assert path is not None
    return case, key, path, computed


def edits(path: Path) -> dict[str, dict[str, object]]:
    with np.load(path, allow_pickle=False) as archive:
        output_nearest, grad_man = archive["output_nearest"], archive["grad_man"]
    return {
        "reference 42, bound 1e300": {"output_nearest": np.full(output_nearest.shape, 42.0),
                                      "output_bound": np.full(output_nearest.shape, 1e300)},
        "one exact value": {"grad_man": np.where(np.arange(grad_man.size) == 0, 3,
                                                 grad_man.reshape(-1)).astype(
                                                     grad_man.dtype).reshape(grad_man.shape)},
        "a bound removed": {"grad_bound": None},
        "an array added": {"extra": np.zeros(3)},
        "the precision": {"meta": edited_meta(path, precision=1)},
        "the digests removed (an entry of the previous version)": {
            "meta": edited_meta(path, digests=None)},
    }


EDITS = ["reference 42, bound 1e300", "one exact value", "a bound removed", "an array added",
         "the precision", "the digests removed (an entry of the previous version)"]


@pytest.mark.parametrize("edit", EDITS)
def test_a_hand_edited_entry_is_reported_ignored_and_recomputed(
        tmp_path: Path, store: cache.OracleCache, capsys: pytest.CaptureFixture[str],
        edit: str) -> None:
    case, key, path, computed = stored_entry(tmp_path, store)
    rewrite(path, **edits(path)[edit])
    with pytest.raises(cache.BadEntry, match=str(path)):
        store.load(key)
    # a summary reads (and checks) only the float64 views, the bounds and the metadata; an
    # edit of an exact value is found when the exact values are read
    found = cache.summary(case, "float32")
    if edit == "one exact value":
        assert found is not None and same_floats(found.grad_bound, computed.grad_bound)
    else:
        assert found is None
    assert_recomputed_once(store, key, path, computed, capsys)


def test_an_edited_reference_never_passes_a_wrong_framework(
        tmp_path: Path, store: cache.OracleCache, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's edit: 42.0 for the reference and 1e300 for the bound, metadata intact.
    A framework 0.01 off then passed every record; the entry is now recomputed instead."""
    from tests.stand_in_adapters import OffsetAdapter

    case, _, path, _ = stored_entry(tmp_path, store)
    rewrite(path, **edits(path)["reference 42, bound 1e300"])
    expected_for.cache_clear()
    reference_for.cache_clear()
    adapter = OffsetAdapter()
    api = next(a for a in adapter.apis() if a.op == "cross_entropy")
    output, grad = check_case(case, adapter, api, adapter.devices()[0], "float32")
    assert output.reference != 42.0 and output.status == "fail", output
    assert grad.status == "pass"
    err = capsys.readouterr().err
    assert err.count(f"ignoring bad oracle cache entry {path}") == 1, err


# --- an unwritable, full or damaged cache costs the cache, not the run ------------------------

UNWRITABLE = "cannot write the oracle cache"


@pytest.fixture
def fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """What this process learnt about unwritable caches, forgotten (as in a new process)."""
    monkeypatch.setattr(cache, "_UNWRITABLE", {})
    monkeypatch.setattr(cache, "_PROBED", set())
    monkeypatch.setenv(cache.UNWRITABLE_VARIABLE, "")


def bad_cache(tmp_path: Path, how: str) -> Path:
    """A cache path that cannot be written, even by root: a regular file where the cache
    directory should be, or a file named like its oracle-VERSION directory."""
    if how == "a file for the directory":
        return write(tmp_path / "cache-is-a-file", "not a directory\n")
    root = tmp_path / "cache"
    (root / f"oracle-{cache.oracle_version()}").parent.mkdir()
    write(root / f"oracle-{cache.oracle_version()}", "not a directory\n")
    return root


@pytest.mark.parametrize("how", ["a file for the directory", "a file for the version directory"])
def test_an_unwritable_cache_costs_the_cache_not_the_run(
        tmp_path: Path, stand_ins: None, capfd: pytest.CaptureFixture[str],
        fresh_process_state: None, how: str) -> None:
    """``conformance run --cache BAD``: the oracle phase, the documented checks and the
    framework worker compute in memory; one warning names the path and the OS error."""
    from conformance.cli import main
    from conformance.results.jsonl import read_results

    cases, out = write(tmp_path / "cases.yaml", SUITE), tmp_path / "r.jsonl"
    bad = bad_cache(tmp_path, how)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["run", "--cases", str(cases), "--framework", "exact", "--cache", str(bad),
                 "--out", str(out), "--jobs", "2"])
    err = capfd.readouterr().err
    records = read_results([out]).records
    assert code == 0, err
    assert len(records) == 3 * 2 * 2 + 1  # 3 cases x 2 dtypes x (output, grad), documented
    assert {r.status for r in records} == {"pass"}, [r.message for r in records]
    assert err.count(UNWRITABLE) == 1, err
    line = next(line for line in err.splitlines() if UNWRITABLE in line)
    assert str(bad) in line and ("Not a directory" in line or "File exists" in line), line
    assert "ignoring bad oracle cache entry" not in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([*before, "r.jsonl"])


def test_a_read_only_cache_is_read_and_what_it_lacks_is_computed_in_memory(
        tmp_path: Path, store: cache.OracleCache, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], fresh_process_state: None) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    kept, missing = store.key(case, "float64"), store.key(case, "float32")
    computed = make_problem(case, "float64").reference()
    store.store(kept, computed)
    cache._PROBED.clear()  # the disk turns read-only after this entry was written

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(cache.tempfile, "mkstemp", read_only)
    calls: list[str] = []
    assert same(store.get(kept, lambda: calls.append("kept") or computed), computed)
    fresh = make_problem(case, "float32").reference()
    assert same(store.get(missing, lambda: calls.append("missing") or fresh), fresh)
    assert same(store.get(missing, lambda: calls.append("again") or fresh), fresh)
    assert calls == ["missing", "again"] and not store.contains(missing)
    with store.claim(missing) as mine:  # the oracle phase leaves it to the frameworks
        assert mine is False
    err = capsys.readouterr().err
    assert err.count(UNWRITABLE) == 1 and "Read-only file system" in err
    assert str(store.root) in err


def test_a_disk_that_fills_up_during_the_run_warns_once_and_keeps_computing(
        tmp_path: Path, store: cache.OracleCache, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], fresh_process_state: None) -> None:
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    results = {d: make_problem(case, d).reference() for d in ("float64", "float32")}

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", full)
    for dtype, result in results.items():
        assert same(store.get(store.key(case, dtype), lambda r=result: r), result)
        assert store.store(store.key(case, dtype), result) is None  # never raises
    err = capsys.readouterr().err
    assert err.count(UNWRITABLE) == 1 and "No space left on device" in err, err
    assert not list(store.root.rglob("*.npz")) and not list(store.root.rglob("*.tmp"))


def test_a_lock_that_cannot_be_taken_costs_only_the_lock(
        tmp_path: Path, store: cache.OracleCache, monkeypatch: pytest.MonkeyPatch,
        fresh_process_state: None) -> None:
    if cache.fcntl is None:
        pytest.skip("no fcntl locks on this platform")
    (case,) = load_cases([write(tmp_path / "c.yaml", CASE)])
    computed = make_problem(case, "float64").reference()

    def no_locks(*args: object) -> None:
        raise OSError(37, "No locks available")

    monkeypatch.setattr(cache.fcntl, "flock", no_locks)
    key = store.key(case, "float64")
    assert same(store.get(key, lambda: computed), computed)
    with store.claim(store.key(case, "float32")) as mine:
        assert mine is True  # computed without the lock (at worst twice, never corrupted)
    assert store.load(key) is not None


def test_the_oracle_worker_records_no_failure_when_the_cache_cannot_be_written(
        tmp_path: Path, store: cache.OracleCache, monkeypatch: pytest.MonkeyPatch,
        fresh_process_state: None) -> None:
    """The oracle phase's worker computes, fails to store (a full disk) and goes on: nothing
    it sends makes a job an error; the frameworks compute what the cache lacks."""
    from conformance.run import worker

    cases = load_cases([write(tmp_path / "cases.yaml", SUITE)])

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", full)
    events: list[dict[str, object]] = []

    class Channel:
        def emit(self, event: dict[str, object]) -> None:
            events.append(event)

    worker._fill_oracle_cache(Channel(), cases, None, set(), None)  # type: ignore[arg-type]
    assert events and not [e for e in events if e.get("event") == "failed"], events
