"""Outputs that would destroy an input: the one check every writing subcommand makes first.

A command's output may not be one of its inputs nor another of its outputs (``--report
r.jsonl --out r.jsonl``; ``--out mine.yaml`` over the case file it is about to read).  Paths
are compared as files, not as strings: two existing paths are the same when they name the
same inode (``os.path.samefile``: symlinks, hard links, ``..``), a path that does not exist
yet when it resolves to the same place, and a path inside an input *tree* (the oracle cache)
is refused wherever it lies in it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

# A path with what the user called it: an option ("--out"), or a description ending in a
# colon ("a case file under --cases cases:"); messages read "NAME PATH is NAME PATH".
Named = tuple[str, Path]


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the spelling made absolute
        return Path(os.path.abspath(path))


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (or directory), or would be once written."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (yet)
        return _resolved(a) == _resolved(b)


def within(path: Path, tree: Path) -> bool:
    """Whether ``path`` is ``tree`` or lies anywhere below it."""
    if same_file(path, tree):
        return True
    inner, outer = _resolved(path), _resolved(tree)
    return outer in inner.parents


def check_outputs(outputs: Sequence[Named], inputs: Iterable[Named] = (),
                  trees: Iterable[Named] = ()) -> None:
    """Raise ``ValueError`` naming both when an output is an input, lies inside an input
    tree, or is another output; nothing has been read or written when it does."""
    inputs, trees = list(inputs), list(trees)
    for index, (name, path) in enumerate(outputs):
        for other_name, other in outputs[:index]:
            if same_file(path, other):
                raise _clash(name, path, f"{other_name} {other}")
        for other_name, other in inputs:
            if same_file(path, other):
                raise _clash(name, path, f"{other_name} {other}")
        for other_name, tree in trees:
            if within(path, tree):
                raise _clash(name, path, f"inside {other_name} {tree}")


def _clash(name: str, path: Path, what: str) -> ValueError:
    return ValueError(f"{name} {path} is {what}: an output may not be an input or another "
                      "output of the same command; choose another path")
