"""Every install the documentation gives uses ``constraints.txt``: an unpinned
``pip install -e '.[torch]'`` takes the newest torch, which on Linux brings CUDA packages."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==\S+$")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[match[1].lower().replace("_", "-")] = line.strip()
    return pins


def _install_lines() -> list[tuple[str, int, str]]:
    found = []
    for document in DOCUMENTS:
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bpip install\b", line):
                found.append((document.name, number, line))
    return found


def test_the_readme_gives_an_install_without_tox() -> None:
    lines = [line for name, _, line in _install_lines() if name == "README.md"]
    assert any("-e '.[torch]'" in line for line in lines)


def test_every_documented_install_uses_the_constraints() -> None:
    unpinned = [f"{name}:{number}: {line.strip()}" for name, number, line in _install_lines()
                if "-c constraints.txt" not in line and "PIP_CONSTRAINT=" not in line]
    assert unpinned == []


def test_the_constraints_pin_every_dependency_and_framework() -> None:
    """Every package of the project's dependencies and framework extras has an exact pin."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text[text.index("dependencies = ["):text.index("[project.scripts]")]
    names = set()
    for requirement in re.findall(r'"([A-Za-z0-9_.-]+)[^"]*"', section):
        names.add(requirement.lower().replace("_", "-"))
    names -= {"pytest"}  # the test extra: any recent pytest runs the tests
    pins = _pins()
    assert sorted(n for n in names if n not in pins) == []
    assert pins["torch"].startswith("torch==") and "tox" in pins
