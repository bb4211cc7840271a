"""The oracle's results, cached on disk so that a repeated audit never runs mpmath's math again.

An entry is the ``OracleResult`` of one case in one dtype.  Its key is the sha256 of

* the case's *semantic* content: ``op``, ``input``, ``target``, ``weight``, ``ignore_index``,
  ``reduction``, ``label_smoothing`` and ``grad`` (not its id, description or source, so
  renaming a case keeps its entries and two identical cases share them);
* the dtype;
* the oracle's version, :func:`oracle_version`: a hash of the source of ``reference/*.py``,
  ``conformance/cases/problem.py`` (which rounds the inputs) and
  ``conformance/cases/generate.py`` (which generates inputs from a seed), and the mpmath and
  numpy versions, so any edit of the oracle invalidates its entries without anyone bumping a
  number.

Entries live in ``DIR/oracle-VERSION/KEY[:2]/KEY.npz`` (``DIR`` defaults to
``.conformance-cache``; ``$CONFORMANCE_CACHE`` names another directory, or ``off`` to
disable the cache).  An entry is a numpy ``.npz`` archive of plain integer and float arrays,
read with ``allow_pickle=False``: every ``mpf`` is stored *exactly*, as its signed binary
mantissa and exponent (two's complement bytes, so no size limit), with mpmath's own codes for
zero, NaN and the infinities (or, for the vectorised oracle's large results,
``reference.pairs.ExactPairs``, as the two float64 arrays whose sum each value is); the
float64 error bounds (``output_bound``, ``grad_bound``) as float64 arrays; and, for each
quantity, the float64 nearest to each exact value (``output_nearest``, ``grad_nearest``):
``load_summary`` reads those without rebuilding a single ``mpf``, which is all most
comparisons need (``conformance.judge.compare.Expected``).
Reading an entry gives back the very same ``mpf`` values, so a cached and an uncached run
write identical records.

The metadata hold the sha256 of every array (its dtype, shape and bytes) and of the metadata
themselves, and every read checks what it reads: the full read every array, a summary the
float64 views and bounds it returns (an exact value is checked when it is read).  An entry
without digests (written before format 3) is never trusted.

Writers never expose a partial entry: an entry is written to a temporary file beside it and
renamed into place (atomic on POSIX and Windows), so concurrent workers computing the same
entry are harmless.  Where ``fcntl`` exists, computing an entry also holds an advisory lock
on ``KEY.lock`` (released by the kernel if the process dies), so workers that need the same
entry at the same time compute it once; the runner's oracle phase uses the same locks to
share the work out (``claim``); a file system without locks costs only the lock.  An entry
that cannot be read, does not match its key or does not match its digests (a truncated file,
a disk error, a hand edit) is reported on stderr, naming the file, ignored and recomputed,
and the recomputed entry replaces it.

A cache that cannot be written (read-only, full, or a file where a directory should be) costs
the cache, not the run: the first failed write, or the probe of a cache first used, warns
once on stderr with the path and the OS error; from then on the process (and the workers it
starts, told through ``$CONFORMANCE_CACHE_UNWRITABLE``) reads what entries it can and
computes the rest in memory, and nothing is an error because the cache could not be written
or locked.
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

from conformance.cases.generate import LINEAR_OP
from conformance.cases.loading import Case
from reference.formats import nearest_float64
from reference.linear import QUANTITIES as LINEAR_QUANTITIES
from reference.linear import LinearResult, Quantity
from reference.oracle import OracleResult
from reference.pairs import ExactPairs

CACHE_VARIABLE = "CONFORMANCE_CACHE"
DEFAULT_DIRECTORY = Path(".conformance-cache")
DISABLED = ("off", "0", "no", "none", "false")
ENTRY_FORMAT = 4  # bump when the layout of an entry changes (3: digests of the arrays;
# 4: exact values may be stored as float64 pairs, {name}_hi + {name}_lo)
SEMANTIC_FIELDS = ("op", "input", "target", "weight", "ignore_index", "reduction",
                   "label_smoothing", "grad")
# linear_cross_entropy's linear layer, part of the fingerprint of that op's cases only (so the
# keys of every other case stay what they were)
LINEAR_FIELDS = ("linear_weight", "linear_bias")
OPTIONAL_FIELDS = ("axis", "sample_weight", "where")
# Besides every reference/*.py (a module added to the oracle counts without being listed):
_SOURCES = ("conformance/cases/problem.py", "conformance/cases/generate.py")
# OracleResult's float64 arrays (the error bounds), stored as they are when present.
_FLOAT_FIELDS = ("output_bound", "grad_bound")
# mpmath's raw tuples (sign, mantissa, exponent, bitcount) of the values with mantissa 0,
# told apart by their exponent field: zero 0, nan -123, +inf -456, -inf -789.
_SPECIAL_EXPONENTS = {0: (0, 0, 0, 0), -123: (0, 0, -123, -1), -456: (0, 0, -456, -2),
                      -789: (1, 0, -789, -3)}


class BadEntry(ValueError):
    """A cache file that cannot be read back as the entry its name promises."""


# The checkout (or installed tree) holding reference/ and conformance/: this file is
# conformance/oracle/cache.py.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


@cache
def oracle_version() -> str:
    """A short hash of the oracle's code (see the module docstring) and mpmath's version."""
    return source_version(SOURCE_ROOT)


def source_version(root: Path) -> str:
    """``oracle_version`` of the checkout at ``root``: the entry format, the mpmath and numpy
    versions, and the source of every ``reference/*.py`` and of ``_SOURCES``."""
    import mpmath

    digest = hashlib.sha256(f"entry-format {ENTRY_FORMAT}\nmpmath {mpmath.__version__}\n"
                            f"numpy {np.__version__}\n".encode())
    names = sorted(p.relative_to(root).as_posix() for p in (root / "reference").glob("*.py"))
    for name in [*names, *_SOURCES]:
        path = root / name
        source = path.read_bytes() if path.exists() else b"(absent)"
        digest.update(name.encode() + b"\0" + source + b"\0")
    return digest.hexdigest()[:16]


def case_fingerprint(case: Case) -> dict[str, Any]:
    """What of ``case`` the oracle's result depends on, as plain JSON data."""
    fingerprint = {name: _plain(getattr(case, name)) for name in SEMANTIC_FIELDS}
    if case.op == LINEAR_OP:
        fingerprint.update({name: _plain(getattr(case, name, None)) for name in LINEAR_FIELDS})
    # issue 20's keys only where a case uses them: the other cases keep their keys
    fingerprint.update({name: _plain(getattr(case, name, None)) for name in OPTIONAL_FIELDS
                        if getattr(case, name, None) is not None})
    return fingerprint


def entry_key(case: Case, dtype: str, version: str | None = None) -> str:
    """The sha256 naming the entry of ``case`` in ``dtype`` for this oracle version."""
    content = {"case": case_fingerprint(case), "dtype": dtype,
               "oracle": version or oracle_version()}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if callable(getattr(value, "to_dict", None)):  # conformance.cases.generate.Spec
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
    """The cache at ``cache_directory()``; None when it is off, or when it can neither be
    written nor read (a file where its directory should be): results are then computed in
    memory, after one warning (``OracleCache.writable``)."""
    directory = cache_directory()
    if directory is None:
        return None
    store = OracleCache(directory)
    return store if store.writable or store.readable else None


def writable_directory() -> Path | None:
    """``cache_directory()`` if this process can write there, else None (warned once)."""
    store = default_cache()
    return store.root if store is not None and store.writable else None


@dataclass
class CacheStats:
    """What this process's caches did (summed over instances)."""

    hits: int = 0
    computed: int = 0
    bad: int = 0


STATS = CacheStats()

# Caches this process found it cannot write (absolute root -> the OS error) and those it
# probed.  A process that finds one sets $CONFORMANCE_CACHE_UNWRITABLE to its root, so the
# workers it starts take the cache as read-only at once, without a warning of their own: a
# run warns once.
UNWRITABLE_VARIABLE = "CONFORMANCE_CACHE_UNWRITABLE"
_UNWRITABLE: dict[str, str] = {}
_PROBED: set[str] = set()


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

    @property
    def directory(self) -> Path:
        """Where this oracle version's entries live."""
        return self.root / f"oracle-{self.version}"

    @property
    def readable(self) -> bool:
        """Whether there is a directory of entries to read."""
        return self.directory.is_dir()

    @property
    def writable(self) -> bool:
        """Whether entries can be written here: probed once per process (a temporary file
        created and removed); a cache that cannot be written is read-only for the rest of
        the process, after one warning naming it and the OS error."""
        where = str(self.root.absolute())
        if where not in _PROBED:
            _PROBED.add(where)
            if os.environ.get(UNWRITABLE_VARIABLE) == where:  # the parent found and said it
                _UNWRITABLE[where] = "found unwritable by the process that started this one"
            else:
                self._probe()
        return where not in _UNWRITABLE

    def _probe(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor, name = tempfile.mkstemp(dir=self.directory, prefix=".probe.",
                                                suffix=".tmp")
            os.close(descriptor)
            os.unlink(name)
        except OSError as error:
            self._unwritable(error)

    def _unwritable(self, error: OSError) -> None:
        """Take the cache as read-only for this process and its workers; warn once."""
        where = str(self.root.absolute())
        if where in _UNWRITABLE:
            return
        _UNWRITABLE[where] = str(error)
        os.environ[UNWRITABLE_VARIABLE] = where
        _warn(f"cannot write the oracle cache {self.root}: {error}; what it lacks is "
              "computed in memory and not kept (this costs the cache, not the run)")

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

    def store(self, key: str, result: OracleResult | LinearResult) -> Path | None:
        """Write the entry atomically (temporary file, then rename) and return its path.
        A write that fails (a full, read-only or damaged disk) costs the cache, not the
        run: it is never raised; the cache is read-only for the rest of the process, after
        one warning (``writable``), and None is returned."""
        if not self.writable:
            return None
        path = self.path(key)
        data = encode(result, key, self.version)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.",
                                                     suffix=".tmp")
        except OSError as error:
            self._unwritable(error)
            return None
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if not isinstance(error, OSError):
                raise
            self._unwritable(error)
            return None
        return path

    def get(self, key: str, compute: Callable[[], OracleResult]) -> OracleResult:
        """The entry for ``key``, computing and storing it if absent or bad."""
        result = self._load_or_report(key)
        if result is not None:
            return result
        if not self.writable:  # nothing computed here could be kept: no lock to wait for
            STATS.computed += 1
            return compute()
        with self._lock(key, blocking=True):
            # another process may have just written it (a bad entry is reported once)
            result = self._load_or_report(key, report=False)
            if result is not None:
                return result
            result = compute()
            STATS.computed += 1
            self.store(key, result)  # never raises: a failed write costs only the cache
            return result

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        """Try to take ``key``'s lock without waiting: True if this process should compute
        it (no entry yet, nobody else computing it, and a cache that can keep it), else
        False (the frameworks then compute what they need in memory)."""
        if not self.writable:
            yield False
            return
        with self._lock(key, blocking=False) as locked:
            yield locked and self._load_or_report(key, count=False) is None

    def _load_or_report(self, key: str, count: bool = True,
                        report: bool = True) -> OracleResult | None:
        try:
            result = self.load(key)
        except BadEntry as error:
            if report:
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
            except OSError:  # no locks on this file system: compute without the lock
                yield True
                return
            try:
                yield True
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Summary:
    """An entry without its exact values: the float64 nearest to each exact value
    (``reference.formats.nearest_float64``), the error bounds and the precision.  Enough for
    almost every comparison (``conformance.judge.compare.Expected``) and a few times cheaper to read
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


def encode(result: OracleResult | LinearResult, key: str, version: str) -> bytes:
    """``result`` as the bytes of an ``.npz`` archive with no object arrays."""
    if isinstance(result, LinearResult):
        return _encode_linear(result, key, version)
    meta = {"format": ENTRY_FORMAT, "key": key, "oracle": version,
            "precision": int(result.precision), "certified": bool(result.certified),
            "grad": result.grad is not None}
    arrays: dict[str, np.ndarray] = {}
    for name, values in (("output", result.output), ("grad", result.grad)):
        if values is None:
            continue
        arrays[f"{name}_shape"] = np.asarray(np.shape(values), dtype=np.int64)
        if isinstance(values, ExactPairs):  # hi + lo exactly: two float64 arrays say it all
            arrays[f"{name}_hi"], arrays[f"{name}_lo"] = values.hi, values.lo
            arrays[f"{name}_nearest"] = values.hi
            continue
        mantissas, exponents = _split(np.asarray(values, dtype=object))
        arrays[f"{name}_man"] = _int_bytes(mantissas)
        arrays[f"{name}_exp"] = _int_bytes(exponents)
        # the float64 view that most comparisons need (``Summary``), so that they can skip
        # rebuilding the exact values
        arrays[f"{name}_nearest"] = nearest_float64(np.asarray(values, dtype=object))
    for name in _FLOAT_FIELDS:
        value = getattr(result, name, None)
        if value is not None:
            arrays[name] = np.asarray(value, dtype=np.float64)
    return _packed(arrays, meta)


def decode(data: bytes, key: str, version: str,
           where: Path | str = "(entry)") -> OracleResult:
    """The ``OracleResult`` stored by ``encode``; ``BadEntry`` if it is damaged or another's."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = _meta(arrays["meta"], key, version, where)
        checked = _Checked(arrays, meta, where)
        arrays = {name: checked[name] for name in checked.files}  # every array, checked
        if meta.get("kind") == "linear":
            return _decode_linear(arrays, meta, where)  # type: ignore[return-value]
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
    archive = _Checked(archive, meta, where)  # only the arrays read here are hashed
    if "output_nearest" not in archive.files:
        return None
    output = _nearest(archive, "output", where)
    grad = _nearest(archive, "grad", where) if meta["grad"] else None
    bounds = _bounds(archive, where)
    return Summary(int(meta["precision"]), bool(meta["certified"]), output, grad,
                   bounds.get("output_bound"), bounds.get("grad_bound"))


def _meta(raw: np.ndarray, key: str, version: str, where: Path | str) -> dict[str, Any]:
    """The entry's metadata; ``BadEntry`` if the entry is another's (format, key, oracle),
    has no digests (an older version's: never trusted) or its metadata were edited."""
    meta: dict[str, Any] = json.loads(bytes(raw).decode())
    if meta.get("format") != ENTRY_FORMAT or meta.get("key") != key \
            or meta.get("oracle") != version:
        raise BadEntry(f"{where}: holds another entry (format {meta.get('format')}, "
                       f"key {str(meta.get('key'))[:16]}..., oracle {meta.get('oracle')})")
    digests = meta.get("digests")
    if not isinstance(digests, dict) or not all(isinstance(d, str) for d in digests.values()):
        raise BadEntry(f"{where}: has no digests of its arrays, so its content cannot be "
                       "checked (written by an older version, or edited)")
    if digests.get("meta") != _meta_digest(meta):
        raise BadEntry(f"{where}: its metadata do not match their digest (edited or damaged)")
    return meta


def _digest(values: np.ndarray) -> str:
    """The sha256 of an array's dtype, shape and bytes."""
    data = np.ascontiguousarray(values)
    head = f"{data.dtype.str} {list(data.shape)}\0".encode()
    return hashlib.sha256(head + data.tobytes()).hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    """The sha256 of the metadata without the digests of the arrays and of itself."""
    digests = {name: d for name, d in (meta.get("digests") or {}).items() if name != "meta"}
    content = {**{k: v for k, v in meta.items() if k != "digests"}, "digests": digests}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class _Checked:
    """An entry's arrays (an open archive or a dict), each checked against its digest as it
    is read; ``BadEntry`` where an array was changed, added or removed."""

    def __init__(self, arrays: Any, meta: dict[str, Any], where: Path | str) -> None:
        self._arrays, self._where = arrays, where
        self._digests: dict[str, str] = meta["digests"]
        names = arrays.files if hasattr(arrays, "files") else list(arrays)
        self.files = [name for name in names if name != "meta"]
        listed = set(self._digests) - {"meta"}
        if set(self.files) != listed:
            raise BadEntry(f"{where}: its arrays {sorted(self.files)} are not those its "
                           f"digests list {sorted(listed)} (edited or damaged)")

    def __getitem__(self, name: str) -> np.ndarray:
        values: np.ndarray = self._arrays[name]
        if _digest(values) != self._digests[name]:
            raise BadEntry(f"{self._where}: {name} does not match its digest "
                           "(edited or damaged)")
        return values


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


def _join(arrays: dict[str, np.ndarray], name: str) -> np.ndarray | ExactPairs:
    import mpmath
    from mpmath.libmp import MPZ

    shape = tuple(int(n) for n in arrays[f"{name}_shape"])
    if f"{name}_hi" in arrays:  # exact values stored as pairs (reference.pairs.ExactPairs)
        hi, lo = arrays[f"{name}_hi"], arrays[f"{name}_lo"]
        if (hi.dtype != np.float64 or lo.dtype != np.float64 or tuple(hi.shape) != shape
                or tuple(lo.shape) != shape):
            raise BadEntry(f"{name}: pairs {hi.dtype} {hi.shape} and {lo.dtype} {lo.shape} "
                           f"for shape {shape}")
        return ExactPairs(hi, lo)
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


# --- linear_cross_entropy entries ---------------------------------------------------------------

_LINEAR_PARTS = ("nearest", "residual", "bound", "materialised_bound")


def _encode_linear(result: LinearResult, key: str, version: str) -> bytes:
    """A ``LinearResult``: per quantity its four float64 arrays (``reference.linear.Quantity``),
    which are the whole result (its values are float64 pairs, no ``mpf``)."""
    meta: dict[str, Any] = {"format": ENTRY_FORMAT, "key": key, "oracle": version,
                            "kind": "linear", "precision": int(result.precision),
                            "certified": bool(result.certified),
                            "undecided": int(result.undecided),
                            "quantities": list(result.quantities)}
    arrays = {f"linear_{name}_{part}": np.asarray(getattr(quantity, part), dtype=np.float64)
              for name, quantity in result.quantities.items() for part in _LINEAR_PARTS}
    return _packed(arrays, meta)


def _decode_linear(arrays: dict[str, np.ndarray], meta: dict[str, Any],
                   where: Path | str) -> LinearResult:
    quantities = {}
    for name in meta["quantities"]:
        if name not in LINEAR_QUANTITIES:
            raise BadEntry(f"{where}: unknown linear_cross_entropy quantity {name!r}")
        parts = [arrays[f"linear_{name}_{part}"] for part in _LINEAR_PARTS]
        if any(p.dtype != np.float64 or p.shape != parts[0].shape for p in parts):
            raise BadEntry(f"{where}: {name}'s arrays are not float64 arrays of one shape")
        quantities[name] = Quantity(*parts)
    return LinearResult(quantities, int(meta["precision"]), bool(meta["certified"]),
                        int(meta.get("undecided", 0)))


def linear_reference(case: Case, dtype: str,
                     compute: Callable[[], LinearResult]) -> LinearResult:
    """``reference`` for a linear_cross_entropy case: its ``LinearResult``, through the cache."""
    result: Any = reference(case, dtype, compute)  # type: ignore[arg-type]
    if not isinstance(result, LinearResult):
        raise BadEntry(f"the cache entry of {case.id} in {dtype} is not a linear_cross_entropy "
                       "result")
    return result


def _packed(arrays: dict[str, Any], meta: dict[str, Any]) -> bytes:
    """``arrays`` and ``meta`` as one ``.npz``, with a digest of every array and of the
    metadata, checked on every read: a hand edit of the content (a reference, a bound) is as
    damaged as a truncated file."""
    digests = {name: _digest(values) for name, values in arrays.items()}
    meta["digests"] = digests
    digests["meta"] = _meta_digest(meta)
    arrays = {**arrays, "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(),
                                              dtype=np.uint8)}
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()
