"""Hostile case files: whatever a careless or malicious user writes, loading ends in a
``CaseError`` that names the file, the line and the field, within bounded time and memory
(``conformance.cases.loading``' limits), never in a traceback, a hang or a gigabyte.

Each input goes through ``load_file`` and through ``conformance validate`` (in-process via
``conformance.cli.main``, or in a subprocess with a generous timeout where today's code
would hang or recurse without end)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conformance.cases import generate
from conformance.cases import loading as cases_module
from conformance.cases.loading import CaseError, find_case_files, load_file
from conformance.cli import main
from tests.conftest import ROOT, write


@pytest.fixture(autouse=True, params=["libyaml", "pyyaml"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every in-process load with libyaml's parser (the default where PyYAML has it) and with
    PyYAML's own (the fallback): the same events, the same errors."""
    if request.param == "pyyaml":
        monkeypatch.setattr(cases_module, "_PARSER", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    return str(request.param)


HEAD = "cases:\n  - id: a\n    source: s\n    op: cross_entropy\n"  # the case starts on line 2
GOOD = HEAD + "    input: [[1.0, 2.0]]\n    target: [0]\n"


def case_with(op: str = "cross_entropy", **fields: str) -> str:
    """A one-case file whose fields (op on line 4, input on line 5, target on line 6, then the
    others) are written as given."""
    fields = {"input": "[[1.0, 2.0]]", "target": "[0]", **fields}
    lines = "".join(f"    {key}: {value}\n" for key, value in fields.items())
    return HEAD.replace("cross_entropy", op) + lines


def refused(path: Path, line: int | None, field: str, words: str) -> CaseError:
    """Assert that ``path`` is refused by ``load_file`` and by ``conformance validate`` (exit
    2) with an error at ``path:line: field: ...`` containing ``words``."""
    with pytest.raises(CaseError) as caught:
        load_file(path)
    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), line, field), str(error)
    assert words in error.message, str(error)
    return error


