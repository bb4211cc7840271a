"""``conformance oracle``: the oracle's values for whole cases, at any size, as ``.npz`` files.

Records keep values only up to ``MAX_VALUES_KEPT`` elements; a kernel author's own test needs
the reference of any output.  For each case (those that expect a value) and dtype this writes,
as float64 arrays (every value of float32, float16 and bfloat16 is exactly a float64):

* ``input``, ``target``, ``weight``: the inputs rounded to the dtype (to nearest, ties to even),
  exactly what the oracle and every framework are given (``target`` int64 for class indices);
  a missing one is absent;
* ``output_exact``: the oracle's exact value rounded to float64 (the records' ``reference``);
* ``output_rounded``: the exact value correctly rounded to the dtype (the best a framework
  can return: 0 ULP);
* ``output_bound``: the per-element error bound of a max-shifted evaluation in the dtype
  (``reference.oracle.error_bounds``), and ``output_k``, the comparison's factor ``K``: a
  value passes where ``|actual - exact| <= K * bound`` (``conformance/judge/compare.py``);
* the same four for the gradient (``grad_...``) when the case has one;
* ``meta``: a JSON string: case id, file, op, options, class axis, the oracle's version and
  precision, and these key names.

In one file (``--out refs.npz``) keys are ``CASE/DTYPE/NAME``; in a folder (``--out refs/``),
one ``CASE.npz`` per case with keys ``DTYPE/NAME``.  ``np.load(path)`` reads them (no pickle).
The oracle's cache is used and filled as by ``conformance run``.  The correctly rounded value
is the float64 one rounded again to the dtype, which is exact except at a midpoint of the
dtype's values, where it is rounded from the exact value (``round_float64_array``).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conformance.cases.loading import Case
from conformance.judge.check import expected_for, problem_for
from conformance.judge.compare import Expected, run_scale, tolerance_for
from conformance.oracle import cache as oracle_cache
from reference.formats import get_format, round_float64_array, round_to_float

QUANTITY_KEYS = ("exact", "rounded", "bound", "k")


@dataclass(frozen=True)
class Written:
    path: Path
    entries: int  # (case, dtype) pairs written there


def reference_arrays(case: Case, dtype: str) -> dict[str, np.ndarray]:
    """The arrays of the module docstring for ``case`` in ``dtype``."""
    problem = problem_for(case, dtype)
    reference = expected_for(case, dtype)
    arrays: dict[str, np.ndarray] = {"input": problem.input}
    if problem.target is not None:
        arrays["target"] = problem.target
    if problem.weight is not None:
        arrays["weight"] = problem.weight
    override = getattr(case, "tolerance", None)
    quantities = [("output", reference.output, reference.output_bound)]
    if case.grad and reference.grad is not None and reference.grad_bound is not None:
        quantities.append(("grad", reference.grad, reference.grad_bound))
    for quantity, expected, bound in quantities:
        tolerance = tolerance_for(case.op, quantity, dtype, override, run_scale())
        arrays[f"{quantity}_exact"] = expected.nearest
        arrays[f"{quantity}_rounded"] = correctly_rounded(expected, dtype)
        arrays[f"{quantity}_bound"] = np.asarray(bound, dtype=np.float64)
        arrays[f"{quantity}_k"] = np.asarray(tolerance.factor, dtype=np.float64)
    meta = {
        "case": case.id, "case_file": case.file, "op": case.op, "dtype": dtype,
        "reduction": case.reduction, "ignore_index": case.ignore_index,
        "label_smoothing": float(case.label_smoothing), "class_axis": problem.class_axis,
        "oracle_version": oracle_cache.oracle_version(), "oracle_precision": reference.precision,
        "keys": sorted(arrays),
    }
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
    return arrays


def correctly_rounded(expected: Expected, dtype: str) -> np.ndarray:
    """The exact values correctly rounded to ``dtype``, as float64."""
    fmt = get_format(dtype)
    rounded, midpoint = round_float64_array(expected.nearest, fmt)
    if midpoint.any():  # the float64 value is a tie of the dtype: decide from the exact one
        flat, exact = rounded.reshape(-1), expected.values
        for index in np.flatnonzero(midpoint.reshape(-1)):
            flat[index] = round_to_float(exact[index], dtype)
        rounded = flat.reshape(rounded.shape)
    return rounded


def entries(cases: Iterable[Case], dtypes: list[str] | None) -> Iterator[tuple[Case, str]]:
    """Each (case, dtype) with a value to write: cases that expect one, in their dtypes
    (those of ``dtypes`` when given)."""
    for case in cases:
        if case.expect != "value":
            continue
        for dtype in case.dtypes:
            if dtypes is None or dtype in dtypes:
                yield case, dtype


def planned_files(out: Path, cases: list[Case], dtypes: list[str] | None) -> list[Path]:
    """The files ``write_references`` would write: ``out`` itself (a ``.npz`` file), or one
    ``CASE.npz`` per case in the folder ``out``."""
    if is_single_file(out):
        return [out]
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: a single file of references "
                         "needs the .npz suffix; it was left as it is")
    ids = dict.fromkeys(case.id for case, _ in entries(cases, dtypes))
    return [out / f"{case_id}.npz" for case_id in ids]


def is_single_file(out: Path) -> bool:
    return out.suffix == ".npz" and not out.is_dir()


def write_references(out: Path, cases: list[Case], dtypes: list[str] | None,
                     overwrite: bool = False) -> list[Written]:
    """Write the references (see the module docstring); ``FileExistsError`` naming the first
    file that exists unless ``overwrite``, before anything is computed or written.  Each file
    is written to a temporary name and renamed, so none is ever left half written."""
    planned = planned_files(out, cases, dtypes)
    if not planned:
        raise ValueError("no case expects a value in the dtypes asked for: nothing to write")
    existing = [path for path in planned if path.exists() or path.is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists" + (f" (and {len(existing) - 1} more)"
                                                          if len(existing) > 1 else "")
                              + "; pass --overwrite to replace it, or choose another --out")
    for path in existing:
        if not path.is_file():
            raise ValueError(f"{path} is not a regular file; it was left as it is")
    written: list[Written] = []
    if is_single_file(out):
        arrays = {f"{case.id}/{dtype}/{name}": value
                  for case, dtype in entries(cases, dtypes)
                  for name, value in reference_arrays(case, dtype).items()}
        _save(out, arrays)
        return [Written(out, len({k.rsplit("/", 1)[0] for k in arrays}))]
    out.mkdir(parents=True, exist_ok=True)
    by_case: dict[str, list[tuple[Case, str]]] = {}
    for case, dtype in entries(cases, dtypes):
        by_case.setdefault(case.id, []).append((case, dtype))
    for case_id, pairs in by_case.items():
        arrays = {f"{dtype}/{name}": value for case, dtype in pairs
                  for name, value in reference_arrays(case, dtype).items()}
        path = out / f"{case_id}.npz"
        _save(path, arrays)
        written.append(Written(path, len(pairs)))
    return written


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` to a temporary file beside ``path``, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for name, value in arrays.items():
                    buffer = io.BytesIO()
                    np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
                    archive.writestr(f"{name}.npy", buffer.getvalue())
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_meta(archive: Any, prefix: str) -> dict[str, Any]:
    """The ``meta`` of one entry of a loaded ``.npz`` (``prefix``: ``CASE/DTYPE/`` or
    ``DTYPE/``)."""
    return dict(json.loads(str(archive[f"{prefix}meta"][()])))


__all__ = ["QUANTITY_KEYS", "Written", "correctly_rounded", "planned_files", "read_meta",
           "reference_arrays", "write_references"]
