"""``conformance oracle CASES --out refs.npz``: the oracle's values of whole cases, any size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conformance import cli
from conformance.results.jsonl import read_results
from reference.formats import nearest_float64, round_to_float
from reference.oracle import evaluate
from tests.conftest import write

CASES = """\
cases:
  - id: big-softmax
    source: t
    op: softmax
    input: {generate: normal, shape: [3, 6, 6, 5, 3, 4], seed: 7, scale: 4.0}
    dtypes: [float32, bfloat16]
  - {id: small-ce, source: t, op: cross_entropy, input: [[1.0, 2.0, 0.5], [0.1, 0.2, 30.0]],
     target: [1, 2], weight: [1.0, 2.0, 3.0], dtypes: [float64, float16]}
  - {id: invalid, source: t, op: cross_entropy, input: [[1.0, 2.0]], target: [5],
     expect: error}
"""


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    return write(tmp_path / "cases.yaml", CASES)


def test_references_agree_with_the_records_where_both_exist(
        tmp_path: Path, cases: Path, stand_ins: None) -> None:
    out = tmp_path / "refs.npz"
    assert cli.main(["oracle", str(cases), "--out", str(out)]) == 0
    results = tmp_path / "results.jsonl"
    assert cli.main(["run", "--cases", str(cases), "--framework", "exact", "--out",
                     str(results)]) == 0
    refs = np.load(out)
    assert "invalid/float64/input" not in refs  # no value to give
    compared = 0
    for record in read_results([results]).records:
        if record.framework != "exact" or record.case_id == "invalid":
            continue  # the documented checks; the case that expects an error has no value
        prefix = f"{record.case_id}/{record.dtype}/{record.quantity}"
        exact = refs[f"{prefix}_exact"]
        assert list(exact.shape) == record.shape
        if record.reference is not None:  # at most 256 elements: the record keeps them
            assert np.array_equal(exact, np.asarray(record.reference, dtype=float))
            # the stand-in answers the oracle's value rounded to the dtype element by element
            assert np.array_equal(refs[f"{prefix}_rounded"], np.asarray(record.actual))
            compared += 1
    assert compared == 4  # small-ce: output and grad in two dtypes
    assert refs["small-ce/float16/weight"].tolist() == [1.0, 2.0, 3.0]
    assert refs["small-ce/float16/target"].dtype == np.int64


def test_a_case_beyond_the_records_limit_is_written_whole(tmp_path: Path, cases: Path) -> None:
    out = tmp_path / "refs"
    assert cli.main(["oracle", str(cases), "--out", str(out), "--dtype", "bfloat16"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["big-softmax.npz"]  # small-ce: no bf16
    refs = np.load(out / "big-softmax.npz")
    x = refs["bfloat16/input"]
    assert x.shape == (3, 6, 6, 5, 3, 4) and x.size > 256
    assert np.array_equal(x, np.asarray([round_to_float(v, "bfloat16") for v in x.ravel()])
                          .reshape(x.shape))  # rounded to the dtype
    # independently: the oracle evaluated here, rounded element by element from the exact
    result = evaluate("softmax", x.tolist(), dtype="bfloat16")
    assert np.array_equal(refs["bfloat16/output_exact"], nearest_float64(result.output))
    rounded = [round_to_float(v, "bfloat16") for v in result.output.ravel()]
    assert np.array_equal(refs["bfloat16/output_rounded"].ravel(), np.asarray(rounded))
    grad = [round_to_float(v, "bfloat16") for v in result.grad.ravel()]
    assert np.array_equal(refs["bfloat16/grad_rounded"].ravel(), np.asarray(grad))
    assert np.array_equal(refs["bfloat16/output_bound"], result.output_bound)
    assert float(refs["bfloat16/output_k"]) > 0
    meta = json.loads(str(refs["bfloat16/meta"][()]))
    assert (meta["case"], meta["op"], meta["class_axis"]) == ("big-softmax", "softmax", 1)


def test_an_existing_output_is_never_replaced_without_overwrite(
        tmp_path: Path, cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = write(tmp_path / "refs.npz", "mine")
    assert cli.main(["oracle", str(cases), "--out", str(out), "--dtype", "float64"]) == 2
    assert "refs.npz exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "mine"
    folder = tmp_path / "folder"
    folder.mkdir()
    write(folder / "small-ce.npz", "mine too")
    assert cli.main(["oracle", str(cases), "--out", str(folder)]) == 2
    assert (folder / "small-ce.npz").read_text() == "mine too"
    assert not (folder / "big-softmax.npz").exists()  # refused before anything was written
    assert cli.main(["oracle", str(cases), "--out", str(out), "--dtype", "float64",
                     "--overwrite"]) == 0
    assert "small-ce/float64/output_exact" in np.load(out)


def test_an_output_that_is_an_input_is_refused(tmp_path: Path, cases: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["oracle", str(cases), "--out", str(cases), "--overwrite"]) == 2
    assert "a file, not a folder" in capsys.readouterr().err
    assert cases.read_text() == CASES
    npz_case = write(tmp_path / "odd.npz", CASES)  # a case file with an odd name
    assert cli.main(["oracle", str(npz_case), "--out", str(npz_case), "--overwrite"]) == 2
    assert "is CASES" in capsys.readouterr().err and npz_case.read_text() == CASES
    assert cli.main(["oracle", str(cases), "--out", str(tmp_path / "cache" / "r.npz"),
                     "--cache", str(tmp_path / "cache")]) == 2
    assert "inside the oracle cache" in capsys.readouterr().err