def validate_in_process(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return captured.err


def validate_in_subprocess(*paths: Path | str, timeout: float = 120) -> str:
    """``conformance validate`` in a process of its own (today's code hangs or recurses on
    some of these inputs; the timeout is generous, the limits are what keeps it short)."""
    done = subprocess.run([sys.executable, "-m", "conformance", "validate", *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done.stderr


def load_in_subprocess(path: Path | str, timeout: float = 120) -> str:
    """``load_file`` in a process of its own; returns the CaseError's text."""
    code = ("import sys\nfrom conformance.cases.loading import CaseError, load_file\n"
            "try:\n    load_file(sys.argv[1])\nexcept CaseError as error:\n"
            "    print(error)\n    sys.exit(2)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


def check_both(path: Path, line: int | None, field: str, words: str,
               capsys: pytest.CaptureFixture[str]) -> None:
    refused(path, line, field, words)
    where = f"{path}:{line}" if line is not None else str(path)
    assert f"error: {where}: {field + ': ' if field else ''}" in validate_in_process(path, capsys)


# --- item 12: sizes, aliases and files that are not files ----------------------------------

BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
              for prev, name in zip("abcdefgh", "bcdefghi"))
    + "cases: *i\n"
)


def test_an_alias_bomb_is_refused_at_the_alias_that_expands_past_the_bound(
        tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.yaml", BILLION_LAUGHS)
    assert len(BILLION_LAUGHS.encode()) < 600
    for text in (load_in_subprocess(path), validate_in_subprocess(path)):
        assert f"{path}:" in text and "aliases" in text
        assert f"at most {cases_module.MAX_NODES:,}" in text
    # the line and field of the alias that crossed the bound
    with pytest.raises(CaseError) as caught:
        load_file(path)
    assert caught.value.line is not None and caught.value.line <= 10
    assert caught.value.field.split("[")[0] in set("bcdefghi") | {"cases"}


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    text = ("cases:\n  - id: a\n    source: s\n    op: softmax\n    input: &row [1.0, 2.0]\n"
        "  - id: b\n    source: s\n    op: softmax\n    input: *row\n")
    first, second = load_file(write(tmp_path / "alias.yaml", text))
    assert first.input == second.input == (1.0, 2.0)


def test_an_alias_cannot_refer_to_the_node_that_contains_it(tmp_path: Path) -> None:
    path = write(tmp_path / "self.yaml", "cases: &c [*c]\n")
    refused(path, 1, "cases[0]", "alias *c")


def test_more_values_than_the_node_limit_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], parser: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "pyyaml":  # the counting is the parser's; the real limit is tried with libyaml
        monkeypatch.setattr(cases_module, "MAX_NODES", 5000)
    count = cases_module.MAX_NODES + 10
    text = case_with(input="[[" + ",".join(["0"] * count) + "]]")
    assert len(text.encode()) < cases_module.MAX_FILE_BYTES  # the node limit, not the size
    path = write(tmp_path / "long.yaml", text)
    error = load_error(path)
    assert (error.file, error.line) == (str(path), 5)
    assert error.field.startswith("cases[0].input[0][") and "YAML values" in error.message
    assert f"at most {cases_module.MAX_NODES:,}" in error.message
    assert "generate" in error.message  # the way out: a generator
    assert f"{path}:5: cases[0].input[0]" in validate_in_process(path, capsys)


def test_a_file_past_the_size_limit_is_refused_before_it_is_parsed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    limit = cases_module.MAX_FILE_BYTES
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as stream:  # a 10-million-element list, 20 MB
        stream.write(HEAD + "    input: [[")
        stream.write("0," * 10_000_000)
        stream.write("0]]\n")
    assert path.stat().st_size > limit
    error = refused(path, None, "", f"at most {limit:,} bytes")
    assert f"{path.stat().st_size:,} bytes" in error.message
    assert f"error: {path}: " in validate_in_process(path, capsys)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.yaml"
    os.mkfifo(fifo)  # no writer: opening it for reading in blocking mode never returns
    for text in (load_in_subprocess(fifo, timeout=60), validate_in_subprocess(fifo, timeout=60)):
        assert f"{fifo}: not a regular file (a FIFO)" in text


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this platform")
def test_dev_zero_is_refused_without_reading_it() -> None:
    for text in (load_in_subprocess("/dev/zero", timeout=60),
                 validate_in_subprocess("/dev/zero", timeout=60)):
        assert "/dev/zero: not a regular file (a character device)" in text


def test_a_directory_named_like_a_case_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "x.yaml"
    folder.mkdir()
    refused(folder, None, "", "not a regular file (a directory)")


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ("[100000, 100000]", "10,000,000,000 elements"),  # 74.5 GiB of float64
        ("[0, 10000000000]", "10,000,000,000 elements"),  # no rows, but 1e10 classes to draw
        ("[" + ", ".join(["2"] * 33) + "]", "33 dimensions"),
    ],
)
def test_a_generated_shape_that_cannot_be_allocated_is_refused_at_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: str, words: str) -> None:
    path = write(tmp_path / "big.yaml", case_with(
        input=f"{{generate: normal, shape: {shape}, seed: 1}}",
        target="{generate: classes, seed: 2}"))
    error = refused(path, 5, "cases[0].input.shape", words)
    assert f"{generate.MAX_GENERATED_ELEMENTS:,}" in error.message or "dimensions" in words
    check_both(path, 5, "cases[0].input.shape", words, capsys)


def test_the_shipped_large_cases_fit_the_generated_element_limit() -> None:
    from conformance.cases.loading import load_cases

    sizes = [generate.element_count(generate.input_shape(c.input) or ())
             for c in load_cases([ROOT / "cases" / "large"])]
    assert max(sizes) == 32 * 131072 <= generate.MAX_GENERATED_ELEMENTS


@pytest.mark.parametrize(
    ("fields", "line", "field"),
    [
        ({"ignore_index": "99999999999999999999"}, 7, "cases[0].ignore_index"),
        ({"ignore_index": "-9223372036854775809"}, 7, "cases[0].ignore_index"),
        ({"target": "[9223372036854775808]"}, 6, "cases[0].target[0]"),
        ({"input": "{generate: normal, shape: [2, 3], seed: 18446744073709551616}",
          "target": "null", "op": "softmax"}, 5, "cases[0].input.seed"),
    ],
)
def test_integers_outside_int64_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            fields: dict[str, str], line: int,
                                            field: str) -> None:
    path = write(tmp_path / "int.yaml", case_with(**fields))
    check_both(path, line, field, "outside the int64 range", capsys)


