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
