"""The command line explains itself: ``--version``, help with a default for every argument,
``run --help`` with what it does, its exit codes and examples, consistent metavariables."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

import conformance
from conformance.cli import COMMANDS, build_parser, main
from tests.conftest import ROOT


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices)


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None and conformance.__version__ == version[1]
    assert capsys.readouterr().out.strip() == f"conformance {version[1]} (crossentropy-conformance)"


def test_the_installed_command_prints_the_version() -> None:
    done = subprocess.run([sys.executable, "-m", "conformance", "--version"],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith("conformance ")


def test_every_argument_has_help_and_a_default() -> None:
    parsers = _subparsers()
    assert set(parsers) == set(COMMANDS)
    missing = []
    for name, parser in parsers.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = formatter._get_help_string(action) or ""  # type: ignore[attr-defined]
            if not action.help or not ("default" in text or "required" in text):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_run_help_says_what_it_does_its_exit_codes_and_examples(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "Run every case on every selected framework" in text
    codes = re.findall(r"^ +([012]) +\S", text, re.MULTILINE)
    assert codes == ["0", "1", "2"]
    examples = text[text.index("examples:"):].splitlines()[1:]
    assert len([line for line in examples if line.strip().startswith("conformance run")]) == 2
    assert "--timeout SECONDS" in text and "--oracle-timeout SECONDS" in text


def test_metavariables_are_consistent() -> None:
    """A time is SECONDS, a file FILE, a folder DIR, a count N, wherever they appear."""
    wanted = {"--timeout": "SECONDS", "--oracle-timeout": "SECONDS",
              "--report": "FILE", "--output": "FILE", "--cache": "DIR", "--jobs": "N",
              "--limit": "N", "--cases-root": "DIR"}
    found = {}
    for parser in _subparsers().values():
        for action in parser._actions:
            for option in action.option_strings:
                if option in wanted:
                    found.setdefault(option, set()).add(action.metavar)
    assert found == {option: {metavar} for option, metavar in wanted.items()}
    # --out is a FILE, except `conformance oracle --out`, a file or a folder (PATH), and
    # `conformance hunt --out`, a folder (DIR)
    outs = {a.metavar for p in _subparsers().values() for a in p._actions
            if "--out" in a.option_strings}
    assert outs <= {"FILE", "PATH", "DIR"}
