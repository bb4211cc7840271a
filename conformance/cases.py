"""Case files: loading YAML with line numbers, validating it, and the frozen ``Case`` record.

A case file is ``{defaults: {...}, cases: [{...}, ...]}`` (schema: ``case_schema.json`` beside
this module).  Loading is safe (plain YAML scalars, lists and mappings only; no tags that
build objects) and remembers the line of every node, so each error names the file, the line
and the field: ``cases/seeds.yaml:14: cases[2].target: ...``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from conformance import generate
from reference.formats import DTYPES
from reference.oracle import OracleDomainError, check_inputs

SCHEMA_PATH = Path(__file__).with_name("case_schema.json")
REQUIRED_AFTER_DEFAULTS = ("source", "op", "input")
CASE_FILE_SUFFIXES = (".yaml", ".yml")
# PyYAML (YAML 1.1) reads 1e-4 as a string; a user writing it means a number.
_PLAIN_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null",
                                                        "seq", "map")}
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
    ignore_index: int = -100
    reduction: str = "mean"
    label_smoothing: float = 0.0
    grad: bool = True
    dtypes: tuple[str, ...] = DTYPES
    expect: str = "value"
    documented: Any = None
    documented_grad: Any = None
    documented_tolerance: float = 1e-4
    # the comparison's tolerance override (conformance/compare.py): a number (a scale) or a
    # mapping {scale, k, reason}; not part of the case's identity
    tolerance: Any = field(default=None, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_loss(self) -> bool:
        return self.op in ("nll_loss", "cross_entropy")

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
        if _ndim(self.input) > 2:
            names.append("k_dim")
        return names

    def target_values(self) -> Any:
        """The target as nested tuples, a generated one included (the input is not needed)."""
        if isinstance(self.target, generate.Spec):
            shape = generate.input_shape(self.input)
            assert shape is not None
            array = generate.target_array(self.target, shape, self.ignore_index)
            return tuple(array.reshape(-1).tolist())
        return self.target


# --- YAML with line numbers ------------------------------------------------------------------


@dataclass
class _Located:
    """Plain Python data from YAML plus the 1-based line of every node, keyed by its path."""

    data: Any
    lines: dict[tuple[Any, ...], int]

    def line_of(self, path: Iterable[Any]) -> int | None:
        path = tuple(path)
        while path not in self.lines and path:
            path = path[:-1]  # an unknown deeper path: fall back to its parent
        return self.lines.get(path)


def _load_yaml(path: Path) -> _Located:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CaseError(path, None, "", f"cannot read file: {error}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise CaseError(path, line, "", f"not valid YAML: {error}") from None
    lines: dict[tuple[Any, ...], int] = {}
    data = _to_python(root, (), lines, path) if root is not None else None
    return _Located(data, lines)


def _to_python(node: yaml.Node, path: tuple[Any, ...], lines: dict, file: Path) -> Any:
    lines[path] = node.start_mark.line + 1
    if node.tag not in _PLAIN_TAGS:
        raise CaseError(file, node.start_mark.line + 1, _dotted(path),
                        f"unsupported YAML node {node.tag!r}: use plain numbers, strings and lists")
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, file, path)
            if key in result:
                raise CaseError(file, key_node.start_mark.line + 1, _dotted((*path, key)),
                                "duplicate key")
            result[key] = _to_python(value_node, (*path, key), lines, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    return _scalar(node, file, path)


def _scalar(node: yaml.Node, file: Path, path: tuple[Any, ...]) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise CaseError(file, node.start_mark.line + 1, _dotted(path),
                        f"unsupported YAML node {node.tag!r}: use plain numbers, strings and lists")
    value = yaml.SafeLoader("").construct_object(node)
    if isinstance(value, str) and node.style is None and _FLOAT_LITERAL.match(value):
        return float(value)
    return value


def _dotted(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


# --- validation ---------------------------------------------------------------------------------


@cache
def case_schema() -> dict[str, Any]:
    """The closed JSON Schema of case files (``conformance/case_schema.json``)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _schema_error(path: Path, located: _Located) -> CaseError | None:
    validator = jsonschema.Draft202012Validator(case_schema())
    errors = sorted(validator.iter_errors(located.data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    error = jsonschema.exceptions.best_match(errors)
    where = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        unknown = [key for key in error.instance if key not in allowed]
        where.append(unknown[0])
        message = (f"unknown key {unknown[0]!r}{_did_you_mean(unknown[0], allowed)}; "
                   f"allowed keys: {', '.join(sorted(allowed))}")
        return CaseError(path, located.line_of(where), _dotted(where), message)
    return CaseError(path, located.line_of(where), _dotted(where), _explain(error))


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _explain(error: jsonschema.ValidationError) -> str:
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "enum":
        choices = [str(c) for c in schema.get("enum", [])]
        return (f"{error.instance!r} is not one of {', '.join(map(repr, choices))}"
                f"{_did_you_mean(str(error.instance), choices)}")
    if error.validator in ("oneOf", "anyOf"):
        expected = schema.get("description") or "wrong type"
        return f"{error.instance!r} is not valid here ({expected})"
    return error.message


def load_file(path: Path | str) -> list[Case]:
    """Load and validate one case file; raises ``CaseError`` at the first problem."""
    path = Path(path)
    located = _load_yaml(path)
    if not isinstance(located.data, dict):
        raise CaseError(path, 1, "", "a case file is a mapping with a 'cases' list")
    error = _schema_error(path, located)
    if error is not None:
        raise error
    defaults = located.data.get("defaults", {})
    return [
        _build_case(path, located, index, {**defaults, **raw})
        for index, raw in enumerate(located.data["cases"])
    ]


def _build_case(path: Path, located: _Located, index: int, raw: dict[str, Any]) -> Case:
    where = ("cases", index)
    line = located.line_of(where) or 1
    for name in REQUIRED_AFTER_DEFAULTS:
        if name not in raw:
            raise CaseError(path, line, _dotted((*where, name)),
                            "required (in the case or in the file's defaults)")
    for name in ("input", "target", "weight"):
        if isinstance(raw.get(name), dict):
            try:
                generate.check(name, raw[name])
            except generate.SpecError as error:
                spec_path = (*where, name, error.field) if error.field else (*where, name)
                raise CaseError(path, located.line_of(spec_path), _dotted(spec_path),
                                str(error)) from None
    for name in ("input", "target", "documented", "documented_grad"):
        if raw.get(name) is not None and _shape(raw[name]) is None:
            raise CaseError(path, located.line_of((*where, name)), _dotted((*where, name)),
                            "nested lists must be rectangular (every row the same length)")
    case = Case(
        file=str(path), line=line, group=raw.get("group", path.stem), raw=raw,
        **{k: _freeze(v) for k, v in raw.items() if k != "group"},
    )
    if case.expect == "value":
        _check_domain(path, located, where, case)
    return case


def _check_domain(path: Path, located: _Located, where: tuple[Any, ...], case: Case) -> None:
    if any(isinstance(v, generate.Spec) for v in (case.input, case.target, case.weight)):
        problem = generate.check_domain(case.op, case.input, case.target, case.weight,
                                        case.ignore_index, case.label_smoothing)
        if problem is not None:
            field_path = (*where, problem[0])
            raise CaseError(path, located.line_of(field_path), _dotted(field_path),
                            f"{problem[1]} (mark the case 'expect: error' if this is intended)")
        return
    try:
        check_inputs(
            case.op, case.input, target=case.target, weight=case.weight,
            ignore_index=case.ignore_index, reduction=case.reduction,
            label_smoothing=case.label_smoothing,
        )
    except OracleDomainError as error:
        field_path = (*where, error.field)
        raise CaseError(path, located.line_of(field_path), _dotted(field_path),
                        f"{error} (mark the case 'expect: error' if this is intended)") from None


def _freeze(value: Any) -> Any:
    if isinstance(value, dict) and "generate" in value:
        return generate.freeze(value)
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
    """The YAML files named, or found (recursively, sorted) under the directories named."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in CASE_FILE_SUFFIXES))
        elif p.exists():
            files.append(p)
        else:
            raise CaseError(p, None, "", "no such file or directory")
    return files


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