@pytest.mark.parametrize(
    ("fields", "line", "field"),
    [
        ({"ignore_index": "1.0e30"}, 7, "cases[0].ignore_index"),
        ({"input": "{generate: normal, shape: [2, 3], seed: 1.0e3}",
          "target": "{generate: classes, seed: 2}"}, 5, "cases[0].input.seed"),
        ({"input": "{generate: normal, shape: [2.0, 3.0], seed: 1}",
          "target": "{generate: classes, seed: 2}"}, 5, "cases[0].input.shape[0]"),
    ],
)
def test_floats_are_not_integers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 fields: dict[str, str], line: int, field: str) -> None:
    path = write(tmp_path / "float.yaml", case_with(**fields))
    check_both(path, line, field, "is not of type 'integer'", capsys)


def test_a_dirichlet_alpha_must_be_finite(tmp_path: Path) -> None:
    path = write(tmp_path / "alpha.yaml", case_with(
        input="{generate: normal, shape: [2, 3], seed: 1}",
        target="{generate: dirichlet, seed: 2, alpha: .inf}"))
    refused(path, 6, "cases[0].target.alpha", "finite")


# --- item 13: tracebacks become errors -----------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "1.0" + "]" * depth


@pytest.mark.parametrize("depth", [33, 37])
def test_a_tensor_deeper_than_numpy_allows_names_its_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int) -> None:
    path = write(tmp_path / "deep.yaml", case_with(input=nested(depth), target="null"))
    check_both(path, 5, "cases[0].input", f"at most {cases_module.MAX_DIMENSIONS} dimensions",
               capsys)


@pytest.mark.parametrize("depth", [50, 300, 100_000])
def test_nesting_past_the_depth_limit_names_file_line_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int) -> None:
    path = write(tmp_path / "deep.yaml", case_with(input=nested(depth), target="null"))
    field = "cases[0].input" + "[0]" * (cases_module.MAX_DEPTH - 3)
    check_both(path, 5, field, f"more than {cases_module.MAX_DEPTH} levels", capsys)


def test_deep_nesting_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path / "deep.yaml", case_with(input=nested(100_000), target="null"))
    assert f"{path}:5: cases[0].input[0]" in validate_in_subprocess(path)


@pytest.mark.parametrize(
    ("key", "words"),
    [("1", "an integer"), ("~", "null"), ("true", "a boolean"), ("on", "a boolean"),
     ("1.5", "a float"), ("null", "null")],
)
def test_a_key_that_is_not_a_string_names_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, words: str) -> None:
    path = write(tmp_path / "key.yaml", GOOD + f"    {key}: x\n")
    check_both(path, 7, "cases[0]", words, capsys)
    assert "quote" in load_error(path).message


def load_error(path: Path) -> CaseError:
    with pytest.raises(CaseError) as caught:
        load_file(path)
    return caught.value


@pytest.mark.parametrize("merge", ["<<: *b", "<<: {op: softmax}"])
def test_a_merge_key_is_an_error_naming_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], merge: str) -> None:
    text = (f"x: &b {{op: softmax}}\ncases:\n  - id: a\n    source: s\n    {merge}\n"
            "    input: [1.0]\n")
    path = write(tmp_path / "merge.yaml", text)
    check_both(path, 5, "cases[0]", "merge keys", capsys)


@pytest.mark.parametrize(
    ("value", "words"),
    [("!!int abc", "cannot read 'abc' as int"), ("!!bool maybe", "cannot read 'maybe' as bool"),
     ("!!seq abc", "unsupported YAML node"), ("!!str [1]", "unsupported YAML node"),
     ("!!binary aGk=", "unsupported YAML node"), ("1" * 5000, "cannot read"),
     ("!!float x", "cannot read 'x' as float")],
)
def test_explicit_tags_and_unreadable_scalars_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, words: str) -> None:
    path = write(tmp_path / "tag.yaml", case_with(ignore_index=value))
    check_both(path, 7, "cases[0].ignore_index", words, capsys)


