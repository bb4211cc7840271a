"""The oracle's results, cached on disk so that a repeated audit never runs mpmath's math again.

An entry is the ``OracleResult`` of one case in one dtype.  Its key is the sha256 of

* the case's *semantic* content: ``op``, ``input``, ``target``, ``weight``, ``ignore_index``,
  ``reduction``, ``label_smoothing`` and ``grad`` (not its id, description or source, so
  renaming a case keeps its entries and two identical cases share them);
* the dtype;
* the oracle's version, :func:`oracle_version`: a hash of the source of ``reference/*.py``,
  ``conformance/problem.py`` (which rounds the inputs) and ``conformance/generate.py`` (which
  generates inputs from a seed), and the mpmath and numpy versions, so any edit of the
  oracle invalidates its entries without anyone bumping a number.

Entries live in ``DIR/oracle-VERSION/KEY[:2]/KEY.npz`` (``DIR`` defaults to
``.conformance-cache``; ``$CONFORMANCE_CACHE`` names another directory, or ``off`` to
disable the cache).  An entry is a numpy ``.npz`` archive of plain integer and float arrays,
read with ``allow_pickle=False``: every ``mpf`` is stored *exactly*, as its signed binary
mantissa and exponent (two's complement bytes, so no size limit), with mpmath's own codes for
zero, NaN and the infinities; the float64 error bounds (``output_bound``, ``grad_bound``) as
float64 arrays; and, for each quantity, the float64 nearest to each exact value
(``output_nearest``, ``grad_nearest``): ``load_summary`` reads those without rebuilding a
single ``mpf``, which is all most comparisons need (``conformance.compare.Expected``).
Reading an entry gives back the very same ``mpf`` values, so a cached and an uncached run
write identical records.

Writers never expose a partial entry: an entry is written to a temporary file beside it and
renamed into place (atomic on POSIX and Windows), so concurrent workers computing the same
entry are harmless.  Where ``fcntl`` exists, computing an entry also holds an advisory lock
on ``KEY.lock`` (released by the kernel if the process dies), so workers that need the same
entry at the same time compute it once; the runner's oracle phase uses the same locks to
share the work out (``claim``).  An entry that cannot be read or does not match its key (a
truncated file, a disk error, a hand edit) is reported on stderr, naming the file, ignored
and recomputed, and the recomputed entry replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import IO, Any

import numpy as np

try:  # POSIX advisory locks; elsewhere entries may be computed twice, never corrupted
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from conformance.cases import Case
from reference.formats import nearest_float64
from reference.oracle import OracleResult

CACHE_VARIABLE = "CONFORMANCE_CACHE"
DEFAULT_DIRECTORY = Path(".conformance-cache")
DISABLED = ("off", "0", "no", "none", "false")
ENTRY_FORMAT = 2  # bump when the layout of an entry changes
SEMANTIC_FIELDS = ("op", "input", "target", "weight", "ignore_index", "reduction",
                   "label_smoothing", "grad")
_SOURCES = ("reference/__init__.py", "reference/oracle.py", "reference/formats.py",
            "conformance/problem.py", "conformance/generate.py")
# OracleResult's float64 arrays (the error bounds), stored as they are when present.
_FLOAT_FIELDS = ("output_bound", "grad_bound")
# mpmath's raw tuples (sign, mantissa, exponent, bitcount) of the values with mantissa 0,
# told apart by their exponent field: zero 0, nan -123, +inf -456, -inf -789.
_SPECIAL_EXPONENTS = {0: (0, 0, 0, 0), -123: (0, 0, -123, -1), -456: (0, 0, -456, -2),
                      -789: (1, 0, -789, -3)}


class BadEntry(ValueError):
    """A cache file that cannot be read back as the entry its name promises."""


@cache
def oracle_version() -> str:
    """A short hash of the oracle's code (see the module docstring) and mpmath's version."""
    import mpmath

    digest = hashlib.sha256(f"entry-format {ENTRY_FORMAT}\nmpmath {mpmath.__version__}\n"
                            f"numpy {np.__version__}\n".encode())
    root = Path(__file__).resolve().parent.parent
    for name in _SOURCES:
        path = root / name
        source = path.read_bytes() if path.exists() else b"(absent)"
        digest.update(name.encode() + b"\0" + source + b"\0")
    return digest.hexdigest()[:16]


def case_fingerprint(case: Case) -> dict[str, Any]:
    """What of ``case`` the oracle's result depends on, as plain JSON data."""
    return {name: _plain(getattr(case, name)) for name in SEMANTIC_FIELDS}


