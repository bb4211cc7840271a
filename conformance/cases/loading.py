"""Case files: loading YAML with line numbers, validating it, and the frozen ``Case`` record.

A case file is ``{defaults: {...}, cases: [{...}, ...]}`` (schema: ``schema.json`` beside this
module).  Loading is safe (plain YAML scalars, lists and mappings with string keys only;
no tags that build objects, no merge keys) and remembers the line of every node, so each
error names the file, the line and the field: ``cases/seeds.yaml:14: cases[2].target: ...``.

Loading is bounded whatever the file holds: only a regular file is read (a FIFO, a device
or a directory is refused without blocking), at most ``MAX_FILE_BYTES``; the YAML is built
from the parser's events without recursion, at most ``MAX_DEPTH`` lists and mappings deep
and ``MAX_NODES`` values with every alias counted as all it repeats (an alias bomb stops at
the alias that crosses the bound); integers lie in int64; a tensor has at most
``MAX_DIMENSIONS`` dimensions; a generated input at most
``generate.MAX_GENERATED_ELEMENTS`` elements; tolerances are finite numbers > 0.
"""

from __future__ import annotations

import difflib
import errno
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from conformance.cases import generate
from conformance.files import NotARegularFile, open_regular
from reference.formats import DTYPES
from reference.linear import check_linear_inputs
from reference.oracle import OracleDomainError, check_inputs
from reference.problem import LOSS_OPS, PROBS_OP, class_axis_of

SCHEMA_PATH = Path(__file__).with_name("schema.json")
REQUIRED_AFTER_DEFAULTS = ("source", "op", "input")
CASE_FILE_SUFFIXES = (".yaml", ".yml")
# PyYAML (YAML 1.1) reads 1e-4 as a string; a user writing it means a number.
_FLOAT_LITERAL = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


