"""Field-by-field differences between two JSON values, named by JSON path.

::

    body.messages[1].content: 'What is 2+2?' != 'What is 3+3?'
    body.tools[0].function.description changed at character 31:
        recorded: '…weather for a city, in Celsius'
        now:      '…weather for a city, in Fahrenheit'
    body.temperature: added (now 0.2)
    body.messages[0]: inserted {'role': 'system', 'content': 'Be brief.'}

Lists are aligned before they are compared (``difflib`` over each item's JSON), so a message
inserted at the front shows as one insertion, not as every later message changed. The recorded
value is always on the left.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from typing import Any

__all__ = ["Difference", "diff", "format_differences", "short_repr"]

_SHORT = 60
_CONTEXT = 30


class Difference:
    """One difference: its path and a one-or-more-line description (recorded value first)."""

    __slots__ = ("path", "text")

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def __repr__(self) -> str:
        return f"Difference({self.text!r})"


def diff(recorded: Any, now: Any, path: str = "") -> list[Difference]:
    """Every difference between ``recorded`` and ``now``, in document order."""
    return list(_diff(recorded, now, path))


def format_differences(differences: list[Difference], limit: int = 25) -> list[str]:
    """The differences as lines, at most ``limit`` entries (then how many more)."""
    lines: list[str] = []
    for difference in differences[:limit]:
        lines.extend(difference.text.split("\n"))
    if len(differences) > limit:
        lines.append(f"… and {len(differences) - limit} more differences")
    return lines


def short_repr(value: Any, width: int = 80) -> str:
    """``repr`` of a value cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _child(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _diff(recorded: Any, now: Any, path: str) -> Iterator[Difference]:
    if isinstance(recorded, dict) and isinstance(now, dict):
        for key in recorded:
            child = _child(path, str(key))
            if key not in now:
                yield Difference(child, f"{child}: removed (recorded {short_repr(recorded[key])})")
            else:
                yield from _diff(recorded[key], now[key], child)
        for key in now:
            if key not in recorded:
                child = _child(path, str(key))
                yield Difference(child, f"{child}: added (now {short_repr(now[key])})")
    elif isinstance(recorded, list) and isinstance(now, list):
        yield from _diff_lists(recorded, now, path)
    elif isinstance(recorded, str) and isinstance(now, str):
        if recorded != now:
            yield Difference(path, _string_change(path, recorded, now))
    elif type(recorded) is not type(now):
        yield Difference(
            path,
            f"{path}: {short_repr(recorded)} != {short_repr(now)} "
            f"({_kind(recorded)} → {_kind(now)})",
        )
    elif recorded != now:
        yield Difference(path, f"{path}: {short_repr(recorded)} != {short_repr(now)}")


def _diff_lists(recorded: list[Any], now: list[Any], path: str) -> Iterator[Difference]:
    if len(recorded) == len(now):
        for index, (old, new) in enumerate(zip(recorded, now, strict=True)):
            yield from _diff(old, new, f"{path}[{index}]")
        return
    keys_old = [_canonical(item) for item in recorded]
    keys_new = [_canonical(item) for item in now]
    matcher = difflib.SequenceMatcher(a=keys_old, b=keys_new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1)
        for offset in range(paired):
            yield from _diff(recorded[i1 + offset], now[j1 + offset], f"{path}[{j1 + offset}]")
        for index in range(i1 + paired, i2):
            item = f"{path}[{index}]"
            yield Difference(item, f"{item}: removed (recorded {short_repr(recorded[index])})")
        for index in range(j1 + paired, j2):
            item = f"{path}[{index}]"
            yield Difference(item, f"{item}: inserted {short_repr(now[index])}")


def _string_change(path: str, recorded: str, now: str) -> str:
    if len(recorded) <= _SHORT and len(now) <= _SHORT and "\n" not in recorded + now:
        return f"{path}: {recorded!r} != {now!r}"
    at = 0
    limit = min(len(recorded), len(now))
    while at < limit and recorded[at] == now[at]:
        at += 1
    start = max(0, at - _CONTEXT)
    if start:  # begin the excerpt at a word, not in the middle of one
        space = recorded.find(" ", start, at)
        start = space + 1 if space >= 0 else start
    lead = "…" if start else ""

    def excerpt(text: str) -> str:
        piece = text[start : at + _CONTEXT]
        tail = "…" if at + _CONTEXT < len(text) else ""
        return lead + repr(piece) + tail

    return (
        f"{path} changed at character {at} "
        f"(recorded {len(recorded)} characters, now {len(now)}):\n"
        f"    recorded: {excerpt(recorded)}\n"
        f"    now:      {excerpt(now)}"
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