def test_a_second_document_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "two.yaml", GOOD + "---\n" + GOOD)
    refused(path, 7, "", "one YAML document")


@pytest.mark.parametrize(("op", "input", "target"), [
    ("softmax", "[]", "null"), ("softmax", "[[]]", "null"), ("cross_entropy", "[[]]", "[0]"),
    ("cross_entropy", "[[], []]", "[-100, -100]"), ("log_softmax", "[[], [], []]", "null"),
])
def test_an_input_without_classes_names_its_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], op: str, input: str,
        target: str) -> None:
    path = write(tmp_path / "empty.yaml", case_with(op=op, input=input, target=target))
    check_both(path, 5, "cases[0].input", "no classes", capsys)


def test_a_generated_input_without_classes_is_refused_too(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.yaml", case_with(
        op="softmax", input="{generate: normal, shape: [2, 0], seed: 1}", target="null"))
    refused(path, 5, "cases[0].input", "no classes")


def test_an_expected_error_without_classes_still_generates(tmp_path: Path) -> None:
    from conformance.cases.problem import make_problem

    path = write(tmp_path / "empty.yaml", case_with(
        op="softmax", input="{generate: normal, shape: [2, 0], seed: 1}", target="null",
        expect="error"))
    (case,) = load_file(path)
    assert make_problem(case, "float32").input.shape == (2, 0)


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (GOOD.encode() + b"    description: caf\xe9\n", 7, "not UTF-8: byte 0xe9"),
        (GOOD.encode().replace(b"source: s", b"source: s\0x"), 3, "NUL byte"),
        (GOOD.encode().replace(b"source: s", b"source: s\x07"), 3, "U+0007"),
    ],
)
def test_bytes_that_are_not_text_name_their_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, line: int,
        words: str) -> None:
    path = tmp_path / "bytes.yaml"
    path.write_bytes(data)
    check_both(path, line, "", words, capsys)


def test_a_symlink_loop_is_named_as_such(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop.name)
    refused(loop, None, "", "symlink loop")
    assert f"error: {loop}: cannot read file: a symlink loop" in validate_in_process(loop, capsys)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_directory_of_hostile_entries_is_validated_without_hanging(tmp_path: Path) -> None:
    folder = tmp_path / "cases"
    folder.mkdir()
    write(folder / "good.yaml", GOOD)
    os.mkfifo(folder / "fifo.yaml")
    (folder / "loop.yaml").symlink_to("loop.yaml")
    (folder / "dangling.yaml").symlink_to("nowhere.yaml")
    (folder / "sub.yaml").mkdir()  # a directory: searched, not read
    write(folder / "sub.yaml" / "inner.yml", GOOD.replace("id: a", "id: b"))
    files = find_case_files([folder])
    assert [f.name for f in files] == ["dangling.yaml", "fifo.yaml", "good.yaml", "loop.yaml",
                                       "inner.yml"]
    errors = validate_in_subprocess(folder, timeout=60)
    assert f"{folder / 'fifo.yaml'}: not a regular file (a FIFO)" in errors
    assert f"{folder / 'loop.yaml'}: cannot read file: a symlink loop" in errors
    assert f"{folder / 'dangling.yaml'}: cannot read file: no such file" in errors
    assert "3 error(s) in 5 files" in errors


def test_a_symlink_loop_named_on_the_command_line_is_not_missing(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop.name)
    assert find_case_files([loop]) == [loop]
    with pytest.raises(CaseError, match="no such file or directory"):
        find_case_files([tmp_path / "nowhere.yaml"])


def test_error_messages_quote_huge_values_briefly(tmp_path: Path) -> None:
    values = ", ".join(["1.0"] * 20_000)
    path = write(tmp_path / "long.yaml", case_with(input=f"[[{values}], 7]"))
    error = load_error(path)
    assert len(str(error)) < 1000, str(error)[:2000]