class CaseError(ValueError):
    """A problem in a case file, located by file, line and field."""

    def __init__(self, file: Path | str, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = str(file), line, field, message
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


@dataclass(frozen=True)
class Case:
    """One test case, with the defaults of its file merged in."""

    id: str
    op: str
    input: Any  # nested tuples of float | 'inf' | '-inf' | 'nan', or a generate.Spec
    source: str
    file: str
    line: int
    group: str
    description: str = ""
    target: Any = None
    weight: Any = None  # a tuple of numbers, a generate.Spec, or None
    # linear_cross_entropy: the linear layer, (C, D) and (C,) (nested tuples, a Spec or None)
    linear_weight: Any = None
    linear_bias: Any = None
    ignore_index: int = -100
    reduction: str = "mean"
    label_smoothing: float = 0.0
    grad: bool = True
    dtypes: tuple[str, ...] = DTYPES
    expect: str = "value"
    documented: Any = None
    documented_grad: Any = None
    documented_tolerance: float = 1e-4
    # issue 20 (reference/SPEC.md); None: not used, the case means what it meant before
    axis: int | None = None
    sample_weight: Any = None  # nested tuples of numbers, shaped like input without its axis
    where: Any = None  # nested tuples of booleans, shaped like input
    documented_grad_convention: str | None = None
    # the comparison's tolerance override (conformance/judge/compare.py): a number (a scale) or a
    # mapping {scale, k, reason}; not part of the case's identity
    tolerance: Any = field(default=None, compare=False)
    # with expect: error, what a framework should raise: ExpectedError for all, or a tuple of
    # (framework, ExpectedError) pairs (``expected_error``); not part of the case's identity
    error: Any = field(default=None, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_loss(self) -> bool:
        return self.op in LOSS_OPS or self.op == generate.LINEAR_OP

    @property
    def class_axis(self) -> int:
        """The class axis as a non-negative index (``axis``, by default 1, or 0 for (C,))."""
        return class_axis_of(max(_ndim(self.input), 1), self.axis)

    @property
    def has_probability_target(self) -> bool:
        if isinstance(self.target, generate.Spec):
            return self.is_loss and self.target.is_probability
        return self.is_loss and self.target is not None and _contains_float(self.target)

    def options(self) -> list[str]:
        """The semantics this case exercises, as named in the support matrix."""
        names = []
        if self.is_loss:
            names.append("probability_target" if self.has_probability_target else "index_target")
        if self.weight is not None:
            names.append("weight")
        if (self.is_loss and not self.has_probability_target
                and _contains(self.target_values(), self.ignore_index)):
            names.append("ignore_index")
        if self.label_smoothing:
            names.append("label_smoothing")
        if self.is_loss:
            names.append(f"reduction_{self.reduction}")
        ndim = _ndim(self.input)
        # k_dim_class_last and class_axis are opt-in (conformance/cases/options.py): an
        # (N, C) or (C,) input has its classes last whatever the axis says
        if ndim > 2 and self.class_axis == ndim - 1:
            names.append("k_dim_class_last")
        elif ndim > 2:
            names.append("k_dim")
            if self.class_axis != 1:
                names.append("class_axis")
        if self.sample_weight is not None:
            names.append("sample_weight")
        if self.where is not None:
            names.append("where")
        return names

    def target_values(self) -> Any:
        """The target as nested tuples, a generated one included (the input is not needed)."""
        if isinstance(self.target, generate.Spec):
            shape = (generate.logits_shape(self.input, self.linear_weight)
                     if self.op == generate.LINEAR_OP else generate.input_shape(self.input))
            assert shape is not None
            array = generate.target_array(self.target, shape, self.ignore_index)
            return tuple(array.reshape(-1).tolist())
        return self.target


# --- reading a case file, within limits ----------------------------------------------------

# What one case file may hold.  The shipped library's largest file has 150 KB and 10,011 YAML
# values (cases/semantics/grid.yaml) and nests 7 deep; large inputs are written as generators.
MAX_FILE_BYTES = 4 * 1024 * 1024  # the file's size, checked before it is read
MAX_NODES = 200_000  # YAML values (keys included), an alias counted as all it repeats
MAX_DEPTH = 40  # nested lists and mappings: the file, cases, a case, then a tensor's lists
MAX_DIMENSIONS = generate.MAX_DIMENSIONS  # numpy's limit on an array's dimensions (32)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # every integer (indices, seeds, shapes)

# libyaml's parser when PyYAML has it (the same events, faster); the composing is ours.
_PARSER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")}
_SEQ_TAG, _MAP_TAG = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a float", type(None): "null"}


@dataclass
class _Located:
    """Plain Python data from YAML plus the 1-based line of every node, keyed by its path."""

    data: Any
    lines: dict[tuple[Any, ...], int]

    def line_of(self, path: Iterable[Any]) -> int | None:
        path = tuple(path)
        while path not in self.lines and path:
            path = path[:-1]  # an unknown deeper path (or one inside an alias): its parent's
        return self.lines.get(path)


def _load_yaml(path: Path) -> _Located:
    text = _decode(path, _read_bytes(path))
    builder = _Builder(path)
    try:
        for event in yaml.parse(text, Loader=_PARSER):
            builder.add(event)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise CaseError(path, line, "", f"not valid YAML: {error}") from None
    return _Located(builder.root, builder.lines)


def _read_bytes(path: Path) -> bytes:
    """The bytes of ``path``, a regular file of at most ``MAX_FILE_BYTES``.  Opened without
    blocking and checked before anything is read: a FIFO without a writer, a device such as
    /dev/zero, a directory or an oversized file is refused at once."""
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            chunks, total = [], 0
            while size <= MAX_FILE_BYTES and (chunk := handle.read(1 << 20)):
                chunks.append(chunk)
                total += len(chunk)
                size = max(size, total)  # a file growing while it is read
    except NotARegularFile as error:
        raise CaseError(path, None, "", f"not a regular file ({error.kind}); case files are "
                                        "read from regular files only") from None
    except OSError as error:
        raise CaseError(path, None, "", f"cannot read file: {_os_reason(path, error)}") from None
    if size > MAX_FILE_BYTES:
        raise CaseError(path, None, "", f"the file has {size:,} bytes: at most "
                                        f"{MAX_FILE_BYTES:,} bytes (MAX_FILE_BYTES); "
                                        "describe large inputs with a generator "
                                        "(input: {generate: normal, shape: ...})")
    return b"".join(chunks)


def _os_reason(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "a symlink loop (too many levels of symbolic links)"
    reason = (error.strerror or str(error)).lower()
    if error.errno == errno.ENOENT and path.is_symlink():
        return f"{reason} (a symbolic link to a path that does not exist)"
    return reason


def _decode(path: Path, data: bytes) -> str:
    """The UTF-8 text of ``data``; a NUL byte, a byte that is not UTF-8 or a character YAML
    does not allow is an error naming its line and column."""
    nul = data.find(b"\0")
    if nul >= 0:
        line, column = _position(data, nul)
        raise CaseError(path, line, "", f"NUL byte at column {column}: a case file is UTF-8 "
                                        "text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _position(data, error.start)
        raise CaseError(path, line, "", f"not UTF-8: byte 0x{data[error.start]:02x} at column "
                                        f"{column} ({error.reason}); a case file is UTF-8 "
                                        "text") from None
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        line, column = _position(text, bad.start())
        raise CaseError(path, line, "", f"character U+{ord(bad.group()):04X} at column "
                                        f"{column} is not allowed in YAML (not printable)")
    return text


def _position(data: bytes | str, index: int) -> tuple[int, int]:
    """The 1-based line and column of ``data[index]``."""
    newline = b"\n" if isinstance(data, bytes) else "\n"
    start = data.rfind(newline, 0, index) + 1  # type: ignore[arg-type]
    return data.count(newline, 0, index) + 1, index - start + 1  # type: ignore[arg-type]


@dataclass
class _Open:
    """A list or mapping being built: its value, path, line, anchor, and the node count when
    it began (its size, once complete, for the aliases that repeat it)."""

    value: list[Any] | dict[str, Any]
    path: tuple[Any, ...]
    anchor: str | None
    nodes_before: int
    key: Any = None
    has_key: bool = False


class _Builder:
    """Plain Python data and the line of every node from a stream of YAML events, built
    without recursion (any depth is safe up to the check of ``MAX_DEPTH``), counting every
    value an alias repeats against ``MAX_NODES``, and allowing only plain scalars, lists and
    mappings with string keys.  An anchor is usable once its node is complete, so a node
    cannot contain itself.  An alias shares the anchored Python value (never mutated)."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.root: Any = None
        self.lines: dict[tuple[Any, ...], int] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open: list[_Open] = []
        self.nodes = 0
        self.documents = 0
        self.constructor = yaml.SafeLoader("")  # its resolver and scalar constructors only

    def add(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise CaseError(self.file, _line(event), "", "a case file is one YAML "
                                "document; found a second one ('---')")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            done = self.open.pop()
            if done.anchor is not None:
                self.anchors[done.anchor] = (done.value, self.nodes - done.nodes_before)
            self._attach(done.value)
        elif isinstance(event, yaml.NodeEvent):
            parent = self.open[-1] if self.open else None
            if isinstance(parent, _Open) and isinstance(parent.value, dict) \
                    and not parent.has_key:
                self._key(parent, event)
            else:
                self._node(event, self._path(parent))

    def _path(self, parent: _Open | None) -> tuple[Any, ...]:
        if parent is None:
            return ()
        index = parent.key if isinstance(parent.value, dict) else len(parent.value)
        return (*parent.path, index)

    def _count(self, nodes: int, line: int, path: tuple[Any, ...]) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            raise CaseError(self.file, line, _dotted(path), (
                f"the file holds more than {MAX_NODES:,} YAML values (aliases counted as all "
                f"the values they repeat): at most {MAX_NODES:,} (MAX_NODES); describe large "
                "inputs with a generator (input: {generate: normal, shape: ...})"))

    def _node(self, event: yaml.NodeEvent, path: tuple[Any, ...]) -> None:
        line = _line(event)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise CaseError(self.file, line, _dotted(path), (
                    f"alias *{event.anchor} names no complete anchor before it (an alias "
                    "cannot repeat the node that contains it)"))
            value, size = self.anchors[event.anchor]
            self._count(size, line, path)
            self.lines[path] = line
            self._attach(value)
            return
        self._count(1, line, path)
        self.lines[path] = line
        if isinstance(event, yaml.ScalarEvent):
            value = self._scalar(event, path)
            if event.anchor is not None:
                self.anchors[event.anchor] = (value, 1)
            self._attach(value)
            return
        is_list = isinstance(event, yaml.SequenceStartEvent)
        tag = self._tag(event, yaml.SequenceNode if is_list else yaml.MappingNode)
        if tag != (_SEQ_TAG if is_list else _MAP_TAG):
            raise self._unsupported(tag, line, path)
        if len(self.open) >= MAX_DEPTH:
            raise CaseError(self.file, line, _dotted(path), (
                f"lists and mappings nest more than {MAX_DEPTH} levels deep (MAX_DEPTH; a "
                f"tensor has at most {MAX_DIMENSIONS} dimensions)"))
        self.open.append(_Open([] if is_list else {}, path, event.anchor, self.nodes - 1))

    def _key(self, parent: _Open, event: yaml.NodeEvent) -> None:
        line, where = _line(event), _dotted(parent.path)
        if not isinstance(event, yaml.ScalarEvent):
            raise CaseError(self.file, line, where, "a mapping key must be a plain name, not "
                            "a list, a mapping or an alias")
        tag = self._tag(event, yaml.ScalarNode)
        if tag == _MERGE_TAG:
            raise CaseError(self.file, line, where, (
                "merge keys ('<<') are not supported: write the keys out (a file's "
                "'defaults:' are merged into each of its cases)"))
        key = self._scalar(event, parent.path)
        if not isinstance(key, str):
            kind = _TYPE_NAMES.get(type(key), "a value")
            raise CaseError(self.file, line, where, (
                f"key {_brief(repr(event.value))} is read as {kind}, not a name: keys are "
                "field names (quote it if you mean the text)"))
        self._count(1, line, parent.path)
        if key in parent.value:
            raise CaseError(self.file, line, _dotted((*parent.path, key)), "duplicate key")
        parent.key, parent.has_key = key, True

    def _attach(self, value: Any) -> None:
        if not self.open:
            self.root = value
            return
        parent = self.open[-1]
        if isinstance(parent.value, list):
            parent.value.append(value)
        else:
            parent.value[parent.key] = value
            parent.key, parent.has_key = None, False

    def _tag(self, event: Any, kind: type) -> str:
        tag = event.tag
        if tag is None or tag == "!":  # as PyYAML's composer resolves it
            value = event.value if kind is yaml.ScalarNode else None
            tag = self.constructor.resolve(kind, value, event.implicit)
        return str(tag)

    def _unsupported(self, tag: str, line: int, path: tuple[Any, ...]) -> CaseError:
        return CaseError(self.file, line, _dotted(path), f"unsupported YAML node {tag!r}: use "
                         "plain numbers, strings, lists and mappings")

    def _scalar(self, event: yaml.ScalarEvent, path: tuple[Any, ...]) -> Any:
        line, tag = _line(event), self._tag(event, yaml.ScalarNode)
        if tag not in _SCALAR_TAGS:
            raise self._unsupported(tag, line, path)
        node = yaml.ScalarNode(tag, event.value, style=event.style)
        try:
            value = self.constructor.yaml_constructors[tag](self.constructor, node)
        except (ValueError, KeyError, TypeError, yaml.YAMLError) as error:
            raise CaseError(self.file, line, _dotted(path), (
                f"cannot read {_brief(repr(event.value))} as {tag.rsplit(':', 1)[-1]} "
                f"({_brief(str(error))})")) from None
        # a plain scalar: PyYAML's parser says style None, libyaml's ''
        if isinstance(value, str) and not event.style and _FLOAT_LITERAL.match(value):
            return float(value)
        if isinstance(value, int) and not isinstance(value, bool) \
                and not INT64_MIN <= value <= INT64_MAX:
            raise CaseError(self.file, line, _dotted(path), (
                f"integer {_brief(event.value)} is outside the int64 range [-2**63, 2**63 - 1] "
                "(write a float such as 1e20 if it is a value)"))
        return value


def _line(event: yaml.Event) -> int:
    return int(getattr(event.start_mark, "line", 0)) + 1  # every parsed event has a mark


def _brief(text: str, limit: int = 60) -> str:
    """``text`` shortened for an error message (a 4 MB value must not become one)."""
    return text if len(text) <= limit else f"{text[:limit - 8]}...{text[-5:]}"


def _dotted(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        if not isinstance(part, int) and len(str(part)) > 60:
            part = f"{str(part)[:55]}..."
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


# --- validation ---------------------------------------------------------------------------------


@cache
def case_schema() -> dict[str, Any]:
    """The closed JSON Schema of case files (``conformance/cases/schema.json``)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator() -> Any:
    """A validator of the case schema whose integers are Python ints only: JSON Schema counts
    1.0 as an integer, and a seed, shape or index written 1.0e3 would reach numpy a float."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(base, type_checker=checker)(case_schema())


def _schema_error(path: Path, located: _Located) -> CaseError | None:
    errors = sorted(_validator().iter_errors(located.data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    return _schema_errors_of(path, located, jsonschema.exceptions.best_match(errors))[0][1]


def _schema_errors(path: Path, located: _Located) -> list[tuple[tuple[Any, ...], CaseError]]:
    """Every schema error of the file (each unknown key its own), with its path."""
    found = []
    for error in _validator().iter_errors(located.data):
        # best_match of one error descends into a oneOf's branches to the telling one
        found += _schema_errors_of(path, located, jsonschema.exceptions.best_match([error]))
    return found


def _schema_errors_of(path: Path, located: _Located, error: jsonschema.ValidationError
                      ) -> list[tuple[tuple[Any, ...], CaseError]]:
    where = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = schema.get("properties", {})
        unknown = [key for key in error.instance if key not in allowed]
        return [((*where, key), CaseError(
            path, located.line_of((*where, key)), _dotted((*where, key)),
            f"unknown key {_brief(repr(key))}{_did_you_mean(key, allowed)}"
            f"; allowed keys: {', '.join(sorted(allowed))}")) for key in unknown]
    return [(where, CaseError(path, located.line_of(where), _dotted(where), _explain(error)))]


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    if len(word) > 100:  # no name is that long; difflib's cost grows with it
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _explain(error: jsonschema.ValidationError) -> str:
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    instance = _brief(repr(error.instance))
    if error.validator == "enum":
        choices = [str(c) for c in schema.get("enum", [])]
        return (f"{instance} is not one of {', '.join(map(repr, choices))}"
                f"{_did_you_mean(str(error.instance), choices)}")
    if error.validator in ("oneOf", "anyOf"):
        expected = schema.get("description") or "wrong type"
        return f"{instance} is not valid here ({expected})"
    return error.message.replace(repr(error.instance), instance)


# The fields holding nested lists of numbers, and the tolerance-like ones (each a finite
# number > 0: the schema's exclusiveMinimum lets NaN through, and NaN or infinity as a
# tolerance would pass every record).
TENSOR_FIELDS = ("input", "target", "weight", "documented", "documented_grad", "sample_weight",
                 "where", "linear_weight", "linear_bias")


def _tolerances(raw: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every tolerance-like number of a case's (or the defaults') mapping, with its path:
    ``documented_tolerance``, ``tolerance`` as a number, ``tolerance.scale``, ``tolerance.k``
    as a number or per quantity (``tolerance.k.output``, ``tolerance.k.grad``)."""
    if "documented_tolerance" in raw:
        yield ("documented_tolerance",), raw["documented_tolerance"]
    if "tolerance" not in raw:
        return
    tolerance = raw["tolerance"]
    if not isinstance(tolerance, dict):
        yield ("tolerance",), tolerance
        return
    if "scale" in tolerance:
        yield ("tolerance", "scale"), tolerance["scale"]
    k = tolerance.get("k")
    if isinstance(k, dict):
        yield from ((("tolerance", "k", quantity), value) for quantity, value in k.items())
    elif "k" in tolerance:
        yield ("tolerance", "k"), k


def is_finite_positive(value: Any) -> bool:
    """A number (not a boolean) that is finite and > 0."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _too_deep(value: Any, limit: int) -> tuple[int, ...] | None:
    """The index path of a list nested ``limit + 1`` lists deep in ``value``, or None."""
    pending: list[tuple[tuple[int, ...], Any]] = [((), value)]
    while pending:
        at, item = pending.pop()
        if isinstance(item, list):
            if len(at) >= limit:
                return at
            pending.extend(((*at, i), v) for i, v in enumerate(item))
    return None


def _check_fields(path: Path, located: _Located) -> None:
    """What the schema cannot say, in the defaults and in every case, each at its own line:
    finite positive tolerances, and tensors of at most ``MAX_DIMENSIONS`` dimensions."""
    for _, error in _field_errors(path, located):
        raise error


def _field_errors(path: Path, located: _Located
                  ) -> Iterator[tuple[tuple[Any, ...], CaseError]]:
    """``_check_fields``' errors, each with the path of its section."""
    sections: list[tuple[tuple[Any, ...], Any]] = [
        (("cases", i), raw) for i, raw in enumerate(located.data["cases"])]
    if "defaults" in located.data:
        sections.insert(0, (("defaults",), located.data["defaults"]))
    for where, raw in sections:
        for field_path, value in _tolerances(raw):
            at = (*where, *field_path)
            if not is_finite_positive(value):
                yield where, CaseError(path, located.line_of(at), _dotted(at),
                                       f"{'.'.join(field_path)} must be a finite number > 0, "
                                       f"got {_brief(repr(value))}")
        for name in TENSOR_FIELDS:
            deep = _too_deep(raw.get(name), MAX_DIMENSIONS)
            if deep is not None:
                yield where, CaseError(
                    path, located.line_of((*where, name, *deep)), _dotted((*where, name)),
                    f"{name} nests lists more than {MAX_DIMENSIONS} deep: at most "
                    f"{MAX_DIMENSIONS} dimensions (MAX_DIMENSIONS, numpy's limit)")


def load_file(path: Path | str) -> list[Case]:
    """Load and validate one case file; raises ``CaseError`` at its first problem in file
    order (``check_file`` lists them all).  Reads only a regular file, within
    ``MAX_FILE_BYTES``, ``MAX_NODES`` and ``MAX_DEPTH``."""
    cases, errors = check_file(path)
    if errors:
        raise errors[0]
    return cases


MAX_ERRORS = 50  # errors ``check_file`` reports for one file, in file order

# Keys that mean nothing for an op: a case of that op that sets one is refused (a softmax
# with a target was surely meant to be a loss).  Keys another op lacks are not listed.
NOT_FOR_OP: dict[str, frozenset[str]] = {
    "softmax": frozenset({"target", "weight", "ignore_index", "reduction", "label_smoothing"}),
    "log_softmax": frozenset({"target", "weight", "ignore_index", "reduction",
                              "label_smoothing"}),
}  # nll_loss with label_smoothing: the oracle's domain check refuses it


def check_file(path: Path | str, limit: int = MAX_ERRORS) -> tuple[list[Case], list[CaseError]]:
    """Every error of one case file, in file order (line, then field), at most ``limit``,
    and the cases that are valid.  An error that leaves the file's structure unknown (not
    YAML, beyond a limit, no ``cases`` list, a bad ``defaults``) is the only one reported;
    otherwise each case is checked on its own, all of it."""
    path = Path(path)
    try:
        located = _load_yaml(path)
    except CaseError as error:
        return [], [error]
    if not isinstance(located.data, dict):
        return [], [CaseError(path, 1, "", "a case file is a mapping with a 'cases' list")]
    errors = _schema_errors(path, located)
    if not any(where[:1] == ("defaults",) for where, _ in errors):
        errors += _field_errors(path, located)
    found = [error for _, error in errors]
    broken = {where[:2] for where, _ in errors}
    cases: list[Case] = []
    if all(len(where) >= 2 and where[0] == "cases" for where in broken):
        defaults = located.data.get("defaults", {})
        for index, raw in enumerate(located.data["cases"]):
            if ("cases", index) in broken:
                continue
            try:
                case = _build_case(path, located, index, {**defaults, **raw})
            except CaseError as error:
                found.append(error)
                continue
            misplaced = _keys_not_for_op(path, located, index, case)
            found += misplaced
            if not misplaced:
                cases.append(case)
    found.sort(key=lambda e: (e.line or 0, e.field))
    return cases, found[:limit]


def _keys_not_for_op(path: Path, located: _Located, index: int, case: Case) -> list[CaseError]:
    """A case's own keys (not the file's defaults) that its op has no use for; a case that
    expects an error may set them (it checks that a framework refuses them)."""
    if case.expect != "value":
        return []
    raw = located.data["cases"][index]
    return [CaseError(path, located.line_of(("cases", index, key)),
                      _dotted(("cases", index, key)),
                      f"{key!r} does not apply to op {case.op!r}; remove it (or is the op "
                      "wrong?)")
            for key in raw if key in NOT_FOR_OP.get(case.op, ())]


def _build_case(path: Path, located: _Located, index: int, raw: dict[str, Any]) -> Case:
    where = ("cases", index)
    line = located.line_of(where) or 1
    for name in REQUIRED_AFTER_DEFAULTS:
        if name not in raw:
            raise CaseError(path, line, _dotted((*where, name)),
                            "required (in the case or in the file's defaults)")
    _check_linear_fields(path, located, where, raw)
    for name in ("input", "target", "weight", "linear_weight", "linear_bias"):
        if isinstance(raw.get(name), dict):
            try:
                generate.check(name, raw[name])
            except generate.SpecError as error:
                spec_path = (*where, name, error.field) if error.field else (*where, name)
                raise CaseError(path, located.line_of(spec_path), _dotted(spec_path),
                                str(error)) from None
    for name in ("input", "target", "documented", "documented_grad", "sample_weight", "where",
                 "linear_weight"):
        if raw.get(name) is not None and not isinstance(raw[name], dict) \
                and _shape(raw[name]) is None:
            raise CaseError(path, located.line_of((*where, name)), _dotted((*where, name)),
                            "nested lists must be rectangular (every row the same length)")
    _check_issue20_fields(path, located, where, raw)
    case = Case(
        file=str(path), line=line, group=raw.get("group", path.stem), raw=raw,
        **{k: _freeze(v) for k, v in raw.items() if k != "group"},
    )
    if case.error is not None:
        case = replace(case, error=_expected_errors(path, located, where, raw["error"],
                                                    case.expect))
    if case.expect == "value":
        _check_domain(path, located, where, case)
    elif _has_spec(case) and case.op != generate.LINEAR_OP:
        # an expected error still needs inputs that can be generated
        _raise_problem(path, located, where, generate.check_generation(
            case.input, case.target, case.weight))
    return case


@dataclass(frozen=True)
class ExpectedError:
    """An exception a framework should raise: one of ``types`` (class names; empty: any)
    with a message in which ``match`` (a regular expression) is found (empty: any)."""

    types: tuple[str, ...] = ()
    match: str = ""

    def accepts(self, error_type: str, message: str) -> bool:
        return (not self.types or error_type in self.types) and (
            not self.match or re.search(self.match, message) is not None)

    def __str__(self) -> str:
        kinds = "|".join(self.types) or "an exception"
        return kinds + (f" matching {self.match!r}" if self.match else "")


def _expected_errors(path: Path, located: _Located, where: tuple[Any, ...], raw: Any,
                     expect: str) -> Any:
    """``error:`` as an ``ExpectedError`` or a tuple of (framework, ``ExpectedError``)."""
    here = (*where, "error")
    if expect != "error":
        raise CaseError(path, located.line_of(here), _dotted(here),
                        "names the error expected, so the case needs 'expect: error'")

    def one(spec: dict[str, Any], at: tuple[Any, ...]) -> ExpectedError:
        if "match" in spec:
            try:
                re.compile(spec["match"])
            except re.error as error:
                raise CaseError(path, located.line_of((*at, "match")),
                                _dotted((*at, "match")),
                                f"not a regular expression: {error}") from None
        types = tuple(spec["type"].split("|")) if "type" in spec else ()
        return ExpectedError(types, spec.get("match", ""))

    if set(raw) <= {"type", "match"}:
        return one(raw, here)
    return tuple((name, one(spec, (*here, name))) for name, spec in sorted(raw.items()))


def expected_error(case: Case, framework: str) -> ExpectedError | None:
    """What ``framework`` should raise on ``case`` (None: any exception)."""
    spec = case.error
    if spec is None or isinstance(spec, ExpectedError):
        return spec
    return dict(spec).get(framework)


def _has_spec(case: Case) -> bool:
    return any(isinstance(v, generate.Spec) for v in (case.input, case.target, case.weight,
                                                        case.linear_weight, case.linear_bias))


def _check_linear_fields(path: Path, located: _Located, where: tuple[Any, ...],
                         raw: dict[str, Any]) -> None:
    """linear_weight and linear_bias belong to linear_cross_entropy, which needs the first."""
    linear = raw.get("op") == generate.LINEAR_OP
    for name in ("linear_weight", "linear_bias"):
        if not linear and raw.get(name) is not None:
            raise CaseError(path, located.line_of((*where, name)), _dotted((*where, name)),
                            f"{name} is a field of op linear_cross_entropy only (this case's "
                            f"op is {raw.get('op')!r})")
    if linear and raw.get("linear_weight") is None:
        raise CaseError(path, located.line_of(where), _dotted((*where, "linear_weight")),
                        "required for op linear_cross_entropy: the (C, D) weight of the "
                        "linear layer (a nested list or a generator mapping)")


def _check_linear_domain(path: Path, located: _Located, where: tuple[Any, ...],
                         case: Case, note: str) -> None:
    """A linear_cross_entropy case's inputs lie in the oracle's domain
    (``reference.linear.check_linear_inputs``, or ``generate.check_linear_domain`` for
    generated values)."""
    if _has_spec(case):
        _raise_problem(path, located, where, generate.check_linear_domain(
            case.input, case.linear_weight, case.linear_bias, case.target, case.weight,
            case.ignore_index, case.label_smoothing), note)
        return
    try:
        check_linear_inputs(
            case.input, linear_weight=case.linear_weight, linear_bias=case.linear_bias,
            target=case.target, weight=case.weight, ignore_index=case.ignore_index,
            reduction=case.reduction, label_smoothing=case.label_smoothing)
    except OracleDomainError as error:
        _raise_problem(path, located, where, (error.field, str(error)), note)


def _raise_problem(path: Path, located: _Located, where: tuple[Any, ...],
                   problem: tuple[str, str] | None, note: str = "") -> None:
    if problem is not None:
        field_path = (*where, problem[0])
        raise CaseError(path, located.line_of(field_path), _dotted(field_path),
                        problem[1] + note)


def _check_domain(path: Path, located: _Located, where: tuple[Any, ...], case: Case) -> None:
    """The inputs lie in the oracle's domain (``reference.oracle.check_inputs``, or its mirror
    ``generate.check_domain`` for generated values, which also checks they can be generated)."""
    note = " (mark the case 'expect: error' if this is intended)"
    if case.op == generate.LINEAR_OP:
        _check_linear_domain(path, located, where, case, note)
        return
    shape = generate.input_shape(case.input)
    if shape and shape[generate.class_axis(shape)] == 0:
        # the oracle cannot compute it (a row of no classes has no softmax): say so here
        _raise_problem(path, located, where, ("input", (
            f"input has no classes: the class axis (axis {generate.class_axis(shape)} of "
            f"shape {shape}) is empty; at least one class is needed")), note)
    if _has_spec(case):
        _raise_problem(path, located, where, generate.check_domain(
            case.op, case.input, case.target, case.weight, case.ignore_index,
            case.label_smoothing), note)
        return
    try:
        check_inputs(
            case.op, case.input, target=case.target, weight=case.weight,
            ignore_index=case.ignore_index, reduction=case.reduction,
            label_smoothing=case.label_smoothing, axis=case.axis,
            sample_weight=case.sample_weight, where=case.where,
        )
    except OracleDomainError as error:
        _raise_problem(path, located, where, (error.field, str(error)), note)


@dataclass(frozen=True)
class ShapedValues:
    """A documented tensor written ``{shape: [...], values: [...]}``: its values flat, in C
    order (any shape, an empty dimension included)."""

    shape: tuple[int, ...]
    values: tuple[Any, ...]

    def array(self) -> Any:
        import numpy as np

        return np.asarray([float(v) for v in self.values], dtype=np.float64).reshape(self.shape)


def documented_array(value: Any) -> Any:
    """A documented value (nested tuples or ``ShapedValues``) as a float64 numpy array."""
    import numpy as np

    if isinstance(value, ShapedValues):
        return value.array()
    return np.asarray(value, dtype=np.float64)


def _check_issue20_fields(path: Path, located: _Located, where: tuple[Any, ...],
                          raw: dict[str, Any]) -> None:
    """What the schema cannot say about issue 20's keys, at the key's own line."""
    def fail(name: str, message: str, *deeper: Any) -> None:
        at = (*where, name, *deeper)
        raise CaseError(path, located.line_of(at), _dotted(at), message)

    for name in ("documented", "documented_grad"):
        value = raw.get(name)
        if isinstance(value, dict):
            count = math.prod(value["shape"])
            if len(value["shape"]) > MAX_DIMENSIONS:
                fail(name, f"shape has more than {MAX_DIMENSIONS} dimensions", "shape")
            if count != len(value["values"]):
                fail(name, f"shape {value['shape']} holds {count} values; values has "
                           f"{len(value['values'])}", "values")
    generated = [n for n in ("input", "target") if isinstance(raw.get(n), dict)]
    for name in ("axis", "sample_weight", "where"):
        if raw.get(name) is not None and generated:
            fail(name, f"{name} needs literal values: the generators of {generated[0]} assume "
                       "the default class axis and no per-example weights or mask "
                       "(write the values out)")
    if raw.get("op") == PROBS_OP and generated:
        fail(generated[0], f"{PROBS_OP} takes probabilities: write them out (the "
                           "generators make logits)")
    if raw.get("documented_grad_convention") is not None and raw.get("documented_grad") is None:
        fail("documented_grad_convention", "names the convention of documented_grad, which "
                                           "the case does not have")


def _freeze(value: Any) -> Any:
    if isinstance(value, dict) and "generate" in value:
        return generate.freeze(value)
    if isinstance(value, dict) and set(value) == {"shape", "values"}:
        return ShapedValues(tuple(value["shape"]), tuple(value["values"]))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _shape(value: Any) -> tuple[int, ...] | None:
    """Shape of a rectangular nested list (() for a scalar), None when ragged."""
    if not isinstance(value, (list, tuple)):
        return ()
    shapes = {_shape(v) for v in value}
    if len(shapes) > 1 or None in shapes:
        return None
    inner: tuple[int, ...] = shapes.pop() or () if shapes else ()
    return (len(value), *inner)


def _ndim(value: Any) -> int:
    shape = generate.input_shape(value) if isinstance(value, generate.Spec) else _shape(value)
    return len(shape) if shape is not None else 0


def _flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


def _contains_float(value: Any) -> bool:
    return any(isinstance(v, (float, str)) for v in _flatten(value))


def _contains(value: Any, wanted: Any) -> bool:
    return any(v == wanted for v in _flatten(value))


# --- many files -----------------------------------------------------------------------------


def find_case_files(paths: Iterable[Path | str]) -> list[Path]:
    """The files named, and the YAML files found (recursively, sorted) under the directories
    named.  Every entry that is not a directory is listed, a FIFO or a broken link included,
    so ``load_file`` says what is wrong with it rather than leaving it out without a word; a
    directory that cannot be listed is an error.  Symbolic links to directories are not
    followed (as before: no loops)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(_walk(p)))
        elif os.path.lexists(p):  # a file, or what load_file refuses with its reason
            files.append(p)
        else:
            raise CaseError(p, None, "", "no such file or directory")
    return files


def _walk(top: Path) -> Iterator[Path]:
    def refuse(error: OSError) -> None:
        where = error.filename or top
        raise CaseError(where, None, "", f"cannot list directory: {_os_reason(Path(where), error)}")

    for folder, _, names in os.walk(top, onerror=refuse):
        yield from (Path(folder, name) for name in names
                    if Path(name).suffix in CASE_FILE_SUFFIXES)


def load_cases(paths: Iterable[Path | str]) -> list[Case]:
    """Load every case under ``paths``; ids must be unique across all of them."""
    cases: list[Case] = []
    seen: dict[str, Case] = {}
    for file in find_case_files(paths):
        for case in load_file(file):
            if case.id in seen:
                first = seen[case.id]
                raise CaseError(case.file, case.line, "id",
                                f"duplicate id {case.id!r} (first at {first.file}:{first.line})")
            seen[case.id] = case
            cases.append(case)
    return cases
