"""The one way the report writes markup: ``h(tag, *children, **attributes)``.

Plain ``str`` children and every attribute value are escaped by ``escape``; only ``Safe``
strings (what ``h`` itself returns, or the report's own constant markup) pass through.  So a
case description or a framework's message can never become markup, whatever it contains.
Control characters (bidirectional overrides among them) are shown as ``\\uXXXX``, and a long
word in text gets places to wrap (``breakable``), so no string can reorder what is shown
or widen the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from html import escape as _html_escape
from typing import Any


class Safe(str):
    """Markup that is already escaped (built by ``h`` or written by this package)."""

    __slots__ = ()


def escape(value: object) -> str:
    """Escape ``value`` for HTML text and for quoted attribute values (``& < > " '``), and
    show invisible control characters as ``\\uXXXX``: bidirectional overrides, embeddings,
    isolates and marks (which would reorder what a reader sees, e.g. ``gnp.exe`` shown for
    ``exe.png``) and C0/C1 controls other than tab and newline."""
    return _html_escape(str(value), quote=True).translate(_SHOWN_ESCAPED)


_BIDI_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROLS = [c for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n"]
_SHOWN_ESCAPED = {c: f"\\u{c:04x}" for c in [*_BIDI_CONTROLS, *_CONTROLS]}

Child = Any  # str (escaped), Safe (kept), None (skipped), numbers, or iterables of these


def render(child: Child, wrap: bool = False) -> str:
    """``child`` as markup: ``Safe`` kept, iterables joined, ``None`` dropped, the rest escaped
    (``breakable`` where ``wrap``: text in a table cell)."""
    if child is None:
        return ""
    if isinstance(child, Safe):
        return child
    if isinstance(child, str):
        return breakable(child) if wrap else escape(child)
    if isinstance(child, Iterable):
        return "".join(render(c, wrap) for c in child)
    return escape(child)


# Where a long word would widen a table column (and so the page): text in table cells and in
# the inline elements inside them.  Blocks of text (p, li, pre) wrap anywhere by CSS instead;
# option and title hold text only (no <wbr>).
_WRAPPED_IN = frozenset({"td", "th", "code", "span", "div", "b", "a", "label"})


LONG_WORD = 40  # characters without a space past which a word gets places to wrap
_LONG = re.compile(r"\S{" + str(LONG_WORD + 1) + ",}")
_PIECES = re.compile(r"[^./_\-(|,:]*[./_\-(|,:]*")


def breakable(text: str) -> str:
    """``escape(text)`` where every word longer than ``LONG_WORD`` characters gets ``<wbr>``
    (a place to wrap, no character) at least every ``LONG_WORD`` characters, after a dot,
    slash, dash ... where there is one: a 5,000-character name wraps in its table cell
    instead of widening the page, and no short word is ever cut."""
    parts, end = [], 0
    for match in _LONG.finditer(text):
        parts.append(escape(text[end:match.start()]))
        parts.append("<wbr>".join(escape(chunk) for chunk in _chunks(match.group())))
        end = match.end()
    parts.append(escape(text[end:]))
    return "".join(parts)


def _chunks(word: str) -> list[str]:
    """``word`` cut after punctuation into pieces of at most ``LONG_WORD`` characters."""
    chunks, current = [], ""
    for piece in _PIECES.findall(word):
        for i in range(0, len(piece), LONG_WORD):
            part = piece[i:i + LONG_WORD]
            if current and len(current) + len(part) > LONG_WORD:
                chunks.append(current)
                current = ""
            current += part
    return [*chunks, current] if current else chunks


def h(tag: str, *children: Child, **attributes: Any) -> Safe:
    """An element.  ``class_="x"`` gives ``class="x"``, ``data_fw="y"`` gives ``data-fw="y"``;
    ``True`` gives a bare attribute, ``None`` and ``False`` leave it out."""
    attrs = "".join(_attribute(name, value) for name, value in attributes.items())
    if tag in _VOID:
        return Safe(f"<{tag}{attrs}>")
    return Safe(f"<{tag}{attrs}>{render(children, tag in _WRAPPED_IN)}</{tag}>")


def join(children: Iterable[Child]) -> Safe:
    return Safe(render(list(children)))


def json_attribute(value: Any) -> str:
    """``value`` as compact JSON for a ``data-*`` attribute (``h`` escapes it).  Its strings
    carry control characters as ``escape`` shows them, so the page's script, which compares
    them with attribute values, sees the same text."""
    return json.dumps(_shown(value), separators=(",", ":"), sort_keys=True)


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return value.translate(_SHOWN_ESCAPED)
    if isinstance(value, dict):
        return {_shown(k): _shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(v) for v in value]
    return value


def _attribute(name: str, value: Any) -> str:
    if value is None or value is False:
        return ""
    name = name.rstrip("_").replace("_", "-")
    if value is True:
        return f" {name}"
    return f' {name}="{escape(value)}"'


_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "col"})


# --- elements as data: what the page's script builds on demand ------------------------------


class Node(list[Any]):
    """An element as data, ``[tag, {attribute: value}, *children]`` (children: text or
    ``Node``), for the compact data the page's script turns into elements when asked
    (``conformance.report.assets``: ``createElement`` for a fixed set of tags and attributes,
    text as text nodes, never markup).  Text carries control characters as ``escape`` shows
    them, and a long word in a cell gets ``["wbr", {}]`` places to wrap, as ``h`` does."""


def node(tag: str, *children: Child, **attributes: Any) -> Node:
    """``h``'s twin for data: the same children and attributes, as a ``Node``."""
    attrs = {name.rstrip("_").replace("_", "-"): "" if value is True else _shown(str(value))
             for name, value in attributes.items() if value is not None and value is not False}
    out = Node([tag, attrs])
    _append(out, children, tag in _WRAPPED_IN)
    return out


def fragment(children: Iterable[Child]) -> list[Any]:
    """Several nodes (and texts) as one list, ``join``'s twin."""
    out: list[Any] = []
    _append(out, list(children), False)
    return out


def _append(out: list[Any], child: Child, wrap: bool) -> None:
    if child is None or child == "":
        return
    if isinstance(child, Node):
        out.append(child)
    elif isinstance(child, str):
        text = _shown(child)
        out.extend(_wrappable(text) if wrap else [text])
    elif isinstance(child, Iterable):
        for c in child:
            _append(out, c, wrap)
    else:
        out.append(_shown(str(child)))


def _wrappable(text: str) -> list[Any]:
    """``text`` with a ``wbr`` node at least every ``LONG_WORD`` characters of a long word."""
    parts: list[Any] = []
    end = 0
    for match in _LONG.finditer(text):
        if match.start() > end:
            parts.append(text[end:match.start()])
        for n, chunk in enumerate(_chunks(match.group())):
            if n:
                parts.append(Node(["wbr", {}]))
            parts.append(chunk)
        end = match.end()
    if end < len(text):
        parts.append(text[end:])
    return parts


def node_text(tree: Any) -> str:
    """The text of a node, a fragment or a text, as the page would show it."""
    if isinstance(tree, str):
        return tree
    if isinstance(tree, list) and len(tree) >= 2 and isinstance(tree[0], str) \
            and isinstance(tree[1], dict):
        return "".join(node_text(c) for c in tree[2:])
    if isinstance(tree, list):
        return "".join(node_text(c) for c in tree)
    return ""
