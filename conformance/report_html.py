"""The one way the report writes markup: ``h(tag, *children, **attributes)``.

Plain ``str`` children and every attribute value are escaped by ``escape``; only ``Safe``
strings (what ``h`` itself returns, or the report's own constant markup) pass through.  So a
case description or a framework's message can never become markup, whatever it contains.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html import escape as _html_escape
from typing import Any


class Safe(str):
    """Markup that is already escaped (built by ``h`` or written by this package)."""

    __slots__ = ()


def escape(value: object) -> str:
    """Escape ``value`` for HTML text and for quoted attribute values (``& < > " '``)."""
    return _html_escape(str(value), quote=True)


Child = Any  # str (escaped), Safe (kept), None (skipped), numbers, or iterables of these


def render(child: Child) -> str:
    """``child`` as markup: ``Safe`` kept, iterables joined, ``None`` dropped, the rest escaped."""
    if child is None:
        return ""
    if isinstance(child, Safe):
        return child
    if isinstance(child, str):
        return escape(child)
    if isinstance(child, Iterable):
        return "".join(render(c) for c in child)
    return escape(child)


def h(tag: str, *children: Child, **attributes: Any) -> Safe:
    """An element.  ``class_="x"`` gives ``class="x"``, ``data_fw="y"`` gives ``data-fw="y"``;
    ``True`` gives a bare attribute, ``None`` and ``False`` leave it out."""
    attrs = "".join(_attribute(name, value) for name, value in attributes.items())
    if tag in _VOID:
        return Safe(f"<{tag}{attrs}>")
    return Safe(f"<{tag}{attrs}>{render(children)}</{tag}>")


def join(children: Iterable[Child]) -> Safe:
    return Safe(render(list(children)))


def json_attribute(value: Any) -> str:
    """``value`` as compact JSON for a ``data-*`` attribute (``h`` escapes it)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _attribute(name: str, value: Any) -> str:
    if value is None or value is False:
        return ""
    name = name.rstrip("_").replace("_", "-")
    if value is True:
        return f" {name}"
    return f' {name}="{escape(value)}"'


_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "col"})