def entry_key(case: Case, dtype: str, version: str | None = None) -> str:
    """The sha256 naming the entry of ``case`` in ``dtype`` for this oracle version."""
    content = {"case": case_fingerprint(case), "dtype": dtype,
               "oracle": version or oracle_version()}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if callable(getattr(value, "to_dict", None)):  # conformance.generate.Spec
        return {"generated": _plain_mapping(value.to_dict())}
    if isinstance(value, dict):
        return {"mapping": _plain_mapping(value)}
    if isinstance(value, np.ndarray):
        return {"ndarray": str(value.dtype), "shape": list(value.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot fingerprint a {type(value).__name__} in a case")


def _plain_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in sorted(mapping.items())}


# --- where the cache is -----------------------------------------------------------------------


def cache_directory() -> Path | None:
    """``$CONFORMANCE_CACHE`` (``off`` disables the cache), else ``.conformance-cache``."""
    value = os.environ.get(CACHE_VARIABLE)
    if value is None or not value.strip():
        return DEFAULT_DIRECTORY
    if value.strip().lower() in DISABLED:
        return None
    return Path(value)


def default_cache() -> OracleCache | None:
    directory = cache_directory()
    return None if directory is None else OracleCache(directory)


@dataclass
class CacheStats:
    """What this process's caches did (summed over instances)."""

    hits: int = 0
    computed: int = 0
    bad: int = 0


STATS = CacheStats()


# --- the cache ----------------------------------------------------------------------------------


class OracleCache:
    """Entries under ``root``, one file each (see the module docstring)."""

    def __init__(self, root: Path | str, version: str | None = None) -> None:
        self.root = Path(root)
        self.version = version or oracle_version()

    def key(self, case: Case, dtype: str) -> str:
        return entry_key(case, dtype, self.version)

    def path(self, key: str) -> Path:
        return self.root / f"oracle-{self.version}" / key[:2] / f"{key}.npz"

    def contains(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str) -> OracleResult | None:
        """The entry, or None when there is none; a bad entry raises ``BadEntry``."""
        path = self.path(key)
        try:
            with path.open("rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise BadEntry(f"{path}: cannot read: {error}") from None
        return decode(data, key, self.version, path)

    def load_summary(self, key: str) -> Summary | None:
        """The entry's ``Summary``, or None when there is none (or it lacks the float64
        views, or it is damaged: the full ``get`` then reports and replaces it)."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as archive:
                return decode_summary(archive, key, self.version, path)
        except FileNotFoundError:
            return None
        except Exception:  # a damaged entry: ``get`` reports and replaces it
            return None

    def store(self, key: str, result: OracleResult) -> Path:
        """Write the entry atomically (temporary file, then rename)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = encode(result, key, self.version)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.",
                                                 suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return path

    def get(self, key: str, compute: Callable[[], OracleResult]) -> OracleResult:
        """The entry for ``key``, computing and storing it if absent or bad."""
        result = self._load_or_report(key)
        if result is not None:
            return result
        with self._lock(key, blocking=True):
            result = self._load_or_report(key)  # another process may have just written it
            if result is not None:
                return result
            result = compute()
            STATS.computed += 1
            try:
                self.store(key, result)
            except OSError as error:  # a full or read-only disk costs the cache, not the run
                _warn(f"cannot write oracle cache entry {self.path(key)}: {error}")
            return result

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        """Try to take ``key``'s lock without waiting: True if this process should compute
        it (no entry yet and nobody else computing it), else False."""
        with self._lock(key, blocking=False) as locked:
            yield locked and self._load_or_report(key, count=False) is None

    def _load_or_report(self, key: str, count: bool = True) -> OracleResult | None:
        try:
            result = self.load(key)
        except BadEntry as error:
            STATS.bad += 1
            _warn(f"ignoring bad oracle cache entry {error}; recomputing it")
            return None
        if result is not None and count:
            STATS.hits += 1
        return result

    @contextlib.contextmanager
    def _lock(self, key: str, blocking: bool) -> Iterator[bool]:
        if fcntl is None:  # pragma: no cover - Windows
            yield True
            return
        path = self.path(key).with_suffix(".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle: IO[bytes] = path.open("ab")
        except OSError:  # an unwritable cache directory: compute without the lock
            yield True
            return
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Summary:
    """An entry without its exact values: the float64 nearest to each exact value
    (``reference.formats.nearest_float64``), the error bounds and the precision.  Enough for
    almost every comparison (``conformance.compare.Expected``) and a few times cheaper to read
    than the entry, whose exact values are rebuilt one ``mpf`` at a time."""

    precision: int
    certified: bool
    output_nearest: np.ndarray
    grad_nearest: np.ndarray | None
    output_bound: np.ndarray | None
    grad_bound: np.ndarray | None


class OracleUnavailable(RuntimeError):
    """The oracle already failed on this case and dtype in this run (``mark_unavailable``)."""


_UNAVAILABLE: dict[tuple[str, str], str] = {}  # (case fingerprint key, dtype) -> why


def mark_unavailable(case: Case, dtype: str, reason: str) -> None:
    """Make ``reference`` raise ``OracleUnavailable(reason)`` for ``case`` in ``dtype`` in this
    process: the runner's oracle phase already spent its time limit on it (or it raised), so
    the framework workers record the jobs that need it at once instead of trying again."""
    _UNAVAILABLE[(entry_key(case, dtype), dtype)] = reason


def clear_unavailable() -> None:
    _UNAVAILABLE.clear()


def _raise_if_unavailable(case: Case, dtype: str) -> None:
    if _UNAVAILABLE:
        reason = _UNAVAILABLE.get((entry_key(case, dtype), dtype))
        if reason is not None:
            raise OracleUnavailable(reason)


def reference(case: Case, dtype: str, compute: Callable[[], OracleResult]) -> OracleResult:
    """``compute()``'s result for ``case`` in ``dtype``, through the default cache if any."""
    _raise_if_unavailable(case, dtype)
    store = default_cache()
    if store is None:
        STATS.computed += 1
        return compute()
    return store.get(store.key(case, dtype), compute)


def summary(case: Case, dtype: str) -> Summary | None:
    """The default cache's ``Summary`` of ``case`` in ``dtype``, or None (no cache, no entry
    yet, or an entry without float64 views): then ask ``reference`` for the full result."""
    _raise_if_unavailable(case, dtype)
    store = default_cache()
    if store is None:
        return None
    found = store.load_summary(store.key(case, dtype))
    if found is not None:
        STATS.hits += 1
    return found


def _warn(message: str) -> None:
    print(f"conformance: {message}", file=sys.stderr, flush=True)


# --- the entry format ---------------------------------------------------------------------------


def encode(result: OracleResult, key: str, version: str) -> bytes:
    """``result`` as the bytes of an ``.npz`` archive with no object arrays."""
    meta = {"format": ENTRY_FORMAT, "key": key, "oracle": version,
            "precision": int(result.precision), "certified": bool(result.certified),
            "grad": result.grad is not None}
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
    for name, values in (("output", result.output), ("grad", result.grad)):
        if values is None:
            continue
        mantissas, exponents = _split(np.asarray(values, dtype=object))
        arrays[f"{name}_shape"] = np.asarray(np.shape(values), dtype=np.int64)
        arrays[f"{name}_man"] = _int_bytes(mantissas)
        arrays[f"{name}_exp"] = _int_bytes(exponents)
        # the float64 view that most comparisons need (``Summary``), so that they can skip
        # rebuilding the exact values
        arrays[f"{name}_nearest"] = nearest_float64(np.asarray(values, dtype=object))
    for name in _FLOAT_FIELDS:
        value = getattr(result, name, None)
        if value is not None:
            arrays[name] = np.asarray(value, dtype=np.float64)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def decode(data: bytes, key: str, version: str, where: Path | str = "(entry)") -> OracleResult:
    """The ``OracleResult`` stored by ``encode``; ``BadEntry`` if it is damaged or another's."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = _meta(arrays["meta"], key, version, where)
        output = _join(arrays, "output")
        grad = _join(arrays, "grad") if meta["grad"] else None
        known = {f.name for f in fields(OracleResult)}
        extra = {name: value for name, value in _bounds(arrays, where).items() if name in known}
        return OracleResult(output, grad, int(meta["precision"]), bool(meta["certified"]),
                            **extra)
    except BadEntry:
        raise
    except Exception as error:  # zipfile, numpy, JSON and key errors alike: a damaged file
        raise BadEntry(f"{where}: unreadable ({type(error).__name__}: {error})") from None


def decode_summary(archive: Any, key: str, version: str,
                   where: Path | str = "(entry)") -> Summary | None:
    """An entry's ``Summary`` from its open ``np.load`` archive, reading neither mantissas
    nor exponents; None when the entry predates the float64 views."""
    meta = _meta(archive["meta"], key, version, where)
    if "output_nearest" not in archive.files:
        return None
    output = _nearest(archive, "output", where)
    grad = _nearest(archive, "grad", where) if meta["grad"] else None
    bounds = _bounds(archive, where)
    return Summary(int(meta["precision"]), bool(meta["certified"]), output, grad,
                   bounds.get("output_bound"), bounds.get("grad_bound"))


def _meta(raw: np.ndarray, key: str, version: str, where: Path | str) -> dict[str, Any]:
    """The entry's metadata; ``BadEntry`` if the entry is another's (format, key, oracle)."""
    meta: dict[str, Any] = json.loads(bytes(raw).decode())
    if meta.get("format") != ENTRY_FORMAT or meta.get("key") != key \
            or meta.get("oracle") != version:
        raise BadEntry(f"{where}: holds another entry (format {meta.get('format')}, "
                       f"key {str(meta.get('key'))[:16]}..., oracle {meta.get('oracle')})")
    return meta


def _bounds(arrays: Any, where: Path | str) -> dict[str, np.ndarray]:
    """The stored float64 error bounds (``_FLOAT_FIELDS``) of an archive or its arrays."""
    names = arrays.files if hasattr(arrays, "files") else arrays
    bounds = {name: arrays[name] for name in _FLOAT_FIELDS if name in names}
    for name, values in bounds.items():
        if values.dtype != np.float64:
            raise BadEntry(f"{where}: {name} is {values.dtype}, not float64")
    return bounds


def _nearest(archive: Any, name: str, where: Path | str) -> np.ndarray:
    shape = tuple(int(n) for n in archive[f"{name}_shape"])
    nearest: np.ndarray = archive[f"{name}_nearest"]
    if nearest.dtype != np.float64 or tuple(nearest.shape) != shape:
        raise BadEntry(f"{where}: {name}_nearest is {nearest.dtype} {nearest.shape}, "
                       f"not float64 {shape}")
    return nearest


def _split(values: np.ndarray) -> tuple[list[int], list[int]]:
    """Signed mantissas and exponents of the mpf ``values`` (flattened), exactly."""
    from reference.formats import exact

    mantissas, exponents = [], []
    for value in values.reshape(-1):
        sign, man, exp, _bc = exact(value)._mpf_
        mantissas.append(-int(man) if sign else int(man))
        exponents.append(int(exp))
    return mantissas, exponents


def _join(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    import mpmath
    from mpmath.libmp import MPZ

    shape = tuple(int(n) for n in arrays[f"{name}_shape"])
    mantissas = _int_list(arrays[f"{name}_man"])
    exponents = _int_list(arrays[f"{name}_exp"])
    if len(mantissas) != len(exponents) or len(mantissas) != int(np.prod(shape, dtype=np.int64)):
        raise BadEntry(f"{name}: {len(mantissas)} mantissas, {len(exponents)} exponents "
                       f"for shape {shape}")
    make = mpmath.mp.make_mpf
    values = []
    for man, exp in zip(mantissas, exponents):
        if man == 0:
            special = _SPECIAL_EXPONENTS.get(exp)
            if special is None:
                raise BadEntry(f"{name}: zero mantissa with unknown code {exp}")
            sign, _, code, bits = special
            values.append(make((sign, MPZ(0), code, bits)))
        else:  # stored normalized (odd mantissa), so the raw tuple is built as it was
            magnitude = MPZ(-man if man < 0 else man)
            if not magnitude & 1:
                raise BadEntry(f"{name}: mantissa {man} is not normalized")
            values.append(make((1 if man < 0 else 0, magnitude, exp, magnitude.bit_length())))
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array.reshape(shape)


def _int_bytes(numbers: list[int]) -> np.ndarray:
    """Arbitrary integers as rows of little-endian two's complement bytes, one width for all."""
    width = max((((n if n >= 0 else ~n).bit_length() + 8) // 8 for n in numbers), default=1)
    if width <= 8:
        return np.asarray(numbers, dtype=np.int64)
    data = b"".join(n.to_bytes(width, "little", signed=True) for n in numbers)
    return np.frombuffer(data, dtype=np.uint8).reshape(len(numbers), width)


def _int_list(array: np.ndarray) -> list[int]:
    if array.dtype == np.int64 and array.ndim == 1:
        return [int(n) for n in array.tolist()]
    if array.dtype != np.uint8 or array.ndim != 2:
        raise BadEntry(f"integer array of dtype {array.dtype} and {array.ndim} dimensions")
    width = array.shape[1]
    data = array.tobytes()
    return [int.from_bytes(data[i:i + width], "little", signed=True)
            for i in range(0, len(data), width)]
